"""Readiness, as a pure function of what the refresher knows.

Readiness answers a different question than "what do we decide": it is false until every
Harbor without static spaces has been listed once (and the namespace list has arrived, when
namespaces are watched), and false again once such a registry's data, or the namespace list,
is older than ``policy.maxStaleness``. RegistrySpaceBinding objects gate it like namespaces
when they are read (``bindings.source`` other than ``config``, and a Kubernetes API).
Decisions keep using the last-known-good data either way; readiness only tells Kubernetes
(and the operator) that the data may be wrong. A registry served from the cluster's
last-known-good copy (a replica that started while it was down) is loaded, so
``/readyz?exclude=staleness`` passes, and always stale, so plain ``/readyz`` fails until the
replica's own listing succeeds.

A Docker Registry's catalog never gates readiness: every Docker Registry space is public
(decision rule 3 in ``docs/architecture.md``), so its catalog cannot change a decision and an
outage of it must not take the webhook out of service. ``/readyz?exclude=staleness`` leaves
the age checks out (``docs/decisions.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policy.config import Registry
from policy.durations import format_duration


def is_listed(registry: Registry) -> bool:
    """Whether the registry's spaces come from the registry itself (no static ``spaces:``)."""
    return registry.spaces is None


def gates_readiness(registry: Registry) -> bool:
    """Whether the webhook is unready while this registry's spaces are unknown or stale.

    Only a listed Harbor qualifies: its spaces decide public/private. A Docker Registry's
    spaces are all public, so not knowing them changes no decision.
    """
    return is_listed(registry) and registry.type == "harbor"


@dataclass(frozen=True, slots=True)
class RegistryStatus:
    """How one listed registry is doing, for readiness messages, logs and tests."""

    name: str
    gating: bool
    synced: bool
    age_seconds: float
    spaces: int
    failures: int
    last_error: str | None
    # The spaces are the cluster's last-known-good copy, not this replica's own listing.
    copied: bool = False


@dataclass(frozen=True, slots=True)
class NamespaceStatus:
    """How the namespace list is doing (None in :func:`readiness`: not watched)."""

    listed: bool  # the current snapshot holds the watched namespaces
    age_seconds: float | None  # since the list was last known in sync; None: never


@dataclass(frozen=True, slots=True)
class BindingListStatus:
    """How the RegistrySpaceBinding list is doing (None in :func:`readiness`: not read)."""

    listed: bool  # the current snapshot holds the objects (or knows the CRD is not served)
    age_seconds: float | None  # since the list was last known in sync; None: never
    problem: str | None = None  # why the first list has not arrived


def data_age(
    registries: Sequence[RegistryStatus],
    namespaces: NamespaceStatus | None,
    bindings: BindingListStatus | None = None,
) -> float:
    """Age of the oldest data that gates readiness (time since start when never listed)."""
    ages = [s.age_seconds for s in registries if s.gating]
    for listing in (namespaces, bindings):
        if listing is not None and listing.age_seconds is not None:
            ages.append(listing.age_seconds)
    return max(ages, default=0.0)


def readiness(
    registries: Sequence[RegistryStatus],
    namespaces: NamespaceStatus | None,
    *,
    max_staleness: float,
    version: int,
    staleness: bool = True,
    bindings: BindingListStatus | None = None,
) -> tuple[bool, str]:
    """(ready, a one-line reason) for ``/readyz`` (see the module docstring)."""
    gating = [s for s in registries if s.gating]
    waiting = [s for s in gating if not s.synced]
    if waiting:
        parts = [
            f"{s.name!r}" + (f" (last error: {s.last_error})" if s.last_error else "")
            for s in waiting
        ]
        return False, "waiting for the first listing of registry " + ", ".join(parts)
    if namespaces is not None and not namespaces.listed:
        return False, "waiting for the first namespace list from the Kubernetes API"
    if bindings is not None and not bindings.listed:
        why = f" ({bindings.problem})" if bindings.problem else ""
        return False, f"waiting for the first list of RegistrySpaceBinding objects{why}"
    age = data_age(registries, namespaces, bindings)
    if not staleness:
        return True, (
            f"snapshot version {version} loaded (data {int(age)}s old; staleness not checked)"
        )
    stale = [
        f"registry {s.name!r} is served from the last-known-good copy in the cluster "
        f"({format_duration(int(s.age_seconds))} old) until its own listing succeeds"
        + (f" (last error: {s.last_error})" if s.last_error else "")
        for s in gating
        if s.copied
    ]
    stale += [
        f"registry {s.name!r} is {format_duration(int(s.age_seconds))} old"
        + (f" (last error: {s.last_error})" if s.last_error else "")
        for s in gating
        if not s.copied and s.age_seconds > max_staleness
    ]
    if (
        namespaces is not None
        and namespaces.age_seconds is not None
        and namespaces.age_seconds > max_staleness
    ):
        stale.append(f"the namespace list is {format_duration(int(namespaces.age_seconds))} old")
    if (
        bindings is not None
        and bindings.age_seconds is not None
        and bindings.age_seconds > max_staleness
    ):
        stale.append(
            f"the RegistrySpaceBinding list is {format_duration(int(bindings.age_seconds))} old"
        )
    if stale:
        return False, (
            "stale data: "
            + ", ".join(stale)
            + f"; policy.maxStaleness is {format_duration(max_staleness)}; "
            "decisions use the last-known-good data"
        )
    return True, f"snapshot version {version}, data {int(age)}s old"
