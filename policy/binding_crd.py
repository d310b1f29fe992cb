"""The RegistrySpaceBinding CustomResourceDefinition, built from the one set of names.

The chart ships this CRD in ``charts/spacegate/crds/``, written by ``make crds``
(``spacegate bindings crd``) from :func:`binding_crd`; ``tests/policy/test_binding_crd.py``
fails when the file and this function disagree. Every pattern and bound comes from
``policy.names``, the module the config parser checks config bindings with, so the
apiserver refuses exactly the objects the config would refuse as bindings.

What the apiserver rejects, and how:

- the schema: ``spec`` with ``registry`` (a registry name), ``space`` (a Harbor project
  name), ``workspaces`` (1 to :data:`~policy.names.MAX_WORKSPACES` workspace ids, a set, so
  a duplicate is refused); unknown fields are pruned; ``metadata.name`` a DNS subdomain;
- CEL (``x-kubernetes-validations``): ``registry`` and ``space`` are immutable (a transition
  rule, ``self == oldSelf``): another space is another binding, and an object that changed
  what it binds would make its status and every warning about it lie. Every string and
  list is bounded, so the apiserver's CEL cost estimate is small and fixed;
- ``status`` through its own subresource, with ``metav1.Condition`` conditions (a map list
  keyed by ``type``), as the Kubernetes API conventions define them.

Pure data: no I/O.
"""

from __future__ import annotations

from typing import Any

from policy.bindings import API_VERSION, CATEGORY, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR
from policy.bindings import VERSION as BINDING_VERSION
from policy.names import (
    MAX_WORKSPACES,
    REGISTRY_NAME,
    REGISTRY_NAME_MAX,
    SPACE_NAME,
    SPACE_NAME_MAX,
    WORKSPACE_ID,
    WORKSPACE_ID_MAX,
)

__all__ = ["CONDITION_TYPES", "CRD_NAME", "binding_crd"]

CRD_NAME = f"{PLURAL}.{GROUP}"

# The conditions spacegate writes (docs/architecture.md, "Binding objects").
CONDITION_TYPES = ("Ready", "SpaceFound", "Conflicted", "CredentialsProvisioned")

# metav1.Condition, as controller-gen writes it for every Kubernetes API that uses it.
_CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
_CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


def _immutable(field: str, why: str) -> list[dict[str, str]]:
    return [{"rule": "self == oldSelf", "message": f"{field} is immutable: {why}"}]


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One condition, following the Kubernetes API conventions "
        "(metav1.Condition).",
        "required": ["type", "status", "lastTransitionTime", "reason", "message"],
        "properties": {
            "type": {
                "type": "string",
                "description": "Ready, SpaceFound, Conflicted or CredentialsProvisioned.",
                "maxLength": 316,
                "pattern": _CONDITION_TYPE,
            },
            "status": {
                "type": "string",
                "description": "True, False or Unknown.",
                "enum": ["True", "False", "Unknown"],
            },
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "The metadata.generation the condition was set for.",
            },
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When status last changed (not reason or message).",
            },
            "reason": {
                "type": "string",
                "description": "A CamelCase word saying why, for programs.",
                "minLength": 1,
                "maxLength": 1024,
                "pattern": _CONDITION_REASON,
            },
            "message": {
                "type": "string",
                "description": "Why, for humans.",
                "maxLength": 32768,
            },
        },
    }


def _spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Which space of which registry is bound to which workspaces.",
        "required": ["registry", "space", "workspaces"],
        "properties": {
            "registry": {
                "type": "string",
                "description": "The name of a registry in spacegate's config "
                "(registries[].name). Immutable.",
                "minLength": 1,
                "maxLength": REGISTRY_NAME_MAX,
                "pattern": REGISTRY_NAME,
                "x-kubernetes-validations": _immutable(
                    "registry", "create another RegistrySpaceBinding to bind another registry"
                ),
            },
            "space": {
                "type": "string",
                "description": "The space: a Harbor project name. Immutable.",
                "minLength": 1,
                "maxLength": SPACE_NAME_MAX,
                "pattern": SPACE_NAME,
                "x-kubernetes-validations": _immutable(
                    "space", "create another RegistrySpaceBinding to bind another space"
                ),
            },
            "workspaces": {
                "type": "array",
                "description": "The workspace ids (values of the namespaces' workspace "
                "label) whose namespaces may use the space.",
                "minItems": 1,
                "maxItems": MAX_WORKSPACES,
                "x-kubernetes-list-type": "set",
                "items": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": WORKSPACE_ID_MAX,
                    "pattern": WORKSPACE_ID,
                },
            },
        },
    }


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "What spacegate made of the binding; written by spacegate's leader.",
        "properties": {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "The metadata.generation this status describes.",
            },
            "conditions": {
                "type": "array",
                "description": "Ready (the summary), SpaceFound, Conflicted and, with "
                "pull-secret provisioning on, CredentialsProvisioned.",
                "maxItems": 8,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": _condition_schema(),
            },
        },
    }


def binding_crd() -> dict[str, Any]:
    """The CRD as a plain document (what ``kubectl apply`` takes)."""
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "spacegate"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": BINDING_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Registry", "type": "string", "jsonPath": ".spec.registry"},
                        {"name": "Space", "type": "string", "jsonPath": ".spec.space"},
                        {
                            "name": "Workspaces",
                            "type": "string",
                            "jsonPath": ".spec.workspaces",
                        },
                        {"name": "Ready", "type": "string", "jsonPath": ready},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{KIND} ({API_VERSION}): a private registry space "
                            "bound to workspaces, so that the namespaces of those workspaces "
                            "may run its images (spacegate's admission webhook enforces it).",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec_schema(),
                                "status": _status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
