"""The command line: options, FORKSERVER_* variables, and one clear line for each mistake."""

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import requests

from conftest import FORKSERVER_PACKAGE, TESTS, ServerProcess, compile_bytecode, wait_until

FORKSERVER = [sys.executable, "-m", "forkserver"]


def run(*args, env=None, timeout=20):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FORKSERVER_")}
    full_env.update(env or {})
    return subprocess.run([*FORKSERVER, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=TESTS, env=full_env)


def one_line_error(done, status: int, *words: str) -> str:
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    (["--max-children", "zero"], ["--max-children", "whole number"]),
    (["--max-children", "0"], ["--max-children"]),
    (["--child-timeout", "-1"], ["--child-timeout", "seconds"]),
    (["--bind", "nonsense"], ["--bind", "HOST:PORT"]),
    (["--bind", "127.0.0.1:99999"], ["--bind", "port"]),
    (["--max-body", "lots"], ["--max-body", "size"]),
    (["--log-level", "loud"], ["--log-level", "debug, info"]),
    (["--access-log-format", "json"], ["--access-log-format"]),
    (["--proxy-protocol-from", "localhost"], ["--proxy-protocol-from", "IP addresses", "'localhost'"]),
    (["--proxy-protocol-from", "10.0.0.5/24"], ["--proxy-protocol-from", "host bits"]),
    (["a", "b"], ["unrecognized arguments"]),
])
def test_usage_mistakes_exit_2_with_one_line(args, words):
    one_line_error(run(*args), 2, *words)


@pytest.mark.parametrize("variable, value", [
    ("FORKSERVER_MAX_CHILDREN", "many"),
    ("FORKSERVER_BIND", "127.0.0.1:1,bogus"),
    ("FORKSERVER_KEEPALIVE", "forever"),
    ("FORKSERVER_LOG_LEVEL", "chatty"),
    ("FORKSERVER_PROXY_PROTOCOL_FROM", "10.0.0.1,balancer"),
])
def test_bad_environment_variable_is_named(variable, value):
    one_line_error(run("--check-config", env={variable: value}), 2, variable)


@pytest.mark.parametrize("app, words", [
    ("no_such_module:app", ["no module named 'no_such_module'"]),
    ("apps:no_such_attr", ["has no attribute 'no_such_attr'"]),
    ("apps:CLOSED_MARKER", ["not a WSGI callable"]),
    ("not a spec", ["MODULE:APP"]),
    ("broken_import:app", ["ZeroDivisionError"]),
])
def test_unloadable_app_exits_1_with_one_line(app, words):
    one_line_error(run(app, "--check-config"), 1, app, *words)


def test_port_in_use_exits_1(start_server):
    server = start_server()
    one_line_error(run("--bind", f"127.0.0.1:{server.port}"), 1, "address already in use")


def test_address_not_on_this_machine_exits_1():
    # 192.0.2.0/24 is TEST-NET-1: never assigned here, so bind fails before any traffic.
    one_line_error(run("--bind", "192.0.2.1:8888"), 1, "192.0.2.1:8888")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="privileged ports are a Linux rule here")
def test_bind_permission_error_exits_1():
    # A privileged port bound without CAP_NET_BIND_SERVICE: as root, from a user
    # namespace, which holds no capability over this machine's network.
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as handle:
        assert int(handle.read()) > 81, "this machine lets anyone bind port 81"
    prefix = ["unshare", "--user", "--map-root-user"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *FORKSERVER, "--bind", "127.0.0.1:81"], capture_output=True, text=True,
                          timeout=20, cwd=TESTS)
    one_line_error(done, 1, "permission denied", "CAP_NET_BIND_SERVICE")


def test_unwritable_pid_file_exits_1():
    one_line_error(run("--pid-file", "/nonexistent-dir/forkserver.pid", "--bind", "127.0.0.1:0"), 1, "pid file")


def test_version():
    import forkserver
    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"forkserver {forkserver.__version__}"


