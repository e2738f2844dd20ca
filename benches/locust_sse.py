"""Locust, the peer in the `sse` phase of benches/system.py: Dify-style workflow streams
against the same mock, with the two user classes people use for this today.

- `FastStreamer` (FastHttpUser, geventhttpclient): Locust's fast client.
- `RequestsStreamer` (HttpUser, requests): what Dify's own SSE stress script
  (scripts/stress-test/sse_benchmark.py in langgenius/dify) uses: POST with
  stream=True, `iter_lines`, an event at each blank line, time to first event from
  just before the request to the first whole event, the stream over at
  `workflow_finished`.

Both count what they read (events, streams started and finished, TTFE per stream) and
write it as JSON to $BENCH_LOCUST_OUT when the run stops, so system.py can put Locust's
figures beside the mock's own counts. Run headless in one process, e.g.

    BENCH_LOCUST_OUT=/tmp/l.json python -m locust -f benches/locust_sse.py FastStreamer \
        --headless -u 500 -r 500 -t 16s --stop-timeout 10 -H http://127.0.0.1:PORT
"""

import json
import os
import time

from locust import FastHttpUser, HttpUser, constant, events, task

PATH = "/v1/workflows/run"
BODY = {"inputs": {}, "response_mode": "streaming", "user": "locust"}
HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
# TTFE samples kept: enough for 500 streams x 30 s of 260 ms streams; past it, counted only.
MAX_SAMPLES = 200_000


class Tally:
    """What the users of this process read; one gevent hub, so no lock is needed.
    A request counts once its response head is back, as Locust's own statistics count
    it (a task Locust stops before its request went out is no request)."""

    def __init__(self):
        self.requests = 0
        self.finished = 0
        self.failed = 0
        self.events = 0
        self.ttfe_ms: list[float] = []
        self.ttfe_dropped = 0

    def first_event(self, ms: float):
        if len(self.ttfe_ms) < MAX_SAMPLES:
            self.ttfe_ms.append(ms)
        else:
            self.ttfe_dropped += 1

    def write(self, path: str):
        xs = sorted(self.ttfe_ms)

        def pct(p: float):
            return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else None

        out = {"requests": self.requests, "streams_finished": self.finished, "streams_failed": self.failed,
               "events": self.events, "ttfe_count": len(xs) + self.ttfe_dropped,
               "ttfe_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": xs[-1] if xs else None}}
        with open(path + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(path + ".tmp", path)


TALLY = Tally()


def read_stream(lines, started: float) -> tuple[int, bool]:
    """Events in one stream, and whether it reached `workflow_finished`; an event ends
    at a blank line after at least one `data:` line (the SSE rule)."""
    events_seen, data = 0, []
    for line in lines:
        if line:
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            continue
        if not data:
            continue
        events_seen += 1
        TALLY.events += 1
        if events_seen == 1:
            TALLY.first_event((time.perf_counter() - started) * 1000)
        payload = "\n".join(data)
        data = []
        try:
            if json.loads(payload).get("event") == "workflow_finished":
                return events_seen, True
        except ValueError:
            pass
    return events_seen, False


def fast_lines(response):
    """Lines of a FastHttpUser response as they arrive. Its `iter_content(n)` and
    `readline()` wait for n bytes or a CRLF (SSE lines end in LF), so either would
    time the first event at the end of the stream; geventhttpclient's own
    `readline(b"\n")` returns each line once its bytes are read."""
    raw = response._response
    while line := raw.readline(b"\n"):
        yield line.decode("utf-8", errors="replace").rstrip("\r\n")


def settle(r, lines, started):
    """Counts one stream and tells Locust how it went: a non-200 answer, or a stream
    read to its end (`lines(r)` yields its lines) with or without workflow_finished."""
    TALLY.requests += 1
    if r.status_code != 200:
        TALLY.failed += 1
        r.failure(f"HTTP {r.status_code}")
        return
    _, done = read_stream(lines(r), started)
    if done:
        TALLY.finished += 1
        r.success()
    else:
        TALLY.failed += 1
        r.failure("stream ended without workflow_finished")


class FastStreamer(FastHttpUser):
    wait_time = constant(0)

    @task
    def stream(self):
        started = time.perf_counter()
        with self.client.request("POST", PATH, json=BODY, headers=HEADERS, stream=True,
                                 catch_response=True, name=PATH) as r:
            settle(r, fast_lines, started)


class RequestsStreamer(HttpUser):
    wait_time = constant(0)

    @task
    def stream(self):
        started = time.perf_counter()
        with self.client.post(PATH, json=BODY, headers=HEADERS, stream=True, catch_response=True,
                              timeout=(10, 60), name=PATH) as r:
            settle(r, lambda r: r.iter_lines(decode_unicode=True), started)


@events.test_stop.add_listener
def _stopped(environment, **_kw):
    if out := os.environ.get("BENCH_LOCUST_OUT"):
        TALLY.write(out)


@events.quit.add_listener
def _quit(**_kw):
    if out := os.environ.get("BENCH_LOCUST_OUT"):
        TALLY.write(out)
