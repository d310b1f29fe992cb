"""A listed registry in any spelling is that registry, and its pull secret still works.

A tenant who writes a listed registry's host in another spelling the node dials to the same
server (``harbor.demo.local:0443``, ``[::ffff:a00:5]`` for ``10.0.0.5``, ``registry-1.docker.io``
for ``docker.io``) must meet that registry's rules, never ``unknownRegistry: allow``. Where the
image needs the pull secret, only a spelling the kubelet's keyring matches against the secret's
keys (the registry's ``hosts``) is admitted; any other is refused naming the spelling to use.

The properties at the end draw the spellings (``tests/policy/host_spellings.py``); the keyring
side is held to the kubelet's own code in ``tests/policy/test_reference_oracle.py``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from policy.config import load_config, parse_config
from policy.decision import decide
from policy.reference import parse_reference
from policy.snapshot import Snapshot
from tests.policy.host_spellings import Listed, other_host, registries, spelling_of

CONFIG = """
policy: {mode: enforce, unknownRegistry: allow, unknownSpace: deny}
registries:
  - name: harbor
    type: harbor
    url: https://harbor.demo.local
    spaces:
      - {name: library, public: true}
      - {name: team-a, public: false}
      - {name: team-b, public: false}
  - name: platform-registry
    type: docker-registry
    url: http://registry.demo.local:5000
  - name: v6
    type: harbor
    url: https://[fd00::5]
    spaces: [{name: library, public: true}, {name: team-a, public: false}]
  - name: by-ip
    type: harbor
    url: https://10.0.0.5
    spaces: [{name: library, public: true}, {name: team-a, public: false}]
  - name: hub
    type: docker-registry
    url: https://docker.io
    anonymousPull: false
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101"]}
  - {registry: harbor, space: team-b, workspaces: ["102"]}
  - {registry: v6, space: team-a, workspaces: ["101"]}
  - {registry: by-ip, space: team-a, workspaces: ["101"]}
namespaces: {team-a-dev: "101", team-b-dev: "102"}
"""
SNAP = Snapshot.from_config(load_config(CONFIG))


def decided(namespace: str, image: str) -> Any:
    [verdict] = decide(SNAP, namespace, {"containers": [{"name": "c", "image": image}]}).containers
    return verdict


# ------------------------------------------------------------------ the spellings


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("harbor.demo.local:0443/team-b/api:1.0", "harbor"),
        ("harbor.demo.local:443/team-b/api:1.0", "harbor"),
        ("HARBOR.demo.local/team-b/api:1.0", "harbor"),
        ("[fd00:0::5]/team-b/api:1.0", "v6"),
        ("[FD00:0000::0005]:443/team-b/api:1.0", "v6"),
        ("[::ffff:a00:5]/team-b/api:1.0", "by-ip"),
        ("167772165:443/team-b/api:1.0", "by-ip"),
        ("0xa.0.0.5/team-b/api:1.0", "by-ip"),
        ("10.5/team-b/api:1.0", "by-ip"),
        ("012.0.0.05:0443/team-b/api:1.0", "by-ip"),
    ],
)
def test_another_spelling_of_a_listed_registry_meets_that_registrys_rules(
    image: str, registry: str
) -> None:
    verdict = decided("team-a-dev", image)
    assert verdict.registry == registry
    assert verdict.refused  # unknownSpace: deny for harbor's team-b elsewhere, unknown here
    assert "not managed by spacegate" not in verdict.reason


def test_a_port_with_leading_zeros_is_the_listed_docker_registry() -> None:
    verdict = decided("team-a-dev", "registry.demo.local:05000/tools/busybox:1.36")
    assert verdict.registry == "platform-registry"
    assert not verdict.refused


@pytest.mark.parametrize(
    "image",
    [
        "registry-1.docker.io/library/nginx:1.27",
        "index.docker.io:443/library/nginx:1.27",
        "INDEX.DOCKER.IO/library/nginx:1.27",
        "registry.hub.docker.com/library/nginx:1.27",
        "docker.io:443/library/nginx:1.27",
    ],
)
def test_docker_hub_in_any_of_its_names_is_the_listed_docker_hub(image: str) -> None:
    verdict = decided("team-a-dev", image)
    assert verdict.registry == "hub"


def test_a_namespace_of_another_workspace_meets_the_binding_in_every_spelling() -> None:
    for image in ("harbor.demo.local:0443/team-a/app:1", "[::ffff:a00:5]/team-a/app:1"):
        verdict = decided("team-b-dev", image)
        assert verdict.refused and "is not bound to workspace 102" in verdict.reason, image


# ------------------------------------------------------------------ the pull secret must still work


@pytest.mark.parametrize(
    ("image", "use"),
    [
        ("HARBOR.demo.local/team-a/app:1", "harbor.demo.local/team-a/app:1"),
        ("harbor.demo.local:0443/team-a/app:1", "harbor.demo.local/team-a/app:1"),
        ("harbor.demo.local./team-a/app:1", None),  # not a reference at all
        ("[fd00::5]/team-a/app:1", "[fd00::5]:443/team-a/app:1"),
        ("[fd00:0::5]:443/team-a/app:1", "[fd00::5]:443/team-a/app:1"),
        (
            "[::ffff:a00:5]/team-a/app@sha256:" + "ab" * 32,
            "10.0.0.5/team-a/app@sha256:" + "ab" * 32,
        ),
        ("0xa.0.0.5/team-a/app:1", "10.0.0.5/team-a/app:1"),
        ("registry-1.docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27"),
        ("index.docker.io:443/library/nginx:1.27", "docker.io/library/nginx:1.27"),
    ],
)
def test_a_spelling_the_kubelet_would_not_pull_with_the_secret_is_refused_naming_the_one_to_use(
    image: str, use: str | None
) -> None:
    decision = decide(SNAP, "team-a-dev", {"containers": [{"name": "c", "image": image}]})
    assert not decision.allowed
    assert not decision.patch  # never a Pod that pulls without credentials, or with a node's
    if use is not None:
        assert decision.containers[0].rule == "host-spelling"
        assert decision.message.endswith(f"; write the image as {use}")
        assert "the kubelet finds the pull secret of registry " in decision.message
        assert "only for the host spelled as listed (" in decision.message


@pytest.mark.parametrize(
    "image",
    [
        "harbor.demo.local/team-a/app:1",
        "harbor.demo.local:443/team-a/app:1",
        "[fd00::5]:443/team-a/app:1",
        "10.0.0.5/team-a/app:1",
        "10.0.0.5:443/team-a/app:1",
        "nginx:1.27",
        "docker.io/library/nginx:1.27",
        "index.docker.io/library/nginx:1.27",  # the parser itself makes it docker.io
    ],
)
def test_the_spellings_the_secret_carries_are_admitted_with_the_secret(image: str) -> None:
    decision = decide(SNAP, "team-a-dev", {"containers": [{"name": "c", "image": image}]})
    assert decision.allowed, decision.message
    assert decision.patch


def test_a_spelling_that_needs_no_secret_is_admitted_by_the_registrys_rules() -> None:
    # public space, anonymous pulls: the kubelet needs no key, so any spelling pulls
    for image in ("HARBOR.demo.local:0443/library/nginx:1", "[fd00:0::5]/library/nginx:1"):
        decision = decide(SNAP, "team-b-dev", {"containers": [{"name": "c", "image": image}]})
        assert decision.allowed and not decision.patch, image


def test_warn_mode_admits_a_refused_spelling_without_the_secret() -> None:
    snap = Snapshot.from_config(load_config(CONFIG.replace("mode: enforce", "mode: warn")))
    image = "HARBOR.demo.local/team-a/app:1"
    decision = decide(snap, "team-a-dev", {"containers": [{"name": "c", "image": image}]})
    assert decision.allowed and not decision.patch
    assert "only for the host spelled as listed" in decision.warnings[0]


# ------------------------------------------------------------------ remedies follow the rule


def test_the_remedy_follows_the_refusing_rule_not_words_in_registry_names() -> None:
    snap = Snapshot.from_config(
        load_config(
            """
