#!/usr/bin/env python3
"""Checks Barrage's deployment files without a Kubernetes cluster or a Docker engine.

Run from anywhere: `python3 deploy/check.py` (Python 3.11+). It creates or reuses a
virtual environment in target/deploy-venv (pip installs helm-sdkpy and
kubernetes-validate there only when they are missing), re-runs itself inside it, prints
every check and exits 1 if any failed. `master/tests/it/deploy.rs` runs it in the test
suite. Set BARRAGE_BIN to a built `barrage` to add the command-line checks (the Rust
test does; otherwise target/debug/barrage is used when it exists).

What is checked:

1. Helm's linter on helm/barrage, strict (a warning fails as an error does), once per
   values file: values.yaml alone and merged with values-job.yaml,
   values-interactive.yaml and values-mock.yaml. helm-sdkpy's Lint reads only the
   chart's own values.yaml, so each file is merged into a copy of the chart, the way
   `helm lint -f FILE` merges it. helm-sdkpy does not pass on the linter's messages,
   only their file and severity; step 2 renders the same values and shows the errors.
2. Rendering: helm-sdkpy has no `helm template`, so the chart is installed, with Helm's
   own code (values schema, templates, hooks), into a stand-in Kubernetes API served by
   this script on 127.0.0.1 (discovery answers, empty lists, 404 on reads, echo on
   creates; releases kept in memory with HELM_DRIVER=memory). The rendered manifests
   come back in the release. Rendered: the values files above plus variants that
   reach the other branches of the templates, and values the chart must refuse (an
   unknown mode, a ServiceMonitor without the web API, ...), which must fail.
3. Every rendered object, and every object in deploy/k8s/*.yaml, validated against the
   Kubernetes JSON schemas of kubernetes-validate, strict (unknown fields are errors),
   for Kubernetes 1.26 (the chart's kubeVersion floor) and the newest it knows.
   ServiceMonitor (a CRD) against the few fields of its schema the chart uses.
4. The wiring Kubernetes cannot check: the master's --expect-workers equals the worker
   replicas; each worker's --master names the master's Service and port, and that
   Service selects the master's pod; a web API bound beyond loopback has --web-auth and
   BARRAGE_WEB_TOKEN from a Secret; workers get the cluster token the master has; the
   scenario is mounted where --scenario points; every `${NAME}` of the scenario reaches
   the master's environment; pods run as non-root with a read-only root filesystem,
   without service links; grace periods fit a worker's final report; the scenario the
   chart and the plain manifests ship is examples/dify-workflow.toml, byte for byte.
5. deploy/docker-compose.yml: the same wiring between its services.
6. With a `barrage` binary: every subcommand and flag that a manifest, the chart or the
   compose file passes exists in `barrage <command> --help`, and every shipped scenario
   passes `barrage validate` with the thresholds of its master's command line.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import venv
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "target" / "deploy-venv"
# Pinned: a new release of either could change what passes.
PACKAGES = {"helm-sdkpy": "0.1.32", "kubernetes-validate": "1.37.0"}
CHART = ROOT / "helm" / "barrage"
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
EXAMPLE_SCENARIO = ROOT / "examples" / "dify-workflow.toml"
KUBE_VERSIONS = ["1.26", "latest"]
NAMESPACE = "barrage-check"


# ------------------------------------------------------------------ environment


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def helm_env() -> dict[str, str]:
    """Helm's settings: releases in memory (not in Secrets of the stand-in API), Helm's
    files under the venv (not in $HOME). Helm's Go runtime reads the environment once,
    when the library loads, so they must be in the process's environment from its start."""
    home = VENV / "helm-home"
    return {
        "HELM_DRIVER": "memory",
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def ensure_venv_module() -> None:
    """Debian ships `venv` without pip (`ensurepip`) unless python3-venv is installed:
    as root, install it, as the browser tests install Chromium."""
    try:
        import ensurepip  # noqa: F401

        return
    except ImportError:
        pass
    if os.geteuid() != 0:
        sys.exit("python3 -m venv needs the python3-venv package: apt-get install python3-venv")
    print("installing python3-venv (apt-get)", flush=True)
    apt = dict(os.environ) | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", "python3-venv"],
        check=True,
        env=apt,
    )


