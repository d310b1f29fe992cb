"""The ASGI application: HTTP endpoints gluing decode, ``policy.decide`` and encode.

``create_app(settings)`` builds the app (:class:`AdmissionApp`: the two admission
endpoints in front of an ordinary Starlette app) with no module-level state: the snapshot
state (a static config, or the live refresher) is opened by the lifespan and closed with
it, and the metrics registry, the decision log and the per-decision reply cache belong to
the app instance.

Robustness rules of the endpoints (``docs/admission-protocol.md`` §3): the apiserver
treats anything but a 2xx with a decodable AdmissionReview as "failed calling webhook",
so every request whose ``uid`` can be read gets HTTP 200 and a well-formed review, even
when the body is malformed or spacegate itself fails. Only requests without a readable
uid get a 4xx, with a ``metav1.Status`` body naming the problem. The body size is
capped while it streams in (:data:`webhook.admission.review.MAX_BODY_BYTES`), so an oversized body
is refused without being buffered; it is still answered with a well-formed review when its
``uid`` can be read from its first bytes (the apiserver writes it first). A body that stops
arriving is refused after :data:`BODY_TIMEOUT_SECONDS`.

Large bodies must not stall small ones: a review over :data:`LARGE_BODY_BYTES` is read,
decoded and decided by at most :data:`LARGE_BODY_CONCURRENCY` worker threads at a time, so
the event loop keeps answering ordinary reviews meanwhile (the interpreter hands it the GIL
every few milliseconds), and the memory held by large reviews is bounded by that count.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypedDict

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from policy.decision import Decision, decide
from policy.namespace_guard import guard_namespace
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, images, pod_spec
from webhook.admission.logs import DecisionLog, LogSink
from webhook.admission.metrics import CONTENT_TYPE, Metrics
from webhook.admission.review import (
    API_VERSIONS,
    MAX_BODY_BYTES,
    V1,
    EncodedReply,
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

__all__ = [
    "AdmissionApp",
    "AppSettings",
    "StateFactory",
    "admit",
    "create_app",
    "decide_review",
    "static_state",
]

StateFactory = Callable[[], AbstractAsyncContextManager[SnapshotState]]

JSON: Final = "application/json"

# Subresources whose requests carry a whole Pod worth checking. ``status`` and the like are
# written by the kubelet and controllers; refusing them (say, after a binding was removed)
# would stop Pods from reporting their state, and they cannot change images anyway.
CHECKED_SUBRESOURCES: Final = frozenset({"", "ephemeralcontainers"})

# The apiserver sends a review in one go and gives up after the webhook's timeoutSeconds
# (10 s by default, 30 s at most). A body still incomplete after 10 s comes from a broken
# or hostile client; answering 408 frees the connection instead of waiting forever
# (uvicorn itself has no body-read timeout).
BODY_TIMEOUT_SECONDS: Final = 10.0

# Bodies above this size (or of unknown size) are decoded and decided off the event loop, by
# at most LARGE_BODY_CONCURRENCY threads at once. Ordinary reviews are a few kilobytes.
LARGE_BODY_BYTES: Final = 256 * 1024
LARGE_BODY_CONCURRENCY: Final = 2
# How much of an oversized body is read to find its uid (the apiserver writes it first).
UID_PREFIX_BYTES: Final = 16 * 1024

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AppSettings:
    """What ``create_app`` needs.

    ``state`` opens the snapshot state for the app's lifetime; use :func:`static_state`
    for a fixed snapshot. ``max_body_bytes`` bounds one review body, and
    ``body_timeout`` the seconds a client may take to send it once its headers are in.
    """

    state: StateFactory
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT_SECONDS
    large_body_bytes: int = LARGE_BODY_BYTES
    # Unix time the serving certificate expires, read at scrape time (None: no gauge value).
    tls_not_after: Callable[[], float] | None = None
    # Where decision lines go (``spacegate serve`` passes the sink of its log
    # configuration); None: they are ordinary records of the ``spacegate.decision`` logger.
    log_sink: LogSink | None = None


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


def decide_review(review: ReviewRequest, snapshot: Snapshot) -> Decision | None:
    """The policy decision on a decoded review; None when there is nothing to decide.

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
        return None
    try:
        ref = pod_spec(review.object, review.kind)
    except WorkloadError as exc:
        raise MalformedReview(
            f"request.object: {exc}",
            uid=review.uid,
            api_version=review.api_version,
            kind=review.kind,
            operation=review.operation,
        ) from None
    if ref is None:  # pragma: no cover - is_workload guarantees a known kind
        return None
    return decide(
        snapshot,
        review.namespace,
        ref.spec,
        pointer=ref.pointer,
        kind=review.kind,
        operation=review.operation,
        sub_resource=review.sub_resource,
        unchanged=_images_before(review),
    )


