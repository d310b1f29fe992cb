"""The decision rules of docs/architecture.md, one behaviour per test."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from policy.config import load_config
from policy.decision import MAX_MEMO_DECISIONS, decide, pull_secret_patch
from policy.messages import single_line
from policy.snapshot import NamespaceInfo, Snapshot

CONFIG = """
policy:
  mode: enforce
  unknownRegistry: allow
  unknownSpace: deny
  pullSecretName: registry-secret
  exemptNamespaces: [kube-system]
registries:
  - name: harbor
    type: harbor
    url: https://harbor.example.com
    hosts: [harbor.example.com, harbor.example.com:8443]
    spaces:
      - {name: library, public: true}
      - {name: team-a, public: false}
      - {name: team-b, public: false}
  - name: platform
    type: docker-registry
    url: https://registry.example.com:5000
  - name: ws-harbor
    type: harbor
    url: https://ws.example.com
    workspace: "102"
    spaces:
      - {name: pub, public: true}
      - {name: priv, public: false}
  - name: locked
    type: docker-registry
    url: https://locked.example.com
    anonymousPull: false
bindings:
  - {registry: harbor, space: team-a, workspaces: ["101", "103"]}
namespaces:
  team-a-dev: "101"
  team-b-dev: "102"
"""


def snapshot(**policy: str) -> Snapshot:
    text = CONFIG
    for key, value in policy.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value} #", 1)
    return Snapshot.from_config(load_config(text))


SNAP = snapshot()


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Each test computes its own decisions: a memo hit from another test proves nothing."""
    SNAP.decision_cache.clear()
    SNAP.verdict_cache.clear()


def pod(*images: str, **spec: Any) -> dict[str, Any]:
    return {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        **spec,
    }


def verdicts(namespace: str, *images: str, snap: Snapshot = SNAP) -> list[str]:
    return [c.verdict for c in decide(snap, namespace, pod(*images)).containers]


# ----------------------------------------------------------------------------- rule 1: parse


def test_an_invalid_reference_is_denied_quoting_the_parser() -> None:
    decision = decide(SNAP, "team-a-dev", pod("harbor.example.com/Team-A/app"))
    assert not decision.allowed
    assert "repository name (Team-A/app) must be lowercase" in decision.message


# ----------------------------------------------------------------------------- rule 2: registry


def test_an_unknown_registry_follows_policy_unknown_registry() -> None:
    assert verdicts("team-a-dev", "quay.io/x/y") == ["allowed"]
    warn = decide(snapshot(unknownRegistry="warn"), "team-a-dev", pod("quay.io/x/y"))
    assert warn.allowed
    assert warn.warnings and "quay.io is not managed by spacegate" in warn.warnings[0]
    deny = decide(snapshot(unknownRegistry="deny"), "team-a-dev", pod("quay.io/x/y"))
    assert not deny.allowed


def test_registry_hosts_match_case_insensitively_and_ports_exactly() -> None:
    assert verdicts("team-b-dev", "HARBOR.example.com/team-a/app") == ["denied"]
    assert verdicts("team-b-dev", "harbor.example.com:8443/team-a/app") == ["denied"]
    # another port is another registry, and unknown registries are allowed by default
    assert verdicts("team-b-dev", "harbor.example.com:9999/team-a/app") == ["allowed"]


def test_docker_hub_short_names_are_normalized_before_matching() -> None:
    snap = Snapshot.from_config(
        load_config(
            "registries:\n  - {name: hub, type: harbor, url: https://docker.io, "
            "spaces: [{name: library, public: false}]}\n"
        )
    )
    for image in ("nginx", "library/nginx", "docker.io/nginx", "index.docker.io/library/nginx"):
        assert verdicts("team-a-dev", image, snap=snap) == ["denied"], image


def test_an_invalid_host_part_is_an_unknown_registry_never_docker_hub() -> None:
    decision = decide(snapshot(unknownRegistry="deny"), "team-a-dev", pod("foo_bar.com/app"))
    assert not decision.allowed
    assert "registry foo_bar.com is not managed by spacegate" in decision.message


def test_a_lookalike_host_does_not_inherit_the_registry() -> None:
    # prefix matching on raw strings is a known bypass (gatekeeper-library #529)
    snap = snapshot(unknownRegistry="deny")
    assert verdicts("team-a-dev", "harbor.example.com.evil.io/team-a/app", snap=snap) == ["denied"]


