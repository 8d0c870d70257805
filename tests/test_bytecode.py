"""Which bytecode the import system reads: forkserver's check against the import system itself.

Each case sets up a module's source and .pyc on disk, asks
``bytecode_is_current``, then imports the module in a fresh interpreter that
reports whether it compiled the source. The two must agree.
"""

import os
import subprocess
import sys
import time

import pytest

from forkserver.bytecode import bytecode_is_current

SOURCE = 'GREETING = "hello"\n'
OTHER_SIZE = 'GREETING = "hello, world"\n'
SAME_SIZE = 'GREETING = "howdy"\n'

# Run in the module's directory: imports it with compile() watched, then says
# whether the import system compiled it.
IMPORT_WATCHED = """
import builtins, sys
compiled = []
real_compile = builtins.compile
def watched(source, filename, *args, **kwargs):
    compiled.append(filename)
    return real_compile(source, filename, *args, **kwargs)
builtins.compile = watched
sys.path.insert(0, '.')
import probe
print('compiled' if any(name.endswith('probe.py') for name in compiled) else 'read')
"""


def _compile(directory, mode="timestamp"):
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", mode, str(directory)],
                   check=True, capture_output=True, timeout=60)


def _import_system_reads(directory) -> bool:
    done = subprocess.run([sys.executable, "-B", "-c", IMPORT_WATCHED], cwd=directory, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() == "read"


def _set_mtime(path, seconds):
    os.utime(path, (seconds, seconds))


def _no_bytecode(source):
    pass


def _compiled(source):
    _compile(source.parent)


def _rewritten_other_size_same_time(source):
    _compile(source.parent)
    then = source.stat().st_mtime
    source.write_text(OTHER_SIZE)
    _set_mtime(source, then)


def _source_newer(source):
    _compile(source.parent)
    _set_mtime(source, time.time() + 10)


def _bytecode_file_older_than_its_source(source):
    _compile(source.parent)
    then = source.stat().st_mtime
    for pyc in (source.parent / "__pycache__").iterdir():
        _set_mtime(pyc, then - 100)


def _unchecked_hash_then_changed(source):
    _compile(source.parent, "unchecked-hash")
    source.write_text(OTHER_SIZE)


def _checked_hash(source):
    _compile(source.parent, "checked-hash")
    _set_mtime(source, time.time() + 10)


def _checked_hash_then_changed(source):
    _compile(source.parent, "checked-hash")
    source.write_text(SAME_SIZE)


@pytest.mark.parametrize("arrange, current", [
    (_no_bytecode, False),
    (_compiled, True),
    (_rewritten_other_size_same_time, False),
    (_source_newer, False),
    (_bytecode_file_older_than_its_source, True),
    (_unchecked_hash_then_changed, True),
    (_checked_hash, True),
    (_checked_hash_then_changed, False),
])
def test_bytecode_is_current_as_the_import_system_finds_it(tmp_path, arrange, current):
    source = tmp_path / "probe.py"
    source.write_text(SOURCE)
    _set_mtime(source, time.time() - 1000)
    arrange(source)
    cached = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.pyc"
    assert bytecode_is_current(str(source), str(cached)) is current
    assert _import_system_reads(tmp_path) is current  # the import system agrees


def test_a_source_that_cannot_be_read_raises(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(SOURCE)
    _compile(tmp_path)
    cached = tmp_path / "__pycache__" / f"probe.{sys.implementation.cache_tag}.pyc"
    source.unlink()
    with pytest.raises(OSError):
        bytecode_is_current(str(source), str(cached))
