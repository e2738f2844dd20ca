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
        log = open(self.workdir / f"{name}.log", "w")
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
    """CPU seconds of `pids` and the target's count, over [warm, warm + length)."""
    time.sleep(warm)
    c0, n0, t0 = sum(cpu_seconds(p) for p in pids), counter(), time.monotonic()
    time.sleep(length)
    c1, n1, t1 = sum(cpu_seconds(p) for p in pids), counter(), time.monotonic()
    return c1 - c0, n1 - n0, t1 - t0


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
                cpu, n, t = window([c.worker.pid], served, warm, length)
                master_cpu = cpu_seconds(c.master.pid)
                report = c.finish(60)
                runs.setdefault(f"barrage --threads {threads}", []).append(
                    {"cpu_s": cpu, "requests": n, "seconds": t, "master_cpu_s_total": master_cpu,
                     "reported_failures": report["aggregated"]["failures"]})
    out = {"connections": conns, "window_s": length, "rounds": a.http_rounds, "tools": {}}
    for tool, rs in runs.items():
        per = [r["cpu_s"] / r["requests"] * 1e6 for r in rs if r["requests"]]
        rps = [r["requests"] / r["seconds"] for r in rs]
        out["tools"][tool] = {"cpu_us_per_request": statistics.median(per), "all": per,
                              "requests_per_s": statistics.median(rps), "cores": statistics.median(
                                  [r["cpu_s"] / r["seconds"] for r in rs])}
    base = out["tools"]["wrk -t1"]["cpu_us_per_request"]
    for tool in out["tools"].values():
        tool["ratio_to_wrk"] = tool["cpu_us_per_request"] / base
    return out


def sse_scenario(workdir: Path, port: int, name: str) -> Path:
    return scenario(workdir, name, f"""
host = "http://127.0.0.1:{port}"
[[users]]
name = "Streamer"
[[users.tasks]]
name = "/v1/workflows/run"
method = "POST"
path = "/v1/workflows/run"
kind = "dify"
first_event_timeout = "30s"
read_timeout = "2h"
timeout = "3h"
headers = {{ Content-Type = "application/json" }}
body = '{{"inputs": {{}}, "response_mode": "streaming", "user": "{{{{user}}}}"}}'
""")


def ttfe(report: dict) -> dict:
    t = report["endpoints"][0]["ttfe_ms"] or {}
    return {k: t.get(k) for k in ("count", "p50", "p90", "p99")}


