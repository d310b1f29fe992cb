"""What the kube-apiserver sees: Pod creates through the real apiserver, with and without spacegate.

What it measures: 16 concurrent clients create Pods (a private-space image, so the mutating
webhook patches every one) through a real kube-apiserver + etcd built by the e2e tests, in
three settings, each in a namespace of its own:

- ``none``: no admission webhooks;
- ``spacegate``: the chart's two webhooks pointing at ``spacegate serve`` (a local process);
- ``bare``: the same two webhook configurations pointing at ``bench/bare_app.py``, a bare
  Starlette endpoint that only echoes the uid (the ceiling of the stack).

For each: creates/s, p50/p99 create latency as the clients see it, and the apiserver's own
``apiserver_admission_webhook_admission_duration_seconds`` p99 per webhook (scraped from its
``/metrics`` before and after, so only this setting's calls count). Everything runs on this
2-core machine: apiserver, etcd, webhook and clients share it.

Targets (issue "A real Kubernetes control plane in the tests"): spacegate's webhook p99 as
measured by the apiserver <= 10 ms; creates/s with spacegate >= 0.9 x with the bare
endpoint. Figures, not a test: it prints a table and exits 0 whatever the numbers are.

Run: ``.venv/bin/python bench/apiserver.py [--pods 3000] [--clients 16]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.controlplane.plane import ControlPlane  # noqa: E402
from tests.support.manifests import pod  # noqa: E402
from tests.support.metrics import samples  # noqa: E402
from tests.support.namespaces import create_namespace  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.scenario import TEAM_A, WS  # noqa: E402
from tests.support.spacegate import SpacegateProcess  # noqa: E402
from tests.support.waiting import eventually  # noqa: E402
from tests.support.webhooks import (  # noqa: E402
    apply_webhooks,
    chart_webhooks,
    delete_webhooks,
    wait_until_enforced,
)

WORK = REPO / ".bench" / "apiserver"
METRIC = "apiserver_admission_webhook_admission_duration_seconds"


@dataclass(frozen=True)
class Result:
    setting: str
    pods: int
    seconds: float
    creates_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    webhook_p99_ms: dict[str, float]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def webhook_buckets(plane: ControlPlane) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts of the apiserver's webhook duration histogram, per webhook."""
    with plane.http_client() as http:
        text = http.get("/metrics").text
    buckets: dict[str, dict[float, float]] = {}
    for labels, value in samples(text, METRIC + "_bucket").items():
        fields = dict(labels)
        if fields.get("operation") != "CREATE":
            continue
        bound = float(fields["le"])  # "+Inf" included
        per = buckets.setdefault(fields["name"], {})
        per[bound] = per.get(bound, 0.0) + value
    return buckets


def p99_between(before: dict[float, float], after: dict[float, float]) -> float:
    """The 99th percentile (ms) of the calls in between, interpolated inside its bucket.

    The apiserver's buckets are coarse (5, 25, 100, 500 ms, ...), so the figure is linear
    interpolation within the bucket that holds the 99th percentile, as Prometheus's
    ``histogram_quantile`` computes it.
    """
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = delta.get(float("inf"), 0.0)
    if total <= 0:
        return float("nan")
    rank = 0.99 * total
    lower, below = 0.0, 0.0
    for bound in sorted(delta):
        if delta[bound] >= rank:
            if bound == float("inf"):
                return lower * 1000
            fraction = (rank - below) / max(delta[bound] - below, 1e-9)
            return (lower + (bound - lower) * fraction) * 1000
        lower, below = bound, delta[bound]
    return float("inf")


def create_pods(
    plane: ControlPlane, namespace: str, pods: int, clients: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(pods))

    def worker() -> None:
        nonlocal errors
        with plane.http_client() as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                started = time.perf_counter()
                response = http.post(
                    f"/api/v1/namespaces/{namespace}/pods", json=pod(f"p{n}", TEAM_A)
                )
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 201:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - began


@contextlib.contextmanager
def bare_endpoint(spacegate: SpacegateProcess) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "bench" / "bare_app.py"),
            "--port",
            str(port),
            "--echo-uid",
            "--tls-cert",
            str(spacegate.tls.cert),
            "--tls-key",
            str(spacegate.tls.key),
        ],
        cwd=REPO,
    )
    url = f"https://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                with httpx.Client(verify=str(spacegate.tls.ca_cert)) as http:
                    http.post(url + "/validate", content=b'{"request":{"uid":"x"}}')
                return True
            except httpx.HTTPError:
                return False

        eventually(up, "the bare endpoint")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def run_setting(
    name: str,
    plane: ControlPlane,
    api: client.ApiClient,
    url: str | None,
    ca_pem: str,
    pods: int,
    clients: int,
) -> Result:
    delete_webhooks(api)
    namespace = create_namespace(api, {WS: "101"})
    if url is not None:
        # The scenario's bindings come from its config only: no RegistrySpaceBinding entry.
        values = {"config": {"bindings": {"source": "config"}}}
        apply_webhooks(api, chart_webhooks(url, ca_pem, values=values))
        if name == "spacegate":
            wait_until_enforced(api, namespace)
        else:
            time.sleep(3)  # the configuration takes effect within seconds
    warm, _, _ = create_pods(plane, create_namespace(api, {WS: "101"}), 200, clients)
    del warm
    before = webhook_buckets(plane)
    latencies, errors, seconds = create_pods(plane, namespace, pods, clients)
    after = webhook_buckets(plane)
    p99 = {
        hook: p99_between(before.get(hook, {}), buckets)
        for hook, buckets in after.items()
        if buckets.get(float("inf"), 0) > before.get(hook, {}).get(float("inf"), 0)
    }
    return Result(
        name,
        len(latencies),
        seconds,
        len(latencies) / seconds,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        errors,
        p99,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=3000, help="pods per setting")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with ControlPlane(controllers=()) as plane, tempfile.TemporaryDirectory() as tmp:
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        spacegate = SpacegateProcess(plane, Path(tmp))
        spacegate.start()
        try:
            print(
                f"apiserver benchmark: {args.pods} Pod creates per setting, {args.clients} "
                f"clients, apiserver {plane.server}",
                flush=True,
            )
            results.append(
                run_setting("none", plane, api, None, spacegate.ca_pem, args.pods, args.clients)
            )
            results.append(
                run_setting(
                    "spacegate",
                    plane,
                    api,
                    spacegate.url,
                    spacegate.ca_pem,
                    args.pods,
                    args.clients,
                )
            )
            with bare_endpoint(spacegate) as bare:
                results.append(
                    run_setting("bare", plane, api, bare, spacegate.ca_pem, args.pods, args.clients)
                )
        finally:
            spacegate.stop()
            delete_webhooks(api)
    print()
    print("| webhooks | creates/s | p50 | p99 | errors | apiserver-measured webhook p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        hooks = (
            ", ".join(f"{h.split('.')[0]} {v:.1f} ms" for h, v in sorted(r.webhook_p99_ms.items()))
            or "-"
        )
        print(
            f"| {r.setting} | {r.creates_per_second:,.0f} | {r.p50_ms:.1f} ms | "
            f"{r.p99_ms:.1f} ms | {r.errors} | {hooks} |"
        )
    by = {r.setting: r for r in results}
    ratio = by["spacegate"].creates_per_second / by["bare"].creates_per_second
    worst = max(by["spacegate"].webhook_p99_ms.values(), default=float("nan"))
    print()
    print(
        f"spacegate / bare creates/s: {ratio:.2f} (target >= 0.9); "
        f"spacegate webhook p99 (apiserver): {worst:.1f} ms (target <= 10 ms)"
    )
    (WORK / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
