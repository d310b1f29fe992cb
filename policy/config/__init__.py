"""The spacegate config file, parsed into frozen, typed objects.

One job per module: :mod:`~policy.config.model` holds the objects (and ``ConfigError``),
:mod:`~policy.config.parse` reads text or loaded data into them, strictly, and
:mod:`~policy.config.dump` writes them back as a document that parses to the same config.
Callers import from ``policy.config``. Durations and hosts, which other modules read and
write too, live in :mod:`policy.durations` and :mod:`policy.hosts`.
"""

from __future__ import annotations

from policy.config.dump import dump_config
from policy.config.model import (
    BINDING_SOURCES,
    DEFAULT_ROTATE_EVERY,
    DEFAULT_WORKSPACE_LABEL,
    MODE_LABEL,
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
from policy.config.parse import load_config, parse_config

__all__ = [
    "BINDING_SOURCES",
    "DEFAULT_ROTATE_EVERY",
    "DEFAULT_WORKSPACE_LABEL",
    "MODES",
    "MODE_LABEL",
    "REGISTRY_TYPES",
    "REPORT_FORMATS",
    "UNKNOWN_ACTIONS",
    "AuditSettings",
    "Binding",
    "BindingSource",
    "Config",
    "ConfigError",
    "Credentials",
    "LastKnownGoodSettings",
    "Mode",
    "NamespaceGuard",
    "PolicySettings",
    "PullSecrets",
    "Registry",
    "RegistryType",
    "ReportFormat",
    "Space",
    "UnknownAction",
    "dump_config",
    "load_config",
    "parse_config",
]
