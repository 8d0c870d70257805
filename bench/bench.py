"""Measure forkserver against other Python servers, in one run, on loopback.

Servers (each serving GET /hello -> 200 "Hello, World!"):

* forkserver            the project's server (its built-in app)
* lesson                bench/lesson_server.py, the classic lesson's fork server
* floor                 bench/floor_server.py, the least a fork-per-connection
                        WSGI server must do per connection (a reference)
* ForkingTCPServer      bench/forking_server.py, the standard library's
* gunicorn sync -w2     gunicorn's sync workers, serving bench/hello_app.py

Each one is measured with wrk in two modes, with the same threads,
connections and duration: ``close`` (every request sends Connection: close,
so each request is a new connection, i.e. a fork for the forking servers)
and ``keep-alive`` (wrk reuses connections where the server lets it).  The
lesson server, ForkingTCPServer and gunicorn's sync worker close after each
reply, so their keep-alive figures are really reconnecting figures: the
``reuse`` column says, from a probe, whether the server kept the connection.

Run through bench/run, which installs wrk first.  Traffic goes to 127.0.0.1
only, and every server started here is stopped (its whole process group)
before the script ends.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = ROOT / ".venv" / "bin"
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
HOST = "127.0.0.1"
PATH = "/hello"
BODY = b"Hello, World!"
READY_TIMEOUT = 20.0


@dataclass
class Server:
    """A server under test: a name and how to start it on a port."""

    name: str
    argv: list  # with "{port}" placeholders
    cwd: Path = ROOT
    env: dict | None = None
    log: Path | None = None
    proc: subprocess.Popen | None = None

    def command(self, port):
        return [a.format(port=port, host=HOST) for a in self.argv]


@dataclass
class Result:
    """One wrk measurement (or why there is none)."""

    server: str
    mode: str
    rps: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    reuse: str = "-"
    zombies: str = "-"
    note: str = ""


def servers(opts):
    """The servers to compare, forkserver first (it is the reference)."""
    forkserver = [str(VENV_BIN / "forkserver"), "--bind", "{host}:{port}", "--log-level", "warning"]
    variants = [Server(f"forkserver {name}", forkserver + extra.split())
                for name, _, extra in (v.partition("=") for v in opts.variant or [])]
    baselines = [Server(f"forkserver@{ref}", [PY, "-m", "forkserver", "--bind", "{host}:{port}",
                                             "--log-level", "warning"], cwd=tree, env={"PYTHONPATH": str(tree)})
                 for ref, tree in getattr(opts, "baseline_trees", {}).items()]
    return [
        Server("forkserver", forkserver),
        *variants,
        *baselines,
        Server("lesson", [PY, str(BENCH / "lesson_server.py"), "{host}", "{port}"]),
        Server("floor", [PY, str(BENCH / "floor_server.py"), "{host}", "{port}"]),
        Server("ForkingTCPServer", [PY, str(BENCH / "forking_server.py"), "{host}", "{port}"]),
        Server("gunicorn sync -w2", [str(VENV_BIN / "gunicorn"), "-k", "sync", "-w", "2",
                                     "-b", "{host}:{port}", "--backlog", "1024",
                                     "--log-level", "warning", "hello_app:app"], cwd=BENCH),
    ]


def export_tree(ref, into):
    """The forkserver package as of git REF, in a directory of its own (not compiled yet)."""
    tree = Path(into) / ("tree-" + re.sub(r"\W+", "_", ref))
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "forkserver"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def compile_package(tree):
    """Write the bytecode of the forkserver package under `tree`, as pip install does.

    A server started from sources with no up-to-date .pyc files (a fresh
    export, a changed working tree, PYTHONDONTWRITEBYTECODE set) compiles its
    modules at every start, and the compiler's leftovers stay in the parent's
    heap: 1.3 MB more resident memory, which every fork copies the page tables
    of and every child's exit unmaps (see bench/README.md). Measured that way,
    forkserver is not the program pip installs.
    """
    subprocess.run([PY, "-m", "compileall", "-q", "-f", str(Path(tree) / "forkserver")], check=True)
    return tree


# ------------------------------------------------------------- processes

def free_port():
    """A loopback port free right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_hello(port, timeout=2.0):
    """GET /hello once; return (status, body, connection kept?) or raise OSError."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", PATH)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, body, not resp.will_close
    finally:
        conn.close()


def probe_reuse(port):
    """Whether the server really serves two requests on one connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", PATH)
            resp = conn.getresponse()
            resp.read()
            if resp.will_close:
                return "no"
        return "yes"
    except (OSError, http.client.HTTPException):
        return "no"
    finally:
        conn.close()


