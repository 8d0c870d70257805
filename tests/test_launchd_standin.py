"""The launchd stand-in of the molecule scenario "macos", as an ordinary process.

The stand-in must fail where launchd fails, or the scenario would hide what
breaks on a real Mac: bootout returns before the job has exited and the label
stays busy until then, the legacy load fails silently meanwhile, a disabled
label is not loaded, the job's process group is sent SIGTERM when the job
dies, and a plist key it does not model is refused. The last tests run the
two restart sequences through Ansible against it: the one of
community.general.launchd loses the job, the role's keeps it.
"""

import json
import os
import plistlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from role_helpers import ansible_env, ansible_tool

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "molecule" / "macos" / "launchd"
LAUNCHD = STANDIN / "launchd-standin"
LAUNCHCTL = STANDIN / "launchctl-standin"
# The stand-in is Linux-only: it is PID 1 of a Linux container.
pytestmark = [pytest.mark.deploy,  # runs Ansible: the deploy extra
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="the launchd stand-in runs in Linux containers")]

LABEL = "org.example.drain"
# A job that takes DRAIN seconds to exit after SIGTERM, as a server finishing
# its requests does, and logs "PID started" and "PID drained".
DRAIN = 2.0
JOB = """\
import os, signal, sys, time
log = sys.argv[1]
def say(what):
    with open(log, "a") as f:
        f.write("%d %s\\n" % (os.getpid(), what))
def term(*_):
    time.sleep(float(sys.argv[2]))
    say("drained")
    sys.exit(0)
def hup(*_):
    say("SIGHUP")
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGHUP, hup)
say("started")
while True:
    time.sleep(1)
"""


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class StandIn:
    """launchd-standin with its own socket, daemon directory and overrides, and
    a bin directory whose launchctl is launchctl-standin (for Ansible)."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.daemons = tmp_path / "LaunchDaemons"
        self.daemons.mkdir()
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "launchctl").symlink_to(LAUNCHCTL)
        self.env = dict(os.environ,
                        LAUNCHD_STANDIN_SOCKET=str(tmp_path / "launchd.sock"),
                        LAUNCHD_STANDIN_OVERRIDES=str(tmp_path / "overrides.json"),
                        LAUNCHD_STANDIN_DAEMON_DIRS=str(self.daemons))
        self.log_path = tmp_path / "launchd.log"
        self.proc = subprocess.Popen([sys.executable, str(LAUNCHD), "--no-init"], env=self.env,
                                     stderr=open(self.log_path, "w"))
        wait_for(lambda: self("list", check=False).returncode == 0)

    def __call__(self, *args, check=True):
        r = subprocess.run([sys.executable, str(LAUNCHCTL), *args], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
        return r

    def pid(self, label=LABEL):
        """The job's pid; None when loaded but not running; "unloaded"."""
        r = self("print", "system/" + label, check=False)
        if r.returncode == 113:
            return "unloaded"
        assert r.returncode == 0, r.stderr
        for line in r.stdout.splitlines():
            if line.strip().startswith("pid = "):
                return int(line.split("=")[1])
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def launchd(tmp_path):
    standin = StandIn(tmp_path)
    yield standin
    standin.stop()


def drain_job(standin, directory=None, drain=DRAIN, **keys):
    """Write the plist of the draining job; return (plist path, job log path)."""
    directory = directory or standin.daemons
    directory.mkdir(parents=True, exist_ok=True)
    log = standin.tmp / "job.log"
    script = standin.tmp / "job.py"
    script.write_text(JOB)
    plist = directory / (LABEL + ".plist")
    plist.write_bytes(plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": [sys.executable, str(script), str(log), str(drain)],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 1,
        "ExitTimeOut": 10,
        **keys,
    }))
    return plist, log


def events(log):
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def started(standin, log):
    """The job's pid once it has logged "started", when its handlers are in place.

    Its pid is known earlier, but a SIGTERM or SIGHUP sent before the job's
    Python installs its handlers meets the default action, which ends it.
    """
    def pid_if_started():
        pid = standin.pid()
        return pid if isinstance(pid, int) and [str(pid), "started"] in events(log) else None
    wait_for(pid_if_started)
    return pid_if_started()


def test_stand_ins_say_so_first():
    for path in (LAUNCHD, LAUNCHCTL):
        head = "".join(path.read_text().splitlines(keepends=True)[:3])
        assert "STAND-IN" in head, path


