"""The namespace guard: who may move a namespace into a workspace.

spacegate decides by the namespace's workspace label, so that label is the security boundary
between tenants: whoever may create or label a namespace could otherwise put it into another
workspace (or set ``spacegate.io/mode: audit``, or create a namespace under an exempt name that
does not exist yet) and run that workspace's private images. With ``policy.namespaceGuard``
on, the validating webhook also sees Namespace CREATE and UPDATE, and this module decides:
setting, changing or removing a guarded label, and creating a namespace with an exempt name,
is allowed only to the configured users, groups and service accounts.

Pure like the rest of ``policy``: the caller passes labels and the requesting user as the
AdmissionReview carries them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from policy.config import MODE_LABEL, Config, NamespaceGuard
from policy.messages import clip, single_line

# Label values and names quoted in a denial are tenant-written: quote only their start.
_QUOTED_CHARS = 80


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """Whether a Namespace write may proceed, and if not, why (one line)."""

    allowed: bool
    message: str = ""


ALLOWED = GuardVerdict(True)


def guarded_labels(config: Config) -> tuple[str, ...]:
    """The labels only privileged users may set, change or remove."""
    return (config.workspace_label, MODE_LABEL)


def is_privileged(guard: NamespaceGuard, user: str, groups: Iterable[str]) -> bool:
    """The requester is one of the configured users, groups or service accounts."""
    if user in guard.users or not guard.groups.isdisjoint(groups):
        return True
    prefix = "system:serviceaccount:"
    if user.startswith(prefix):
        namespace, _, name = user[len(prefix) :].partition(":")
        return f"{namespace}/{name}" in guard.service_accounts
    return False


def _show(value: str | None) -> str:
    return "unset" if value is None else f'"{clip(single_line(value), _QUOTED_CHARS)}"'


def _label(labels: Mapping[str, object] | None, key: str) -> str | None:
    if not isinstance(labels, Mapping):
        return None
    value = labels.get(key)
    return value if isinstance(value, str) else None


def _who_may(guard: NamespaceGuard) -> str:
    parts = []
    if guard.users:
        parts.append("users " + ", ".join(sorted(guard.users)))
    if guard.groups:
        parts.append("groups " + ", ".join(sorted(guard.groups)))
    if guard.service_accounts:
        parts.append("service accounts " + ", ".join(sorted(guard.service_accounts)))
    return "; ".join(parts) or "nobody (policy.namespaceGuard lists no one)"


def guard_namespace(
    config: Config,
    *,
    operation: str,
    name: str,
    labels: Mapping[str, object] | None,
    old_labels: Mapping[str, object] | None,
    user: str,
    groups: Iterable[str],
) -> GuardVerdict:
    """May ``user`` create or update the namespace ``name`` with these labels?

    Only CREATE and UPDATE are judged; everything is allowed while the guard is off, to
    privileged requesters, and for writes that leave the guarded labels as they were.
    """
    guard = config.policy.namespace_guard
    if not guard.enabled or operation not in ("CREATE", "UPDATE"):
        return ALLOWED
    changes: list[str] = []
    if operation == "CREATE" and name in config.policy.exempt_namespaces:
        changes.append(
            f"creating namespace {_show(name)}, whose name is exempt from spacegate "
            "(policy.exemptNamespaces)"
        )
    for key in guarded_labels(config):
        new = _label(labels, key)
        old = _label(old_labels, key) if operation == "UPDATE" else None
        if new == old:
            continue
        if old is None:
            changes.append(f"setting label {key} to {_show(new)}")
        elif new is None:
            changes.append(f"removing label {key} (was {_show(old)})")
        else:
            changes.append(f"changing label {key} from {_show(old)} to {_show(new)}")
    if not changes or is_privileged(guard, user, groups):
        return ALLOWED
    return GuardVerdict(
        False,
        f"namespace {_show(name)}: {'; '.join(changes)} is reserved by spacegate's namespace "
        f"guard to {_who_may(guard)}; user {_show(user)} is none of them",
    )
