"""What one endpoint answers to one review: the decision, the reply, and what is logged.

``policy.decide`` takes the decision; this module decides *whether* there is one (only
CREATE and UPDATE of workloads, outside status-like subresources), turns it into an
endpoint's reply with the labels the metrics and the decision log use, and remembers that
translation per decision (:class:`Outcomes`), since the same memoized decisions come back
over and over. Namespace reviews go to the namespace guard instead (``policy.namespace_guard``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from policy.decision import Decision, decide
from policy.namespace_guard import guard_namespace
from policy.snapshot import Snapshot
from policy.workload import WorkloadError, images, pod_spec
from webhook.admission.review import (
    EncodedReply,
    MalformedReview,
    Reply,
    ReviewRequest,
    allow,
    deny,
    reply_for,
)

__all__ = [
    "CHECKED_SUBRESOURCES",
    "MAX_OUTCOMES",
    "Outcome",
    "Outcomes",
    "decide_review",
    "guarded",
]

# Subresources whose requests carry a whole Pod worth checking. ``status`` and the like are
# written by the kubelet and controllers; refusing them (say, after a binding was removed)
# would stop Pods from reporting their state, and they cannot change images anyway.
CHECKED_SUBRESOURCES: Final = frozenset({"", "ephemeralcontainers"})


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
class Outcome:
    """What one endpoint makes of one decision: the reply, and the facts it logs."""

    decision: Decision | None
    reply: Reply
    encoded: EncodedReply
    result: str
    refused: int

    @classmethod
    def of(cls, decision: Decision | None, *, mutating: bool) -> Outcome:
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


class Outcomes:
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
        self.undecided = Outcome.of(None, mutating=mutating)
        self._by_id: dict[int, Outcome] = {}
        self._snapshot: Snapshot | None = None

    def get(self, decision: Decision | None, snapshot: Snapshot) -> Outcome:
        """The outcome of ``decision`` (None: nothing was decided, allowed untouched)."""
        if decision is None:
            return self.undecided
        if not decision.memoized:
            return Outcome.of(decision, mutating=self.mutating)
        if snapshot is not self._snapshot:
            self._by_id = {}
            self._snapshot = snapshot
        outcome = self._by_id.get(id(decision))
        if outcome is not None and outcome.decision is decision:
            return outcome
        outcome = Outcome.of(decision, mutating=self.mutating)
        by_id = self._by_id
        if len(by_id) >= MAX_OUTCOMES:
            by_id.clear()
        by_id[id(decision)] = outcome
        return outcome


def guarded(review: ReviewRequest, snapshot: Snapshot, *, mutating: bool) -> Outcome:
    """The namespace guard's answer to a Namespace review (``/validate`` only judges).

    Reviews of ``namespaces/status`` and ``namespaces/finalize`` are judged alike: their
    ``object`` and ``oldObject`` are whole Namespaces, and the apiserver keeps the labels
    they carry, so their label changes are what the guard compares.
    """
    if mutating:
        return Outcome(None, _ALLOWED, _ENCODED_ALLOWED[mutating], "allowed", 0)
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
        return Outcome(None, _ALLOWED, _ENCODED_ALLOWED[mutating], "allowed", 0)
    reply = deny(verdict.message)
    return Outcome(None, reply, EncodedReply(reply, mutating=False), "denied", 1)


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    meta = obj.get("metadata") if obj is not None else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else None


_ENCODED_ALLOWED: Final = {m: EncodedReply(_ALLOWED, mutating=m) for m in (False, True)}
