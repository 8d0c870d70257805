"""scripts/http-corpus judges for real: a case it should fail, it fails."""

import os
import subprocess
import sys

from conftest import TESTS

RUNNER = os.path.join(os.path.dirname(TESTS), "scripts", "http_corpus.py")

CASES = {
    # a right expectation
    "valid/001": ("GET /a?b=c HTTP/1.1\\r\\nHost: h\\r\\nX-One: 1\\r\\n\\r\\n",
                  'request = {"method": "GET", "uri": uri("/a?b=c"), "version": (1, 1),'
                  ' "headers": [("HOST", "h"), ("X-ONE", "1")], "body": b""}'),
    # a wrong one (forkserver answers GET, not PUT): must be reported
    "valid/002": ("GET /a HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n",
                  'request = {"method": "PUT", "uri": uri("/a"), "version": (1, 1),'
                  ' "headers": [("HOST", "h")], "body": b""}'),
    # Host added by the runner for an HTTP/1.1 request without one
    "valid/003": ("POST /p HTTP/1.1\\r\\nContent-Length: 2\\r\\n\\r\\nhi",
                  'request = {"method": "POST", "uri": uri("/p"), "version": (1, 1),'
                  ' "headers": [("CONTENT-LENGTH", "2")], "body": b"hi"}'),
    # a gunicorn option forkserver lacks: not scored
    "valid/004": ("GET / HTTP/1.1\\r\\n\\r\\n",
                  'from gunicorn.config import Config\ncfg = Config()\ncfg.set("proxy_protocol", True)\n'
                  'request = {}'),
    "invalid/001": ("GET / HTTP/1.1\\r\\nHost: a\\r\\nHost: b\\r\\n\\r\\n",
                    "from gunicorn.http.errors import InvalidHeader\nrequest = InvalidHeader"),
    # a valid request filed as invalid: served, so must be reported
    "invalid/002": ("GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n",
                    "from gunicorn.http.errors import InvalidHeader\nrequest = InvalidHeader"),
}


def test_runner_scores_right_and_wrong_cases(tmp_path):
    for name, (http, py) in CASES.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.with_suffix(".http").write_text(http.replace("\\r\\n", "\\r\\n\n"))
        path.with_suffix(".py").write_text(py + "\n")
    run = subprocess.run([sys.executable, RUNNER, str(tmp_path)], capture_output=True, text=True, timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert lines[-1] == "valid 2/3 invalid-refused 1/2", run.stdout
    assert any(line.startswith("WRONG valid/002: request 1: method 'GET'") for line in lines), run.stdout
    assert any(line.startswith("WRONG invalid/002: served") for line in lines), run.stdout
    assert any(line.startswith("not scored: valid/004 (sets proxy_protocol)") for line in lines), run.stdout
