"""Benchmark: a full live sync at scale, and the memory it takes.

Sources: a Harbor fake with 10,000 projects (admin account, 100 per page), the real Debian
``docker-registry`` (Distribution 2.8.2) with 5,000 repositories in 1,000 spaces (storage
prefilled on disk, on tmpfs when available; basic auth; catalog pages of 1,000), and the
Kubernetes API fake with 10,000 labelled namespaces (list pages of 500). The fakes run in a
**separate process** (this script re-invoked with ``--serve-fakes``), so their memory is not
counted in the figures; they still share the machine's two cores with the measured process.

Measured in this process, with the same code ``spacegate serve`` runs (``webhook.live.mode``):

- *cold sync*: from opening the live state (sources built, namespace watch started) until
  it is ready with every source listed once and the snapshot rebuilt — best and median of
  several runs, each with fresh sources and connections;
- *steady refresh*: both registries listed again concurrently plus a snapshot rebuild;
- *Snapshot.build* alone with the full data;
- peak RSS of this process (``resource.getrusage``), and the RSS right after the imports
  for reference.

Targets: cold sync <= 5 s, peak RSS <= 200 MB. Prints figures; it is not a pass/fail test.
Run: ``.venv/bin/python bench/refresh.py`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

HARBOR_PROJECTS = 10_000
REGISTRY_REPOSITORIES = 5_000
REGISTRY_SPACES = 1_000
NAMESPACES = 10_000
WORKSPACE_LABEL = "workspace.ghippo.io/id"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- the fakes process


def serve_fakes(workdir: Path) -> None:
    """Start the three fakes, print where they are (one JSON line), serve until stdin ends."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.harbor import ADMIN_PASSWORD, ADMIN_USER, HarborFake
    from tests.fakes.kubernetes import FakeKubernetes
    from tests.fakes.registry import RealRegistry, real_registry_unavailable

    started = time.perf_counter()
    harbor = HarborFake().start()
    harbor.add_projects(
        (f"project-{i:05d}" for i in range(HARBOR_PROJECTS) if i % 4 == 0), public=True
    )
    harbor.add_projects(
        (f"project-{i:05d}" for i in range(HARBOR_PROJECTS) if i % 4 != 0), public=False
    )
    registry: Any = None
    reason = real_registry_unavailable()
    if reason is None:
        registry = RealRegistry(workdir / "registry").start()
        per_space = REGISTRY_REPOSITORIES // REGISTRY_SPACES
        registry.prefill(
            f"space-{s:04d}/app-{r}" for s in range(REGISTRY_SPACES) for r in range(per_space)
        )
    kube = FakeKubernetes(history_limit=NAMESPACES * 2)
    for i in range(NAMESPACES):
        kube.create_namespace(f"ns-{i:05d}", {WORKSPACE_LABEL: f"ws-{i % 500}"})
    print(
        json.dumps(
            {
                "harbor": {"url": harbor.url, "user": ADMIN_USER, "password": ADMIN_PASSWORD},
                "registry": None
                if registry is None
                else {
                    "url": registry.url,
                    "user": registry.username,
                    "password": registry.password,
                },
                "registry_missing": reason,
                "kube": kube.url,
                "setup_seconds": round(time.perf_counter() - started, 2),
            }
        ),
        flush=True,
    )
    sys.stdin.read()  # until the benchmark closes our stdin
    kube.stop()
    if registry is not None:
        registry.stop()
    harbor.stop()


# --------------------------------------------------------------------------- measuring


def write_config(workdir: Path, fakes: dict[str, Any]) -> str:
    def creds(name: str, user: str, password: str) -> str:
        (workdir / f"{name}-user").write_text(user)
        (workdir / f"{name}-password").write_text(password)
        return (
            f"    credentials: {{usernameFile: {workdir / f'{name}-user'}, "
            f"passwordFile: {workdir / f'{name}-password'}}}\n"
        )

    harbor = fakes["harbor"]
    text = (
        "policy: {maxStaleness: 10m}\n"
        "registries:\n"
        "  - name: harbor\n"
        "    type: harbor\n"
        f"    url: {harbor['url']}\n"
        "    hosts: [harbor.bench.local]\n"
        "    refreshInterval: 1h\n" + creds("harbor", harbor["user"], harbor["password"])
    )
    registry = fakes["registry"]
    if registry is not None:
        text += (
            "  - name: registry\n"
            "    type: docker-registry\n"
            f"    url: {registry['url']}\n"
            "    hosts: [registry.bench.local:5000]\n"
            "    refreshInterval: 1h\n" + creds("registry", registry["user"], registry["password"])
        )
    text += "bindings:\n  - {registry: harbor, space: project-00001, workspaces: [ws-1]}\n"
    path = workdir / "config.yaml"
    path.write_text(text)
    return str(path)


