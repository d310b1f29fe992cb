"""The apiserver can verify the webhook's certificate, in each certificates.mode, across upgrades.

The apiserver verifies the chain against the webhook configuration's caBundle and the host
name `<svc>.<ns>.svc` (docs/protocol.md §4). These tests do the same verification on
what the chart rendered, with cryptography's X.509 verifier and with a real TLS handshake.
"""

from __future__ import annotations

import base64
import datetime
import ssl
from typing import Any

import helm_python as helm
import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from tests.charts.chartlib import (
    FULLNAME,
    NAMESPACE,
    SERVICE_HOST,
    Rendered,
    b64_pem,
    render_chart,
)
from tests.charts.fake_apiserver import FakeAPIServer

ALL_NAMES = [
    SERVICE_HOST,
    FULLNAME,
    f"{FULLNAME}.{NAMESPACE}",
    f"{FULLNAME}.{NAMESPACE}.svc.cluster.local",
]
BOTH = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def _ca_bundle(rendered: Rendered) -> bytes:
    bundles = {rendered.webhook(kind)["clientConfig"]["caBundle"] for kind in BOTH}
    assert len(bundles) == 1, "the two webhook configurations trust different CAs"
    return base64.b64decode(bundles.pop())


def _serving_secret(rendered: Rendered) -> dict[str, Any]:
    return rendered.one("Secret", f"{FULLNAME}-tls")


def _verify(ca_bundle: bytes, leaf_pem: bytes, hostname: str) -> None:
    """Raise VerificationError unless `leaf_pem` chains to `ca_bundle` and covers `hostname`."""
    store = Store(x509.load_pem_x509_certificates(ca_bundle))
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(datetime.datetime.now(datetime.UTC))
        .build_server_verifier(x509.DNSName(hostname))
    )
    verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])


def _tls_handshake(
    ca_bundle: bytes, cert_pem: bytes, key_pem: bytes, hostname: str, tmp: Any
) -> str:
    """A TLS handshake in memory, client verifying like the apiserver; returns the version."""
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cadata=ca_bundle.decode())
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values()), "handshake did not complete"
    version = client.version()
    assert version is not None
    return version


# ------------------------------------------------------------------------- mode: helm


@pytest.mark.parametrize("hostname", ALL_NAMES)
def test_generated_ca_bundle_verifies_the_serving_certificate_for_each_service_name(
    default: Rendered, hostname: str
) -> None:
    _verify(_ca_bundle(default), b64_pem(_serving_secret(default)["data"], "tls.crt"), hostname)


def test_generated_certificate_is_refused_for_another_service(default: Rendered) -> None:
    leaf = b64_pem(_serving_secret(default)["data"], "tls.crt")
    with pytest.raises(VerificationError):
        _verify(_ca_bundle(default), leaf, f"other.{NAMESPACE}.svc")


def test_apiserver_style_tls_handshake_succeeds_with_the_mounted_files(
    default: Rendered, tmp_path: Any
) -> None:
    data = _serving_secret(default)["data"]
    version = _tls_handshake(
        _ca_bundle(default),
        b64_pem(data, "tls.crt"),
        b64_pem(data, "tls.key"),
        SERVICE_HOST,
        tmp_path,
    )
    assert version in ("TLSv1.2", "TLSv1.3")


def test_ca_crt_given_to_the_server_is_the_ca_the_apiserver_trusts(default: Rendered) -> None:
    bundle = _ca_bundle(default)
    assert b64_pem(_serving_secret(default)["data"], "ca.crt") == bundle
    assert b64_pem(default.one("Secret", f"{FULLNAME}-ca")["data"], "ca.crt") == bundle


def test_ca_private_key_is_never_mounted_into_the_webhook_pods(default: Rendered) -> None:
    assert "ca.key" not in _serving_secret(default)["data"]
    mounted = [s.get("secret", {}).get("name") for s in _projected_sources(default)]
    assert f"{FULLNAME}-ca" not in mounted


def test_generated_certificates_use_sha256_and_the_configured_lifetimes(default: Rendered) -> None:
    leaf = x509.load_pem_x509_certificate(b64_pem(_serving_secret(default)["data"], "tls.crt"))
    (ca,) = x509.load_pem_x509_certificates(_ca_bundle(default))
    for cert in (leaf, ca):
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha256"
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 365
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == 3650
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ALL_NAMES