def phase_sse(a, workdir: Path) -> dict:
    """Dify-style streams, an event every 10 ms: generator CPU per event against a
    read-only floor client, and TTFE against what the mock really did; then the same
    streams with events 100 ms apart (the mock and the worker share this machine's
    cores: at 10 ms both are busy), and many more streams at 100 ms."""
    floor_bin = ROOT / "target" / "release" / "sse-floor"
    out = {}
    configs = [(a.sse_users, 200, "10ms"), (a.sse_users, 20, "100ms"), (a.sse_users_high, 20, "100ms")]
    for users, chunks, interval in configs:
        mock_args = ["--first-event-delay", "50ms", "--chunks", str(chunks), "--chunk-interval", interval,
                     "--ping-interval", "0s"]
        warm, length = 4.0, a.window
        rounds = []
        for _ in range(a.rounds):
            with procs(workdir) as ps:
                port, stats = start_mock(ps, a.barrage, mock_args)
                sc = sse_scenario(workdir, port, f"sse-{users}")
                c = Cluster(ps, a.barrage, sc, users, users, warm + length + 3, a.threads)
                cpu, n, t = window([c.worker.pid], lambda: stats()["events_sent"], warm, length)
                report = c.finish(90)
                truth = stats()
            t_ms = ttfe(report)
            served_ms = truth["first_event_p50_us"] / 1000
            rounds.append({
                "cpu_us_per_event": cpu / n * 1e6 if n else None, "events_per_s": n / t, "worker_cores": cpu / t,
                "ttfe_ms": t_ms, "mock_first_event_p50_ms": served_ms,
                "ttfe_p50_error_vs_served_ms": (t_ms["p50"] or 0) - served_ms,
                "mock_first_event_p99_ms": truth["first_event_p99_us"] / 1000,
                "ttfe_p99_error_vs_served_ms": (t_ms["p99"] or 0) - truth["first_event_p99_us"] / 1000,
                # The report's own verdict on the generator (its busiest load thread past
                # 90 %, or its timers late): its latency figures include its own delay.
                "generator_bound": any("generator delay" in w for w in report["warnings"]),
                "ttfe_p50_error_vs_configured_ms": (t_ms["p50"] or 0) - 50.0,
                "requests_reported": report["aggregated"]["requests"], "requests_mock": truth["requests"],
                "events_reported": report["endpoints"][0]["events"], "events_mock": truth["events_sent"],
                "failures": report["aggregated"]["failures"], "warnings": report["warnings"],
                "worker_cpu_max_percent": report["workers"][0]["cpu_max_percent"],
                "worker_lag_max_ms": report["workers"][0]["sched_lag_max_ms"],
            })
        floor = []
        if floor_bin.exists() and interval == "10ms":
            for _ in range(a.rounds):
                with procs(workdir) as ps:
                    port, stats = start_mock(ps, a.barrage, mock_args)
                    f = ps.start("sse-floor", [str(floor_bin), "--target", f"127.0.0.1:{port}", "--streams",
                                               str(users), "--threads", str(a.threads),
                                               "--duration", f"{warm + length + 1:.0f}s"])
                    cpu, n, t = window([f.pid], lambda: stats()["events_sent"], warm, length)
                    f.wait(timeout=30)
                floor.append(cpu / n * 1e6 if n else None)
        per = [r["cpu_us_per_event"] for r in rounds if r["cpu_us_per_event"]]
        med = lambda xs: statistics.median(xs) if xs else None
        out[f"{users}@{interval}"] = {
            "users": users, "event_interval": interval, "rounds": rounds,
            "cpu_us_per_event": med(per), "floor_cpu_us_per_event": med([x for x in floor if x]),
            "events_per_s": med([r["events_per_s"] for r in rounds]),
            "ttfe_p50_ms": med([r["ttfe_ms"]["p50"] for r in rounds if r["ttfe_ms"]["p50"]]),
            "mock_first_event_p50_ms": med([r["mock_first_event_p50_ms"] for r in rounds]),
            "ttfe_p50_error_vs_served_ms": med([r["ttfe_p50_error_vs_served_ms"] for r in rounds]),
            "ttfe_p99_error_vs_served_ms": med([r["ttfe_p99_error_vs_served_ms"] for r in rounds]),
            "generator_bound_rounds": sum(r["generator_bound"] for r in rounds),
            "rounds_run": len(rounds),
            "exact": all(r["events_reported"] == r["events_mock"] and r["requests_reported"] == r["requests_mock"]
                         for r in rounds),
        }
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
    sim = ROOT / "target" / "release" / "sim-workers"
    if not sim.exists():
        return {"skipped": f"{sim} not built (benches/run builds it)"}
    out = {}
    for n in a.master_workers:
        p = subprocess.run([str(sim), "--barrage", a.barrage, "--workers", str(n), "--endpoints", "10",
                            "--duration", f"{a.master_duration}s", "--json-out", str(workdir / f"sim-{n}.json")],
                           capture_output=True, text=True, timeout=a.master_duration + 240)
        (workdir / f"sim-{n}.log").write_text(p.stdout + p.stderr)
        sys.stdout.write(p.stdout)
        try:
            out[str(n)] = json.loads((workdir / f"sim-{n}.json").read_text())
        except (OSError, ValueError):
            out[str(n)] = {"error": f"sim-workers exited {p.returncode}; see {workdir}/sim-{n}.log"}
    return out


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--barrage", default=str(ROOT / "target" / "release" / "barrage"))
    ap.add_argument("--phases", default="http,sse,memory,scale,master",
                    help="comma-separated subset of: http, sse, memory, scale, master")
    ap.add_argument("--quick", action="store_true", help="short windows and small counts (a smoke run)")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="worker load threads")
    a = ap.parse_args()
    a.window = 4.0 if a.quick else 10.0
    a.rounds = 1 if a.quick else 3
    a.http_rounds = 1 if a.quick else 5
    a.http_connections = 50
    a.http_threads = [1, a.threads] if a.threads != 1 else [1]
    a.sse_users, a.sse_users_high = (100, 300) if a.quick else (500, 2000)
    a.master_workers = [50] if a.quick else [100, 1000]
    a.master_duration = 10 if a.quick else 30
    fds = raise_fd_limit()
    a.scale_streams = min(20_000, fds - 200)
    if a.quick:
        a.scale_streams = min(a.scale_streams, 2_000)
    if not Path(a.barrage).exists():
        print(f"error: {a.barrage} not found; build it with `cargo build --release -p barrage-master`", file=sys.stderr)
        return 2
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "phases": {}}
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
            else:
                print(f"unknown phase {phase!r}", file=sys.stderr)
                return 2
        except Exception as e:  # a phase that breaks is reported, the others still run
            r = {"error": f"{type(e).__name__}: {e}"}
        r["phase_seconds"] = round(time.monotonic() - started, 1)
        results["phases"][phase] = r
        print(json.dumps(r, indent=2), flush=True)
    print(summary(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0


def summary(res: dict) -> str:
    ph = res["phases"]
    lines = ["", "## Summary"]
    http = ph.get("http", {}).get("tools")
    if http:
        for tool, t in http.items():
            lines.append(f"http  {tool:<22} {t['cpu_us_per_request']:6.2f} µs CPU/request  "
                         f"{t['requests_per_s']:8.0f} req/s  ratio to wrk {t['ratio_to_wrk']:.2f} (target <= 1.25)")
    for users, s in (ph.get("sse") or {}).items():
        if isinstance(s, dict) and "users" in s:
            per, floor = s["cpu_us_per_event"], s["floor_cpu_us_per_event"]
            ratio = f" = {per / floor:.2f}x the read-only floor ({floor:.2f})" if per and floor else ""
            lines.append(f"sse   {s['users']:>5} streams, events {s['event_interval']} apart: "
                         f"{per or float('nan'):5.2f} µs CPU/event{ratio} (target <= 5) at "
                         f"{s['events_per_s']:.0f} events/s")
            lines.append(f"      TTFE p50 {s['ttfe_p50_ms']} ms; the mock served its first events at p50 "
                         f"{s['mock_first_event_p50_ms']:.3f} ms -> error {s['ttfe_p50_error_vs_served_ms']:+.3f} ms "
                         f"(p99 {s['ttfe_p99_error_vs_served_ms']:+.3f} ms); "
                         f"events and requests equal to the mock's: {s['exact']}")
            bound = s["generator_bound_rounds"]
            lines.append(f"      generator-bound: {'yes' if bound else 'no'} ({bound} of {s['rounds_run']} rounds "
                         f"with the report's generator-delay warning)")
    for key in ("memory", "scale"):
        m = ph.get(key) or {}
        if "open_streams" in m:
            lines.append(f"{key:<6}{m['open_streams']:>6} idle streams: worker RSS {m['worker_rss_mib']:.0f} MiB, "
                         f"{m['kib_per_stream_total']:.1f} KiB/stream total, slope "
                         f"{(m['kib_per_stream_slope'] or float('nan')):.1f} KiB/stream (target <= 16)")
    for n, m in (ph.get("master") or {}).items():
        if isinstance(m, dict) and "master_cpu_percent" in m:
            lines.append(f"master {n:>5} workers: {m['master_cpu_percent']:.1f}% of a core, peak RSS "
                         f"{m['master_peak_rss_mib']:.0f} MiB, final report {m['final_report_ms']:.0f} ms after "
                         f"the last worker's final report")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
