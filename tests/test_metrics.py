"""/metrics: the parent's counters, the children's shared counters, and zombies counted from the OS."""

import subprocess
import sys
import threading

import requests
from prometheus_client.parser import text_string_to_metric_families

from burst import burst
from conftest import wait_until
from rawhttp import exchange, status_of

from forkserver import stats
from forkserver.metrics import MetricsApp


def scrape(server) -> dict:
    """{(name, sorted labels): value} from one scrape, parsed by prometheus_client itself."""
    reply = requests.get(server.metrics_url + "/metrics", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name, **labels) -> float:
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items()))


def start(start_server, *args, **kwargs):
    server = start_server("--metrics-bind", "127.0.0.1:0", *args, **kwargs)
    metrics = [part for part in server.log.split("metrics at ")[1:]]
    server.metrics_url = metrics[0].split()[0].rstrip(",")
    return server


def at_rest(server):
    assert wait_until(lambda: not server.children(), 10)


def test_a_burst_moves_requests_and_forks_by_exactly_its_size(start_server):
    server = start(start_server)
    at_rest(server)
    before = scrape(server)
    result = burst(server.url + "/hello", 128)
    assert (result["ok"], result["failed"]) == (128, 0), result
    at_rest(server)
    after = scrape(server)
    for name in ("forkserver_requests_total", "forkserver_request_duration_seconds_count"):
        assert total(after, name) - total(before, name) == 128, name
    assert total(after, "forkserver_requests_total", method="GET", status="2xx") - \
        total(before, "forkserver_requests_total", method="GET", status="2xx") == 128
    assert total(after, "forkserver_forks_total", listener="app") - \
        total(before, "forkserver_forks_total", listener="app") == 128
    assert total(after, "forkserver_response_body_bytes_total") - \
        total(before, "forkserver_response_body_bytes_total") == 128 * len("Hello, World!")
    # at rest (the scrape's own child aside, which is not yet counted as forked): forks = reaped + children
    assert total(after, "forkserver_forks_total") == \
        total(after, "forkserver_children_reaped_total") + total(after, "forkserver_children")
    assert total(after, "forkserver_zombies") == 0
    assert total(after, "forkserver_max_children") == 1024


def test_no_exit_is_lost_while_the_server_is_at_its_cap(start_server):
    # At the cap every exit must wake the loop (it frees a place), so exits
    # come fast and signals land inside the SIGCHLD handler itself; an exit
    # lost there would leave a child counted as running for good.
    server = start(start_server, "--max-children", "2")
    threads, each = 8, 150
    errors = []

    def client():
        for _ in range(each):
            try:
                reply = exchange(server.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if status_of(reply) != 200:
                    errors.append(reply[:40])
            except OSError as exc:
                errors.append(repr(exc))

    clients = [threading.Thread(target=client) for _ in range(threads)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert errors == [], errors[:3]
    at_rest(server)
    samples = scrape(server)
    assert total(samples, "forkserver_forks_total", listener="app") == threads * each
    assert total(samples, "forkserver_children") == 0
    assert total(samples, "forkserver_children_reaped_total") == total(samples, "forkserver_forks_total")
    assert server.stop(timeout=10) == 0  # a child counted but gone would hold the graceful stop


def test_refusals_and_statuses_are_counted(start_server):
    server = start(start_server)
    assert status_of(exchange(server.port, b"GET / HTTP/1.1\r\n\r\n")) == 400
    assert status_of(exchange(server.port, b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")) == 414
    assert requests.post(server.url + "/hello", timeout=5).status_code == 405
    assert requests.get(server.url + "/nope", timeout=5).status_code == 404
    at_rest(server)
    samples = scrape(server)
    assert total(samples, "forkserver_refusals_total", status="400") == 1
    assert total(samples, "forkserver_refusals_total", status="414") == 1
    assert total(samples, "forkserver_requests_total", method="POST", status="4xx") == 1
    assert total(samples, "forkserver_requests_total", method="GET", status="4xx") == 1
    assert total(samples, "forkserver_children_reaped_total", how="exit", code="0") >= 4


def test_counters_continue_across_a_hot_upgrade(start_server, tmp_path):
    settings = tmp_path / "forkserver.env"
    settings.write_text("")
    state = tmp_path / "state.json"
    server = start(start_server, "--env-file", str(settings), "--state-file", str(state))
    assert burst(server.url + "/hello", 64)["ok"] == 64
    at_rest(server)
    before = scrape(server)
    done = subprocess.run([sys.executable, "-m", "forkserver.reload", str(state)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert burst(server.url + "/hello", 64)["ok"] == 64
    at_rest(server)
    after = scrape(server)
    assert total(after, "forkserver_generation") == 1
    assert total(after, "forkserver_requests_total") - total(before, "forkserver_requests_total") == 64
    assert total(after, "forkserver_forks_total") == \
        total(after, "forkserver_children_reaped_total") + total(after, "forkserver_children")


def test_child_timeouts_are_counted(start_server):
    server = start(start_server, "apps:hang", "--child-timeout", "1")
    try:
        requests.get(server.url + "/", timeout=10)
    except requests.RequestException:
        pass
    at_rest(server)
    samples = scrape(server)
    assert total(samples, "forkserver_children_timed_out_total") == 1
    assert total(samples, "forkserver_children_reaped_total", how="signal", code="SIGTERM") == 1


def test_zombie_gauge_reads_what_forkserver_zombies_reads():
    """Against a real process that leaves 3 zombie children, so that the count is not trivially 0."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0: os._exit(0)\n"
        "print('ready', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        tool = subprocess.run([sys.executable, "-m", "forkserver.zombies", str(parent.pid), "--wait", "0"],
                              capture_output=True, text=True, timeout=30)
        counted_by_tool = int(tool.stdout.split()[0])
        app = MetricsApp({"counters": {"forks": 0, "metrics_forks": 0, "fork_failures": 0, "timed_out": 0,
                                       "accept_errors": {}, "reaped": {}},
                          "children": 0, "max_children": 1, "generation": 0}, stats.Stats(4), parent.pid)
        families = {f.name: f for f in text_string_to_metric_families(app.render().decode())}
        assert counted_by_tool == 3
        assert families["forkserver_zombies"].samples[0].value == counted_by_tool
    finally:
        parent.kill()
        parent.wait()


def test_metrics_listener_answers_only_metrics(start_server):
    server = start(start_server)
    assert requests.get(server.metrics_url + "/hello", timeout=5).status_code == 404
    assert requests.post(server.metrics_url + "/metrics", timeout=5).status_code == 405