def start(server, logdir):
    """Start a server in its own process group and wait until it answers.

    The process group lets stop() end the server together with any child
    it forked.  Returns the port; raises RuntimeError if it never answers.
    """
    port = free_port()
    server.log = logdir / (re.sub(r"\W+", "_", server.name) + ".log")
    with open(server.log, "wb") as log:
        server.proc = subprocess.Popen(server.command(port), cwd=server.cwd, stdout=log,
                                       env=dict(os.environ, **server.env) if server.env else None,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"exited with status {server.proc.returncode}")
        try:
            status, body, _ = get_hello(port)
            if status == 200 and body == BODY:
                return port
            raise RuntimeError(f"GET {PATH} answered {status} {body[:40]!r}")
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    raise RuntimeError(f"not answering after {READY_TIMEOUT:g}s")


def stop(server):
    """SIGTERM the server's process group, then SIGKILL whatever is left."""
    proc = server.proc
    if proc is None:
        return
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue
    # The leader is gone; forked children may linger in its group.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc = None


def log_tail(server, lines=5):
    """Last lines of a server's log, to explain a failure."""
    try:
        text = server.log.read_text(errors="replace").strip().splitlines()
    except (OSError, AttributeError):
        return ""
    return " | ".join(text[-lines:])


def count_zombies(server):
    """Zombie children left by the server after the load (via forkserver-zombies)."""
    try:
        res = subprocess.run([PY, "-m", "forkserver.zombies", str(server.proc.pid),
                              "--wait", "2"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return res.stdout.strip() if res.returncode in (0, 1) else "?"


# ------------------------------------------------------------------- wrk

WRK_THREADS, WRK_CONNECTIONS = 2, 32  # the load every close/keep-alive figure is taken under
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    """'1.23ms' / '850.00us' / '1.02s' -> milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * UNITS_MS[m.group(2)] if m else None


def parse_wrk(out):
    """Requests/s, p99 latency (ms) and error count from wrk --latency output."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return (float(rps.group(1)) if rps else None,
            to_ms(p99.group(1)) if p99 else None, errors)


def requests_completed(out):
    """How many requests wrk completed ("N requests in ..."), or 0."""
    done = re.search(r"^\s*(\d+) requests in", out, re.M)
    return int(done.group(1)) if done else 0


def wrk(port, mode, opts, duration):
    """Run wrk against /hello in `mode`; return (rps, p99_ms, errors, raw output)."""
    cmd = ["wrk", f"-t{opts.threads}", f"-c{opts.connections}", f"-d{duration}s",
           "--latency", "--timeout", "5s"]
    if mode == "close":
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://{HOST}:{port}{PATH}")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    return (*parse_wrk(res.stdout), res.stdout + res.stderr)


MODES = ("close", "keep-alive")


def start_all(chosen, opts):
    """Start every server; return {name: port} for those that answer.

    Servers that cannot start get their failure recorded in `notes`.
    """
    ports, notes = {}, {}
    for server in chosen:
        if server.name == "forkserver" and not (ROOT / "forkserver" / "cli.py").exists():
            notes[server.name] = "not built yet (no forkserver/cli.py)"
            continue
        try:
            ports[server.name] = start(server, opts.logdir)
        except (RuntimeError, OSError) as exc:
            notes[server.name] = f"did not start: {exc}. {log_tail(server)}".strip()
            stop(server)
    return ports, notes


def median(values):
    """Median of a non-empty list (the middle one, or the mean of the two)."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def measure_all(chosen, opts):
    """Measure every server in every mode; return the Results in table order.

    All servers run side by side (idle ones cost nothing) and the rounds are
    interleaved (server A, B, C, D, then again), so that a burst of noise
    from elsewhere on the machine spreads over all of them instead of
    hitting one.  Each figure is the median of --repeat rounds.
    """
    ports, notes = start_all(chosen, opts)
    live = [s for s in chosen if s.name in ports]
    samples = {(s.name, m): [] for s in live for m in MODES}
    reuse = {s.name: probe_reuse(ports[s.name]) for s in live}
    for s in live:
        say(f"warming up {s.name}")
        wrk(ports[s.name], "keep-alive" if reuse[s.name] == "yes" else "close", opts, opts.warmup)
    for rnd in range(1, opts.repeat + 1):
        for s in live:
            for mode in MODES:
                say(f"round {rnd}/{opts.repeat}: {s.name} {mode}")
                rps, p99, errors, raw = wrk(ports[s.name], mode, opts, opts.duration)
                if opts.verbose:
                    print(raw, file=sys.stderr)
                if rps is not None:
                    samples[(s.name, mode)].append((rps, p99, errors))
    zombies = {s.name: count_zombies(s) for s in live}
    results = []
    for s in chosen:
        for mode in MODES:
            got = samples.get((s.name, mode))
            if not got:
                results.append(Result(s.name, mode, note=notes.get(s.name, "wrk gave no figures")))
                continue
            results.append(Result(s.name, mode, median([g[0] for g in got]),
                                  median([g[1] for g in got if g[1] is not None] or [0.0]),
                                  sum(g[2] for g in got), reuse[s.name], zombies[s.name]))
    return results


def say(text):
    """Progress on stderr, so stdout holds only the report."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- report

def machine():
    """One line describing the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        if sys.platform == "darwin":
            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True).stdout.strip() or cpu
        elif shutil.which("lscpu"):
            out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
            m = re.search(r"^Model name:\s*(.+)$", out, re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {wrk_version()}")


def wrk_version():
    """'wrk 4.1.0', from the first words wrk -v prints."""
    res = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    words = (res.stdout + res.stderr).split()
    return " ".join(words[:2]) if len(words) >= 2 else "wrk"



def ratio(result, reference):
    """req/s relative to forkserver's in the same mode, as text."""
    if result.rps is None or reference is None or reference.rps is None:
        return "-"
    return f"{result.rps / reference.rps:.2f}"


def rows(results):
    """Table rows (lists of strings), in run order."""
    ref = {r.mode: r for r in results if r.server == "forkserver" and r.rps}
    out = []
    for r in results:
        out.append([r.server, r.mode,
                    "-" if r.rps is None else f"{r.rps:,.0f}",
                    "-" if r.p99_ms is None else f"{r.p99_ms:.2f}",
                    ratio(r, ref.get(r.mode)), r.reuse, str(r.errors), r.zombies,
                    r.note])
    return out


HEADER = ["server", "mode", "req/s", "p99 ms", "vs forkserver", "reuse", "errors",
          "zombies", "note"]


def plain_table(table):
    """Aligned text table; the note column only if any note exists."""
    cols = HEADER if any(r[-1] for r in table) else HEADER[:-1]
    table = [r[:len(cols)] for r in table]
    widths = [max(len(x) for x in col) for col in zip(cols, *table)]
    fmt = lambda r: "  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in table])


def markdown_table(table):
    """The same table in Markdown."""
    cols = HEADER if any(r[-1] for r in table) else HEADER[:-1]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if c in ("req/s", "p99 ms", "vs forkserver", "errors",
                                            "zombies") else "---" for c in cols) + "|"]
    lines += ["| " + " | ".join(r[:len(cols)]) + " |" for r in table]
    return "\n".join(lines)