# ----------------------------------------------------------------------------- rule 3: spaces


def test_a_space_the_harbor_does_not_have_follows_unknown_space() -> None:
    decision = decide(SNAP, "team-a-dev", pod("harbor.example.com/ghost/app"))
    assert not decision.allowed
    assert "registry 'harbor' has no space 'ghost'" in decision.message
    assert verdicts(
        "team-a-dev", "harbor.example.com/ghost/app", snap=snapshot(unknownSpace="allow")
    ) == ["allowed"]


def test_every_space_of_a_platform_docker_registry_is_public() -> None:
    assert verdicts("team-a-dev", "registry.example.com:5000/anything/app:1") == ["allowed"]
    assert verdicts("sandbox", "registry.example.com:5000/anything/app:1") == ["allowed"]


# ----------------------------------------------------------------------------- rule 4: visibility


def test_public_spaces_are_usable_from_every_namespace() -> None:
    for namespace in ("team-a-dev", "team-b-dev", "sandbox"):
        assert verdicts(namespace, "harbor.example.com/library/nginx:1.27") == ["allowed"]


def test_a_private_space_is_usable_by_its_bound_workspaces_only() -> None:
    assert verdicts("team-a-dev", "harbor.example.com/team-a/app") == ["allowed"]
    assert verdicts("team-b-dev", "harbor.example.com/team-a/app") == ["denied"]


def test_a_private_space_can_be_bound_to_several_workspaces() -> None:
    snap = Snapshot.build(
        SNAP.config,
        namespaces={"other": NamespaceInfo(workspace="103")},
    )
    assert verdicts("other", "harbor.example.com/team-a/app", snap=snap) == ["allowed"]


def test_a_namespace_without_workspace_may_use_public_spaces_only() -> None:
    assert verdicts("sandbox", "harbor.example.com/library/x", "harbor.example.com/team-a/x") == [
        "allowed",
        "denied",
    ]


def test_a_workspace_registry_is_visible_to_that_workspace_only_public_and_private() -> None:
    assert verdicts("team-b-dev", "ws.example.com/pub/a", "ws.example.com/priv/b") == [
        "allowed",
        "allowed",
    ]
    assert verdicts("team-a-dev", "ws.example.com/pub/a") == ["denied"]
    assert verdicts("sandbox", "ws.example.com/pub/a") == ["denied"]


# ----------------------------------------------------------------------------- rule 5: modes


def test_the_workload_is_denied_when_any_container_is() -> None:
    decision = decide(
        SNAP, "team-b-dev", pod("harbor.example.com/library/ok", "harbor.example.com/team-a/no")
    )
    assert not decision.allowed
    assert [c.verdict for c in decision.containers] == ["allowed", "denied"]


def test_init_and_ephemeral_containers_are_checked_too() -> None:
    spec = {
        "initContainers": [{"name": "init", "image": "harbor.example.com/team-a/init"}],
        "containers": [{"name": "main", "image": "harbor.example.com/library/ok"}],
        "ephemeralContainers": [{"name": "debug", "image": "harbor.example.com/team-a/dbg"}],
    }
    decision = decide(SNAP, "team-b-dev", spec)
    assert [(c.section, c.verdict) for c in decision.containers] == [
        ("initContainers", "denied"),
        ("containers", "allowed"),
        ("ephemeralContainers", "denied"),
    ]


def test_warn_mode_admits_with_one_warning_per_refused_container() -> None:
    snap = snapshot(mode="warn")
    decision = decide(
        snap, "team-b-dev", pod("harbor.example.com/team-a/x", "harbor.example.com/team-a/y")
    )
    assert decision.allowed
    assert decision.message == ""
    assert len(decision.warnings) == 2
    assert all(len(w) <= 256 for w in decision.warnings)
    assert [c.verdict for c in decision.containers] == ["warned", "warned"]


def test_audit_mode_admits_and_records_audit_annotations_only() -> None:
    decision = decide(snapshot(mode="audit"), "team-b-dev", pod("harbor.example.com/team-a/x"))
    assert decision.allowed
    assert decision.warnings == ()
    assert decision.audit_annotations["decision"] == "audited"
    assert "team-a/x" in decision.audit_annotations["refused"]


