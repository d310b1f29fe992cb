"""TLS material for the webhook: build it, write it, check it, and reload it while serving.

The apiserver only talks to a webhook over TLS, checks the chain against the ``caBundle`` and
the name ``<svc>.<ns>.svc`` against the certificate's SANs. Getting any of that wrong, or letting
the certificate expire, fails every admission request at once. The modules:

- ``certs.builder``: pure; a CA and a serving certificate as PEM bytes.
- ``certs.inspect``: pure; expiry, SANs, key/certificate match, verification as a client would.
- ``certs.files``: the ``tls.crt``/``tls.key``/``ca.crt`` directory layout, atomic writes,
  self-renewing development certificates.
- ``certs.reload``: a server ``SSLContext`` that picks up a rotated Secret without a restart.
- ``certs.cli``: ``spacegate certs generate``.
- ``certs.errors``: the exception tree.
"""

from certs.builder import CertBundle, build_bundle
from certs.errors import (
    CertificateError,
    InvalidCertificateRequest,
    InvalidPEM,
    KeyMismatch,
    VerificationFailed,
)
from certs.files import BundlePaths, ensure_dev_certs, generate, write_bundle
from certs.inspect import CertificateInfo, inspect_certificate, verify_server_certificate
from certs.reload import ReloadingTLSContext

__all__ = [
    "BundlePaths",
    "CertBundle",
    "CertificateError",
    "CertificateInfo",
    "InvalidCertificateRequest",
    "InvalidPEM",
    "KeyMismatch",
    "ReloadingTLSContext",
    "VerificationFailed",
    "build_bundle",
    "ensure_dev_certs",
    "generate",
    "inspect_certificate",
    "verify_server_certificate",
    "write_bundle",
]
