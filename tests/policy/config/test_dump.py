"""Writing the config back: ``dump_config`` is the parser's inverse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.config import dump_config, load_config, parse_config
from tests.policy.config.conftest import MINIMAL

WITH_SOURCE = """
registries:
  - {name: harbor, type: harbor, url: https://harbor.example.com}
bindings:
  source: both
  requireAcknowledgement: true
  items: [{registry: harbor, space: a, workspaces: ["1"]}]
"""

FULL = """
workspaceLabel: tenant
policy:
  mode: warn
  unknownRegistry: deny
  unknownSpace: warn
  pullSecretName: pull
  exemptNamespaces: [kube-system, ops]
  maxStaleness: 90s
  namespaceGuard: {enabled: true, users: [root], groups: [admins], serviceAccounts: [a/b]}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    hosts: [harbor.example.com, 10.0.0.5:443]
    credentials: {usernameFile: /u, passwordFile: /p}
    refreshInterval: 2m
    spaces: [{name: lib, public: true}, {name: a, public: false}]
  - name: ws
    type: docker-registry
    url: http://ws.example.com:5000
    workspace: "7"
    anonymousPull: false
    pullCredentials: {usernameFile: /pu, passwordFile: /pp}
bindings:
  - {registry: harbor, space: a, workspaces: ["1", "2"]}
namespaces: {team: "1"}
"""


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        MINIMAL,
        "{}",
        FULL + "pullSecrets: {provision: true, credentialsNamespace: ops, rotateEvery: 12h}\n",
        FULL + "audit: {enabled: true, reports: openreports, interval: 1h}\n",
        FULL + "lastKnownGood: {persist: false}\n",
        WITH_SOURCE,
    ],
)
def test_dump_config_is_the_inverse_of_the_parser(text: str) -> None:
    config = load_config(text)
    assert parse_config(dump_config(config)) == config


def test_bindings_are_written_in_the_short_form_unless_their_settings_are_set() -> None:
    assert isinstance(dump_config(load_config(FULL))["bindings"], list)
    written = dump_config(load_config(WITH_SOURCE))["bindings"]
    assert written["source"] == "both" and written["requireAcknowledgement"] is True


def test_dump_config_can_leave_credential_references_out() -> None:
    document = dump_config(load_config(FULL), credentials=False)
    assert all("credentials" not in registry for registry in document["registries"])
    assert "credentials" in dump_config(load_config(FULL))["registries"][0]


@given(
    mode=st.sampled_from(["enforce", "warn", "audit"]),
    seconds=st.integers(min_value=1, max_value=10**6),
    spaces=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), st.booleans(), max_size=5
    ),
    guard=st.booleans(),
)
def test_any_config_survives_a_round_trip(
    mode: str, seconds: int, spaces: dict[str, bool], guard: bool
) -> None:
    document = {
        "policy": {"mode": mode, "maxStaleness": seconds, "namespaceGuard": {"enabled": guard}},
        "registries": [
            {
                "name": "h",
                "type": "harbor",
                "url": "https://h.example.com",
                "spaces": [{"name": n, "public": p} for n, p in spaces.items()],
            }
        ],
    }
    config = parse_config(document)
    assert parse_config(dump_config(config)) == config
