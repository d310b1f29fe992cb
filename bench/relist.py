"""Benchmark: what a broken watch costs at 10,000 namespaces, now that it relists.

A watch that fails makes its source not current, and the reflector relists before it is
current again (``webhook.live.sources.reflector``); a review whose allow rests on it wakes
the reflector and waits (``webhook.live.freshness``). This measures that path with the code
``spacegate serve`` runs (``webhook.live.mode``), on the real apiserver and etcd of the e2e
control plane (``ControlPlane(controllers=())``) holding 10,000 labelled namespaces, the
live state dialling it through a TCP proxy
(:class:`~tests.support.chaos.fault_proxy.FaultProxy`) that cuts every connection on
command:

- *catch-up*: from the cut (the proxy refuses, then passes again at once) until
  :meth:`~webhook.live.freshness.WatchFreshness.wait_current` returns (woken at once, as a
  review would: the relist of 10,000 namespaces in pages of 500, a new watch, the snapshot
  rebuilt) — what the first review after a break waits at most;
- *relist alone*: one paged list of the 10,000 namespaces into a fresh map, direct;
- *rebuild alone*: ``Snapshot.build`` with the 10,000 namespaces.

Prints figures (best and median of ``--runs``); it is not a pass/fail test.
Run: ``nice -n 10 .venv/bin/python bench/relist.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policy.config import load_config  # noqa: E402
from policy.snapshot import Snapshot  # noqa: E402
from tests.support.chaos.fault_proxy import FaultProxy  # noqa: E402
from tests.support.controlplane.plane import LOOPBACK, ControlPlane  # noqa: E402
from webhook.live.mode import open_live_state  # noqa: E402
from webhook.live.namespace_map import NamespaceMap  # noqa: E402
from webhook.live.sources.namespaces import NamespaceReflector  # noqa: E402

NAMESPACES = 10_000
WORKSPACE_LABEL = "workspace.ghippo.io/id"
CONFIG = f"""
workspaceLabel: {WORKSPACE_LABEL}
policy: {{mode: enforce, maxStaleness: 10m}}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    spaces: [{{name: library, public: true}}, {{name: team-a, public: false}}]
bindings:
  source: config
  items:
  - {{registry: harbor, space: team-a, workspaces: ["ws-1"]}}
"""


def create_namespaces(plane: ControlPlane, count: int) -> float:
    """``count`` labelled namespaces, 8 writers; returns the seconds it took."""

    def create(first: int) -> None:
        with plane.http_client() as http:
            for i in range(first, count, 8):
                body = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": f"ns-{i:05d}",
                        "labels": {WORKSPACE_LABEL: f"ws-{i % 500}"},
                    },
                }
                answer = http.post("/api/v1/namespaces", json=body)
                if answer.status_code != 201:
                    raise RuntimeError(f"namespace {i}: {answer.status_code} {answer.text[:200]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(8)))
    return time.perf_counter() - started


async def measure(kubeconfig: Path, proxied: Path, proxy: FaultProxy, runs: int) -> dict[str, Any]:
    config = load_config(CONFIG)

    def through_proxy() -> Any:
        return kube_config.new_client_from_config(config_file=str(proxied))  # type: ignore[no-untyped-call]

    catch_up: list[float] = []
    async with open_live_state(config, kube=True, api_client=through_proxy) as state:
        while not state.readiness()[0]:
            await asyncio.sleep(0.01)
        assert await state.freshness.wait_current(60.0) == ()
        assert len(state.snapshot.namespaces) >= 1
        for _ in range(runs):
            started = time.perf_counter()
            proxy.set_mode("refuse")
            while not state.freshness.not_current():  # the reflector sees the cut
                await asyncio.sleep(0.001)
            proxy.set_mode("pass")
            behind = await state.freshness.wait_current(60.0)
            assert behind == (), behind
            catch_up.append(time.perf_counter() - started)
            await asyncio.sleep(1.0)
        namespaces = dict(state.snapshot.namespaces)

    relist: list[float] = []
    for _ in range(runs):
        api = kube_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        reflector = NamespaceReflector(NamespaceMap(WORKSPACE_LABEL), api_client=api)
        started = time.perf_counter()
        await asyncio.to_thread(reflector._list)
        relist.append(time.perf_counter() - started)
        api.close()
    rebuild: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        Snapshot.build(config, namespaces=namespaces)
        rebuild.append(time.perf_counter() - started)
    return {"catch_up": catch_up, "relist": relist, "rebuild": rebuild}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--namespaces", type=int, default=NAMESPACES)
    args = parser.parse_args()
    with ControlPlane(controllers=()) as plane, tempfile.TemporaryDirectory() as tmp:
        seconds = create_namespaces(plane, args.namespaces)
        print(f"{args.namespaces:,} namespaces created in {seconds:.1f} s")
        proxy = FaultProxy((LOOPBACK, plane.apiserver_port)).start()
        try:
            text = plane.kubeconfig.read_text().replace(
                f"{LOOPBACK}:{plane.apiserver_port}", f"{LOOPBACK}:{proxy.port}"
            )
            proxied = Path(tmp) / "proxied.kubeconfig"
            proxied.write_text(text)
            figures = asyncio.run(measure(plane.kubeconfig, proxied, proxy, args.runs))
        finally:
            proxy.stop()
    print(f"{args.runs} runs (best / median):")
    for name, label in (
        ("catch_up", "cut -> current again (woken, relisted, rebuilt)"),
        ("relist", "relist alone (paged list into a fresh map)"),
        ("rebuild", "Snapshot.build alone"),
    ):
        times = figures[name]
        print(f"  {label}: {min(times) * 1000:.1f} ms / {statistics.median(times) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
