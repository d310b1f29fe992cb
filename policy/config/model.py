"""The config's model: the frozen, typed objects a config document becomes, and its error.

Every object is immutable, so a snapshot built from a config can be shared by every
request without copying, and defaults live here, in one place, for the parser
(``policy.config.parse``) and its inverse (``policy.config.dump``) alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["enforce", "warn", "audit"]
UnknownAction = Literal["allow", "warn", "deny"]
RegistryType = Literal["harbor", "docker-registry"]

MODES: tuple[Mode, ...] = ("enforce", "warn", "audit")
UNKNOWN_ACTIONS: tuple[UnknownAction, ...] = ("allow", "warn", "deny")
REGISTRY_TYPES: tuple[RegistryType, ...] = ("harbor", "docker-registry")
# Where bindings come from (``bindings.source``): the config file, RegistrySpaceBinding
# objects, or both (their union). Unset: both where the CRD is served, else the config.
BindingSource = Literal["config", "objects", "both"]
BINDING_SOURCES: tuple[BindingSource, ...] = ("config", "objects", "both")

DEFAULT_WORKSPACE_LABEL = "workspace.ghippo.io/id"
MODE_LABEL = "spacegate.io/mode"


class ConfigError(ValueError):
    """A config document that cannot be used; the message names the key path."""


@dataclass(frozen=True, slots=True)
class Space:
    """A registry space: a Harbor project, or a Docker Registry's first path component."""

    name: str
    public: bool


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where the registry credential lives. Only file paths are kept, never the secret."""

    username_file: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class Registry:
    """One integrated registry, as declared in the config."""

    name: str
    type: RegistryType
    url: str
    hosts: tuple[str, ...]
    workspace: str | None = None
    anonymous_pull: bool = True
    credentials: Credentials | None = None
    refresh_interval: float = 30.0
    spaces: tuple[Space, ...] | None = None  # None: listed live from the registry
    insecure_url: bool = False  # http:// URL: accepted, but the caller should warn
    # The credential pull secrets hand out for a Docker Registry with anonymousPull: false
    # (separate from ``credentials``, the account spacegate lists the registry with).
    pull_credentials: Credentials | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """A private space bound to workspaces."""

    registry: str
    space: str
    workspaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NamespaceGuard:
    """``policy.namespaceGuard``: who may put a namespace into a workspace (opt-in).

    The workspace label decides which private spaces a namespace may use, so whoever may set
    it holds the keys to every workspace's images. With the guard on, setting, changing or
    removing the workspace label or the ``spacegate.io/mode`` label, and creating a namespace
    with an exempt name, are allowed only to these users, groups and service accounts
    (``namespace/name``).
    """

    enabled: bool = False
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset({"system:masters"})
    service_accounts: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The ``policy:`` block: how decisions are enforced."""

    mode: Mode = "enforce"
    unknown_registry: UnknownAction = "allow"
    unknown_space: UnknownAction = "deny"
    pull_secret_name: str = "registry-secret"  # noqa: S105 - a Secret name
    exempt_namespaces: frozenset[str] = frozenset({"kube-system"})
    max_staleness: float = 600.0
    namespace_guard: NamespaceGuard = NamespaceGuard()


DEFAULT_ROTATE_EVERY = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class PullSecrets:
    """``pullSecrets``: provisioning of the pull secret (off by default).

    ``credentials_namespace`` None means spacegate's own namespace, found at run time
    (``POD_NAMESPACE``, the service account's namespace, else ``spacegate-system``).
    """

    provision: bool = False
    credentials_namespace: str | None = None
    rotate_every: float = DEFAULT_ROTATE_EVERY


ReportFormat = Literal["wgpolicyk8s", "openreports", "none"]
REPORT_FORMATS: tuple[ReportFormat, ...] = ("wgpolicyk8s", "openreports", "none")


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """``audit``: the leader's background audit of running workloads (off by default)."""

    enabled: bool = False
    reports: ReportFormat = "wgpolicyk8s"
    interval: float = 600.0


@dataclass(frozen=True, slots=True)
class LastKnownGoodSettings:
    """``lastKnownGood``: the registries' spaces kept in the cluster by the leader (a Secret in
    spacegate's namespace), so that a replica starting while a registry is down serves from
    them, marked stale, instead of failing every review (on by default)."""

    persist: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """A whole config document."""

    workspace_label: str = DEFAULT_WORKSPACE_LABEL
    policy: PolicySettings = field(default_factory=PolicySettings)
    registries: tuple[Registry, ...] = ()
    bindings: tuple[Binding, ...] = ()
    namespaces: Mapping[str, str] = field(default_factory=dict)
    pull_secrets: PullSecrets = field(default_factory=PullSecrets)
    audit: AuditSettings = field(default_factory=AuditSettings)
    last_known_good: LastKnownGoodSettings = field(default_factory=LastKnownGoodSettings)
    # ``bindings.source``; None: the default (objects count where their CRD is served).
    binding_source: BindingSource | None = None
    # ``bindings.requireAcknowledgement``: deny a binding object's change or deletion that
    # would refuse running workloads, unless the object acknowledges it (an annotation).
    require_acknowledgement: bool = False

    def registry(self, name: str) -> Registry | None:
        """The registry declared under ``name``, if any."""
        for registry in self.registries:
            if registry.name == name:
                return registry
        return None