@pytest.mark.parametrize("flag", ["--pid-file", "--access-log", "--state-file"])
def test_check_config_finds_a_file_setting_that_names_a_directory(tmp_path, flag):
    """Caught by the check, so a hot upgrade to such settings is refused before its exec."""
    one_line_error(run("--check-config", flag, str(tmp_path)), 1, str(tmp_path), "is a directory")


def test_check_config_passes_and_does_not_bind():
    done = run("flask_app:app", "--check-config", "--bind", "127.0.0.1:1")
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout and "flask_app:app" in done.stdout


@pytest.mark.parametrize("app, path, answered", [
    (None, "/hello", "200 OK"),
    ("apps:status_from_path", "/status/204", "204 Status 204"),
    ("apps:status_from_path", "/status/302", "302 Status 302"),
])
def test_check_path_passes_below_400_and_says_what_the_app_answered(app, path, answered):
    done = run(*([app] if app else []), "--check-config", "--check-path", path, "--bind", "127.0.0.1:1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"; GET {path} answered {answered}"), done.stdout


@pytest.mark.parametrize("app, path, words", [
    (None, "/nothing-here", ["GET /nothing-here", "404 Not Found"]),
    ("apps:status_from_path", "/status/503", ["GET /status/503", "503 Status 503"]),
])
def test_check_path_fails_at_400_and_above_with_one_line(app, path, words):
    one_line_error(run(*([app] if app else []), "--check-config", "--check-path", path), 1, *words)


def test_check_path_of_a_crashing_app_logs_the_traceback_and_ends_with_the_reason():
    done = run("apps:crash", "--check-config", "--check-path", "/hello")
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "the app broke on purpose" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == \
        "forkserver: the app answered GET /hello with 500 Internal Server Error"


def test_check_path_of_a_hanging_app_fails_at_the_child_timeout_and_leaves_no_process():
    mark = f"check-{os.getpid()}-{time.monotonic_ns()}"
    done = run("apps:hang", "--check-config", "--check-path", "/hello", "--child-timeout", "1",
               env={"FORKSERVER_TEST_MARK": mark})
    one_line_error(done, 1, "did not answer GET /hello within 1s", "--child-timeout")
    left = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("FORKSERVER_TEST_MARK") == mark:
                left.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    assert left == []


def test_check_path_reaches_the_app_in_a_child_as_a_client_of_the_first_listener_would():
    done = run("apps:served_like_a_client", "--check-config", "--check-path", "/dump?x=1",
               "--bind", "127.0.0.1:8123", "--bind", "unix:/nonexistent/forkserver.sock")
    assert done.returncode == 0, done.stderr
    assert "answered 200 OK" in done.stdout


def test_check_host_names_the_host_an_app_that_answers_only_its_own_names_accepts():
    """Flask's TRUSTED_HOSTS (as Django's ALLOWED_HOSTS) refuses the address the check
    would otherwise name; --check-host (or its variable) sends the name it trusts."""
    check = ("flask_app:strict_hosts", "--check-config", "--check-path", "/healthz", "--bind", "127.0.0.1:1")
    one_line_error(run(*check), 1, "GET /healthz", "400 BAD REQUEST")
    for done in (run(*check, "--check-host", "www.example.com"),
                 run(*check, env={"FORKSERVER_CHECK_HOST": "www.example.com"})):
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("; GET /healthz answered 200 OK"), done.stdout


@pytest.mark.parametrize("args, env, words", [
    (["--check-host", "www.example.com/x"], {}, ["--check-host", "host name or address", "'www.example.com/x'"]),
    (["--check-host", "a b"], {}, ["--check-host", "'a b'"]),
    ([], {"FORKSERVER_CHECK_HOST": "example.com:port"}, ["FORKSERVER_CHECK_HOST", "'example.com:port'"]),
])
def test_check_host_must_be_a_host_and_optional_port(args, env, words):
    one_line_error(run("--check-config", *args, env=env), 2, *words)


def test_check_host_without_a_check_path_is_a_mistake_on_the_command_line_only():
    """The flag alone would change nothing; the variable alone is what the role writes
    for its own verify request, so it is accepted."""
    one_line_error(run("--check-config", "--check-host", "www.example.com"), 2, "--check-host", "--check-path")
    done = run("--check-config", env={"FORKSERVER_CHECK_HOST": "www.example.com"})
    assert done.returncode == 0, done.stderr
    done = run("--check-config", "--check-host", "www.example.com", env={"FORKSERVER_CHECK_PATH": "/hello"})
    assert done.returncode == 0, done.stderr
    assert "GET /hello answered 200 OK" in done.stdout


@pytest.mark.parametrize("args, env, words", [
    (["--check-path", "hello"], {}, ["--check-path", "starts with /"]),
    ([], {"FORKSERVER_CHECK_PATH": "/a b"}, ["FORKSERVER_CHECK_PATH", "'/a b'"]),
])
def test_check_path_must_be_a_request_path(args, env, words):
    one_line_error(run("--check-config", *args, env=env), 2, *words)


def test_console_script_and_module_are_the_same_command():
    script = os.path.join(os.path.dirname(sys.executable), "forkserver")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0 and done.stdout == run("--version").stdout


def test_settings_from_environment_and_flags_win(tmp_path):
    pid_file = tmp_path / "fs.pid"
    server = ServerProcess([], env={"FORKSERVER_BIND": "127.0.0.1:0", "FORKSERVER_APP": "apps:with_write",
                                    "FORKSERVER_PID_FILE": str(pid_file), "FORKSERVER_MAX_CHILDREN": "3"})
    try:
        assert requests.get(server.url + "/", timeout=5).text == "written and returned"
        assert int(pid_file.read_text()) == server.pid
        assert "max children 3" in server.log
    finally:
        assert server.stop() == 0
    assert not pid_file.exists()
    flagged = ServerProcess(["--max-children", "7"], env={"FORKSERVER_BIND": "127.0.0.1:0",
                                                          "FORKSERVER_MAX_CHILDREN": "3"})
    try:
        assert "max children 7" in flagged.log
    finally:
        flagged.stop()


def _free_port_on_both_families() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET6) as v6, socket.socket() as v4:
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            v6.bind(("::", 0))
            port = v6.getsockname()[1]
            try:
                v4.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    pytest.fail("no port free on both IPv4 and IPv6")


