"""The Kubernetes side of provisioning: pull Secrets in namespaces, robot credentials at home.

Two kinds of Secret, both labelled ``app.kubernetes.io/managed-by: spacegate``:

- **pull Secrets**, named ``policy.pullSecretName`` (``registry-secret``), type
  ``kubernetes.io/dockerconfigjson``, one per namespace that needs one. They are listed
  across namespaces with the field selector ``metadata.name=<pullSecretName>``, the only
  form RBAC can restrict by name. A Secret of that name *without* the label belongs to
  someone else and is never touched (:class:`PullSecret` ``managed=False``);
- **robot credentials**, in spacegate's own namespace, one per (registry, workspace):
  Harbor returns a robot's secret only when it creates the robot, so it is kept here and
  restarts and new leaders reuse it instead of rotating.

Every call is blocking (the official client); callers run them in a worker thread. Values
read back are kept in memory only as long as a reconcile pass needs them and never logged.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL

COMPONENT_LABEL = "spacegate.io/component"
ROBOT_CREDENTIAL = "robot-credential"
PULL_SECRET = "pull-secret"  # noqa: S105 - a label value
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"

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
    secret_name: str = ""

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.registry, self.workspace)


def dockerconfigjson(auths: Mapping[str, tuple[str, str]]) -> bytes:
    """The ``.dockerconfigjson`` bytes for host -> (username, password)."""
    entries = {
        host: {
            "username": user,
            "password": password,
            "auth": base64.b64encode(f"{user}:{password}".encode()).decode(),
        }
        for host, (user, password) in sorted(auths.items())
    }
    return orjson.dumps({"auths": entries}, option=orjson.OPT_SORT_KEYS)


def _labels(component: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component}


def _b64(data: Mapping[str, str] | None, key: str) -> str:
    raw = (data or {}).get(key)
    return base64.b64decode(raw).decode() if raw else ""


class SecretStore:
    """Reads and writes spacegate's Secrets through one ``ApiClient``."""

    def __init__(self, api_client: client.ApiClient, *, pull_secret_name: str, home: str) -> None:
        self._core: Any = client.CoreV1Api(api_client)
        self.pull_secret_name = pull_secret_name
        self.home = home

    # ------------------------------------------------------------------ pull Secrets

    def list_pull_secrets(self) -> dict[str, PullSecret]:
        """Every Secret named like the pull secret, by namespace (paged, by field selector)."""
        found: dict[str, PullSecret] = {}
        token: str | None = None
        while True:
            page = self._core.list_secret_for_all_namespaces(
                field_selector=f"metadata.name={self.pull_secret_name}",
                limit=500,
                _continue=token,
            )
            for secret in page.items:
                labels = secret.metadata.labels or {}
                managed = labels.get(MANAGED_BY_LABEL) == MANAGED_BY
                auths: dict[str, dict[str, str]] = {}
                if managed and secret.type == DOCKERCONFIGJSON:
                    raw = _b64(secret.data, ".dockerconfigjson")
                    try:
                        parsed = orjson.loads(raw) if raw else {}
                    except orjson.JSONDecodeError:
                        parsed = {}
                    auths = parsed.get("auths", {}) if isinstance(parsed, dict) else {}
                found[secret.metadata.namespace] = PullSecret(
                    secret.metadata.namespace, managed, auths, secret.type or ""
                )
            token = page.metadata._continue if page.metadata else None
            if not token:
                return found

    def write_pull_secret(self, namespace: str, content: bytes, *, exists: bool) -> None:
        """Create or replace spacegate's pull Secret in ``namespace``."""
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=self.pull_secret_name, namespace=namespace, labels=_labels(PULL_SECRET)
            ),
            type=DOCKERCONFIGJSON,
            data={".dockerconfigjson": base64.b64encode(content).decode()},
        )
        if exists:
            self._core.replace_namespaced_secret(self.pull_secret_name, namespace, body)
            return
        try:
            self._core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile (a previous leader): replace it
                raise
            self._core.replace_namespaced_secret(self.pull_secret_name, namespace, body)

    def delete_pull_secret(self, namespace: str) -> None:
        try:
            self._core.delete_namespaced_secret(self.pull_secret_name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------ robot credentials

    def list_credentials(self) -> dict[tuple[str, str | None], RobotCredential]:
        """The robot credentials kept in spacegate's namespace, by (registry, workspace)."""
        page = self._core.list_namespaced_secret(
            self.home,
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={ROBOT_CREDENTIAL}",
        )
        found: dict[tuple[str, str | None], RobotCredential] = {}
        for secret in page.items:
            notes = secret.metadata.annotations or {}
            try:
                credential = RobotCredential(
                    registry=notes[A_REGISTRY],
                    workspace=notes.get(A_WORKSPACE),
                    robot_id=int(notes[A_ROBOT_ID]),
                    robot_name=notes[A_ROBOT_NAME],
                    spaces=frozenset(s for s in notes.get(A_SPACES, "").split(",") if s),
                    created_at=float(notes[A_CREATED]),
                    password=_b64(secret.data, "password"),
                    secret_name=secret.metadata.name,
                )
            except (KeyError, ValueError):
                continue  # not readable: treated as absent, so a new robot replaces it
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
