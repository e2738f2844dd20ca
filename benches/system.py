#!/usr/bin/env python3
"""Barrage's whole-system benchmark: real processes on loopback, figures read from /proc
and from the target's own counters. Run it through `benches/run` (which installs wrk
and nginx and builds the release binaries); see benches/README.md for what each phase
measures and why.

Every phase is bounded in time and sends load only to 127.0.0.1. Nothing here asserts
a speed: it prints figures (and writes them as JSON with --json) for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- /proc readings


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, live and ended)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_pids(root: int) -> list[int]:
    """`root` and every live descendant (a generator's whole process tree)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds of the process trees under `roots` (a child gone between the listing
    and the reading counts as nothing)."""
    total = 0.0
    for root in roots:
        for pid in tree_pids(root):
            try:
                total += cpu_seconds(pid)
            except (OSError, ValueError, IndexError):
                pass
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def wait_for(what: str, check, limit: float, every: float = 0.05):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError):
            pass
        time.sleep(every)
    raise RuntimeError(f"timed out after {limit:.0f} s waiting for {what}")


# ---------------------------------------------------------------- processes


class Procs:
    """Children of one phase; all killed when the phase ends, however it ends."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        path, n = self.workdir / f"{name}.log", 1
        while path.exists():  # a later round keeps the earlier round's log
            n += 1
            path = self.workdir / f"{name}-{n}.log"
        log = open(path, "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        self.children.append(p)
        return p

    def close(self):
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.children:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@contextmanager
def procs(workdir: Path):
    ps = Procs(workdir)
    try:
        yield ps
    finally:
        ps.close()


def scenario(workdir: Path, name: str, text: str) -> Path:
    path = workdir / f"{name}.toml"
    path.write_text(text)
    return path


class Cluster:
    """`barrage master` plus one `barrage worker` (the generator whose CPU we read)."""

    def __init__(self, ps: Procs, barrage: str, scenario_file: Path, users: int, rate: int, run_time: float,
                 threads: int, extra: list[str] | None = None):
        self.port = free_port()
        self.report = ps.workdir / f"report-{self.port}.json"
        self.master = ps.start(f"master-{self.port}", [
            barrage, "master", "-f", str(scenario_file), "-u", str(users), "-r", str(rate),
            "-t", f"{run_time:.0f}s", "--headless", "--only-summary", "--expect-workers", "1",
            "--expect-workers-max-wait", "30s", "--master-bind-host", "127.0.0.1",
            "--master-bind-port", str(self.port), "--json", str(self.report), "--stop-timeout", "5s",
            *(extra or []),
        ])
        wait_for("the master's port", lambda: socket.create_connection(("127.0.0.1", self.port), 0.2).close() or True, 20)
        self.worker = ps.start(f"worker-{self.port}", [
            barrage, "worker", "--master", f"127.0.0.1:{self.port}", "--threads", str(threads),
            "--give-up-after", "20s",
        ])

    def finish(self, limit: float) -> dict:
        self.master.wait(timeout=limit)
        self.worker.wait(timeout=15)
        return json.loads(self.report.read_text())


# ---------------------------------------------------------------- targets


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
  uwsgi_temp_path {dir}; scgi_temp_path {dir};
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location = /nginx_status {{ stub_status; }}
    location / {{ default_type text/plain; return 200 "hello, barrage\\n"; }}
  }}
}}
"""


def start_nginx(ps: Procs) -> tuple[int, callable]:
    port = free_port()
    conf = ps.workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=ps.workdir, port=port))
    ps.start("nginx", ["nginx", "-c", str(conf)])

    def served() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=5) as r:
            # "server accepts handled requests\n A H R": R counts this status call too.
            return int(r.read().decode().splitlines()[2].split()[2])

    wait_for("nginx", served, 10)
    return port, served


def start_mock(ps: Procs, barrage: str, args: list[str]) -> tuple[int, callable]:
    port = free_port()
    ps.start(f"mock-{port}", [barrage, "mock", "--listen", f"127.0.0.1:{port}", *args])

    def stats() -> dict:
        return get_json(f"http://127.0.0.1:{port}/_mock/stats")

    wait_for("the mock", stats, 10)
    return port, stats


# ---------------------------------------------------------------- steady-state window


def window(pids: list[int], counter, warm: float, length: float) -> tuple[float, int, float]:
    """CPU seconds of the process trees under `pids` and the target's count, over
    [warm, warm + length)."""
    time.sleep(warm)
    c0, n0, t0 = tree_cpu_seconds(pids), counter(), time.monotonic()
    time.sleep(length)
    c1, n1, t1 = tree_cpu_seconds(pids), counter(), time.monotonic()
    return c1 - c0, n1 - n0, t1 - t0


def window_split(parts: dict[str, list[int]], counter, warm: float, length: float) -> tuple[dict, int, float]:
    """Like `window`, with the CPU seconds of each named group of process trees."""
    time.sleep(warm)
    c0, n0, t0 = {k: tree_cpu_seconds(v) for k, v in parts.items()}, counter(), time.monotonic()
    time.sleep(length)
    c1, n1, t1 = {k: tree_cpu_seconds(v) for k, v in parts.items()}, counter(), time.monotonic()
    return {k: c1[k] - c0[k] for k in parts}, n1 - n0, t1 - t0


# ---------------------------------------------------------------- phases


def phase_http(a, workdir: Path) -> dict:
    """Plain HTTP/1.1 keep-alive: generator CPU per request, Barrage vs wrk -t1."""
    if not shutil.which("wrk") or not shutil.which("nginx"):
        return {"skipped": "wrk or nginx not installed (benches/run installs them)"}
    conns, length, warm = a.http_connections, a.window, 3.0
    runs: dict[str, list[dict]] = {}
    with procs(workdir) as ps:
        port, served = start_nginx(ps)
        plain = scenario(workdir, "plain", f'host = "http://127.0.0.1:{port}"\n'
                         '[[users]]\nname = "Plain"\n[[users.tasks]]\nname = "GET /"\npath = "/"\n')
        for round_ in range(a.http_rounds):
            # wrk -t1: one thread, `conns` keep-alive connections, no pipelining.
            wrk = ps.start(f"wrk-{round_}", ["wrk", "-t1", f"-c{conns}", f"-d{warm + length + 2:.0f}s",
                                             f"http://127.0.0.1:{port}/"])
            cpu, n, t = window([wrk.pid], served, warm, length)
            wrk.wait(timeout=30)
            runs.setdefault("wrk -t1", []).append({"cpu_s": cpu, "requests": n, "seconds": t})
            for threads in a.http_threads:
                c = Cluster(ps, a.barrage, plain, conns, 100000, warm + length + 2, threads)
                cpu, n, t = window_split({"worker": [c.worker.pid], "master": [c.master.pid]}, served, warm, length)
                report = c.finish(60)
                runs.setdefault(f"barrage --threads {threads}", []).append(
                    {"cpu_s": cpu["worker"] + cpu["master"], "worker_cpu_s": cpu["worker"],
                     "master_cpu_s": cpu["master"], "requests": n, "seconds": t,
                     "reported_failures": report["aggregated"]["failures"]})
    out = {"connections": conns, "window_s": length, "rounds": a.http_rounds, "tools": {}}
    for tool, rs in runs.items():
        per = [r["cpu_s"] / r["requests"] * 1e6 for r in rs if r["requests"]]
        rps = [r["requests"] / r["seconds"] for r in rs]
        worker = [r["worker_cpu_s"] / r["requests"] * 1e6 for r in rs if r["requests"] and "worker_cpu_s" in r]
        out["tools"][tool] = {"cpu_us_per_request": statistics.median(per), "all": per,
                              "worker_only_cpu_us_per_request": statistics.median(worker) if worker else None,
                              "requests_per_s": statistics.median(rps), "cores": statistics.median(
                                  [r["cpu_s"] / r["seconds"] for r in rs])}
    base = out["tools"]["wrk -t1"]["cpu_us_per_request"]
    for tool in out["tools"].values():
        tool["ratio_to_wrk"] = tool["cpu_us_per_request"] / base
    return out


def sse_scenario(workdir: Path, port: int, name: str, user: str = "Streamer", wait: str | None = None,
                 read_timeout: str = "2h", timeout: str = "3h") -> Path:
    """A Dify workflow stream task against the mock on `port`, one user class."""
    wait_line = f'wait = "{wait}"\n' if wait else ""
    return scenario(workdir, name, f"""host = "http://127.0.0.1:{port}"
