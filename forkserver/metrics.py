"""Prometheus metrics, served at /metrics on the --metrics-bind listener.

The parent never serves HTTP itself: a connection to the metrics listener is
forked like any other, and its child answers with what it sees: the parent's
counters as they were when it was forked, the request counters every child
keeps in shared memory (stats.py) as they are now, and, counted from the OS at
scrape time, the parent's zombie children and its resident memory.
prometheus_client renders the text and is imported only in that child: it
imports ``threading``, whose at-fork hook would otherwise cost every fork.
"""

from __future__ import annotations

from . import __version__, stats
from .children import describe_status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsApp:
    """The WSGI app of a metrics child; `snapshot` is the parent's state at fork time."""

    def __init__(self, snapshot: dict, stats_: stats.Stats, parent_pid: int):
        self.snapshot = snapshot
        self.stats = stats_
        self.parent_pid = parent_pid

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "22")])
            return [b"Not Found: see /metrics"]
        if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
            return []
        body = self.render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry)


class _Collector:
    def __init__(self, app: MetricsApp):
        self.app = app

    def collect(self):
        import platform

        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        snapshot, totals = self.app.snapshot, self.app.stats.totals()
        counters = snapshot["counters"]

        def gauge(name, help_text, value):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            return family

        def counter(name, help_text, value=None, labels=(), samples=()):
            family = CounterMetricFamily(name, help_text, labels=list(labels))
            if value is not None:
                family.add_metric([], value)
            for label_values, sample in samples:
                family.add_metric(list(label_values), sample)
            return family

        yield gauge("forkserver_children", "Children (connections being served) when this scrape was forked",
                    snapshot["children"])
        yield gauge("forkserver_max_children", "The --max-children cap", snapshot["max_children"])
        yield counter("forkserver_forks", "Children forked, by the listener their connection came from",
                      labels=["listener"], samples=[(("app",), counters["forks"]),
                                                    (("metrics",), counters["metrics_forks"])])
        yield counter("forkserver_fork_failures", "forks that failed (the connection was held and retried)",
                      counters["fork_failures"])
        yield counter("forkserver_accept_errors", "accept() errors, by errno", labels=["errno"],
                      samples=[((name,), count) for name, count in sorted(counters["accept_errors"].items())])
        yield counter("forkserver_children_reaped", "Children reaped, by how they ended", labels=["how", "code"],
                      samples=[(describe_status(int(status)), count)
                               for status, count in sorted(counters["reaped"].items())])
        yield counter("forkserver_children_timed_out", "Children sent SIGTERM for running past --child-timeout",
                      counters["timed_out"])
        yield gauge("forkserver_zombies", "Zombie children of the parent, counted from the OS at scrape time",
                    self._zombies())
        yield gauge("forkserver_parent_resident_memory_bytes", "The parent's resident set size at scrape time",
                    self._parent_rss())
        yield gauge("forkserver_generation", "Programs run under the parent's pid (hot upgrades) minus one",
                    snapshot["generation"])

        requests = CounterMetricFamily("forkserver_requests", "Requests answered, by method and status class",
                                       labels=["method", "status"])
        for m, method in enumerate(stats.METHODS):
            for s, status_class in enumerate(stats.STATUS_CLASSES):
                requests.add_metric([method, status_class],
                                    totals[stats.REQUESTS + m * len(stats.STATUS_CLASSES) + s])
        yield requests

        buckets, cumulative = [], 0
        for bound, count in zip((*map(str, stats.BUCKETS), "+Inf"),
                                totals[stats.DURATION_BUCKETS:stats.REFUSED]):
            cumulative += count
            buckets.append((bound, cumulative))
        duration = HistogramMetricFamily("forkserver_request_duration_seconds",
                                         "Time from a request's head to the end of its response")
        duration.add_metric([], buckets, totals[stats.DURATION_SUM_US] / 1e6)
        yield duration

        yield counter("forkserver_response_body_bytes", "Response body bytes sent", totals[stats.BYTES])
        refusals = [((str(status),), totals[stats.REFUSED + index]) for index, status in enumerate(stats.REFUSALS)]
        refusals.append((("other",), totals[stats.REFUSED + len(stats.REFUSALS)]))
        yield counter("forkserver_refusals", "Requests the server refused itself, by status", labels=["status"],
                      samples=refusals)
        info = GaugeMetricFamily("forkserver_build_info", "forkserver's version and Python's",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info

    def _zombies(self) -> int:
        import psutil

        count = 0
        for child in psutil.Process(self.app.parent_pid).children():
            try:
                count += child.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                pass
        return count

    def _parent_rss(self) -> int:
        import psutil

        return psutil.Process(self.app.parent_pid).memory_info().rss
