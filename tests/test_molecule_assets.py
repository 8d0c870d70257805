"""Fast checks of the molecule scenarios' own scripts and configuration.

The scenarios themselves (molecule/run-all) boot containers and take
minutes; these tests only make sure their pieces are sound: the image build
script, the scenario files, and the launchd stand-in of the macos scenario,
which is exercised here as an ordinary process with a throw-away job.
"""

import json
import os
import plistlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # comes with ansible-core (the deploy extra)

ROOT = Path(__file__).resolve().parent.parent
MOLECULE = ROOT / "molecule"
LAUNCHD = MOLECULE / "macos" / "launchd" / "launchd"
LAUNCHCTL = MOLECULE / "macos" / "launchd" / "launchctl"
# The stand-in is Linux-only: it is PID 1 of a Linux container.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the launchd stand-in runs in Linux containers")
REQUIRED_STEPS = ["dependency", "create", "prepare", "converge", "idempotence", "verify", "destroy"]


def scenario(name):
    return yaml.safe_load((MOLECULE / name / "molecule.yml").read_text())


@pytest.mark.parametrize("script", ["images/build", "run-all", "fleet/host-setup"])
def test_shell_scripts_parse_and_are_executable(script):
    path = MOLECULE / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_build_script_pins_ubuntu_keyring_and_checks_signatures():
    text = (MOLECULE / "images" / "build").read_text()
    assert re.search(r"^UBUNTU_KEYRING_SHA256=[0-9a-f]{64}$", text, re.M)
    assert re.search(r"^UBUNTU_ARCHIVE_KEY_FPR=[0-9A-F]{40}$", text, re.M)
    assert "sha256sum --check" in text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not any("--no-check-gpg" in line for line in code)
    assert sum("--keyring=" in line for line in code) >= 3


def test_build_script_help():
    out = subprocess.run([str(MOLECULE / "images" / "build"), "--help"],
                         check=True, capture_output=True, text=True).stdout
    assert all(name in out for name in ("noble", "jammy", "bookworm", "macos"))


def build_keys(script):
    out = subprocess.run(["bash", str(script), "--keys"], check=True, capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines())


def test_build_keys_are_per_image(tmp_path):
    """Changing one image's recipe changes that image's key only, so the
    other images (shared by every checkout on the machine) stay cached."""
    script = MOLECULE / "images" / "build"
    keys = build_keys(script)
    assert set(keys) == {"noble", "jammy", "bookworm", "macos"}
    assert len(set(keys.values())) == 4
    changed = tmp_path / "build"
    text = script.read_text()
    assert text.count("bootstrap_ubuntu jammy ") == 1
    changed.write_text(text.replace("bootstrap_ubuntu jammy ", "FORKSERVER_X=1 bootstrap_ubuntu jammy "))
    changed_keys = build_keys(changed)
    assert changed_keys["jammy"] != keys["jammy"]
    assert {k: v for k, v in changed_keys.items() if k != "jammy"} == {k: v for k, v in keys.items() if k != "jammy"}
    # A mirror is part of the recipes that use it, and of no other.
    env = dict(os.environ, FORKSERVER_UBUNTU_MIRROR="http://mirror.example/ubuntu")
    out = subprocess.run(["bash", str(script), "--keys"], check=True, capture_output=True, text=True,
                         env=env).stdout
    mirrored = dict(line.split() for line in out.splitlines())
    assert mirrored["noble"] != keys["noble"] and mirrored["jammy"] != keys["jammy"]
    assert mirrored["bookworm"] == keys["bookworm"] and mirrored["macos"] == keys["macos"]


@pytest.mark.parametrize("name", ["default", "macos", "macos-host", "fleet"])
def test_scenarios_run_the_whole_sequence(name):
    sequence = scenario(name)["scenario"]["test_sequence"]
    steps = iter(sequence)
    assert all(step in steps for step in REQUIRED_STEPS), sequence  # in this order


