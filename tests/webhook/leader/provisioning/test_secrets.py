"""The Secrets store: pull Secrets in tenants' namespaces, robot credentials at home.

Against the Kubernetes fake with the real client. A pull Secret lives where a tenant may
edit it, so besides the round trips these tests tamper with one and check that nothing
breaks and nothing of it is trusted.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import replace
from typing import Any

import orjson
import pytest
from kubernetes import client

from policy.provisioning import MANAGED_BY, MANAGED_BY_LABEL
from tests.fakes.kubernetes import FakeKubernetes
from tests.webhook.leader.conftest import HOME
from webhook.leader.provisioning.holders import Holders
from webhook.leader.provisioning.plan import dockerconfigjson, login_entry
from webhook.leader.provisioning.secrets import (
    A_REGISTRY,
    COMPONENT_LABEL,
    DOCKERCONFIGJSON,
    PULL_SECRET,
    ROBOT_CREDENTIAL,
    RobotCredential,
    SecretStore,
    Version,
    WriteConflict,
)

SECRETS = "/api/v1/secrets"
NAME = "registry-secret"
MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}
PULL_LABELS = {**MANAGED, COMPONENT_LABEL: PULL_SECRET}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pull_secret(
    kube: FakeKubernetes, namespace: str, content: bytes, *, name: str = NAME, **extra: Any
) -> None:
    if kube.namespace(namespace) is None:
        kube.create_namespace(namespace)
    body = {
        "metadata": {"name": name, "labels": extra.pop("labels", PULL_LABELS)},
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


def version_of(kube: FakeKubernetes, namespace: str, name: str = NAME) -> Version:
    found = kube.get_object(SECRETS, namespace, name)
    assert found is not None
    return Version(found["metadata"]["uid"], found["metadata"]["resourceVersion"])


def test_a_pull_secret_is_created_then_updated_as_read_and_reads_back_as_written(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    kube.create_namespace("a-dev")
    store = SecretStore(api, home=HOME)
    store.create_pull_secret("a-dev", NAME, content("h", password="one"))
    read = store.list_pull_secrets(NAME)["a-dev"]
    assert read.version == version_of(kube, "a-dev")
    store.update_pull_secret("a-dev", NAME, content("h", password="two"), read.version)

    written = kube.get_object(SECRETS, "a-dev", NAME)
    assert written is not None
    assert written["type"] == DOCKERCONFIGJSON
    assert written["metadata"]["labels"] == PULL_LABELS
    assert store.list_pull_secrets(NAME)["a-dev"].auths == {"h": login_entry("robot$r1", "two")}


def test_a_create_that_finds_the_name_taken_leaves_that_secret_alone(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h", password="theirs"), labels={"owner": "platform"})
    before = kube.get_object(SECRETS, "a-dev", NAME)

    with pytest.raises(WriteConflict, match="create Secret a-dev/registry-secret: changed by"):
        SecretStore(api, home=HOME).create_pull_secret("a-dev", NAME, content("h"))

    assert kube.get_object(SECRETS, "a-dev", NAME) == before  # not replaced, not relabelled
    assert [r.method for r in kube.requests if "/secrets" in r.path] == ["POST"]


def test_an_update_of_a_secret_changed_since_it_was_read_is_refused_and_leaves_it(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h", password="old"))
    store = SecretStore(api, home=HOME)
    read = store.list_pull_secrets(NAME)["a-dev"]
    assert read.version is not None
    # Meanwhile the tenant deletes spacegate's Secret and puts their own in its place.
    kube.delete_object(SECRETS, "a-dev", NAME)
    pull_secret(kube, "a-dev", content("h", password="theirs"), labels={})
    theirs = kube.get_object(SECRETS, "a-dev", NAME)

    with pytest.raises(WriteConflict, match="update Secret a-dev/registry-secret"):
        store.update_pull_secret("a-dev", NAME, content("h", password="new"), read.version)

    assert kube.get_object(SECRETS, "a-dev", NAME) == theirs


def test_an_update_of_a_secret_deleted_since_it_was_read_does_not_create_it(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h"))
    store = SecretStore(api, home=HOME)
    read = store.list_pull_secrets(NAME)["a-dev"]
    assert read.version is not None
    kube.delete_object(SECRETS, "a-dev", NAME)

    with pytest.raises(WriteConflict):
        store.update_pull_secret("a-dev", NAME, content("h", password="new"), read.version)
    assert kube.get_object(SECRETS, "a-dev", NAME) is None


def test_a_delete_carries_the_uid_and_version_read_so_a_replacement_is_left_alone(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h"))
    store = SecretStore(api, home=HOME)
    read = store.list_pull_secrets(NAME)["a-dev"]
    assert read.version is not None
    kube.delete_object(SECRETS, "a-dev", NAME)
    pull_secret(kube, "a-dev", content("h", password="theirs"), labels={})  # a new uid

    with pytest.raises(WriteConflict, match="delete Secret a-dev/registry-secret"):
        store.delete_pull_secret("a-dev", NAME, read.version)
    assert kube.get_object(SECRETS, "a-dev", NAME) is not None


def test_deleting_a_pull_secret_that_is_already_gone_is_done(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    pull_secret(kube, "a-dev", content("h"))
    store = SecretStore(api, home=HOME)
    read = version_of(kube, "a-dev")
    store.delete_pull_secret("a-dev", NAME, read)
    store.delete_pull_secret("a-dev", NAME, read)
    assert kube.get_object(SECRETS, "a-dev", NAME) is None


@pytest.mark.parametrize(
    ("labels", "kind"),
    [
        pytest.param(PULL_LABELS, "kubernetes.io/service-account-token", id="token-type"),
        pytest.param(PULL_LABELS, "Opaque", id="opaque"),
        pytest.param(MANAGED, DOCKERCONFIGJSON, id="no-component-label"),
        pytest.param({COMPONENT_LABEL: PULL_SECRET}, DOCKERCONFIGJSON, id="no-managed-by"),
    ],
)
def test_a_secret_is_spacegates_only_with_both_its_labels_and_its_type(
    kube: FakeKubernetes, api: client.ApiClient, labels: dict[str, str], kind: str
) -> None:
    pull_secret(kube, "a-dev", content("h"), labels=labels, type=kind)

    found = SecretStore(api, home=HOME).list_pull_secrets(NAME)["a-dev"]

    assert not found.managed and not found.auths


def test_robot_credentials_are_kept_at_home_and_read_back_by_registry_and_workspace(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    store.write_credential("cred-101", credential("101", 7))
    store.write_credential("cred-none", credential(None, 8))
    kept = store.list_credentials()[("harbor", "101")].version
    store.write_credential("cred-101", credential("101", 9), kept)  # replaced: a new robot
    kube.clear_requests()

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
    kept = store.list_credentials()[("harbor", "101")].version
    assert kept is not None
    store.delete_credential("cred", kept)
    store.delete_credential("cred", kept)
    assert store.list_credentials() == {}


def test_a_credential_is_created_only_where_its_name_is_free_or_spacegates(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    """A create that finds the name taken replaces only a credential Secret of spacegate's
    that could not be read (as read just then), never someone else's Secret."""
    store = SecretStore(api, home=HOME)
    theirs = {"metadata": {"name": "cred-foreign", "labels": {"owner": "ops"}}, "data": {}}
    kube.create_object(SECRETS, HOME, theirs)
    before = kube.get_object(SECRETS, HOME, "cred-foreign")
    labels = {**MANAGED, COMPONENT_LABEL: ROBOT_CREDENTIAL}
    unreadable = {"metadata": {"name": "cred-ours", "labels": labels}, "data": {}}
    kube.create_object(SECRETS, HOME, unreadable)

    with pytest.raises(WriteConflict, match="is not spacegate's robot credential"):
        store.write_credential("cred-foreign", credential("101", 7))
    store.write_credential("cred-ours", credential("102", 8))

    assert kube.get_object(SECRETS, HOME, "cred-foreign") == before
    assert list(store.list_credentials()) == [("harbor", "102")]


