"""The decision: may this pod spec's images be used in this namespace?

Implements the decision rules 1-6 of ``docs/architecture.md``: every image the kubelet will
pull (:func:`policy.workload.pulled_images`) is judged by rules 1-4 (:mod:`policy.rules`),
the namespace's mode turns refusals into a denial, warnings or audit annotations (rule 5),
and on Pod CREATE the pull secret is added where an allowed image needs one (rule 6).
Everything here is pure and works on a :class:`~policy.snapshot.Snapshot`, so the admission
server, the CLI and the tests all decide through the same function.

Everything in a pod spec is written by a tenant and may be hostile, so the work per review and
what it leaves behind are bounded: only bounded pod specs are memoized, in a memo of bounded
size, and the text of a decision is built within the limits of :mod:`policy.messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from policy.config import Mode
from policy.messages import (
    MAX_ANNOTATION_CHARS,
    MAX_MESSAGE_CHARS,
    bounded_warnings,
    joined,
    quote_image,
    remedy,
    workspace_phrase,
)
from policy.rules import evaluate_image
from policy.snapshot import NamespaceInfo, Snapshot
from policy.workload import IMAGE_SOURCES, pulled_images

Verdict = Literal["allowed", "denied", "warned", "audited", "exempt", "skipped"]


@dataclass(frozen=True, slots=True)
class ContainerVerdict:
    """The verdict for one container, after the mode is applied."""

    section: str
    name: str
    image: str | None
    verdict: Verdict
    reason: str
    registry: str | None = None
    space: str | None = None
    needs_secret: bool = False
    refused: bool = False  # the rules refuse this image, whatever the mode made of it
    noun: str = "container"  # or "init container", "ephemeral container", "volume"
    rule: str = ""  # the policy.rules rule that judged the image ("" when none did)

    @property
    def label(self) -> str:
        """How messages name it: ``container "app"``, ``volume "data"``."""
        return f'{self.noun} "{self.name}"'


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one pod spec: what the apiserver is told, and why."""

    allowed: bool
    mode: Mode
    namespace: str
    workspace: str | None
    containers: tuple[ContainerVerdict, ...] = ()
    message: str = ""
    warnings: tuple[str, ...] = ()
    audit_annotations: Mapping[str, str] = field(default_factory=dict)
    patch: tuple[dict[str, Any], ...] = ()
    exempt: bool = False
    # Kept in the snapshot's memo: bounded in size, and shared by every equal pod spec.
    memoized: bool = False


# --------------------------------------------------------------------------- decide

_REFUSED_VERDICT: Mapping[Mode, Verdict] = {
    "enforce": "denied",
    "warn": "warned",
    "audit": "audited",
}


# Bound on memoized decisions per snapshot; the memo is dropped whole when it fills up.
MAX_MEMO_DECISIONS = 8_192
# Only pod specs whose names and images add up to at most this many characters are memoized,
# so the memo's size is bounded by count times this, whatever tenants send.
MAX_MEMO_KEY_CHARS = 4_096


def _signature(pod_spec: Mapping[str, Any], secret: str) -> tuple[Any, ...] | None:
    """Everything of a pod spec that a decision depends on, as a hashable key.

    That is each image source's section, name and image (exactly what
    :func:`policy.workload.pulled_images` reads, in its order) and the state of
    ``imagePullSecrets`` with respect to the pull secret (absent, present with it, present
    without it, malformed). None when the names and images are too long to remember
    (:data:`MAX_MEMO_KEY_CHARS`): such a spec is decided afresh each time.
    """
    parts: list[Any] = []
    budget = MAX_MEMO_KEY_CHARS
    for source in IMAGE_SOURCES:
        items = pod_spec.get(source.section)
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, Mapping):
                if source.optional and source.path[0] not in item:
                    continue
                name = item.get("name")
                node: Any = item
                for key in source.path:
                    node = node.get(key) if isinstance(node, Mapping) else None
                name = name if isinstance(name, str) else None
                image = node if isinstance(node, str) else None
                budget -= len(name or "") + len(image or "") + 1
                if budget < 0:
                    return None
                parts.append((source.section, name, image))
            elif not source.optional:
                parts.append((source.section, None, None))
    secrets = pod_spec.get("imagePullSecrets")
    if secrets is None:
        state = 0
    elif not isinstance(secrets, list):
        state = 3
    elif any(isinstance(e, Mapping) and e.get("name") == secret for e in secrets):
        state = 1
    else:
        state = 2
    parts.append(state)
    return tuple(parts)


def decide(
    snapshot: Snapshot,
    namespace: str,
    pod_spec: Mapping[str, Any],
    *,
    pointer: str = "/spec",
    kind: str = "Pod",
    operation: str = "CREATE",
    sub_resource: str = "",
    unchanged: frozenset[str] = frozenset(),
) -> Decision:
    """Decide on every image of a pod spec for a namespace (rules 1-6 of docs/architecture.md).

    ``unchanged`` (UPDATE only) holds the images the object already had before the
    update (``oldObject``). They were admitted when they were introduced and are not
    judged again: otherwise unbinding a space would make every later write to its running
    workloads fail — a Deployment's rollout scaling down old ReplicaSets, the Job
    controller removing its finalizers, the garbage collector editing ownerReferences —
    although none of them brings in an image. Only images an update introduces are checked.

    ``pointer`` is the JSON pointer of ``pod_spec`` in the admitted object; it is used only
    for the pull-secret patch, which is produced for Pod CREATE only (``imagePullSecrets``
    is immutable on existing Pods and the ``ephemeralcontainers`` subresource discards it).

    Decisions are memoized per snapshot on everything they depend on, because the Pods of
    one workload arrive over and over with identical containers. The returned
    :class:`Decision` is shared: treat it, and its patch operations, as read-only.
    """
    signature = _signature(pod_spec, snapshot.policy.pull_secret_name)
    if signature is None:
        return _decide(
            snapshot,
            namespace,
            pod_spec,
            pointer=pointer,
            kind=kind,
            operation=operation,
            sub_resource=sub_resource,
            unchanged=unchanged,
        )
    if unchanged:
        # Only the images of this spec matter: keeps the memo key small and shared.
        unchanged = unchanged.intersection(
            part[2] for part in signature[:-1] if part[2] is not None
        )
    key = (namespace, pointer, kind, operation, sub_resource, unchanged, signature)
    memo = snapshot.decision_cache
    hit: Decision | None = memo.get(key)
    if hit is not None:
        return hit
    decision = _decide(
        snapshot,
        namespace,
        pod_spec,
        pointer=pointer,
        kind=kind,
        operation=operation,
        sub_resource=sub_resource,
        unchanged=unchanged,
        memoized=True,
    )
    if len(memo) >= MAX_MEMO_DECISIONS:
        memo.clear()
    memo[key] = decision
    return decision


