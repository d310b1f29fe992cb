"""The errors of everything that talks to a registry or the Kubernetes API.

A :class:`SourceError` carries a message that is safe to log as it is: it names the registry
or the request, never a credential. :func:`describe_api_error` is the one way a failed
Kubernetes call becomes text: the official client's ``ApiException`` prints the response
headers and body when turned into a string, which is neither short nor safe to log.
"""

from __future__ import annotations

import urllib3
from kubernetes.client.exceptions import ApiException


class SourceError(Exception):
    """A source could not produce data; the message is safe to log (no credentials)."""


def describe_api_error(exc: BaseException) -> str:
    """A short, credential-free description of a failed call: ``HTTP 409 Conflict``,
    ``ConnectionRefusedError: ...``.

    An ``ApiException`` is its status and reason; urllib3's retry bookkeeping
    (``MaxRetryError``) gives way to the reason it carries ("connection refused" says
    more); anything else is its type and the first line of its message.
    """
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
