"""The apiserver-rules helper refuses what the apiserver refuses, so its silence means something."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from tests.charts.apiserver_rules import webhook_configuration_errors
from tests.charts.chartlib import make_ca_pem


def _valid(kind: str = "ValidatingWebhookConfiguration") -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": "validate.example.com",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "timeoutSeconds": 5,
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "clientConfig": {
            "service": {"name": "svc", "namespace": "ns", "path": "/validate", "port": 443},
            "caBundle": base64.b64encode(make_ca_pem().encode()).decode(),
        },
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods", "pods/ephemeralcontainers"],
                "operations": ["CREATE", "UPDATE"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["a"]}
            ]
        },
    }
    if kind == "MutatingWebhookConfiguration":
        hook["reinvocationPolicy"] = "IfNeeded"
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "webhooks": [hook]}


def test_a_well_formed_configuration_has_no_errors() -> None:
    assert webhook_configuration_errors(_valid()) == []
    assert webhook_configuration_errors(_valid("MutatingWebhookConfiguration")) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timeoutSeconds", 31, "the timeout value must be between 1 and 30 seconds"),
        ("timeoutSeconds", 0, "the timeout value must be between 1 and 30 seconds"),
        ("sideEffects", "Some", 'supported values: "None", "NoneOnDryRun"'),
        ("sideEffects", None, "sideEffects: Required value"),
        ("name", "validate", "at least three segments"),
        ("name", "spacegate.io", "at least three segments"),
        ("name", "Validate.Example.com", "a lowercase RFC 1123 subdomain"),
        ("admissionReviewVersions", [], "must specify one of v1, v1beta1"),
        ("admissionReviewVersions", ["v2"], "must include at least one of v1, v1beta1"),
        ("admissionReviewVersions", ["v1", "v1"], "Duplicate value"),
        ("failurePolicy", "Sometimes", "failurePolicy: Unsupported value"),
        ("matchPolicy", "Fuzzy", "matchPolicy: Unsupported value"),
        ("reinvocationPolicy", "IfNeeded", "mutating webhooks only"),
    ],
)
def test_each_rule_is_enforced(field: str, value: Any, expected: str) -> None:
    config = _valid()
    if value is None:
        del config["webhooks"][0][field]
    else:
        config["webhooks"][0][field] = value
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("validate", "must start with a '/'"),
        ("/a//b", "segment[1] may not be empty"),
        ("//", "segment[0] may not be empty"),
        ("/Validate", "segment[0]"),
        ("/validate_pods", "segment[0]"),
    ],
)
def test_service_paths_follow_the_apiservers_segment_rules(path: str, expected: str) -> None:
    config = _valid()
    config["webhooks"][0]["clientConfig"]["service"]["path"] = path
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize("path", ["/", "/validate", "/v1/validate/", "/a.b/c-d"])
def test_valid_service_paths_pass(path: str) -> None:
    config = _valid()
    config["webhooks"][0]["clientConfig"]["service"]["path"] = path
    assert webhook_configuration_errors(config) == []


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"hello").decode(), "could not parse a PEM certificate"),
        (
            base64.b64encode(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ).decode(),
            "could not parse a PEM certificate",
        ),
    ],
)
def test_ca_bundle_must_hold_a_pem_certificate(bundle: str, expected: str) -> None:
    config = _valid()
    config["webhooks"][0]["clientConfig"]["caBundle"] = bundle
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors


def test_webhook_names_must_be_unique_within_a_configuration() -> None:
    config = _valid()
    config["webhooks"].append(copy.deepcopy(config["webhooks"][0]))
    assert any("Duplicate value" in e for e in webhook_configuration_errors(config))


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ({}, "exactly one of url or service"),
        (
            {"url": "https://x.example.com", "service": {"name": "s", "namespace": "n"}},
            "exactly one of url or service",
        ),
        ({"url": "http://x.example.com/validate"}, "'https' is the only allowed URL scheme"),
        ({"url": "https://user:pw@x.example.com/"}, "user information is not permitted"),
        ({"url": "https://x.example.com/?a=b"}, "query parameters are not permitted"),
        ({"url": "https://x.example.com/#frag"}, "fragments are not permitted"),
        ({"service": {"namespace": "n"}}, "service.name: Required value"),
    ],
)
def test_client_config_needs_exactly_one_https_url_or_a_service(
    client: dict[str, Any], expected: str
) -> None:
    config = _valid()
    config["webhooks"][0]["clientConfig"] = client
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"key": "a", "operator": "NotIn", "values": []}, "must be specified for In or NotIn"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "may not be specified for Exists"),
        ({"key": "a", "operator": "Nope", "values": ["x"]}, "operator: Unsupported value"),
        ({"key": "bad key!", "operator": "Exists"}, "key: Invalid value"),
    ],
)
def test_namespace_selector_must_be_a_valid_label_selector(
    expression: dict[str, Any], expected: str
) -> None:
    config = _valid()
    config["webhooks"][0]["namespaceSelector"] = {"matchExpressions": [expression]}
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors


@pytest.mark.parametrize(
    ("rule_change", "expected"),
    [
        ({"operations": ["PATCH"]}, "operations: Unsupported value"),
        ({"operations": []}, "operations: Required value"),
        ({"resources": ["*", "pods"]}, "if '*' is present"),
        ({"resources": ["pods/"]}, "resources: Invalid value"),
        ({"scope": "Namespace"}, "scope: Unsupported value"),
    ],
)
def test_rules_must_name_real_operations_resources_and_scopes(
    rule_change: dict[str, Any], expected: str
) -> None:
    config = _valid()
    config["webhooks"][0]["rules"][0].update(rule_change)
    errors = webhook_configuration_errors(config)
    assert any(expected in error for error in errors), errors
