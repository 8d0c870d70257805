"""Finding the WSGI app named on the command line (MODULE:APP, as gunicorn spells it)."""

from __future__ import annotations

import importlib
import os
import sys

BUILTIN = "forkserver.app:hello_app"


class AppLoadError(Exception):
    """The app could not be loaded; the message names the spec and the reason."""


def load_app(spec: str | None, chdir: str | None = None):
    """Import MODULE and return APP (default name ``application``); ``APP()`` calls a factory."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot change to directory {chdir!r}: {exc.strerror.lower()}") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    spec = spec or BUILTIN
    module_name, _, attr = spec.partition(":")
    attr = attr or "application"
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise AppLoadError(f"app {spec!r} must look like MODULE:APP, e.g. myproject.wsgi:application")
    factory = attr.endswith("()")
    name = attr[:-2] if factory else attr
    if not name.isidentifier():
        raise AppLoadError(f"app {spec!r}: {attr!r} is not a name in the module")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"cannot import app {spec!r}: no module named {exc.name!r} "
                               f"(looked in {os.getcwd()} and sys.path)") from None
        raise AppLoadError(f"cannot import app {spec!r}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(f"cannot import app {spec!r}: {type(exc).__name__}: {exc}") from exc
    try:
        app = getattr(module, name)
    except AttributeError:
        raise AppLoadError(f"app {spec!r}: module {module_name!r} has no attribute {name!r}") from None
    if factory:
        try:
            app = app()
        except Exception as exc:
            raise AppLoadError(f"app {spec!r}: the factory failed: {type(exc).__name__}: {exc}") from exc
    if not callable(app):
        raise AppLoadError(f"app {spec!r} is a {type(app).__name__}, not a WSGI callable")
    return app
