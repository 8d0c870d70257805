"""Tests of the Ansible role roles/forkserver, run through real Ansible.

Templates are rendered by ansible-playbook on localhost with the role's
defaults and vars (plus edge values), then checked: the unit with
`systemd-analyze verify` and `systemd-analyze security --offline`, the plist
with plistlib, the env file by loading it like the service and like the
role's validate step. Wrong variables must be refused by argument_specs or
the preflight checks, naming the variable, before anything changes.
"""

import json
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from role_helpers import (
    REPO,
    ROLE,
    ansible_env,
    ansible_tool,
    assert_refused_naming,
    failures,
    parse_systemd_env_file,
    render,
    run_playbook,
    security_score,
    source_env_file,
    task_name,
)

pytestmark = pytest.mark.deploy  # runs Ansible: the deploy extra, on the Python the tools need

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "SystemCallArchitectures": "native",
    "KillMode": "mixed",
    "Restart": "on-failure",
}


# The role's default forkserver_max_children follows the facts of the host
# it runs on, here the machine running the tests: 256 on macOS.
MAX_CHILDREN = 256 if sys.platform == "darwin" else 1024


def systemd_verify(unit_path):
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify exits 0 on unknown keys and only warns, so any output is a failure.
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def defaults(tmp_path_factory):
    return render(tmp_path_factory.mktemp("defaults"))


# --- Defaults ------------------------------------------------------------


def test_unit_runs_current_release_with_settings_file_state_file_and_hot_upgrade(defaults):
    current = defaults.dir.parent / "install" / "current"
    assert defaults.directive("ExecStart").split() == [
        "%s/bin/forkserver" % current, "--env-file", "/etc/forkserver/forkserver.env",
        "--state-file", "/run/forkserver/state.json", "--pid-file", "/run/forkserver/forkserver.pid"]
    # the server reads the settings file itself, at start and at every hot upgrade
    assert defaults.directives("EnvironmentFile") == []
    # forkserver chdirs to the app itself, so moving the app is no unit change
    assert defaults.directives("WorkingDirectory") == []
    assert defaults.directive("Type") == "notify"
    assert defaults.directive("NotifyAccess") == "main"
    assert defaults.directive("ExecReload").split() == [
        "%s/bin/forkserver-reload" % current, "/run/forkserver/state.json", "--timeout", "100"]
    # the state file lives in the runtime directory, writable under ProtectSystem=strict
    assert defaults.directive("RuntimeDirectory") == "forkserver"
    # systemd bounds ExecReload by TimeoutStartSec: longer than forkserver-reload waits
    assert int(defaults.directive("TimeoutStartSec")) > 100
    assert defaults.directive("User") == "forkserver"
    assert defaults.directive("Group") == "forkserver"
    for key, value in HARDENING.items():
        assert defaults.directive(key) == value, key


def test_unit_defaults_have_no_capabilities(defaults):
    assert defaults.directive("CapabilityBoundingSet") == ""
    assert defaults.directive("AmbientCapabilities") == ""
    assert "CAP_" not in defaults.unit


def test_unit_stop_timeout_and_limits_follow_the_settings(defaults):
    assert int(defaults.directive("TimeoutStopSec")) > 30  # graceful timeout
    assert int(defaults.directive("LimitNOFILE")) >= MAX_CHILDREN + 64
    assert int(defaults.directive("TasksMax")) > MAX_CHILDREN


def test_unit_keeps_fork_and_exec_allowed(defaults):
    filters = defaults.directives("SystemCallFilter")
    assert filters[0] == "@system-service"  # includes @process (fork, clone, execve)
    for deny in filters[1:]:
        assert deny.startswith("~")
        assert "@process" not in deny and "fork" not in deny and "execve" not in deny


@needs_systemd_analyze
def test_unit_defaults_pass_systemd_analyze_verify(defaults):
    systemd_verify(defaults.unit_path)


@needs_systemd_analyze
def test_unit_defaults_security_exposure_is_low(defaults):
    assert security_score(defaults.unit_path) <= 2.5


