"""The app's standard streams, unbuffered as with ``python -u``.

What an app prints then reaches the log at once, in order with the server's
own lines, and is not lost when its child is ended (the child timeout's
SIGTERM or SIGKILL). And a child need not flush the streams on its way out:
flushing them writes about a dozen of the parent's pages (two stream objects,
their buffers, locks and types), copied again in every child.

Done before the app is imported, so that what the app keeps of sys.stdout or
sys.stderr (a logging handler, say) is the unbuffered stream.
"""

from __future__ import annotations

import io
import sys

unbuffered: tuple = (None, None)  # (stdout, stderr) as unbuffer() left them


def unbuffer() -> None:
    """Replace a buffered sys.stdout and sys.stderr by unbuffered ones on the same descriptors.

    A stream that is not a plain text file (None, an object put in place
    before) is left as it is, and not counted as unbuffered.
    """
    global unbuffered
    done = []
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if type(stream) is not io.TextIOWrapper:
            done.append(None)
            continue
        if not (stream.write_through and type(stream.buffer) is io.FileIO):  # already so with -u
            try:
                fd = stream.fileno()
                stream.flush()
            except (OSError, ValueError):  # closed, or not a descriptor after all
                done.append(None)
                continue
            stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=stream.encoding,
                                      errors=stream.errors, write_through=True)
            setattr(sys, name, stream)
        done.append(stream)
    unbuffered = tuple(done)