def test_default_scenario_targets_noble_and_bookworm_under_systemd():
    conf = scenario("default")
    platforms = {p["name"]: p for p in conf["platforms"]}
    assert set(platforms) == {"forkserver-noble", "forkserver-bookworm"}
    ports = set()
    for p in platforms.values():
        assert p["systemd"] == "always" and p["command"] == "/sbin/init"
        assert "--runtime=runc" in p["extra_opts"]
        assert not p.get("privileged")
        (published,) = p["published_ports"]
        assert published.startswith("127.0.0.1:")
        ports.add(published.split(":")[1])
    assert len(ports) == 2
    assert conf["provisioner"]["inventory"]["group_vars"]["all"]["fs_manager"] == "systemd"


def test_fleet_scenario_three_distributions_behind_one_balancer():
    conf = scenario("fleet")
    platforms = {p["name"]: p for p in conf["platforms"]}
    assert set(platforms) == {"fleet-lb", "fleet-noble", "fleet-jammy", "fleet-bookworm"}
    others = {p["name"] for name in ("default", "macos") for p in scenario(name)["platforms"]}
    assert not others & set(platforms), "container names shared with another scenario"
    other_ports = {p["published_ports"][0].split(":")[1] for name in ("default", "macos")
                   for p in scenario(name)["platforms"]}
    ports, addresses = set(), set()
    for p in platforms.values():
        assert p["systemd"] == "always" and p["command"] == "/sbin/init"
        assert "--runtime=runc" in p["extra_opts"] and "--network=fleet-net" in p["extra_opts"]
        assert not p.get("privileged")
        (published,) = p["published_ports"]
        assert published.startswith("127.0.0.1:")
        ports.add(published.split(":")[1])
        addresses.add(next(o for o in p["extra_opts"] if o.startswith("--ip=")))
    assert len(ports) == 4 and not ports & other_ports
    assert len(addresses) == 4
    assert platforms["fleet-lb"]["groups"] == ["forkserver_lbs"]
    assert {p["groups"][0] for n, p in platforms.items() if n != "fleet-lb"} == {"forkservers"}
    # three distributions among the forkserver hosts
    images = {p["image"] for n, p in platforms.items() if n != "fleet-lb"}
    assert len(images) == 3
    inventory = conf["provisioner"]["inventory"]
    lb_ip = next(o for o in platforms["fleet-lb"]["extra_opts"] if o.startswith("--ip=")).split("=")[1]
    assert inventory["group_vars"]["forkservers"]["forkserver_proxy_protocol_from"] == [lb_ip]


def test_macos_scenario_boots_the_launchd_stand_in():
    conf = scenario("macos")
    (p,) = conf["platforms"]
    assert "launchd-standin/launchd" in p["command"]
    assert "--sysctl=net.core.somaxconn=128" in p["extra_opts"]
    assert not p.get("privileged")
    assert p["published_ports"][0].startswith("127.0.0.1:")
    group = conf["provisioner"]["inventory"]["group_vars"]["all"]
    assert group["forkserver_service_manager"] == "launchd"


def test_macos_host_scenario_only_runs_on_darwin():
    conf = scenario("macos-host")
    assert conf["driver"]["options"]["managed"] is False
    (host_vars,) = conf["provisioner"]["inventory"]["host_vars"].values()
    assert host_vars["fs_only_on"] == "Darwin"


def test_stand_ins_say_so_first():
    for path in (LAUNCHD, LAUNCHCTL):
        head = "".join(path.read_text().splitlines(keepends=True)[:3])
        assert "STAND-IN" in head, path


