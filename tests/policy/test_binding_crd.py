"""The RegistrySpaceBinding CRD has one source, and every copy of its names agrees with it.

``policy/binding_crd.py`` builds the CRD from ``policy/names.py``; the chart ships it in
``crds/`` (written by ``make crds``), the chart's values schema checks ``config.bindings``
with the same patterns, and the config parser checks config bindings with the same
functions. Each test here fails when one copy drifts from the source. That the apiserver
reads the patterns as Python does is checked on the real apiserver
(``tests/e2e/test_bindings.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from policy import names
from policy.binding_crd import CONDITION_TYPES, CRD_NAME, binding_crd
from policy.config import ConfigError, load_config
from tests.conftest import REPO
from webhook.cli.bindings import CRD_FILE, crd_text

CHART_CRD = REPO / CRD_FILE
SCHEMA = REPO / "charts" / "spacegate" / "values.schema.json"


def _spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_the_charts_crd_is_the_one_built_from_the_source() -> None:
    assert yaml.safe_load(CHART_CRD.read_text()) == binding_crd(), (
        "charts/spacegate/crds/ is out of date: run `make crds`"
    )
    assert CHART_CRD.read_text() == crd_text()


def test_the_crd_is_cluster_scoped_with_a_short_name_a_category_and_a_status_subresource() -> None:
    crd = binding_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == CRD_NAME == "registryspacebindings.spacegate.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["shortNames"] == ["rsb"]
    assert spec["names"]["categories"] == ["spacegate"]
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Registry", "Space", "Workspaces", "Ready", "Age"]


def test_the_crds_patterns_and_bounds_are_the_names_module_s() -> None:
    spec = _spec_schema(binding_crd())["properties"]
    assert (spec["registry"]["pattern"], spec["registry"]["maxLength"]) == (
        names.REGISTRY_NAME,
        names.REGISTRY_NAME_MAX,
    )
    assert (spec["space"]["pattern"], spec["space"]["maxLength"]) == (
        names.SPACE_NAME,
        names.SPACE_NAME_MAX,
    )
    items = spec["workspaces"]["items"]
    assert (items["pattern"], items["maxLength"]) == (names.WORKSPACE_ID, names.WORKSPACE_ID_MAX)
    assert spec["workspaces"]["x-kubernetes-list-type"] == "set"  # duplicates refused
    assert (spec["workspaces"]["minItems"], spec["workspaces"]["maxItems"]) == (
        1,
        names.MAX_WORKSPACES,
    )


def test_registry_and_space_are_immutable_through_transition_rules() -> None:
    spec = _spec_schema(binding_crd())["properties"]
    for field in ("registry", "space"):
        (rule,) = spec[field]["x-kubernetes-validations"]
        assert rule["rule"] == "self == oldSelf"
        assert rule["message"].startswith(f"{field} is immutable")
    assert "x-kubernetes-validations" not in spec["workspaces"]


def test_every_string_and_list_the_cel_rules_or_the_status_hold_is_bounded() -> None:
    """Unbounded strings and lists make the apiserver's CEL cost estimate explode."""
    crd = binding_crd()
    (version,) = crd["spec"]["versions"]

    def walk(schema: dict[str, Any], path: str) -> None:
        if (
            schema.get("type") == "string"
            and "enum" not in schema
            and path
            not in (
                ".apiVersion",
                ".kind",
                ".status.conditions[].lastTransitionTime",
            )
        ):
            assert "maxLength" in schema, path
        if schema.get("type") == "array":
            assert "maxItems" in schema, path
            walk(schema["items"], path + "[]")
        for name, child in (schema.get("properties") or {}).items():
            walk(child, f"{path}.{name}")

    walk(version["schema"]["openAPIV3Schema"], "")
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    condition = status["conditions"]["items"]
    assert condition["properties"]["type"]["description"].startswith(
        ", ".join(CONDITION_TYPES[:-1])
    )
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_the_values_schema_checks_config_bindings_with_the_same_patterns() -> None:
    schema = json.loads(SCHEMA.read_text())["properties"]["config"]["properties"]["bindings"]
    for form in schema["oneOf"]:
        items = form["items"] if form["type"] == "array" else form["properties"]["items"]["items"]
        props = items["properties"]
        assert props["registry"]["pattern"] == names.REGISTRY_NAME
        assert props["space"]["pattern"] == names.SPACE_NAME
        assert props["workspaces"]["items"]["pattern"] == names.WORKSPACE_ID


# --------------------------------------------------------------------------- the config agrees


def _config_accepts(
    registry: str = "harbor", space: str = "team-a", workspace: str = "101"
) -> bool:
    text = (
        "registries: [{name: harbor, type: harbor, url: https://h.example.com}]\n"
        f"bindings: [{{registry: {json.dumps(registry)}, space: {json.dumps(space)}, "
        f"workspaces: [{json.dumps(workspace)}]}}]\n"
    )
    try:
        load_config(text)
    except ConfigError as exc:
        return "is not declared under registries" in str(exc)  # a valid name, not declared
    return True


CHARS = st.text(alphabet="aA0-._ /:é", max_size=12)


@given(CHARS)
def test_the_config_accepts_a_space_exactly_when_the_crds_pattern_does(space: str) -> None:
    expected = bool(re.fullmatch(names.SPACE_NAME, space)) and len(space) <= names.SPACE_NAME_MAX
    assert _config_accepts(space=space) == expected


@given(CHARS)
def test_the_config_accepts_a_workspace_exactly_when_the_crds_pattern_does(ws: str) -> None:
    expected = bool(re.fullmatch(names.WORKSPACE_ID, ws)) and len(ws) <= names.WORKSPACE_ID_MAX
    assert _config_accepts(workspace=ws) == expected


@given(CHARS)
def test_the_config_accepts_a_registry_exactly_when_the_crds_pattern_does(name: str) -> None:
    expected = bool(re.fullmatch(names.REGISTRY_NAME, name)) and len(name) <= 63
    assert _config_accepts(registry=name) == expected


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("registries: [{name: Harbor, type: harbor, url: https://h}]\n", "registries[0].name"),
        (
            "registries: [{name: h, type: harbor, url: https://h, workspace: 'a b'}]\n",
            "registries[0].workspace",
        ),
        (
            "registries: [{name: h, type: harbor, url: https://h}]\n"
            "bindings: {items: [{registry: h, space: A, workspaces: ['1']}]}\n",
            "bindings.items[0].space",
        ),
        ("bindings: {source: cluster}\n", "bindings.source"),
        ("bindings: {sauce: both}\n", "bindings.sauce"),
    ],
)
def test_config_errors_about_names_and_bindings_name_the_key(text: str, where: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(where)):
        load_config(text)
