"""The errors of everything that talks to a registry or the Kubernetes API.

A :class:`SourceError` carries a message that is safe to log as it is: it names the registry
or the request, never a credential. :func:`describe_api_error` is the one way a failed
Kubernetes call becomes text: the official client's ``ApiException`` prints the response
headers and body when turned into a string, which is neither short nor safe to log.
"""

from __future__ import annotations

import json

import urllib3
from kubernetes.client.exceptions import ApiException


class SourceError(Exception):
    """A source could not produce data; the message is safe to log (no credentials)."""


# What a Kubernetes call may raise besides SourceError: an answer the apiserver refused (RBAC,
# a conflict, a 5xx) or no answer at all (the apiserver went away).
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError)

_MAX_MESSAGE = 300


def describe_api_error(exc: BaseException) -> str:
    """A short, credential-free description of a failed call, on one line.

    An ``ApiException`` is its status and reason, followed by the apiserver's own message
    when the body is a ``metav1.Status`` (it names the verb, resource and identity RBAC
    refused) — never the headers or the raw body ``str(ApiException)`` dumps. urllib3's
    retry bookkeeping (``MaxRetryError``) gives way to the URL and the reason it carries
    ("connection refused" says more); anything else is its type and the first line of its
    message.
    """
    if isinstance(exc, ApiException):
        line = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        message = _status_message(exc.body)
        return f"{line}: {message}" if message else line
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return (
            f"{exc.url}: {describe_api_error(exc.reason)}"
            if exc.url
            else (describe_api_error(exc.reason))
        )
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _status_message(body: object) -> str:
    """The first line of a ``metav1.Status`` body's message, or "" for any other body."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(status, dict) or status.get("kind") != "Status":
        return ""
    message = status.get("message")
    if not isinstance(message, str) or not message:
        return ""
    return message.splitlines()[0][:_MAX_MESSAGE]
