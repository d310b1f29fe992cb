"""A fixed rate of Pod and Deployment creates through the apiserver, every one accounted for.

:class:`Load` sends creates at ``rate`` per second (a scheduler thread; each create runs on a
worker of a bounded pool, so one slow answer never delays the next create), cycling in a
seeded random order through every (kind, namespace, image) of the world: allowed, patched
with the pull secret, and refused ones. Deployments have ``replicas: 0`` (their admission is
the point; Pods the controllers would create are not the load's), and everything admitted is
deleted at once, so the cluster — and the audit's work — stays the same size however long
the run.

Each answer is read as a user would read it (:func:`classify`): admitted (and patched or
not), denied by spacegate's policy, a webhook call that failed (``failed calling webhook``:
the replica went away, timed out, TLS failed), or the apiserver itself unavailable (down,
or etcd down). The last two are retried as controllers and careful clients do — a bounded
number of times with exponential backoff — and every retry is counted. A retried create
that finds its object already there (the previous try did get in) reads it back.

:class:`Create` then judges the final answer against the world's expectation taken over the
create's whole life (:meth:`World.expectation`): wrongly admitted, wrongly refused (with
why), wrong patch, or right.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.chaos.world import PULL_SECRET, Expected, World
from tests.support.manifests import pod

__all__ = ["Attempt", "Create", "Load", "classify"]

KINDS = ("Pod", "Deployment")
LOAD_LABEL = "chaos.spacegate.io/load"
# "not-current": spacegate's 503 for an allow whose watch-fed state was not current yet
# (webhook.admission.freshness); its message says to retry, as a controller would.
RETRYABLE = ("webhook-error", "api-error", "not-current")
NOT_CURRENT = "spacegate cannot admit this now"


@dataclass(frozen=True)
class Attempt:
    """One try: when, and what came back."""

    began: float
    ended: float
    outcome: str  # admitted | denied | webhook-error | api-error | not-current | other
    detail: str = ""
    patched: bool = False


@dataclass
class Create:
    """One create from the first try to the final answer, and its judgement."""

    seq: int
    kind: str
    namespace: str  # the world's key
    image: str  # the world's key
    began: float
    ended: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    expected: Expected | None = None  # None: a world change covered it, either is right

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]

    @property
    def retries(self) -> int:
        return len(self.attempts) - 1

    @property
    def latency(self) -> float:
        return self.ended - self.began

    @property
    def verdict(self) -> str:
        """right | either | wrongly-admitted | wrongly-refused | wrong-patch."""
        final = self.final
        if self.expected is None:
            return "either"
        if final.outcome == "admitted":
            if not self.expected.allowed:
                return "wrongly-admitted"
            return "right" if final.patched == self.expected.patched else "wrong-patch"
        if self.expected.allowed:
            return "wrongly-refused"
        return "right"  # refused, by the policy or by failing closed

    @property
    def why(self) -> str:
        """For a wrong answer: what the last try got."""
        final = self.final
        if final.outcome == "denied":
            return "denied by the policy"
        if final.outcome == "webhook-error":
            return f"webhook call failed ({final.detail}) after {self.retries} retries"
        if final.outcome == "api-error":
            return f"apiserver unavailable ({final.detail}) after {self.retries} retries"
        if final.outcome == "not-current":
            return f"watch-fed state not current after {self.retries} retries"
        return final.detail or final.outcome


def classify(answer: httpx.Response) -> tuple[str, str]:
    """(outcome, detail) of the apiserver's answer to a create that was not a 201."""
    try:
        message = str(answer.json().get("message", ""))
    except ValueError:
        message = answer.text[:200]
    if "failed calling webhook" in message:
        return "webhook-error", _webhook_reason(message)
    if "denied the request" in message and NOT_CURRENT in message:
        return "not-current", message[:300]
    if "denied the request" in message:
        return "denied", message[:300]
    if answer.status_code >= 500 or answer.status_code == 429:
        return "api-error", f"{answer.status_code} {message[:120]}"
    return "other", f"{answer.status_code} {message[:200]}"


def _webhook_reason(message: str) -> str:
    """The cause of a failed webhook call, in a few words."""
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset"),
        ("EOF", "EOF"),
        ("deadline exceeded", "timeout"),
        ("Client.Timeout", "timeout"),
        ("x509", "TLS: x509"),
        ("tls:", "TLS"),
        ("no endpoints", "no endpoints"),
    ):
        if needle in message:
            return reason
    return message[-120:]


