"""The Secrets store: pull Secrets in tenants' namespaces, robot credentials at home.

Against the Kubernetes fake with the real client. A pull Secret lives where a tenant may
edit it, so besides the round trips these tests tamper with one and check that nothing
breaks and nothing of it is trusted.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from kubernetes import client

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME
from webhook.leader.provisioning.plan import dockerconfigjson, login_entry
from webhook.leader.provisioning.secrets import (
    A_REGISTRY,
    COMPONENT_LABEL,
    DOCKERCONFIGJSON,
    ROBOT_CREDENTIAL,
    RobotCredential,
    SecretStore,
)

SECRETS = "/api/v1/secrets"
NAME = "registry-secret"
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pull_secret(
    kube: FakeKubernetes, namespace: str, content: bytes, *, name: str = NAME, **extra: Any
) -> None:
    if kube.namespace(namespace) is None:
        kube.create_namespace(namespace)
    body = {
        "metadata": {"name": name, "labels": extra.pop("labels", MANAGED)},
        "type": extra.pop("type", DOCKERCONFIGJSON),
        "data": {".dockerconfigjson": b64(content)},
    }
    kube.create_object(SECRETS, namespace, body)


def content(*hosts: str, user: str = "robot$r1", password: str = "pw1") -> bytes:
    return dockerconfigjson({host: login_entry(user, password) for host in hosts})


def credential(workspace: str | None = "101", robot_id: int = 7) -> RobotCredential:
    return RobotCredential(
        "harbor", workspace, robot_id, f"robot$r{robot_id}", frozenset({"team-a"}), 1e9, "s3cret"
    )


def test_pull_secrets_are_found_by_name_in_every_namespace_with_one_field_selected_list(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("harbor.example.com"))
    pull_secret(kube, "b-dev", content("harbor.example.com"), labels={})  # someone else's
    pull_secret(kube, "b-dev", content("x"), name="other")
    kube.clear_requests()

    found = SecretStore(api, home=HOME).list_pull_secrets(NAME)

    assert sorted(found) == ["a-dev", "b-dev"]
    assert found["a-dev"].managed
    assert found["a-dev"].auths == {"harbor.example.com": login_entry("robot$r1", "pw1")}
    assert not found["b-dev"].managed and not found["b-dev"].auths  # never read
    [listed] = kube.requests
    assert (listed.path, listed.params["fieldSelector"]) == (SECRETS, f"metadata.name={NAME}")


def test_a_pull_secret_a_tenant_tampered_with_reads_as_holding_no_login(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "fine", content("h"))
    tampered = {
        "not-json": b"{{{",
        "auths-a-list": orjson.dumps({"auths": ["h"]}),
        "entry-a-string": orjson.dumps({"auths": {"h": "robot:pw"}}),
        "password-a-number": orjson.dumps({"auths": {"h": {"username": "u", "password": 5}}}),
        "not-an-object": b"[1, 2]",
    }
    for namespace, raw in tampered.items():
        pull_secret(kube, namespace, raw)

    found = SecretStore(api, home=HOME).list_pull_secrets(NAME)

    assert found["fine"].auths == {"h": login_entry("robot$r1", "pw1")}
    for namespace in tampered:
        assert found[namespace].managed and found[namespace].auths == {}, namespace


def test_a_pull_secret_is_created_then_replaced_and_reads_back_as_written(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace("a-dev")
    store = SecretStore(api, home=HOME)
    store.write_pull_secret("a-dev", NAME, content("h", password="one"), exists=False)
    store.write_pull_secret("a-dev", NAME, content("h", password="two"), exists=True)

    written = kube.get_object(SECRETS, "a-dev", NAME)
    assert written is not None
    assert written["type"] == DOCKERCONFIGJSON
    assert written["metadata"]["labels"] == {**MANAGED, COMPONENT_LABEL: "pull-secret"}
    assert store.list_pull_secrets(NAME)["a-dev"].auths == {"h": login_entry("robot$r1", "two")}


def test_a_pull_secret_created_meanwhile_by_a_previous_leader_is_replaced(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h", password="old"))
    store = SecretStore(api, home=HOME)
    store.write_pull_secret("a-dev", NAME, content("h", password="new"), exists=False)
    assert store.list_pull_secrets(NAME)["a-dev"].auths["h"]["password"] == "new"


def test_deleting_a_pull_secret_that_is_already_gone_is_done(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h"))
    store = SecretStore(api, home=HOME)
    store.delete_pull_secret("a-dev", NAME)
    store.delete_pull_secret("a-dev", NAME)
    assert kube.get_object(SECRETS, "a-dev", NAME) is None


def test_robot_credentials_are_kept_at_home_and_read_back_by_registry_and_workspace(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    store.write_credential("cred-101", credential("101", 7))
    store.write_credential("cred-none", credential(None, 8))
    store.write_credential("cred-101", credential("101", 9))  # replaced: a new robot

    found = store.list_credentials()

    assert sorted(found, key=str) == [("harbor", "101"), ("harbor", None)]
    assert found[("harbor", "101")] == credential("101", 9)
    assert found[("harbor", None)].workspace is None
    assert "s3cret" not in repr(found)
    [listed] = [r for r in kube.requests if r.method == "GET"]
    assert listed.params["labelSelector"] == (
        f"{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}={ROBOT_CREDENTIAL}"
    )


def test_an_unreadable_credential_counts_as_absent_so_a_new_robot_replaces_it(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    store.write_credential("good", credential("101", 7))
    labels = {**MANAGED, COMPONENT_LABEL: ROBOT_CREDENTIAL}
    for name, notes, data in (
        ("no-id", {A_REGISTRY: "harbor"}, {"password": b64(b"pw")}),
        ("empty-password", credential_notes(workspace="102"), {}),
    ):
        body = {"metadata": {"name": name, "labels": labels, "annotations": notes}, "data": data}
        kube.create_object(SECRETS, HOME, body)

    assert list(store.list_credentials()) == [("harbor", "101")]


def credential_notes(workspace: str) -> dict[str, str]:
    return {
        A_REGISTRY: "harbor",
        "spacegate.io/workspace": workspace,
        "spacegate.io/robot-id": "3",
        "spacegate.io/robot-name": "robot$r3",
        "spacegate.io/spaces": "team-a",
        "spacegate.io/created-at": "1000",
    }


def test_deleting_a_credential_that_is_already_gone_is_done(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    store.write_credential("cred", credential())
    store.delete_credential("cred")
    store.delete_credential("cred")
    assert store.list_credentials() == {}
