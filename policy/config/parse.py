"""Config text or loaded data, parsed strictly into :mod:`policy.config.model` objects.

The config is the one place where an operator's typo can silently widen or narrow what a
cluster may run, so parsing is strict: unknown keys are errors, every error names the key
path (``registries[1].type``) and what was expected, and cross-references (bindings to
declared registries, hosts claimed by one registry only) are checked here, before any
snapshot is built from it.

Pure: it turns text or already-loaded data into objects. Reading the file from disk is the
caller's business (``webhook.settings``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

import yaml

from policy.config.hosts import claim_hosts, config_host
from policy.config.model import (
    BINDING_SOURCES,
    DEFAULT_ROTATE_EVERY,
    DEFAULT_WORKSPACE_LABEL,
    MODES,
    REGISTRY_TYPES,
    REPORT_FORMATS,
    UNKNOWN_ACTIONS,
    AuditSettings,
    Binding,
    BindingSource,
    Config,
    ConfigError,
    Credentials,
    LastKnownGoodSettings,
    Mode,
    NamespaceGuard,
    PolicySettings,
    PullSecrets,
    Registry,
    RegistryType,
    ReportFormat,
    Space,
    UnknownAction,
)
from policy.durations import parse_duration
from policy.names import check_registry_name, check_space_name, check_workspace_id, describe

# --------------------------------------------------------------------------- helpers


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings, got {describe(key)}")
    return cast(Mapping[str, object], value)


def _check_keys(data: Mapping[str, object], path: str, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ConfigError(f"{where}: unknown key (expected one of: {', '.join(allowed)})")


def _str(value: object, path: str, *, allow_empty: bool = False) -> str:
    # YAML turns unquoted workspace ids (101) into ints; ids are strings in Kubernetes labels.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {describe(value)}")
    if not allow_empty and not value.strip():
        raise ConfigError(f"{path}: must not be empty")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {describe(value)}")
    return value


def _choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        expected = " or ".join(choices) if len(choices) == 2 else ", ".join(choices)
        raise ConfigError(f"{path}: expected {expected}, got {describe(value)}")
    return str(value)


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {describe(value)}")
    return value


def _duration(value: object, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- sections


def _parse_policy(value: object) -> PolicySettings:
    path = "policy"
    data = _mapping(value, path)
    _check_keys(
        data,
        path,
        (
            "mode",
            "unknownRegistry",
            "unknownSpace",
            "pullSecretName",
            "exemptNamespaces",
            "maxStaleness",
            "namespaceGuard",
        ),
    )
    defaults = PolicySettings()
    exempt = defaults.exempt_namespaces
    if "exemptNamespaces" in data:
        items = _list(data["exemptNamespaces"], f"{path}.exemptNamespaces")
        exempt = frozenset(
            _str(item, f"{path}.exemptNamespaces[{i}]") for i, item in enumerate(items)
        )
    return PolicySettings(
        mode=cast(Mode, _choice(data.get("mode", defaults.mode), f"{path}.mode", MODES)),
        unknown_registry=cast(
            UnknownAction,
            _choice(
                data.get("unknownRegistry", defaults.unknown_registry),
                f"{path}.unknownRegistry",
                UNKNOWN_ACTIONS,
            ),
        ),
        unknown_space=cast(
            UnknownAction,
            _choice(
                data.get("unknownSpace", defaults.unknown_space),
                f"{path}.unknownSpace",
                UNKNOWN_ACTIONS,
            ),
        ),
        pull_secret_name=_str(
            data.get("pullSecretName", defaults.pull_secret_name), f"{path}.pullSecretName"
        ),
        exempt_namespaces=exempt,
        max_staleness=(
            _duration(data["maxStaleness"], f"{path}.maxStaleness")
            if "maxStaleness" in data
            else defaults.max_staleness
        ),
        namespace_guard=(
            _parse_namespace_guard(data["namespaceGuard"], f"{path}.namespaceGuard")
            if data.get("namespaceGuard") is not None
            else defaults.namespace_guard
        ),
    )


_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def _strings(data: Mapping[str, object], key: str, path: str) -> frozenset[str] | None:
    if key not in data:
        return None
    items = _list(data[key], f"{path}.{key}")
    return frozenset(_str(item, f"{path}.{key}[{i}]") for i, item in enumerate(items))


def _parse_namespace_guard(value: object, path: str) -> NamespaceGuard:
    data = _mapping(value, path)
    _check_keys(data, path, ("enabled", "users", "groups", "serviceAccounts"))
    defaults = NamespaceGuard()
    accounts = _strings(data, "serviceAccounts", path)
    for account in sorted(accounts or ()):
        if not _SERVICE_ACCOUNT.fullmatch(account):
            raise ConfigError(
                f"{path}.serviceAccounts: expected namespace/name such as "
                f"ghippo-system/ghippo-apiserver, got {describe(account)}"
            )
    users = _strings(data, "users", path)
    groups = _strings(data, "groups", path)
    return NamespaceGuard(
        enabled=_bool(data.get("enabled", True), f"{path}.enabled"),
        users=defaults.users if users is None else users,
        groups=defaults.groups if groups is None else groups,
        service_accounts=defaults.service_accounts if accounts is None else accounts,
    )


def _parse_space(value: object, path: str) -> Space:
    data = _mapping(value, path)
    _check_keys(data, path, ("name", "public"))
    if "name" not in data:
        raise ConfigError(f"{path}.name: required")
    return Space(
        name=_str(data["name"], f"{path}.name"),
        public=_bool(data.get("public", False), f"{path}.public"),
    )


def _parse_credentials(value: object, path: str) -> Credentials:
    data = _mapping(value, path)
    _check_keys(data, path, ("usernameFile", "passwordFile"))
    username = data.get("usernameFile")
    password = data.get("passwordFile")
    return Credentials(
        username_file=None if username is None else _str(username, f"{path}.usernameFile"),
        password_file=None if password is None else _str(password, f"{path}.passwordFile"),
    )


_REGISTRY_KEYS = (
    "name",
    "type",
    "url",
    "hosts",
    "workspace",
    "anonymousPull",
    "credentials",
    "refreshInterval",
    "spaces",
    "pullCredentials",
)


def _parse_registry(value: object, path: str) -> Registry:
    data = _mapping(value, path)
    _check_keys(data, path, _REGISTRY_KEYS)
    for required in ("name", "type", "url"):
        if required not in data:
            raise ConfigError(f"{path}.{required}: required")
    name = _checked(_str(data["name"], f"{path}.name"), f"{path}.name", check_registry_name)
    rtype = cast(RegistryType, _choice(data["type"], f"{path}.type", REGISTRY_TYPES))
    url = _str(data["url"], f"{path}.url").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{path}.url: expected an http:// or https:// URL with a host, got {describe(url)}"
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"{path}.url: credentials in the URL are not allowed; use credentials.passwordFile"
        )
    if "hosts" in data:
        items = _list(data["hosts"], f"{path}.hosts")
        if not items:
            raise ConfigError(f"{path}.hosts: must list at least one host")
        hosts = [
            config_host(_str(item, f"{path}.hosts[{i}]"), f"{path}.hosts[{i}]")
            for i, item in enumerate(items)
        ]
    else:
        hosts = [config_host(parts.netloc, f"{path}.url", from_url=True)]
    host_tuple = tuple(dict.fromkeys(str(host) for host in hosts))
    workspace = data.get("workspace")
    spaces: tuple[Space, ...] | None = None
    if "spaces" in data and data["spaces"] is not None:
        items = _list(data["spaces"], f"{path}.spaces")
        parsed = [_parse_space(item, f"{path}.spaces[{i}]") for i, item in enumerate(items)]
        seen: set[str] = set()
        for i, space in enumerate(parsed):
            if space.name in seen:
                raise ConfigError(f"{path}.spaces[{i}].name: duplicate space {space.name!r}")
            seen.add(space.name)
        spaces = tuple(parsed)
    credentials = data.get("credentials")
    pull_credentials = data.get("pullCredentials")
    if pull_credentials is not None and rtype != "docker-registry":
        raise ConfigError(
            f"{path}.pullCredentials: only a docker-registry takes a pull credential; a "
            "Harbor's pull secrets hold robot accounts spacegate creates (pullSecrets.provision)"
        )
    return Registry(
        name=name,
        type=rtype,
        url=url,
        hosts=host_tuple,
        workspace=(
            None
            if workspace is None
            else _checked(
                _str(workspace, f"{path}.workspace"), f"{path}.workspace", check_workspace_id
            )
        ),
        anonymous_pull=_bool(data.get("anonymousPull", True), f"{path}.anonymousPull"),
        credentials=(
            None if credentials is None else _parse_credentials(credentials, f"{path}.credentials")
        ),
        refresh_interval=(
            _duration(data["refreshInterval"], f"{path}.refreshInterval")
            if "refreshInterval" in data
            else 30.0
        ),
        spaces=spaces,
        insecure_url=parts.scheme == "http",
        pull_credentials=(
            None
            if pull_credentials is None
            else _parse_credentials(pull_credentials, f"{path}.pullCredentials")
        ),
    )


def _checked(value: str, path: str, check: Callable[[str], str | None]) -> str:
    """``value`` when ``check`` finds nothing wrong with it (``policy.names``)."""
    why = check(value)
    if why:
        raise ConfigError(f"{path}: {why}")
    return value


def _parse_binding(value: object, path: str) -> Binding:
    """One binding; its names follow ``policy.names``, as the RegistrySpaceBinding CRD's do."""
    data = _mapping(value, path)
    _check_keys(data, path, ("registry", "space", "workspaces"))
    for required in ("registry", "space", "workspaces"):
        if required not in data:
            raise ConfigError(f"{path}.{required}: required")
    items = _list(data["workspaces"], f"{path}.workspaces")
    return Binding(
        registry=_checked(
            _str(data["registry"], f"{path}.registry"), f"{path}.registry", check_registry_name
        ),
        space=_checked(_str(data["space"], f"{path}.space"), f"{path}.space", check_space_name),
        workspaces=tuple(
            _checked(
                _str(item, f"{path}.workspaces[{i}]"), f"{path}.workspaces[{i}]", check_workspace_id
            )
            for i, item in enumerate(items)
        ),
    )


