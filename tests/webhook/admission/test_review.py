"""The AdmissionReview codec on its own: what is accepted, and replies the apiserver accepts.

The checks mirror ``VerifyAdmissionResponse`` (docs/protocol.md §2); the
server-level tests in ``test_app.py`` repeat the important ones over TLS.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from policy.decision import Decision
from webhook.admission.review import (
    V1,
    V1BETA1,
    EncodedReply,
    MalformedReview,
    Reply,
    allow,
    deny,
    encode_review,
    encode_status,
    invalid_reply,
    parse_review,
    reply_for,
)

from ..conftest import deployment, pod, review


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def decoded(raw: bytes) -> dict[str, Any]:
    result = orjson.loads(raw)
    assert isinstance(result, dict)
    return result


# --------------------------------------------------------------------------- decoding


def test_a_pod_create_is_decoded_with_its_namespace_name_and_object() -> None:
    request = parse_review(body(review(pod("nginx"), namespace="sandbox", dry_run=True)))

    assert request.api_version == V1
    assert request.operation == "CREATE"
    assert (request.group, request.kind) == ("", "Pod")
    assert (request.namespace, request.name) == ("sandbox", "app")
    assert request.dry_run is True
    assert request.object is not None
    assert request.object["spec"]["containers"][0]["image"] == "nginx"
    assert request.is_workload


def test_the_namespace_falls_back_to_the_objects_metadata() -> None:
    obj = pod("nginx")
    obj["metadata"]["namespace"] = "team-b-dev"

    assert parse_review(body(review(obj, namespace=None))).namespace == "team-b-dev"


def test_a_generated_name_is_reported_when_the_request_has_no_name() -> None:
    obj = pod("nginx")
    obj["metadata"] = {"generateName": "web-7d9f-"}
    data = review(obj)
    del data["request"]["name"]

    assert parse_review(body(data)).name == "web-7d9f-*"


def test_a_v1beta1_review_is_accepted_and_remembered() -> None:
    assert parse_review(body(review(pod("nginx"), api_version=V1BETA1))).api_version == V1BETA1


def test_delete_needs_no_object_and_keeps_none() -> None:
    request = parse_review(body(review(None, operation="DELETE", old_object=pod("nginx"))))

    assert request.object is None
    assert request.operation == "DELETE"


def test_a_custom_resource_named_like_a_workload_is_not_a_workload() -> None:
    data = review({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "spec": {}})
    data["request"]["kind"] = {"group": "batch.volcano.sh", "version": "v1alpha1", "kind": "Job"}

    assert not parse_review(body(data)).is_workload


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "empty request body"),
        (b"  \n", "empty request body"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "is an array"),
        (b'"AdmissionReview"', "is a string"),
        (body({"apiVersion": "v1", "kind": "Pod"}), "expected kind AdmissionReview"),
        (body({"apiVersion": "admission.k8s.io/v2", "kind": "AdmissionReview"}), "v2"),
        (body({"apiVersion": V1, "kind": "AdmissionReview"}), "request is null"),
        (body({"apiVersion": V1, "kind": "AdmissionReview", "request": {}}), "uid is missing"),
        (
            body({"apiVersion": V1, "kind": "AdmissionReview", "request": {"uid": 7}}),
            "uid is missing",
        ),
    ],
)
def test_unusable_bodies_are_refused_without_a_uid(raw: bytes, words: str) -> None:
    with pytest.raises(MalformedReview) as caught:
        parse_review(raw)

    assert words in caught.value.message
    assert caught.value.uid is None
    assert caught.value.code == 400


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"object": None}, "request.object is null; CREATE needs the object"),
        ({"object": [1]}, "request.object is an array"),
        ({"operation": "PATCH"}, "'PATCH' is not one of CREATE"),
        ({"kind": "Pod"}, "request.kind must be an object"),
    ],
)
def test_a_broken_request_with_a_uid_is_refused_with_that_uid(
    change: dict[str, Any], words: str
) -> None:
    data = review(pod("nginx"), uid="the-uid", api_version=V1BETA1)
    data["request"].update(change)

    with pytest.raises(MalformedReview) as caught:
        parse_review(body(data))

    assert words in caught.value.message
    assert caught.value.uid == "the-uid"
    assert caught.value.api_version == V1BETA1


def test_an_update_without_object_is_refused() -> None:
    data = review(None, operation="UPDATE")

    with pytest.raises(MalformedReview, match="UPDATE needs the object"):
        parse_review(body(data))


def test_error_messages_stay_on_one_line() -> None:
    data = review(pod("nginx"))
    data["request"]["operation"] = "CREATE\nDELETE"

    with pytest.raises(MalformedReview) as caught:
        parse_review(body(data))

    assert "\n" not in caught.value.message


# --------------------------------------------------------------------------- encoding


def test_an_allowed_reply_echoes_uid_and_version_and_carries_no_status() -> None:
    reply = decoded(encode_review(uid="abc", reply=allow(), mutating=False, api_version=V1BETA1))

    assert reply == {
        "apiVersion": V1BETA1,
        "kind": "AdmissionReview",
        "response": {"uid": "abc", "allowed": True},
    }


def test_a_denial_carries_403_forbidden_and_the_message() -> None:
    reply = decoded(encode_review(uid="abc", reply=deny("no\tway"), mutating=False))

    assert reply["response"]["allowed"] is False
    assert reply["response"]["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "no way",
        "status": "Failure",
    }


PATCH = ({"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "registry-secret"}]},)


def test_a_mutate_patch_is_padded_base64_json_with_patch_type() -> None:
    reply = decoded(encode_review(uid="u", reply=Reply(allowed=True, patch=PATCH), mutating=True))

    encoded = reply["response"]["patch"]
    assert len(encoded) % 4 == 0
    assert json.loads(base64.b64decode(encoded, validate=True)) == list(PATCH)
    assert reply["response"]["patchType"] == "JSONPatch"


def test_validate_never_sends_a_patch_even_if_one_is_given() -> None:
    reply = decoded(encode_review(uid="u", reply=Reply(allowed=True, patch=PATCH), mutating=False))

    assert "patch" not in reply["response"]
    assert "patchType" not in reply["response"]


def test_mutate_without_changes_sends_neither_patch_nor_patch_type() -> None:
    reply = decoded(encode_review(uid="u", reply=allow(), mutating=True))

    assert "patch" not in reply["response"]
    assert "patchType" not in reply["response"]


def test_warnings_and_audit_annotations_are_passed_on() -> None:
    reply = Reply(allowed=True, warnings=("w1",), audit_annotations={"decision": "warned"})

    response = decoded(encode_review(uid="u", reply=reply, mutating=False))["response"]

    assert response["warnings"] == ["w1"]
    assert response["auditAnnotations"] == {"decision": "warned"}


@pytest.mark.parametrize("mutating", [False, True])
@pytest.mark.parametrize("api_version", [V1, V1BETA1, "admission.k8s.io/v2alpha0"])
@pytest.mark.parametrize(
    "reply",
    [
        allow(),
        Reply(allowed=True, patch=PATCH),
        Reply(allowed=True, warnings=("w1", 'quote " and \\'), audit_annotations={"d": "warned"}),
        deny('no way for container "web": ünïcode'),
        deny("spacegate failed", code=500, reason="InternalError"),
    ],
)
def test_a_reply_encoded_ahead_gives_the_same_bytes_as_encoding_it_per_review(
    reply: Reply, api_version: str, mutating: bool
) -> None:
    ahead = EncodedReply(reply, mutating=mutating)

    for uid in ("u", "b6f0e3a2-7c41-4d8e-9a15-2e6c0f4b8d73", 'odd "uid" \u2028'):
        expected = encode_review(uid=uid, reply=reply, mutating=mutating, api_version=api_version)
        assert ahead.encode(uid, api_version) == expected


def decision(**fields: Any) -> Decision:
    base: dict[str, Any] = {
        "allowed": True,
        "mode": "enforce",
        "namespace": "ns",
        "workspace": None,
    }
    return Decision(**(base | fields))


def test_validate_replies_carry_the_verdict_and_mutate_replies_only_the_patch() -> None:
    refused = decision(
        allowed=False, message="denied!", warnings=("w",), audit_annotations={"decision": "denied"}
    )

    on_validate = reply_for(refused, mutating=False)
    on_mutate = reply_for(refused, mutating=True)

    assert (on_validate.allowed, on_validate.code, on_validate.message) == (False, 403, "denied!")
    assert on_validate.warnings == ("w",)
    assert on_mutate == Reply(allowed=True)
    assert reply_for(decision(patch=PATCH), mutating=True).patch == PATCH


def test_a_malformed_request_is_denied_on_validate_and_left_alone_on_mutate() -> None:
    error = MalformedReview("request.object is null", uid="u")

    validate = invalid_reply(error, mutating=False)
    mutate = invalid_reply(error, mutating=True)

    assert (validate.allowed, validate.code, validate.reason) == (False, 400, "BadRequest")
    assert "request.object is null" in validate.message
    assert mutate.allowed and not mutate.patch
    assert "not mutated" in mutate.warnings[0]


def test_a_status_body_names_code_reason_and_message() -> None:
    status = decoded(encode_status(413, "too big"))

    assert status == {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": 413,
        "reason": "RequestEntityTooLarge",
        "message": "too big",
    }


def test_a_deployment_review_is_a_workload_of_group_apps() -> None:
    request = parse_review(body(review(deployment("nginx"))))

    assert (request.group, request.kind, request.is_workload) == ("apps", "Deployment", True)