def test_a_credential_changed_since_it_was_read_is_not_overwritten(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    store.write_credential("cred", credential("101", 7))
    read = store.list_credentials()[("harbor", "101")].version
    assert read is not None
    store.write_credential("cred", credential("101", 8), read)  # another leader's rotation

    with pytest.raises(WriteConflict):
        store.write_credential("cred", credential("101", 9), read)
    with pytest.raises(WriteConflict):
        store.delete_credential("cred", read)
    assert store.list_credentials()[("harbor", "101")].robot_id == 8


def test_the_namespaces_a_credential_was_given_to_are_kept_with_it(
    kube: FakeKubernetes, api: client.ApiClient
) -> None:
    store = SecretStore(api, home=HOME)
    given = Holders.of({"a-dev", "a-prod"})
    store.write_credential("cred", replace(credential("101", 7), holders=given))

    [kept] = store.list_credentials().values()

    assert kept.holders == given
    assert kept.holders is not None and kept.holders.names == frozenset({"a-dev", "a-prod"})


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(b"", id="absent"),
        pytest.param(b"zlib:not-deflate", id="not-deflate"),
        pytest.param(b"zlib:" + zlib.compress(b"UPPER_case\na-dev"), id="not-namespace-names"),
        pytest.param(b"zlib:" + zlib.compress(b"a" * (9 * 1024 * 1024)), id="inflates-too-far"),
        pytest.param(b"sha256:xyz", id="bad-digest"),
        pytest.param(b"names: a-dev", id="unknown-form"),
    ],
)
def test_a_record_that_cannot_be_read_counts_as_no_record(
    kube: FakeKubernetes, api: client.ApiClient, record: bytes
) -> None:
    """No record makes the robot rotate once, which is what an unknown past calls for."""
    store = SecretStore(api, home=HOME)
    store.write_credential("cred", credential("101", 7))
    secret = kube.get_object(SECRETS, HOME, "cred")
    assert secret is not None
    secret["data"]["namespaces"] = b64(record)
    kube.replace_object(SECRETS, HOME, secret)

    [kept] = store.list_credentials().values()

    assert kept.holders is None and kept.password == "s3cret"
