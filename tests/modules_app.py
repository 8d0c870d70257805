"""A WSGI app answering with what the process serving it holds: its modules, or its AST classes.

A child is a fork of the serving parent and imports nothing of its own before
the app runs, so what it answers is what the parent holds: what every fork
copies. This module imports only sys, so as not to add to it.

``/`` answers the names in ``sys.modules``, ``/live-modules`` those of every
module object still alive, listed or not. ``/ast-classes`` answers the
classes of the ``ast`` module that exist (none until something in the process
first calls ``compile()``, which builds all of them); ``/ast-classes?compile``
calls it first.
"""

import sys


def app(environ, start_response):
    if environ["PATH_INFO"] == "/ast-classes":
        if environ["QUERY_STRING"] == "compile":
            compile("0", "<probe>", "eval")
        classes = [cls for cls in object.__subclasses__() if cls.__module__ == "ast"]  # ast.AST
        for cls in classes:
            classes.extend(cls.__subclasses__())
        names = [cls.__name__ for cls in classes]
    elif environ["PATH_INFO"] == "/live-modules":
        import gc  # the parent has it (gc.freeze)

        gc.unfreeze()  # in this child only: get_objects() leaves out what the parent froze
        names = sorted(obj.__name__ for obj in gc.get_objects() if isinstance(obj, type(sys)))
    else:
        names = sorted(sys.modules)
    body = "\n".join(names).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
