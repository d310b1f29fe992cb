"""Which allows rest on watch-fed state, and the refusal when that state is not current.

A namespace's workspace and mode come from its labels, and RegistrySpaceBinding objects from
the cluster: both reach a replica by watch, and a broken watch misses changes silently
(``webhook.live.freshness``). An allow that rests on them must not be given from a state
that is not current, or a binding deleted while the watch was broken would still admit its
private images. The rule (``docs/decisions.md``):

- an allow rests on watch-fed state when an image was allowed because its private space is
  bound to the namespace's workspace (rule "bound") or its registry is integrated by that
  workspace ("workspace-registry"), or when a refused image was let through by the mode
  (``warn``/``audit``: a namespace's mode label may have changed to ``enforce``);
- such an allow waits (:data:`BUDGET` seconds at most, and at most 40% of the timeout the
  apiserver gives the call, ``?timeout=5s``: :func:`budget`) for the sources to be current
  and is then decided again on the current state;
  still not current, it is refused with :func:`not_current_outcome`, a 503 that says to
  retry;
- refusals, public images, Docker Registry images, exempt namespaces and reviews that
  decide nothing never wait: what needs no tenant state is never locked out.

The mutating webhook is not gated: its one change is the namespace's own pull Secret, which
any Pod of that namespace may name itself, so injecting it from a state that is not current
grants nothing; what may run is the validating webhook's to say, and it is gated.
"""

from __future__ import annotations

import re
from typing import Final

from policy.decision import Decision
from webhook.admission.outcomes import Outcome
from webhook.admission.review import EncodedReply, deny

__all__ = ["BUDGET", "RESULT", "budget", "leans_on_watches", "not_current_outcome"]

# Seconds a review may wait for a watch-fed source to catch up: a reconnect and a relist
# take milliseconds to a second, and the chart's webhook timeout is 5 s.
BUDGET: Final = 2.0
# The ``result`` label of such a refusal in metrics and the decision log.
RESULT: Final = "not-current"

# Of the apiserver's own timeout for the call, the share a review may spend waiting: the
# rest is for deciding and answering before the apiserver gives up (and fails closed).
TIMEOUT_SHARE: Final = 0.4
_TIMEOUT = re.compile(rb"(?:^|&)timeout=(\d{1,3}(?:\.\d{1,3})?)s(?:&|$)")

_TENANT_RULES: Final = frozenset({"bound", "workspace-registry"})


def budget(query_string: bytes, default: float = BUDGET) -> float:
    """Seconds a review may wait: ``default``, or less when the apiserver's ``timeout``
    query parameter (``timeout=5s``, what it adds from ``timeoutSeconds``) leaves less."""
    found = _TIMEOUT.search(query_string)
    if found is None:
        return default
    return min(default, float(found.group(1)) * TIMEOUT_SHARE)


def leans_on_watches(decision: Decision | None) -> bool:
    """Whether this allow rests on watch-fed state (see the module docstring)."""
    if decision is None or not decision.allowed or decision.exempt:
        return False
    return any(c.refused or (c.rule in _TENANT_RULES) for c in decision.containers)


def not_current_outcome(decision: Decision, reasons: tuple[str, ...]) -> Outcome:
    """The refusal of an allow whose state is not current: retryable, naming why."""
    reply = deny(
        "spacegate cannot admit this now: the allow rests on namespace labels or "
        "RegistrySpaceBinding objects, and "
        + "; ".join(reasons)
        + " (the connection to the Kubernetes API was lost and is being restored); retry "
        "in a few seconds",
        code=503,
        reason="ServiceUnavailable",
    )
    refused = sum(c.refused for c in decision.containers)
    return Outcome(decision, reply, EncodedReply(reply, mutating=False), RESULT, refused)