[[users]]
name = "{user}"
{wait_line}[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
first_event_timeout = "30s"
read_timeout = "{read_timeout}"
timeout = "{timeout}"
headers = {{ Content-Type = "application/json" }}
body = '{{"inputs": {{}}, "response_mode": "streaming", "user": "{{{{user}}}}"}}'
""")


def ttfe(report: dict) -> dict:
    t = report["endpoints"][0]["ttfe_ms"] or {}
    return {k: t.get(k) for k in ("count", "p50", "p90", "p99")}


# Dify-style workflow streams, as issue #17 measures them: first event at 50 ms, then
# 16 text chunks and 5 other events, 22 in all, 10 ms apart (~260 ms a stream).
SSE_MOCK_ARGS = ["--first-event-delay", "50ms", "--chunks", "16", "--chunk-interval", "10ms",
                 "--ping-interval", "0s"]
LOCUSTFILE = ROOT / "benches" / "locust_sse.py"
# The peers, by the name the figures use: Locust user classes in benches/locust_sse.py.
LOCUST_CLASSES = {"locust FastHttpUser": "FastStreamer", "locust HttpUser": "RequestsStreamer"}


def sse_run_barrage(a, workdir: Path, streams: int, warm: float, length: float) -> dict:
    """One Barrage run (master + one worker, default threads) against a fresh mock."""
    with procs(workdir) as ps:
        port, stats = start_mock(ps, a.barrage, SSE_MOCK_ARGS)
        sc = sse_scenario(workdir, port, f"sse-{streams}")
        c = Cluster(ps, a.barrage, sc, streams, streams, warm + length + 3, a.threads)
        cpu, n, t = window_split({"worker": [c.worker.pid], "master": [c.master.pid]},
                                 lambda: stats()["events_sent"], warm, length)
        report = c.finish(90)
        truth = stats()
    w = report["workers"][0]
    text = json.dumps(report).lower()
    return {
        **sse_figures(cpu["worker"] + cpu["master"], n, t, ttfe(report), truth),
        "worker_cpu_us_per_event": cpu["worker"] / n * 1e6 if n else None,
        "requests_reported": report["aggregated"]["requests"], "events_reported": report["endpoints"][0]["events"],
        "exact": report["endpoints"][0]["events"] == truth["events_sent"]
        and report["aggregated"]["requests"] == truth["requests"],
        "failures": report["aggregated"]["failures"], "warnings": report["warnings"],
        # The report's verdict on its generator: the warning that its latency figures
        # include generator delay (busiest load thread past 90 %, or timers late).
        "generator_bound": "generator delay" in text or "generator-bound" in text,
        "worker_cpu_max_percent": w.get("cpu_max_percent"), "worker_lag_max_ms": w.get("sched_lag_max_ms"),
    }


def sse_run_floor(a, workdir: Path, streams: int, warm: float, length: float) -> dict:
    """The read-only client (`sse-floor`) on the same mock: the floor under CPU per event."""
    with procs(workdir) as ps:
        port, stats = start_mock(ps, a.barrage, SSE_MOCK_ARGS)
        f = ps.start("sse-floor", [str(ROOT / "target" / "release" / "sse-floor"), "--target", f"127.0.0.1:{port}",
                                   "--streams", str(streams), "--threads", str(a.threads),
                                   "--duration", f"{warm + length + 1:.0f}s"])
        cpu, n, t = window([f.pid], lambda: stats()["events_sent"], warm, length)
        f.wait(timeout=30)
    return {"cpu_us_per_event": cpu / n * 1e6 if n else None, "events_per_s": n / t, "cores": cpu / t}


def sse_run_locust(a, workdir: Path, tool: str, streams: int, warm: float, length: float) -> dict:
    """Locust, headless, one process, the same streams against a fresh mock; its users
    finish the stream they are in when the time is up (--stop-timeout), so what it
    counted can be held against the mock's counts."""
    cls = LOCUST_CLASSES[tool]
    out = workdir / f"locust-{cls}-{streams}-{time.monotonic_ns()}.json"
    with procs(workdir) as ps:
        port, stats = start_mock(ps, a.barrage, SSE_MOCK_ARGS)
        p = ps.start(f"locust-{cls}-{streams}", [
            a.locust_python, "-m", "locust", "-f", str(LOCUSTFILE), cls, "--headless", "-u", str(streams),
            "-r", str(streams), "-t", f"{warm + length + 2:.0f}s", "--stop-timeout", "10",
            "-H", f"http://127.0.0.1:{port}", "--only-summary", "--loglevel", "WARNING",
            "--exit-code-on-error", "0",
        ], env={**os.environ, "BENCH_LOCUST_OUT": str(out)})
        cpu, n, t = window([p.pid], lambda: stats()["events_sent"], warm, length)
        p.wait(timeout=warm + length + 60)
        truth = stats()
    seen = json.loads(out.read_text())
    return {
        **sse_figures(cpu, n, t, {"count": seen["ttfe_count"], **seen["ttfe_ms"]}, truth),
        "requests_counted": seen["requests"], "events_counted": seen["events"],
        "streams_failed": seen["streams_failed"],
        "exact": seen["events"] == truth["events_sent"] and seen["requests"] == truth["requests"],
    }


def sse_figures(cpu: float, n: int, t: float, tt: dict, truth: dict) -> dict:
    """CPU per event served, and TTFE against the mock's own record of when it handed
    each first event to the socket (p50 and p99 alike)."""
    m50, m99 = truth["first_event_p50_us"] / 1000, truth["first_event_p99_us"] / 1000
    return {
        "cpu_us_per_event": cpu / n * 1e6 if n else None, "events_per_s": n / t, "cores": cpu / t,
        "ttfe_ms": tt, "mock_first_event_p50_ms": m50, "mock_first_event_p99_ms": m99,
        "ttfe_p50_error_ms": tt["p50"] - m50 if tt.get("p50") is not None else None,
        "ttfe_p99_error_ms": tt["p99"] - m99 if tt.get("p99") is not None else None,
        "requests_mock": truth["requests"], "events_mock": truth["events_sent"],
    }


def phase_sse(a, workdir: Path) -> dict:
    """Dify-style streams (see SSE_MOCK_ARGS): Barrage at each stream count; at the CPU
    row's count also the read-only floor; at the peers' counts Locust with both user
    classes. Rounds interleave the tools, so a busy moment of the shared machine falls on
    all of them; each figure is the median of its rounds."""
    warm, length = 4.0, a.window
    tools = ["barrage"]
    if a.locust_python:
        tools += list(LOCUST_CLASSES)
    runs: dict[str, dict[str, list[dict]]] = {}
    for round_ in range(a.rounds):
        for streams in a.sse_streams:
            key = str(streams)
            print(f"  round {round_ + 1}/{a.rounds}, {streams} streams", flush=True)
            runs.setdefault(key, {}).setdefault("barrage", []).append(
                sse_run_barrage(a, workdir, streams, warm, length))
            if streams == a.sse_cpu_streams and (ROOT / "target" / "release" / "sse-floor").exists():
                runs[key].setdefault("floor", []).append(sse_run_floor(a, workdir, streams, warm, length))
            if streams in a.sse_peer_streams:
                for tool in tools[1:]:
                    try:
                        r = sse_run_locust(a, workdir, tool, streams, warm, length)
                    except (OSError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
                        r = {"error": f"{type(e).__name__}: {e}"}
                    runs[key].setdefault(tool, []).append(r)
    out: dict = {"mock": " ".join(SSE_MOCK_ARGS), "window_s": length, "rounds": a.rounds,
                 "locust": a.locust_version or f"not run: {a.locust_missing}", "streams": {}}
    for key, by_tool in runs.items():
        out["streams"][key] = {tool: summarize_sse(rs) for tool, rs in by_tool.items()}
    return out


def median_of(rs: list[dict], key: str):
    xs = [r[key] for r in rs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return statistics.median(xs) if xs else None


def summarize_sse(rs: list[dict]) -> dict:
    ok = [r for r in rs if "error" not in r]
    out = {k: median_of(ok, k) for k in ("cpu_us_per_event", "worker_cpu_us_per_event", "events_per_s", "cores",
                                          "ttfe_p50_error_ms", "ttfe_p99_error_ms", "mock_first_event_p50_ms",
                                          "mock_first_event_p99_ms")}
    for p in ("p50", "p99"):
        xs = [r["ttfe_ms"][p] for r in ok if isinstance(r.get("ttfe_ms", {}).get(p), (int, float))]
        out[f"ttfe_{p}_ms"] = statistics.median(xs) if xs else None
    if any("exact" in r for r in ok):
        out["exact"] = all(r.get("exact") for r in ok)
    if any("generator_bound" in r for r in ok):
        out["generator_bound"] = any(r.get("generator_bound") for r in ok)
    out["rounds"] = rs
    return out


def phase_memory(a, workdir: Path, streams: int, key: str) -> dict:
    """Open, idle SSE streams: worker RSS per stream (slope over the ramp, and total)."""
    with procs(workdir) as ps:
        port, stats = start_mock(ps, a.barrage, [
            "--first-event-delay", "0ms", "--chunks", "1", "--chunk-interval", "1h", "--ping-interval", "0s"])
        sc = sse_scenario(workdir, port, f"idle-{streams}")
        rate = max(500, streams // 10)
        ramp = streams / rate
        hold = 5.0
        c = Cluster(ps, a.barrage, sc, streams, rate, ramp + hold + 20, a.threads)
        samples = []
        deadline = time.monotonic() + ramp + 20
        base = None
        while time.monotonic() < deadline:
            active = stats()["active_streams"]
            rss = rss_bytes(c.worker.pid)
            if base is None:
                base = rss
            samples.append((active, rss))
            if active >= streams:
                break
            time.sleep(0.25)
        time.sleep(hold)
        active, rss = stats()["active_streams"], rss_bytes(c.worker.pid)
        samples.append((active, rss))
        c.master.send_signal(signal.SIGINT)
        try:
            c.master.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    # Marginal cost: least squares of RSS over open streams, past the first tenth.
    pts = [(s, r) for s, r in samples if s >= streams // 10]
    slope = None
    if len(pts) >= 2:
        mx = statistics.fmean(s for s, _ in pts)
        my = statistics.fmean(r for _, r in pts)
        sxx = sum((s - mx) ** 2 for s, _ in pts)
        if sxx:
            slope = sum((s - mx) * (r - my) for s, r in pts) / sxx
    return {
        "target_streams": streams, "open_streams": active, "worker_rss_mib": rss / 2**20,
        "baseline_rss_mib": (base or 0) / 2**20,
        "kib_per_stream_total": (rss - (base or 0)) / max(active, 1) / 1024,
        "kib_per_stream_slope": slope / 1024 if slope else None,
    }


def phase_master(a, workdir: Path) -> dict:
    """`sim-workers`: N fake workers on the real protocol against a real master."""
    sim = ROOT / "target" / "release" / "sim-workers"
    if not sim.exists():
        return {"skipped": f"{sim} not built (benches/run builds it)"}
    out = {}
    for n, endpoints in a.master_runs:
        key = f"{n}x{endpoints}"
        p = subprocess.run([str(sim), "--barrage", a.barrage, "--workers", str(n), "--endpoints", str(endpoints),
                            "--duration", f"{a.master_duration}s", "--json-out", str(workdir / f"sim-{key}.json")],
                           capture_output=True, text=True, timeout=a.master_duration + 240)
        (workdir / f"sim-{key}.log").write_text(p.stdout + p.stderr)
        sys.stdout.write(p.stdout)
        try:
            m = json.loads((workdir / f"sim-{key}.json").read_text())
        except (OSError, ValueError):
            out[key] = {"error": f"sim-workers exited {p.returncode}; see {workdir}/sim-{key}.log"}
            continue
        m["histogram_kb_per_report"] = histogram_kb(m, p.stdout)
        m["exact"] = m.get("requests_sent") is not None and m.get("requests_sent") == m.get("requests_reported")
        out[key] = m
    return out


def histogram_kb(m: dict, stdout: str):
    """KB of histograms in one report: sim-workers' JSON when it carries the figure,
    else its printed "report content" line."""
    for k, v in m.items():
        if "histogram" in k and isinstance(v, (int, float)):
            return v / 1e3 if k.endswith("bytes") or "bytes_per" in k else v
    found = re.search(r"([\d.]+) KB of (?:V2 )?histograms per report", stdout)
    return float(found.group(1)) if found else None


# ---------------------------------------------------------------- past the port limit


PORTS_TARGET = 8080
PORTS_MASTER = 5557
# The harness's own reads of the mock's stats come from here, not from the worker's addresses.
PORTS_STATS_SOURCE = "127.0.0.250"


def ns(name: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", name, *argv]


def sh(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip() or p.returncode}")


def ns_stats(name: str) -> dict:
    """The mock's /_mock/stats, read from inside the namespace (retried for 10 s: while
    thousands of connects arrive at once, one read may be refused)."""
    return wait_for("the mock's stats in the namespace", lambda: ns_stats_once(name), 10, every=0.2)


def ns_stats_once(name: str) -> dict:
    # From its own source address: the worker may hold every port 127.0.0.1 has.
    p = subprocess.run(ns(name, sys.executable, "-c", "import http.client, sys; c = http.client.HTTPConnection("
                          f"'127.0.0.1', {PORTS_TARGET}, timeout=5, source_address=('{PORTS_STATS_SOURCE}', 0)); "
                          "c.request('GET', '/_mock/stats'); sys.stdout.write(c.getresponse().read().decode())"),
                       capture_output=True, text=True, timeout=15)
    return json.loads(p.stdout)


def ns_sources(name: str) -> dict[str, int]:
    """Established connections to the target by source IP, as the kernel lists them."""
    p = subprocess.run(ns(name, "ss", "-Htn", "state", "established", "dport", "=", f":{PORTS_TARGET}"),
                       capture_output=True, text=True, timeout=15)
    out: dict[str, int] = {}
    for line in p.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 4:
            ip = cols[2].rsplit(":", 1)[0]
            out[ip] = out.get(ip, 0) + 1
    return out


def ports_run(a, workdir: Path, name: str, streams: int, sources: str | None) -> dict:
    """One worker holding `streams` idle streams to one target address, inside the
    namespace `name` (narrowed port range): what the mock held and from which sources."""
    label = "sources" if sources else "one"
    with procs(workdir) as ps:
        ps.start(f"ports-mock-{label}", ns(name, a.barrage, "mock", "--listen", f"127.0.0.1:{PORTS_TARGET}",
                                           "--first-event-delay", "0ms", "--chunks", "1", "--chunk-interval", "1h",
                                           "--ping-interval", "0s"))
        wait_for("the mock in the namespace", lambda: ns_stats_once(name), 15, every=0.2)
        sc = sse_scenario(workdir, PORTS_TARGET, f"ports-{label}", user="Holder", wait="constant(0.5)",
                          read_timeout="1h", timeout="2h")
        report_file = workdir / f"ports-{label}.json"
        rate = 1000
        run_time = streams / rate + 8
        master = ps.start(f"ports-master-{label}", ns(
            name, a.barrage, "master", "-f", str(sc), "-u", str(streams), "-r", str(rate), "-t", f"{run_time:.0f}s",
            "--headless", "--only-summary", "--json", str(report_file), "--stop-timeout", "2s",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", str(PORTS_MASTER),
            "--expect-workers", "1", "--expect-workers-max-wait", "20s"))
        worker_args = ["worker", "--master", f"127.0.0.1:{PORTS_MASTER}", "--threads", "1", "--give-up-after", "20s"]
        if sources:
            worker_args += ["--source-addresses", sources]
        ps.start(f"ports-worker-{label}", ns(name, a.barrage, *worker_args))
        # Hold: until every stream is open, or the count stops rising for 3 s.
        deadline, held, since = time.monotonic() + run_time, -1, time.monotonic()
        while time.monotonic() < deadline - 2:
            now = ns_stats(name)["active_streams"]
            if now != held:
                held, since = now, time.monotonic()
            if held >= streams or (held > 0 and time.monotonic() - since > 3):
                break
            time.sleep(0.25)
        truth, by_source = ns_stats(name), ns_sources(name)
        master.wait(timeout=run_time + 60)
        report = json.loads(report_file.read_text())
    exhausted = sum(f["count"] for f in report.get("failures", []) if f.get("detail") == "source_port_exhaustion")
    return {"streams": streams, "source_addresses": sources, "held_by_mock": truth["active_streams"],
            "mock_max_concurrent_streams": truth["max_concurrent_streams"],
            "reported_max_concurrent": report["connections"]["max_concurrent"],
            "connections_by_source_ip": by_source, "source_port_exhaustion_failures": exhausted}


def phase_ports(a, workdir: Path) -> dict:
    """Streams from one worker to one target address, past one source address's
    ephemeral ports: in a network namespace whose port range is narrowed to a.ports
    ports, a.ports x 2.5 streams, from one source address and from enough 127/8
    aliases (`--source-addresses`)."""
    if os.geteuid() != 0:
        return {"skipped": "not root: the ports phase creates a network namespace (ip netns add)"}
    if not shutil.which("ip") or not shutil.which("ss"):
        return {"skipped": "no `ip`/`ss` (iproute2): the ports phase needs network namespaces"}
    ports, streams = a.ports, int(a.ports * 2.5)
    addresses = -(-streams // ports)
    sources = ",".join(f"127.0.0.{i}" for i in range(2, 2 + addresses))
    name = f"barrage-bench-{os.getpid()}"
    try:
        sh(["ip", "netns", "add", name])
    except RuntimeError as e:
        return {"skipped": f"cannot create a network namespace: {e}"}
    try:
        sh(ns(name, "ip", "link", "set", "lo", "up"))
        for addr in [f"127.0.0.{i}" for i in range(2, 2 + addresses)] + [PORTS_STATS_SOURCE]:
            sh(ns(name, "ip", "addr", "add", f"{addr}/8", "dev", "lo"))
        low = 40000
        sh(ns(name, "sysctl", "-qw", f"net.ipv4.ip_local_port_range={low} {low + ports - 1}"))
        one = ports_run(a, workdir, name, streams, None)
        many = ports_run(a, workdir, name, streams, sources)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    default_ports = 60999 - 32768 + 1
    return {"ports_per_address": ports, "streams": streams, "one_address": one, "source_addresses": many,
            "addresses": addresses, "default_ports_per_address": default_ports,
            "addresses_for_100k_default_range": -(-100_000 // default_ports),
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


# ---------------------------------------------------------------- main


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> dict:
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release,
            "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "port_range": open("/proc/sys/net/ipv4/ip_local_port_range").read().split()}


def commit() -> str | None:
    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() or None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--barrage", default=str(ROOT / "target" / "release" / "barrage"))
    ap.add_argument("--phases", default="http,sse,memory,scale,master,ports",
                    help="comma-separated subset of: http, sse, memory, scale, master, ports")
    ap.add_argument("--locust-python", help="a python with Locust installed (benches/run makes target/bench-venv); "
                    "without it the sse phase runs no Locust")
    ap.add_argument("--quick", action="store_true", help="short windows and small counts (a smoke run)")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="worker load threads")
    a = ap.parse_args()
    a.window = 4.0 if a.quick else 10.0
    a.rounds = 1 if a.quick else 3
    a.http_rounds = 1 if a.quick else 5
    a.http_connections = 50
    a.http_threads = [1, a.threads] if a.threads != 1 else [1]
    # The issue's rows: TTFE at 100, 500 and 2,000 streams (peers at 100 and 500), CPU per
    # event at 500. The quick run keeps the counts and shortens the windows.
    a.sse_streams = [100, 500, 2000]
    a.sse_peer_streams = [100, 500]
    a.sse_cpu_streams = 500
    a.master_runs = [(200, 10), (200, 50)] if a.quick else [(1000, 10), (1000, 50)]
    a.master_duration = 10 if a.quick else 30
    # Ports of the namespace's narrowed range: the run holds 2.5x as many streams.
    a.ports = 200 if a.quick else 1000
    a.locust_version, a.locust_missing = None, "no --locust-python (benches/run installs Locust)"
    if a.locust_python:
        p = subprocess.run([a.locust_python, "-c", "import locust; print(locust.__version__)"],
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            a.locust_version = p.stdout.strip()
        else:
            a.locust_missing = f"{a.locust_python} cannot import locust"
            a.locust_python = None
    fds = raise_fd_limit()
    a.scale_streams = min(20_000, fds - 200)
    if a.quick:
        a.scale_streams = min(a.scale_streams, 2_000)
    if not Path(a.barrage).exists():
        print(f"error: {a.barrage} not found; build it with `cargo build --release -p barrage-master`", file=sys.stderr)
        return 2
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": commit(), "machine": machine(),
               "quick": a.quick, "loadavg_start": os.getloadavg(), "phases": {}}
    run_started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="barrage-bench-"))
    print(f"# Barrage whole-system benchmark ({'quick' if a.quick else 'full'}); logs in {workdir}")
    for phase in a.phases.split(","):
        started = time.monotonic()
        print(f"\n## {phase}", flush=True)
        try:
            if phase == "http":
                r = phase_http(a, workdir)
            elif phase == "sse":
                r = phase_sse(a, workdir)
            elif phase == "memory":
                r = phase_memory(a, workdir, 1_000 if a.quick else 10_000, "memory")
            elif phase == "scale":
                r = phase_memory(a, workdir, a.scale_streams, "scale")
            elif phase == "master":
                r = phase_master(a, workdir)
            elif phase == "ports":
                r = phase_ports(a, workdir)
            else:
                print(f"unknown phase {phase!r}", file=sys.stderr)
                return 2
        except Exception as e:  # a phase that breaks is reported, the others still run
            r = {"error": f"{type(e).__name__}: {e}"}
        r["phase_seconds"] = round(time.monotonic() - started, 1)
        results["phases"][phase] = r
        print(json.dumps(r, indent=2), flush=True)
    results["run_seconds"] = round(time.monotonic() - run_started, 1)
    results["loadavg_end"] = os.getloadavg()
    results["table"] = table(results)
    print(summary(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


def fmt(x, spec: str = ".2f", none: str = "n/a") -> str:
    return format(x, spec) if isinstance(x, (int, float)) else none


def over(value, goal: float, unit: str) -> str:
    """'met' or by how much a figure misses its goal."""
    if not isinstance(value, (int, float)):
        return "not measured"
    if value <= goal:
        return "met"
    return f"not met: {value - goal:.2f}{unit} over ({value / goal:.1f}x the goal)" if goal else "not met"


def table(res: dict) -> list[dict]:
    """Issue #17's table from this run: figure | Barrage | peer (same run) | goal | verdict."""
    ph, rows = res["phases"], []

    def row(figure, barrage, peer, goal, verdict):
        rows.append({"figure": figure, "barrage": barrage, "peer": peer, "goal": goal, "verdict": verdict})

    http = ph.get("http", {})
    tools = http.get("tools") or {}
    b, w = tools.get("barrage --threads 1"), tools.get("wrk -t1")
    if b and w:
        r = b["ratio_to_wrk"]
        row("CPU per plain request (master + worker --threads 1, 50 users)",
            f"{b['cpu_us_per_request']:.2f} µs = {r:.2f}x wrk (worker alone "
            f"{fmt(b.get('worker_only_cpu_us_per_request'))} µs)",
            f"wrk -t1 -c50 {w['cpu_us_per_request']:.2f} µs", "<= 1.05x wrk",
            "met" if r <= 1.05 else f"not met: {r - 1.05:.2f}x over")
    else:
        row("CPU per plain request", "not run", http.get("skipped") or http.get("error") or "-", "<= 1.05x wrk", "-")

    sse = (ph.get("sse") or {}).get("streams") or {}
    cpu_row = sse.get("500") or {}
    bs = cpu_row.get("barrage") or {}
    peers = []
    floor = (cpu_row.get("floor") or {}).get("cpu_us_per_event")
    if floor:
        peers.append(f"read-only floor {floor:.2f} µs")
    for tool in LOCUST_CLASSES:
        t = cpu_row.get(tool) or {}
        if t.get("cpu_us_per_event"):
            peers.append(f"{tool} {t['cpu_us_per_event']:.2f} µs")
    x_floor = f" = {bs['cpu_us_per_event'] / floor:.2f}x the floor" if bs.get("cpu_us_per_event") and floor else ""
    row("CPU per SSE event, 500 streams (generator's process tree)",
        f"{fmt(bs.get('cpu_us_per_event'))} µs{x_floor} (worker alone {fmt(bs.get('worker_cpu_us_per_event'))} µs)"
        if bs else "not run", "; ".join(peers) or (ph.get("sse") or {}).get("locust", "-"), "<= 5 µs",
        over(bs.get("cpu_us_per_event"), 5.0, " µs"))

    goals = {"100": (0.5, None), "500": (1.0, 5.0), "2000": (3.0, None)}
    for key, (p50_goal, p99_goal) in goals.items():
        by_tool = sse.get(key) or {}
        bt = by_tool.get("barrage") or {}
        e50, e99 = bt.get("ttfe_p50_error_ms"), bt.get("ttfe_p99_error_ms")
        cell = (f"{fmt(e50, '+.2f')} ms (p99 {fmt(e99, '+.2f')} ms vs the mock's p99; "
                f"counts {'exact' if bt.get('exact') else 'DIFFER from the mock'})") if bt else "not run"
        peer = []
        for tool in LOCUST_CLASSES:
            t = by_tool.get(tool) or {}
            if t.get("ttfe_p50_error_ms") is not None:
                peer.append(f"{tool} {t['ttfe_p50_error_ms']:+.2f} ms (p99 {fmt(t.get('ttfe_p99_error_ms'), '+.1f')} ms; "
                            f"counts {'exact' if t.get('exact') else 'differ'})")
        goal = f"<= {p50_goal} ms" + (f", p99 within {p99_goal:.0f} ms of the target's" if p99_goal else "")
        if key == "2000":
            goal += ", or an explicit generator-bound verdict"
        if not isinstance(e50, (int, float)):
            verdict = "not measured"
        elif e50 <= p50_goal and (p99_goal is None or (e99 is not None and e99 <= p99_goal)):
            verdict = "met"
        elif key == "2000" and bt.get("generator_bound"):
            verdict = f"met by verdict: the report says generator-bound (p50 {e50 - p50_goal:+.2f} ms past 3 ms)"
        else:
            misses = []
            if e50 > p50_goal:
                misses.append(f"p50 {e50 - p50_goal:.2f} ms over")
            if p99_goal is not None and isinstance(e99, (int, float)) and e99 > p99_goal:
                misses.append(f"p99 {e99 - p99_goal:.1f} ms over")
            if key == "2000":
                misses.append("no generator-bound verdict in the report")
            verdict = "not met: " + ", ".join(misses)
        row(f"TTFE p50 error, {int(key):,} streams", cell, "; ".join(peer) or "-", goal, verdict)

    master = ph.get("master") or {}
    for key, goal_cpu in (("x10", 10.0), ("x50", 25.0)):
        m = next((v for k, v in master.items() if k.endswith(key) and isinstance(v, dict)), None)
        n = next((k.split("x")[0] for k in master if k.endswith(key)), "1000")
        figure = f"master, {int(n):,} simulated workers {key.replace('x', 'x ')} endpoints"
        if not m or "master_cpu_percent" not in m:
            row(figure, "not run", "-", f"<= {goal_cpu:.0f} %", (m or {}).get("error", master.get("skipped", "-")))
            continue
        cpu, final = m.get("master_cpu_percent"), m.get("final_report_ms")
        cell = (f"{fmt(cpu, '.1f')} % of a core, {fmt(m.get('histogram_kb_per_report'), '.1f')} KB of histograms "
                f"per report, final report {fmt(final, '.0f')} ms after the last; totals "
                f"{'exact' if m.get('exact') else 'DIFFER'}")
        verdict = over(cpu, goal_cpu, " points")
        goal = f"<= {goal_cpu:.0f} %"
        if key == "x50":
            goal += ", final report <= 0.5 s"
            if isinstance(final, (int, float)) and final > 500:
                verdict = (verdict if verdict != "met" else "CPU met") + f"; final report {final - 500:.0f} ms over"
        row(figure, cell, "- (Locust's master is not run here)", goal, verdict)

    sc = ph.get("scale") or ph.get("memory") or {}
    if "open_streams" in sc:
        row("worker RSS per idle open stream",
            f"{fmt(sc.get('kib_per_stream_slope'), '.1f')} KiB (slope) at {sc['open_streams']:,} streams; "
            f"{sc['kib_per_stream_total']:.1f} KiB total/streams", "- (AIPerf's ~1 MiB per connection is its docs')",
            "<= 4 KiB", over(sc.get("kib_per_stream_slope"), 4.0, " KiB"))
    else:
        row("worker RSS per idle open stream", "not run", "-", "<= 4 KiB", sc.get("error", "-"))

    pt = ph.get("ports") or {}
    if "one_address" in pt:
        one, many = pt["one_address"], pt["source_addresses"]
        cell = (f"namespace with {pt['ports_per_address']:,} ports: one address held {one['held_by_mock']:,} of "
                f"{pt['streams']:,} ({pt['ports_per_address']:,} ports x 1); --source-addresses x {pt['addresses']} "
                f"held {many['held_by_mock']:,} ({pt['ports_per_address']:,} x {pt['addresses']} = "
                f"{pt['ports_per_address'] * pt['addresses']:,} ports) from "
                f"{len(many['connections_by_source_ip'])} source IPs")
        ok = many["held_by_mock"] >= pt["streams"] and one["held_by_mock"] <= pt["ports_per_address"]
        verdict = ((f"met, scaled down: 100,000 needs an open-file limit above 100,000 (here {pt['fd_limit']:,}) "
                    f"and {pt['addresses_for_100k_default_range']} addresses at the default range")
                   if ok else "not met: the addresses did not hold every stream")
        row("streams from one worker to one target address", cell, "-", "100,000 across several source addresses",
            verdict)
    else:
        row("streams from one worker to one target address", "not run", "-",
            "100,000 across several source addresses", pt.get("skipped") or pt.get("error") or "-")
    return rows


def summary(res: dict) -> str:
    lines = ["", f"## Summary ({'quick' if res.get('quick') else 'full'} run, {res.get('run_seconds', 0):.0f} s, "
             f"commit {res.get('commit')}): issue #17's table", "",
             "| figure | Barrage | peer (same run) | goal | met or by how much |", "| --- | --- | --- | --- | --- |"]
    cpus, loads = os.cpu_count() or 1, [res.get("loadavg_start", (0,))[0], res.get("loadavg_end", (0,))[0]]
    if max(loads) > cpus:
        lines[3:3] = [f"Load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end on {cpus} CPUs: other "
                      "work shared the machine, so every tool got less than a core; compare the ratios within this "
                      "run, not the figures across runs.", ""]
    for r in res.get("table", []):
        lines.append(f"| {r['figure']} | {r['barrage']} | {r['peer']} | {r['goal']} | {r['verdict']} |")
    sse = (res["phases"].get("sse") or {}).get("streams") or {}
    if sse:
        lines += ["", "SSE detail (medians of the rounds; error = against the mock's own first-event record):"]
        for key, by_tool in sse.items():
            for tool, t in by_tool.items():
                lines.append(
                    f"  {int(key):>5} streams  {tool:<20} {fmt(t.get('cpu_us_per_event'), '6.2f')} µs CPU/event, "
                    f"{fmt(t.get('events_per_s'), '7.0f')} events/s, {fmt(t.get('cores'), '.2f')} cores"
                    + (f"; TTFE p50 {fmt(t.get('ttfe_p50_ms'))} ms (mock {fmt(t.get('mock_first_event_p50_ms'))}) "
                       f"p99 {fmt(t.get('ttfe_p99_ms'))} ms (mock {fmt(t.get('mock_first_event_p99_ms'))}); "
                       f"counts {'exact' if t.get('exact') else 'differ'}" if "exact" in t else ""))
    for key in ("memory", "scale"):
        m = res["phases"].get(key) or {}
        if "open_streams" in m:
            lines.append(f"{key:<6}{m['open_streams']:>6} idle streams: worker RSS {m['worker_rss_mib']:.0f} MiB, "
                         f"{m['kib_per_stream_total']:.1f} KiB/stream total, slope "
                         f"{fmt(m['kib_per_stream_slope'], '.1f')} KiB/stream")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
