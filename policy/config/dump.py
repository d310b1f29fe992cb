"""The inverse of parsing: a config back as a plain document (``spacegate snapshot`` writes it)."""

from __future__ import annotations

from typing import Any

from policy.config.model import (
    AuditSettings,
    Config,
    Credentials,
    LastKnownGoodSettings,
    NamespaceGuard,
    PullSecrets,
)
from policy.durations import format_duration


def dump_config(config: Config, *, credentials: bool = True) -> dict[str, Any]:
    """The inverse of :func:`parse_config`: a plain document that parses back to ``config``.

    Every setting is written out, defaults included, so the document says what is in force.
    ``credentials=False`` leaves out the credential file references (``spacegate snapshot``
    writes configs for offline checks, which never call a registry).
    """
    policy = config.policy
    guard = policy.namespace_guard
    policy_doc: dict[str, Any] = {
        "mode": policy.mode,
        "unknownRegistry": policy.unknown_registry,
        "unknownSpace": policy.unknown_space,
        "pullSecretName": policy.pull_secret_name,
        "exemptNamespaces": sorted(policy.exempt_namespaces),
        "maxStaleness": format_duration(policy.max_staleness),
    }
    if guard != NamespaceGuard():
        policy_doc["namespaceGuard"] = {
            "enabled": guard.enabled,
            "users": sorted(guard.users),
            "groups": sorted(guard.groups),
            "serviceAccounts": sorted(guard.service_accounts),
        }
    registries = []
    for registry in config.registries:
        entry: dict[str, Any] = {
            "name": registry.name,
            "type": registry.type,
            "url": registry.url,
            "hosts": list(registry.hosts),
        }
        if registry.workspace is not None:
            entry["workspace"] = registry.workspace
        entry["anonymousPull"] = registry.anonymous_pull
        if credentials and registry.credentials is not None:
            entry["credentials"] = _dump_credentials(registry.credentials)
        entry["refreshInterval"] = format_duration(registry.refresh_interval)
        if registry.spaces is not None:
            entry["spaces"] = [{"name": s.name, "public": s.public} for s in registry.spaces]
        if credentials and registry.pull_credentials is not None:
            entry["pullCredentials"] = _dump_credentials(registry.pull_credentials)
        registries.append(entry)
    document: dict[str, Any] = {
        "workspaceLabel": config.workspace_label,
        "policy": policy_doc,
        "registries": registries,
        "bindings": _dump_bindings(config),
        "namespaces": dict(sorted(config.namespaces.items())),
    }
    pull = config.pull_secrets
    if pull != PullSecrets():
        document["pullSecrets"] = {
            "provision": pull.provision,
            "rotateEvery": format_duration(pull.rotate_every),
            **(
                {"credentialsNamespace": pull.credentials_namespace}
                if pull.credentials_namespace is not None
                else {}
            ),
        }
    if config.audit != AuditSettings():
        document["audit"] = {
            "enabled": config.audit.enabled,
            "reports": config.audit.reports,
            "interval": format_duration(config.audit.interval),
        }
    if config.last_known_good != LastKnownGoodSettings():
        document["lastKnownGood"] = {"persist": config.last_known_good.persist}
    return document


def _dump_bindings(config: Config) -> list[dict[str, Any]] | dict[str, Any]:
    """The short form (a list) while ``source`` and ``requireAcknowledgement`` are unset,
    so configs written before they existed come back as they were."""
    items = [
        {"registry": b.registry, "space": b.space, "workspaces": list(b.workspaces)}
        for b in config.bindings
    ]
    if config.binding_source is None and not config.require_acknowledgement:
        return items
    document: dict[str, Any] = {}
    if config.binding_source is not None:
        document["source"] = config.binding_source
    document["requireAcknowledgement"] = config.require_acknowledgement
    document["items"] = items
    return document


def _dump_credentials(credentials: Credentials) -> dict[str, str]:
    return {
        key: value
        for key, value in (
            ("usernameFile", credentials.username_file),
            ("passwordFile", credentials.password_file),
        )
        if value is not None
    }
