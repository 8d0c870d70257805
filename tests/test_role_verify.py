"""The role's verify step (tasks/verify.yml), run by real Ansible against a real server.

Verify retries what may still come right (nothing listening yet, or a "not
ready yet" status such as 503), and fails at once on any other wrong status:
a release that answers 500 must be rolled back now, not after every retry,
since until then it serves its errors to clients. The requests verify made
are counted from the server's access log, not from Ansible's report.
"""

import re
import sys

import pytest

from conftest import wait_until
from role_helpers import failures, run_playbook

pytestmark = pytest.mark.deploy  # runs Ansible: the deploy extra, on the Python the tools need

VERIFY = """\
- name: Run the role's verify step
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Verify
      ansible.builtin.include_role:
        name: forkserver
        tasks_from: verify
"""

RETRIES = 2  # so a retried status is requested RETRIES + 1 times


def serve(app, kind, start_server, tmp_path_factory):
    """`app` served over TCP or a unix socket, with an access log and a state file."""
    where = tmp_path_factory.mktemp("verify")
    bind = "127.0.0.1:0" if kind == "tcp" else f"unix:{where / 'fs.sock'}"
    state = where / "state.json"
    started = start_server(app, "--access-log", "-", "--state-file", str(state), bind=bind)
    started.bind = f"127.0.0.1:{started.port}" if kind == "tcp" else bind
    started.app = app
    started.state = state
    return started


@pytest.fixture(params=["tcp", "unix"])
def server(request, start_server, tmp_path_factory):
    return serve("apps:status_from_path", request.param, start_server, tmp_path_factory)


@pytest.fixture(params=["tcp", "unix"])
def strict_hosts_server(request, start_server, tmp_path_factory):
    return serve("flask_app:strict_hosts", request.param, start_server, tmp_path_factory)


def verify(tmp_path, server, path, **extra):
    """Run verify against `server`, asking for `path` and expecting 200."""
    proc = run_playbook(tmp_path, VERIFY, {
        "forkserver_bind": [server.bind],
        "forkserver_app": server.app,
        "forkserver_verify_path": path,
        "forkserver_verify_retries": RETRIES,
        "forkserver_verify_delay": 0,
        "forkserver_verify_timeout": 5,
        # where the rescue looks for the service log; the test's server has none there
        "forkserver_service_manager": "launchd",
        "forkserver_launchd_log_dir": str(tmp_path / "logs"),
        "_forkserver_state_file": str(server.state),
        "_forkserver_current_python": sys.executable,  # what the unix-socket check runs
        **extra,
    }, json_output=True)
    failed, _stats = failures(proc.stdout)
    return proc, failed


def requests_seen(server, path, status, expected):
    """How many requests for `path` the access log shows answered STATUS, once it
    shows `expected` (or 10 s passed)."""
    def count():
        return len(re.findall(rf'"GET {path} HTTP/1.1" {status} ', server.log))
    wait_until(lambda: count() >= expected)
    return count()


def test_verify_passes_on_the_expected_status_with_one_request(tmp_path, server):
    proc, failed = verify(tmp_path, server, "/status/200")
    assert failed == [], proc.stdout[-3000:]
    assert requests_seen(server, "/status/200", 200, 1) == 1, server.log


def test_verify_fails_at_once_on_a_wrong_status(tmp_path, server):
    proc, failed = verify(tmp_path, server, "/status/500")
    assert failed and failed[-1][0] == "Fail the deploy", failed
    message = failed[-1][1]
    assert "expecting 200; a definite wrong answer, not retried)" in message, message
    assert requests_seen(server, "/status/500", 500, 1) == 1, server.log


def test_verify_retries_a_not_ready_status_then_fails(tmp_path, server):
    proc, failed = verify(tmp_path, server, "/status/503")
    assert failed and failed[-1][0] == "Fail the deploy", failed
    assert f"expecting 200; still failing after {RETRIES} retries)" in failed[-1][1], failed[-1][1]
    assert requests_seen(server, "/status/503", 503, RETRIES + 1) == RETRIES + 1, server.log


def test_verify_names_the_check_host_to_an_app_that_answers_only_its_own_names(tmp_path, strict_hosts_server):
    """Flask's TRUSTED_HOSTS (as Django's ALLOWED_HOSTS) answers 400 to the address
    verify connects to; with forkserver_check_host, verify names the host it trusts."""
    server = strict_hosts_server
    (tmp_path / "named").mkdir()
    (tmp_path / "unnamed").mkdir()
    proc, failed = verify(tmp_path / "named", server, "/healthz", forkserver_check_host="www.example.com")
    assert failed == [], proc.stdout[-3000:]
    assert requests_seen(server, "/healthz", 200, 1) == 1, server.log
    proc, failed = verify(tmp_path / "unnamed", server, "/healthz")
    assert failed and failed[-1][0] == "Fail the deploy", failed
    assert "a definite wrong answer, not retried" in failed[-1][1], failed[-1][1]
    assert requests_seen(server, "/healthz", 400, 1) == 1, server.log