def test_stand_in_runs_a_job_as_its_plist_says(launchd, tmp_path):
    out = tmp_path / "env.json"
    plist = launchd.daemons / "org.example.job.plist"
    plist.write_bytes(plistlib.dumps({
        "Label": "org.example.job",
        "ProgramArguments": [sys.executable, "-c",
                             "import json, os, sys, time; "
                             "json.dump({'env': dict(os.environ), 'argv': sys.argv, 'cwd': os.getcwd()}, "
                             "open(sys.argv[1], 'w')); time.sleep(600)", str(out)],
        "EnvironmentVariables": {"FORKSERVER_BIND": "0.0.0.0:8888"},
        "WorkingDirectory": str(tmp_path),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 1,
        "StandardErrorPath": str(tmp_path / "job.err"),
        "SoftResourceLimits": {"NumberOfProcesses": 500},
        "HardResourceLimits": {"NumberOfProcesses": 600},
    }))

    launchd("bootstrap", "system", str(plist))
    wait_for(lambda: out.exists() and out.stat().st_size > 0)
    seen = json.loads(out.read_text())
    assert seen["env"]["FORKSERVER_BIND"] == "0.0.0.0:8888"
    assert seen["cwd"] == str(tmp_path)
    assert seen["argv"][-1] == str(out)

    pid = launchd.pid("org.example.job")
    assert isinstance(pid, int)
    assert psutil.Process(pid).rlimit(psutil.RLIMIT_NPROC) == (500, 600)
    listed = [line.split("\t") for line in launchd("list").stdout.splitlines()[1:]]
    assert [str(pid), "0", "org.example.job"] in listed

    # KeepAlive {SuccessfulExit: false}: a SIGKILL is no success, so it comes back
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: launchd.pid("org.example.job") not in (None, pid))
    assert "last exit code = -9" in launchd("print", "system/org.example.job").stdout

    # a second bootstrap of a loaded label fails, as launchctl's does
    again = launchd("bootstrap", "system", str(plist), check=False)
    assert again.returncode == 5 and "Bootstrap failed: 5" in again.stderr

    launchd("bootout", "system/org.example.job")
    wait_for(lambda: launchd.pid("org.example.job") == "unloaded")
    gone = launchd("print", "system/org.example.job", check=False)
    assert gone.returncode == 113


def test_every_answer_says_stand_in(launchd):
    plist, _ = drain_job(launchd)
    answers = [
        launchd("bootstrap", "system", str(plist)),
        launchd("list"),
        launchd("print", "system/" + LABEL),
        launchd("print-disabled", "system"),
        launchd("kill", "SIGHUP", "system/" + LABEL),
        launchd("print", "system/org.example.none", check=False),
        launchd("bootstrap", "system", str(plist), check=False),
        launchd("load", str(plist)),
        launchd("frobnicate", check=False),
    ]
    assert [a.returncode for a in answers] == [0, 0, 0, 0, 0, 113, 5, 0, 64]
    for answer in answers:
        if answer.stdout:
            assert answer.stdout.splitlines()[0].endswith(" (stand-in)"), answer.stdout
        for line in answer.stderr.splitlines():
            assert line.endswith(" (stand-in)"), answer.stderr
    assert sum(bool(a.stdout) for a in answers) == 3
    assert sum(bool(a.stderr) for a in answers) == 4
    # the subcommands the role no longer uses are gone
    for gone in (["stop", LABEL], ["version"], ["kickstart", "-k", "system/" + LABEL]):
        assert launchd(*gone, check=False).returncode == 64, gone


def test_bootout_returns_before_the_job_exits_and_the_label_stays_busy(launchd):
    plist, log = drain_job(launchd)
    launchd("bootstrap", "system", str(plist))
    old = started(launchd, log)

    start = time.monotonic()
    launchd("bootout", "system/" + LABEL)
    assert time.monotonic() - start < DRAIN / 2, "bootout waited for the job"
    assert launchd.pid() == old  # still there, draining
    busy = launchd("bootstrap", "system", str(plist), check=False)
    assert busy.returncode == 5 and "still exiting" in busy.stderr
    again = launchd("bootout", "system/" + LABEL, check=False)
    assert again.returncode == 37

    wait_for(lambda: launchd.pid() == "unloaded", timeout=DRAIN + 5)
    assert events(log) == [[str(old), "started"], [str(old), "drained"]]
    launchd("bootstrap", "system", str(plist))
    wait_for(lambda: isinstance(launchd.pid(), int))


