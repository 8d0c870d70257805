"""Settings: every option once, with its flag, its environment variable and its parser.

One table drives both the command line and the ``FORKSERVER_<OPTION>`` environment
variables, so a systemd EnvironmentFile or a launchd EnvironmentVariables dict can
say anything the command line can. The command line wins over the environment.
"""

import gc
import importlib
import ipaddress
import os
import re
import sys
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py

from .envfile import EnvFileError, apply_env_file

ENV_PREFIX = "FORKSERVER_"
DEFAULT_BIND = "0.0.0.0:8888"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ACCESS_LOG_FORMATS = ("common", "combined")


class UsageError(Exception):
    """A user mistake in a flag or variable: one line, exit status 2."""


class Settings(NamedTuple):
    app: str | None = None
    bind: tuple[str, ...] = (DEFAULT_BIND,)
    backlog: int = 1024
    max_children: int = 1024
    child_timeout: float = 30.0
    graceful_timeout: float = 30.0
    keepalive: float = 5.0
    header_timeout: float = 10.0
    max_body: int = 10 * 1024 * 1024
    limit_request_line: int = 4094
    limit_request_fields: int = 100
    limit_request_field_size: int = 8190
    metrics_bind: str | None = None
    access_log: str | None = None
    access_log_format: str = "combined"
    log_level: str = "info"
    pid_file: str | None = None
    state_file: str | None = None
    env_file: str | None = None
    chdir: str | None = None
    proxy_protocol_from: tuple = ()
    check_path: str | None = None
    check_host: str | None = None
    check_config: bool = False
    env_keys: frozenset = frozenset()  # variables the settings file set (not an option)


# --- value parsers: each raises ValueError with a message fit for a user ---

def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"must be a whole number of 1 or more, not {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ValueError(f"must be a number of seconds above 0, not {text!r}")
    return value


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"must be a size in bytes such as 1048576, 512K, 10M or 1G, not {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def bind_address(text: str) -> str:
    # Parsed for real (and reported) by listeners.parse_address; imported late
    # to keep this module free of socket code.
    from .listeners import parse_address

    parse_address(text)
    return text


def optional_bind_address(text: str) -> str | None:
    return bind_address(text) if text.strip() else None


def choice(options: tuple[str, ...]):
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {text!r}")
        return value

    return parse


def optional_path(text: str) -> str | None:
    return text or None


def request_path(text: str) -> str | None:
    """An origin-form request target (/health, /status?deep=1), or empty for none."""
    if not text:
        return None
    if not text.startswith("/") or any(char <= " " or char == "\x7f" for char in text):
        raise ValueError(f"must be a request path that starts with / and has no spaces, not {text!r}")
    return text


_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def host_header(text: str) -> str | None:
    """A Host header value (www.example.com, example.com:8080, [::1]:8888), or empty for none."""
    if not text:
        return None
    if not _HOST.match(text):
        raise ValueError(f"must be a host name or address with an optional :port, "
                         f"such as www.example.com, not {text!r}")
    return text


def networks(text: str) -> tuple:
    """Comma-separated IP addresses or networks (10.0.0.5, 192.168.1.0/24, ::1)."""
    found = []
    for item in text.split(","):
        try:
            found.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            hint = " (host bits set: name the network, as in 10.0.0.0/24)" if "host bits" in str(exc) else ""
            raise ValueError(f"must be IP addresses or networks separated by commas, "
                             f"not {item.strip()!r}{hint}") from None
    return tuple(found)


class Option(NamedTuple):
    dest: str
    flags: tuple[str, ...]
    parse: object
    help: str
    metavar: str | None = None
    repeatable: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


