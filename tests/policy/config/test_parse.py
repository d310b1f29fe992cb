"""Reading the config: strict, typed, and every error names the key path."""

from __future__ import annotations

import re

import pytest

from policy.config import ConfigError, load_config, parse_config
from tests.conftest import EXAMPLES
from tests.policy.config.conftest import MINIMAL

# Provisioning requires the namespace guard (the workspace label is a credential boundary).
GUARDED = "policy: {namespaceGuard: {enabled: true}}\n"


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(text, "cfg.yaml")
    return str(info.value)


def test_the_demo_config_loads_with_its_three_registries() -> None:
    config = load_config((EXAMPLES / "demo.yaml").read_text(), "demo.yaml")
    assert [r.name for r in config.registries] == [
        "harbor",
        "platform-registry",
        "team-b-registry",
    ]
    assert config.policy.exempt_namespaces == {"kube-system", "spacegate"}
    assert config.policy.max_staleness == 600.0


def test_defaults_follow_the_design() -> None:
    config = load_config(MINIMAL)
    assert config.workspace_label == "workspace.ghippo.io/id"
    assert config.policy.mode == "enforce"
    assert config.policy.unknown_registry == "allow"
    assert config.policy.unknown_space == "deny"
    assert config.policy.pull_secret_name == "registry-secret"
    assert config.policy.exempt_namespaces == {"kube-system"}
    registry = config.registries[0]
    assert registry.anonymous_pull is True
    assert registry.workspace is None
    assert registry.refresh_interval == 30.0


def test_hosts_default_to_the_url_host_lowercased_with_and_without_its_default_port() -> None:
    assert load_config(MINIMAL).registries[0].hosts == (
        "harbor.example.com",
        "harbor.example.com:443",
    )


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("https://h.example.com", ("h.example.com", "h.example.com:443")),
        ("https://h.example.com:443", ("h.example.com:443", "h.example.com")),
        ("http://h.example.com", ("h.example.com", "h.example.com:80")),
        ("http://h.example.com:80/", ("h.example.com:80", "h.example.com")),
        ("https://h.example.com:5000", ("h.example.com:5000",)),
        ("http://h.example.com:443", ("h.example.com:443",)),
        ("https://[::1]", ("[::1]", "[::1]:443")),
    ],
)
def test_a_url_on_its_default_port_is_reachable_with_and_without_the_port(
    url: str, hosts: tuple[str, ...]
) -> None:
    text = f"registries:\n- {{name: r, type: docker-registry, url: '{url}'}}\n"
    assert load_config(text).registries[0].hosts == hosts


def test_listed_hosts_also_imply_their_default_port_alias() -> None:
    text = (
        "registries:\n- {name: r, type: harbor, url: 'https://h.example.com',"
        " hosts: [h.example.com, mirror.example.com:443, other.example.com:8443]}\n"
    )
    assert load_config(text).registries[0].hosts == (
        "h.example.com",
        "mirror.example.com:443",
        "other.example.com:8443",
        "h.example.com:443",
        "mirror.example.com",
    )


def test_a_default_port_alias_listed_by_another_registry_stays_with_that_registry() -> None:
    # a is http (the bare host is port 80), b the https server on 443: two servers; the bare
    # host b's URL would imply is listed by a, so it is a's.
    config = load_config(
        "registries:\n"
        "  - {name: a, type: docker-registry, url: http://h.example.com}\n"
        "  - {name: b, type: harbor, url: https://h.example.com, hosts: ['h.example.com:443']}\n"
    )
    assert [r.hosts for r in config.registries] == [
        ("h.example.com", "h.example.com:80"),
        ("h.example.com:443",),
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("url: https://h.example.com", "url: https://x, hosts: ['h.example.com:443']"),
        ("url: https://h.example.com", "url: https://x, hosts: ['H.Example.COM.:0443']"),
        ("url: 'https://[fd00::5]'", "url: https://x, hosts: ['[fd00:0:0::5]:443']"),
        ("url: https://10.0.0.5", "url: https://x, hosts: ['[::ffff:a00:5]']"),
        ("url: https://docker.io", "url: https://x, hosts: ['registry-1.docker.io']"),
        ("url: https://x, hosts: [index.docker.io]", "url: https://y, hosts: [docker.io:5000]"),
        ("url: 'http://localhost:5000'", "url: https://x, hosts: ['127.0.0.2:5000']"),
        ("url: https://h.example.com", "url: http://h.example.com"),
    ],
)
def test_two_registries_reaching_one_server_in_any_spelling_is_an_error_naming_both(
    first: str, second: str
) -> None:
    message = _error(
        "registries:\n"
        f"  - {{name: a, type: harbor, {first}}}\n"
        f"  - {{name: b, type: docker-registry, {second}}}\n"
    )
    assert "registries[1].hosts:" in message
    assert "already claimed by registry 'a' (registries[0])" in message
    assert "'a' and 'b'" in message


