"""Bindings as data: the names every binding obeys, RegistrySpaceBinding objects, the merged set.

A private space is bound to workspaces either in the config file (``bindings:``) or by a
cluster-scoped ``spacegate.io/v1alpha1`` ``RegistrySpaceBinding`` object, or both
(``bindings.source``). This module is the one place that says:

- **what a valid binding is**: the patterns and bounds of registry names, space names and
  workspace ids (:data:`REGISTRY_NAME`, :data:`SPACE_NAME`, :data:`WORKSPACE_ID`). The config
  parser checks config bindings with them, :func:`parse_binding_object` checks objects read
  from files or the cluster, and the CRD (``policy.binding_crd``) gives the apiserver the very
  same strings, so a binding the apiserver accepts is one the config would accept and back;
- **what an object says**: :class:`BindingObject`, read from a plain object (JSON or YAML),
  strictly for files (an error names the field) and leniently from the cluster (an invalid
  object binds nothing and says why in its status, instead of stopping the reflector);
- **the merged set**: :func:`merge_bindings` is the union of the config's bindings and the
  objects' bindings, as ``bindings.source`` says, which the snapshot, ``decide``,
  provisioning and the audit all read; objects naming an undeclared registry bind nothing;
- **what a change takes away**: :func:`lost_workspaces`, which the admission of binding
  objects warns about.

Pure: no I/O, no clock. Times arrive as RFC 3339 strings from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from policy.config.model import BINDING_SOURCES, BindingSource, Config
from policy.names import (
    MAX_WORKSPACES,
    OBJECT_NAME_MAX,
    REGISTRY_NAME_MAX,
    SPACE_NAME_MAX,
    check_object_name,
    check_registry_name,
    check_space_name,
    check_workspace_id,
    describe,
)

__all__ = [
    "ACKNOWLEDGE_ANNOTATION",
    "API_VERSION",
    "BINDING_SOURCES",
    "CATEGORY",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "SINGULAR",
    "VERSION",
    "BindingError",
    "BindingObject",
    "BindingSource",
    "Condition",
    "acknowledged_workspaces",
    "bound_by_others",
    "conflicts",
    "is_binding_object",
    "lost_workspaces",
    "merge_bindings",
    "object_name_for",
    "parse_binding_object",
    "read_binding_object",
    "uses_config_bindings",
    "uses_objects",
]

GROUP: Final = "spacegate.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "RegistrySpaceBinding"
PLURAL: Final = "registryspacebindings"
SINGULAR: Final = "registryspacebinding"
SHORT_NAME: Final = "rsb"
CATEGORY: Final = "spacegate"

# The annotation that acknowledges a removal when ``bindings.requireAcknowledgement`` is on:
# a comma-separated list of the workspace ids whose loss is acknowledged, or ``*``.
ACKNOWLEDGE_ANNOTATION: Final = "spacegate.io/acknowledge-removal"

# What a status condition may hold when read back (written by spacegate, bounded anyway).
_MAX_CONDITIONS = 8
_MAX_CONDITION_TEXT = 1024


class BindingError(ValueError):
    """A binding object that cannot be used; the message names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.problem = message


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``metav1.Condition`` of a binding's status, as read back from the cluster."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str = ""
    observed_generation: int = 0


@dataclass(frozen=True, slots=True)
class BindingObject:
    """A RegistrySpaceBinding: ``registry``'s ``space`` bound to ``workspaces``.

    ``problem`` is set when the object binds nothing because its spec is unusable (written
    under an older or hand-edited CRD that let it through): the reason, naming the field.
    ``conditions`` and ``observed_generation`` are the status as last read, so the leader
    can keep each condition's ``lastTransitionTime`` and write only what changed.
    """

    name: str
    registry: str
    space: str
    workspaces: tuple[str, ...]
    generation: int = 1
    resource_version: str = ""
    problem: str | None = None
    conditions: tuple[Condition, ...] = ()
    observed_generation: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.registry, self.space)

    @property
    def valid(self) -> bool:
        return self.problem is None

    def condition(self, type_: str) -> Condition | None:
        for condition in self.conditions:
            if condition.type == type_:
                return condition
        return None


def is_binding_object(obj: Mapping[str, Any]) -> bool:
    """Whether a manifest is a RegistrySpaceBinding (of any version of our group)."""
    api_version = obj.get("apiVersion")
    return (
        obj.get("kind") == KIND
        and isinstance(api_version, str)
        and api_version.split("/", 1)[0] == GROUP
    )