OPTIONS = (
    Option("bind", ("-b", "--bind"), bind_address,
           "address to listen on: HOST:PORT, [::]:PORT or unix:PATH; repeat for more "
           f"(env: comma-separated; default {DEFAULT_BIND})", "ADDRESS", repeatable=True),
    Option("backlog", ("--backlog",), positive_int,
           "listen backlog: connections the kernel holds while all children are busy "
           "(default 1024; the kernel caps it at net.core.somaxconn, or kern.ipc.somaxconn on macOS)", "N"),
    Option("max_children", ("--max-children",), positive_int,
           "most connections served at once; beyond it new ones wait in the backlog (default 1024)", "N"),
    Option("child_timeout", ("--child-timeout",), seconds,
           "seconds a child may serve one connection before it is stopped with SIGTERM, "
           "then SIGKILL (default 30)", "S"),
    Option("graceful_timeout", ("--graceful-timeout",), seconds,
           "seconds in-flight connections get to finish on SIGTERM/SIGINT (default 30)", "S"),
    Option("keepalive", ("--keepalive",), seconds,
           "seconds an idle keep-alive connection is held open (default 5)", "S"),
    Option("header_timeout", ("--header-timeout",), seconds,
           "seconds a client gets to send its request headers; then 408 (default 10)", "S"),
    Option("max_body", ("--max-body",), size,
           "largest request body accepted; larger gets 413 (default 10M)", "SIZE"),
    Option("limit_request_line", ("--limit-request-line",), positive_int,
           "longest request line in bytes; longer gets 414 (default 4094, as gunicorn)", "N"),
    Option("limit_request_fields", ("--limit-request-fields",), positive_int,
           "most header fields in a request; more gets 431 (default 100)", "N"),
    Option("limit_request_field_size", ("--limit-request-field-size",), positive_int,
           "longest header field line in bytes, name and value; longer gets 431 (default 8190)", "N"),
    Option("metrics_bind", ("--metrics-bind",), optional_bind_address,
           "serve Prometheus metrics at /metrics on ADDRESS (HOST:PORT or unix:PATH; keep it on "
           "localhost or a private address; default: off)", "ADDRESS"),
    Option("access_log", ("--access-log",), optional_path,
           "write an access log to PATH, or '-' for stdout (default: none)", "PATH"),
    Option("access_log_format", ("--access-log-format",), choice(ACCESS_LOG_FORMATS),
           "common or combined (default combined)", "FORMAT"),
    Option("log_level", ("--log-level",), choice(LOG_LEVELS),
           "error log level: " + ", ".join(LOG_LEVELS) + " (default info)", "LEVEL"),
    Option("pid_file", ("--pid-file",), optional_path,
           "write the server's pid to PATH while it runs", "PATH"),
    Option("state_file", ("--state-file",), optional_path,
           "keep PATH up to date with the pid, version and the outcome of the last hot upgrade "
           "(read by forkserver-reload)", "PATH"),
    Option("env_file", ("--env-file",), optional_path,
           "read NAME=value settings (FORKSERVER_* and the app's own variables) from PATH at start "
           "and again at every hot upgrade", "PATH"),
    Option("chdir", ("--chdir",), optional_path,
           "change to DIR and import the app from there", "DIR"),
    Option("check_path", ("--check-path",), request_path,
           "with --check-config, and so before every hot upgrade switches to new code, also "
           "GET PATH from the app as a forked child serves a client; an answer of 400 or above, "
           "or none, fails the check (default: none)", "PATH"),
    Option("check_host", ("--check-host",), host_header,
           "the Host header of the --check-path request, for an app that answers only its own "
           "names (Django's ALLOWED_HOSTS, Flask's TRUSTED_HOSTS) (default: the first bind's "
           "address, as a client on this machine would send it)", "HOST"),
    Option("proxy_protocol_from", ("--proxy-protocol-from",), networks,
           "balancers whose connections begin with a PROXY protocol header (v1 or v2) naming "
           "the client: comma-separated IP addresses or networks; from any other peer such a "
           "header is refused (default: none)", "ADDRESSES"),
)


def _from_environment(environ) -> dict:
    values = {}
    for option in OPTIONS:
        raw = environ.get(option.env)
        if raw is None or (raw.strip() == "" and option.parse not in (optional_path, optional_bind_address)):
            continue
        items = [part.strip() for part in raw.split(",") if part.strip()] if option.repeatable else [raw]
        try:
            parsed = [option.parse(item) for item in items]
        except ValueError as exc:
            raise UsageError(f"{option.env}: {exc}") from None
        values[option.dest] = tuple(parsed) if option.repeatable else parsed[0]
    app = environ.get(ENV_PREFIX + "APP", "").strip()
    if app:
        values["app"] = app
    if environ.get(ENV_PREFIX + "CHECK_CONFIG", "").strip().lower() in ("1", "true", "yes"):
        values["check_config"] = True
    return values


def load_settings(argv=None, environ=None, previous_env_keys=frozenset(), read_env_file=True) -> Settings:
    """Merge defaults, FORKSERVER_* variables (the settings file's over the process's) and flags,
    in rising order of precedence."""
    environ = os.environ if environ is None else environ
    flags = _parse_flags(sys.argv[1:] if argv is None else argv)
    env_file = flags["env_file"] or environ.get(ENV_PREFIX + "ENV_FILE", "").strip()
    env_keys = previous_env_keys
    if env_file and read_env_file:
        try:
            env_keys = apply_env_file(env_file, previous_env_keys, environ)
        except EnvFileError as exc:
            raise UsageError(str(exc)) from None
    values = _from_environment(environ)
    values["env_keys"] = env_keys
    for key, value in flags.items():
        if key == "check_config":
            if value:
                values[key] = True
        elif value is not None:
            values[key] = tuple(value) if isinstance(value, list) else value
    if flags["check_host"] is not None and values.get("check_path") is None:
        # The variable alone is fine: the role sets it for its own verify request too.
        raise UsageError("--check-host names the Host of the --check-path request: give --check-path too")
    return Settings(**values)


# The command-line parser and what it imports (gettext, and locale for the
# translations gettext looks up): needed once, and about 0.5 MB of objects
# that every fork would copy the page tables of, and every child's exit unmap.
_FLAGS_MODULE = f"{__package__}.flags"
_PARSER_MODULES = (_FLAGS_MODULE, "argparse", "gettext", "locale")


def _parse_flags(argv: list[str]) -> dict:
    """The command line, parsed by flags.py; its modules are then dropped (those
    this call imported), so the memory they held goes to what is loaded next."""
    loaded_before = set(sys.modules)
    try:
        return importlib.import_module(_FLAGS_MODULE).parse(argv)  # no name left holding it
    finally:
        dropped = [name for name in _PARSER_MODULES if name not in loaded_before]
        for name in dropped:
            sys.modules.pop(name, None)
        if _FLAGS_MODULE in dropped:
            del sys.modules[__package__].flags
        gc.collect()  # modules are cycles (their functions refer to their globals)