def test_listed_hosts_are_kept_in_their_canonical_spelling() -> None:
    text = (
        "registries:\n- {name: r, type: docker-registry, url: 'https://h.example.com',"
        " hosts: ['Mirror.Example.COM.', 'h.example.com:0443', '[FD00:0::5]:5000',"
        " '[::ffff:a00:5]:5000']}\n"
    )
    assert load_config(text).registries[0].hosts == (
        "mirror.example.com",
        "h.example.com:443",
        "[fd00::5]:5000",
        "10.0.0.5:5000",
        "mirror.example.com:443",
        "h.example.com",
    )


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("010.0.0.5", "8.0.0.5"),
        ("0xa.0.0.5:5000", "10.0.0.5:5000"),
        ("167772165:5000", "10.0.0.5:5000"),
        ("10.5", "10.0.0.5"),
    ],
)
def test_a_numeric_name_a_resolver_reads_as_another_address_is_refused_naming_it(
    host: str, address: str
) -> None:
    message = _error(
        f"registries:\n- {{name: r, type: harbor, url: https://h, hosts: ['{host}']}}\n"
    )
    assert f'registries[0].hosts[0]: "{host}" is read by a node\'s resolver as the IPv4' in message
    assert message.endswith(f"write {address}")


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("h.example.com:0", "port 0 of"),
        ("h.example.com:65536", "port 65536 of"),
        ("[fd00::5::1]", "is not an IPv6 address"),
        ("[12345::1]", "is not an IPv6 address"),
    ],
)
def test_ports_and_addresses_no_node_could_dial_are_refused(host: str, problem: str) -> None:
    message = _error(
        f"registries:\n- {{name: r, type: harbor, url: https://h, hosts: ['{host}']}}\n"
    )
    assert "registries[0].hosts[0]:" in message and problem in message


def test_a_url_whose_host_no_image_can_name_needs_hosts() -> None:
    message = _error("registries:\n- {name: r, type: harbor, url: https://harbor_x.local}\n")
    assert 'registries[0].url: the host "harbor_x.local" cannot be an image domain' in message


def test_numeric_workspace_ids_become_strings_like_label_values() -> None:
    config = load_config(MINIMAL)
    assert config.bindings[0].workspaces == ("101", "102")
    assert config.namespaces == {"team-a-dev": "101"}


def test_a_space_without_public_is_private() -> None:
    spaces = load_config(MINIMAL).registries[0].spaces
    assert spaces is not None
    assert {s.name: s.public for s in spaces} == {"library": True, "team-a": False}


def test_a_wrong_registry_type_names_the_path_and_the_choices() -> None:
    message = _error("registries:\n  - {name: a, type: harb0r, url: https://a}\n")
    assert (
        message == 'cfg.yaml: registries[0].type: expected harbor or docker-registry, got "harb0r"'
    )


def test_the_second_registry_is_named_by_index() -> None:
    text = """
registries:
  - {name: a, type: harbor, url: https://a}
  - {name: b, type: harb0r, url: https://b}
"""
    assert "registries[1].type: expected harbor or docker-registry" in _error(text)


def test_unknown_keys_are_errors_with_their_path() -> None:
    assert "policy.mdoe: unknown key" in _error("policy: {mdoe: warn}\n")
    assert "registries[0].spaces[0].visibility: unknown key" in _error(
        "registries:\n  - name: a\n    type: harbor\n    url: https://a\n"
        "    spaces: [{name: x, visibility: public}]\n"
    )
    assert "cfg.yaml: workspacelabel: unknown key" in _error("workspacelabel: x\n")


def test_a_binding_to_an_undeclared_registry_is_an_error() -> None:
    message = _error(
        "registries:\n  - {name: harbor, type: harbor, url: https://h}\n"
        "bindings:\n  - {registry: harbr, space: s, workspaces: ['1']}\n"
    )
    assert "bindings[0].registry: registry 'harbr' is not declared" in message
    assert "declared: harbor" in message