def test_an_ipv6_wildcard_listens_on_ipv6_only_so_the_ipv4_one_can_be_bound_beside_it(start_server):
    """Linux would make [::] take IPv4 too (bindv6only=0), and 0.0.0.0 on the same port
    would then fail with "address already in use"."""
    port = _free_port_on_both_families()
    v6_only = start_server(bind=f"[::]:{port}")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/hello", timeout=5)
    assert requests.get(f"http://[::1]:{port}/hello", timeout=5).text == "Hello, World!"
    assert v6_only.stop() == 0
    both = start_server("--bind", f"0.0.0.0:{port}", bind=f"[::]:{port}")
    for host in ("127.0.0.1", "[::1]"):
        assert requests.get(f"http://{host}:{port}/hello", timeout=5).text == "Hello, World!"
    assert both.stop() == 0


def test_startup_line_names_pid_and_every_address(start_server, tmp_path):
    sock_path = str(tmp_path / "fs.sock")
    server = start_server("--bind", f"unix:{sock_path}", "--bind", "[::1]:0")
    line = next(line for line in server.lines if "serving" in line)
    assert f"pid {server.pid}" in line
    assert "http://127.0.0.1:" in line and "http://[::1]:" in line and f"unix:{sock_path}" in line
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(sock_path)
        sock.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
        assert sock.recv(65536).endswith(b"Hello, World!")
    v6_port = line.split("http://[::1]:")[1].split()[0].rstrip(",")
    assert requests.get(f"http://[::1]:{v6_port}/hello", timeout=5).text == "Hello, World!"
    assert server.stop() == 0
    assert not os.path.exists(sock_path)