def test_a_namespace_mode_label_overrides_the_config_mode() -> None:
    snap = Snapshot.build(
        SNAP.config, namespaces={"team-b-dev": NamespaceInfo(workspace="102", mode="warn")}
    )
    decision = decide(snap, "team-b-dev", pod("harbor.example.com/team-a/x"))
    assert decision.allowed
    assert decision.mode == "warn"


def test_exempt_namespaces_are_admitted_untouched() -> None:
    decision = decide(
        SNAP, "kube-system", pod("harbor.example.com/team-a/x", "locked.example.com/a/b")
    )
    assert decision.allowed
    assert decision.exempt
    assert decision.patch == ()
    assert {c.verdict for c in decision.containers} == {"exempt"}


def test_a_template_container_without_image_is_reported_not_crashed_on() -> None:
    decision = decide(SNAP, "team-a-dev", {"containers": [{"name": "app"}, "junk"]})
    assert decision.allowed
    assert [c.verdict for c in decision.containers] == ["skipped", "skipped"]


# ----------------------------------------------------------------------------- messages


def test_a_denial_names_container_image_space_registry_namespace_workspace_and_remedy() -> None:
    decision = decide(SNAP, "team-b-dev", pod("harbor.example.com/team-a/app:1"))
    message = decision.message
    for part in (
        '"c0"',
        "harbor.example.com/team-a/app:1",
        "'team-a'",
        "'harbor'",
        "team-b-dev",
        "workspace 102",
        "bind space 'team-a' to workspace 102",
        "public space",
    ):
        assert part in message, part
    assert "\n" not in message


def test_messages_stay_single_line_even_for_hostile_images() -> None:
    decision = decide(SNAP, "team-b-dev", pod("harbor.example.com/team-a/app\n\tevil"))
    assert not decision.allowed
    assert all(ord(ch) >= 32 for ch in decision.message)
    assert single_line("a\nb\tc\x7fd") == "a b c d"


# ----------------------------------------------------------------------------- rule 6: mutation


def _apply(obj: dict[str, Any], decision_patch: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), list(decision_patch))
    return result


def _pod_object(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a-dev"},
        "spec": {"containers": [{"name": "app", "image": "harbor.example.com/team-a/app"}], **spec},
    }


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("absent", [{"name": "registry-secret"}]),
        (None, [{"name": "registry-secret"}]),
        ([], [{"name": "registry-secret"}]),
        ([{"name": "mine"}], [{"name": "mine"}, {"name": "registry-secret"}]),
    ],
)
def test_the_pull_secret_patch_applies_to_absent_null_empty_and_present_lists(
    existing: Any, expected: list[dict[str, str]]
) -> None:
    obj = _pod_object() if existing == "absent" else _pod_object(imagePullSecrets=existing)
    decision = decide(SNAP, "team-a-dev", obj["spec"], pointer="/spec")
    patched = _apply(obj, decision.patch)
    assert patched["spec"]["imagePullSecrets"] == expected


@pytest.mark.parametrize("existing", ["absent", None])
def test_an_absent_or_null_list_gets_the_whole_list_added(existing: Any) -> None:
    spec: dict[str, Any] = {"containers": []}
    if existing != "absent":
        spec["imagePullSecrets"] = existing
    assert pull_secret_patch(spec, "/spec", "s") == (
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "s"}]},
    )


def test_no_patch_at_all_when_the_secret_is_already_there() -> None:
    obj = _pod_object(imagePullSecrets=[{"name": "registry-secret"}])
    assert decide(SNAP, "team-a-dev", obj["spec"]).patch == ()


def test_the_patch_is_idempotent_under_reinvocation() -> None:
    obj = _pod_object()
    once = _apply(obj, decide(SNAP, "team-a-dev", obj["spec"]).patch)
    assert decide(SNAP, "team-a-dev", once["spec"]).patch == ()


def test_no_patch_on_update_or_the_ephemeralcontainers_subresource() -> None:
    spec = _pod_object()["spec"]
    assert decide(SNAP, "team-a-dev", spec, operation="UPDATE").patch == ()
    assert (
        decide(
            SNAP, "team-a-dev", spec, operation="UPDATE", sub_resource="ephemeralcontainers"
        ).patch
        == ()
    )


