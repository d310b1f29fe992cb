"""The ASGI application: HTTP endpoints gluing decode, ``policy.decide`` and encode.

``create_app(settings)`` builds a Starlette app with no module-level state: the snapshot
state (a static config, or the live refresher) is opened by the lifespan and closed with
it, and the metrics registry belongs to the app instance.

Robustness rules of the endpoints (``docs/admission-protocol.md`` §3): the apiserver
treats anything but a 2xx with a decodable AdmissionReview as "failed calling webhook",
so every request whose ``uid`` can be read gets HTTP 200 and a well-formed review, even
when the body is malformed or spacegate itself fails. Only requests without a readable
uid get a 4xx, with a ``metav1.Status`` body naming the problem. The body size is
capped while it streams in (:data:`webhook.review.MAX_BODY_BYTES`), so an oversized body
is refused without being buffered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from policy.decision import Decision, decide
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, pod_spec
from webhook.logs import DECISION_LOGGER
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.review import (
    MAX_BODY_BYTES,
    MalformedReview,
    Reply,
    ReviewRequest,
    allow,
    deny,
    encode_review,
    encode_status,
    invalid_reply,
    parse_review,
    reply_for,
)
from webhook.state import SnapshotState, StaticState

__all__ = ["AppSettings", "StateFactory", "admit", "create_app", "static_state"]

StateFactory = Callable[[], AbstractAsyncContextManager[SnapshotState]]

JSON: Final = "application/json"

# Subresources whose requests carry a whole Pod worth checking. ``status`` and the like are
# written by the kubelet and controllers; refusing them (say, after a binding was removed)
# would stop Pods from reporting their state, and they cannot change images anyway.
CHECKED_SUBRESOURCES: Final = frozenset({"", "ephemeralcontainers"})

_decision_log = logging.getLogger(DECISION_LOGGER)
_log = logging.getLogger("spacegate.webhook")


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What ``create_app`` needs.

    ``state`` opens the snapshot state for the app's lifetime; use :func:`static_state`
    for a fixed snapshot. ``max_body_bytes`` bounds one review body.
    """

    state: StateFactory
    max_body_bytes: int = MAX_BODY_BYTES


def static_state(snapshot: Snapshot) -> StateFactory:
    """A state factory serving one fixed snapshot (offline config, demos, tests)."""

    @asynccontextmanager
    async def open_state() -> AsyncIterator[SnapshotState]:
        yield StaticState(snapshot)

    return open_state


class LifespanState(TypedDict):
    """What the lifespan hands to every request as ``request.state``."""

    snapshots: SnapshotState


# --------------------------------------------------------------------------- deciding


def admit(
    review: ReviewRequest, snapshot: Snapshot, *, mutating: bool
) -> tuple[Reply, Decision | None]:
    """The reply to a decoded review, and the policy decision behind it if one was taken.

    Nothing is admitted by DELETE or CONNECT, non-workload kinds are not spacegate's
    business, and status-like subresources are left alone (:data:`CHECKED_SUBRESOURCES`):
    all of those are allowed without a patch. A workload whose pod spec is malformed
    raises :class:`MalformedReview` so it is answered like any other bad request.
    """
    if (
        review.object is None
        or not review.is_workload
        or review.sub_resource not in CHECKED_SUBRESOURCES
    ):
        return _ALLOWED, None
    try:
        ref = pod_spec(review.object, review.kind)
    except WorkloadError as exc:
        raise MalformedReview(
            f"request.object: {exc}", uid=review.uid, api_version=review.api_version
        ) from None
    if ref is None:  # pragma: no cover - is_workload guarantees a known kind
        return _ALLOWED, None
    decision = decide(
        snapshot,
        review.namespace,
        ref.spec,
        pointer=ref.pointer,
        kind=review.kind,
        operation=review.operation,
        sub_resource=review.sub_resource,
    )
    return reply_for(decision, mutating=mutating), decision


_ALLOWED: Final = allow()


def _result(reply: Reply, decision: Decision | None, *, mutating: bool) -> str:
    """The ``result`` label: what the endpoint did (``/mutate`` never denies or warns)."""
    if decision is not None and decision.exempt:
        return "exempt"
    if not reply.allowed:
        return "denied"
    if reply.patch:
        return "patched"
    if mutating:
        return "allowed"
    if decision is not None and any(c.refused for c in decision.containers):
        return "warned"
    return "allowed"


# --------------------------------------------------------------------------- transport