def _images_before(review: ReviewRequest) -> frozenset[str]:
    """The images of ``oldObject`` on UPDATE: those are not judged again (see ``decide``).

    A malformed old object contributes nothing, so every image is then checked.
    """
    if review.old_object is None:
        return frozenset()
    try:
        old = pod_spec(review.old_object, review.kind)
    except WorkloadError:
        return frozenset()
    return frozenset() if old is None else images(old.spec)


def admit(
    review: ReviewRequest, snapshot: Snapshot, *, mutating: bool
) -> tuple[Reply, Decision | None]:
    """The reply to a decoded review, and the policy decision behind it if one was taken.

    See :func:`decide_review` for what is decided; without a decision the review is
    allowed untouched.
    """
    decision = decide_review(review, snapshot)
    if decision is None:
        return _ALLOWED, None
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


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one endpoint makes of one decision: the reply, and the facts it logs."""

    decision: Decision | None
    reply: Reply
    encoded: EncodedReply
    result: str
    refused: int

    @classmethod
    def of(cls, decision: Decision | None, *, mutating: bool) -> _Outcome:
        """The outcome of ``decision`` (None: nothing decided, allowed untouched)."""
        reply = _ALLOWED if decision is None else reply_for(decision, mutating=mutating)
        refused = 0 if decision is None else sum(c.refused for c in decision.containers)
        return cls(
            decision,
            reply,
            EncodedReply(reply, mutating=mutating),
            _result(reply, decision, mutating=mutating),
            refused,
        )


# Outcomes remembered per endpoint; dropped whole when full (as policy's decision memo).
MAX_OUTCOMES: Final = 8_192


class _Outcomes:
    """One endpoint's outcome of each decision, worked out once per decision.

    ``policy.decide`` memoizes decisions per snapshot, so a busy cluster gets the same
    Decision objects over and over; translating one into a reply, a result label and a
    refused count each time cost as much as the memoized decision itself. Entries are
    keyed by ``id()`` because hashing a Decision walks all its fields; an entry holds its
    decision, so that id cannot be reused by another object while the entry exists.

    Only memoized decisions are remembered (the others are bounded by nothing but the
    review), and the whole table belongs to the snapshot it was computed from: it is
    dropped when another snapshot is served, as the decisions it keeps alive are.
    """

    def __init__(self, *, mutating: bool) -> None:
        self.mutating = mutating
        self.undecided = _Outcome.of(None, mutating=mutating)
        self._by_id: dict[int, _Outcome] = {}
        self._snapshot: Snapshot | None = None

    def get(self, decision: Decision | None, snapshot: Snapshot) -> _Outcome:
        """The outcome of ``decision`` (None: nothing was decided, allowed untouched)."""
        if decision is None:
            return self.undecided
        if not decision.memoized:
            return _Outcome.of(decision, mutating=self.mutating)
        if snapshot is not self._snapshot:
            self._by_id = {}
            self._snapshot = snapshot
        outcome = self._by_id.get(id(decision))
        if outcome is not None and outcome.decision is decision:
            return outcome
        outcome = _Outcome.of(decision, mutating=self.mutating)
        by_id = self._by_id
        if len(by_id) >= MAX_OUTCOMES:
            by_id.clear()
        by_id[id(decision)] = outcome
        return outcome


def _guarded(review: ReviewRequest, snapshot: Snapshot, *, mutating: bool) -> _Outcome:
    """The namespace guard's answer to a Namespace review (``/validate`` only judges)."""
    if mutating:
        return _Outcome(None, _ALLOWED, _ENCODED_ALLOWED[mutating], "allowed", 0)
    old = review.old_object
    verdict = guard_namespace(
        snapshot.config,
        operation=review.operation,
        name=review.name,
        labels=_labels(review.object),
        old_labels=_labels(old),
        user=review.user,
        groups=review.groups,
    )
    if verdict.allowed:
        return _Outcome(None, _ALLOWED, _ENCODED_ALLOWED[mutating], "allowed", 0)
    reply = deny(verdict.message)
    return _Outcome(None, reply, EncodedReply(reply, mutating=False), "denied", 1)


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    meta = obj.get("metadata") if obj is not None else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else None


