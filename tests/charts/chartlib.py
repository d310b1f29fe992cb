"""Rendering the chart with the real Helm SDK, and reading what came out.

Every test looks at manifests Helm itself produced (the same engine ``helm install`` runs),
parsed into plain dicts. Rendering generates RSA keys in certificates.mode=helm, so the
fixtures in conftest.py render each values set once per session and share the result.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "spacegate"
RELEASE = "spacegate"
NAMESPACE = "spacegate-system"
# The name the chart derives for every namespaced object and both webhook configurations.
FULLNAME = "spacegate"
SERVICE_HOST = f"{FULLNAME}.{NAMESPACE}.svc"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One render of the chart: its objects (in template order) and NOTES.txt."""

    values: Mapping[str, Any]
    objects: tuple[Manifest, ...]
    notes: str

    def all(self, kind: str) -> list[Manifest]:
        """Every object of ``kind``."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def find(self, kind: str, name: str | None = None) -> Manifest | None:
        """The object of ``kind`` (named ``name``), or None; fails if ambiguous."""
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) <= 1, f"{len(found)} {kind} objects named {name!r}"
        return found[0] if found else None

    def one(self, kind: str, name: str | None = None) -> Manifest:
        """The object of ``kind`` (named ``name``); fails unless exactly one exists."""
        found = self.find(kind, name)
        assert found is not None, f"no {kind} {name or ''} rendered"
        return found

    @property
    def pod_spec(self) -> Manifest:
        """The webhook Deployment's pod spec."""
        spec: Manifest = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def container(self) -> Manifest:
        """The webhook server container."""
        (container,) = self.pod_spec["containers"]
        return dict(container)

    @property
    def config(self) -> Manifest:
        """The spacegate config the ConfigMap carries, parsed."""
        text = self.one("ConfigMap", FULLNAME)["data"]["config.yaml"]
        loaded: Manifest = yaml.safe_load(text)
        return loaded

    def webhook(self, kind: str, name: str | None = None) -> Manifest:
        """A webhook entry of the Validating/MutatingWebhookConfiguration.

        By ``name``; without one, the pod and workload webhook (``validate.``/``mutate.``),
        the only entry besides the optional namespace guard and binding entry.
        """
        hooks = self.one(kind)["webhooks"]
        if name is None:
            others = ("namespaces.spacegate.io", "bindings.spacegate.io")
            (hook,) = [h for h in hooks if h["name"] not in others]
        else:
            (hook,) = [h for h in hooks if h["name"] == name]
        return dict(hook)


def parse_manifests(rendered: Mapping[str, str]) -> tuple[tuple[Manifest, ...], str]:
    """Objects from Helm's {template path: text} map, plus the NOTES.txt text."""
    objects: list[Manifest] = []
    notes = ""
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return tuple(objects), notes


def render_chart(
    chart: helm.Chart, values: Mapping[str, Any], config: helm.Config | None = None
) -> Rendered:
    """Render like ``helm install`` (or, given a cluster ``config``, like ``helm upgrade``)."""
    if config is None:
        raw = chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    else:
        raw = config.render(
            chart, dict(values), name=RELEASE, namespace=NAMESPACE, revision=2, is_upgrade=True
        )
    objects, notes = parse_manifests(raw)
    return Rendered(values=values, objects=objects, notes=notes)


def b64_pem(data: Mapping[str, Any], key: str) -> bytes:
    """The PEM bytes of a base64 Secret/caBundle field."""
    return base64.b64decode(str(data[key]))


def make_ca_pem() -> str:
    """A throwaway CA certificate (PEM), as an admin would give in certificates.secret.caBundle."""
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin-made test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


# Pull-secret provisioning as the chart accepts it: only with the namespace guard on.
PROVISIONING: dict[str, Any] = {
    "config": {"pullSecrets": {"provision": True}, "policy": {"namespaceGuard": {"enabled": True}}}
}

HARBOR_AND_REGISTRY: dict[str, Any] = {
    "registries": [
        {
            "name": "harbor",
            "type": "harbor",
            "url": "https://harbor.example.com",
            "refreshInterval": "30s",
        },
        {
            "name": "team-b-registry",
            "type": "docker-registry",
            "url": "https://team-b.registry.example.com",
            "workspace": "102",
            "anonymousPull": False,
        },
    ],
    "bindings": [{"registry": "harbor", "space": "team-a", "workspaces": ["101", "102"]}],
}


def values_sets(admin_ca_pem: str) -> dict[str, dict[str, Any]]:
    """The values sets every whole-chart check runs over, by name.

    Each one is something an admin would really install: the defaults, each certificate
    mode, one and three replicas, extra exemptions, the fail-open rollout, and a live
    registry config with credentials by Secret reference.
    """
    return {
        "default": {},
        "cert-manager": {
            "certificates": {"mode": "cert-manager"},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "networkPolicy": {
                "enabled": True,
                "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            },
        },
        "secret": {
            "certificates": {
                "mode": "secret",
                "secret": {"name": "my-webhook-tls", "caBundle": admin_ca_pem},
            },
            "serviceMonitor": {"enabled": True},
        },
        "replicas-1": {"replicaCount": 1},
        "replicas-3": {"replicaCount": 3},
        "extra-exemptions": {
            "webhook": {"exemptNamespaces": ["monitoring", "istio-system"]},
            "config": {"policy": {"exemptNamespaces": ["kube-system", "legacy-apps"]}},
        },
        "fail-open": {
            "webhook": {
                "timeoutSeconds": 3,
                "validating": {"failurePolicy": "Ignore"},
                "mutating": {"failurePolicy": "Fail"},
            },
            "config": {"policy": {"mode": "warn"}},
        },
        "namespace-guard": {
            "config": {
                "policy": {
                    "namespaceGuard": {
                        "enabled": True,
                        "serviceAccounts": ["ghippo-system/ghippo-apiserver"],
                    }
                }
            },
        },
        "provisioning": {
            "config": {
                "pullSecrets": {"provision": True, "rotateEvery": "24h"},
                "policy": {"namespaceGuard": {"enabled": True}},
            },
        },
        "out-of-cluster": {
            "webhook": {"url": "https://127.0.0.1:8443"},
        },
        "audit": {
            "config": {"audit": {"enabled": True, "reports": "wgpolicyk8s", "interval": "5m"}},
        },
        "credentials": {
            "config": HARBOR_AND_REGISTRY,
            "registryCredentials": [
                {"registry": "harbor", "secretName": "harbor-robot"},
                {
                    "registry": "team-b-registry",
                    "secretName": "team-b-pull",
                    "usernameKey": "user",
                    "passwordKey": "token",
                },
            ],
        },
    }


VALUES_SET_NAMES = (
    "default",
    "cert-manager",
    "secret",
    "replicas-1",
    "replicas-3",
    "extra-exemptions",
    "fail-open",
    "namespace-guard",
    "out-of-cluster",
    "provisioning",
    "credentials",
    "audit",
)
