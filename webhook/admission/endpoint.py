"""The admission endpoints as raw ASGI: read the body, decode, decide, answer; count and log.

``POST /validate`` and ``POST /mutate`` are the hot path, so they are plain ASGI callables
rather than Starlette request/response functions (``webhook.admission.app`` routes to them
before Starlette's middleware): reading two headers from ``scope`` and sending two messages
avoids building a Request, a Headers view, a State and a Response per review.

Robustness rules (``docs/protocol.md`` §2): the apiserver treats anything but a
2xx with a decodable AdmissionReview as "failed calling webhook", so every request whose
``uid`` can be read gets HTTP 200 and a well-formed review, even when the body is malformed
or spacegate itself fails. Only requests without a readable uid get a 4xx, with a
``metav1.Status`` body naming the problem. The body size is capped while it streams in
(:data:`webhook.admission.review.MAX_BODY_BYTES`); an oversized review is still answered
when its ``uid`` is in its first bytes. A body that stops arriving is refused after
:data:`BODY_TIMEOUT_SECONDS`. Large bodies are read and decided a few at a time, off the
event loop (:class:`LargeBodies`; ``docs/limits.md``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from policy.snapshot import Snapshot
from webhook.admission.bindings import BindingReviewer
from webhook.admission.logs import DecisionLog
from webhook.admission.metrics import Metrics
from webhook.admission.outcomes import Outcome, Outcomes, decide_review, guarded
from webhook.admission.review import (
    API_VERSIONS,
    V1,
    EncodedReply,
    MalformedReview,
    ReviewRequest,
    allow,
    deny,
    encode_review,
    encode_status,
    invalid_reply,
    parse_review,
)
from webhook.state import SnapshotState

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "LARGE_BODY_BYTES",
    "LARGE_BODY_CONCURRENCY",
    "UID_PREFIX_BYTES",
    "AdmissionEndpoint",
    "BodyDeadlines",
    "LargeBodies",
]

JSON: Final = "application/json"

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


class BodyDeadlines:
    """Time out slow body reads with one sweeper task instead of a timer per request.

    ``asyncio.timeout`` costs a timer handle per review, a noticeable part of the whole
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
    receive: Receive, declared: bytes | None, limit: int, deadlines: BodyDeadlines
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


class LargeBodies:
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
        endpoint: AdmissionEndpoint,
        receive: Receive,
        content_length: bytes | None,
        state: SnapshotState,
    ) -> tuple[ReviewRequest, Outcome | None]:
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


class AdmissionEndpoint:
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
        large_bodies: LargeBodies,
        deadlines: BodyDeadlines,
        decisions: DecisionLog,
        bindings: BindingReviewer | None = None,
    ) -> None:
        self.mutating = mutating
        self.name = "mutate" if mutating else "validate"
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies
        self.deadlines = deadlines
        self.decisions = decisions
        self.outcomes = Outcomes(mutating=mutating)
        self.bindings = bindings or BindingReviewer()

    def _answer(self, body: bytes, snapshot: Snapshot) -> tuple[ReviewRequest, Outcome | None]:
        """Decode and decide one body. Raises MalformedReview; a failed decision is answered.

        None instead of an outcome: a RegistrySpaceBinding review, answered by
        :meth:`_answer_binding` on the event loop (it may compute an impact).
        """
        review = parse_review(body)
        try:
            if review.is_namespace:
                return review, guarded(review, snapshot, mutating=self.mutating)
            if review.is_binding:
                return review, None
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
            answered: Outcome | None
            if self.large_bodies.is_large(content_length):
                review, answered = await self.large_bodies.answer(
                    self, receive, content_length, state
                )
            else:
                body = await _read_body(
                    receive, content_length, self.max_body_bytes, self.deadlines
                )
                review, answered = self._answer(body, state.snapshot)
            outcome = (
                answered
                if answered is not None
                else await self._answer_binding(review, state.snapshot)
            )
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

    async def _answer_binding(self, review: ReviewRequest, snapshot: Snapshot) -> Outcome:
        """A RegistrySpaceBinding review: warnings on ``/validate``; ``/mutate`` admits."""
        if self.mutating:
            return self.outcomes.undecided
        try:
            return await self.bindings.answer(review, snapshot)
        except Exception:
            _log.exception(
                "binding review failed",
                extra={"fields": {"uid": review.uid, "endpoint": self.name}},
            )
            # Never blocks by default: a failure to assess a binding change admits it.
            return self.outcomes.undecided

    def _failed(self, review: ReviewRequest) -> Outcome:
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
        return Outcome(None, reply, EncodedReply(reply, mutating=self.mutating), "error", 0)

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