def bootstrap() -> None:
    """Re-runs this script inside target/deploy-venv (creating it when missing), with
    Helm's settings in its environment and no kubeconfig of the user's."""
    python = VENV / "bin" / "python"
    if not python.exists():
        ensure_venv_module()
        print(f"creating the virtual environment {VENV.relative_to(ROOT)}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.exit(f"cannot create {VENV}: {e}\n(on Debian, `python3 -m venv` needs the python3-venv package)")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | helm_env()
    os.execve(python, [str(python), str(Path(__file__).resolve()), *sys.argv[1:]], env)


def ensure_packages() -> None:
    """pip installs the pinned packages that are missing or at another version."""
    from importlib import metadata

    missing = []
    for name, version in PACKAGES.items():
        try:
            if metadata.version(name) != version:
                missing.append(f"{name}=={version}")
        except metadata.PackageNotFoundError:
            missing.append(f"{name}=={version}")
    if missing:
        print(f"installing {' '.join(missing)} into {VENV.relative_to(ROOT)}", flush=True)
        # helm-sdkpy declares Python >= 3.12 but works on 3.11 (it is cffi over Helm's
        # Go library); --ignore-requires-python lets it install here.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--ignore-requires-python", *missing],
            check=True,
        )


# ------------------------------------------------------------------ reporting


class Checks:
    """Counts failures; every check prints one line."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}", flush=True)

    def fail(self, what: str, why: str) -> None:
        self.failed.append(what)
        print(f"  FAIL  {what}\n        {why.strip().replace(chr(10), chr(10) + '        ')}", flush=True)

    def expect(self, condition: bool, what: str, why: str = "") -> bool:
        if condition:
            self.ok(what)
        else:
            self.fail(what, why or "not so")
        return condition


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# ------------------------------------------------------------------ values


def merge(base: dict, override: dict) -> dict:
    """Helm's coalescing of a values file over the chart's values: maps merge, anything
    else replaces, and null deletes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: Path):
    import yaml

    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------ 1. lint

SEVERITY = {0: "unknown", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def lint(checks: Checks, name: str, values: dict) -> None:
    import helm_sdkpy
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / "barrage"
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("values-*.yaml"))
        (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
        result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace=NAMESPACE)).run(str(chart)))
    messages = result.get("Messages") or []
    info = [m for m in messages if m.get("Severity", 0) <= 1]
    serious = [m for m in messages if m.get("Severity", 0) >= 2]
    shown = ", ".join(f"{SEVERITY.get(m['Severity'], m['Severity'])} in {m.get('Path')}" for m in serious)
    notes = f" ({len(info)} info: " + ", ".join(sorted({m.get('Path', '') for m in info})) + ")" if info else ""
    checks.expect(
        not serious and not result.get("Errors"),
        f"helm lint --strict with {name}{notes}",
        f"{shown or result.get('Errors')}; helm-sdkpy drops the messages: the render of {name} below shows them",
    )


# ------------------------------------------------------------------ 2. render

# The stand-in API server's resources: (group, version) -> [(plural, kind, namespaced)].
RESOURCES = {
    ("", "v1"): [
        ("configmaps", "ConfigMap", True), ("secrets", "Secret", True), ("services", "Service", True),
        ("pods", "Pod", True), ("serviceaccounts", "ServiceAccount", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True), ("namespaces", "Namespace", False),
    ],
    ("apps", "v1"): [("deployments", "Deployment", True)],
    ("batch", "v1"): [("jobs", "Job", True)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True)],
}


class FakeApi(BaseHTTPRequestHandler):
    """Just enough of a Kubernetes API server for `helm install` to run to the end."""

    kube_version = "1.31"

    def log_message(self, *args) -> None:  # quiet
        pass

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> dict:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        major, minor = self.kube_version.split(".")
        if path == "/version":
            return self.reply(200, {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for (g, v) in RESOURCES if g
            ]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for (group, version), resources in RESOURCES.items():
            gv = f"{group}/{version}" if group else version
            if path == (f"/apis/{gv}" if group else f"/api/{version}"):
                return self.reply(200, {
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [
                        {"name": n, "singularName": "", "namespaced": ns, "kind": k,
                         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                        for n, k, ns in resources
                    ],
                })
        if any(path.endswith("/" + plural) for rs in RESOURCES.values() for plural, _, _ in rs):
            return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_POST(self) -> None:
        obj = self.body()
        obj.setdefault("metadata", {}).update(resourceVersion="1", uid="00000000-0000-0000-0000-000000000000")
        self.reply(201, obj)

    def do_PUT(self) -> None:
        self.reply(200, self.body())

    do_PATCH = do_PUT


class Renderer:
    """Renders the chart through `helm install` against FakeApi."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        self.kubeconfig = (
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: stand-in, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: stand-in, user: {}}]\n"
            f"contexts: [{{name: stand-in, context: {{cluster: stand-in, user: stand-in, namespace: {NAMESPACE}}}}}]\n"
            "current-context: stand-in\n"
        )

    def render(self, release: str, values: dict) -> list[dict]:
        """The release's objects, test hooks included; raises helm_sdkpy.HelmError."""
        import helm_sdkpy
        import yaml

        config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=self.kubeconfig)
        result = asyncio.run(helm_sdkpy.Install(config).run(release, str(CHART), values=values, wait=False, timeout=60))
        texts = [result.get("manifest", "")] + [h.get("manifest", "") for h in result.get("hooks") or []]
        return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


# ------------------------------------------------------------------ 3. schemas

# The part of the Prometheus Operator's ServiceMonitor schema (monitoring.coreos.com/v1)
# the chart uses.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                        "scrapeTimeout": {"type": "string"},
                        "authorization": {"type": "object", "required": ["credentials"], "properties": {
                            "type": {"type": "string"},
                            "credentials": {"type": "object", "required": ["name", "key"], "additionalProperties": False,
                                            "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}}},
                        }},
                    },
                    "additionalProperties": False,
                }},
            },
        },
    },
}


