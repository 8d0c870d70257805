"""The command line: an argparse parser built from the settings table (config.OPTIONS).

Imported only to parse the command line, and dropped afterwards with what it
imported (see config._parse_flags): the serving process keeps none of it.
"""

import argparse
import os
import sys

from . import __version__
from .config import OPTIONS, Option, UsageError


def parse(argv: list[str]) -> dict:
    """The flags in argv by option name; UsageError for a mistake (--help and
    --version print and exit). A plain dict: an argparse object kept would keep
    all of argparse."""
    return dict(vars(build_parser().parse_args(argv)))


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake as one line (exit 2) instead of usage plus error."""

    def error(self, message):
        raise UsageError(message)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own, told the width: left to find it, argparse imports shutil,
    which loads the bz2, lzma and zlib libraries into the server for good, and
    every mapping the server holds is copied again at each fork."""

    def __init__(self, prog, **kwargs):
        kwargs.setdefault("width", _terminal_columns() - 2)  # as argparse does
        super().__init__(prog, **kwargs)


def _terminal_columns() -> int:
    """shutil.get_terminal_size()'s width: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _argparse_type(option: Option):
    def convert(text):
        try:
            return option.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = option.dest
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="forkserver", formatter_class=_HelpFormatter,
        description="A fork-per-connection HTTP/1.1 WSGI server. Every option can also be set "
                    "with an environment variable FORKSERVER_<OPTION>, e.g. FORKSERVER_MAX_CHILDREN=64.",
    )
    parser.add_argument("app", nargs="?", metavar="MODULE:APP",
                        help="the WSGI application to serve (env FORKSERVER_APP); "
                             "default: a built-in app answering GET /hello with Hello, World!")
    for option in OPTIONS:
        parser.add_argument(*option.flags, dest=option.dest, type=_argparse_type(option),
                            action="append" if option.repeatable else "store",
                            metavar=option.metavar, help=option.help)
    parser.add_argument("--check-config", action="store_true",
                        help="load the app and check the settings, then exit (0 when all is well)")
    parser.add_argument("--version", action="version", version=f"forkserver {__version__}")
    return parser
