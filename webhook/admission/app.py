"""The admission server's ASGI app: composition, health, readiness and metrics.

``create_app(settings)`` builds the app (:class:`AdmissionApp`: the two admission
endpoints of ``webhook.admission.endpoint`` in front of an ordinary Starlette app) with no
module-level state: the snapshot state (a static config, or the live refresher) is opened by
the lifespan and closed with it, and the metrics registry, the decision log and the
per-decision reply cache belong to the app instance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol, TypedDict

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from policy.snapshot import Snapshot
from webhook.admission.bindings import BindingReviewer, ImpactProbe
from webhook.admission.bodies import (
    BODY_BUDGET_BYTES,
    BODY_TIMEOUT_SECONDS,
    LARGE_BODY_BYTES,
    LargeBodies,
    RequestBodies,
)
from webhook.admission.endpoint import JSON, AdmissionEndpoint
from webhook.admission.logs import DecisionLog, LogSink
from webhook.admission.metrics import CONTENT_TYPE, Metrics
from webhook.admission.review import MAX_BODY_BYTES
from webhook.state import SnapshotState, StaticState

__all__ = [
    "AdmissionApp",
    "AppSettings",
    "MetricsGuard",
    "StateOpener",
    "create_app",
    "static_state",
]

StateOpener = Callable[[], AbstractAsyncContextManager[SnapshotState]]


class GuardRefusal(Protocol):
    """What a :class:`MetricsGuard` answers instead of the page: status, body, headers."""

    @property
    def status(self) -> int: ...

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class MetricsGuard(Protocol):
    """Decides whether a ``GET /metrics`` may be answered, from its ``Authorization`` header.

    The admission room may not talk to the Kubernetes API itself (import-linter), so
    ``spacegate serve`` injects one (``webhook.clients.access``: TokenReview and
    SubjectAccessReview for ``get /metrics``). None means allowed.
    """

    async def __call__(self, authorization: str | None) -> GuardRefusal | None: ...


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What ``create_app`` needs.

    ``state`` opens the snapshot state for the app's lifetime; use :func:`static_state`
    for a fixed snapshot. ``max_body_bytes`` bounds one review body, ``body_timeout``
    the seconds a client may take to send it once its headers are in (and a large one to
    get a decode slot), ``body_budget_bytes`` what unfinished bodies may hold together.
    """

    state: StateOpener
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS
    large_body_bytes: int = LARGE_BODY_BYTES
    body_budget_bytes: int = BODY_BUDGET_BYTES
    # Unix time the serving certificate expires, read at scrape time (None: no gauge value).
    tls_not_after: Callable[[], float] | None = None
    # Where decision lines go (``spacegate serve`` passes the sink of its log
    # configuration); None: they are ordinary records of the ``spacegate.decision`` logger.
    log_sink: LogSink | None = None
    # Who may read /metrics (None: anyone who reaches the port).
    metrics_guard: MetricsGuard | None = None
    # Computes, for a RegistrySpaceBinding review, which running workloads a removal would
    # strand when the impact index cannot say (``spacegate serve`` injects one in live mode;
    # None: the index only). Never called for a Pod.
    binding_probe: ImpactProbe | None = None


def static_state(snapshot: Snapshot) -> StateOpener:
    """A state factory serving one fixed snapshot (offline config, demos, tests)."""

    @asynccontextmanager
    async def open_state() -> AsyncIterator[SnapshotState]:
        yield StaticState(snapshot)

    return open_state


class LifespanState(TypedDict):
    """What the lifespan hands to every request as ``request.state``."""

    snapshots: SnapshotState


# --------------------------------------------------------------------------- health & metrics


async def _healthz(request: Request) -> Response:
    """The process is alive and its event loop answers."""
    return Response(b"ok\n", media_type="text/plain")


READYZ_CHECKS: Final = frozenset({"staleness"})


async def _readyz(request: Request) -> Response:
    """Ready when a snapshot is loaded and fresh enough (the state decides).

    ``?exclude=staleness`` (the kube-apiserver's ``/readyz?exclude=<check>`` convention)
    skips the ``maxStaleness`` check; the Helm chart's readiness probe uses it so that a
    long registry outage cannot take every replica out of the Service at once.
    """
    state: SnapshotState = request.state.snapshots
    excluded = set(request.query_params.getlist("exclude"))
    unknown = excluded - READYZ_CHECKS
    if unknown:
        message = f"unknown readiness check(s) {sorted(unknown)}; known: {sorted(READYZ_CHECKS)}"
        return Response(orjson.dumps({"ready": False, "reason": message}), 400, media_type=JSON)
    ready, reason = state.readiness(staleness="staleness" not in excluded)
    body = orjson.dumps(
        {
            "ready": ready,
            "reason": reason,
            "snapshotVersion": state.snapshot.version,
            "snapshotAgeSeconds": round(state.age_seconds(), 3),
        }
    )
    return Response(body, 200 if ready else 503, media_type=JSON)


class AdmissionApp:
    """The server's ASGI app: the two admission endpoints first, then ordinary Starlette.

    ``POST /validate`` and ``POST /mutate`` are the hot path: a dict lookup sends them
    straight to their endpoints instead of through Starlette's error and exception
    middleware and its router (a regex match per route), a measurable share of what a
    review costs the server. Everything else (``/healthz``,
    ``/readyz``, ``/metrics``, the lifespan, 404, 405 with its ``Allow`` header, a trailing
    slash redirect) goes to the Starlette app, where the admission routes are declared too
    so they still answer there. uvicorn copies the lifespan's state into every request
    scope itself, so the endpoints find ``scope["state"]`` either way.
    """

    def __init__(self, admission: Mapping[str, ASGIApp], starlette: Starlette) -> None:
        self._admission = dict(admission)
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection (``scope["path"]`` is matched exactly)."""
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._admission.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.starlette(scope, receive, send)


def create_app(settings: AppSettings) -> AdmissionApp:
    """Build the admission server's ASGI app (no I/O until the lifespan starts)."""
    metrics = Metrics()
    metrics.tls_not_after = settings.tls_not_after

    guard = settings.metrics_guard

    async def metrics_endpoint(request: Request) -> Response:
        if guard is not None:
            refused = await guard(request.headers.get("authorization"))
            if refused is not None:
                return Response(
                    refused.body, refused.status, headers=dict(refused.headers), media_type=JSON
                )
        return Response(metrics.render(request.state.snapshots), media_type=CONTENT_TYPE)

    large_bodies = LargeBodies(settings.large_body_bytes)
    bodies = RequestBodies(settings.body_timeout, settings.body_budget_bytes)
    decisions = DecisionLog(settings.log_sink)
    bindings = BindingReviewer(settings.binding_probe)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        large_bodies.start()
        sweeper = asyncio.create_task(bodies.sweep(), name="body-deadlines")
        try:
            async with settings.state() as state:
                yield {"snapshots": state}
        finally:
            sweeper.cancel()

    validate, mutate = (
        AdmissionEndpoint(
            mutating=mutating,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            large_bodies=large_bodies,
            bodies=bodies,
            decisions=decisions,
            bindings=bindings,
        )
        for mutating in (False, True)
    )
    starlette = Starlette(
        routes=[
            Route("/validate", validate, methods=["POST"]),
            Route("/mutate", mutate, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", _readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return AdmissionApp({"/validate": validate, "/mutate": mutate}, starlette)