def validate_objects(checks: Checks, label: str, objects: list[dict]) -> None:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils

    if not getattr(utils.schema_contents, "cache_info", None):
        utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    versions = [kubernetes_validate.latest_version() if v == "latest" else v for v in KUBE_VERSIONS]
    problems = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("kind") == "ServiceMonitor":
            try:
                jsonschema.validate(obj, SERVICE_MONITOR)
            except jsonschema.ValidationError as e:
                problems.append(f"{name}: {'.'.join(map(str, e.path))}: {e.message}")
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{name} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{name}: no schema: {e}")
    kinds = sorted({o.get("kind") for o in objects})
    checks.expect(
        not problems,
        f"{label}: {len(objects)} objects ({', '.join(kinds)}) valid for Kubernetes {' and '.join(versions)}, strict",
        "\n".join(problems),
    )


# ------------------------------------------------------------------ 4. wiring


def pod_spec(obj: dict) -> dict | None:
    if obj.get("kind") == "Pod":
        return obj.get("spec")
    if obj.get("kind") in ("Job", "Deployment"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels") or {}
    return obj["spec"]["template"]["metadata"].get("labels") or {}


def replicas(obj: dict) -> int:
    if obj["kind"] == "Job":
        return int(obj["spec"].get("completions", 1))
    return int(obj["spec"].get("replicas", 1))


def barrage_containers(objects: list[dict], role: str) -> list[tuple[dict, dict]]:
    """(workload, container) for every container running `barrage <role>`."""
    out = []
    for obj in objects:
        spec = pod_spec(obj)
        for c in (spec or {}).get("containers", []):
            args = [*(c.get("command") or [])[1:], *(c.get("args") or [])] if c.get("command") else c.get("args") or []
            if args and args[0] == role:
                out.append((obj, {**c, "_args": args}))
    return out


def flag(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def flags(args: list[str], *names: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in names]


def env_names(container: dict, objects: list[dict]) -> tuple[set[str], bool]:
    """Variables a container surely has, and whether an envFrom of an unseen Secret may
    add more."""
    names = {e["name"] for e in container.get("env") or []}
    unknown = False
    secrets = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Secret"}
    for source in container.get("envFrom") or []:
        ref = (source.get("secretRef") or source.get("configMapRef") or {}).get("name")
        if ref in secrets:
            names |= set((secrets[ref].get("data") or {}) | (secrets[ref].get("stringData") or {}))
        else:
            unknown = True
    return names, unknown


def secret_ref(container: dict, var: str) -> tuple[str, str] | None:
    for e in container.get("env") or []:
        if e["name"] == var:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            return (ref["name"], ref["key"]) if ref else ("<literal>", "")
    return None


def scenario_of(master: dict, container: dict, objects: list[dict]) -> str | None:
    """The scenario text the master reads, when it comes from a ConfigMap in `objects`."""
    path = flag(container["_args"], "-f", "--scenario", "--locustfile") or ""
    volumes = {v["name"]: v for v in pod_spec(master).get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        root = mount["mountPath"].rstrip("/") + "/"
        source = (volumes.get(mount["name"]) or {}).get("configMap")
        if not source or not path.startswith(root):
            continue
        # A file in a ConfigMap volume is its key, unless `items` maps keys to paths.
        file = path[len(root):]
        key = next((i["key"] for i in source.get("items") or [] if i["path"] == file), file)
        if source.get("items") and key == file and not any(i["key"] == file for i in source["items"]):
            return None
        for obj in objects:
            if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == source["name"]:
                return (obj.get("data") or {}).get(key)
    return None


def check_wiring(checks: Checks, label: str, objects: list[dict], *, keys_known: bool = True,
                 scenario_must_be_example: bool = True) -> list[tuple[str, list[str]]]:
    """The checks of point 4; returns (scenario text, master args) for the CLI checks."""
    problems: list[str] = []
    masters = barrage_containers(objects, "master")
    workers = barrage_containers(objects, "worker")
    services = [o for o in objects if o.get("kind") == "Service"]
    found = []
    if len(masters) != 1:
        checks.fail(f"{label}: wiring", f"expected one `barrage master` container, found {len(masters)}")
        return found
    master, mc = masters[0]
    margs = mc["_args"]

    # Workers: count and address.
    total = sum(replicas(w) for w, _ in workers)
    expect = flag(margs, "--expect-workers") or "1"
    if str(total) != expect:
        problems.append(f"--expect-workers {expect} but {total} worker replicas")
    port = flag(margs, "--master-bind-port") or "5557"
    for w, wc in workers:
        address = flag(wc["_args"], "--master") or "127.0.0.1:5557"
        host, _, wport = address.rpartition(":")
        svc = next((s for s in services if s["metadata"]["name"] == host), None)
        if svc is None:
            problems.append(f"{w['kind']}/{w['metadata']['name']}: --master {address}: no Service {host}")
            continue
        selector = svc["spec"].get("selector") or {}
        if not selector or any(pod_labels(master).get(k) != v for k, v in selector.items()):
            problems.append(f"Service/{host} does not select the master's pod ({selector})")
        sport = next((p for p in svc["spec"]["ports"] if str(p["port"]) == wport), None)
        if sport is None:
            problems.append(f"Service/{host} has no port {wport}")
        else:
            target = sport.get("targetPort", sport["port"])
            cport = next((p for p in mc.get("ports") or [] if target in (p.get("name"), p["containerPort"])), None)
            if isinstance(target, int) and cport is None and str(target) == port:
                cport = {"containerPort": target}
            if cport is None or str(cport["containerPort"]) != port:
                problems.append(f"Service/{host} port {wport} -> {target}, not the master's --master-bind-port {port}")
        mtoken, wtoken = secret_ref(mc, "BARRAGE_CLUSTER_TOKEN"), secret_ref(wc, "BARRAGE_CLUSTER_TOKEN")
        if mtoken != wtoken:
            problems.append(f"cluster token: master {mtoken}, worker {wtoken}")
        grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
        if grace < 15:
            problems.append(f"worker terminationGracePeriodSeconds {grace} < 15: no time for the final report")
        if w["kind"] == "Job" and not flag(wc["_args"], "--give-up-after"):
            problems.append("worker Job without --give-up-after: a worker whose master never came would never end")

    # Worker port: beyond loopback only for authenticated workers (the master refuses
    # to start otherwise), or with the explicit flag that says it is unauthenticated.
    bind = flag(margs, "--master-bind-host") or "0.0.0.0"
    if bind not in ("127.0.0.1", "localhost", "::1"):
        token = secret_ref(mc, "BARRAGE_CLUSTER_TOKEN") or secret_ref(mc, "BARRAGE_CLUSTER_TOKEN_FILE")
        if not token and "--tls-client-ca" not in margs and "--allow-unauthenticated-workers" not in margs:
            problems.append(f"--master-bind-host {bind} without a cluster token, mutual TLS or "
                            "--allow-unauthenticated-workers (the master refuses to start)")

    # Web API.
    if "--headless" not in margs:
        web_host = flag(margs, "--web-host") or "127.0.0.1"
        if web_host not in ("127.0.0.1", "localhost", "::1"):
            if "--web-auth" not in margs:
                problems.append(f"--web-host {web_host} without --web-auth (the master refuses to start)")
            ref = secret_ref(mc, "BARRAGE_WEB_TOKEN")
            if not ref or ref[0] == "<literal>":
                problems.append(f"--web-auth needs BARRAGE_WEB_TOKEN from a Secret, got {ref}")

    # Master as a Job: one attempt, never restarted.
    if master["kind"] == "Job":
        if master["spec"].get("backoffLimit") != 0 or pod_spec(master).get("restartPolicy") != "Never":
            problems.append("master Job: backoffLimit 0 and restartPolicy Never (the verdict is not retried)")

    # Scenario and its ${NAME}s.
    scenario = scenario_of(master, mc, objects)
    if scenario is None:
        if not any(o.get("kind") == "ConfigMap" for o in objects):
            pass  # an existing ConfigMap, not rendered
        else:
            problems.append(f"--scenario {flag(margs, '-f', '--scenario')} is not a key of a mounted ConfigMap")
    else:
        if scenario_must_be_example and scenario != EXAMPLE_SCENARIO.read_text():
            problems.append("the shipped scenario differs from examples/dify-workflow.toml")
        needed = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", scenario))
        have, unknown = env_names(mc, objects)
        missing = needed - have
        if missing and keys_known and not unknown:
            problems.append(f"the scenario reads {sorted(missing)} but the master's environment lacks them")
        found.append((scenario, margs))

    # Pod hygiene.
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        psc = spec.get("securityContext") or {}
        for c in spec["containers"]:
            sc = c.get("securityContext") or {}
            if not (psc.get("runAsNonRoot") or sc.get("runAsNonRoot")):
                problems.append(f"{name}: {c['name']} may run as root")
            if not sc.get("readOnlyRootFilesystem"):
                problems.append(f"{name}: {c['name']} has a writable root filesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: {c['name']} allows privilege escalation")
        if spec.get("enableServiceLinks") is not False:
            problems.append(f"{name}: service links on (variables such as BARRAGE_MASTER_PORT)")

    checks.expect(
        not problems,
        f"{label}: {total} workers -> {flag(workers[0][1]['_args'], '--master') if workers else '-'}, "
        f"master {'headless' if '--headless' in margs else 'web API with --web-auth'}, scenario and pods wired",
        "\n".join(problems),
    )
    return found


def check_chart_specifics(checks: Checks, label: str, objects: list[dict], values: dict) -> None:
    """What only the chart promises: checksum annotation, worker spreading, modes."""
    problems = []
    masters = barrage_containers(objects, "master")
    workers = barrage_containers(objects, "worker")
    mode = values.get("mode", "job")
    kinds = {"job": "Job", "interactive": "Deployment"}[mode]
    if not masters or masters[0][0]["kind"] != kinds or not workers or workers[0][0]["kind"] != kinds:
        problems.append(f"mode {mode}: master and workers should be {kinds}s")
    if masters:
        master = masters[0][0]
        cm = next((o for o in objects if o.get("kind") == "ConfigMap"), None)
        annotation = master["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/scenario")
        if cm is not None and not annotation:
            problems.append("no checksum/scenario annotation on the master's pod")
    for w, _ in workers:
        affinity = pod_spec(w).get("affinity") or {}
        spread = (values.get("workers") or {}).get("spreadAcrossNodes", "soft")
        custom = (values.get("workers") or {}).get("affinity")
        anti = affinity.get("podAntiAffinity") or {}
        if not custom and spread == "soft" and not anti.get("preferredDuringSchedulingIgnoredDuringExecution"):
            problems.append("workers: no preferred pod anti-affinity by default")
        if not custom and spread == "hard" and not anti.get("requiredDuringSchedulingIgnoredDuringExecution"):
            problems.append("workers: spreadAcrossNodes hard without a required anti-affinity")
        terms = anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        for t in terms:
            sel = t["podAffinityTerm"]["labelSelector"]["matchLabels"]
            if any(pod_labels(w).get(k) != v for k, v in sel.items()):
                problems.append("workers: the anti-affinity selector does not match the workers")
    tests = [o for o in objects if (o.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook") == "test"]
    if len(tests) != 1:
        problems.append(f"expected one helm test hook, found {len(tests)}")
    checks.expect(not problems, f"{label}: {mode} mode, scenario checksum, worker spreading, helm test hook",
                  "\n".join(problems))


# ------------------------------------------------------------------ 5. compose


def interpolate(value):
    """Compose's `${NAME:-default}` with nothing set in the environment: the default;
    `${NAME:?message}` (compose refuses to start without it): `<required NAME>`."""
    if isinstance(value, str):
        value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}", lambda m: f"<required {m.group(1)}>", value)
        return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def load_compose() -> dict:
    return interpolate(load_yaml(COMPOSE))


def compose_as_objects(compose: dict) -> list[dict]:
    """The compose services as Kubernetes-like objects, so that the wiring checks of
    point 4 apply: each service a Deployment of its replicas, and a Service of the same
    name for compose's DNS name, exposing the master's worker port."""
    objects = []
    for name, svc in compose["services"].items():
        command = svc.get("command") or []
        env = svc.get("environment") or {}
        is_master = command[:1] == ["master"]
        port = int(flag(command, "--master-bind-port") or 5557)
        container = {
            "name": name,
            "args": command,
            "env": [{"name": k, "value": str(v)} for k, v in env.items()],
            "ports": [{"containerPort": port}] if is_master else [],
            "securityContext": {
                "runAsNonRoot": str(svc.get("user", "")).split(":")[0] not in ("root", "0"),
                "readOnlyRootFilesystem": bool(svc.get("read_only")),
                "allowPrivilegeEscalation": False if "no-new-privileges:true" in (svc.get("security_opt") or []) else None,
            },
        }
        spec = {"containers": [container], "enableServiceLinks": False,
                "terminationGracePeriodSeconds": _seconds(svc.get("stop_grace_period", "10s"))}
        objects.append({
            "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": int((svc.get("deploy") or {}).get("replicas", 1)),
                     "template": {"metadata": {"labels": {"compose-service": name}}, "spec": spec}},
        })
        objects.append({"kind": "Service", "metadata": {"name": name}, "spec": {
            "selector": {"compose-service": name},
            "ports": [{"port": port, "targetPort": port}] if is_master else [],
        }})
    return objects


def _seconds(text) -> int:
    m = re.fullmatch(r"(\d+)(s|m)?", str(text))
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else 0


def check_compose(checks: Checks) -> list[tuple[str, list[str]]]:
    compose = load_compose()
    problems = []
    services = compose.get("services") or {}
    by_role = {(s.get("command") or [""])[0]: (n, s) for n, s in services.items()}
    if sorted(by_role) != ["master", "mock", "worker"] or len(services) != 3:
        problems.append(f"expected the services mock, master and worker, found {sorted(services)}")
    _, master = by_role.get("master", ("", {}))
    mock_name, mock = by_role.get("mock", ("", {}))
    margs = master.get("command") or []
    listen = flag(mock.get("command") or [], "--listen") or ""
    if not listen.startswith("0.0.0.0:"):
        problems.append(f"mock --listen {listen}: other containers cannot reach it")
    host = flag(margs, "-H", "--host") or ""
    if host != f"http://{mock_name}:{listen.rpartition(':')[2]}":
        problems.append(f"master --host {host} is not the mock service ({mock_name}, {listen})")
    if (mock.get("environment") or {}).get("BARRAGE_MOCK_API_KEY") != (master.get("environment") or {}).get("DIFY_API_KEY"):
        problems.append("the mock's BARRAGE_MOCK_API_KEY is not the master's DIFY_API_KEY")
    scenario_text = None
    path = flag(margs, "-f", "--scenario") or ""
    for volume in master.get("volumes") or []:
        source, _, rest = volume.partition(":")
        target = rest.split(":")[0].rstrip("/")
        if path.startswith(target + "/"):
            local = (COMPOSE.parent / source / path[len(target) + 1:]).resolve()
            if local.exists():
                scenario_text = local.read_text()
            else:
                problems.append(f"--scenario {path}: {local} does not exist")
    if scenario_text is None and not problems:
        problems.append(f"--scenario {path} is not in a mounted directory")
    worker = by_role.get("worker", ("", {}))[1]
    for role, svc in (("master", master), ("worker", worker)):
        token = str((svc.get("environment") or {}).get("BARRAGE_CLUSTER_TOKEN", ""))
        if not token.startswith("<required"):
            problems.append(f"{role}: BARRAGE_CLUSTER_TOKEN is {token!r}, not required from the shell "
                            "(the master binds beyond loopback only with a token)")
    checks.expect(not problems, "docker-compose.yml: mock on 0.0.0.0, master -> mock with its API key, scenario "
                  "mounted, cluster token required",
                  "\n".join(problems))
    check_wiring(checks, "docker-compose.yml", compose_as_objects(compose), keys_known=True)
    return [(scenario_text, margs)] if scenario_text else []


# ------------------------------------------------------------------ 6. barrage CLI


def barrage_bin() -> Path | None:
    env = os.environ.get("BARRAGE_BIN")
    if env:
        return Path(env)
    for profile in ("debug", "release"):
        candidate = ROOT / "target" / profile / "barrage"
        if candidate.exists():
            return candidate
    return None


@functools.lru_cache(maxsize=None)
def help_flags(binary: Path, command: str) -> frozenset[str]:
    out = subprocess.run([str(binary), command, "--help"], capture_output=True, text=True, check=True).stdout
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", out))


def check_cli(checks: Checks, binary: Path, label: str, objects: list[dict]) -> None:
    problems = []
    seen = 0
    for obj in objects:
        for c in (pod_spec(obj) or {}).get("containers", []):
            args = c.get("args") or []
            if not args or args[0] not in ("master", "worker", "mock", "run", "validate"):
                continue
            known = help_flags(binary, args[0])
            for a in args[1:]:
                if a.startswith("-") and a.split("=")[0] not in known:
                    problems.append(f"{obj['kind']}/{obj['metadata']['name']}: `barrage {args[0]}` has no {a}")
            seen += 1
    checks.expect(seen > 0 and not problems, f"{label}: every flag of {seen} barrage containers is in `barrage <command> --help`",
                  "\n".join(problems) or "no barrage container found")


def check_scenarios(checks: Checks, binary: Path, label: str, scenarios: list[tuple[str, list[str]]]) -> None:
    for text, margs in scenarios:
        thresholds = flags(margs, "--threshold") + flags(margs, "--threshold-abort")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "scenario.toml"
            # Top-level keys go before the first table: prepend the thresholds.
            path.write_text(f"thresholds = {json.dumps(thresholds)}\n" + text if thresholds else text)
            env = {**os.environ, "DIFY_API_KEY": "app-check"}
            out = subprocess.run([str(binary), "validate", "-f", str(path)], capture_output=True, text=True, env=env)
        checks.expect(out.returncode == 0, f"{label}: `barrage validate` passes the scenario with its {len(thresholds)} thresholds",
                      out.stderr or out.stdout)


# ------------------------------------------------------------------ main


def chart_cases() -> tuple[list[tuple[str, dict]], list[tuple[str, dict, str]]]:
    """(name, override) to render, and (name, override, expected error) to refuse."""
    files = [("values.yaml", {})] + [
        (f.name, load_yaml(f)) for f in sorted(CHART.glob("values-*.yaml"))
    ]
    variants = [
        ("variant: interactive, existing ConfigMap and Secret, no cluster token, stages, existing claim", {
            "mode": "interactive",
            "scenario": {"existingConfigMap": "my-scenario", "fileName": "load.yaml"},
            "auth": {"existingSecret": "my-tokens", "clusterToken": False},
            "load": {"stages": [{"duration": "1m", "users": 100}, {"duration": "5m", "users": 100, "spawnRate": 10}],
                     "runTime": None, "tags": ["stream"], "excludeTags": ["slow"], "classes": ["WorkflowUser"],
                     "exitCodeOnError": 0, "preset": "normal"},
            "results": {"enabled": True, "volume": {"type": "existingClaim", "existingClaim": "barrage-results"}},
            "workers": {"spreadAcrossNodes": "none", "weight": 2, "threads": 4, "replicas": 5,
                        "extraEnv": [{"name": "RUST_LOG", "value": "info"}]},
            "image": {"digest": "sha256:" + "0" * 64},
            "mock": {"enabled": True, "apiKey": {"secretName": "dify-api-keys"}},
            "master": {"onlySummary": True, "extraArgs": ["--heartbeat-liveness", "10s"]},
            "web": {"startFromUi": True},
        }),
        ("variant: job with custom affinity, no service account, pvc with a storage class", {
            "serviceAccount": {"create": False},
            "workers": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["load"]}]}]}}},
                "tolerations": [{"key": "load", "operator": "Exists", "effect": "NoSchedule"}],
                "nodeSelector": {"kubernetes.io/os": "linux"}},
            "results": {"enabled": True, "csv": False, "volume": {"type": "pvc", "storageClassName": "fast"}},
            "job": {"ttlSecondsAfterFinished": 0, "activeDeadlineSeconds": 600},
            "apiKeys": {"env": [{"name": "DIFY_API_KEY", "secretName": "k", "key": "v"}]},
        }),
    ]
    refused = [
        ("an unknown mode", {"mode": "batch"}, "at '/mode'"),
        ("interactive mode without the web API", {"mode": "interactive", "web": {"enabled": False}}, "at '/web/enabled'"),
        ("a ServiceMonitor without the web API", {"web": {"enabled": False}, "metrics": {"serviceMonitor": {"enabled": True}}},
         "at '/web/enabled'"),
        ("a misspelt key", {"workers": {"replica": 3}}, "'replica' not allowed"),
        ("zero workers", {"workers": {"replicas": 0}}, "at '/workers/replicas'"),
        ("an API key in values", {"apiKeys": {"env": [{"name": "DIFY_API_KEY", "value": "app-123"}]}}, "at '/apiKeys/env/0'"),
        ("results with no file to write", {"results": {"enabled": True, "json": False, "csv": False, "html": False}},
         "nothing would be written"),
        ("no scenario at all", {"scenario": {"inline": ""}}, "at '/scenario/inline'"),
    ]
    return files + variants, refused