def test_workloads_are_validated_but_not_mutated() -> None:
    spec = _pod_object()["spec"]
    assert (
        decide(SNAP, "team-a-dev", spec, pointer="/spec/template/spec", kind="Deployment").patch
        == ()
    )


def test_public_images_need_no_secret_unless_the_registry_forbids_anonymous_pulls() -> None:
    assert decide(SNAP, "team-a-dev", pod("harbor.example.com/library/nginx")).patch == ()
    patch = decide(SNAP, "team-a-dev", pod("locked.example.com/tools/x")).patch
    assert patch == (
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "registry-secret"}]},
    )


def test_a_denied_pod_gets_no_patch() -> None:
    decision = decide(SNAP, "team-b-dev", pod("harbor.example.com/team-a/x"))
    assert decision.patch == ()


def test_warn_mode_still_injects_the_secret_for_allowed_private_images() -> None:
    decision = decide(
        snapshot(mode="warn"),
        "team-a-dev",
        pod("harbor.example.com/team-a/ok", "harbor.example.com/team-b/refused"),
    )
    assert decision.allowed
    assert decision.patch


def test_a_malformed_image_pull_secrets_field_is_left_alone() -> None:
    assert (
        decide(
            SNAP, "team-a-dev", pod("harbor.example.com/team-a/x", imagePullSecrets="oops")
        ).patch
        == ()
    )


def test_memoized_decisions_still_tell_namespaces_and_pull_secret_states_apart() -> None:
    snap = snapshot()
    spec = pod("harbor.example.com/team-a/x")
    assert decide(snap, "team-a-dev", spec).allowed
    assert not decide(snap, "team-b-dev", spec).allowed
    assert decide(snap, "team-a-dev", spec).patch
    with_secret = pod("harbor.example.com/team-a/x", imagePullSecrets=[{"name": "registry-secret"}])
    assert decide(snap, "team-a-dev", with_secret).patch == ()
    assert decide(snap, "team-a-dev", spec, operation="UPDATE").patch == ()
    renamed = {"containers": [{"name": "other", "image": "harbor.example.com/team-b/x"}]}
    assert not decide(snap, "team-a-dev", renamed).allowed
    assert decide(snap, "team-a-dev", spec) is decide(
        snap, "team-a-dev", pod("harbor.example.com/team-a/x")
    )


def test_repeated_images_are_answered_from_the_snapshot_cache() -> None:
    snap = snapshot()
    decide(snap, "team-a-dev", pod("harbor.example.com/team-a/x"))
    assert ("harbor.example.com/team-a/x", "101") in snap.verdict_cache
    assert decide(snap, "team-b-dev", pod("harbor.example.com/team-a/x")).allowed is False


# ----------------------------------------------------------------------------- updates


def test_an_update_does_not_judge_again_the_images_the_object_already_had() -> None:
    spec = pod("harbor.example.com/team-a/app:1")
    old_images = frozenset({"harbor.example.com/team-a/app:1"})
    decision = decide(SNAP, "team-b-dev", spec, operation="UPDATE", unchanged=old_images)
    assert decision.allowed
    assert "unchanged by this update" in decision.containers[0].reason


def test_an_update_judges_the_images_it_introduces() -> None:
    spec = pod("harbor.example.com/team-a/app:1", "harbor.example.com/team-a/app:2")
    old_images = frozenset({"harbor.example.com/team-a/app:1"})
    decision = decide(SNAP, "team-b-dev", spec, operation="UPDATE", unchanged=old_images)
    assert [c.verdict for c in decision.containers] == ["allowed", "denied"]


def test_a_create_ignores_unchanged_images() -> None:
    spec = pod("harbor.example.com/team-a/app:1")
    decision = decide(
        SNAP, "team-b-dev", spec, unchanged=frozenset({"harbor.example.com/team-a/app:1"})
    )
    assert not decision.allowed


def test_the_decision_memo_is_bounded() -> None:
    snap = snapshot()
    for i in range(MAX_MEMO_DECISIONS + 5):
        decide(snap, f"ns-{i}", pod("harbor.example.com/library/x"))
    assert len(snap.decision_cache) <= MAX_MEMO_DECISIONS