def test_sigint_stops_gracefully_with_status_0(start_server):
    server = start_server()
    server.signal(signal.SIGINT)
    assert server.proc.wait(10) == 0


def test_sigusr1_reopens_the_access_log(start_server, tmp_path):
    log_path = tmp_path / "access.log"
    server = start_server("--access-log", str(log_path))
    requests.get(server.url + "/hello", timeout=5)
    assert wait_until(lambda: log_path.exists() and log_path.read_text().count("\n") == 1, 5)
    os.rename(log_path, tmp_path / "access.log.1")
    server.signal(signal.SIGUSR1)
    assert server.wait_for_log("access log reopened")
    requests.get(server.url + "/hello", timeout=5)
    assert wait_until(lambda: log_path.exists() and "GET /hello" in log_path.read_text(), 5)


def test_settings_file_values_win_over_the_environment_and_lose_to_flags(tmp_path):
    settings = tmp_path / "forkserver.env"
    settings.write_text('# comment\n\nFORKSERVER_BIND="127.0.0.1:1"\nFORKSERVER_APP=apps:echo\n'
                        'FORKSERVER_CHDIR="/no/\\$such \\"dir\\""\n')
    done = run("--env-file", str(settings), "--chdir", TESTS, "--check-config",
               env={"FORKSERVER_BIND": "127.0.0.1:2", "FORKSERVER_APP": "apps:crash"})
    assert done.returncode == 0, done.stderr
    assert "app apps:echo, bind http://127.0.0.1:1" in done.stdout


@pytest.mark.parametrize("content, words", [
    (None, ["cannot read settings file", "no such file"]),
    ('FORKSERVER_BIND=unquoted value\n', ["line 1", "NAME=value"]),
    ('export FORKSERVER_BIND="x"\n', ["line 1"]),
    ('FORKSERVER_MAX_CHILDREN="0"\n', ["FORKSERVER_MAX_CHILDREN", "whole number"]),
])
def test_settings_file_mistakes_are_one_line(tmp_path, content, words):
    settings = tmp_path / "forkserver.env"
    if content is not None:
        settings.write_text(content)
    one_line_error(run("--env-file", str(settings), "--check-config"), 2, *words)


def _somaxconn() -> int:
    if sys.platform == "darwin":
        return int(subprocess.run(["sysctl", "-n", "kern.ipc.somaxconn"], capture_output=True,
                                  text=True, check=True).stdout)
    with open("/proc/sys/net/core/somaxconn") as f:
        return int(f.read())


def _listen_queue_limit(port: int) -> int:
    """The accept queue limit the kernel gave a listening socket on 127.0.0.1:port."""
    if sys.platform == "darwin":
        # netstat -L: "qlen/incqlen/maxqlen  127.0.0.1.PORT"
        out = subprocess.run(["netstat", "-Lan", "-p", "tcp"], capture_output=True, text=True,
                             check=True).stdout
        for fields in (line.split() for line in out.splitlines()):
            if len(fields) == 2 and fields[1] == f"127.0.0.1.{port}":
                return int(fields[0].split("/")[2])
        raise AssertionError(out)
    # ss: the Send-Q of a listening socket is its backlog
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.split()[2])


@pytest.mark.parametrize("backlog", [100, 1000])
def test_backlog_reaches_the_kernel_which_alone_caps_it(start_server, backlog):
    # The kernel caps the backlog at net.core.somaxconn or kern.ipc.somaxconn;
    # forkserver must not cap it too, so that an operator who raises the sysctl
    # gets what they ask for. The macOS workflow raises kern.ipc.somaxconn to
    # 1024 before the tests, where a cap of 128 in forkserver would show.
    server = start_server("--backlog", str(backlog))
    assert _listen_queue_limit(server.port) == min(backlog, _somaxconn())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forking settings are made on Linux only")
