"""The apiserver's own validation of webhook configurations, as a test helper.

The OpenAPI schemas that ``kubernetes-validate`` checks against describe field types only:
they accept ``timeoutSeconds: 99``, ``sideEffects: Some``, a webhook named ``validate`` or a
``caBundle`` that is not PEM. The apiserver rejects all of those at ``helm install`` time, so
the chart's tests need the apiserver's rules too. This module re-implements them from
``pkg/apis/admissionregistration/validation/validation.go`` and
``apiserver/pkg/util/webhook/validation.go`` (see docs/protocol.md).
Each error names the field path the way the apiserver does, so a failing test reads like the
install error an admin would have seen.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")

_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
_NO_SIDE_EFFECTS = ("None", "NoneOnDryRun")
_OPERATIONS = ("*", "CREATE", "UPDATE", "DELETE", "CONNECT")
_SCOPES = ("*", "Cluster", "Namespaced")
_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def is_dns1123_subdomain(value: str) -> bool:
    """``IsDNS1123Subdomain``: lowercase dot-separated labels, at most 253 characters."""
    return len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value) is not None


def is_fully_qualified_name(value: str) -> bool:
    """``IsFullyQualifiedName``: a DNS subdomain with at least three segments."""
    return is_dns1123_subdomain(value) and len(value.split(".")) >= 3


def is_qualified_name(value: str) -> bool:
    """``IsQualifiedName`` (label keys): optional DNS-subdomain prefix, a 63-character name."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or not is_dns1123_subdomain(prefix)):
        return False
    return len(name) <= 63 and _QUALIFIED_NAME_PART.fullmatch(name) is not None


def ca_bundle_error(encoded: str) -> str | None:
    """Why a manifest's base64 ``caBundle`` would be rejected, or None when it is usable.

    The apiserver decodes the ``[]byte`` field from base64 and requires at least one PEM
    certificate in it (``ValidateCABundle`` uses ``x509.CertPool.AppendCertsFromPEM``).
    """
    try:
        pem = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "not valid base64"
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        return "could not parse a PEM certificate"
    if not certificates:
        return "could not parse a PEM certificate"
    return None


def _service_errors(path: str, service: Mapping[str, Any]) -> list[str]:
    errors = []
    if not service.get("name"):
        errors.append(f"{path}.name: Required value")
    if not service.get("namespace"):
        errors.append(f"{path}.namespace: Required value")
    port = service.get("port", 443)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        errors.append(f"{path}.port: Invalid value: {port!r}: must be between 1 and 65535")
    url_path = service.get("path")
    if url_path is None or url_path in ("", "/"):
        return errors
    if not isinstance(url_path, str):
        return [*errors, f"{path}.path: Invalid value: {url_path!r}: must be a string"]
    if url_path == "//":
        return [*errors, f"{path}.path: Invalid value: {url_path!r}: segment[0] may not be empty"]
    if not url_path.startswith("/"):
        return [*errors, f"{path}.path: Invalid value: {url_path!r}: must start with a '/'"]
    to_check = url_path[1:].removesuffix("/")
    for i, step in enumerate(to_check.split("/")):
        if not step:
            errors.append(
                f"{path}.path: Invalid value: {url_path!r}: segment[{i}] may not be empty"
            )
        elif not is_dns1123_subdomain(step):
            errors.append(
                f"{path}.path: Invalid value: {url_path!r}: segment[{i}]: "
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
            )
    return errors


def _url_errors(path: str, url: str) -> list[str]:
    parts = urlsplit(url)
    errors = []
    if parts.scheme != "https":
        errors.append(f"{path}: Invalid value: {url!r}: 'https' is the only allowed URL scheme")
    if not parts.hostname:
        errors.append(f"{path}: Invalid value: {url!r}: host must be specified")
    if parts.username is not None or parts.password is not None:
        errors.append(f"{path}: Invalid value: {url!r}: user information is not permitted")
    if parts.fragment:
        errors.append(f"{path}: Invalid value: {url!r}: fragments are not permitted")
    if parts.query:
        errors.append(f"{path}: Invalid value: {url!r}: query parameters are not permitted")
    return errors


def _selector_errors(path: str, selector: Mapping[str, Any] | None) -> list[str]:
    if selector is None:
        return []
    errors = []
    for key in selector.get("matchLabels") or {}:
        if not is_qualified_name(key):
            errors.append(f"{path}.matchLabels: Invalid value: {key!r}: not a qualified name")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        if not is_qualified_name(str(expr.get("key", ""))):
            errors.append(f"{where}.key: Invalid value: {expr.get('key')!r}")
        operator = expr.get("operator")
        values = expr.get("values") or []
        if operator not in _SELECTOR_OPERATORS:
            errors.append(f"{where}.operator: Unsupported value: {operator!r}")
        elif operator in ("In", "NotIn") and not values:
            errors.append(f"{where}.values: Required value: must be specified for In or NotIn")
        elif operator in ("Exists", "DoesNotExist") and values:
            errors.append(f"{where}.values: Forbidden: may not be specified for {operator}")
    return errors