# --------------------------------------------------------------------------- attacks
#
# Each test below is a pod spec a tenant of workspace 101 (namespace team-a-dev) would write to
# run workspace 102's private images (harbor team-b), and the answer it must get.

TEAM_B = "harbor.example.com/team-b/api:1.0"
PUBLIC = "harbor.example.com/library/nginx:1.27"


def image_volume(name: str, reference: str) -> dict[str, Any]:
    return {"name": name, "image": {"reference": reference, "pullPolicy": "IfNotPresent"}}


def test_an_image_volume_from_another_workspaces_space_is_denied_naming_the_volume() -> None:
    spec = pod(
        PUBLIC,
        volumes=[{"name": "cfg", "configMap": {"name": "x"}}, image_volume("models", TEAM_B)],
    )

    decision = decide(SNAP, "team-a-dev", spec)

    assert not decision.allowed
    assert [(c.noun, c.name, c.verdict) for c in decision.containers] == [
        ("container", "c0", "allowed"),
        ("volume", "models", "denied"),
    ]
    assert f'volume "models" image "{TEAM_B}" is not allowed' in decision.message


def test_an_image_volume_is_denied_under_unknown_registry_deny() -> None:
    spec = pod(PUBLIC, volumes=[image_volume("v", "evil.example.net/x:1")])
    assert not decide(snapshot(unknownRegistry="deny"), "team-a-dev", spec).allowed


def test_a_workload_template_with_a_foreign_image_volume_is_denied() -> None:
    spec = pod(PUBLIC, volumes=[image_volume("v", TEAM_B)])
    decision = decide(SNAP, "team-a-dev", spec, pointer="/spec/template/spec", kind="Deployment")
    assert not decision.allowed


def test_an_allowed_private_image_volume_gets_the_pull_secret() -> None:
    spec = pod(PUBLIC, volumes=[image_volume("v", "harbor.example.com/team-a/data:1")])
    decision = decide(SNAP, "team-a-dev", spec)
    assert decision.allowed
    assert decision.patch == (
        {"op": "add", "path": "/spec/imagePullSecrets", "value": [{"name": "registry-secret"}]},
    )


def test_an_update_judges_an_image_volume_it_introduces() -> None:
    old = pod(PUBLIC)
    new = pod(PUBLIC, volumes=[image_volume("v", TEAM_B)])
    from policy.workload import images

    decision = decide(
        SNAP,
        "team-a-dev",
        new,
        operation="UPDATE",
        kind="Deployment",
        pointer="/spec/template/spec",
        unchanged=images(old),
    )
    assert not decision.allowed
    assert images(new) == {PUBLIC, TEAM_B}


def test_memoized_decisions_tell_image_volumes_apart() -> None:
    assert decide(SNAP, "team-a-dev", pod(PUBLIC)).allowed
    assert not decide(SNAP, "team-a-dev", pod(PUBLIC, volumes=[image_volume("v", TEAM_B)])).allowed


def test_an_image_longer_than_any_reference_is_denied_unparsed_and_quoted_by_its_start() -> None:
    from policy.reference import MAX_REFERENCE_LENGTH

    huge = "harbor.example.com/library/" + "a" * 2_500_000
    decision = decide(SNAP, "team-a-dev", pod(huge))

    assert not decision.allowed
    assert (
        f"2500027 characters long, longer than any pullable reference can be "
        f"({MAX_REFERENCE_LENGTH})" in decision.message
    )
    assert len(decision.message) < 1000
    assert huge[:64] in decision.message
    assert not SNAP.verdict_cache
    assert not SNAP.decision_cache  # a spec this large is decided afresh, never remembered


def test_the_longest_pullable_reference_is_still_parsed() -> None:
    from policy.reference import MAX_REFERENCE_LENGTH

    domain = ".".join(["a" * 63] * 3) + "." + "a" * 61  # 253 characters
    image = f"{domain}:65535/{'/'.join(['b' * 127, 'c' * 127])}:{'t' * 128}@sha512:{'0' * 128}"
    assert len(image) == MAX_REFERENCE_LENGTH
    [verdict] = decide(SNAP, "team-a-dev", pod(image)).containers
    assert "registry" in verdict.reason and "not managed by spacegate" in verdict.reason


