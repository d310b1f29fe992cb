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

Every write is conditional on what was read, so a Secret someone else wrote in between is
never replaced or deleted: a create is only a create (a name taken meanwhile is left alone),
an update carries the ``resourceVersion`` read, and a delete carries the ``uid`` and
``resourceVersion`` read as preconditions. The apiserver refuses a write that lost such a
race with 409, raised as :class:`WriteConflict`; the next pass reads the Secret again and
decides afresh. A Secret is spacegate's only with both of its labels *and* its type: a
foreign Secret labelled as spacegate's but of another type (a service-account token, say)
is never changed or deleted.

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
from webhook.clients.kube_writes import send
from webhook.leader.provisioning.holders import Holders

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
# Data key of a robot credential Secret: the namespaces the credential was given to.
D_HOLDERS = "namespaces"


class WriteConflict(Exception):
    """A conditional write lost a race: the Secret was created, changed or deleted by someone
    else since it was read. Nothing was written; the next pass reads it again."""


@dataclass(frozen=True)
class Version:
    """The identity of a Secret as read: what a conditional update or delete must match."""

    uid: str
    resource_version: str


@dataclass(frozen=True)
class PullSecret:
    """A Secret named like the pull secret in one namespace, as found.

    ``managed``: labelled as spacegate's pull secret and of its type; anything else of that
    name is someone else's.
    """

    namespace: str
    managed: bool
    auths: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    type: str = DOCKERCONFIGJSON
    version: Version | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RobotCredential:
    """A robot's login as spacegate keeps it; the password never shows in a repr.

    ``holders``: the namespaces it was given to (None: no readable record, as written by a
    spacegate before the record existed); ``version``: the Secret as read, None when not
    read from the cluster (a credential just created, a dry run's stand-in).
    """

    registry: str
    workspace: str | None
    robot_id: int
    robot_name: str
    spaces: frozenset[str]
    created_at: float
    password: str = field(repr=False)
    holders: Holders | None = field(default=None, repr=False)
    version: Version | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.registry, self.workspace)


def _labels(component: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component}


