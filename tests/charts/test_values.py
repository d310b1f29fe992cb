"""Bad values fail `helm install` with a message that names the key; good values are documented.

Rendering validates the values against values.schema.json exactly as `helm install` does, so
each case below is what an admin would see in their terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.charts.chartlib import CHART_DIR, NAMESPACE, RELEASE


def _install_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"replicaCount": "two"}, ["/replicaCount", "want integer"], id="replicaCount-two"
        ),
        pytest.param({"replicaCount": 0}, ["/replicaCount", "minimum"], id="replicaCount-zero"),
        pytest.param(
            {"replicas": 2}, ["additional properties 'replicas' not allowed"], id="typo-replicas"
        ),
        pytest.param(
            {"webhook": {"timeoutSeconds": 31}},
            ["/webhook/timeoutSeconds", "maximum: got 31, want 30"],
            id="timeout-31",
        ),
        pytest.param(
            {"webhook": {"timeoutSeconds": 0}},
            ["/webhook/timeoutSeconds", "minimum: got 0, want 1"],
            id="timeout-0",
        ),
        pytest.param(
            {"webhook": {"validating": {"failurePolicy": "Sometimes"}}},
            ["/webhook/validating/failurePolicy", "'Fail', 'Ignore'"],
            id="failurePolicy-Sometimes",
        ),
        pytest.param(
            {"webhook": {"mutating": {"failurePolicy": "fail"}}},
            ["/webhook/mutating/failurePolicy", "'Fail', 'Ignore'"],
            id="failurePolicy-lowercase",
        ),
        pytest.param(
            {"webhook": {"exemptNamespaces": ["Team_A"]}},
            ["/webhook/exemptNamespaces/0", "does not match pattern"],
            id="exempt-not-a-namespace",
        ),
        pytest.param(
            {"certificates": {"mode": "manual"}},
            ["/certificates/mode", "'helm', 'cert-manager', 'secret'"],
            id="unknown-cert-mode",
        ),
        pytest.param(
            {"certificates": {"secret": {"caBundle": "LS0tLS1CRUdJTi..."}}},
            ["/certificates/secret/caBundle", "does not match pattern"],
            id="caBundle-base64-not-pem",
        ),
        pytest.param(
            {"config": {"policy": {"mode": "enforcing"}}},
            ["/config/policy/mode", "'enforce', 'warn', 'audit'"],
            id="config-mode-typo",
        ),
        pytest.param(
            {"config": {"registrys": []}},
            ["/config", "additional properties 'registrys' not allowed"],
            id="config-key-typo",
        ),
        pytest.param(
            {"config": {"registries": [{"name": "h", "type": "quay", "url": "https://q"}]}},
            ["/config/registries/0/type", "'harbor', 'docker-registry'"],
            id="config-registry-type",
        ),
        pytest.param(
            {"config": {"policy": {"maxStaleness": "10 minutes"}}},
            ["/config/policy/maxStaleness"],
            id="config-duration",
        ),
        pytest.param(
            {"readinessProbe": {"checkStaleness": "yes"}},
            ["/readinessProbe/checkStaleness", "want boolean"],
            id="checkStaleness-not-boolean",
        ),
        pytest.param(
            {"readinessProbe": {"path": "/readyz"}},
            ["/readinessProbe", "additional properties 'path' not allowed"],
            id="readinessProbe-unknown-key",
        ),
        pytest.param(
            {"registryCredentials": [{"registry": "harbor", "password": "hunter2"}]},
            ["/registryCredentials/0", "additional properties 'password' not allowed"],
            id="credential-in-values",
        ),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(
    chart: helm.Chart, values: dict[str, Any], expected: list[str]
) -> None:
    message = _install_error(chart, values)
    assert "values don't meet the specifications of the schema" in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"certificates": {"mode": "secret"}},
            "certificates.secret.caBundle is required when certificates.mode is secret",
            id="secret-mode-without-ca",
        ),
        pytest.param(
            {
                "certificates": {
                    "mode": "secret",
                    "secret": {
                        "caBundle": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"
                    },
                }
            },
            "certificates.secret.name is required when certificates.mode is secret",
            id="secret-mode-without-name",
        ),
        pytest.param(
            {"registryCredentials": [{"registry": "harbor", "secretName": "robot"}]},
            'registryCredentials[0].registry: "harbor" is not a registry name under '
            "config.registries (declared: none)",
            id="credentials-for-undeclared-registry",
        ),
        pytest.param(
            {
                "config": {
                    "registries": [
                        {
                            "name": "harbor",
                            "type": "harbor",
                            "url": "https://harbor.example.com",
                            "credentials": {"passwordFile": "/secret"},
                        }
                    ]
                }
            },
            "config.registries[0].credentials: do not set credential paths in values",
            id="credential-paths-in-config",
        ),
        pytest.param(
            {
                "config": {
                    "registries": [{"name": "h", "type": "harbor", "url": "https://h.example"}]
                },
                "registryCredentials": [
                    {"registry": "h", "secretName": "a"},
                    {"registry": "h", "secretName": "b"},
                ],
            },
            'registryCredentials[1]: registry "h" is listed twice',
            id="credentials-twice",
        ),
        pytest.param(
            {"serviceAccount": {"create": False}},
            "serviceAccount.name is required when serviceAccount.create is false",
            id="no-service-account",
        ),
    ],
)
def test_inconsistent_values_fail_the_render_with_an_explanation(
    chart: helm.Chart, values: dict[str, Any], expected: str
) -> None:
    assert expected in _install_error(chart, values)


# ------------------------------------------------------------------------- documentation


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    return schema


def _walk_schema(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _walk_schema(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _walk_schema(node["items"], f"{path}[]")
    for branch in node.get("anyOf", []):
        yield from _walk_schema(branch, path)


def test_every_schema_object_with_known_keys_rejects_unknown_ones() -> None:
    for path, node in _walk_schema(_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '(root)'} accepts typos"


def _properties(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, child in node.get("properties", {}).items():
        yield f"{path}.{key}", child
        yield from _properties(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _properties(node["items"], f"{path}[]")
    for branch in node.get("anyOf", []):
        yield from _properties(branch, path)


def test_every_schema_property_has_a_description() -> None:
    """Helm prints no descriptions, but editors with JSON-schema support for YAML show them."""
    properties = list(_properties(_schema()))
    assert len(properties) > 60
    for path, node in properties:
        assert node.get("description"), f"{path} has no description"


def _documented_keys(
    node: yaml.Node, schema: dict[str, Any], lines: list[str], path: str = ""
) -> Iterator[tuple[str, bool]]:
    """(key path, has a comment right above it) for every key the schema defines."""
    if not isinstance(node, yaml.MappingNode) or "properties" not in schema:
        return  # a Kubernetes pass-through (resources.requests, affinity, ...) or a scalar
    for key_node, value_node in node.value:
        key = key_node.value
        above = lines[key_node.start_mark.line - 1].strip() if key_node.start_mark.line else ""
        yield f"{path}.{key}".lstrip("."), above.startswith("#")
        yield from _documented_keys(
            value_node, schema["properties"].get(key, {}), lines, f"{path}.{key}"
        )


def test_every_key_in_values_yaml_has_a_comment_saying_why() -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    root = yaml.compose(text)
    assert root is not None
    keys = list(_documented_keys(root, _schema(), text.splitlines()))
    assert len(keys) > 50
    undocumented = [key for key, documented in keys if not documented]
    assert undocumented == []


def test_default_values_pass_the_schema(chart: helm.Chart) -> None:
    chart.validate_schema(chart.values)