def test_many_distinct_images_cannot_grow_the_caches_without_bound() -> None:
    from policy.rules import MAX_CACHED_VERDICTS

    for i in range(MAX_CACHED_VERDICTS + 10):
        decide(SNAP, "team-a-dev", pod(f"harbor.example.com/library/x{i}:1"))
    assert len(SNAP.verdict_cache) <= MAX_CACHED_VERDICTS
    assert len(SNAP.decision_cache) <= MAX_MEMO_DECISIONS


def test_a_pod_with_thousands_of_refused_images_gets_bounded_text() -> None:
    from policy.messages import MAX_ANNOTATION_CHARS, MAX_MESSAGE_CHARS, MAX_WARNINGS

    images = [f"{TEAM_B}-{i}" for i in range(3000)]
    enforced = decide(SNAP, "team-a-dev", pod(*images))
    warned = decide(snapshot(mode="warn"), "team-a-dev", pod(*images))

    assert len(enforced.message) <= MAX_MESSAGE_CHARS
    assert enforced.message.endswith("more)")
    assert len(enforced.audit_annotations["refused"]) <= MAX_ANNOTATION_CHARS
    assert len(warned.warnings) == MAX_WARNINGS
    assert warned.warnings[-1] == f"spacegate: {3000 - MAX_WARNINGS + 1} more images refused"


@pytest.mark.parametrize(
    "image",
    [
        "sha256:" + "ab" * 32,
        "sha256:abcdef0123",  # a short ID prefix resolves too
        "sha512:" + "cd" * 64,
        "SHA256:" + "ab" * 32,
    ],
)
def test_a_bare_digest_that_the_runtime_would_resolve_locally_is_refused(image: str) -> None:
    decision = decide(SNAP, "team-a-dev", pod(image))
    if image.startswith("SHA"):  # uppercase is no repository name: refused by the parser
        assert "invalid image reference" in decision.message
        return
    assert not decision.allowed
    assert "ID of an image already on the node" in decision.message
    assert "name the image by its registry and repository instead" in decision.message


def test_a_digest_after_a_real_repository_name_is_not_a_local_id() -> None:
    assert decide(SNAP, "team-a-dev", pod(f"{PUBLIC}@sha256:{'ab' * 32}")).allowed


def test_the_registrys_default_port_cannot_be_used_to_step_around_it() -> None:
    # harbor.example.com is https on 443: harbor.example.com:443 is the same server
    decision = decide(
        snapshot(unknownRegistry="allow"),
        "team-a-dev",
        pod("harbor.example.com:443/team-b/api:1.0"),
    )
    assert not decision.allowed
    assert "private space 'team-b' of registry 'harbor' is not bound" in decision.message


# --------------------------------------------------------------------------- visible spaces


@pytest.mark.parametrize("namespace", ["team-a-dev", "team-b-dev", "nowhere", "kube-system"])
def test_visible_spaces_are_exactly_the_spaces_decide_allows(namespace: str) -> None:
    from policy.visibility import visible_spaces

    visible = {(v.registry, v.space) for v in visible_spaces(SNAP, namespace)}
    for state in SNAP.registries.values():
        registry = state.registry
        for space in sorted(state.spaces) or ["anything"]:
            image = f"{registry.hosts[0]}/{space}/app:1"
            [verdict] = decide(SNAP, namespace, pod(image)).containers
            listed = (registry.name, space if state.spaces else "*") in visible
            allowed = verdict.verdict in ("allowed", "exempt") and not verdict.refused
            if namespace == "kube-system":
                continue  # exempt: everything passes, visibility is still the workspace's
            assert listed == allowed, (namespace, image, verdict.reason)


def test_visible_spaces_say_which_rule_allows_them_and_whether_a_secret_is_needed() -> None:
    from policy.visibility import visible_spaces

    by_space = {(v.registry, v.space): v for v in visible_spaces(SNAP, "team-b-dev")}
    assert by_space[("harbor", "library")].rule == "public"
    assert ("harbor", "team-a") not in by_space
    assert by_space[("ws-harbor", "priv")].rule == "workspace-registry"
    assert by_space[("ws-harbor", "priv")].needs_secret
    assert by_space[("platform", "*")].rule == "docker-registry"
    assert by_space[("locked", "*")].needs_secret