def _raw(data: object, key: str) -> bytes:
    """The decoded bytes of ``data[key]``; empty when absent or not base64."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return b""


def _b64(data: object, key: str) -> str:
    """The decoded value of ``data[key]``; empty when absent or not base64 UTF-8 text."""
    try:
        return _raw(data, key).decode()
    except UnicodeDecodeError:
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


def _version(obj: Mapping[str, Any]) -> Version | None:
    meta = _meta(obj)
    uid, resource_version = meta.get("uid"), meta.get("resourceVersion")
    if isinstance(uid, str) and isinstance(resource_version, str):
        return Version(uid, resource_version)
    return None


def _ours(obj: Mapping[str, Any], component: str, kind: str) -> bool:
    """Labelled as spacegate's ``component`` and of type ``kind``: what the chart's admission
    policy lets spacegate change (anything else of the name is someone else's)."""
    labels = _map(_meta(obj).get("labels"))
    return (
        labels.get(MANAGED_BY_LABEL) == MANAGED_BY
        and labels.get(COMPONENT_LABEL) == component
        and obj.get("type") == kind
    )


def _conflict(exc: ApiException, what: str) -> WriteConflict | None:
    """The race ``exc`` reports, if it is one (409; 404 for an update: deleted meanwhile)."""
    if exc.status == 409 or (exc.status == 404 and what.startswith("update")):
        return WriteConflict(f"{what}: changed by someone else since it was read; left alone")
    return None


class SecretStore:
    """Reads and writes spacegate's Secrets through one ``ApiClient``; credentials in
    ``home``, pull Secrets by the name each call is given."""

    def __init__(self, api_client: client.ApiClient, *, home: str) -> None:
        self._api_client = api_client
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
            managed = _ours(secret, PULL_SECRET, DOCKERCONFIGJSON)
            kind = secret.get("type")
            kind = kind if isinstance(kind, str) else ""
            auths: dict[str, dict[str, str]] = {}
            if managed:
                auths = _auths(_b64(secret.get("data"), ".dockerconfigjson"))
            found[namespace] = PullSecret(namespace, managed, auths, kind, _version(secret))
        return found

    def _pull_secret(
        self, namespace: str, name: str, content: bytes, version: str = ""
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": _labels(PULL_SECRET),
        }
        if version:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": DOCKERCONFIGJSON,
            "data": {".dockerconfigjson": base64.b64encode(content).decode()},
        }

    def create_pull_secret(self, namespace: str, name: str, content: bytes) -> None:
        """Create spacegate's pull Secret ``name`` in ``namespace``; only a create: a Secret
        of that name made meanwhile is left alone (:class:`WriteConflict`)."""
        try:
            send(
                self._api_client,
                "POST",
                f"/api/v1/namespaces/{namespace}/secrets",
                self._pull_secret(namespace, name, content),
            )
        except ApiException as exc:
            raise _conflict(exc, f"create Secret {namespace}/{name}") or exc from None

    def update_pull_secret(
        self, namespace: str, name: str, content: bytes, version: Version
    ) -> None:
        """Replace the pull Secret as it was read (``version``), and nothing written since."""
        body = self._pull_secret(namespace, name, content, version.resource_version)
        try:
            send(self._api_client, "PUT", f"/api/v1/namespaces/{namespace}/secrets/{name}", body)
        except ApiException as exc:
            raise _conflict(exc, f"update Secret {namespace}/{name}") or exc from None

    def delete_pull_secret(self, namespace: str, name: str, version: Version) -> None:
        """Delete the pull Secret as it was read (``version``); one already gone is done."""
        self._delete(namespace, name, version)

    def _delete(self, namespace: str, name: str, version: Version) -> None:
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": version.uid, "resourceVersion": version.resource_version},
        }
        try:
            send(
                self._api_client,
                "DELETE",
                f"/api/v1/namespaces/{namespace}/secrets/{name}",
                options,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _conflict(exc, f"delete Secret {namespace}/{name}") or exc from None

    # ------------------------------------------------------------------ robot credentials

    def list_credentials(self) -> dict[tuple[str, str | None], RobotCredential]:
        """The robot credentials kept in spacegate's namespace, by (registry, workspace)."""
        found: dict[tuple[str, str | None], RobotCredential] = {}
        for secret in self._credential_secrets():
            notes = _map(_meta(secret).get("annotations"))
            data = secret.get("data")
            try:
                credential = RobotCredential(
                    registry=notes[A_REGISTRY],
                    workspace=notes.get(A_WORKSPACE),
                    robot_id=int(notes[A_ROBOT_ID]),
                    robot_name=notes[A_ROBOT_NAME],
                    spaces=frozenset(s for s in notes.get(A_SPACES, "").split(",") if s),
                    created_at=float(notes[A_CREATED]),
                    password=_b64(data, "password"),
                    holders=Holders.decode(_raw(data, D_HOLDERS)),
                    version=_version(secret),
                )
            except (KeyError, ValueError, TypeError, AttributeError):
                continue  # not readable: treated as absent, so a new robot replaces it
            if credential.password:
                found[credential.key] = credential
        return found

    def _credential_secrets(self, name: str | None = None) -> list[Mapping[str, Any]]:
        """spacegate's credential Secrets at home (the one called ``name``), as read."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={ROBOT_CREDENTIAL}"
        params = [("labelSelector", selector)]
        if name is not None:
            params.append(("fieldSelector", f"metadata.name={name}"))
        path = f"/api/v1/namespaces/{self.home}/secrets"
        return [
            secret
            for secret in list_items(self._api_client, path, params)
            if _ours(secret, ROBOT_CREDENTIAL, "Opaque")
        ]

    def write_credential(
        self, name: str, credential: RobotCredential, version: Version | None = None
    ) -> None:
        """Keep ``credential`` in the Secret ``name`` at home: replace it as read
        (``version``), or create it. A create that finds the name taken replaces the Secret
        only if it is spacegate's credential (one it could not read), as read just then;
        anything else of that name is left alone (:class:`WriteConflict`)."""
        notes = {
            A_REGISTRY: credential.registry,
            A_ROBOT_ID: str(credential.robot_id),
            A_ROBOT_NAME: credential.robot_name,
            A_SPACES: ",".join(sorted(credential.spaces)),
            A_CREATED: f"{credential.created_at:.0f}",
        }
        if credential.workspace is not None:
            notes[A_WORKSPACE] = credential.workspace
        data: dict[str, str] = {
            "username": base64.b64encode(credential.robot_name.encode()).decode(),
            "password": base64.b64encode(credential.password.encode()).decode(),
        }
        if credential.holders is not None:
            data[D_HOLDERS] = base64.b64encode(credential.holders.encode()).decode()

        def body(resource_version: str | None) -> dict[str, Any]:
            metadata: dict[str, Any] = {
                "name": name,
                "namespace": self.home,
                "labels": _labels(ROBOT_CREDENTIAL),
                "annotations": notes,
            }
            if resource_version:
                metadata["resourceVersion"] = resource_version
            return {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "data": data,
            }

        what = f"update Secret {self.home}/{name}"
        path = f"/api/v1/namespaces/{self.home}/secrets"
        try:
            if version is not None:
                send(self._api_client, "PUT", f"{path}/{name}", body(version.resource_version))
                return
            try:
                send(self._api_client, "POST", path, body(None))
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
            found = [_version(s) for s in self._credential_secrets(name)]
            if not found or found[0] is None:
                raise WriteConflict(
                    f"create Secret {self.home}/{name}: a Secret of that name exists and is not "
                    "spacegate's robot credential; left alone (delete or rename it)"
                )
            send(self._api_client, "PUT", f"{path}/{name}", body(found[0].resource_version))
        except ApiException as exc:
            raise _conflict(exc, what) or exc from None

    def delete_credential(self, name: str, version: Version) -> None:
        """Delete the credential Secret ``name`` as it was read; one already gone is done."""
        self._delete(self.home, name, version)
