"""The names a binding is made of: registry names, space names, workspace ids, object names.

One definition of each, read by the config parser (``policy.config``: ``registries[].name``
and every binding), by binding objects (``policy.bindings``) and, as the very same pattern
strings, by the RegistrySpaceBinding CRD the apiserver enforces (``policy.binding_crd``), so a
name one of them accepts is a name all of them accept. Pure, like all of ``policy``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "MAX_WORKSPACES",
    "OBJECT_NAME",
    "OBJECT_NAME_MAX",
    "REGISTRY_NAME",
    "REGISTRY_NAME_MAX",
    "SPACE_NAME",
    "SPACE_NAME_MAX",
    "WORKSPACE_ID",
    "WORKSPACE_ID_MAX",
    "check_object_name",
    "check_registry_name",
    "check_space_name",
    "check_workspace_id",
    "describe",
]

# The patterns are written once, in the dialect both Python's ``re`` and Go's RE2 (the
# apiserver's OpenAPI ``pattern``) read the same way: anchors, classes, groups, no lookaround.
#
# Registry names: a DNS label. They name files (the chart mounts credentials under
# /etc/spacegate/registries/<name>/), Harbor robots and metric labels.
REGISTRY_NAME: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REGISTRY_NAME_MAX: Final = 63
# Space names: Harbor's project name rule (lowercase letters and digits, single separators).
SPACE_NAME: Final = r"^[a-z0-9]+([._-][a-z0-9]+)*$"
SPACE_NAME_MAX: Final = 255
# Workspace ids: namespace label values, non-empty (an empty label value means no workspace).
WORKSPACE_ID: Final = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"
WORKSPACE_ID_MAX: Final = 63
# Object names: DNS subdomains (they appear in messages, logs and warnings).
OBJECT_NAME: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_NAME_MAX: Final = 253
# Workspaces one object binds: enough for a space shared by a whole platform, bounded so the
# apiserver's CEL cost estimate and every message built from a binding stay small.
MAX_WORKSPACES: Final = 256

_REGISTRY = re.compile(REGISTRY_NAME)
_SPACE = re.compile(SPACE_NAME)
_WORKSPACE = re.compile(WORKSPACE_ID)
_OBJECT = re.compile(OBJECT_NAME)


def describe(value: object) -> str:
    """A value as an error message quotes it: strings quoted (a long one cut at 80
    characters, since it may come from a tenant or a hostile object), others by type."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'"{value[:80]}"' + ("…" if len(value) > 80 else "")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def check_registry_name(value: str) -> str | None:
    """Why ``value`` is no registry name, or None when it is one."""
    if len(value) > REGISTRY_NAME_MAX or not _REGISTRY.fullmatch(value):
        return (
            f"expected a registry name (lowercase letters, digits and '-', at most "
            f"{REGISTRY_NAME_MAX} characters, starting and ending with a letter or digit), "
            f"got {describe(value)}"
        )
    return None


def check_space_name(value: str) -> str | None:
    """Why ``value`` is no space (Harbor project) name, or None when it is one."""
    if len(value) > SPACE_NAME_MAX or not _SPACE.fullmatch(value):
        return (
            "expected a space name as Harbor names projects (lowercase letters and digits, "
            f"separated by single '.', '_' or '-', at most {SPACE_NAME_MAX} characters), "
            f"got {describe(value)}"
        )
    return None


def check_workspace_id(value: str) -> str | None:
    """Why ``value`` is no workspace id (a non-empty label value), or None when it is one."""
    if len(value) > WORKSPACE_ID_MAX or not _WORKSPACE.fullmatch(value):
        return (
            "expected a workspace id as a namespace label value carries it (letters, digits, "
            f"'-', '_' and '.', at most {WORKSPACE_ID_MAX} characters, starting and ending "
            f"with a letter or digit), got {describe(value)}"
        )
    return None


def check_object_name(value: str) -> str | None:
    """Why ``value`` is no RegistrySpaceBinding name (a DNS subdomain), or None."""
    if len(value) > OBJECT_NAME_MAX or not _OBJECT.fullmatch(value):
        return (
            "expected a lowercase DNS subdomain (letters, digits, '-' and '.', at most "
            f"{OBJECT_NAME_MAX} characters), got {describe(value)}"
        )
    return None