_ENCODED_ALLOWED: Final = {m: EncodedReply(_ALLOWED, mutating=m) for m in (False, True)}


# --------------------------------------------------------------------------- transport
#
# The two admission endpoints are plain ASGI callables rather than Starlette
# request/response functions, reached before Starlette's middleware and router
# (:class:`AdmissionApp`): they are the hot path (the benchmark's ceiling is a bare
# Starlette endpoint), and reading two headers from ``scope`` and sending two messages
# avoids building a Request, a Headers view, a State and a Response per review. Everything
# else in the app is ordinary Starlette.


class _Disconnected(Exception):
    """The client went away before sending the whole body: nobody to answer."""


_JSON_CONTENT_TYPE: Final = (b"content-type", JSON.encode())


def _request_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    content_type = content_length = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            content_length = value
    return content_type, content_length


def _check_content_type(content_type: bytes | None) -> None:
    if content_type is None:
        raise MalformedReview("missing Content-Type: expected application/json", code=415)
    if content_type.partition(b";")[0].strip().lower() != b"application/json":
        shown = content_type[:100].decode("latin-1")
        raise MalformedReview(
            f"Content-Type {shown!r} is not supported: expected application/json", code=415
        )


class _BodyDeadlines:
    """Time out slow body reads with one sweeper task instead of a timer per request.

    ``asyncio.timeout`` costs a timer handle per review, about a tenth of the whole
    server-side cost of one; registering the reading task in a dict costs next to nothing,
    and a sweeper owned by the lifespan cancels the few reads that overstay. The reader
    turns that cancellation into a 408 (see :func:`_read_body`).

    The loop is remembered when the sweeper starts: ``asyncio.current_task()`` and
    ``asyncio.get_running_loop()`` without it look the running loop up and, on Python
    3.11, make a ``getpid`` system call each time, twice per review for nothing.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reading: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def sweep(self) -> None:
        """Cancel reads past their deadline, checking a few times per timeout."""
        loop = self.loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(min(1.0, self.timeout / 4))
                now = loop.time()
                for task, deadline in list(self.reading.items()):
                    if deadline <= now and task not in self.expired:
                        self.expired.add(task)
                        task.cancel()
        finally:
            self.loop = None  # an app served again later runs on another loop


_PREFIX_UID: Final = re.compile(rb'"request"\s*:\s*\{\s*"uid"\s*:\s*"([!#-\[\]-~]{1,128})"')
_PREFIX_API_VERSION: Final = re.compile(rb'"apiVersion"\s*:\s*"(admission\.k8s\.io/v1(?:beta1)?)"')


def _too_large(limit: int, size: int | None, prefix: bytes) -> MalformedReview:
    """The refusal of a body over the limit, answerable as a review if its uid is in front.

    The apiserver serializes ``kind``, ``apiVersion`` and then ``request`` with ``uid`` as its
    first field, so the first bytes of a genuine review name its uid; a denial (``/validate``)
    or an unpatched admission (``/mutate``) can then be sent instead of a bare 413, which
    would hand the verdict to ``failurePolicy``.
    """
    what = f"{size} bytes" if size is not None else "more bytes"
    message = (
        f"the AdmissionReview has {what}, over spacegate's limit of {limit} bytes for one "
        "review (see docs/limits.md); it was not checked"
    )
    uid = _PREFIX_UID.search(prefix)
    if uid is None:
        return MalformedReview(message, code=413)
    version = _PREFIX_API_VERSION.search(prefix, 0, uid.start())
    api_version = version.group(1).decode("ascii") if version is not None else V1
    if api_version not in API_VERSIONS:  # pragma: no cover - the pattern allows only these
        api_version = V1
    return MalformedReview(
        message, code=413, uid=uid.group(1).decode("ascii"), api_version=api_version
    )


async def _read_body(
    receive: Receive, declared: bytes | None, limit: int, deadlines: _BodyDeadlines
) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused after reading only its first
    :data:`UID_PREFIX_BYTES` (to find the uid); a chunked body is counted as it streams in,
    and reading stops at the first chunk over the limit (the server discards whatever the
    client still sends). A body not complete within
    ``deadlines.timeout`` seconds is refused with 408, and that includes a client that
    sends its headers and then nothing: the read is registered before the first
    ``receive()``, whose wait could otherwise last forever.
    """
    size_declared: int | None = None
    if declared is not None:
        if not declared.isdigit():
            raise MalformedReview(f"invalid Content-Length {declared[:40].decode('latin-1')!r}")
        size_declared = int(declared)
    over = size_declared is not None and size_declared > limit
    chunks: list[bytes] = []
    size = 0
    loop = deadlines.loop or asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    deadlines.reading[task] = loop.time() + deadlines.timeout
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                size += len(chunk)
                if size <= limit or size - len(chunk) < UID_PREFIX_BYTES:
                    chunks.append(chunk)
                if size > limit or (over and (size >= UID_PREFIX_BYTES or not more)):
                    prefix = b"".join(chunks)[:UID_PREFIX_BYTES]
                    raise _too_large(limit, size_declared, prefix)
            if not more:
                break
    except asyncio.CancelledError:
        if task not in deadlines.expired:
            raise
        deadlines.expired.discard(task)
        task.uncancel()
        raise MalformedReview(
            f"request body not received within {deadlines.timeout:g} s", code=408
        ) from None
    finally:
        del deadlines.reading[task]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _LargeBodies:
    """Reviews over :data:`LARGE_BODY_BYTES`: read and decided a few at a time, off the loop.

    A permit is taken before the body is read, so waiting reviews stay in the server's
    socket buffers (uvicorn stops reading a request the app does not consume) rather than
    in memory; decoding and deciding run in a worker thread, so the event loop keeps
    answering ordinary reviews while a multi-megabyte one is parsed.
    """

    def __init__(self, threshold: int, concurrency: int = LARGE_BODY_CONCURRENCY) -> None:
        self.threshold = threshold
        self.concurrency = concurrency
        self._permits: asyncio.Semaphore | None = None

    def start(self) -> None:
        """Fresh permits for a serving loop (the lifespan calls this at start-up)."""
        self._permits = asyncio.Semaphore(self.concurrency)

    def is_large(self, content_length: bytes | None) -> bool:
        """A declared length over the threshold, or none declared (a chunked body)."""
        if content_length is None:
            return True
        return content_length.isdigit() and int(content_length) > self.threshold

    async def answer(
        self,
        endpoint: _AdmissionEndpoint,
        receive: Receive,
        content_length: bytes | None,
        state: SnapshotState,
    ) -> tuple[ReviewRequest, _Outcome]:
        """Read, decode and decide one large review under a permit."""
        if self._permits is None:  # served without a lifespan (some tests)
            self.start()
        assert self._permits is not None
        async with self._permits:
            body = await _read_body(
                receive, content_length, endpoint.max_body_bytes, endpoint.deadlines
            )
            return await asyncio.to_thread(endpoint._answer, body, state.snapshot)