def test_env_file_defaults(defaults, tmp_path):
    env = parse_systemd_env_file(defaults.env_text)
    assert env == {
        "FORKSERVER_BIND": "0.0.0.0:8888",
        "FORKSERVER_BACKLOG": "1024",
        "FORKSERVER_MAX_CHILDREN": str(MAX_CHILDREN),
        "FORKSERVER_CHILD_TIMEOUT": "30",
        "FORKSERVER_GRACEFUL_TIMEOUT": "30",
        "FORKSERVER_KEEPALIVE": "5",
        "FORKSERVER_HEADER_TIMEOUT": "10",
        "FORKSERVER_MAX_BODY": "10485760",
        "FORKSERVER_ACCESS_LOG_FORMAT": "common",
        "FORKSERVER_LOG_LEVEL": "info",
        "FORKSERVER_CHECK_PATH": "/hello",
    }
    sourced = source_env_file(defaults.env_path)
    for key, value in env.items():
        assert sourced[key] == value
    r = render(tmp_path, {"forkserver_metrics_bind": "127.0.0.1:9888"})
    assert parse_systemd_env_file(r.env_text)["FORKSERVER_METRICS_BIND"] == "127.0.0.1:9888"


@pytest.mark.parametrize("extra, check_path", [
    ({"forkserver_verify_path": "/healthz"}, "/healthz"),
    ({"forkserver_verify_status": 401}, None),  # a check path that must fail is no check
    ({"forkserver_verify": False}, None),
    ({"forkserver_check_path": ""}, None),
    ({"forkserver_check_path": "/ready?deep=1"}, "/ready?deep=1"),
])
def test_check_path_follows_verify_unless_set(tmp_path, extra, check_path):
    env = parse_systemd_env_file(render(tmp_path, extra).env_text)
    assert env.get("FORKSERVER_CHECK_PATH") == check_path


def test_both_roles_and_the_server_agree_on_what_a_host_header_is():
    """The preflight of each role and the server's --check-host each keep their own pattern:
    a value one accepts and another refuses would pass preflight and fail the service."""
    import re

    import yaml

    from forkserver.config import host_header

    patterns = {role: yaml.safe_load((REPO / "roles" / role / "vars" / "main.yml").read_text())[key]
                for role, key in (("forkserver", "_forkserver_host_header_re"),
                                  ("forkserver_lb", "_forkserver_lb_host_header_re"))}
    samples = ["www.example.com", "example.com:8080", "[::1]:8888", "[::1]", "10.0.0.5:80", "a",
               "www.example.com/", "http://www.example.com", "a b", "example.com:port",
               "-example.com", "example-.com", "[::1", "example.com:123456", "[g::1]"]
    for sample in samples:
        try:
            server_accepts = host_header(sample) is not None
        except ValueError:
            server_accepts = False
        for role, pattern in patterns.items():
            assert bool(re.match(pattern, sample)) == server_accepts, (role, sample)


@pytest.mark.parametrize("check_host", ["www.example.com", "example.com:8080", "[::1]:8888"])
def test_check_host_goes_into_the_settings_file(tmp_path, check_host):
    env = parse_systemd_env_file(render(tmp_path, {"forkserver_check_host": check_host}).env_text)
    assert env["FORKSERVER_CHECK_HOST"] == check_host


@pytest.fixture(scope="module")
def launchd_defaults(tmp_path_factory):
    return render(tmp_path_factory.mktemp("launchd"), {"forkserver_service_manager": "launchd"})


def test_plist_defaults_is_a_valid_launch_daemon(launchd_defaults):
    defaults = launchd_defaults
    with open(defaults.plist_path, "rb") as f:
        plist = plistlib.load(f)
    current = defaults.dir.parent / "install" / "current"
    assert plist["Label"] == "org.forkserver.forkserver"
    # settings come from the file, so a changed setting leaves the plist alone
    assert plist["ProgramArguments"] == [
        "%s/bin/forkserver" % current, "--env-file", "/etc/forkserver/forkserver.env",
        "--state-file", "/var/db/org.forkserver.forkserver/state.json"]
    assert "EnvironmentVariables" not in plist and "WorkingDirectory" not in plist
    assert plist["UserName"] == "forkserver"
    assert plist["GroupName"] == "forkserver"
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"]
    assert plist["StandardOutPath"] == "/Library/Logs/forkserver/forkserver.out.log"
    assert plist["StandardErrorPath"] == "/Library/Logs/forkserver/forkserver.err.log"
    assert plist["SoftResourceLimits"]["NumberOfFiles"] >= 1024
    # Interactive: launchd does not throttle the job's CPU and I/O
    assert plist["ProcessType"] == "Interactive"
    # the parent, max_children children and 64 more
    for limits in (plist["SoftResourceLimits"], plist["HardResourceLimits"]):
        assert limits["NumberOfProcesses"] == MAX_CHILDREN + 64
    assert "AbandonProcessGroup" not in plist  # launchd ends what is left of the job with it