@pytest.fixture
def launchd(tmp_path):
    """The launchd stand-in as an ordinary process, with its own socket,
    daemon directory and overrides file under tmp_path."""
    daemons = tmp_path / "LaunchDaemons"
    daemons.mkdir()
    env = dict(os.environ,
               LAUNCHD_STANDIN_SOCKET=str(tmp_path / "launchd.sock"),
               LAUNCHD_STANDIN_OVERRIDES=str(tmp_path / "overrides.json"),
               LAUNCHD_STANDIN_DAEMON_DIRS=str(daemons))
    proc = subprocess.Popen([sys.executable, str(LAUNCHD), "--no-init"], env=env,
                            stderr=open(tmp_path / "launchd.log", "w"))

    def ctl(*args, check=True):
        r = subprocess.run([sys.executable, str(LAUNCHCTL), *args], env=env,
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    deadline = time.monotonic() + 10
    while ctl("list", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the stand-in did not come up"
        time.sleep(0.05)
    ctl.daemons = daemons
    ctl.proc = proc
    yield ctl
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def job_pid(ctl, label):
    for line in ctl("list").stdout.splitlines()[1:]:
        pid, status, name = line.split("\t")
        if name == label:
            return None if pid == "-" else int(pid), int(status)
    return "unloaded", None


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


@linux_only
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
    }))

    launchd("load", "-w", str(plist))
    wait_for(lambda: out.exists() and out.stat().st_size > 0)
    seen = json.loads(out.read_text())
    assert seen["env"]["FORKSERVER_BIND"] == "0.0.0.0:8888"
    assert seen["cwd"] == str(tmp_path)
    assert seen["argv"][-1] == str(out)

    pid, status = job_pid(launchd, "org.example.job")
    assert pid and status == 0
    detail = launchd("list", "org.example.job").stdout
    assert '"PID" = %d;' % pid in detail

    # KeepAlive {SuccessfulExit: false}: a SIGKILL is no success, so it comes back
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job_pid(launchd, "org.example.job")[0] not in (None, pid))
    assert job_pid(launchd, "org.example.job")[1] == -9

    # a second load of a loaded job is refused on stderr, as launchctl does
    assert "already loaded" in launchd("load", str(plist)).stderr

    launchd("unload", str(plist))
    assert job_pid(launchd, "org.example.job") == ("unloaded", None)
    assert launchd("list", "org.example.job", check=False).returncode == 113


@linux_only
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


# --- the fleet scenario's load client, against a real forkserver ---------------

LOAD_CLIENT = MOLECULE / "fleet" / "files" / "load_client.py"


def run_load(url, tmp_path, during=None, seconds=1.5):
    stop, out = tmp_path / "stop", tmp_path / "out.json"
    proc = subprocess.Popen([sys.executable, str(LOAD_CLIENT), url, "--stop-file", str(stop),
                             "--out", str(out), "--timeout", "2"], stdout=subprocess.DEVNULL)
    time.sleep(seconds)
    if during:
        during()
        time.sleep(seconds)
    stop.touch()
    assert proc.wait(timeout=30) == 0
    return json.loads(out.read_text())


def test_load_client_counts_good_replies_and_the_version(start_server, tmp_path):
    import forkserver
    server = start_server()
    result = run_load(server.url + "/hello", tmp_path)
    assert result["requests"] > 10 and result["failed"] == 0
    assert result["last_50_versions"] == [f"forkserver/{forkserver.__version__}"]
    assert result["longest_gap_ms"] > 0


def test_load_client_reports_every_failure_with_its_reason(start_server, tmp_path):
    server = start_server()
    result = run_load(server.url + "/hello", tmp_path, during=server.kill)
    assert result["ok"] > 0 and result["failed"] > 0
    assert result["requests"] == result["ok"] + result["failed"]
    assert "ConnectionRefusedError" in result["failure_reasons"], result["failure_reasons"]


def test_load_client_refuses_a_wrong_body(start_server, tmp_path):
    server = start_server()
    stop, out = tmp_path / "stop", tmp_path / "out.json"
    proc = subprocess.Popen([sys.executable, str(LOAD_CLIENT), server.url + "/hello", "--stop-file", str(stop),
                             "--out", str(out), "--expect-body", "Goodbye"], stdout=subprocess.DEVNULL)
    time.sleep(1)
    stop.touch()
    assert proc.wait(timeout=30) == 0
    result = json.loads(out.read_text())
    assert result["ok"] == 0 and result["failed"] > 0
    assert any(reason.startswith("status 200 body") for reason in result["failure_reasons"])