def test_forking_settings_are_made_at_start_without_the_app_seeing_them(start_server):
    server = start_server("apps:env_var", env={"GLIBC_TUNABLES": ""})
    # the parent runs with every symbol bound and no fastbins (both were in its exec environment)...
    environment = psutil.Process(server.pid).environ()
    assert environment.get("LD_BIND_NOW") == "1"
    assert environment.get("GLIBC_TUNABLES") == "glibc.malloc.mxfast=0"
    # ...and none of the variables reaches the app or what it starts
    for name in ("LD_BIND_NOW", "GLIBC_TUNABLES", "FORKSERVER_BOUND_NOW", "FORKSERVER_GLIBC_TUNABLES"):
        assert requests.get(f"{server.url}/?{name}", timeout=5).text == "(unset)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forking settings are made on Linux only")
def test_users_own_glibc_tunables_win_and_reach_the_app(start_server):
    own = "glibc.malloc.mxfast=64:glibc.malloc.tcache_count=0"
    server = start_server("apps:env_var", env={"GLIBC_TUNABLES": own})
    # (glibc rewrites the variable in the process's own copy, so /proc shows less than was passed)
    assert requests.get(f"{server.url}/?GLIBC_TUNABLES", timeout=5).text == own
    assert requests.get(f"{server.url}/?FORKSERVER_GLIBC_TUNABLES", timeout=5).text == "(unset)"


def test_forking_settings_are_taken_out_even_when_turned_off_since(start_server):
    # As a hot upgrade hands them to new code whose environment now says FORKSERVER_BIND_NOW=0.
    server = start_server("apps:env_var", env={
        "FORKSERVER_BIND_NOW": "0", "FORKSERVER_BOUND_NOW": "1", "LD_BIND_NOW": "1",
        "GLIBC_TUNABLES": "glibc.malloc.mxfast=0:glibc.malloc.tcache_count=0",
        "FORKSERVER_GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"})
    for name in ("FORKSERVER_BOUND_NOW", "LD_BIND_NOW", "FORKSERVER_GLIBC_TUNABLES"):
        assert requests.get(f"{server.url}/?{name}", timeout=5).text == "(unset)"
    assert requests.get(f"{server.url}/?GLIBC_TUNABLES", timeout=5).text == "glibc.malloc.tcache_count=0"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forking settings are made on Linux only")
def test_forking_settings_can_be_turned_off(start_server):
    server = start_server(env={"FORKSERVER_BIND_NOW": "0", "GLIBC_TUNABLES": ""})
    environment = psutil.Process(server.pid).environ()
    assert environment.get("LD_BIND_NOW") != "1"
    assert not environment.get("GLIBC_TUNABLES", "").startswith("glibc.malloc.mxfast=0")


PLAIN_APP = '''def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
'''


def test_modules_compiled_at_start_are_named_with_how_to_compile_them(start_server, tmp_path):
    """An app directory where no bytecode can be written (here PYTHONDONTWRITEBYTECODE, in
    production a read-only directory) is compiled at every start: the log says which, and how."""
    compile_bytecode(FORKSERVER_PACKAGE)  # as pip leaves it, whatever this checkout holds
    (tmp_path / "plainapp.py").write_text(PLAIN_APP)
    env = {"PYTHONDONTWRITEBYTECODE": "1"}
    server = start_server("plainapp:app", "--chdir", str(tmp_path), env=env)
    assert requests.get(server.url + "/", timeout=10).text == "ok"
    assert server.wait_for_log("python -m compileall")
    warning = next(line for line in server.lines if "compiled from source at this start" in line)
    assert "to read: plainapp." in warning and warning.rstrip().endswith(f"python -m compileall -f {tmp_path}"), warning
    assert not (tmp_path / "__pycache__").exists()

    compile_bytecode(tmp_path)
    compiled = start_server("plainapp:app", "--chdir", str(tmp_path), env=env)
    assert requests.get(compiled.url + "/", timeout=10).text == "ok"
    assert "compiled from source" not in compiled.log, compiled.log