def _body(kind: str, name: str, image: str) -> dict[str, Any]:
    """The manifest of a create."""
    labels = {LOAD_LABEL: "1"}
    if kind == "Pod":
        manifest = pod(name, image)
        manifest["metadata"]["labels"] = labels
        return manifest
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c0", "image": image}]},
            },
        },
    }


def _collection(kind: str, namespace: str) -> str:
    group = "/api/v1" if kind == "Pod" else "/apis/apps/v1"
    plural = "pods" if kind == "Pod" else "deployments"
    return f"{group}/namespaces/{namespace}/{plural}"


def _patched(kind: str, obj: dict[str, Any]) -> bool:
    if kind != "Pod":
        return False
    secrets = (obj.get("spec") or {}).get("imagePullSecrets") or []
    return any(s.get("name") == PULL_SECRET for s in secrets)


class Load:
    """Creates at ``rate``/s on ``world`` until :meth:`stop`; :attr:`creates` has them all."""

    def __init__(
        self,
        world: World,
        rate: float,
        *,
        seed: int = 19,
        retries: int = 4,
        backoff: float = 0.5,
        workers: int = 32,
        timeout: float = 30.0,
    ) -> None:
        self.world = world
        self.rate = rate
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.creates: list[Create] = []
        self.late = 0  # ticks sent more than a period after their time
        self._rng = random.Random(seed)
        keys = [
            (kind, ns, image)
            for kind in KINDS
            for ns in world.names
            if ns != "foreign"
            for image in world.images
        ]
        self._combos = keys
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._thread = threading.Thread(target=self._schedule, name="load-scheduler", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending; wait for every create in flight to get its final answer."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _schedule(self) -> None:
        period = 1.0 / self.rate
        seq = 0
        order: list[tuple[str, str, str]] = []
        start = time.monotonic()
        while not self._stop.is_set():
            due = start + seq * period
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                if self._stop.is_set():
                    return
            elif -delay > period:
                self.late += 1
            if not order:
                order = list(self._combos)
                self._rng.shuffle(order)
            kind, ns, image = order.pop()
            self._pool.submit(self._create, seq, kind, ns, image)
            seq += 1

    def _http(self) -> httpx.Client:
        http: httpx.Client | None = getattr(self._local, "http", None)
        if http is None:
            http = self.world.plane.http_client(timeout=self.timeout)
            self._local.http = http
        return http

    def _create(self, seq: int, kind: str, key: str, image_key: str) -> None:
        world = self.world
        image = world.images[image_key]
        namespace = world.names[key]
        name = f"load-{seq}"
        manifest = _body(kind, name, image.ref)
        record = Create(seq, kind, key, image_key, began=time.monotonic())
        path = _collection(kind, namespace)
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            record.attempts.append(self._try(kind, path, name, manifest))
            if record.final.outcome not in RETRYABLE:
                break
        record.ended = time.monotonic()
        record.expected = world.expectation(key, image, kind, record.began, record.ended)
        if record.final.outcome == "admitted":
            self._delete(f"{path}/{name}")
        with self._lock:
            self.creates.append(record)

    def _try(self, kind: str, path: str, name: str, manifest: dict[str, Any]) -> Attempt:
        began = time.monotonic()
        http = self._http()
        try:
            answer = http.post(path, json=manifest)
            if answer.status_code == 409:  # a previous try got in after all
                answer = http.get(f"{path}/{name}")
                if answer.status_code == 200:
                    patched = _patched(kind, answer.json())
                    return Attempt(began, time.monotonic(), "admitted", "earlier try", patched)
        except httpx.TransportError as exc:
            return Attempt(began, time.monotonic(), "api-error", type(exc).__name__)
        if answer.status_code == 201:
            patched = _patched(kind, answer.json())
            return Attempt(began, time.monotonic(), "admitted", patched=patched)
        outcome, detail = classify(answer)
        return Attempt(began, time.monotonic(), outcome, detail)

    def _delete(self, path: str) -> None:
        # A delete lost to a fault is swept at the end (:func:`sweep`).
        with contextlib.suppress(httpx.TransportError):
            self._http().delete(path, params={"gracePeriodSeconds": "0"})


def sweep(world: World) -> int:
    """Delete what the load left behind (a delete that failed during a fault); how many."""
    removed = 0
    with world.plane.http_client(timeout=30) as http:
        for namespace in world.names.values():
            for kind in KINDS:
                path = _collection(kind, namespace)
                listed = http.get(path, params={"labelSelector": f"{LOAD_LABEL}=1"})
                if listed.status_code != 200:
                    continue
                for item in listed.json().get("items", []):
                    http.delete(f"{path}/{item['metadata']['name']}")
                    removed += 1
    return removed
