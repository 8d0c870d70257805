"""Tests of the balancer role roles/forkserver_lb, run through real Ansible.

The HAProxy configuration is rendered by ansible-playbook from the role's
defaults and vars for an inventory of backend hosts, and its servers and
checks are read back; wrong variables must be refused by argument_specs or
the preflight checks, naming the variable, before anything changes. (The
molecule scenario "fleet" runs the role for real, where `haproxy -c` checks
the file before it is used.)
"""

import json
import subprocess

import pytest

from role_helpers import REPO, ansible_env, ansible_tool, assert_refused_naming, failures, render_playbook

pytestmark = pytest.mark.deploy  # runs Ansible: the deploy extra, on the Python the tools need

LB_ROLE = REPO / "roles" / "forkserver_lb"

INVENTORY = """\
[forkserver_lbs]
localhost ansible_connection=local

[forkservers]
web1 ansible_host=192.0.2.10
web2 ansible_host=192.0.2.11 forkserver_lb_server_port=9000
web3 forkserver_lb_server_address=10.0.0.13
"""

LB_TEMPLATES = {"haproxy.cfg.j2": "haproxy.cfg", "haproxy-hardening.conf.j2": "hardening.conf"}

INCLUDE_ROLE = """\
- name: Apply the balancer role with a wrong variable
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Include the role
      ansible.builtin.include_role:
        name: forkserver_lb
"""


def play(tmp_path, text, extra_vars=None, json_output=False):
    (tmp_path / "inventory").write_text(INVENTORY)
    (tmp_path / "playbook.yml").write_text(text)
    cmd = [ansible_tool("ansible-playbook"), "-i", str(tmp_path / "inventory"), str(tmp_path / "playbook.yml")]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    env = ansible_env(tmp_path)
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def render(tmp_path, extra_vars=None):
    out = tmp_path / "out"
    out.mkdir()
    proc = play(tmp_path, render_playbook(LB_ROLE, out, LB_TEMPLATES), extra_vars)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (out / "haproxy.cfg").read_text(), (out / "hardening.conf").read_text()


def section(config, header):
    lines = config.splitlines()
    start = lines.index(header)
    body = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        body.append(line.strip())
    return [line for line in body if line and not line.startswith("#")]


def test_every_backend_host_is_a_checked_server_sent_the_proxy_protocol(tmp_path):
    config, _ = render(tmp_path)
    backend = section(config, "backend forkservers")
    servers = [line for line in backend if line.startswith("server ")]
    assert servers == ["server web1 192.0.2.10:8888", "server web2 192.0.2.11:9000", "server web3 10.0.0.13:8888"]
    assert "option httpchk" in backend
    assert "http-check send meth GET uri /hello" in backend
    assert "http-check expect status 200" in backend
    assert ("default-server check inter 1000 fall 2 rise 2 send-proxy-v2 check-send-proxy") in backend
    assert "balance leastconn" in backend
    assert "retry-on conn-failure empty-response response-timeout" in backend
    assert "option redispatch 1" in backend
    glob = section(config, "global")
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin expose-fd listeners" in glob
    assert section(config, "frontend forkserver")[0] == "bind :80"


def test_check_path_follows_the_forkserver_verify_path(tmp_path):
    config, _ = render(tmp_path, {"forkserver_verify_path": "/healthz", "forkserver_lb_send_proxy": False,
                                  "forkserver_lb_check_interval_ms": 500})
    backend = section(config, "backend forkservers")
    assert "http-check send meth GET uri /healthz" in backend
    assert "default-server check inter 500 fall 2 rise 2" in backend


def test_check_host_follows_the_forkserver_check_host(tmp_path):
    """With a Host header the check is HTTP/1.1 (HAProxy's http-check send ver/hdr); without, as before."""
    config, _ = render(tmp_path, {"forkserver_check_host": "www.example.com"})
    assert "http-check send meth GET uri /hello ver HTTP/1.1 hdr Host www.example.com" in \
        section(config, "backend forkservers")
    (tmp_path / "none").mkdir()
    config, _ = render(tmp_path / "none")
    assert "http-check send meth GET uri /hello" in section(config, "backend forkservers")


def test_hardening_drop_in(tmp_path):
    _, dropin = render(tmp_path)
    keys = dict(line.split("=", 1) for line in dropin.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["BindReadOnlyPaths"] == ""
    assert keys["NoNewPrivileges"] == "yes" and keys["ProtectSystem"] == "strict"
    assert "CAP_SYS_ADMIN" not in keys["CapabilityBoundingSet"]
    assert keys["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"


@pytest.mark.parametrize(
    "extra, name",
    [
        ({"forkserver_lb_balance": "random"}, "forkserver_lb_balance"),
        ({"forkserver_lb_bind": ["80"]}, "forkserver_lb_bind"),
        ({"forkserver_lb_bind": [":99999"]}, "forkserver_lb_bind"),
        ({"forkserver_lb_check_path": "hello"}, "forkserver_lb_check_path"),
        ({"forkserver_lb_check_host": "www.example.com/x"}, "forkserver_lb_check_host"),
        ({"forkserver_lb_check_interval_ms": 10}, "forkserver_lb_check_interval_ms"),
        ({"forkserver_lb_backend_group": "nobody"}, "forkserver_lb_backend_group"),
        ({"forkserver_lb_maxconn": "many"}, "forkserver_lb_maxconn"),
    ],
)
def test_wrong_variable_fails_naming_it(tmp_path, extra, name):
    assert_refused_naming(play(tmp_path, INCLUDE_ROLE, extra, json_output=True), name)


def test_drain_needs_the_balancer_named(tmp_path):
    proc = play(tmp_path, INCLUDE_ROLE.replace("name: forkserver_lb", "name: forkserver_lb\n        tasks_from: drain"),
                json_output=True)
    failed, _ = failures(proc.stdout)
    assert proc.returncode != 0 and failed
    assert "forkserver_lb_host" in failed[-1][1]
