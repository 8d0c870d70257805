"""Helpers for tests/test_role.py: run real Ansible against the role."""

import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROLE = REPO / "roles" / "forkserver"


def ansible_tool(name):
    """Path of an Ansible command, preferring the one next to this Python."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError("%s not found; install the project's deploy extra" % name)
    return found


def ansible_env(tmp_path):
    env = dict(os.environ)
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote-tmp"),
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    return env


def run_playbook(tmp_path, playbook_text, extra_vars=None, *args, json_output=False):
    """Write playbook_text to tmp_path and run it on localhost; return the process."""
    playbook = tmp_path / "playbook.yml"
    playbook.write_text(playbook_text)
    cmd = [ansible_tool("ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    env = ansible_env(tmp_path)
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def task_name(task):
    """A task's name without the "ROLE : " prefix."""
    return task["task"]["name"].split(" : ", 1)[-1]


def failures(json_stdout, host="localhost"):
    """(task name, message) of every failed task (and failed loop item) on host."""
    report = json.loads(json_stdout)
    found = []
    for play in report["plays"]:
        for task in play["tasks"]:
            result = task["hosts"].get(host)
            if not result or not result.get("failed"):
                continue
            name = task_name(task)
            found.append((name, str(result.get("msg", ""))))
            for item in result.get("results", []):
                if item.get("failed"):
                    found.append((name, str(item.get("msg", ""))))
    return found, report["stats"][host]


def assert_refused_naming(proc, name):
    """The run failed in the spec validation or a preflight check, i.e. before
    the role touched anything, and the message names the variable."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    failed, stats = failures(proc.stdout)
    assert failed, proc.stdout
    task, message = failed[-1]
    assert task.startswith("Validating arguments") or task.startswith("Check "), task
    assert name in message, message
    assert stats["changed"] == 0


def render_playbook(role, out, templates, *, facts=False):
    """A playbook that renders the role's templates into out with its defaults
    and vars; templates maps each template (under templates/) to its file name
    in out, which may be a Jinja expression. facts: gather the minimal facts
    and set role_path, for templates that read them."""
    items = "".join('        - {src: %s, dest: "%s"}\n' % (src, dest) for src, dest in templates.items())
    return (
        "- name: Render the role's templates\n"
        "  hosts: localhost\n"
        + ("  gather_facts: true\n  gather_subset: [min]\n" if facts else "  gather_facts: false\n")
        + "  vars_files:\n"
        f"    - {role}/defaults/main.yml\n"
        f"    - {role}/vars/main.yml\n"
        + (f"  vars:\n    role_path: {role}\n" if facts else "")
        + "  tasks:\n"
        "    - name: Render\n"
        "      ansible.builtin.template:\n"
        f'        src: "{role}/templates/{{{{ item.src }}}}"\n'
        f'        dest: "{out}/{{{{ item.dest }}}}"\n'
        '        mode: "0644"\n'
        "      loop:\n" + items
    )


FORKSERVER_TEMPLATES = {
    "forkserver.service.j2": "{{ forkserver_service_name }}.service",
    "forkserver.env.j2": "forkserver.env",
    "forkserver.plist.j2": "forkserver.plist",
    "forkserver.newsyslog.conf.j2": "forkserver.newsyslog.conf",
}


class Rendered:
    def __init__(self, out, service_name):
        self.dir = out
        self.unit_path = out / ("%s.service" % service_name)
        self.unit = self.unit_path.read_text()
        self.env_path = out / "forkserver.env"
        self.env_text = self.env_path.read_text()
        self.plist_path = out / "forkserver.plist"
        self.newsyslog = (out / "forkserver.newsyslog.conf").read_text()

    @property
    def plist(self):
        with open(self.plist_path, "rb") as f:
            return plistlib.load(f)

    def newsyslog_entries(self):
        """The entries of the newsyslog.d file: one field list per line."""
        return [line.split() for line in self.newsyslog.splitlines()
                if line.strip() and not line.lstrip().startswith("#")]

    def directives(self, key):
        """Values of every `key=` line of the unit, in order."""
        return [
            line.split("=", 1)[1]
            for line in self.unit.splitlines()
            if line.startswith(key + "=")
        ]

    def directive(self, key):
        values = self.directives(key)
        assert len(values) == 1, "%s= appears %d times in the unit" % (key, len(values))
        return values[0]


def render(tmp_path, extra_vars=None):
    """Render the unit, env file and plist with the role's defaults and vars.

    The install directory defaults to one under tmp_path whose current
    release holds real executables bin/forkserver and bin/forkserver-reload,
    so `systemd-analyze verify` finds ExecStart and ExecReload.
    """
    out = tmp_path / "out"
    out.mkdir()
    install = tmp_path / "install"
    bin_dir = install / "releases" / "r1" / "bin"
    bin_dir.mkdir(parents=True)
    (install / "current").symlink_to("releases/r1")
    for name in ("forkserver", "forkserver-reload"):
        fake = bin_dir / name
        fake.write_text("#!/bin/sh\nexit 0\n")
        fake.chmod(0o755)
    merged = {"forkserver_install_dir": str(install)}
    merged.update(extra_vars or {})
    proc = run_playbook(tmp_path, render_playbook(ROLE, out, FORKSERVER_TEMPLATES, facts=True), merged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Rendered(out, merged.get("forkserver_service_name", "forkserver"))


def source_env_file(path):
    """Load an env file the way the role's validate step does (POSIX sh)."""
    script = 'set -a && . "$1" && set +a && env -0'
    proc = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(path)],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    pairs = [item.split(b"=", 1) for item in proc.stdout.split(b"\0") if item]
    return {k.decode(): v.decode() for k, v in pairs}


def parse_systemd_env_file(text):
    """Parse EnvironmentFile= content as systemd does for the quoting we emit."""
    result = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        match = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', value)
        assert match, "unquoted value in env file: %r" % line
        result[key] = re.sub(r'\\([\\"$`])', r"\1", match.group(1))
    return result


SCORE_RE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")


def security_score(unit_path):
    """`systemd-analyze security --offline` score of a unit file."""
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = SCORE_RE.search(proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))