def test_helm_upgrade_keeps_the_ca_the_apiserver_already_trusts(
    chart: helm.Chart, default: Rendered
) -> None:
    """`lookup` finds the installed CA Secret; the upgrade reuses it and re-issues the leaf."""
    installed_ca = default.one("Secret", f"{FULLNAME}-ca")
    installed_leaf = b64_pem(_serving_secret(default)["data"], "tls.crt")
    fake = FakeAPIServer()
    fake.add_secret(installed_ca)
    fake.add_secret(_serving_secret(default))
    with fake.serving() as kubeconfig, helm.Config(kubeconfig_content=kubeconfig) as cluster:
        upgraded = render_chart(chart, {}, config=cluster)

    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{FULLNAME}-ca" in fake.requests
    assert _ca_bundle(upgraded) == _ca_bundle(default)
    assert upgraded.one("Secret", f"{FULLNAME}-ca")["data"] == installed_ca["data"]
    renewed_leaf = b64_pem(_serving_secret(upgraded)["data"], "tls.crt")
    assert renewed_leaf != installed_leaf, "the upgrade renews the serving certificate"
    # Pods still serving the old certificate and pods with the renewed one are both trusted.
    _verify(_ca_bundle(default), renewed_leaf, SERVICE_HOST)
    _verify(_ca_bundle(upgraded), installed_leaf, SERVICE_HOST)


def test_helm_upgrade_without_the_ca_secret_issues_a_new_consistent_pair(
    chart: helm.Chart, default: Rendered
) -> None:
    """Deleting the CA Secret is how an admin replaces the CA: the next upgrade makes one."""
    fake = FakeAPIServer()
    fake.add_secret(_serving_secret(default))  # the CA Secret is gone
    with fake.serving() as kubeconfig, helm.Config(kubeconfig_content=kubeconfig) as cluster:
        upgraded = render_chart(chart, {}, config=cluster)
    assert _ca_bundle(upgraded) != _ca_bundle(default)
    _verify(
        _ca_bundle(upgraded), b64_pem(_serving_secret(upgraded)["data"], "tls.crt"), SERVICE_HOST
    )


# ------------------------------------------------------------------------- other modes


def _projected_sources(rendered: Rendered) -> list[dict[str, Any]]:
    (volume,) = [v for v in rendered.pod_spec["volumes"] if "projected" in v]
    sources: list[dict[str, Any]] = volume["projected"]["sources"]
    return sources


def _mounted_files(rendered: Rendered) -> dict[str, tuple[str, str, str]]:
    """Path under /etc/spacegate -> (source kind, object name, key)."""
    files = {}
    for source in _projected_sources(rendered):
        ((kind, ref),) = source.items()
        for item in ref["items"]:
            files[item["path"]] = (kind, ref["name"], item["key"])
    return files


def test_secret_mode_trusts_the_admins_ca_and_serves_the_admins_secret(
    rendered_set: Any, admin_ca_pem: str
) -> None:
    rendered: Rendered = rendered_set("secret")
    assert _ca_bundle(rendered) == admin_ca_pem.encode()
    assert rendered.all("Secret") == [], "the chart must not create or overwrite TLS Secrets"
    files = _mounted_files(rendered)
    assert files["tls/tls.crt"] == ("secret", "my-webhook-tls", "tls.crt")
    assert files["tls/tls.key"] == ("secret", "my-webhook-tls", "tls.key")
    assert files["tls/ca.crt"] == ("configMap", FULLNAME, "ca.crt")
    ca_crt = rendered.one("ConfigMap", FULLNAME)["data"]["ca.crt"]
    assert ca_crt.strip() == admin_ca_pem.strip()


def test_cert_manager_serving_certificate_covers_every_service_name(rendered_set: Any) -> None:
    rendered: Rendered = rendered_set("cert-manager")
    serving = rendered.one("Certificate", f"{FULLNAME}-serving")["spec"]
    assert serving["dnsNames"] == ALL_NAMES
    assert serving["commonName"] == SERVICE_HOST
    files = _mounted_files(rendered)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        assert files[f"tls/{key}"] == ("secret", serving["secretName"], key)
    assert rendered.all("Secret") == [], "cert-manager writes the Secrets, not Helm"


@pytest.mark.parametrize("name", ["default", "cert-manager", "secret"])
def test_each_mode_uses_its_own_secret_names_so_switching_never_deletes_a_live_secret(
    rendered_set: Any, name: str
) -> None:
    rendered: Rendered = rendered_set(name)
    tls_secret = _mounted_files(rendered)["tls/tls.crt"][1]
    expected = {
        "default": f"{FULLNAME}-tls",
        "cert-manager": f"{FULLNAME}-certmanager-tls",
        "secret": "my-webhook-tls",
    }
    assert tls_secret == expected[name]