class _BodyTooLarge(MalformedReview):
    pass


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        raise MalformedReview("missing Content-Type: expected application/json", code=415)
    if content_type.partition(";")[0].strip().lower() != JSON:
        raise MalformedReview(
            f"Content-Type {content_type[:100]!r} is not supported: expected application/json",
            code=415,
        )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes."""
    too_large = f"request body exceeds the {limit} byte limit for one AdmissionReview"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedReview(f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise _BodyTooLarge(too_large, code=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(too_large, code=413)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _AdmissionEndpoint:
    """``POST /validate`` or ``POST /mutate``: decode, decide, encode, count, log."""

    def __init__(self, *, mutating: bool, metrics: Metrics, max_body_bytes: int) -> None:
        self.mutating = mutating
        self.name = "mutate" if mutating else "validate"
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            _check_content_type(request)
            body = await _read_body(request, self.max_body_bytes)
            review = parse_review(body)
        except MalformedReview as error:
            return self._malformed(error, started, None)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read an answer
        try:
            state: SnapshotState = request.state.snapshots
            reply, decision = admit(review, state.snapshot, mutating=self.mutating)
        except MalformedReview as error:
            return self._malformed(error, started, review)
        except Exception:
            _log.exception(
                "decision failed",
                extra={"fields": {"uid": review.uid, "endpoint": self.name}},
            )
            reply = (
                allow()
                if self.mutating
                else deny(
                    f"spacegate failed to check this request (internal error, logged with "
                    f"uid {review.uid})",
                    code=500,
                    reason="InternalError",
                )
            )
            return self._answer(review, reply, None, started, result="error")
        result = _result(reply, decision, mutating=self.mutating)
        return self._answer(review, reply, decision, started, result=result)

    def _answer(
        self,
        review: ReviewRequest,
        reply: Reply,
        decision: Decision | None,
        started: float,
        *,
        result: str,
    ) -> Response:
        body = encode_review(
            uid=review.uid, reply=reply, mutating=self.mutating, api_version=review.api_version
        )
        seconds = time.perf_counter() - started
        self.metrics.observe(
            endpoint=self.name,
            kind=review.kind,
            operation=review.operation,
            result=result,
            seconds=seconds,
        )
        if _decision_log.isEnabledFor(logging.INFO):
            _decision_log.info(
                "admission decision",
                extra={"fields": self._fields(review, reply, decision, seconds, result)},
            )
        return Response(body, media_type=JSON)

    def _fields(
        self,
        review: ReviewRequest,
        reply: Reply,
        decision: Decision | None,
        seconds: float,
        result: str,
    ) -> Mapping[str, Any]:
        fields: dict[str, Any] = {
            "uid": review.uid,
            "endpoint": self.name,
            "namespace": review.namespace,
            "kind": review.kind,
            "name": review.name,
            "operation": review.operation,
            "allowed": reply.allowed,
            "result": result,
            "duration_ms": round(seconds * 1000.0, 3),
            "dry_run": review.dry_run,
            "mode": decision.mode if decision is not None else None,
            "refused": sum(c.refused for c in decision.containers) if decision else 0,
            "patched": bool(reply.patch),
        }
        if review.sub_resource:
            fields["sub_resource"] = review.sub_resource
        if decision is not None:
            fields["workspace"] = decision.workspace
        if not reply.allowed:
            fields["reason"] = reply.message
        return fields

    def _malformed(
        self, error: MalformedReview, started: float, review: ReviewRequest | None
    ) -> Response:
        seconds = time.perf_counter() - started
        self.metrics.observe(
            endpoint=self.name,
            kind=review.kind if review else "",
            operation=review.operation if review else "",
            result="invalid",
            seconds=seconds,
        )
        _log.warning(
            "invalid admission review",
            extra={
                "fields": {
                    "endpoint": self.name,
                    "uid": error.uid,
                    "code": error.code,
                    "error": error.message,
                }
            },
        )
        if error.uid is None:
            return Response(encode_status(error.code, error.message), error.code, media_type=JSON)
        body = encode_review(
            uid=error.uid,
            reply=invalid_reply(error, mutating=self.mutating),
            mutating=self.mutating,
            api_version=error.api_version,
        )
        return Response(body, media_type=JSON)


# --------------------------------------------------------------------------- health & metrics


async def _healthz(request: Request) -> Response:
    """The process is alive and its event loop answers."""
    return Response(b"ok\n", media_type="text/plain")


async def _readyz(request: Request) -> Response:
    """Ready when a snapshot is loaded and fresh enough (the state decides)."""
    state: SnapshotState = request.state.snapshots
    ready, reason = state.readiness()
    body = orjson.dumps(
        {
            "ready": ready,
            "reason": reason,
            "snapshotVersion": state.snapshot.version,
            "snapshotAgeSeconds": round(state.age_seconds(), 3),
        }
    )
    return Response(body, 200 if ready else 503, media_type=JSON)


def create_app(settings: AppSettings) -> Starlette:
    """Build the admission server's ASGI app (no I/O until the lifespan starts)."""
    metrics = Metrics()

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(request.state.snapshots), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        async with settings.state() as state:
            yield {"snapshots": state}

    validate = _AdmissionEndpoint(
        mutating=False, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    mutate = _AdmissionEndpoint(
        mutating=True, metrics=metrics, max_body_bytes=settings.max_body_bytes
    )
    return Starlette(
        routes=[
            Route("/validate", validate.handle, methods=["POST"]),
            Route("/mutate", mutate.handle, methods=["POST"]),
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/readyz", _readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
