"""Fast checks of the molecule scenarios' own scripts and configuration.

The scenarios themselves (molecule/run-all) boot containers and take
minutes; these tests only make sure their pieces are sound: the image build
script and the scenario files. The launchd stand-in of the macos scenario
has its own tests, in test_launchd_standin.py.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from role_helpers import ansible_tool

pytestmark = pytest.mark.deploy  # runs Ansible: the deploy extra, on the Python the tools need

yaml = pytest.importorskip("yaml")  # comes with ansible-core (the deploy extra)

ROOT = Path(__file__).resolve().parent.parent
MOLECULE = ROOT / "molecule"
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


@pytest.mark.parametrize("name", ["default", "macos"])
def test_scenarios_run_check_mode_on_a_fresh_and_on_a_deployed_host(name):
    sequence = scenario(name)["scenario"]["test_sequence"]
    assert sequence.index("check") < sequence.index("converge")
    assert "check" in sequence[sequence.index("idempotence"):sequence.index("verify")]


@pytest.mark.parametrize("name", ["default", "macos", "macos-host", "fleet"])
def test_scenarios_run_the_whole_sequence(name):
    sequence = scenario(name)["scenario"]["test_sequence"]
    steps = iter(sequence)
    assert all(step in steps for step in REQUIRED_STEPS), sequence  # in this order


def test_default_scenario_targets_noble_jammy_and_bookworm_under_systemd():
    conf = scenario("default")
    platforms = {p["name"]: p for p in conf["platforms"]}
    assert set(platforms) == {"forkserver-noble", "forkserver-jammy", "forkserver-bookworm"}
    assert "images/build noble jammy bookworm" in conf["dependency"]["command"]
    ports = set()
    for p in platforms.values():
        assert p["systemd"] == "always" and p["command"] == "/sbin/init"
        assert "--runtime=runc" in p["extra_opts"]
        assert not p.get("privileged")
        (published,) = p["published_ports"]
        assert published.startswith("127.0.0.1:")
        ports.add(published.split(":")[1])
    assert len(ports) == 3
    group = conf["provisioner"]["inventory"]["group_vars"]["all"]
    assert group["fs_manager"] == "systemd"
    assert group["forkserver_metrics_bind"].startswith("127.0.0.1:")
    host_ports = {v["fs_host_port"] for v in conf["provisioner"]["inventory"]["host_vars"].values()}
    assert {str(p) for p in host_ports} == ports


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
    assert p["command"].endswith("/launchd-standin")
    assert any(v.endswith("/launchctl-standin:/bin/launchctl:ro") for v in p["volumes"])
    assert "--sysctl=net.core.somaxconn=128" in p["extra_opts"]
    assert not p.get("privileged")
    assert p["published_ports"][0].startswith("127.0.0.1:")
    group = conf["provisioner"]["inventory"]["group_vars"]["all"]
    assert group["forkserver_service_manager"] == "launchd"
    assert group["forkserver_test_launchd_standin"] is True


def test_macos_host_scenario_only_runs_on_darwin():
    conf = scenario("macos-host")
    assert conf["driver"]["options"]["managed"] is False
    (host_vars,) = conf["provisioner"]["inventory"]["host_vars"].values()
    assert host_vars["fs_only_on"] == "Darwin"


@pytest.mark.parametrize("name", ["default", "macos", "fleet"])
def test_podman_scenarios_use_the_pipelined_connection(name):
    provisioner = scenario(name)["provisioner"]
    assert provisioner["connection_options"]["ansible_connection"] == "forkserver_podman"
    plugins = provisioner["env"]["ANSIBLE_CONNECTION_PLUGINS"].replace("${MOLECULE_PROJECT_DIRECTORY}", str(ROOT))
    assert (Path(plugins) / "forkserver_podman.py").is_file()


def test_pipelined_connection_loads_with_its_options(tmp_path):
    """ansible-doc reads the plugin's options the way ansible-playbook does:
    a typo in them would fail every task of the scenarios."""
    env = dict(os.environ, ANSIBLE_CONNECTION_PLUGINS=str(MOLECULE / "shared" / "plugins" / "connection"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path), ANSIBLE_HOME=str(tmp_path))
    proc = subprocess.run([ansible_tool("ansible-doc"), "-t", "connection", "--json", "forkserver_podman"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    options = json.loads(proc.stdout)["forkserver_podman"]["doc"]["options"]
    assert options["pipelining"]["default"] is True
    assert {"remote_addr", "podman_executable"} <= set(options)
