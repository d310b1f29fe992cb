"""The Kubernetes side of provisioning: pull Secrets in namespaces, robot credentials at home.

Two kinds of Secret, both labelled ``app.kubernetes.io/managed-by: spacegate``:

- **pull Secrets**, named ``policy.pullSecretName`` (``registry-secret``), type
  ``kubernetes.io/dockerconfigjson``, one per namespace that needs one. They are listed
  across namespaces with the field selector ``metadata.name=<pullSecretName>``, the only
  form RBAC can restrict by name. A Secret of that name *without* the label belongs to
  someone else and is never touched (:class:`PullSecret` ``managed=False``). The name is
  an argument of every call, not of the store: the writer reads it from the snapshot each
  pass, so a reloaded ``pullSecretName`` is written from the next pass on;
- **robot credentials**, in spacegate's own namespace, one per (registry, workspace):
  Harbor returns a robot's secret only when it creates the robot, so it is kept here and
  restarts and new leaders reuse it instead of rotating.

A pull Secret lives in a tenant's namespace, and a tenant who may edit Secrets there may
write anything into it: its content is read as data, and whatever is not a well-formed
``auths`` map of string logins counts as absent (the next write replaces it), so one
tampered Secret can neither stop a pass nor leak into another namespace.

Lists are paged (``webhook.clients.kube_paging``). Every call is blocking (the official
client); callers run them in a worker thread. Values read back are kept in memory only as
long as a pass needs them and never logged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from webhook.clients.kube_paging import list_items

COMPONENT_LABEL = "spacegate.io/component"
ROBOT_CREDENTIAL = "robot-credential"
PULL_SECRET = "pull-secret"  # noqa: S105 - a label value
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
# The fields of one ``auths`` entry spacegate writes (and compares: the kubelet reads ``auth``
# before ``username``/``password`` when both are there).
LOGIN_FIELDS = ("username", "password", "auth")

# Annotations of a robot credential Secret: what the robot is and grants.
A_REGISTRY = "spacegate.io/registry"
A_WORKSPACE = "spacegate.io/workspace"  # absent: namespaces of no workspace
A_ROBOT_ID = "spacegate.io/robot-id"
A_ROBOT_NAME = "spacegate.io/robot-name"
A_SPACES = "spacegate.io/spaces"
A_CREATED = "spacegate.io/created-at"


@dataclass(frozen=True)
class PullSecret:
    """A Secret named like the pull secret in one namespace, as found."""

    namespace: str
    managed: bool
    auths: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    type: str = DOCKERCONFIGJSON


@dataclass(frozen=True)
class RobotCredential:
    """A robot's login as spacegate keeps it; the password never shows in a repr."""

    registry: str
    workspace: str | None
    robot_id: int
    robot_name: str
    spaces: frozenset[str]
    created_at: float
    password: str = field(repr=False)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.registry, self.workspace)


def _labels(component: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component}


def _b64(data: object, key: str) -> str:
    """The decoded value of ``data[key]``; empty when absent or not base64 UTF-8 text."""
    raw = data.get(key) if isinstance(data, dict) else None
    if not isinstance(raw, str) or not raw:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _auths(content: str) -> dict[str, dict[str, str]]:
    """host -> {username, password, auth} of ``.dockerconfigjson`` text, keeping only
    well-formed entries (the Secret is a tenant's to tamper with)."""
    try:
        parsed = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        return {}
    auths = parsed.get("auths") if isinstance(parsed, dict) else None
    if not isinstance(auths, dict):
        return {}
    kept: dict[str, dict[str, str]] = {}
    for host, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        login = {k: entry.get(k, "") for k in LOGIN_FIELDS}
        if isinstance(host, str) and all(isinstance(v, str) for v in login.values()):
            kept[host] = {k: str(v) for k, v in login.items()}
    return kept


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