_BINDINGS_KEYS = ("source", "requireAcknowledgement", "items")


def _parse_bindings(value: object) -> tuple[tuple[Binding, ...], BindingSource | None, bool, str]:
    """``bindings``: a list (the short form), or ``{source, requireAcknowledgement, items}``.

    Returns the bindings, the source (None: unset), whether removals need an
    acknowledgement, and the key path of the list (for later error messages).
    """
    if value is None:
        return (), None, False, "bindings"
    if isinstance(value, list):
        items, path, source, acknowledge = value, "bindings", None, False
    else:
        data = _mapping(value, "bindings")
        _check_keys(data, "bindings", _BINDINGS_KEYS)
        raw_source = data.get("source")
        source = (
            None
            if raw_source is None
            else cast(BindingSource, _choice(raw_source, "bindings.source", BINDING_SOURCES))
        )
        acknowledge = _bool(
            data.get("requireAcknowledgement", False), "bindings.requireAcknowledgement"
        )
        path = "bindings.items"
        items = _list(data.get("items") or [], path)
    bindings = tuple(_parse_binding(item, f"{path}[{i}]") for i, item in enumerate(items))
    return bindings, source, acknowledge, path


_TOP_KEYS = (
    "workspaceLabel",
    "policy",
    "registries",
    "bindings",
    "namespaces",
    "pullSecrets",
    "audit",
    "lastKnownGood",
)


