"""Describe this host's Python for the forkserver role, as JSON on stdout.

    probe_python.py [COMMAND]     COMMAND: how the role named this Python

Besides the version, it lists the wheel platform tags the interpreter
accepts (most specific first), so the controller can download binary
dependency wheels that will install here, and says whether any user (the
service account) may run it.
"""

import json
import os
import platform
import stat
import sys


def wheel_platforms():
    system = platform.system()
    machine = platform.machine()
    tags = []
    if system == "Linux":
        libc, version = platform.libc_ver()
        if libc != "glibc" or not version:
            return []  # musl or unknown C library: no manylinux wheels
        major, minor = (int(x) for x in version.split(".")[:2])
        if major != 2:
            return []
        tags += ["manylinux_2_%d_%s" % (m, machine) for m in range(minor, 4, -1)]
        tags += ["manylinux2014_%s" % machine]
        if machine in ("x86_64", "i686"):
            tags += ["manylinux2010_%s" % machine, "manylinux1_%s" % machine]
    elif system == "Darwin":
        release = platform.mac_ver()[0] or "10.9"
        major = int(release.split(".")[0])
        arches = [machine, "universal2"]
        for arch in arches:
            for v in range(major, 10, -1):
                tags.append("macosx_%d_0_%s" % (v, arch))
            for v in range(15, 8, -1):
                tags.append("macosx_10_%d_%s" % (v, arch))
    return tags


def usable_by_all():
    """Whether a user with no rights of its own (the service account) may run
    this interpreter and read its standard library: both readable (and the
    interpreter executable) by others, and every directory above them
    searchable by others. A virtualenv made from this Python needs exactly
    these. A Python under a home directory that others cannot enter fails."""
    wanted = {
        os.path.realpath(sys.executable): stat.S_IXOTH,
        os.path.realpath(os.path.dirname(os.__file__)): stat.S_IROTH | stat.S_IXOTH,
    }
    for path, bits in wanted.items():
        try:
            if os.stat(path).st_mode & bits != bits:
                return False
            parent = os.path.dirname(path)
            while True:
                if not os.stat(parent).st_mode & stat.S_IXOTH:
                    return False
                if parent == os.path.dirname(parent):
                    break
                parent = os.path.dirname(parent)
        except OSError:
            return False
    return True


version = "%d.%d" % sys.version_info[:2]
info = {
    "command": sys.argv[1] if len(sys.argv) > 1 else sys.executable,
    "executable": sys.executable,
    "version": version,
    "version_ok": sys.version_info[:2] >= (3, 10),
    "implementation": sys.implementation.name,
    "abi": "cp%d%d" % sys.version_info[:2],
    "system": platform.system(),
    "machine": platform.machine(),
    "platforms": wheel_platforms(),
    "usable_by_all": usable_by_all(),
}
info["key"] = "%s-%s-%s-%s" % (
    info["system"].lower(),
    info["machine"],
    (info["platforms"] or ["none"])[0],
    info["abi"],
)
print(json.dumps(info))