def targets(results):
    """Lines checking forkserver's targets against the other servers."""
    get = {(r.server, r.mode): r.rps for r in results}
    checks = [("keep-alive", "gunicorn sync -w2", 2.0),
              ("close", "lesson", 0.95),
              ("close", "ForkingTCPServer", 1.3)]
    lines = []
    for mode, other, want in checks:
        ours, theirs = get.get(("forkserver", mode)), get.get((other, mode))
        if not ours or not theirs:
            lines.append(f"- forkserver {mode} vs {other}: not measured (target >= {want:.2f}x)")
            continue
        x = ours / theirs
        verdict = "met" if x >= want else "NOT met"
        lines.append(f"- forkserver {mode} vs {other}: {x:.2f}x (target >= {want:.2f}x): {verdict}")
    return lines


def report(results, opts):
    """Print the plain table, then a Markdown section ready for the README."""
    table = rows(results)
    print()
    print(plain_table(table))
    md = "\n".join([
        f"### Benchmark ({datetime.date.today().isoformat()})",
        "",
        f"Machine: {machine()}.",
        f"Load: `wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s` on "
        f"127.0.0.1, GET {PATH}, after a {opts.warmup}s warm-up; median of {opts.repeat} interleaved rounds "
        f"(load average {opts.load:.2f} at the start). "
        "Mode `close` sends `Connection: close` (one connection per request); "
        "`keep-alive` lets wrk reuse connections. `reuse` says whether the server "
        "kept a connection open for a second request: where it is `no`, the "
        "keep-alive row measures reconnecting. `zombies` is forkserver-zombies on "
        "the server's pid after the load.",
        "",
        markdown_table(table),
        "",
        "Targets:",
        "",
        *targets(results),
    ])
    print()
    print(md)
    if opts.markdown:
        Path(opts.markdown).write_text(md + "\n")


