#!/usr/bin/env python3
"""Builds the image and runs Barrage's containers in a real Docker engine, offline.

Run as root from anywhere: `python3 deploy/containers.py [STEP ...]` (Python 3.11+),
steps `image`, `compose`, `helm` (default: all three, in that order).
`master/tests/containers.rs` runs it in the test suite. What it does:

1. The engine. Installs Debian's `docker.io`, `docker-compose` and `debootstrap` when
   missing (apt-get, as root), and starts `dockerd` when no engine answers; it stops
   the daemon it started when it ends, failed or not. Where no engine can be had (not
   root, no apt, dockerd refuses to start) it prints `SKIPPED: why` and exits 77.
2. Base images, made locally when missing (no registry is reachable here):
   `debian:bookworm-slim` is `debootstrap --variant=minbase bookworm` imported with
   `docker import`; the builder, `barrage-local/rust:VERSION-bookworm`, is the same
   with gcc, libc6-dev and ca-certificates plus this machine's Rust toolchain (cargo,
   rustc and the x86_64 standard library from `rustc --print sysroot`).
3. The image: the crates vendored into target/docker-vendor (`cargo vendor --offline`
   from this machine's cargo cache, redone only when Cargo.lock changes), then
   `DOCKER_BUILDKIT=0 docker build -f deploy/Dockerfile` (the classic builder, which
   every engine has), tagged `barrage:containers-test`. Prints the build time and the
   image's size.
4. `compose`: deploy/docker-compose.yml as a user runs it (`docker-compose up -d`) with
   a short run time, under its own project name. The master's exit code is the
   verdict (must be 0), every worker exits 0 by itself, and the saved report's request
   count must equal the mock's ground truth (`GET /_mock/stats`, read from the host on
   the mock container's bridge address).
5. `helm`: the chart rendered by `deploy/check.py --render` with values-mock.yaml, and
   each rendered pod's containers run as containers of the image on one Docker network
   (see `run_chart` below for what is carried over from the pod spec), with the
   chart's Service names as network aliases. The master Job's container must exit 0
   (the verdict), the worker Job's containers must exit 0 by themselves, and the
   report's request count must equal the mock's.

Everything it starts is bounded in time, and the containers, networks and volumes it
made are removed at the end (`--keep` leaves them for a look). Prints one line per
check and exits 1 if one failed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "containers"
VENDOR = ROOT / "target" / "docker-vendor"
IMAGE = "barrage:containers-test"
RUNTIME_BASE = "debian:bookworm-slim"
MIRROR = "http://deb.debian.org/debian"
SKIP = 77
# Bounds: a cold image build on two busy cores takes ~10 minutes; a run, seconds.
BUILD_TIMEOUT = 3600
RUN_TIMEOUT = 240


class Skip(Exception):
    """No container engine can be had here: the caller skips (or fails in CI)."""


class Failed(Exception):
    """A check failed; the message says which and why."""


def log(text: str) -> None:
    print(text, flush=True)


def run(cmd: list[str], *, timeout: float = 600, check: bool = True, quiet: bool = False,
        env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Runs a command, its output captured; raises Failed (with the output) when it fails."""
    if not quiet:
        log(f"  $ {' '.join(cmd)}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise Failed(f"{cmd[0]} did not finish within {timeout} s") from e
    if check and done.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    return run(["docker", *args], timeout=timeout, check=check, quiet=True).stdout.strip()


# ------------------------------------------------------------------ 1. the engine


def apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0:
        raise Skip(f"{', '.join(packages)} missing and not root to install them")
    if not shutil.which("apt-get"):
        raise Skip(f"{', '.join(packages)} missing and no apt-get")
    log(f"installing {' '.join(packages)} (apt-get)")
    env = dict(os.environ) | {"DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    try:
        run(["apt-get", *lock, "update", "-qq"], env=env, timeout=600)
        run(["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, timeout=900)
    except Failed as e:
        raise Skip(f"cannot install {' '.join(packages)}: {e}") from e


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Engine:
    """A Docker engine for the run: the one already running, or a dockerd started here
    (and stopped by `stop`)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        needed = [pkg for cmd, pkg in [("dockerd", "docker.io"), ("docker-compose", "docker-compose"),
                                       ("debootstrap", "debootstrap")] if not shutil.which(cmd)]
        if needed:
            apt_install(needed)
        if engine_answers():
            log("using the Docker engine that is running")
            return
        if os.geteuid() != 0:
            raise Skip("no Docker engine answers and dockerd needs root")
        WORK.mkdir(parents=True, exist_ok=True)
        log_path = WORK / "dockerd.log"
        log(f"starting dockerd (its log: {log_path.relative_to(ROOT)})")
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-1500:]
                self.process = None
                raise Skip(f"dockerd exited at start:\n{tail}")
            if engine_answers():
                return
            time.sleep(1)
        self.stop()
        raise Skip("dockerd did not answer within 60 s")

    def stop(self) -> None:
        if self.process is None:
            return
        log("stopping the dockerd started here")
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


# ------------------------------------------------------------------ 2. base images


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def debootstrap(rootfs: Path, include: list[str]) -> None:
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    extra = [f"--include={','.join(include)}"] if include else []
    run(["debootstrap", "--variant=minbase", *extra, "bookworm", str(rootfs), MIRROR], timeout=1200)
    # What a container image does not need (the slim image drops the same).
    for path in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"]:
        shutil.rmtree(rootfs / path, ignore_errors=True)


def docker_import(rootfs: Path, name: str, changes: list[str]) -> None:
    log(f"  docker import {rootfs.relative_to(ROOT)} {name}")
    flags = [arg for change in changes for arg in ("--change", change)]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    done = subprocess.run(["docker", "import", *flags, "-", name], stdin=tar.stdout, capture_output=True,
                          text=True, timeout=600)
    tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise Failed(f"docker import {name} failed: {done.stderr}")
    shutil.rmtree(rootfs)


def rust_version() -> str:
    out = run(["rustc", "--version"], quiet=True).stdout.split()
    return out[1]


def builder_image() -> str:
    return f"barrage-local/rust:{rust_version()}-bookworm"


def make_base_images() -> None:
    if image_exists(RUNTIME_BASE):
        log(f"base image {RUNTIME_BASE}: present")
    else:
        log(f"base image {RUNTIME_BASE}: debootstrap --variant=minbase bookworm")
        rootfs = WORK / "rootfs-runtime"
        debootstrap(rootfs, [])
        docker_import(rootfs, RUNTIME_BASE, ['CMD ["bash"]'])
    builder = builder_image()
    if image_exists(builder):
        log(f"builder image {builder}: present")
        return
    log(f"builder image {builder}: debootstrap plus this machine's Rust toolchain")
    rootfs = WORK / "rootfs-builder"
    debootstrap(rootfs, ["gcc", "libc6-dev", "ca-certificates"])
    sysroot = Path(run(["rustc", "--print", "sysroot"], quiet=True).stdout.strip())
    dest = rootfs / "usr" / "local"
    for tool in ["cargo", "rustc"]:
        shutil.copy2(sysroot / "bin" / tool, dest / "bin" / tool)
    for lib in (sysroot / "lib").iterdir():
        if lib.is_file() or lib.is_symlink():
            shutil.copy2(lib, dest / "lib" / lib.name, follow_symlinks=False)
    host = run(["rustc", "-vV"], quiet=True).stdout.split("host: ")[1].split()[0]
    shutil.copytree(sysroot / "lib" / "rustlib" / host, dest / "lib" / "rustlib" / host)
    (rootfs / "usr" / "local" / "cargo").mkdir()
    docker_import(rootfs, builder, [
        "ENV CARGO_HOME=/usr/local/cargo",
        "ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["bash"]',
    ])


# ------------------------------------------------------------------ 3. the image


def vendor_crates() -> None:
    """target/docker-vendor from this machine's cargo cache (crates.io when it lacks
    one), redone only when Cargo.lock changed since."""
    lock = (ROOT / "Cargo.lock").read_bytes()
    stamp = ROOT / "target" / "docker-vendor.lock"
    if VENDOR.is_dir() and stamp.exists() and stamp.read_bytes() == lock:
        log(f"vendored crates: {VENDOR.relative_to(ROOT)} matches Cargo.lock")
        return
    base = ["cargo", "vendor", "--locked", "--versioned-dirs", "--quiet", str(VENDOR.relative_to(ROOT))]
    if run([*base[:2], "--offline", *base[2:]], check=False, timeout=900).returncode != 0:
        run(base, timeout=900)
    stamp.write_bytes(lock)


def build_image() -> None:
    vendor_crates()
    cmd = ["docker", "build", "-f", "deploy/Dockerfile", "--build-arg", f"RUST_IMAGE={builder_image()}",
           "--build-arg", f"RUNTIME_IMAGE={RUNTIME_BASE}", "-t", IMAGE, "."]
    log(f"  $ DOCKER_BUILDKIT=0 {' '.join(cmd)}")
    start = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    build_log = WORK / "build.log"
    with open(build_log, "w") as out:
        try:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                  env=dict(os.environ) | {"DOCKER_BUILDKIT": "0"}, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise Failed(f"docker build did not finish within {BUILD_TIMEOUT} s") from e
    text = build_log.read_text(errors="replace")
    if done.returncode != 0:
        raise Failed(f"docker build exited {done.returncode}:\n{text[-6000:]}")
    cached = text.count("Using cache")
    size = int(docker("image", "inspect", "-f", "{{.Size}}", IMAGE))
    log(f"  ok    image {IMAGE} built in {time.monotonic() - start:.0f} s ({cached} steps from cache), "
        f"{size / 1e6:.1f} MB")
    user = docker("image", "inspect", "-f", "{{.Config.User}}", IMAGE)
    if user != "10001:10001":
        raise Failed(f"the image runs as {user!r}, not 10001:10001")
    version = docker("run", "--rm", IMAGE, "--version")
    log(f"  ok    the image runs as 10001:10001 and answers `barrage --version`: {version}")



# ------------------------------------------------------------------ shared checks


def wait_exit(container: str, what: str) -> int:
    """The container's exit code, once it exits by itself within RUN_TIMEOUT."""
    try:
        return int(docker("wait", container, timeout=RUN_TIMEOUT))
    except Failed as e:
        raise Failed(f"{what} did not exit within {RUN_TIMEOUT} s:\n{logs(container)}") from e


def logs(container: str, lines: int = 40) -> str:
    done = run(["docker", "logs", "--tail", str(lines), container], check=False, quiet=True)
    return (done.stdout + done.stderr)[-6000:]


def mock_truth(container: str, port: int) -> dict:
    """The mock's ground truth, read from the host on the container's bridge address
    (its port is not published)."""
    address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container).split()
    if not address:
        raise Failed(f"the mock container {container} has no network address")
    with urllib.request.urlopen(f"http://{address[0]}:{port}/_mock/stats", timeout=10) as answer:
        return json.load(answer)


def compare_counts(label: str, report: dict, truth: dict, workers: int) -> None:
    """The report's request count must equal what the mock served, from every worker
    started."""
    ours = report.get("aggregated", {}).get("requests")
    theirs = truth.get("requests")
    joined = len(report.get("workers") or [])
    line = f"{label}: the report counts {ours} requests from {joined} workers, the mock served {theirs}"
    if not ours or ours != theirs or joined != workers:
        raise Failed(f"{line} ({workers} workers started)")
    log(f"  ok    {line}")


def verdict(code: int, label: str, container: str, expected: int = 0) -> None:
    if code != expected:
        raise Failed(f"{label}: the master exited {code} (the verdict), not {expected}:\n{logs(container)}")
    meaning = "thresholds passed" if expected == 0 else "a threshold failed"
    log(f"  ok    {label}: the master exited {code} ({meaning})")


# ------------------------------------------------------------------ 4. compose


def run_compose(keep: bool) -> None:
    project = f"barrage-ci-{os.getpid()}"
    env = dict(os.environ) | {
        "BARRAGE_IMAGE": IMAGE,
        "BARRAGE_CLUSTER_TOKEN": secrets.token_hex(20),
        "BARRAGE_RUN_TIME": "10s",
        "BARRAGE_USERS": "12",
        "COMPOSE_FILE": str(ROOT / "deploy" / "docker-compose.yml"),
        "COMPOSE_PROJECT_NAME": project,
    }
    env.pop("BARRAGE_NOFILE", None)
    compose = ["docker-compose"]

    def containers(service: str) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
                      "--filter", f"label=com.docker.compose.service={service}").split()

    try:
        run([*compose, "up", "-d"], env=env, timeout=RUN_TIMEOUT)
        master = containers("master")
        workers = containers("worker")
        if len(master) != 1 or len(workers) != 3:
            raise Failed(f"expected one master and three workers, found {len(master)} and {len(workers)}")
        verdict(wait_exit(master[0], "the master"), "compose", master[0])
        codes = [wait_exit(w, "a worker") for w in workers]
        if codes != [0, 0, 0]:
            raise Failed(f"compose: the workers exited {codes}, not 0 each:\n{logs(workers[0])}")
        log("  ok    compose: the three workers exited 0 by themselves")
        report_path = WORK / "compose-report.json"
        docker("cp", f"{master[0]}:/results/report.json", str(report_path))
        compare_counts("compose", json.loads(report_path.read_text()), mock_truth(containers("mock")[0], 5001),
                       len(workers))
    finally:
        if not keep:
            run([*compose, "down", "-v", "--remove-orphans"], env=env, timeout=180, check=False)



# ------------------------------------------------------------------ 5. the chart's pods

NAMESPACE = "barrage-ci"
# The chart's smoke-test values, with this image, a short run and a JSON report.
CHART_VALUES = {
    "image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1], "pullPolicy": "Never"},
    "load": {"runTime": "10s", "users": 12},
    "results": {"enabled": True, "json": True, "csv": False, "html": False, "volume": {"type": "emptyDir"}},
}


def render_chart(release: str, override: dict) -> list[dict]:
    """helm/barrage with values-mock.yaml, CHART_VALUES and `override` over it, rendered
    by Helm's own code (deploy/check.py --render, in its venv)."""
    WORK.mkdir(parents=True, exist_ok=True)
    values_path, out = WORK / "chart-values.json", WORK / "chart-rendered.json"
    values = json.loads(json.dumps(CHART_VALUES))
    values["load"] |= override.get("load", {})
    values_path.write_text(json.dumps(values))
    run([sys.executable, str(ROOT / "deploy" / "check.py"), "--render", str(out), str(values_path), release,
         "values-mock.yaml"], timeout=600)
    return json.loads(out.read_text())


def quantity_bytes(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


class Pods:
    """The rendered workloads' pods as containers on one network. Kept from the pod
    spec: command and args (as entrypoint and arguments), env (values, Secret and
    ConfigMap keys, the pod's name and namespace), envFrom, configMap/secret volumes
    (their keys as read-only files), emptyDir and claims (host directories owned by
    fsGroup, so the report can be read afterwards), the security context (user,
    group, fsGroup, read-only root, no-new-privileges, capabilities, runAsNonRoot
    verified), memory and CPU limits and the grace period. Each Service's name is a
    network alias of the pods its selector matches; a Service port must equal its
    target port (there is no proxy to remap it). Not carried over: probes (workers
    retry until the master answers), restarts, scheduling, and the test-hook pod (its
    busybox image is not here)."""

    def __init__(self, objects: list[dict], prefix: str) -> None:
        self.objects = objects
        self.prefix = prefix
        self.network = f"{prefix}-net"
        self.dirs = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=WORK))
        self.containers: list[str] = []
        self.by_workload: dict[str, list[str]] = {}
        self.mounts: dict[str, dict[str, Path]] = {}

    def find(self, kind: str, name: str) -> dict:
        for obj in self.objects:
            if obj.get("kind") == kind and obj["metadata"]["name"] == name:
                return obj
        raise Failed(f"the pods refer to {kind} {name}, which the chart did not render")

    def data(self, kind: str, name: str) -> dict[str, str]:
        import base64

        obj = self.find(kind, name)
        out = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()} if kind == "Secret" \
            else dict(obj.get("data") or {})
        return out | dict(obj.get("stringData") or {})

    def env(self, container: dict, pod: str) -> list[str]:
        pairs: list[tuple[str, str]] = []
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or source.get("configMapRef")
            kind = "Secret" if "secretRef" in source else "ConfigMap"
            pairs += [(source.get("prefix", "") + k, v) for k, v in self.data(kind, ref["name"]).items()]
        for var in container.get("env") or []:
            ref = var.get("valueFrom")
            if ref is None:
                pairs.append((var["name"], str(var.get("value", ""))))
            elif "secretKeyRef" in ref or "configMapKeyRef" in ref:
                key_ref = ref.get("secretKeyRef") or ref["configMapKeyRef"]
                kind = "Secret" if "secretKeyRef" in ref else "ConfigMap"
                pairs.append((var["name"], self.data(kind, key_ref["name"])[key_ref["key"]]))
            elif ref.get("fieldRef", {}).get("fieldPath") in ("metadata.name", "metadata.namespace"):
                pairs.append((var["name"], pod if ref["fieldRef"]["fieldPath"] == "metadata.name" else NAMESPACE))
            else:
                raise Failed(f"{pod}: env {var['name']} from {ref}: not carried over by this runner")
        return [arg for name, value in pairs for arg in ("-e", f"{name}={value}")]

    def volume_dir(self, pod: str, volume: dict, owner: tuple[int, int]) -> tuple[Path, bool]:
        """A host directory standing for the volume, and whether it is read-only."""
        name = volume["name"]
        if "configMap" in volume or "secret" in volume:
            kind, ref = ("ConfigMap", volume["configMap"]) if "configMap" in volume else ("Secret", volume["secret"])
            data = self.data(kind, ref.get("name") or ref.get("secretName"))
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            path = self.dirs / pod / name
            path.mkdir(parents=True, exist_ok=True)
            for item in items:
                (path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (path / item["path"]).write_text(data[item["key"]])
                os.chmod(path / item["path"], 0o644)
            os.chmod(path, 0o755)
            return path, True
        if "emptyDir" in volume:
            path = self.dirs / pod / name
        elif "persistentVolumeClaim" in volume:
            path = self.dirs / "claims" / volume["persistentVolumeClaim"]["claimName"]
        else:
            raise Failed(f"{pod}: volume {name} ({sorted(volume)}): not carried over by this runner")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner[0], owner[1])
        os.chmod(path, 0o2775)
        return path, False

    def security(self, pod_sc: dict, sc: dict, pod: str) -> tuple[list[str], tuple[int, int]]:
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        fs_group = pod_sc.get("fsGroup")
        image_user = docker("image", "inspect", "-f", "{{.Config.User}}", IMAGE)
        uid = str(user) if user is not None else image_user.split(":")[0]
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and (not uid.isdigit() or uid == "0"):
            raise Failed(f"{pod}: runAsNonRoot, but the user is {uid!r} (the kubelet would refuse the pod)")
        args: list[str] = []
        if user is not None:
            args += ["--user", f"{user}:{group if group is not None else 0}"]
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        if sc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        caps = sc.get("capabilities") or {}
        args += [f"--cap-drop={c}" for c in caps.get("drop") or []] + [f"--cap-add={c}" for c in caps.get("add") or []]
        return args, (int(uid), int(fs_group if fs_group is not None else group or 0))

    def aliases(self, labels: dict) -> list[str]:
        names = []
        for svc in self.objects:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if svc.get("kind") != "Service" or not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            name = svc["metadata"]["name"]
            names += [name, f"{name}.{NAMESPACE}", f"{name}.{NAMESPACE}.svc", f"{name}.{NAMESPACE}.svc.cluster.local"]
        return names

    def check_service_ports(self) -> None:
        """Without kube-proxy a Service port reaches the container port of the same
        number only: a Service that remaps would silently break here, so it fails."""
        for svc in self.objects:
            if svc.get("kind") != "Service":
                continue
            selector = svc["spec"].get("selector") or {}
            pods = [o for o in self.objects if o.get("kind") in ("Deployment", "Job")
                    and all(o["spec"]["template"]["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
            if not pods:
                raise Failed(f"Service {svc['metadata']['name']} selects no rendered pod")
            for port in svc["spec"].get("ports") or []:
                target = port.get("targetPort", port["port"])
                numbers = {p["containerPort"] for o in pods for c in o["spec"]["template"]["spec"]["containers"]
                           for p in c.get("ports") or [] if target in (p.get("name"), p["containerPort"])}
                if numbers != {port["port"]}:
                    raise Failed(f"Service {svc['metadata']['name']} port {port['port']} -> {target}: container "
                                 f"port(s) {sorted(numbers) or 'none'}")

    def start(self, workload: dict) -> None:
        kind, name = workload["kind"], workload["metadata"]["name"]
        spec = workload["spec"]
        count = int(spec.get("parallelism", spec.get("completions", 1)) if kind == "Job" else spec.get("replicas", 1))
        template = spec["template"]
        pod_spec = template["spec"]
        if pod_spec.get("initContainers"):
            raise Failed(f"{kind} {name}: init containers are not carried over by this runner")
        for index in range(count):
            pod = f"{name}-{index}"
            first = None
            for container in pod_spec["containers"]:
                if container["image"] != IMAGE:
                    raise Failed(f"{pod}: image {container['image']}, not {IMAGE}")
                security, owner = self.security(pod_spec.get("securityContext") or {},
                                                container.get("securityContext") or {}, pod)
                args = ["docker", "run", "-d", "--name", f"{self.prefix}-{pod}-{container['name']}",
                        "--label", f"barrage-ci={self.prefix}", *security]
                if first is None:
                    args += ["--network", self.network, "--hostname", pod]
                    args += [arg for alias in self.aliases(template["metadata"].get("labels") or {})
                             for arg in ("--network-alias", alias)]
                else:
                    args += ["--network", f"container:{first}"]
                volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
                for mount in container.get("volumeMounts") or []:
                    path, read_only = self.volume_dir(pod, volumes[mount["name"]], owner)
                    if mount.get("subPath"):
                        path = path / mount["subPath"]
                    ro = ",readonly" if read_only or mount.get("readOnly") else ""
                    args += ["--mount", f"type=bind,source={path},destination={mount['mountPath']}{ro}"]
                    self.mounts.setdefault(name, {})[mount["mountPath"]] = path
                limits = (container.get("resources") or {}).get("limits") or {}
                if "memory" in limits:
                    args += ["--memory", str(quantity_bytes(str(limits["memory"])))]
                if "cpu" in limits:
                    cpu = str(limits["cpu"])
                    args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
                args += ["--stop-timeout", str(pod_spec.get("terminationGracePeriodSeconds", 30))]
                args += self.env(container, pod)
                command = container.get("command") or []
                if command:
                    args += ["--entrypoint", command[0]]
                args += [IMAGE, *command[1:], *(container.get("args") or [])]
                cid = run(args, timeout=120, quiet=True).stdout.strip()
                log(f"  started {kind} {name} pod {index} container {container['name']}: "
                    f"{' '.join(container.get('args') or command)[:100]}")
                first = first or cid
                self.containers.append(cid)
                self.by_workload.setdefault(name, []).append(cid)

    def cleanup(self) -> None:
        if self.containers:
            docker("rm", "-f", *self.containers, check=False)
        docker("network", "rm", self.network, check=False)
        shutil.rmtree(self.dirs, ignore_errors=True)


def run_chart(keep: bool) -> None:
    """The chart's smoke test as it ships, then once more with a threshold no run can
    meet: the verdict must reach the master Job's exit code both ways."""
    chart_run(keep, "chart", {}, 0)
    chart_run(keep, "chart, p95(ttfe) < 1ms", {"load": {"thresholds": ["p95(ttfe) < 1ms"]}}, 1)


def chart_run(keep: bool, label: str, override: dict, expected: int) -> None:
    release = "ci"
    objects = render_chart(release, override)
    workloads = [o for o in objects if o.get("kind") in ("Deployment", "Job")]
    hooks = [o for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    log(f"  rendered {len(objects)} objects: {', '.join(o['kind'] + '/' + o['metadata']['name'] for o in objects)}"
        f"; {len(hooks)} test hook(s) not run")
    pods = Pods(objects, f"barrage-ci-{os.getpid()}-{expected}")
    pods.check_service_ports()
    docker("network", "create", pods.network)
    try:
        for workload in workloads:
            pods.start(workload)
        master = pods.by_workload.get(f"{release}-barrage-master") or []
        workers = pods.by_workload.get(f"{release}-barrage-workers") or []
        mock = pods.by_workload.get(f"{release}-barrage-mock") or []
        if len(master) != 1 or len(workers) < 1 or len(mock) != 1:
            raise Failed(f"expected the master Job, the worker Job and the mock, started {sorted(pods.by_workload)}")
        verdict(wait_exit(master[0], "the master Job's container"), label, master[0], expected)
        codes = [wait_exit(w, "a worker Job container") for w in workers]
        if any(codes):
            raise Failed(f"{label}: the worker Job's containers exited {codes}, not 0 each:\n{logs(workers[0])}")
        log(f"  ok    {label}: the worker Job's {len(workers)} containers exited 0 by themselves")
        results = pods.mounts.get(f"{release}-barrage-master", {}).get("/results")
        if results is None or not (results / "report.json").exists():
            raise Failed(f"{label}: the master wrote no /results/report.json:\n{logs(master[0])}")
        report = json.loads((results / "report.json").read_text())
        compare_counts(label, report, mock_truth(mock[0], 5001), len(workers))
    finally:
        if not keep:
            pods.cleanup()


# ------------------------------------------------------------------ main


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    keep = "--keep" in sys.argv[1:]
    steps = args or ["image", "compose", "helm"]
    unknown = set(steps) - {"image", "compose", "helm"}
    if unknown:
        sys.exit(f"unknown step(s) {', '.join(sorted(unknown))}; steps: image, compose, helm")
    # A SIGTERM (a test harness's timeout) unwinds through the `finally`s below, so the
    # containers and the dockerd started here are still cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    engine = Engine()
    start = time.monotonic()
    try:
        log("== engine")
        engine.start()
        log("== base images")
        make_base_images()
        if "image" in steps or not image_exists(IMAGE):
            log("== image")
            build_image()
        if "compose" in steps:
            log("== compose")
            run_compose(keep)
        if "helm" in steps:
            log("== helm chart's pods")
            run_chart(keep)
    except Skip as e:
        log(f"SKIPPED: {e}")
        return SKIP
    except Failed as e:
        log(f"  FAIL  {e}")
        return 1
    finally:
        engine.stop()
    log(f"\nall passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