def _parse_last_known_good(value: object) -> LastKnownGoodSettings:
    path = "lastKnownGood"
    data = _mapping(value, path)
    _check_keys(data, path, ("persist",))
    return LastKnownGoodSettings(persist=_bool(data.get("persist", True), f"{path}.persist"))


def _parse_audit(value: object) -> AuditSettings:
    path = "audit"
    data = _mapping(value, path)
    _check_keys(data, path, ("enabled", "reports", "interval"))
    defaults = AuditSettings()
    return AuditSettings(
        enabled=_bool(data.get("enabled", False), f"{path}.enabled"),
        reports=cast(
            ReportFormat,
            _choice(data.get("reports", defaults.reports), f"{path}.reports", REPORT_FORMATS),
        ),
        interval=(
            _duration(data["interval"], f"{path}.interval")
            if "interval" in data
            else defaults.interval
        ),
    )


_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _parse_pull_secrets(value: object) -> PullSecrets:
    path = "pullSecrets"
    data = _mapping(value, path)
    _check_keys(data, path, ("provision", "credentialsNamespace", "rotateEvery"))
    namespace = data.get("credentialsNamespace")
    if namespace is not None:
        namespace = _str(namespace, f"{path}.credentialsNamespace")
        if len(namespace) > 63 or not _NAMESPACE_NAME.fullmatch(namespace):
            raise ConfigError(
                f"{path}.credentialsNamespace: expected a namespace name, got {describe(namespace)}"
            )
    return PullSecrets(
        provision=_bool(data.get("provision", False), f"{path}.provision"),
        credentials_namespace=namespace,
        rotate_every=(
            _duration(data["rotateEvery"], f"{path}.rotateEvery")
            if "rotateEvery" in data
            else DEFAULT_ROTATE_EVERY
        ),
    )


