"""scripts/setup refuses a Python too old for what it installs, in one line, before installing anything.

It runs the real script against a real older interpreter, in a scratch copy
of the project (so this checkout's .venv is untouched); where no such
interpreter is on the machine, the test is skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find_python(version: str) -> str | None:
    """An interpreter of `version` that runs (a pyenv shim may exist and refuse)."""
    candidates = [*sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))),
                  shutil.which(f"python{version}")]
    for candidate in filter(None, candidates):
        try:
            res = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if res.returncode == 0 and res.stdout.strip() == version:
            return candidate
    return None


PYTHON_310 = find_python("3.10")


@pytest.mark.skipif(PYTHON_310 is None, reason="no Python 3.10 on this machine")
def test_setup_refuses_python_older_than_the_deploy_extra_needs(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
    res = subprocess.run(["bash", "scripts/setup"], cwd=project, env={**os.environ, "PYTHON": PYTHON_310},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        "setup: the tests and deploy tools need Python 3.11 or newer (Ansible 12); .venv has 3.10: "
        "remove .venv and run again with PYTHON=python3.11 (or newer), "
        "or use scripts/setup --runtime to only serve"]
    assert not glob.glob(str(project / ".venv/lib/python3.10/site-packages/ansible*")), "installed anyway"
