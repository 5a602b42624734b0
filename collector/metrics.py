"""What the collector tells about itself: counters, the end-to-end latency histogram with
its percentiles, and ``GET /metrics`` serving them as JSON.

Every part of the collector counts into one :class:`Metrics` (the MQTT session its
connections and acknowledgements, delivery its batches, the InfluxDB output its retries and
splits); ``Collector.counters()`` adds the inbox and session state to
:meth:`Metrics.snapshot` and is what ``GET /metrics`` serves.

Counters: ``received``, ``written`` (data messages stored; ``written_levels`` the levels
records they held, one per channel), ``rejected`` (dead letters stored), ``retries``
(failed write attempts), ``acked`` (PUBACKs sent), ``lag_s`` (now − end of the newest
stored levels interval), ``batch_latency_s`` (arrival of a batch's first message → its
acknowledgement), ``latency_hist`` (levels records by interval end → stored,
``{"edges_ms": [...], "counts": [...]}``, count i = latency ≤ edge i and > edge i−1) with
``latency_p50_s`` / ``latency_p99_s`` read from it, ``receipts_sent`` (receipt messages
published, :mod:`.receipts`), ``receipts_failed``, ``receipts_ignored`` (receipts that reached
this collector through a subscription of an older version, acknowledged and dropped), and
more.

The counters are plain numbers updated from paho's network thread and the worker thread
without a lock (each update is one dict item); a snapshot is exact per counter, not a
single instant across all of them.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .deadletter import DeadLetter
    from .validation import Entry

log = logging.getLogger("tingbao.collector.metrics")

LATENCY_EDGES_MS = (10, 20, 50, 100, 150, 200, 300, 400, 500, 750, 1000, 1250, 1500, 2000,
                    2500, 3000, 4000, 5000, 7500, 10_000, 15_000, 20_000, 30_000, 60_000,
                    120_000, 300_000, 600_000, 3_600_000, 86_400_000)
"""Upper bucket edges of the end-to-end latency histogram (interval end → stored and
acknowledged), ms; the last bucket also holds everything slower."""
COUNTERS = ("received", "written", "rejected", "retries", "acked", "batches",
            "written_levels", "redelivered", "splits", "stale_unacked", "dead_letter_failed",
            "deadletter_file_errors", "internal_errors", "connects", "disconnects",
            "receipts_sent", "receipts_failed", "receipts_ignored")
"""The plain counters, in the order ``GET /metrics`` lists them."""


def percentile(counts: list[int], q: float) -> float | None:
    """The q-th percentile of the latency histogram (its bucket's upper edge), seconds."""
    total = sum(counts)
    if not total:
        return None
    run = 0
    for edge, n in zip(LATENCY_EDGES_MS, counts, strict=True):
        run += n
        if run >= q / 100 * total:
            return edge / 1000.0
    return LATENCY_EDGES_MS[-1] / 1000.0


class Every:
    """True at most once per ``seconds`` per key: rate limiting for warnings that repeat
    (the counters say how often it happened)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.seconds:
            self._last[key] = now
            return True
        return False


class Metrics:
    """The collector's counters and latencies; ``counts`` is updated directly by the parts
    (``metrics.counts["retries"] += 1``), the rest through the ``record_*`` methods."""

    def __init__(self):
        self.counts: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.by_stage: dict[str, int] = {}  # dead letters stored, by stage
        self.newest_end_ns: int | None = None  # end of the newest stored levels interval
        self.latency_counts = [0] * len(LATENCY_EDGES_MS)
        self.batch_latency: float | None = None
        self.batch_latency_max = 0.0
        self.write_latency: float | None = None
        self.write_latency_max = 0.0
        self.started = time.monotonic()
        self.last_error: str | None = None  # the latest connection, subscription or write error

    def record_write(self, seconds: float) -> None:
        """A batch took ``seconds`` to store (retries and splits included)."""
        self.write_latency = seconds
        self.write_latency_max = max(self.write_latency_max, seconds)

    def record_stored(self, batch: list[Entry], letters: list[DeadLetter]) -> None:
        """A batch was stored and acknowledged: ``letters`` are its dead letters, every other
        entry is data; each levels record adds its latency (interval end → now)."""
        self.counts["batches"] += 1
        self.counts["rejected"] += len(letters)
        self.counts["written"] += len(batch) - len(letters)
        for d in letters:
            self.by_stage[d.stage] = self.by_stage.get(d.stage, 0) + 1
        now_ns = time.time_ns()
        last = len(LATENCY_EDGES_MS) - 1
        for e in batch:
            for _series, _start_ns, end_ns in e.spans:
                self.counts["written_levels"] += 1
                i = bisect.bisect_left(LATENCY_EDGES_MS, (now_ns - end_ns) / 1e6)
                self.latency_counts[min(i, last)] += 1
                if self.newest_end_ns is None or end_ns > self.newest_end_ns:
                    self.newest_end_ns = end_ns

    def record_batch(self, seconds: float) -> None:
        """A batch was acknowledged ``seconds`` after its first message arrived."""
        self.batch_latency = seconds
        self.batch_latency_max = max(self.batch_latency_max, seconds)

    def snapshot(self) -> dict:
        """The counters, lag, latencies and histogram as one JSON-ready dict."""
        out: dict = {k: int(v) for k, v in self.counts.items()}
        now = time.time_ns()
        out["lag_s"] = (None if self.newest_end_ns is None
                        else (now - self.newest_end_ns) / 1e9)
        out["batch_latency_s"] = self.batch_latency
        out["batch_latency_max_s"] = self.batch_latency_max
        out["write_latency_s"] = self.write_latency
        out["write_latency_max_s"] = self.write_latency_max
        counts = list(self.latency_counts)
        out["latency_hist"] = {"edges_ms": list(LATENCY_EDGES_MS), "counts": counts}
        out["latency_p50_s"] = percentile(counts, 50)
        out["latency_p99_s"] = percentile(counts, 99)
        out["rejected_by_stage"] = dict(self.by_stage)
        out["uptime_s"] = round(time.monotonic() - self.started, 3)
        out["last_error"] = self.last_error
        return out


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1:``port``: the JSON of ``snapshot()``, from a thread of
    its own (``tingbao-metrics``); any other path is a 404."""

    def __init__(self, port: int, snapshot: Callable[[], dict]):
        self.port = port
        self.snapshot = snapshot
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str | None:
        if self.httpd is None:
            return None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def start(self) -> None:
        snapshot = self.snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served")
                    return
                body = json.dumps(snapshot()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):
                log.debug("metrics: " + fmt, *args)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="tingbao-metrics",
                         daemon=True).start()
        log.info("metrics on %s", self.url)

    def close(self) -> None:
        """Stop serving and close the socket (``url`` still says where it was)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
