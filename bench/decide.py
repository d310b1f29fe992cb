"""Benchmark: policy.decide throughput and `spacegate check` over 10,000 workloads.

Prints figures; it is not a pass/fail test. Targets on the 2-core dev machine:
``decide`` >= 50,000 decisions/s for a 3-container Pod on one core, and ``check`` of a
10,000-workload YAML file in <= 3 s (wall time of the whole command, start-up included).

Run: ``.venv/bin/python bench/decide.py`` (or ``make bench``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from policy.decision import decide
from policy.snapshot import Snapshot
from webhook.settings import read_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo.yaml"

NAMESPACES = ["team-a-dev", "team-a-prod", "team-b-dev", "sandbox"]
IMAGES = [
    "harbor.demo.local/team-a/api:2.3.1",
    "harbor.demo.local/library/nginx:1.27@sha256:" + "a" * 64,
    "registry.demo.local:5000/observability/otel-collector:0.98",
    "harbor.demo.local/team-b/worker:7",
    "harbor.demo.local/shared-ml/model:2024.11",
    "docker.io/library/redis:7",
    "quay.io/prometheus/node-exporter:v1.8.0",
]


def pod_spec(containers: int, offset: int = 0) -> dict[str, Any]:
    return {
        "serviceAccountName": "default",
        "initContainers": [{"name": "init", "image": IMAGES[offset % len(IMAGES)]}],
        "containers": [
            {
                "name": f"c{i}",
                "image": IMAGES[(offset + i + 1) % len(IMAGES)],
                "ports": [{"containerPort": 8080}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
            for i in range(containers - 1)
        ],
    }


def bench_decide(snapshot: Snapshot, containers: int, *, memo: bool, seconds: float = 2.0) -> float:
    """Decisions/s over 7 pod specs x 4 namespaces.

    ``memo=False`` empties the per-snapshot decision memo before every call, so each
    decision is computed (per-image verdicts and reference parsing stay cached, as they do
    in a running webhook); ``memo=True`` is the steady state of Pods that repeat.
    """
    specs = [pod_spec(containers, i) for i in range(len(IMAGES))]
    memo_cache = snapshot.decision_cache
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for spec in specs:
            for namespace in NAMESPACES:
                if not memo:
                    memo_cache.clear()
                decide(snapshot, namespace, spec)
        count += len(specs) * len(NAMESPACES)
    return count / (time.perf_counter() - start)


def bench_decide_cold(snapshot_factory: Any, rounds: int = 2000) -> float:
    """Worst case: a fresh snapshot each time, so no per-image verdict is cached."""
    spec = pod_spec(3)
    start = time.perf_counter()
    for _ in range(rounds):
        decide(snapshot_factory(), "team-a-dev", spec)
    return rounds / (time.perf_counter() - start)


def write_workloads(path: Path, count: int) -> None:
    kinds = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"]
    docs = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        spec = pod_spec(3, i)
        template = {"metadata": {"labels": {"app": f"app-{i}"}}, "spec": spec}
        body: dict[str, Any]
        if kind == "Pod":
            body = {"spec": spec}
        elif kind == "CronJob":
            body = {
                "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}
            }
        else:
            body = {
                "spec": {"selector": {"matchLabels": {"app": f"app-{i}"}}, "template": template}
            }
        docs.append(
            {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": f"app-{i}", "namespace": NAMESPACES[i % len(NAMESPACES)]},
                **body,
            }
        )
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def main() -> int:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    config = read_config(str(DEMO))
    snapshot = Snapshot.from_config(config)
    rate3 = bench_decide(snapshot, 3, memo=False)
    rate20 = bench_decide(snapshot, 20, memo=False)
    memo3 = bench_decide(snapshot, 3, memo=True)
    cold = bench_decide_cold(lambda: Snapshot.from_config(config))
    print("policy.decide on one core")
    print(f"  3-container Pod:   {rate3:>10,.0f} decisions/s   (target >= 50,000)")
    print(f"  20-container Pod:  {rate20:>10,.0f} decisions/s")
    print(f"  3-container Pod, repeated (decision memo hit): {memo3:>10,.0f} decisions/s")
    print(f"  3-container Pod, new snapshot built per call: {cold:>8,.0f} decisions/s")

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "workloads.yaml"
        write_workloads(manifest, 10_000)
        size_mb = manifest.stat().st_size / 1e6
        spacegate = Path(sys.executable).parent / "spacegate"
        start = time.perf_counter()
        result = subprocess.run(
            [str(spacegate), "check", "-f", str(manifest), "--config", str(DEMO), "-o", "json"],
            capture_output=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
        summary = "exit code " + str(result.returncode)
    print(f"spacegate check, 10,000 workloads ({size_mb:.1f} MB YAML)", flush=True)
    print(f"  wall time:         {elapsed:>10.2f} s            (target <= 3 s; {summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