def _rule_errors(path: str, rule: Mapping[str, Any]) -> list[str]:
    errors = []
    for field in ("apiGroups", "apiVersions", "resources", "operations"):
        if not rule.get(field):
            errors.append(f"{path}.{field}: Required value")
    for op in rule.get("operations") or []:
        if op not in _OPERATIONS:
            errors.append(f"{path}.operations: Unsupported value: {op!r}")
    resources = rule.get("resources") or []
    for resource in resources:
        main, sep, sub = str(resource).partition("/")
        if not main or (sep and not sub):
            errors.append(f"{path}.resources: Invalid value: {resource!r}")
    if "*" in resources and len(resources) > 1:
        errors.append(
            f"{path}.resources: Invalid value: if '*' is present, must not specify others"
        )
    scope = rule.get("scope", "*")
    if scope not in _SCOPES:
        errors.append(f"{path}.scope: Unsupported value: {scope!r}")
    return errors


def _review_versions_errors(path: str, versions: Sequence[Any] | None) -> list[str]:
    if not versions:
        return [f"{path}: Required value: must specify one of v1, v1beta1"]
    errors = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if not isinstance(version, str) or not _DNS1035_LABEL.fullmatch(version):
            errors.append(f"{path}[{i}]: Invalid value: {version!r}: not a DNS-1035 label")
        elif version in seen:
            errors.append(f"{path}[{i}]: Duplicate value: {version!r}")
        seen.add(str(version))
    if not seen & {"v1", "v1beta1"}:
        errors.append(
            f"{path}: Invalid value: {list(versions)!r}: must include at least one of v1, v1beta1"
        )
    return errors


def webhook_configuration_errors(obj: Mapping[str, Any]) -> list[str]:
    """Every reason the apiserver would refuse to create this webhook configuration.

    An empty list means the object passes the rules listed in the module docstring
    (for a create through admissionregistration.k8s.io/v1).
    """
    kind = obj.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"not a webhook configuration: {kind!r}")
    mutating = kind == "MutatingWebhookConfiguration"
    errors: list[str] = []
    names: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or []):
        path = f"webhooks[{i}]"
        name = str(hook.get("name", ""))
        if not is_dns1123_subdomain(name):
            errors.append(
                f"{path}.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must "
                "consist of lower case alphanumeric characters, '-' or '.'"
            )
        elif not is_fully_qualified_name(name):
            errors.append(
                f"{path}.name: Invalid value: {name!r}: should be a domain with at least "
                "three segments separated by dots"
            )
        if name in names:
            errors.append(f"{path}.name: Duplicate value: {name!r}")
        names.add(name)

        errors += _review_versions_errors(
            f"{path}.admissionReviewVersions", hook.get("admissionReviewVersions")
        )
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            errors.append(f"{path}.sideEffects: Required value")
        elif side_effects not in _NO_SIDE_EFFECTS:
            errors.append(
                f"{path}.sideEffects: Unsupported value: {side_effects!r}: "
                'supported values: "None", "NoneOnDryRun"'
            )
        timeout = hook.get("timeoutSeconds")
        if timeout is not None and (not isinstance(timeout, int) or not 1 <= timeout <= 30):
            errors.append(
                f"{path}.timeoutSeconds: Invalid value: {timeout!r}: "
                "the timeout value must be between 1 and 30 seconds"
            )
        if hook.get("failurePolicy", "Fail") not in ("Fail", "Ignore"):
            errors.append(f"{path}.failurePolicy: Unsupported value: {hook.get('failurePolicy')!r}")
        if hook.get("matchPolicy", "Equivalent") not in ("Exact", "Equivalent"):
            errors.append(f"{path}.matchPolicy: Unsupported value: {hook.get('matchPolicy')!r}")
        if mutating:
            policy = hook.get("reinvocationPolicy", "Never")
            if policy not in ("Never", "IfNeeded"):
                errors.append(f"{path}.reinvocationPolicy: Unsupported value: {policy!r}")
        elif "reinvocationPolicy" in hook:
            errors.append(f"{path}.reinvocationPolicy: Forbidden: mutating webhooks only")

        client = hook.get("clientConfig") or {}
        has_url, has_service = "url" in client, "service" in client
        if has_url == has_service:
            errors.append(f"{path}.clientConfig: Required value: exactly one of url or service")
        if has_url:
            errors += _url_errors(f"{path}.clientConfig.url", str(client["url"]))
        if has_service:
            errors += _service_errors(f"{path}.clientConfig.service", client["service"] or {})
        if client.get("caBundle"):
            reason = ca_bundle_error(str(client["caBundle"]))
            if reason:
                errors.append(f"{path}.clientConfig.caBundle: Invalid value: {reason}")

        for j, rule in enumerate(hook.get("rules") or []):
            errors += _rule_errors(f"{path}.rules[{j}]", rule)
        errors += _selector_errors(f"{path}.namespaceSelector", hook.get("namespaceSelector"))
        errors += _selector_errors(f"{path}.objectSelector", hook.get("objectSelector"))
        conditions = hook.get("matchConditions") or []
        if len(conditions) > 64:
            errors.append(
                f"{path}.matchConditions: Too many: {len(conditions)}: must have at most 64 items"
            )
    return errors
