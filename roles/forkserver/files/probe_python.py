"""Describe this host's Python for the forkserver role, as JSON on stdout.

Besides the version, it lists the wheel platform tags the interpreter
accepts (most specific first), so the controller can download binary
dependency wheels that will install here.
"""

import json
import platform
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


version = "%d.%d" % sys.version_info[:2]
info = {
    "version": version,
    "version_ok": sys.version_info[:2] >= (3, 10),
    "implementation": sys.implementation.name,
    "abi": "cp%d%d" % sys.version_info[:2],
    "system": platform.system(),
    "machine": platform.machine(),
    "platforms": wheel_platforms(),
}
info["key"] = "%s-%s-%s-%s" % (
    info["system"].lower(),
    info["machine"],
    (info["platforms"] or ["none"])[0],
    info["abi"],
)
print(json.dumps(info))
