"""The settings file: ``NAME=value`` lines that forkserver reads itself.

A service manager reads its environment file once, when the service starts.
forkserver reads this one at every start and again at every hot upgrade
(SIGHUP), so changed settings, and the app's own variables, take effect
without a restart. The format is the one both /bin/sh and systemd's
EnvironmentFile read as the same thing: ``NAME=value`` or ``NAME="value"``,
where inside double quotes a backslash escapes ``\\``, ``"``, ``$`` and
backquote; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import os
import re

_LINE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^"\'\s\\$`]*))\s*')
_ESCAPE = re.compile(r'\\([\\"$`])')


class EnvFileError(Exception):
    """The file cannot be read or a line is not NAME=value; the message names which."""


def read_env_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise EnvFileError(f"cannot read settings file {path!r}: {(exc.strerror or str(exc)).lower()}") from None
    values = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if not match:
            raise EnvFileError(f"{path}, line {number}: not NAME=value or NAME=\"value\": {line[:80]!r}")
        name, quoted, bare = match.groups()
        values[name] = _ESCAPE.sub(r"\1", quoted) if quoted is not None else bare
    return values


def apply_env_file(path: str, previous: frozenset[str] = frozenset(), environ=None) -> frozenset[str]:
    """Set the file's variables in the environment; unset those a previous load set and the file no longer has.

    Returns the names it set, for the next load (after an upgrade) to compare with.
    """
    environ = os.environ if environ is None else environ
    values = read_env_file(path)
    for name in previous - values.keys():
        environ.pop(name, None)
    environ.update(values)
    return frozenset(values)