def parse_config(data: object) -> Config:
    """Build a :class:`Config` from an already-loaded YAML/JSON document."""
    if data is None:
        data = {}
    top = _mapping(data, "(document)")
    _check_keys(top, "", _TOP_KEYS)
    registries = tuple(
        _parse_registry(item, f"registries[{i}]")
        for i, item in enumerate(_list(top.get("registries") or [], "registries"))
    )
    names: dict[str, int] = {}
    for i, registry in enumerate(registries):
        if registry.name in names:
            raise ConfigError(
                f"registries[{i}].name: duplicate registry name {registry.name!r} "
                f"(also registries[{names[registry.name]}])"
            )
        names[registry.name] = i
    registries = claim_hosts(registries)
    bindings, binding_source, acknowledge, bindings_path = _parse_bindings(top.get("bindings"))
    for i, binding in enumerate(bindings):
        if binding.registry not in names:
            declared = ", ".join(sorted(names)) or "none"
            raise ConfigError(
                f"{bindings_path}[{i}].registry: registry {binding.registry!r} is not declared "
                f"under registries (declared: {declared})"
            )
    namespaces_raw = top.get("namespaces") or {}
    namespaces = {
        _str(ns, "namespaces"): _str(ws, f"namespaces.{ns}")
        for ns, ws in _mapping(namespaces_raw, "namespaces").items()
    }
    config = Config(
        workspace_label=_str(top.get("workspaceLabel", DEFAULT_WORKSPACE_LABEL), "workspaceLabel"),
        policy=_parse_policy(top["policy"]) if top.get("policy") is not None else PolicySettings(),
        registries=registries,
        bindings=bindings,
        namespaces=namespaces,
        pull_secrets=(
            _parse_pull_secrets(top["pullSecrets"])
            if top.get("pullSecrets") is not None
            else PullSecrets()
        ),
        audit=_parse_audit(top["audit"]) if top.get("audit") is not None else AuditSettings(),
        last_known_good=(
            _parse_last_known_good(top["lastKnownGood"])
            if top.get("lastKnownGood") is not None
            else LastKnownGoodSettings()
        ),
        binding_source=binding_source,
        require_acknowledgement=acknowledge,
    )
    _check_provisioning_is_guarded(config)
    return config


def _check_provisioning_is_guarded(config: Config) -> None:
    """Provisioning makes the workspace label a credential boundary: refuse it unguarded."""
    if config.pull_secrets.provision and not config.policy.namespace_guard.enabled:
        raise ConfigError(
            "pullSecrets.provision: requires policy.namespaceGuard.enabled: true; every namespace "
            f"labelled {config.workspace_label}=W receives W's pull credential as a readable "
            "Secret, so without the guard whoever may label a namespace may take any workspace's "
            "credential (enable the guard and list who may set the label, or turn provisioning off)"
        )


def load_config(text: str, source: str = "<config>") -> Config:
    """Parse config YAML text; errors are prefixed with ``source`` (a file name)."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if len(documents) > 1:
        raise ConfigError(f"{source}: expected one YAML document, found {len(documents)}")
    try:
        return parse_config(documents[0] if documents else None)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
