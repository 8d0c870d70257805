"""Which bytecode the import system reads: forkserver's check against the import system itself.

Each case sets up a module's source and .pyc on disk, asks
``bytecode_is_current``, then imports the module in a fresh interpreter that
reports whether it compiled the source. The two must agree.
"""

import os
import subprocess
import sys
import time
from importlib.util import cache_from_source

import pytest

from conftest import compile_bytecode
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


def _import_system_reads(directory) -> bool:
    done = subprocess.run([sys.executable, "-B", "-c", IMPORT_WATCHED], cwd=directory, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() == "read"


def _set_mtime(path, seconds):
    os.utime(path, (seconds, seconds))


def _no_bytecode(source):
    pass


def _compiled(source):
    compile_bytecode(source.parent)


def _rewritten_other_size_same_time(source):
    compile_bytecode(source.parent)
    then = source.stat().st_mtime
    source.write_text(OTHER_SIZE)
    _set_mtime(source, then)


def _source_newer(source):
    compile_bytecode(source.parent)
    _set_mtime(source, time.time() + 10)


def _bytecode_file_older_than_its_source(source):
    compile_bytecode(source.parent)
    then = source.stat().st_mtime
    for pyc in (source.parent / "__pycache__").iterdir():
        _set_mtime(pyc, then - 100)


def _unchecked_hash_then_changed(source):
    compile_bytecode(source.parent, invalidation_mode="unchecked-hash")
    source.write_text(OTHER_SIZE)


def _checked_hash(source):
    compile_bytecode(source.parent, invalidation_mode="checked-hash")
    _set_mtime(source, time.time() + 10)


def _checked_hash_then_changed(source):
    compile_bytecode(source.parent, invalidation_mode="checked-hash")
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
    assert bytecode_is_current(str(source), cache_from_source(str(source))) is current
    assert _import_system_reads(tmp_path) is current  # the import system agrees


def test_a_source_that_cannot_be_read_raises(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text(SOURCE)
    compile_bytecode(tmp_path)
    cached = cache_from_source(str(source))
    source.unlink()
    with pytest.raises(OSError):
        bytecode_is_current(str(source), cached)