def render_to_file(args: list[str]) -> int:
    """`--render OUT.json OVERRIDE.json [RELEASE [VALUES_FILE ...]]`: the chart rendered
    with the chart's values files named (e.g. values-mock.yaml) merged in order, then
    OVERRIDE.json over them (as `helm install -f FILE -f OVERRIDE`), its objects written
    to OUT.json as a list. deploy/containers.py runs the rendered pods in Docker."""
    if len(args) < 2:
        sys.exit("usage: check.py --render OUT.json OVERRIDE.json [RELEASE [VALUES_FILE ...]]")
    import helm_sdkpy

    values: dict = {}
    for name in args[3:]:
        values = merge(values, load_yaml(CHART / name))
    values = merge(values, json.loads(Path(args[1]).read_text()))
    try:
        objects = Renderer().render(args[2] if len(args) > 2 else "barrage", values)
    except helm_sdkpy.HelmError as e:
        print(f"render failed: {e}", file=sys.stderr)
        return 1
    Path(args[0]).write_text(json.dumps(objects, indent=1))
    return 0


def main() -> int:
    if not in_venv() or any(os.environ.get(k) != v for k, v in helm_env().items()):
        bootstrap()
    ensure_packages()
    if "--setup" in sys.argv[1:]:
        # .ci/run prepares the venv before the tests, so pip does not run beside them.
        print(f"{VENV.relative_to(ROOT)} is ready")
        return 0
    if "--render" in sys.argv[1:]:
        return render_to_file(sys.argv[sys.argv.index("--render") + 1:])
    import helm_sdkpy

    checks = Checks()
    defaults = load_yaml(CHART / "values.yaml")
    cases, refused = chart_cases()
    binary = barrage_bin()

    section(f"1. helm lint --strict (helm-sdkpy {PACKAGES['helm-sdkpy']}, Helm 4's library)")
    for name, override in cases[:4]:
        lint(checks, name, merge(defaults, override))

    section("2-4. render the chart (helm install into a stand-in API), validate and check the wiring")
    renderer = Renderer()
    rendered: list[tuple[str, list[dict]]] = []
    for name, override in cases:
        try:
            objects = renderer.render("barrage", override)
        except helm_sdkpy.HelmError as e:
            checks.fail(f"render {name}", str(e))
            continue
        checks.ok(f"render {name}: {len(objects)} objects")
        validate_objects(checks, name, objects)
        values = merge(defaults, override)
        scenarios = check_wiring(
            checks, name, objects, keys_known=name != "values.yaml",
            scenario_must_be_example=not (values.get("scenario") or {}).get("existingConfigMap"),
        )
        check_chart_specifics(checks, name, objects, values)
        rendered.append((name, objects))
        if binary:
            check_cli(checks, binary, name, objects)
            check_scenarios(checks, binary, name, scenarios)
    for name, override, expected in refused:
        try:
            renderer.render("barrage", override)
            checks.fail(f"refuse {name}", "the chart rendered it")
        except helm_sdkpy.HelmError as e:
            # Refused for that reason alone: any other complaint means the case tests nothing.
            lines = [line.strip() for line in str(e).splitlines() if line.strip().startswith("- at") or "fail" in line]
            others = [line for line in lines if expected not in line and "'allOf' failed" not in line
                      and not line.startswith("install failed")]
            reason = next((line for line in lines if expected in line), str(e).splitlines()[-1])
            checks.expect(expected in str(e) and not others, f"refuse {name}: {reason[:110]}",
                          f"refused, but not for `{expected}`: {e}")

    section("3-4. plain manifests deploy/k8s")
    import yaml

    manifests = sorted(K8S.rglob("*.yaml"))
    objects = [doc for f in manifests for doc in yaml.safe_load_all(f.read_text()) if doc]
    checks.expect(bool(manifests), f"deploy/k8s: {len(manifests)} files", "no manifests")
    validate_objects(checks, "deploy/k8s", objects)
    k8s_scenarios = check_wiring(checks, "deploy/k8s", objects)
    if binary:
        check_cli(checks, binary, "deploy/k8s", objects)
        check_scenarios(checks, binary, "deploy/k8s", k8s_scenarios)

    section("5. deploy/docker-compose.yml")
    compose_scenarios = check_compose(checks)
    if binary:
        check_cli(checks, binary, "docker-compose.yml", compose_as_objects(load_compose()))
        check_scenarios(checks, binary, "docker-compose.yml", compose_scenarios)

    if not binary:
        print("\nSKIPPED the barrage command-line checks (6): no BARRAGE_BIN and no target/debug/barrage")
    print(f"\n{checks.passed} checks passed, {len(checks.failed)} failed")
    for what in checks.failed:
        print(f"  failed: {what}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
