"""``spacegate certs generate``: write a CA and serving certificate for an in-cluster Service.

The argument parsing lives in ``webhook.cli.main``; this module does the work and tells the user
what was written and what to do with it (a TLS Secret from ``tls.crt``/``tls.key``, and
``ca.crt`` as the webhook configuration's ``caBundle``).
"""

from __future__ import annotations

import sys

from certs.errors import CertificateError
from certs.files import generate
from certs.inspect import inspect_certificate
from webhook.cli import exits

__all__ = ["generate_command"]


def generate_command(
    service: str, namespace: str, out: str, extra_dns: list[str], extra_ips: list[str]
) -> int:
    """Generate and write the files; print a summary. Returns the process exit code.

    0 written; 2 bad input (service, namespace, DNS name or IP), message on stderr;
    1 the files could not be written.
    """
    try:
        paths = generate(service, namespace, out, extra_dns, extra_ips)
    except CertificateError as exc:
        print(f"spacegate certs generate: {exc}", file=sys.stderr)
        return exits.USAGE
    except OSError as exc:
        where = exc.filename if exc.filename is not None else out
        print(f"spacegate certs generate: cannot write {where}: {exc.strerror}", file=sys.stderr)
        return exits.FAILED
    info = inspect_certificate(paths.cert.read_bytes(), str(paths.cert))
    names = ", ".join((*info.dns_names, *info.ip_addresses))
    print(f"wrote {paths.ca_cert} (CA certificate: the webhook's caBundle)")
    expires = f"{info.not_after:%Y-%m-%d}"
    print(f"wrote {paths.cert} (serving certificate, {info.key_type}, expires {expires})")
    print(f"wrote {paths.key} (private key, mode 0600)")
    print(f"names: {names}")
    print("next:")
    print(
        f"  kubectl -n {namespace} create secret tls {service}-tls"
        f" --cert={paths.cert} --key={paths.key}"
    )
    print(f"  caBundle: base64 -w0 {paths.ca_cert}")
    return exits.OK