def test_two_registries_claiming_one_host_is_an_error() -> None:
    message = _error(
        "registries:\n"
        "  - {name: a, type: harbor, url: https://h.example.com}\n"
        "  - {name: b, type: docker-registry, url: https://x, hosts: [H.example.com]}\n"
    )
    assert "registries[1].hosts: host 'h.example.com' is already claimed by registry 'a'" in message


def test_the_same_host_on_another_port_is_another_registry() -> None:
    config = load_config(
        "registries:\n"
        "  - {name: a, type: harbor, url: https://h.example.com}\n"
        "  - {name: b, type: docker-registry, url: https://h.example.com:5000}\n"
    )
    assert [r.hosts for r in config.registries] == [
        ("h.example.com", "h.example.com:443"),
        ("h.example.com:5000",),
    ]


def test_bad_modes_and_actions_list_the_choices() -> None:
    assert 'policy.mode: expected enforce, warn, audit, got "block"' in _error(
        "policy: {mode: block}\n"
    )
    assert "policy.unknownSpace: expected allow, warn, deny, got true" in _error(
        "policy: {unknownSpace: yes}\n"
    )


def test_urls_must_be_http_or_https_and_carry_no_credentials() -> None:
    assert "registries[0].url: expected an http:// or https:// URL" in _error(
        "registries:\n  - {name: a, type: harbor, url: ftp://h}\n"
    )
    message = _error("registries:\n  - {name: a, type: harbor, url: 'https://u:hunter2@h'}\n")
    assert "credentials in the URL are not allowed" in message
    assert "hunter2" not in message


def test_http_urls_are_accepted_and_flagged_for_a_warning() -> None:
    config = load_config(
        "registries:\n  - {name: a, type: docker-registry, url: http://127.0.0.1:5000}\n"
    )
    assert config.registries[0].insecure_url
    assert config.registries[0].hosts == ("127.0.0.1:5000",)


def test_missing_required_keys_are_named() -> None:
    assert "registries[0].url: required" in _error("registries:\n  - {name: a, type: harbor}\n")


def test_yaml_syntax_errors_name_the_file_and_line() -> None:
    message = _error("policy:\n  mode: [enforce\n")
    assert message.startswith("cfg.yaml:3:")
    assert "invalid YAML" in message


def test_several_documents_are_refused() -> None:
    assert "expected one YAML document, found 2" in _error("policy: {}\n---\npolicy: {}\n")


def test_an_empty_file_is_the_default_config() -> None:
    config = load_config("")
    assert config.registries == ()
    assert config.policy.mode == "enforce"


def test_duplicate_spaces_and_registry_names_are_errors() -> None:
    assert "registries[1].name: duplicate registry name 'a'" in _error(
        "registries:\n  - {name: a, type: harbor, url: https://x}\n"
        "  - {name: a, type: harbor, url: https://y}\n"
    )
    assert "spaces[1].name: duplicate space 'x'" in _error(
        "registries:\n  - {name: a, type: harbor, url: https://x, spaces: [{name: x}, {name: x}]}\n"
    )


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5 m", "-1s", "0s", True])
def test_bad_durations_are_refused_naming_their_key(text: object) -> None:
    with pytest.raises(ConfigError, match=r"^policy\.maxStaleness: expected a"):
        parse_config({"policy": {"maxStaleness": text}})


def test_every_duration_key_reads_go_durations() -> None:
    config = load_config(
        "policy: {maxStaleness: 1h30m}\n"
        "registries: [{name: h, type: harbor, url: https://h, refreshInterval: 500ms}]\n"
        "pullSecrets: {rotateEvery: 10m}\n"
        "audit: {interval: 45}\n"
    )
    assert config.policy.max_staleness == 5400.0
    assert config.registries[0].refresh_interval == 0.5
    assert config.pull_secrets.rotate_every == 600.0
    assert config.audit.interval == 45.0


def test_pull_secret_provisioning_is_off_by_default_and_configurable() -> None:
    assert load_config("{}").pull_secrets.provision is False
    config = load_config(
        "pullSecrets: {provision: true, credentialsNamespace: ops, rotateEvery: 24h}\n" + GUARDED
    )
    assert config.pull_secrets.provision is True
    assert config.pull_secrets.credentials_namespace == "ops"
    assert config.pull_secrets.rotate_every == 86400.0
    assert load_config("pullSecrets: {provision: true}\n" + GUARDED).pull_secrets.rotate_every == (
        30 * 86400
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("pullSecrets: {provison: true}\n", "pullSecrets.provison: unknown key"),
        ("pullSecrets: {credentialsNamespace: Ops_1}\n", "pullSecrets.credentialsNamespace"),
        ("pullSecrets: {rotateEvery: soon}\n", "pullSecrets.rotateEvery"),
        (
            "registries:\n- {name: h, type: harbor, url: 'https://h',"
            " pullCredentials: {passwordFile: /p}}\n",
            "registries[0].pullCredentials: only a docker-registry",
        ),
    ],
)
def test_bad_provisioning_settings_name_their_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        load_config(text)