def test_newsyslog_rotates_both_launchd_logs_without_signal_or_compression(launchd_defaults):
    plist = launchd_defaults.plist
    entries = launchd_defaults.newsyslog_entries()
    assert [e[0] for e in entries] == [plist["StandardOutPath"], plist["StandardErrorPath"]]
    for name, owner, mode, count, size, when, flags in entries:
        assert owner == "forkserver:forkserver"
        assert mode == "640"
        assert int(count) == 5 and int(size) == 10240
        assert when == "*"  # by size only: a rotated file is written on until the next start
        assert flags == "N"  # no process to signal, and no compression of a file still open


def test_max_children_sets_the_plist_process_limit(tmp_path):
    r = render(tmp_path, {"forkserver_max_children": 100, "forkserver_launchd_process_type": "Standard"})
    assert r.plist["HardResourceLimits"]["NumberOfProcesses"] == 164
    assert r.plist["ProcessType"] == "Standard"


# --- Edge values -----------------------------------------------------------


def test_privileged_port_gets_only_net_bind_service(tmp_path):
    r = render(tmp_path, {"forkserver_bind": ["0.0.0.0:80", "[::]:8443"]})
    assert r.directive("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert r.directive("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert r.directives("PrivateUsers") == []  # a user namespace would void the capability
    assert parse_systemd_env_file(r.env_text)["FORKSERVER_BIND"] == "0.0.0.0:80,[::]:8443"
    if shutil.which("systemd-analyze"):
        systemd_verify(r.unit_path)
        assert security_score(r.unit_path) <= 2.5


def test_port_1024_needs_no_capability(tmp_path):
    r = render(tmp_path, {"forkserver_bind": ["127.0.0.1:1024"]})
    assert r.directive("CapabilityBoundingSet") == ""


def test_unix_socket_bind_is_writable_and_allowed(tmp_path):
    r = render(tmp_path, {"forkserver_bind": ["unix:/srv/sockets/forkserver.sock"]})
    assert parse_systemd_env_file(r.env_text)["FORKSERVER_BIND"] == "unix:/srv/sockets/forkserver.sock"
    assert "-/srv/sockets" in r.directive("ReadWritePaths").split()
    assert "AF_UNIX" in r.directive("RestrictAddressFamilies").split()
    assert r.directive("CapabilityBoundingSet") == ""
    if shutil.which("systemd-analyze"):
        systemd_verify(r.unit_path)


def test_custom_app_and_awkward_values(tmp_path):
    awkward = 'say "hi" $HOME \\ `date` & <b>'
    r = render(
        tmp_path,
        {
            "forkserver_app": "myapp.wsgi:application",
            "forkserver_app_dir": "/srv/myapp",
            "forkserver_access_log": "/var/log/forkserver/access.log",
            "forkserver_access_log_format": "combined",
            "forkserver_max_children": 4000,
            "forkserver_graceful_timeout": 90,
            "forkserver_extra_env": {"GREETING": awkward, "DJANGO_SETTINGS_MODULE": "myapp.settings"},
        },
    )
    env = parse_systemd_env_file(r.env_text)
    assert env["FORKSERVER_APP"] == "myapp.wsgi:application"
    assert env["FORKSERVER_CHDIR"] == "/srv/myapp"
    assert env["FORKSERVER_ACCESS_LOG"] == "/var/log/forkserver/access.log"
    assert env["FORKSERVER_ACCESS_LOG_FORMAT"] == "combined"
    assert env["GREETING"] == awkward
    assert source_env_file(r.env_path)["GREETING"] == awkward  # sh reads it the same way
    assert r.directives("WorkingDirectory") == []  # the server changes into FORKSERVER_CHDIR
    assert int(r.directive("TimeoutStopSec")) > 90
    assert int(r.directive("LimitNOFILE")) >= 4000 + 64
    assert int(r.directive("TasksMax")) > 4000
    with open(r.plist_path, "rb") as f:
        plist = plistlib.load(f)
    assert "EnvironmentVariables" not in plist and "WorkingDirectory" not in plist
    assert plist["ExitTimeOut"] > 90
    if shutil.which("systemd-analyze"):
        systemd_verify(r.unit_path)


# --- The env file against the real server ----------------------------------

FORKSERVER_BIN = Path(ansible_tool("ansible-playbook")).parent / "forkserver"


def check_config(env_path):
    """What the role's validate step runs, without the switch to the service user:
    forkserver reads the candidate file itself, on stdin."""
    script = 'exec "$2" --env-file /dev/stdin --check-config < "$1"'
    return subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(env_path), str(FORKSERVER_BIN)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.skipif(not FORKSERVER_BIN.exists(), reason="forkserver is not installed next to ansible")
def test_rendered_settings_pass_forkserver_check_config(defaults, tmp_path):
    proc = check_config(defaults.env_path)
    assert proc.returncode == 0, proc.stderr
    r = render(tmp_path, {"forkserver_bind": ["127.0.0.1:8080", "unix:/tmp/fs.sock"]})
    proc = check_config(r.env_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not FORKSERVER_BIN.exists(), reason="forkserver is not installed next to ansible")
def test_bad_setting_is_refused_by_check_config(tmp_path):
    # The role's preflight would stop this earlier; the validate step is the
    # second line of defence and must refuse it too.
    r = render(tmp_path, {"forkserver_max_body": -5})
    proc = check_config(r.env_path)
    assert proc.returncode != 0
    assert "FORKSERVER_MAX_BODY" in proc.stderr

    r2_dir = tmp_path / "app"
    r2_dir.mkdir()
    r2 = render(r2_dir, {"forkserver_app": "no_such_module_here:app"})
    proc = check_config(r2.env_path)
    assert proc.returncode == 1, proc.stderr


@pytest.mark.skipif(not FORKSERVER_BIN.exists(), reason="forkserver is not installed next to ansible")
def test_proxy_protocol_balancers_reach_the_server(tmp_path):
    r = render(tmp_path, {"forkserver_proxy_protocol_from": ["10.89.0.10", "fd00:89::/64"]})
    assert parse_systemd_env_file(r.env_text)["FORKSERVER_PROXY_PROTOCOL_FROM"] == "10.89.0.10,fd00:89::/64"
    proc = check_config(r.env_path)
    assert proc.returncode == 0, proc.stderr
    # The preflight pattern lets host bits through; the server names them.
    wrong_dir = tmp_path / "wrong"
    wrong_dir.mkdir()
    wrong = render(wrong_dir, {"forkserver_proxy_protocol_from": ["10.89.0.10/24"]})
    proc = check_config(wrong.env_path)
    assert proc.returncode == 2 and "FORKSERVER_PROXY_PROTOCOL_FROM" in proc.stderr, proc.stderr


# --- Wrong variables are refused before any change ---------------------------

INCLUDE_ROLE = """\
- name: Apply the role with a wrong variable
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: forkserver
"""


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"forkserver_log_level": "loud"}, "forkserver_log_level"),
        ({"forkserver_max_children": "lots"}, "forkserver_max_children"),
        ({"forkserver_service_manager": "upstart"}, "forkserver_service_manager"),
        ({"forkserver_access_log_format": "json"}, "forkserver_access_log_format"),
        ({"forkserver_bind": ["localhost"]}, "forkserver_bind"),
        ({"forkserver_bind": ["0.0.0.0:70000"]}, "forkserver_bind"),
        ({"forkserver_bind": ["unix:relative.sock"]}, "forkserver_bind"),
        ({"forkserver_max_children": 0}, "forkserver_max_children"),
        ({"forkserver_app": "not an app"}, "forkserver_app"),
        ({"forkserver_proxy_protocol_from": ["lb1.example.com"]}, "forkserver_proxy_protocol_from"),
        ({"forkserver_proxy_protocol_from": {"lb": "10.0.0.5"}}, "forkserver_proxy_protocol_from"),
        ({"forkserver_metrics_bind": "9888"}, "forkserver_metrics_bind"),
        ({"forkserver_metrics_bind": "127.0.0.1:0"}, "forkserver_metrics_bind"),
        ({"forkserver_metrics_bind": "0.0.0.0:8888"}, "forkserver_metrics_bind"),
        ({"forkserver_state": "gone"}, "forkserver_state"),
        ({"forkserver_releases_kept": 0}, "forkserver_releases_kept"),
        ({"forkserver_venv": "/opt/fs"}, "forkserver_venv"),
        ({"forkserver_install_dir": "opt/fs"}, "forkserver_install_dir"),
        ({"forkserver_verify_timeout": 0}, "forkserver_verify_timeout"),
        ({"forkserver_verify_retries": -1}, "forkserver_verify_retries"),
        ({"forkserver_verify_delay": "soon"}, "forkserver_verify_delay"),
        ({"forkserver_verify_retry_statuses": "503"}, "forkserver_verify_retry_statuses"),
        ({"forkserver_verify_retry_statuses": [503, 700]}, "forkserver_verify_retry_statuses"),
        ({"forkserver_verify_retry_statuses": [200, 503]}, "forkserver_verify_retry_statuses"),
        ({"forkserver_check_path": "healthz"}, "forkserver_check_path"),
        ({"forkserver_check_path": "/health check"}, "forkserver_check_path"),
        ({"forkserver_check_host": "www.example.com/"}, "forkserver_check_host"),
        ({"forkserver_check_host": "http://www.example.com"}, "forkserver_check_host"),
    ],
)
def test_wrong_variable_fails_naming_it(tmp_path, extra, name):
    assert_refused_naming(run_playbook(tmp_path, INCLUDE_ROLE, extra, json_output=True), name)