async def _send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _AdmissionEndpoint:
    """``POST /validate`` or ``POST /mutate``: decode, decide, encode; then count and log.

    The reply is sent before the metrics and the decision log line are written, so their
    cost is not part of the apiserver's wait.
    """

    def __init__(
        self,
        *,
        mutating: bool,
        metrics: Metrics,
        max_body_bytes: int,
        large_bodies: _LargeBodies,
        deadlines: _BodyDeadlines,
        decisions: DecisionLog,
    ) -> None:
        self.mutating = mutating
        self.name = "mutate" if mutating else "validate"
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies
        self.deadlines = deadlines
        self.decisions = decisions
        self.outcomes = _Outcomes(mutating=mutating)

    def _answer(self, body: bytes, snapshot: Snapshot) -> tuple[ReviewRequest, _Outcome]:
        """Decode and decide one body. Raises MalformedReview; a failed decision is answered."""
        review = parse_review(body)
        try:
            if review.is_namespace:
                return review, _guarded(review, snapshot, mutating=self.mutating)
            return review, self.outcomes.get(decide_review(review, snapshot), snapshot)
        except MalformedReview:
            raise
        except Exception:
            _log.exception(
                "decision failed", extra={"fields": {"uid": review.uid, "endpoint": self.name}}
            )
            return review, self._failed(review)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one review (see the class docstring)."""
        started = time.perf_counter()
        try:
            content_type, content_length = _request_headers(scope)
            _check_content_type(content_type)
            state: SnapshotState = scope["state"]["snapshots"]
            if self.large_bodies.is_large(content_length):
                review, outcome = await self.large_bodies.answer(
                    self, receive, content_length, state
                )
            else:
                body = await _read_body(
                    receive, content_length, self.max_body_bytes, self.deadlines
                )
                review, outcome = self._answer(body, state.snapshot)
        except MalformedReview as error:
            await self._malformed(send, error, started)
            return
        except _Disconnected:
            return
        reply = outcome.reply
        body = outcome.encoded.encode(review.uid, review.api_version)
        seconds = time.perf_counter() - started
        await _send_json(send, 200, body)
        self.metrics.observe(self.name, review.kind, review.operation, outcome.result, seconds)
        if outcome.refused and not self.mutating and outcome.decision is not None:
            for source, count in Counter(
                c.noun for c in outcome.decision.containers if c.refused
            ).items():
                self.metrics.refused_images(source, count)
        if not self.decisions.enabled:
            return
        decision = outcome.decision
        # The decision log line: who, what, the verdict, how long; never the object.
        fields: dict[str, Any] = {
            "uid": review.uid,
            "endpoint": self.name,
            "namespace": review.namespace,
            "kind": review.kind,
            "name": review.name,
            "operation": review.operation,
            "allowed": reply.allowed,
            "result": outcome.result,
            "duration_ms": round(seconds * 1000.0, 3),
            "dry_run": review.dry_run,
            "mode": decision.mode if decision is not None else None,
            "refused": outcome.refused,
            "patched": bool(reply.patch),
        }
        if review.sub_resource:
            fields["sub_resource"] = review.sub_resource
        if decision is not None:
            fields["workspace"] = decision.workspace
        if not reply.allowed:
            fields["reason"] = reply.message
        self.decisions.write(fields)

    def _failed(self, review: ReviewRequest) -> _Outcome:
        """When spacegate itself failed: deny on validate, admit without a patch on mutate."""
        if self.mutating:
            reply = allow()
        else:
            reply = deny(
                f"spacegate failed to check this request (internal error, logged with "
                f"uid {review.uid})",
                code=500,
                reason="InternalError",
            )
        return _Outcome(None, reply, EncodedReply(reply, mutating=self.mutating), "error", 0)

    async def _malformed(self, send: Send, error: MalformedReview, started: float) -> None:
        """A 4xx Status without a uid; a well-formed review (HTTP 200) with one."""
        if error.uid is None:
            status, body = error.code, encode_status(error.code, error.message)
        else:
            status = 200
            body = encode_review(
                uid=error.uid,
                reply=invalid_reply(error, mutating=self.mutating),
                mutating=self.mutating,
                api_version=error.api_version,
            )
        seconds = time.perf_counter() - started
        await _send_json(send, status, body)
        self.metrics.observe(
            endpoint=self.name,
            kind=error.kind,
            operation=error.operation,
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
    middleware and its router (a regex match per route), which took about 6 µs of the
    ~60 µs a review cost the server. Everything else (``/healthz``,
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

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(request.state.snapshots), media_type=CONTENT_TYPE)

    large_bodies = _LargeBodies(settings.large_body_bytes)
    deadlines = _BodyDeadlines(settings.body_timeout)
    decisions = DecisionLog(settings.log_sink)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        large_bodies.start()
        sweeper = asyncio.create_task(deadlines.sweep(), name="body-deadlines")
        try:
            async with settings.state() as state:
                yield {"snapshots": state}
        finally:
            sweeper.cancel()

    validate, mutate = (
        _AdmissionEndpoint(
            mutating=mutating,
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
            large_bodies=large_bodies,
            deadlines=deadlines,
            decisions=decisions,
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
