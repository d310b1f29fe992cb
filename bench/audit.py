"""The background audit at scale: 10,000 Pods in 1,000 namespaces on a real apiserver.

What it measures, on a real etcd + kube-apiserver (``ControlPlane(controllers=())``, built by
the e2e tests) on this 2-core machine, where apiserver, etcd, spacegate and the load share it:

1. setup: creating 1,000 namespaces (half workspace 101, half 102) and 10 Pods in each
   (``team-a``, ``team-b`` and a public image in turn, so a third are refused), with
   ``--clients`` concurrent clients; timed separately, it is not the audit;
2. the audit pass alone, each in a child process so its memory is its own (peak RSS is the
   child's ``VmHWM`` after resetting it through ``/proc/self/clear_refs`` right before the
   pass, minus its RSS at that moment: the extra memory the pass needs):
   - ``Auditor.run_pass`` as the leader runs it (findings and metrics; no report CRD);
   - ``spacegate audit -A -o json`` and ``--what-if`` (the CLI, which keeps every result for
     its output);
3. the background audit inside ``spacegate serve`` (``audit.enabled``, no report CRD), with
   a thread posting small Pod ``/validate`` reviews over TLS the whole time: admission p50/p99
   with no audit running, then while passes run (a config rewrite starts one), and the
   serving process's extra peak RSS and pass time (``spacegate_audit_duration_seconds``);
4. with the chart's PolicyReport CRD installed (``--reports``, on by default): the first pass,
   which creates 10,000 reports through a bounded write pool (``webhook.clients.kube_writes``;
   the apiserver's 429s are counted), and the next, which finds them all unchanged; meanwhile
   admission *through the apiserver*: a ``spacegate serve`` behind the chart's webhooks and a
   probe creating a Pod (dry run, so the audit counts nothing more) 20 times a second, one at
   a time (``tests.support.admission_probe``), its p99 in a quiet window vs during the first
   pass.

Targets (issue "Background audit"): a pass over 10,000 Pods <= 10 s and <= 150 MB extra;
(issue "Chaos") the first report pass <= 15 s, admission p99 through the apiserver during it
<= 1.5x its quiet p99. Figures, not a test: it prints a table and exits 0 whatever the
numbers are.

Run: ``.venv/bin/python bench/audit.py [--namespaces 1000] [--pods-per-namespace 10]
[--reports-only]`` (``--reports-only``: the setup and step 4 alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.admission_probe import AdmissionProbe, serving_webhooks  # noqa: E402
from tests.support.controlplane.plane import ControlPlane  # noqa: E402
from tests.support.metrics import metric_samples  # noqa: E402
from tests.support.policy_reports import install_policy_report_crd  # noqa: E402
from tests.support.procfs import pids_using  # noqa: E402
from tests.support.reviews import pod_review  # noqa: E402
from tests.support.scenario import CONFIG, PUBLIC, TEAM_A, TEAM_B, WS  # noqa: E402
from tests.support.spacegate import SpacegateProcess  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402
from webhook.clients.kube import load_api_client  # noqa: E402
from webhook.clients.kube_writes import DEFAULT_WORKERS  # noqa: E402

UNBOUND = CONFIG.replace('  - {registry: harbor, space: team-a, workspaces: ["101"]}\n', "")
IMAGES = (TEAM_A, TEAM_B, PUBLIC)
DURATION = "spacegate_audit_duration_seconds"
LAST_RUN = "spacegate_audit_last_run_timestamp_seconds"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """``VmRSS``/``VmHWM`` of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int | str = "self") -> None:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# --------------------------------------------------------------------------- the child


def child(mode: str, kubeconfig: str, config_path: str, what_if: str | None) -> dict[str, Any]:
    """One measured audit in this (child) process; the figures as a dict."""
    from prometheus_client import CollectorRegistry

    from webhook.cli import audit as audit_cli
    from webhook.cli.cluster import live_snapshot
    from webhook.clients.kube import load_api_client
    from webhook.leader.audit.metrics import AuditMetrics
    from webhook.leader.audit.passes import Auditor
    from webhook.settings import read_config

    if mode == "cli":
        with open(os.devnull, "w") as sink:
            reset_peak()
            before = proc_status_mb("VmRSS")
            began = time.perf_counter()
            code = audit_cli.run(
                config_path,
                namespace=None,
                output="json",
                what_if=what_if,
                kubeconfig=kubeconfig,
                stdout=sink,
                stderr=sys.stderr,
            )
            seconds = time.perf_counter() - began
        return {"seconds": seconds, "exit": code, "extra_mb": proc_status_mb("VmHWM") - before}

    config = read_config(config_path)
    api = load_api_client(kubeconfig)
    snapshot, _ = asyncio.run(live_snapshot(config, api))
    registry = CollectorRegistry()
    auditor = Auditor(
        api,
        report_format=None if mode == "pass" else "wgpolicyk8s",
        metrics=AuditMetrics(registry),
        workers=int(os.environ.get("BENCH_WORKERS", DEFAULT_WORKERS)),
    )
    reset_peak()
    before = proc_status_mb("VmRSS")
    start = time.time()
    began = time.perf_counter()
    result = auditor.run_pass(snapshot)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "audited": result.audited,
        "refused": result.refused,
        "reports": result.reports,
        "throttled": result.throttled,
        "extra_mb": proc_status_mb("VmHWM") - before,
        "start": start,
        "end": time.time(),
    }