def test_exit_timeout_ends_a_job_that_ignores_sigterm(launchd, tmp_path):
    plist = launchd.daemons / "org.example.stubborn.plist"
    plist.write_bytes(plistlib.dumps({
        "Label": "org.example.stubborn",
        "ProgramArguments": ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"],
        "RunAtLoad": True,
        "ExitTimeOut": 1,
    }))
    launchd("bootstrap", "system", str(plist))
    wait_for(lambda: isinstance(launchd.pid("org.example.stubborn"), int))
    launchd("bootout", "system/org.example.stubborn")
    assert isinstance(launchd.pid("org.example.stubborn"), int)
    wait_for(lambda: launchd.pid("org.example.stubborn") == "unloaded", timeout=10)
    assert "outlived its ExitTimeOut; SIGKILL" in launchd.log_path.read_text()


def test_legacy_load_while_the_old_instance_exits_fails_and_exits_0(launchd):
    plist, log = drain_job(launchd)
    launchd("bootstrap", "system", str(plist))
    old = started(launchd, log)

    unload = launchd("unload", str(plist))
    load = launchd("load", str(plist))
    assert unload.returncode == 0 and unload.stderr == ""
    assert load.returncode == 0 and "Load failed: 5" in load.stderr
    wait_for(lambda: launchd.pid() == "unloaded", timeout=DRAIN + 5)
    assert events(log) == [[str(old), "started"], [str(old), "drained"]]


def test_a_disabled_label_is_not_loaded_until_enabled(launchd):
    plist, _ = drain_job(launchd)
    launchd("disable", "system/" + LABEL)
    assert f'"{LABEL}" => disabled' in launchd("print-disabled", "system").stdout

    refused = launchd("bootstrap", "system", str(plist), check=False)
    assert refused.returncode == 5 and "disabled" in refused.stderr
    legacy = launchd("load", str(plist))
    assert legacy.returncode == 0 and "Load failed" in legacy.stderr
    assert launchd.pid() == "unloaded"

    launchd("enable", "system/" + LABEL)
    launchd("bootstrap", "system", str(plist))
    wait_for(lambda: isinstance(launchd.pid(), int))


def test_kill_signals_the_main_process(launchd):
    plist, log = drain_job(launchd)
    launchd("bootstrap", "system", str(plist))
    pid = started(launchd, log)
    launchd("kill", "SIGHUP", "system/" + LABEL)
    wait_for(lambda: [str(pid), "SIGHUP"] in events(log))
    assert launchd.pid() == pid


@pytest.mark.parametrize("abandon", [False, True])
def test_the_job_process_group_gets_sigterm_when_the_job_dies(launchd, tmp_path, abandon):
    # The job starts a grandchild in its process group, then exits.
    marker = tmp_path / "grandchild"
    plist = launchd.daemons / "org.example.group.plist"
    plist.write_bytes(plistlib.dumps({
        "Label": "org.example.group",
        "ProgramArguments": ["/bin/sh", "-c", f"sleep 600 & echo $! > {marker}; sleep 0.5; exit 0"],
        "RunAtLoad": True,
        "AbandonProcessGroup": abandon,
    }))
    launchd("bootstrap", "system", str(plist))
    wait_for(lambda: marker.exists() and marker.read_text().strip())
    grandchild = psutil.Process(int(marker.read_text()))
    wait_for(lambda: "org.example.group exited: status 0" in launchd.log_path.read_text())

    def gone():
        try:
            return grandchild.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    if abandon:
        time.sleep(0.5)
        assert not gone()
        grandchild.kill()
    else:
        wait_for(gone)


def test_plist_keys_the_stand_in_does_not_model_are_refused(launchd):
    plist, _ = drain_job(launchd, ProcessType="Interactive")  # accepted, and ignored
    launchd("bootstrap", "system", str(plist))
    launchd("bootout", "system/" + LABEL)
    wait_for(lambda: launchd.pid() == "unloaded", timeout=DRAIN + 5)

    for extra, named in (({"Sockets": {}}, "Sockets"),
                         ({"HardResourceLimits": {"Unknown": 1}}, "HardResourceLimits.Unknown")):
        plist, _ = drain_job(launchd, **extra)
        refused = launchd("bootstrap", "system", str(plist), check=False)
        assert refused.returncode == 5 and named in refused.stderr, refused.stderr
        assert launchd.pid() == "unloaded"