def test_good_variables_pass_the_checks(tmp_path):
    proc = run_playbook(
        tmp_path,
        INCLUDE_ROLE,
        {"forkserver_log_level": "debug", "forkserver_bind": ["[::1]:8080", "unix:/run/fs/fs.sock"]},
        json_output=True,
    )
    report = json.loads(proc.stdout)
    names = {
        task_name(task): task["hosts"].get("localhost", {})
        for play in report["plays"]
        for task in play["tasks"]
    }
    spec = [v for k, v in names.items() if k.startswith("Validating arguments")]
    assert spec and not spec[0].get("failed"), proc.stdout
    for check in ("Check forkserver_bind entries", "Check numeric settings",
                  "Check forkserver_app, forkserver_app_dir and forkserver_access_log"):
        assert check in names and not names[check].get("failed"), check


# --- Playbook checks -----------------------------------------------------------


def test_site_playbook_syntax(tmp_path):
    proc = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", str(REPO / "inventory.example"), "--syntax-check",
         str(REPO / "site.yml")],
        cwd=REPO,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_passes_ansible_lint_production_profile(tmp_path):
    proc = subprocess.run(
        [ansible_tool("ansible-lint"), "--nocolor", "--profile", "production",
         "site.yml", str(ROLE.relative_to(REPO)), "roles/forkserver_lb"],
        cwd=REPO,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Host checks of the preflight ---------------------------------------------
# Run on this machine: on Linux against the launchd path of the tests' stand-in
# (forkserver_test_launchd_standin), on a Mac (the macOS workflow) natively.

PREFLIGHT = """\
- name: Run the forkserver role's preflight
  hosts: localhost
  gather_facts: true
  tasks:
    - name: Include the preflight
      ansible.builtin.include_role:
        name: forkserver
        tasks_from: preflight.yml

    - name: Show the Python chosen
      ansible.builtin.debug:
        var: _forkserver_target
"""
DARWIN = sys.platform == "darwin"


def preflight(tmp_path, extra):
    variables = {"forkserver_service_manager": "launchd", "forkserver_test_launchd_standin": True,
                 "forkserver_launchd_log_dir": str(tmp_path / "logs")}
    variables.update(extra)
    proc = run_playbook(tmp_path, PREFLIGHT, variables, json_output=True)
    failed, stats = failures(proc.stdout)
    assert stats["changed"] == 0
    return proc, failed


def shown_target(proc):
    for play in json.loads(proc.stdout)["plays"]:
        for task in play["tasks"]:
            if task_name(task) == "Show the Python chosen":
                return task["hosts"]["localhost"]["_forkserver_target"]
    raise AssertionError(proc.stdout)


@pytest.mark.parametrize("extra, name", [
    ({"forkserver_launchd_log_dir": "/no-such-parent/forkserver"}, "forkserver_launchd_log_dir"),
    ({"forkserver_python": "/no/such/python3"}, "forkserver_python"),
    ({"forkserver_python": "/bin/echo"}, "forkserver_python"),
])
def test_wrong_host_setting_fails_in_preflight_naming_it(tmp_path, extra, name):
    proc, failed = preflight(tmp_path, extra)
    assert failed, proc.stdout
    task, message = failed[-1]
    assert task.startswith("Check "), task
    assert message.startswith(name + ":") and "\n" not in message.strip(), message


def test_launchd_on_linux_only_with_the_test_variable(tmp_path):
    proc, failed = preflight(tmp_path, {"forkserver_test_launchd_standin": False})
    if DARWIN:
        assert failed == [], failed
    else:
        assert failed[-1][0] == "Check forkserver_service_manager launchd is on macOS", failed
        assert failed[-1][1].startswith("forkserver_service_manager: launchd needs macOS")


def test_max_children_is_checked_against_the_process_limits_of_macos(tmp_path):
    proc, failed = preflight(tmp_path, {"forkserver_max_children": 100000})
    if DARWIN:
        task, message = failed[-1]
        assert task == "Check forkserver_max_children fits kern.maxprocperuid and kern.maxproc", task
        assert message.startswith("forkserver_max_children: 100000") and "kern.maxprocperuid (" in message
    else:
        assert failed == [], failed  # Linux: systemd's TasksMax grows with it


def test_preflight_chooses_a_python_the_service_user_can_run(tmp_path):
    proc, failed = preflight(tmp_path, {})
    assert failed == [], failed
    target = shown_target(proc)
    assert target["version_ok"]
    if DARWIN:
        # Homebrew's or python.org's, never Apple's 3.9 nor one under a home directory
        assert target["command"].startswith(("/opt/homebrew/bin/", "/usr/local/bin/",
                                             "/Library/Frameworks/Python.framework/")), target
        assert target["usable_by_all"], target
        assert any(tag.startswith("macosx_") for tag in target["platforms"])
    else:
        assert target["command"] == "python3"


def test_probe_says_a_python_in_a_private_directory_is_not_usable_by_all(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-m", "venv", "--copies", "--without-pip", str(private / "venv")],
                   check=True, timeout=120)
    probe = ROLE / "files" / "probe_python.py"
    done = subprocess.run([str(private / "venv" / "bin" / "python"), str(probe), "private-python"],
                          capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(done.stdout)
    assert seen["command"] == "private-python"
    assert seen["usable_by_all"] is False


# --- Where the wheel comes from -----------------------------------------------


def run_preflight_of_role_at(tmp_path, roles_dir, extra):
    variables = {"forkserver_service_manager": "launchd", "forkserver_test_launchd_standin": True,
                 "forkserver_launchd_log_dir": str(tmp_path / "logs")}
    variables.update(extra)
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(PREFLIGHT)
    env = ansible_env(tmp_path)
    env.update(ANSIBLE_ROLES_PATH=str(roles_dir), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    proc = subprocess.run(
        [ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
         "-e", json.dumps(variables)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return failures(proc.stdout)


def test_role_copied_into_another_project_asks_for_the_source(tmp_path):
    """A copy of the role outside a forkserver checkout (vendored into another
    project, installed from Galaxy) must not build that project: the
    preflight stops with one line saying what to set."""
    consumer = tmp_path / "consumer"
    shutil.copytree(ROLE, consumer / "roles" / "forkserver")
    (consumer / "pyproject.toml").write_text('[project]\nname = "consumer"\nversion = "1.0"\n')
    failed, stats = run_preflight_of_role_at(tmp_path, consumer / "roles", {})
    assert failed, "the preflight accepted a project that is not forkserver"
    task, message = failed[-1]
    assert task == "Check forkserver_source_dir", task
    assert message.startswith("forkserver_source_dir: %s is not a forkserver checkout" % consumer.resolve())
    assert "forkserver_package" in message and "\n" not in message.strip()
    assert stats["changed"] == 0

    # Told where the checkout is, or given a package, it goes on.
    failed, _ = run_preflight_of_role_at(tmp_path, consumer / "roles", {"forkserver_source_dir": str(REPO)})
    assert failed == [], failed
    failed, _ = run_preflight_of_role_at(tmp_path, consumer / "roles", {"forkserver_package": "forkserver==0.1.0"})
    assert failed == [], failed


def test_role_inside_the_checkout_finds_it(tmp_path):
    failed, _ = run_preflight_of_role_at(tmp_path, REPO / "roles", {})
    assert failed == [], failed