def run_child(
    mode: str, plane: ControlPlane, config: Path, what_if: Path | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--kubeconfig",
        str(plane.kubeconfig),
        "--config",
        str(config),
    ]
    if what_if is not None:
        command += ["--what-if", str(what_if)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# --------------------------------------------------------------------------- setup


def pod_manifest(name: str, image: str) -> dict[str, Any]:
    """A Pod of a typical size (about 1.5 KB as stored)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web", "tier": "backend"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": "LOG_LEVEL", "value": "info"}],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                }
            ],
        },
    }


def concurrently(
    plane: ControlPlane, jobs: list[tuple[str, dict[str, Any]]], clients: int
) -> tuple[float, int]:
    """POST every (path, body) with ``clients`` threads; (seconds, failures)."""
    lock = threading.Lock()
    todo = iter(jobs)
    failures = 0

    def worker() -> None:
        nonlocal failures
        with plane.http_client() as http:
            while True:
                with lock:
                    job = next(todo, None)
                if job is None:
                    return
                response = http.post(job[0], json=job[1])
                if response.status_code != 201:
                    with lock:
                        failures += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, failures


# --------------------------------------------------------------------------- admission load


def review(namespace: str) -> bytes:
    """A small Pod CREATE AdmissionReview (one container, an allowed private image)."""
    return json.dumps(pod_review(namespace, TEAM_A)).encode()


class Load:
    """A thread posting reviews back to back over one TLS connection; (when it answered,
    latency) pairs, the time in Unix seconds like ``spacegate_audit_last_run_timestamp``."""

    def __init__(self, process: SpacegateProcess, namespace: str) -> None:
        self.body = review(namespace)
        self.context = ssl.create_default_context(cafile=str(process.tls.ca_cert))
        self.url = process.url
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(base_url=self.url, verify=self.context, timeout=10) as http:
            while not self._stop.is_set():
                began = time.perf_counter()
                response = http.post("/validate", content=self.body, headers=headers)
                latency = time.perf_counter() - began
                if response.status_code == 200 and response.json()["response"]["allowed"]:
                    self.samples.append((time.time(), latency))  # wall clock, as the metrics
                else:
                    self.errors += 1
                time.sleep(0.002)  # ~ a few hundred reviews/s: a busy cluster, not a flood

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [latency for at, latency in list(self.samples) if start <= at <= end]


@dataclass
class Latency:
    """Admission latency over some reviews."""

    p50_ms: float
    p99_ms: float
    reviews: int

    @classmethod
    def of(cls, latencies: list[float]) -> Latency:
        return cls(
            percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000, len(latencies)
        )

    def __str__(self) -> str:
        return f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms ({self.reviews:,} reviews)"


@dataclass
class ServeFigures:
    quiet: Latency  # no audit anywhere
    beside: Latency  # while Auditor.run_pass runs in another process
    inside: Latency  # while the server's own background pass runs
    errors: int
    pass_seconds: float  # slowest background pass inside the server
    rss_mb: float  # the plain server, ready and warm
    peak_mb: float  # the auditing server's peak RSS over its passes


def _audit_duration(process: SpacegateProcess) -> tuple[float, float]:
    samples = metric_samples(process, DURATION + "_sum")
    counts = metric_samples(process, DURATION + "_count")
    return samples.get(frozenset(), 0.0), counts.get(frozenset(), 0.0)


def _wait_for_pass(process: SpacegateProcess, count: float) -> None:
    """Until more than ``count`` background passes have finished."""
    eventually(lambda: _audit_duration(process)[1] > count, "a background pass", timeout=300)


def serve_with_audit(
    plane: ControlPlane,
    workdir: Path,
    namespace: str,
    passes: int,
    baseline: float,
    config_path: Path,
) -> ServeFigures:
    """Admission latency with no audit, beside an audit in another process, and during the
    server's own background passes; the servers' memory."""
    # The leader Lease lives in spacegate's own namespace (spacegate-system without
    # POD_NAMESPACE), as in a cluster where the chart is installed.
    with plane.http_client() as http:
        http.post(
            "/api/v1/namespaces",
            json={
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "spacegate-system"},
            },
        )
    plain_dir, auditing_dir = workdir / "plain", workdir / "auditing"
    plain_dir.mkdir()
    auditing_dir.mkdir()

    plain = SpacegateProcess(plane, plain_dir, CONFIG)
    plain.start()
    try:
        (pid,) = pids_using(plain.config_path)
        with Load(plain, namespace) as load:
            time.sleep(1)
            began = time.time()
            time.sleep(baseline)
            quiet = load.between(began, time.time())
            rss = proc_status_mb("VmRSS", pid)
            beside: list[float] = []
            for _ in range(passes):
                figures = run_child("pass", plane, config_path)
                beside += load.between(figures["start"], figures["end"])
            errors = load.errors
    finally:
        plain.stop()

    config = CONFIG + "audit: {enabled: true, interval: 1h}\n"
    auditing = SpacegateProcess(plane, auditing_dir, config)
    auditing.start()
    try:
        (pid,) = pids_using(auditing.config_path)
        eventually(
            lambda: metric_samples(auditing, LAST_RUN).get(frozenset(), 0) > 0,
            "the first background pass",
            timeout=300,
        )
        with Load(auditing, namespace) as load:
            inside: list[float] = []
            seconds = []
            for n in range(passes):
                total, count = _audit_duration(auditing)
                # Any config change is a new snapshot, and the leader audits every new one.
                auditing.write_config(
                    config.replace("maxStaleness: 10m", f"maxStaleness: {11 + n}m")
                )
                _wait_for_pass(auditing, count)
                took = _audit_duration(auditing)[0] - total
                ended = metric_samples(auditing, LAST_RUN)[frozenset()]
                inside += load.between(ended - took, ended)  # while the pass ran
                seconds.append(took)
                time.sleep(1)
            errors += load.errors
        peak = proc_status_mb("VmHWM", pid)
    finally:
        auditing.stop()
    return ServeFigures(
        Latency.of(quiet), Latency.of(beside), Latency.of(inside), errors, max(seconds), rss, peak
    )


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    print(f"- {title} ...", end=" ", flush=True)
    began = time.perf_counter()
    yield
    print(f"{time.perf_counter() - began:.1f} s", flush=True)


def scale(
    plane: ControlPlane,
    work: Path,
    names: list[str],
    bound: Path,
    unbound: Path,
    args: argparse.Namespace,
    rows: list[tuple[str, str, str]],
) -> None:
    """Steps 2 and 3 of the module doc: the pass alone, the CLI, and inside ``serve``."""
    with step("Auditor.run_pass in a child process (no report CRD)"):
        alone = run_child("pass", plane, bound)
    rows.append(
        (
            f"audit pass, {alone['audited']:,} resources, {alone['refused']:,} refused",
            f"{alone['seconds']:.2f} s",
            "<= 10 s",
        )
    )
    rows.append(("  extra peak RSS of that pass", f"{alone['extra_mb']:.0f} MB", "<= 150 MB"))
    with step("spacegate audit -A -o json"):
        cli = run_child("cli", plane, bound)
    rows.append(
        (
            f"spacegate audit -A -o json (exit {cli['exit']})",
            f"{cli['seconds']:.2f} s, +{cli['extra_mb']:.0f} MB peak RSS",
            "-",
        )
    )
    with step("spacegate audit -A --what-if <unbound>"):
        what_if = run_child("cli", plane, bound, unbound)
    rows.append(
        (
            f"spacegate audit -A --what-if (exit {what_if['exit']})",
            f"{what_if['seconds']:.2f} s, +{what_if['extra_mb']:.0f} MB peak RSS",
            "-",
        )
    )

    (work / "serve").mkdir()
    with step(
        f"spacegate serve under load: quiet, beside {args.passes} audits in another "
        f"process, during {args.passes} of its own background passes"
    ):
        serve = serve_with_audit(plane, work / "serve", names[0], args.passes, args.baseline, bound)
    rows.append(
        (
            "background pass inside spacegate serve, under load (slowest)",
            f"{serve.pass_seconds:.2f} s",
            "<= 10 s",
        )
    )
    rows.append(
        (
            "  spacegate serve RSS: plain, ready / peak with the background audit",
            f"{serve.rss_mb:.0f} MB / {serve.peak_mb:.0f} MB "
            f"(+{serve.peak_mb - serve.rss_mb:.0f} MB)",
            "<= 150 MB extra",
        )
    )
    rows.append(("admission /validate, no audit", str(serve.quiet), "-"))
    rows.append(("admission /validate, audit pass in another process", str(serve.beside), "-"))
    rows.append(
        (
            "admission /validate, during the server's own background pass",
            str(serve.inside) + (f", {serve.errors} errors" if serve.errors else ""),
            "-",
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--pods-per-namespace", type=int, default=10)
    parser.add_argument("--clients", type=int, default=16, help="concurrent creating clients")
    parser.add_argument("--passes", type=int, default=3, help="background passes under load")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of quiet load")
    parser.add_argument("--no-reports", action="store_true", help="skip the CRD passes")
    parser.add_argument(
        "--reports-only", action="store_true", help="the setup and the CRD passes alone"
    )
    parser.add_argument(
        "--workers", type=int, default=DEFAULT_WORKERS, help="report writes in flight"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--what-if", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["BENCH_WORKERS"] = str(args.workers)  # for the children
    if args.child:
        print(json.dumps(child(args.child, args.kubeconfig, args.config, args.what_if)))
        return 0

    pods = args.namespaces * args.pods_per_namespace
    rows: list[tuple[str, str, str]] = []
    with ControlPlane(controllers=()) as plane, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bound, unbound = work / "bound.yaml", work / "unbound.yaml"
        bound.write_text(CONFIG)
        unbound.write_text(UNBOUND)
        print(
            f"audit benchmark: {pods:,} Pods in {args.namespaces:,} namespaces, apiserver "
            f"{plane.server}",
            flush=True,
        )

        names = [f"bench-{i:04d}" for i in range(args.namespaces)]
        namespaces = [
            (
                "/api/v1/namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": n, "labels": {WS: "101" if i % 2 == 0 else "102"}},
                },
            )
            for i, n in enumerate(names)
        ]
        with step(f"create {args.namespaces:,} namespaces"):
            ns_seconds, ns_failed = concurrently(plane, namespaces, args.clients)
        jobs = [
            (f"/api/v1/namespaces/{n}/pods", pod_manifest(f"p{j}", IMAGES[(i + j) % len(IMAGES)]))
            for i, n in enumerate(names)
            for j in range(args.pods_per_namespace)
        ]
        with step(f"create {pods:,} Pods"):
            pod_seconds, pod_failed = concurrently(plane, jobs, args.clients)
        rows.append(
            (
                f"setup: create {args.namespaces:,} namespaces ({args.clients} clients)",
                f"{ns_seconds:.1f} s ({args.namespaces / ns_seconds:,.0f}/s, {ns_failed} failed)",
                "-",
            )
        )
        rows.append(
            (
                f"setup: create {pods:,} Pods ({args.clients} clients)",
                f"{pod_seconds:.1f} s ({pods / pod_seconds:,.0f}/s, {pod_failed} failed)",
                "-",
            )
        )

        if not args.reports_only:
            scale(plane, work, names, bound, unbound, args, rows)

        if not args.no_reports:
            install_policy_report_crd(plane)
            api = load_api_client(str(plane.kubeconfig))
            with contextlib.ExitStack() as probing:
                _, probe_namespace = probing.enter_context(
                    serving_webhooks(plane, api, work / "probe")
                )
                probe = probing.enter_context(AdmissionProbe(plane, probe_namespace))
                time.sleep(1)  # connections warm
                quiet = probe.quiet(args.baseline)
                with step(f"first pass with the PolicyReport CRD ({pods:,} reports created)"):
                    first = run_child("reports", plane, bound)
                during = probe.between(first["start"], first["end"])
                probe_errors = probe.errors
            api.close()  # type: ignore[no-untyped-call]
            rows.append(
                (
                    "pass with the report CRD, first (creates every report)",
                    f"{first['seconds']:.1f} s, +{first['extra_mb']:.0f} MB; {first['reports']}; "
                    f"{first['throttled']} 429s",
                    "<= 15 s",
                )
            )
            slower = Latency.of(during).p99_ms / Latency.of(quiet).p99_ms
            rows.append(
                (
                    "admission through the apiserver (dry-run Pod create, 20/s), quiet",
                    str(Latency.of(quiet)),
                    "-",
                )
            )
            rows.append(
                (
                    "  the same during the first report pass",
                    f"{Latency.of(during)}, {probe_errors} errors: p99 {slower:.2f}x quiet",
                    "<= 1.5x",
                )
            )
            with step("next pass (every report unchanged)"):
                steady = run_child("reports", plane, bound)
            rows.append(
                (
                    "pass with the report CRD, next (nothing changed)",
                    f"{steady['seconds']:.1f} s, +{steady['extra_mb']:.0f} MB; {steady['reports']}",
                    "<= 10 s",
                )
            )

    print()
    print("| measurement | figure | target |")
    print("| --- | --- | --- |")
    for what, figure, target in rows:
        print(f"| {what} | {figure} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