def test_stand_in_loads_daemons_at_boot_and_stops_them_on_sigterm(tmp_path):
    daemons = tmp_path / "LaunchDaemons"
    daemons.mkdir()
    marker = tmp_path / "started"
    (daemons / "org.example.boot.plist").write_bytes(plistlib.dumps({
        "Label": "org.example.boot",
        "ProgramArguments": ["/bin/sh", "-c", f"echo $$ > {marker}; exec sleep 600"],
        "RunAtLoad": True,
    }))
    env = dict(os.environ,
               LAUNCHD_STANDIN_SOCKET=str(tmp_path / "launchd.sock"),
               LAUNCHD_STANDIN_OVERRIDES=str(tmp_path / "overrides.json"),
               LAUNCHD_STANDIN_DAEMON_DIRS=str(daemons))
    proc = subprocess.Popen([sys.executable, str(LAUNCHD), "--no-init"], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: marker.exists() and marker.read_text().strip())
        pid = int(marker.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        if proc.poll() is None:
            proc.kill()


# --- The two restart sequences, through Ansible ------------------------------

OLD_RESTART = """\
- name: Restart as community.general.launchd does (unload, load, start)
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Restart the job
      community.general.launchd:
        name: {label}
        state: restarted
"""

ROLE_RESTART = """\
- name: Restart as the forkserver role's handler does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's launchd restart
      ansible.builtin.include_role:
        name: forkserver
        tasks_from: launchd_restart.yml
"""


def playbook(standin, text, extra_vars=None):
    path = standin.tmp / "playbook.yml"
    path.write_text(text)
    env = ansible_env(standin.tmp)
    env.update(standin.env, PATH=f"{standin.bin}:{env['PATH']}", HOME=str(standin.tmp / "home"))
    cmd = [ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    return subprocess.run(cmd, cwd=standin.tmp, env=env, capture_output=True, text=True, timeout=300)


def running_job(standin, drain=DRAIN):
    # community.general.launchd finds plists in ~/Library/LaunchAgents, among others
    plist, log = drain_job(standin, directory=standin.tmp / "home" / "Library" / "LaunchAgents",
                           drain=drain)
    standin("bootstrap", "system", str(plist))
    return plist, log, started(standin, log)


def test_the_old_restart_sequence_loses_a_draining_job_and_reports_success(launchd):
    plist, log, old = running_job(launchd)
    done = playbook(launchd, OLD_RESTART.format(label=LABEL))
    assert done.returncode == 0, done.stdout + done.stderr  # Ansible says all is well...
    wait_for(lambda: launchd.pid() == "unloaded", timeout=DRAIN + 5)
    time.sleep(1)
    assert launchd.pid() == "unloaded"  # ...but the job is gone, and stays gone
    assert events(log) == [[str(old), "started"], [str(old), "drained"]]


def role_vars(plist):
    return {"forkserver_launchd_label": LABEL, "_forkserver_plist_file": str(plist),
            "forkserver_graceful_timeout": 10}


def test_the_role_restart_waits_for_the_draining_job_then_loads_it_again(launchd):
    plist, log, old = running_job(launchd, drain=4)
    done = playbook(launchd, ROLE_RESTART, role_vars(plist))
    assert done.returncode == 0, done.stdout + done.stderr
    new = launchd.pid()
    assert isinstance(new, int) and new != old
    wait_for(lambda: len(events(log)) == 3)
    # the new instance started only after the old one had drained and exited
    assert events(log) == [[str(old), "started"], [str(old), "drained"], [str(new), "started"]]


def test_the_role_restart_enables_a_disabled_label(launchd):
    plist, log, old = running_job(launchd)
    launchd("bootout", "system/" + LABEL)
    launchd("disable", "system/" + LABEL)
    wait_for(lambda: launchd.pid() == "unloaded", timeout=DRAIN + 5)

    done = playbook(launchd, ROLE_RESTART, role_vars(plist))
    assert done.returncode == 0, done.stdout + done.stderr
    assert isinstance(launchd.pid(), int)
    assert f'"{LABEL}" => enabled' in launchd("print-disabled", "system").stdout