class SecretStore:
    """Reads and writes spacegate's Secrets through one ``ApiClient``; credentials in
    ``home``, pull Secrets by the name each call is given."""

    def __init__(self, api_client: client.ApiClient, *, home: str) -> None:
        self._api_client = api_client
        self._core: Any = client.CoreV1Api(api_client)
        self.home = home

    # ------------------------------------------------------------------ pull Secrets

    def list_pull_secrets(self, name: str) -> dict[str, PullSecret]:
        """Every Secret called ``name``, by namespace (paged, by field selector)."""
        found: dict[str, PullSecret] = {}
        selector = [("fieldSelector", f"metadata.name={name}")]
        for secret in list_items(self._api_client, "/api/v1/secrets", selector):
            meta = _meta(secret)
            namespace = meta.get("namespace")
            if not isinstance(namespace, str):
                continue
            managed = _map(meta.get("labels")).get(MANAGED_BY_LABEL) == MANAGED_BY
            kind = secret.get("type")
            kind = kind if isinstance(kind, str) else ""
            auths: dict[str, dict[str, str]] = {}
            if managed and kind == DOCKERCONFIGJSON:
                auths = _auths(_b64(secret.get("data"), ".dockerconfigjson"))
            found[namespace] = PullSecret(namespace, managed, auths, kind)
        return found

    def write_pull_secret(self, namespace: str, name: str, content: bytes, *, exists: bool) -> None:
        """Create or replace spacegate's pull Secret ``name`` in ``namespace``."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name, namespace=namespace, labels=_labels(PULL_SECRET)
            ),
            type=DOCKERCONFIGJSON,
            data={".dockerconfigjson": base64.b64encode(content).decode()},
        )
        if exists:
            self._core.replace_namespaced_secret(name, namespace, body)
            return
        try:
            self._core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile (a previous leader): replace it
                raise
            self._core.replace_namespaced_secret(name, namespace, body)

    def delete_pull_secret(self, namespace: str, name: str) -> None:
        try:
            self._core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ robot credentials

    def list_credentials(self) -> dict[tuple[str, str | None], RobotCredential]:
        """The robot credentials kept in spacegate's namespace, by (registry, workspace)."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={ROBOT_CREDENTIAL}"
        found: dict[tuple[str, str | None], RobotCredential] = {}
        path = f"/api/v1/namespaces/{self.home}/secrets"
        for secret in list_items(self._api_client, path, [("labelSelector", selector)]):
            notes = _map(_meta(secret).get("annotations"))
            try:
                credential = RobotCredential(
                    registry=notes[A_REGISTRY],
                    workspace=notes.get(A_WORKSPACE),
                    robot_id=int(notes[A_ROBOT_ID]),
                    robot_name=notes[A_ROBOT_NAME],
                    spaces=frozenset(s for s in notes.get(A_SPACES, "").split(",") if s),
                    created_at=float(notes[A_CREATED]),
                    password=_b64(secret.get("data"), "password"),
                )
            except (KeyError, ValueError, TypeError, AttributeError):
                continue  # not readable: treated as absent, so a new robot replaces it
            if credential.password:
                found[credential.key] = credential
        return found

    def write_credential(self, name: str, credential: RobotCredential) -> None:
        """Create or replace the credential Secret ``name`` in spacegate's namespace."""
        notes = {
            A_REGISTRY: credential.registry,
            A_ROBOT_ID: str(credential.robot_id),
            A_ROBOT_NAME: credential.robot_name,
            A_SPACES: ",".join(sorted(credential.spaces)),
            A_CREATED: f"{credential.created_at:.0f}",
        }
        if credential.workspace is not None:
            notes[A_WORKSPACE] = credential.workspace
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=self.home,
                labels=_labels(ROBOT_CREDENTIAL),
                annotations=notes,
            ),
            type="Opaque",
            data={
                "username": base64.b64encode(credential.robot_name.encode()).decode(),
                "password": base64.b64encode(credential.password.encode()).decode(),
            },
        )
        try:
            self._core.create_namespaced_secret(self.home, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._core.replace_namespaced_secret(name, self.home, body)

    def delete_credential(self, name: str) -> None:
        try:
            self._core.delete_namespaced_secret(name, self.home)
        except ApiException as exc:
            if exc.status != 404:
                raise
