"""Sending reviews and checking replies the way the kube-apiserver does.

Every reply is checked against the apiserver's own acceptance rules
(``VerifyAdmissionResponse``, docs/protocol.md §2) by :func:`accepted`; patches are applied
with a real JSON-patch library, because a patch that does not apply is a 500 for the user
even with ``failurePolicy: Ignore``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import json
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
from starlette.types import ASGIApp, Receive, Scope, Send

from policy.snapshot import Snapshot
from webhook.state import SnapshotState


class InProcessClient:
    """An admission app called in this process through ``httpx.ASGITransport``.

    The decision matrix needs no sockets or TLS: the same app, the same endpoints, called
    directly, with the snapshot state put where the lifespan would put it. Offers the
    ``get``/``post`` of a synchronous ``httpx.Client``.
    """

    def __init__(self, app: ASGIApp, state: SnapshotState) -> None:
        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            scope["state"] = {"snapshots": state}
            await app(scope, receive, send)

        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=with_state), base_url="http://spacegate"
        )

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.post(url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.get(url, **kwargs))

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


# What the helpers send with: a TLS client of a running server, or the app in process.
Client = httpx.Client | InProcessClient


JSON_HEADERS = {"Content-Type": "application/json"}
K8S_VERSION = kubernetes_validate.utils.latest_version()

ALLOWED_IMAGE = "harbor.demo.local/library/nginx:1.27"  # public space
TEAM_A_IMAGE = "harbor.demo.local/team-a/web:1.2"  # private, bound to workspace 101
TEAM_B_IMAGE = "harbor.demo.local/team-b/api:1.0"  # private, bound to workspace 102


def post(client: Client, path: str, data: Any, **kwargs: Any) -> httpx.Response:
    return client.post(path, content=json.dumps(data), headers=JSON_HEADERS, **kwargs)


def accepted(sent: dict[str, Any], http: httpx.Response, *, mutating: bool) -> dict[str, Any]:
    """The reply's ``response`` after the checks the apiserver makes; fails otherwise."""
    assert http.status_code == 200, http.text
    assert http.headers["content-type"] == "application/json"
    body = http.json()
    assert body["apiVersion"] == sent["apiVersion"]
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if mutating:
        assert ("patch" in response) == ("patchType" in response)
        if "patch" in response:
            assert response["patchType"] == "JSONPatch"
            assert response["patch"]
    else:
        assert response.get("patch") is None
        assert response.get("patchType") is None
    if not response["allowed"]:
        assert response["status"]["code"] >= 400
        assert response["status"]["message"]
    for warning in response.get("warnings", []):
        assert warning.isprintable()
    for key in response.get("auditAnnotations", {}):
        assert "/" not in key
    return dict(response)


def validate(client: Client, data: dict[str, Any]) -> dict[str, Any]:
    return accepted(data, post(client, "/validate", data), mutating=False)


def mutate(client: Client, data: dict[str, Any]) -> dict[str, Any]:
    return accepted(data, post(client, "/mutate", data), mutating=True)


def patch_ops(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    ops = json.loads(base64.b64decode(response["patch"], validate=True))
    assert isinstance(ops, list)
    return ops


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    result = jsonpatch.JsonPatch(patch_ops(response)).apply(copy.deepcopy(obj))
    assert isinstance(result, dict)
    return result


def with_policy(snapshot: Snapshot, **changes: Any) -> Snapshot:
    policy = dataclasses.replace(snapshot.policy, **changes)
    return Snapshot.from_config(dataclasses.replace(snapshot.config, policy=policy))
