"""Fuzzing /validate and /mutate: whatever a review holds, the answer is well-formed.

Hypothesis builds AdmissionReviews from hostile parts (pod specs with random nesting and
types, image strings from real references to megabytes of junk, image volumes, unknown
kinds, operations and subresources, missing or mistyped fields) and sends them over TLS to
the admission server with the demo config. Every answer must be HTTP 200 with an
AdmissionReview the apiserver accepts (uid echoed, ``allowed`` a boolean, a patch only from
``/mutate``), or a 4xx ``Status`` for a request without a readable uid; never a 5xx, never
a hang (the client gives up after 10 s). ``make test`` runs a bounded number of examples;
``make fuzz`` runs many more (``SPACEGATE_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import json
import os
import unicodedata
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .replies import JSON_HEADERS

EXAMPLES = int(os.environ.get("SPACEGATE_FUZZ_EXAMPLES", "120"))

REAL_IMAGES = [
    "harbor.demo.local/library/nginx:1.27",
    "harbor.demo.local/team-a/web:1.2",
    "harbor.demo.local/team-b/api:1.0",
    "harbor.demo.local:443/team-b/api:1.0",
    "registry.demo.local:5000/tools/x@sha256:" + "a" * 64,
    "sha256:" + "b" * 64,
    "nginx",
    "team-b.registry.demo.local/x/y:1",
]

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
images = st.one_of(
    st.sampled_from(REAL_IMAGES),
    st.text(max_size=60),
    st.from_regex(r"[a-z0-9.:/@_-]{1,80}", fullmatch=True),
    st.integers(min_value=1_000, max_value=300_000).map(
        lambda n: "harbor.demo.local/a" * (n // 19)
    ),
    json_value,
)
containers = st.lists(
    st.one_of(
        st.fixed_dictionaries({"name": st.text(max_size=10), "image": images}),
        json_value,
    ),
    max_size=4,
)
volumes = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "name": st.text(max_size=10),
                "image": st.one_of(st.fixed_dictionaries({"reference": images}), json_value),
            }
        ),
        json_value,
    ),
    max_size=3,
)
pod_specs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "containers": st.one_of(containers, json_value),
            "initContainers": containers,
            "ephemeralContainers": containers,
            "volumes": st.one_of(volumes, json_value),
            "imagePullSecrets": st.one_of(
                st.lists(st.fixed_dictionaries({"name": st.text(max_size=20)}), max_size=3),
                json_value,
            ),
        },
    ),
    json_value,
)
KINDS = [
    ("", "Pod"),
    ("apps", "Deployment"),
    ("batch", "CronJob"),
    ("", "Namespace"),
    ("", "ConfigMap"),
    ("batch", "Job"),
    ("apps", "Weird"),
]


@st.composite
def reviews(draw: st.DrawFn) -> Any:
    group, kind = draw(st.sampled_from(KINDS))
    spec = draw(pod_specs)
    shape = draw(st.sampled_from(["pod", "template", "cron", "junk"]))
    obj: Any = {
        "pod": {"spec": spec},
        "template": {"spec": {"template": {"spec": spec}}},
        "cron": {"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}},
        "junk": draw(json_value),
    }[shape]
    if isinstance(obj, dict):
        obj["metadata"] = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "name": st.text(max_size=30),
                        "labels": st.dictionaries(
                            st.sampled_from(["workspace.ghippo.io/id", "spacegate.io/mode", "x"]),
                            st.text(max_size=10),
                            max_size=2,
                        ),
                    }
                ),
                json_value,
            )
        )
    request: dict[str, Any] = {
        "uid": draw(st.one_of(st.uuids().map(str), st.text(max_size=10), json_leaf)),
        "kind": draw(
            st.one_of(st.just({"group": group, "version": "v1", "kind": kind}), json_value)
        ),
        "operation": draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"])),
        "namespace": draw(
            st.sampled_from(["team-a-dev", "team-b-dev", "sandbox", "kube-system", ""])
        ),
        "subResource": draw(st.sampled_from([None, "ephemeralcontainers", "status", 7])),
        "userInfo": draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "username": st.text(max_size=20),
                        "groups": st.lists(st.text(max_size=15), max_size=3),
                    }
                ),
                json_value,
            )
        ),
        "object": obj,
        "oldObject": draw(st.one_of(st.none(), st.just(obj), json_value)),
        "dryRun": draw(st.one_of(st.booleans(), json_leaf)),
    }
    return {
        "apiVersion": draw(
            st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1", "v1"])
        ),
        "kind": draw(st.sampled_from(["AdmissionReview", "AdmissionReview", "Pod"])),
        "request": draw(st.one_of(st.just(request), json_value)),
    }


def one_line(text: str) -> bool:
    """No control character (Go's unicode.IsControl), which makes the apiserver drop a warning."""
    return not any(unicodedata.category(ch) == "Cc" for ch in text) and "\u2028" not in text


def check_answer(sent: Any, http: httpx.Response, *, mutating: bool) -> None:
    assert http.status_code < 500, http.text[:500]
    assert http.headers["content-type"] == "application/json"
    body = http.json()
    if http.status_code != 200:
        assert 400 <= http.status_code < 500
        assert body["kind"] == "Status" and body["message"]
        return
    assert body["kind"] == "AdmissionReview"
    assert body["apiVersion"] == sent["apiVersion"]
    response = body["response"]
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    if not mutating or not response["allowed"]:
        assert "patch" not in response and "patchType" not in response
    if mutating:
        assert response["allowed"] is True  # the mutating webhook never denies
    if not response["allowed"]:
        assert 400 <= response["status"]["code"] < 600
        assert one_line(response["status"]["message"])
        assert len(response["status"]["message"]) <= 4200
    for warning in response.get("warnings", []):
        assert one_line(warning) and len(warning) <= 256


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sent=reviews())
def test_every_review_gets_a_well_formed_answer_or_a_4xx_never_a_5xx(
    session_client: httpx.Client, sent: Any
) -> None:
    body = json.dumps(sent)
    for path, mutating in (("/validate", False), ("/mutate", True)):
        http = session_client.post(path, content=body, headers=JSON_HEADERS)
        check_answer(sent, http, mutating=mutating)
