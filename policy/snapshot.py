"""The snapshot: everything a decision needs, frozen at one moment.

Admission must never wait on a registry or the Kubernetes API, so decisions read a plain
immutable object that the refresher (``webhook.live.refresher``) rebuilds in the background
and swaps in atomically. The same object is built from a static config for offline checks,
so the CLI and the webhook decide with one code path.

Lookups on the hot path are dict lookups: registry by the identity of an image domain
(``policy.hosts``), space visibility by name, bound workspaces by ``(registry, space)``,
namespace by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from policy.bindings import BindingObject, merge_bindings
from policy.config import Config, Mode, PolicySettings, Registry
from policy.hosts import Host, HostError, host_identity

if TYPE_CHECKING:  # policy.impact reads snapshots itself
    from policy.impact import ImpactIndex


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """What spacegate knows of a namespace: its workspace and its mode override label."""

    workspace: str | None = None
    mode: Mode | None = None


NO_WORKSPACE = NamespaceInfo()


@dataclass(frozen=True, slots=True)
class RegistryState:
    """A declared registry with the spaces known for it at snapshot time."""

    registry: Registry
    spaces: Mapping[str, bool]  # space name -> public
    synced: bool = True  # False: a live registry that has not answered yet
    # True: the spaces are the cluster's last-known-good copy (``policy.last_known_good``),
    # not this replica's own listing: it started while the registry was unreachable.
    copied: bool = False

    @property
    def name(self) -> str:
        return self.registry.name

    def space_public(self, space: str) -> bool | None:
        """True/False for a known space; None when the registry does not have it."""
        return self.spaces.get(space)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable, versioned view of registries, spaces, bindings and namespaces."""

    config: Config
    registries: Mapping[str, RegistryState]
    namespaces: Mapping[str, NamespaceInfo]
    bindings: Mapping[tuple[str, str], frozenset[str]]
    version: int = 1
    # The RegistrySpaceBinding objects read from the cluster, by name (None: not read:
    # offline, ``bindings.source: config``, or their CRD is not served). Those that bind
    # (``policy.bindings.merge_bindings``) are in ``bindings`` already.
    binding_objects: Mapping[str, BindingObject] | None = None
    # The leader's last impact index (``policy.impact``): which running workloads depend on
    # which binding, for the warnings on binding changes. None: none published or read.
    impact: ImpactIndex | None = None
    _by_host: Mapping[Host, RegistryState] = field(default_factory=dict, repr=False)
    # Memo of per-image verdicts for this snapshot (see policy.rules); dies with it.
    verdict_cache: dict[tuple[str, str | None], Any] = field(
        default_factory=dict, repr=False, compare=False
    )
    # Memo of whole decisions (see policy.decision.decide): Pods of one Deployment repeat.
    decision_cache: dict[tuple[Any, ...], Any] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def policy(self) -> PolicySettings:
        return self.config.policy

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(
        cls,
        config: Config,
        *,
        spaces: Mapping[str, Mapping[str, bool]] | None = None,
        namespaces: Mapping[str, NamespaceInfo] | None = None,
        binding_objects: Mapping[str, BindingObject] | None = None,
        impact: ImpactIndex | None = None,
        version: int = 1,
        copied: frozenset[str] = frozenset(),
    ) -> Snapshot:
        """Combine a config with live data.

        ``spaces`` maps registry name to its listed spaces; a registry absent from it keeps
        the spaces declared in the config, or is marked unsynced when it declares none.
        ``copied`` names the registries of ``spaces`` whose spaces come from the cluster's
        last-known-good copy rather than this replica's own listing.
        ``namespaces`` replaces the config's static namespace map when given.
        ``binding_objects`` are the RegistrySpaceBinding objects read (None: none read);
        the bindings are the config's and theirs as ``bindings.source`` says.
        """
        live = spaces or {}
        states: dict[str, RegistryState] = {}
        for registry in config.registries:
            if registry.name in live:
                state = RegistryState(
                    registry,
                    MappingProxyType(dict(live[registry.name])),
                    copied=registry.name in copied,
                )
            elif registry.spaces is not None:
                state = RegistryState(
                    registry, MappingProxyType({s.name: s.public for s in registry.spaces})
                )
            else:
                state = RegistryState(registry, MappingProxyType({}), synced=False)
            states[registry.name] = state
        by_host = {
            host_identity(host): states[r.name] for r in config.registries for host in r.hosts
        }
        objects = None if binding_objects is None else MappingProxyType(dict(binding_objects))
        if namespaces is None:
            ns_map: Mapping[str, NamespaceInfo] = {
                name: NamespaceInfo(workspace=ws) for name, ws in config.namespaces.items()
            }
        else:
            ns_map = namespaces
        return cls(
            config=config,
            registries=MappingProxyType(states),
            namespaces=MappingProxyType(dict(ns_map)),
            bindings=MappingProxyType(merge_bindings(config, objects)),
            version=version,
            binding_objects=objects,
            impact=impact,
            _by_host=MappingProxyType(by_host),
        )

    @classmethod
    def from_config(
        cls, config: Config, binding_objects: Mapping[str, BindingObject] | None = None
    ) -> Snapshot:
        """The offline snapshot: spaces and namespaces exactly as the config declares (and
        ``binding_objects`` read from files, ``spacegate check --bindings``)."""
        return cls.build(config, binding_objects=binding_objects)

    # ------------------------------------------------------------------ lookups

    def registry_for_domain(self, domain: str) -> RegistryState | None:
        """The registry an image domain reaches, in whatever spelling (``policy.hosts``:
        one identity per host; the default port of the registry's scheme implied)."""
        try:
            return self._by_host.get(host_identity(domain))
        except HostError:
            return None

    def namespace(self, name: str) -> NamespaceInfo:
        return self.namespaces.get(name, NO_WORKSPACE)

    def bound_workspaces(self, registry: str, space: str) -> frozenset[str]:
        return self.bindings.get((registry, space), frozenset())

    @property
    def synced(self) -> bool:
        """Every registry's spaces are known (static, or listed at least once)."""
        return all(state.synced for state in self.registries.values())