def _decide(
    snapshot: Snapshot,
    namespace: str,
    pod_spec: Mapping[str, Any],
    *,
    pointer: str,
    kind: str,
    operation: str,
    sub_resource: str,
    unchanged: frozenset[str],
    memoized: bool = False,
) -> Decision:
    policy = snapshot.policy
    info: NamespaceInfo = snapshot.namespace(namespace)
    workspace = info.workspace
    mode: Mode = info.mode or policy.mode

    if namespace in policy.exempt_namespaces:
        exempt_reason = f"namespace {namespace} is exempt"
        return Decision(
            allowed=True,
            mode=mode,
            namespace=namespace,
            workspace=workspace,
            containers=tuple(
                ContainerVerdict(c.section, c.name, c.image, "exempt", exempt_reason, noun=c.noun)
                for c in pulled_images(pod_spec)
            ),
            exempt=True,
            memoized=memoized,
        )

    results: list[ContainerVerdict] = []
    denials: list[str] = []
    warnings: list[str] = []
    needs_secret = False
    refused_verdict = _REFUSED_VERDICT[mode]

    for container in pulled_images(pod_spec):
        noun = container.noun
        if container.image is None:
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    None,
                    "skipped",
                    "no image set (left to be defaulted); the Pods it creates are checked",
                    noun=noun,
                )
            )
            continue
        if operation == "UPDATE" and container.image in unchanged:
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    container.image,
                    "allowed",
                    "image unchanged by this update (checked when it was introduced)",
                    noun=noun,
                )
            )
            continue
        verdict = evaluate_image(snapshot, container.image, workspace)
        if verdict.allowed:
            needs_secret = needs_secret or verdict.needs_secret
            results.append(
                ContainerVerdict(
                    container.section,
                    container.name,
                    container.image,
                    "warned" if verdict.warn else "allowed",
                    ("warning: " if verdict.warn else "") + verdict.reason,
                    verdict.registry,
                    verdict.space,
                    verdict.needs_secret,
                    noun=noun,
                    rule=verdict.rule,
                )
            )
            if verdict.warn:
                warnings.append(
                    f'spacegate: {container.label} image "{quote_image(container.image)}": '
                    f"{verdict.reason}"
                )
            continue
        remedy_text = remedy(verdict, namespace, workspace)
        text = (
            f'{container.label} image "{quote_image(container.image)}" is not allowed in '
            f"namespace {namespace} ({workspace_phrase(workspace)}): {verdict.reason}"
            + (f"; {remedy_text}" if remedy_text else "")
        )
        denials.append(text)
        results.append(
            ContainerVerdict(
                container.section,
                container.name,
                container.image,
                refused_verdict,
                verdict.reason + (f"; {remedy_text}" if remedy_text else ""),
                verdict.registry,
                verdict.space,
                refused=True,
                noun=noun,
                rule=verdict.rule,
            )
        )
        if mode == "warn":
            warnings.append("spacegate: " + text)

    allowed = not denials or mode != "enforce"
    annotations: dict[str, str] = {}
    if denials:
        annotations["decision"] = refused_verdict
        annotations["refused"] = joined(denials, MAX_ANNOTATION_CHARS)

    patch: tuple[dict[str, Any], ...] = ()
    if allowed and needs_secret and kind == "Pod" and operation == "CREATE" and not sub_resource:
        patch = pull_secret_patch(pod_spec, pointer, policy.pull_secret_name)

    return Decision(
        allowed=allowed,
        mode=mode,
        namespace=namespace,
        workspace=workspace,
        containers=tuple(results),
        message=(joined(denials, MAX_MESSAGE_CHARS) if denials and mode == "enforce" else ""),
        warnings=bounded_warnings(warnings),
        audit_annotations=annotations,
        patch=patch,
        memoized=memoized,
    )


def pull_secret_patch(
    pod_spec: Mapping[str, Any], pointer: str, secret: str
) -> tuple[dict[str, Any], ...]:
    """JSON-patch ops adding ``secret`` to ``imagePullSecrets`` without ever failing to apply.

    Absent (or ``null``) list: add the whole list. Present list: append with ``/-``. Already
    there: no op at all, so a reinvocation changes nothing. Anything else (a malformed
    field) is left alone: the API server's validation will name it better than we can.
    """
    current = pod_spec.get("imagePullSecrets")
    path = f"{pointer}/imagePullSecrets"
    if current is None:
        return ({"op": "add", "path": path, "value": [{"name": secret}]},)
    if not isinstance(current, list):
        return ()
    for entry in current:
        if isinstance(entry, Mapping) and entry.get("name") == secret:
            return ()
    return ({"op": "add", "path": f"{path}/-", "value": {"name": secret}},)
