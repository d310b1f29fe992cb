"""The errors of everything that talks to a registry or the Kubernetes API.

A :class:`SourceError` carries a message that is safe to log as it is: it names the registry
or the request, never a credential.
"""

from __future__ import annotations


class SourceError(Exception):
    """A source could not produce data; the message is safe to log (no credentials)."""