@pytest.mark.parametrize(
    "policy",
    [
        "",  # the guard is off by default
        "policy: {namespaceGuard: {enabled: false, groups: [admins]}}\n",
        "policy: {mode: enforce}\n",
        "policy: {namespaceGuard: null}\n",
    ],
)
def test_provisioning_without_the_namespace_guard_is_refused_saying_why(policy: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config("workspaceLabel: tenant\npullSecrets: {provision: true}\n" + policy)
    message = str(refused.value)
    assert message.startswith("<config>: pullSecrets.provision: requires ")
    assert "policy.namespaceGuard.enabled: true" in message
    assert "namespace labelled tenant=W receives W's pull credential" in message


def test_provisioning_is_accepted_with_the_guard_and_the_guard_needs_no_provisioning() -> None:
    assert load_config("pullSecrets: {provision: true}\n" + GUARDED).pull_secrets.provision
    assert load_config("pullSecrets: {provision: false}\n").pull_secrets.provision is False
    assert load_config(GUARDED).policy.namespace_guard.enabled


def test_a_docker_registry_keeps_its_pull_credential_apart_from_its_listing_credential() -> None:
    registry = load_config(
        "registries:\n- {name: d, type: docker-registry, url: 'https://d', anonymousPull: false,"
        " credentials: {usernameFile: /lu, passwordFile: /lp},"
        " pullCredentials: {usernameFile: /pu, passwordFile: /pp}}\n"
    ).registries[0]
    assert registry.credentials is not None and registry.credentials.password_file == "/lp"
    assert (
        registry.pull_credentials is not None and registry.pull_credentials.password_file == "/pp"
    )


def test_the_background_audit_is_off_by_default_and_its_report_format_is_checked() -> None:
    assert load_config("{}").audit.enabled is False
    assert load_config("audit: {enabled: true}\n").audit.reports == "wgpolicyk8s"
    with pytest.raises(ConfigError, match=r"audit\.reports: expected wgpolicyk8s, openreports"):
        load_config("audit: {reports: kyverno}\n")


def test_the_last_known_good_copy_is_kept_by_default_and_can_be_turned_off() -> None:
    assert load_config("{}").last_known_good.persist is True
    assert load_config("lastKnownGood: {persist: false}\n").last_known_good.persist is False
    with pytest.raises(ConfigError, match=r"lastKnownGood\.persist: expected true or false"):
        load_config("lastKnownGood: {persist: maybe}\n")
    with pytest.raises(ConfigError, match=r"lastKnownGood\.persits: unknown key"):
        load_config("lastKnownGood: {persits: true}\n")


def test_bindings_as_a_list_leave_the_source_to_the_default() -> None:
    config = load_config(
        "registries: [{name: h, type: harbor, url: https://h}]\n"
        "bindings: [{registry: h, space: a, workspaces: ['1']}]\n"
    )
    assert config.binding_source is None
    assert not config.require_acknowledgement
    assert [b.space for b in config.bindings] == ["a"]


def test_bindings_as_a_mapping_set_the_source_and_the_acknowledgement() -> None:
    config = load_config(
        "registries: [{name: h, type: harbor, url: https://h}]\n"
        "bindings:\n"
        "  source: objects\n"
        "  requireAcknowledgement: true\n"
        "  items: [{registry: h, space: a, workspaces: ['1']}]\n"
    )
    assert config.binding_source == "objects"
    assert config.require_acknowledgement
    assert [b.space for b in config.bindings] == ["a"]
    assert load_config("bindings: {source: both}\n").bindings == ()


def test_a_binding_in_the_mapping_form_is_named_by_its_items_path() -> None:
    with pytest.raises(ConfigError, match=r"bindings\.items\[0\]\.registry: registry 'x' is not"):
        load_config("bindings: {items: [{registry: x, space: a, workspaces: ['1']}]}\n")
    with pytest.raises(ConfigError, match=r"bindings\.requireAcknowledgement: expected true or"):
        load_config("bindings: {requireAcknowledgement: 'yes'}\n")