async def measure(config_path: str, kube_url: str, runs: int) -> dict[str, Any]:
    import kubernetes.client

    from policy.snapshot import Snapshot
    from webhook.live.mode import open_live_state
    from webhook.live.sources.namespaces import fetch_namespaces
    from webhook.settings import read_config

    config = read_config(config_path)

    def api_client() -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=kube_url))

    cold: list[float] = []
    steady: list[float] = []
    per_source: dict[str, list[float]] = {}
    figures: dict[str, Any] = {}
    for _ in range(runs):
        started = time.perf_counter()
        async with open_live_state(config, kube=True, api_client=api_client) as state:
            while not (state.readiness()[0] and all(s.synced for s in state.status())):
                if time.perf_counter() - started > 120:
                    raise RuntimeError(f"not ready after 120 s: {state.readiness()[1]}")
                await asyncio.sleep(0.002)
            cold.append(time.perf_counter() - started)
            snapshot = state.snapshot
            figures["spaces"] = {n: len(r.spaces) for n, r in snapshot.registries.items()}
            figures["namespaces"] = len(snapshot.namespaces)

            started = time.perf_counter()
            await asyncio.gather(*(state.refresh(s.name) for s in state.status()))
            steady.append(time.perf_counter() - started)

            for status in state.status():
                started = time.perf_counter()
                await state.refresh(status.name)
                per_source.setdefault(status.name, []).append(time.perf_counter() - started)
            started = time.perf_counter()
            client = api_client()
            await asyncio.to_thread(fetch_namespaces, client, config.workspace_label)
            client.close()  # type: ignore[no-untyped-call]
            per_source.setdefault("namespaces", []).append(time.perf_counter() - started)

            spaces = {n: dict(r.spaces) for n, r in snapshot.registries.items()}
            namespaces = dict(snapshot.namespaces)
            started = time.perf_counter()
            for _ in range(10):
                Snapshot.build(config, spaces=spaces, namespaces=namespaces)
            figures["build_ms"] = (time.perf_counter() - started) / 10 * 1000
    figures["cold"] = cold
    figures["steady"] = steady
    figures["per_source"] = {name: statistics.median(t) for name, t in per_source.items()}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-fakes", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=5, help="cold syncs to time (default 5)")
    args = parser.parse_args()
    if args.serve_fakes:
        serve_fakes(Path(args.serve_fakes))
        return 0

    # The imports the live webhook needs, before the baseline RSS is read.
    for module in (
        "kubernetes.client",
        "webhook.live.mode",
        "webhook.live.sources.factory",
        "webhook.live.sources.namespaces",
    ):
        importlib.import_module(module)

    # The fakes are plain http on loopback; their warning about it is not news here.
    logging.getLogger("webhook.live.sources").setLevel(logging.ERROR)
    baseline = current_rss_mb()
    # The registry's storage is 5,000 repositories of small files: on tmpfs it is written
    # in seconds, on a disk-backed /tmp it can take a minute.
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="spacegate-bench-", dir=base) as tmp:
        workdir = Path(tmp)
        fakes_process = subprocess.Popen(
            [sys.executable, __file__, "--serve-fakes", str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert fakes_process.stdout is not None
            line = fakes_process.stdout.readline()
            if not line:
                print("the fakes process failed to start", file=sys.stderr)
                return 1
            fakes = json.loads(line)
            if fakes["registry_missing"]:
                print(f"note: no Docker Registry in this run: {fakes['registry_missing']}")
            config_path = write_config(workdir, fakes)
            figures = asyncio.run(measure(config_path, fakes["kube"], args.runs))
        finally:
            if fakes_process.stdin is not None:
                fakes_process.stdin.close()
            fakes_process.wait(timeout=30)

    cold, steady = figures["cold"], figures["steady"]
    peak = peak_rss_mb()
    spaces = ", ".join(f"{name} {count}" for name, count in figures["spaces"].items())
    print(
        f"sources: {spaces} spaces; {figures['namespaces']} namespaces "
        f"(fakes in a separate process, set up in {fakes['setup_seconds']} s)"
    )
    print(
        f"cold sync to ready (all sources + Snapshot.build): best {min(cold):.2f} s, "
        f"median {statistics.median(cold):.2f} s over {len(cold)} runs   (target <= 5 s)"
    )
    print(f"steady refresh of both registries + rebuild: median {statistics.median(steady):.2f} s")
    alone = ", ".join(f"{name} {t:.2f} s" for name, t in figures["per_source"].items())
    print(f"each source alone (median): {alone}")
    print(f"Snapshot.build alone: {figures['build_ms']:.1f} ms")
    print(
        f"peak RSS of the measuring process: {peak:.0f} MB (after imports: {baseline:.0f} MB)"
        "   (target <= 200 MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
