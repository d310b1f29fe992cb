"""The admission endpoints as raw ASGI: read the body, decode, decide, answer; count and log.

``POST /validate`` and ``POST /mutate`` are the hot path, so they are plain ASGI callables
rather than Starlette request/response functions (``webhook.admission.app`` routes to them
before Starlette's middleware): reading two headers from ``scope`` and sending two messages
avoids building a Request, a Headers view, a State and a Response per review.

Robustness rules (``docs/protocol.md`` §2): the apiserver treats anything but a
2xx with a decodable AdmissionReview as "failed calling webhook", so every request whose
``uid`` can be read gets HTTP 200 and a well-formed review, even when the body is malformed
or spacegate itself fails. Only requests without a readable uid get a 4xx (or 5xx), with a
``metav1.Status`` body naming the problem. How a body is read (its cap, its deadline, the
memory all bodies share, the slots large ones are decided in) is
``webhook.admission.bodies``; an oversized review is still answered when its ``uid`` is in
its first bytes (``docs/limits.md``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from policy.snapshot import Snapshot
from webhook.admission import freshness
from webhook.admission.bindings import BindingReviewer
from webhook.admission.bodies import (
    Disconnected,
    LargeBodies,
    PendingRequest,
    RequestBodies,
    read_body,
)
from webhook.admission.logs import DecisionLog
from webhook.admission.metrics import Metrics
from webhook.admission.outcomes import Outcome, Outcomes, decide_review, guarded
from webhook.admission.review import (
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

__all__ = ["JSON", "AdmissionEndpoint"]

JSON: Final = "application/json"

_log = logging.getLogger(__name__)

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
        bodies: RequestBodies,
        decisions: DecisionLog,
        bindings: BindingReviewer | None = None,
        freshness_budget: float = freshness.BUDGET,
    ) -> None:
        self.mutating = mutating
        self.name = "mutate" if mutating else "validate"
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.large_bodies = large_bodies
        self.bodies = bodies
        self.decisions = decisions
        self.outcomes = Outcomes(mutating=mutating)
        self.bindings = bindings or BindingReviewer()
        self.freshness_budget = freshness_budget

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
        bodies = self.bodies
        request = bodies.begin()  # the request's deadline runs from here
        try:
            content_type, content_length = _request_headers(scope)
            _check_content_type(content_type)
            state: SnapshotState = scope["state"]["snapshots"]
            body = await read_body(receive, content_length, self.max_body_bytes, bodies, request)
            answered: Outcome | None
            snapshot = state.snapshot
            if len(body) > self.large_bodies.threshold:
                review, answered = await self._answer_large(body, snapshot, request)
            else:
                bodies.end(request)
                review, answered = self._answer(body, snapshot)
            outcome = (
                answered if answered is not None else await self._answer_binding(review, snapshot)
            )
            if not self.mutating and freshness.leans_on_watches(outcome.decision):
                wait = freshness.budget(scope.get("query_string", b""), self.freshness_budget)
                outcome = await self._current(body, state, snapshot, outcome, wait)
        except MalformedReview as error:
            bodies.end(request)
            await self._malformed(send, error, started)
            return
        except Disconnected:
            bodies.end(request)
            return
        except BaseException:
            bodies.end(request)
            raise
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

    async def _answer_large(
        self, body: bytes, snapshot: Snapshot, request: PendingRequest
    ) -> tuple[ReviewRequest, Outcome | None]:
        """Decode and decide a large body in a worker thread, once a slot is free."""
        permits = await self.large_bodies.slot(self.bodies, request)
        try:
            return await asyncio.to_thread(self._answer, body, snapshot)
        finally:
            permits.release()
            self.bodies.end(request)

    async def _current(
        self, body: bytes, state: SnapshotState, snapshot: Snapshot, outcome: Outcome, wait: float
    ) -> Outcome:
        """An allow resting on watch-fed state, given only from current state
        (``webhook.admission.freshness``): wait for it, decide again on a newer snapshot,
        or refuse for a retry."""
        reasons = await state.freshness.wait_current(wait)
        if reasons:
            assert outcome.decision is not None  # leans_on_watches holds
            return freshness.not_current_outcome(outcome.decision, reasons)
        if state.snapshot is snapshot:
            return outcome
        _, again = await asyncio.to_thread(self._answer, body, state.snapshot)
        return again if again is not None else outcome

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