def _field(data: Mapping[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if value is None:
        raise BindingError(f"{path}.{key}", "required")
    if not isinstance(value, str):
        raise BindingError(f"{path}.{key}", f"expected a string, got {describe(value)}")
    return value


def _workspaces(data: Mapping[str, Any], path: str) -> tuple[str, ...]:
    value = data.get("workspaces")
    where = f"{path}.workspaces"
    if value is None:
        raise BindingError(where, "required")
    if not isinstance(value, list):
        raise BindingError(where, f"expected a list, got {describe(value)}")
    if not value:
        raise BindingError(where, "must list at least one workspace (delete the object instead)")
    if len(value) > MAX_WORKSPACES:
        raise BindingError(where, f"at most {MAX_WORKSPACES} workspaces, got {len(value)}")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            hint = ' (quote workspace ids: "101")' if isinstance(item, int) else ""
            raise BindingError(f"{where}[{i}]", f"expected a string, got {describe(item)}{hint}")
        text = item
        why = check_workspace_id(text)
        if why:
            raise BindingError(f"{where}[{i}]", why)
        if text in seen:
            raise BindingError(
                f"{where}[{i}]", f"duplicate workspace {text!r} (also [{seen[text]}])"
            )
        seen[text] = i
    return tuple(sorted(seen))


def parse_binding_object(obj: Mapping[str, Any]) -> BindingObject:
    """The binding an object states, checked like the CRD checks it; :class:`BindingError`
    names the first field that is wrong (``spec.workspaces[2]: ...``).

    As strict as the apiserver: an unquoted workspace id (YAML reads ``101`` as a number) is
    refused here too, so ``spacegate check --bindings`` never passes a manifest that
    ``kubectl apply`` would then reject.
    """
    if not is_binding_object(obj):
        raise BindingError(
            "kind",
            f"expected {KIND} of {GROUP}, got {describe(obj.get('kind'))} "
            f"of {describe(obj.get('apiVersion'))}",
        )
    if obj.get("apiVersion") != API_VERSION:
        raise BindingError(
            "apiVersion", f"expected {API_VERSION}, got {describe(obj.get('apiVersion'))}"
        )
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise BindingError("metadata", f"expected a mapping, got {describe(meta)}")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise BindingError("metadata.name", "required")
    why = check_object_name(name)
    if why:
        raise BindingError("metadata.name", why)
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise BindingError(
            "spec", "required" if spec is None else f"expected a mapping, got {describe(spec)}"
        )
    unknown = sorted(str(k) for k in spec if k not in ("registry", "space", "workspaces"))
    if unknown:
        raise BindingError(
            f"spec.{unknown[0]}", "unknown field (expected registry, space, workspaces)"
        )
    registry = _field(spec, "registry", "spec")
    why = check_registry_name(registry)
    if why:
        raise BindingError("spec.registry", why)
    space = _field(spec, "space", "spec")
    why = check_space_name(space)
    if why:
        raise BindingError("spec.space", why)
    return BindingObject(
        name=name,
        registry=registry,
        space=space,
        workspaces=_workspaces(spec, "spec"),
        generation=_int(meta.get("generation"), 1),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def read_binding_object(obj: Mapping[str, Any]) -> BindingObject | None:
    """An object as the cluster serves it: never raises.

    A spec that :func:`parse_binding_object` refuses gives a :class:`BindingObject` with the
    reason in ``problem`` (it binds nothing; its status says why); an object without a name
    gives None. The status is read back leniently and bounded.
    """
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        return None
    try:
        parsed = parse_binding_object(obj)
    except BindingError as exc:
        raw = obj.get("spec")
        spec: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        assert isinstance(meta, Mapping)
        parsed = BindingObject(
            name=name[:OBJECT_NAME_MAX],
            registry=str(spec.get("registry") or "")[:REGISTRY_NAME_MAX],
            space=str(spec.get("space") or "")[:SPACE_NAME_MAX],
            workspaces=(),
            generation=_int(meta.get("generation"), 1),
            resource_version=str(meta.get("resourceVersion") or ""),
            problem=str(exc),
        )
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return parsed
    observed = status.get("observedGeneration")
    return BindingObject(
        name=parsed.name,
        registry=parsed.registry,
        space=parsed.space,
        workspaces=parsed.workspaces,
        generation=parsed.generation,
        resource_version=parsed.resource_version,
        problem=parsed.problem,
        conditions=_conditions(status.get("conditions")),
        observed_generation=_int(observed, 0) if observed is not None else None,
    )


def _conditions(value: object) -> tuple[Condition, ...]:
    if not isinstance(value, list):
        return ()
    out: list[Condition] = []
    for item in value[:_MAX_CONDITIONS]:
        if not isinstance(item, Mapping):
            continue
        status = item.get("status")
        type_ = item.get("type")
        if not isinstance(type_, str) or status not in ("True", "False", "Unknown"):
            continue
        out.append(
            Condition(
                type=type_[:_MAX_CONDITION_TEXT],
                status=status,
                reason=str(item.get("reason") or "")[:_MAX_CONDITION_TEXT],
                message=str(item.get("message") or "")[: _MAX_CONDITION_TEXT * 4],
                last_transition_time=str(item.get("lastTransitionTime") or "")[:64],
                observed_generation=_int(item.get("observedGeneration"), 0),
            )
        )
    return tuple(out)


def object_name_for(registry: str, space: str) -> str:
    """The object name ``spacegate bindings export`` gives the binding of a space: the
    registry and space joined by ``-``, with ``_`` (not allowed in names) as ``-``, cut to
    the name limit."""
    return f"{registry}-{space}".replace("_", "-")[:OBJECT_NAME_MAX].rstrip("-.")


def acknowledged_workspaces(annotations: Mapping[str, Any] | None) -> frozenset[str] | Literal["*"]:
    """The workspaces whose loss :data:`ACKNOWLEDGE_ANNOTATION` acknowledges (``*``: all)."""
    value = (annotations or {}).get(ACKNOWLEDGE_ANNOTATION)
    if not isinstance(value, str):
        return frozenset()
    parts = {part.strip() for part in value.split(",") if part.strip()}
    if "*" in parts:
        return "*"
    return frozenset(parts)


# --------------------------------------------------------------------------- the merged set


def uses_config_bindings(config: Config) -> bool:
    """Whether the config file's bindings count (``bindings.source`` config or both)."""
    return config.binding_source in (None, "config", "both")


def uses_objects(config: Config) -> bool:
    """Whether binding objects count, once read (``bindings.source`` objects or both; the
    default counts them where the CRD is served)."""
    return config.binding_source in (None, "objects", "both")


def _effective_objects(
    config: Config, objects: Mapping[str, BindingObject] | None
) -> Iterable[BindingObject]:
    if objects is None or not uses_objects(config):
        return ()
    declared = {registry.name for registry in config.registries}
    return (o for o in objects.values() if o.valid and o.registry in declared)


def merge_bindings(
    config: Config, objects: Mapping[str, BindingObject] | None
) -> dict[tuple[str, str], frozenset[str]]:
    """``(registry, space) -> workspaces``: the union of the config's bindings and the
    objects', as ``bindings.source`` says.

    ``objects`` None means no objects were read (offline, the CRD not served, or
    ``bindings.source: config``). An object naming an undeclared registry, or with an
    unusable spec, binds nothing.
    """
    bound: dict[tuple[str, str], set[str]] = {}
    if uses_config_bindings(config):
        for binding in config.bindings:
            bound.setdefault((binding.registry, binding.space), set()).update(binding.workspaces)
    for obj in _effective_objects(config, objects):
        bound.setdefault(obj.key, set()).update(obj.workspaces)
    return {key: frozenset(workspaces) for key, workspaces in bound.items()}


@dataclass(frozen=True, slots=True)
class Conflict:
    """Who else binds an object's space: other objects, and the config file."""

    objects: tuple[str, ...] = ()
    config_workspaces: frozenset[str] = frozenset()
    union: frozenset[str] = field(default_factory=frozenset)

    @property
    def any(self) -> bool:
        return bool(self.objects) or bool(self.config_workspaces)


def conflicts(config: Config, objects: Mapping[str, BindingObject] | None) -> dict[str, Conflict]:
    """For every effective object, who else binds the same space (the union applies)."""
    effective = list(_effective_objects(config, objects))
    by_key: dict[tuple[str, str], list[BindingObject]] = {}
    for obj in effective:
        by_key.setdefault(obj.key, []).append(obj)
    from_config: dict[tuple[str, str], set[str]] = {}
    if uses_config_bindings(config):
        for binding in config.bindings:
            from_config.setdefault((binding.registry, binding.space), set()).update(
                binding.workspaces
            )
    out: dict[str, Conflict] = {}
    for key, group in by_key.items():
        union = set(from_config.get(key, ()))
        for obj in group:
            union.update(obj.workspaces)
        for obj in group:
            others = tuple(sorted(o.name for o in group if o.name != obj.name))
            out[obj.name] = Conflict(others, frozenset(from_config.get(key, ())), frozenset(union))
    return out


def bound_by_others(
    config: Config, objects: Mapping[str, BindingObject] | None, name: str, key: tuple[str, str]
) -> frozenset[str]:
    """The workspaces bound to ``key`` by everything but the object ``name``."""
    rest = {n: o for n, o in (objects or {}).items() if n != name}
    return merge_bindings(config, rest if objects is not None else None).get(key, frozenset())


def lost_workspaces(
    config: Config,
    objects: Mapping[str, BindingObject] | None,
    before: BindingObject | None,
    after: BindingObject | None,
) -> frozenset[str]:
    """Workspaces that lose ``before``'s space when the object becomes ``after`` (None:
    deleted), given everything else that binds it (config, other objects).

    Nothing is lost when objects do not count (``bindings.source: config``, or not read),
    when ``before`` bound nothing (invalid, undeclared registry), or when the change only
    adds workspaces.
    """
    if before is None or not before.valid or objects is None or not uses_objects(config):
        return frozenset()
    if before.registry not in {r.name for r in config.registries}:
        return frozenset()
    remaining = set(bound_by_others(config, objects, before.name, before.key))
    if after is not None and after.valid and after.key == before.key:
        remaining.update(after.workspaces)
    return frozenset(set(before.workspaces) - remaining)