def parse_args(argv):
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server")
    p.add_argument("--threads", type=int, default=WRK_THREADS, help="wrk threads")
    p.add_argument("--connections", type=int, default=WRK_CONNECTIONS, help="wrk connections")
    p.add_argument("--repeat", type=int, default=3,
                   help="interleaved rounds; each figure is the median (default 3)")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="measure only servers whose name starts with NAME (repeatable)")
    p.add_argument("--markdown", metavar="FILE", help="also write the Markdown section to FILE")
    p.add_argument("--verbose", action="store_true", help="show wrk's own output")
    p.add_argument("--baseline", action="append", metavar="REF",
                   help="also measure forkserver as of git REF (e.g. HEAD~3): before/after figures in one run")
    p.add_argument("--variant", action="append", metavar="NAME=ARGS",
                   help="also measure forkserver with extra arguments, e.g. 'metrics=--metrics-bind 127.0.0.1:0'")
    return p.parse_args(argv)


def on_sigterm(signum, frame):
    """Turn SIGTERM into KeyboardInterrupt so that running servers get stopped."""
    raise KeyboardInterrupt


def main(argv=None):
    """Measure every server in turn and print the report."""
    signal.signal(signal.SIGTERM, on_sigterm)
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed (bench/run installs it)")
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1) / 2:
        say(f"the machine is busy (load average {load:.1f}): figures will be noisy")
    opts.load = load
    with tempfile.TemporaryDirectory(prefix="forkserver-bench-") as logdir:
        opts.logdir = Path(logdir)
        opts.baseline_trees = {ref: compile_package(export_tree(ref, opts.logdir)) for ref in opts.baseline or []}
        if (ROOT / "forkserver").is_dir():
            compile_package(ROOT)  # what the console script runs, as installed
        chosen = [s for s in servers(opts)
                  if not opts.only or any(s.name.startswith(o) for o in opts.only)]
        try:
            results = measure_all(chosen, opts)
        finally:
            for server in chosen:
                stop(server)
    report(results, opts)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