registries:
  - name: integrated-by-workspace-7
    type: harbor
    url: https://one.example.com
    spaces: [{name: team, public: false}]
  - name: private-space-registry
    type: harbor
    url: https://two.example.com
    spaces: [{name: x, public: true}]
  - name: ws7
    type: harbor
    url: https://three.example.com
    workspace: "7"
    spaces: [{name: x, public: true}]
namespaces: {ns: "101"}
"""
        )
    )

    def message(image: str) -> str:
        return decide(snap, "ns", {"containers": [{"name": "c", "image": image}]}).message

    assert message("one.example.com/team/app:1").endswith(
        "; bind space 'team' to workspace 101, or use an image from a public space"
    )
    unknown = message("two.example.com/ghost/app:1")
    assert "has no space 'ghost'" in unknown and "bind" not in unknown
    assert message("three.example.com/x/app:1").endswith(
        "; use a registry visible to this workspace or a public space"
    )


# ------------------------------------------------------------------ properties

EXAMPLES = int(os.environ.get("SPACEGATE_FUZZ_EXAMPLES", "150"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@st.composite
def listed_and_spelling(draw: st.DrawFn, *, other: bool) -> tuple[dict[str, object], Listed, str]:
    document, listed = draw(registries())
    target = draw(st.sampled_from(listed))
    domain = draw(other_host(target) if other else spelling_of(target))
    return document, target, domain


def registry_of(document: dict[str, object], domain: str) -> str | None:
    snapshot = Snapshot.from_config(parse_config(document))
    image = f"{domain}/team/app:1"
    ref = parse_reference(image)
    assume(ref.domain == domain)  # a one-part name without a port is a Docker Hub user
    verdict = decide(snapshot, "ns", {"containers": [{"name": "c", "image": image}]})
    return verdict.containers[0].registry


@PROPERTY
@given(listed_and_spelling(other=False))
def test_any_spelling_of_a_listed_host_is_matched_to_that_registry(
    case: tuple[dict[str, object], Listed, str],
) -> None:
    document, listed, domain = case
    assert registry_of(document, domain) == listed.name


@PROPERTY
@given(listed_and_spelling(other=True))
def test_a_spelling_of_another_host_is_not_matched_to_the_registry(
    case: tuple[dict[str, object], Listed, str],
) -> None:
    document, listed, domain = case
    assert registry_of(document, domain) != listed.name


def test_spacegate_images_names_each_registry_by_a_spelling_the_pull_secret_serves() -> None:
    from policy.visibility import visible_spaces

    hosts = {v.registry: v.host for v in visible_spaces(SNAP, "team-a-dev")}
    assert hosts["v6"] == "[fd00::5]:443"  # a bare [fd00::5] key is never matched
    assert hosts["harbor"] == "harbor.demo.local"
    assert hosts["hub"] == "docker.io"
