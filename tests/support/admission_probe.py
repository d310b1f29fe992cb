"""Admission latency through the apiserver while something else runs, for the benchmarks.

A leader's first passes (provisioning from scratch, the first report pass) write thousands of
objects through the same apiserver that calls spacegate's webhooks for every Pod; what a
tenant notices is how much longer a ``kubectl apply`` takes meanwhile. :class:`AdmissionProbe`
is that tenant: a thread creating one Pod at a time through the apiserver, at a steady rate,
with ``dryRun=All`` (the apiserver calls the webhooks, whose ``sideEffects: None`` allows it,
and stores nothing, so the probe adds no Pod an audit would count), recording when each
answer came (wall clock) and how long it took. :func:`serving_webhooks` starts a
``spacegate serve`` with the chart's webhooks pointing at it and waits until the apiserver
calls them.

The probe's image is public and its namespace has no workspace label, so provisioning
ignores it (no pull Secret) and spacegate allows it: every answer is a 201, and anything else
is counted as an error.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support.controlplane.plane import ControlPlane
from tests.support.manifests import pod
from tests.support.namespaces import create_namespace
from tests.support.scenario import PUBLIC
from tests.support.spacegate import SpacegateProcess
from tests.support.webhooks import (
    apply_webhooks,
    chart_webhooks,
    delete_webhooks,
    wait_until_enforced,
)

__all__ = ["AdmissionProbe", "percentile", "serving_webhooks"]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class AdmissionProbe:
    """Dry-run Pod creates in ``namespace`` through the apiserver, ``rate`` per second,
    one at a time; (answered at, seconds) pairs of every 201."""

    def __init__(self, plane: ControlPlane, namespace: str, *, rate: float = 20.0) -> None:
        self._plane = plane
        self._path = f"/api/v1/namespaces/{namespace}/pods"
        self._period = 1.0 / rate
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admission-probe", daemon=True)

    def _run(self) -> None:
        body = pod("probe", PUBLIC)
        with self._plane.http_client() as http:
            due = time.perf_counter()
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    response = http.post(self._path, params={"dryRun": "All"}, json=body)
                    ok = response.status_code == 201
                except Exception:  # a timeout or reset is an error of the probe's, counted
                    ok = False
                took = time.perf_counter() - began
                if ok:
                    self.samples.append((time.time(), took))
                else:
                    self.errors += 1
                due += self._period
                time.sleep(max(0.0, due - time.perf_counter()))

    def __enter__(self) -> AdmissionProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def between(self, start: float, end: float) -> list[float]:
        """The latencies of the answers that came between ``start`` and ``end`` (Unix s)."""
        return [took for at, took in list(self.samples) if start <= at <= end]

    def quiet(self, seconds: float) -> list[float]:
        """Wait ``seconds`` and return the latencies answered meanwhile."""
        began = time.time()
        time.sleep(seconds)
        return self.between(began, time.time())


@contextlib.contextmanager
def serving_webhooks(
    plane: ControlPlane, api: client.ApiClient, workdir: Path
) -> Iterator[tuple[SpacegateProcess, str]]:
    """A ``spacegate serve`` (the scenario's static config) behind the chart's webhooks with
    ``failurePolicy: Fail``, and a namespace with no workspace label the probe may use."""
    workdir.mkdir(parents=True, exist_ok=True)
    spacegate = SpacegateProcess(plane, workdir)
    spacegate.start()
    try:
        namespace = create_namespace(api, {})
        values: dict[str, Any] = {"config": {"bindings": {"source": "config"}}}
        apply_webhooks(api, chart_webhooks(spacegate.url, spacegate.ca_pem, values=values))
        wait_until_enforced(api, namespace)
        yield spacegate, namespace
    finally:
        with contextlib.suppress(Exception):
            delete_webhooks(api)
        spacegate.stop()
