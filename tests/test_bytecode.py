"""Which bytecode the import system reads: forkserver's check against the import system itself.

Each case sets up a module's source and .pyc on disk, asks
``bytecode_is_current``, then imports the module in a fresh interpreter that
reports whether it compiled the source. The two must agree. Then the command
the role runs on an app's directory (``python -m forkserver.bytecode``),
judged the same way.
"""

import os
import subprocess
import sys
import time
from importlib.util import cache_from_source
from pathlib import Path

import pytest

from conftest import compile_bytecode
from forkserver.bytecode import bytecode_is_current

SOURCE = 'GREETING = "hello"\n'
OTHER_SIZE = 'GREETING = "hello, world"\n'
SAME_SIZE = 'GREETING = "howdy"\n'

# Run in the module's directory: imports it with compile() watched, then says
# whether the import system compiled its source.
IMPORT_WATCHED = """
import builtins, sys
compiled = []
real_compile = builtins.compile
def watched(source, filename, *args, **kwargs):
    compiled.append(filename)
    return real_compile(source, filename, *args, **kwargs)
builtins.compile = watched
sys.path.insert(0, '.')
import {module}
print('compiled' if any(name.endswith({source!r}) for name in compiled) else 'read')
"""


def _import_system_reads(directory, module="probe") -> bool:
    source = os.path.join(module, "__init__.py") if (Path(directory) / module).is_dir() else module + ".py"
    script = IMPORT_WATCHED.format(module=module, source=os.sep + source)
    done = subprocess.run([sys.executable, "-B", "-c", script], cwd=directory, check=True,
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


def _compile_command(*directories):
    return subprocess.run([sys.executable, "-m", "forkserver.bytecode", *map(str, directories)],
                          capture_output=True, text=True, timeout=60)


def _compiled_names(output, directory):
    """The modules a compileall-style output says it compiled, relative to `directory`."""
    prefix = f"Compiling '{directory}{os.sep}"
    return sorted(line[len(prefix):].split("'")[0] for line in output.splitlines() if line.startswith(prefix))


def _app_directory(root):
    """An app's directory as the role finds it: one module current, one replaced with its time kept, two never compiled."""
    (root / "pkg").mkdir()
    for name in ("current.py", "replaced.py"):
        (root / name).write_text(SOURCE)
        _set_mtime(root / name, time.time() - 1000)
    compile_bytecode(root)
    _rewritten_other_size_same_time(root / "replaced.py")
    (root / "fresh.py").write_text(SOURCE)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "notes.txt").write_text("not a module\n")
    return ["fresh", "pkg", "replaced"]


def test_plain_compileall_passes_over_a_source_replaced_with_its_time_kept(tmp_path):
    # Why the role does not run compileall: the import system compiles this module at every start.
    _app_directory(tmp_path)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tmp_path)], check=True, timeout=60)
    assert _import_system_reads(tmp_path, "current")
    assert not _import_system_reads(tmp_path, "replaced")


def test_the_compile_command_compiles_exactly_the_modules_the_import_system_would_not_read(tmp_path):
    stale = _app_directory(tmp_path)
    done = _compile_command(tmp_path)
    assert done.returncode == 0, done.stderr
    assert _compiled_names(done.stdout, tmp_path) == ["fresh.py", os.path.join("pkg", "__init__.py"), "replaced.py"]
    for module in ["current", *stale]:
        assert _import_system_reads(tmp_path, module), module

    again = _compile_command(tmp_path)  # nothing left: the role's task reports no change
    assert again.returncode == 0, again.stderr
    assert _compiled_names(again.stdout, tmp_path) == []


def test_the_compile_command_says_which_module_does_not_compile_and_compiles_the_rest(tmp_path):
    (tmp_path / "broken.py").write_text("VALUE = (\n")
    (tmp_path / "fine.py").write_text(SOURCE)
    done = _compile_command(tmp_path)
    assert done.returncode == 1
    assert "broken.py" in done.stdout and "SyntaxError" in done.stdout
    assert _import_system_reads(tmp_path, "fine")


def test_the_compile_command_refuses_a_missing_directory_in_one_line(tmp_path):
    done = _compile_command(tmp_path / "absent")
    assert done.returncode == 2
    assert done.stderr.strip() == f"forkserver.bytecode: not a directory: {tmp_path / 'absent'}"
    assert "Traceback" not in done.stderr
