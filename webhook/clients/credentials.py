"""Registry credentials: a username and a password, read from files on every use.

``credentials`` (the account that lists or manages) and ``pullCredentials`` (what a Docker
Registry's pull Secrets carry) name files, as a mounted Kubernetes Secret provides them.
They are read again for every request rather than once at start-up, so rotating the Secret
takes effect without a restart; errors name the file, never its content, and the password
never shows in a repr.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from policy.config import Registry
from webhook.clients.errors import SourceError

__all__ = ["BasicCredentials", "load_credentials"]

_MASK = "***"


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """A username and password read from files; the password never shows in a repr."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password={_MASK})"

    @property
    def header(self) -> str:
        """The ``Authorization`` header value (UTF-8, as httpx and Docker encode it)."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in an error: the password and its encodings."""
        return (self.password, self.header, self.header.removeprefix("Basic "))


def _read_secret_file(path: str, what: str, label: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SourceError(f"{label}: cannot read credentials.{what} {path}: {reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{label}: credentials.{what} {path} is not UTF-8 text") from None
    # A Secret created with `kubectl create secret --from-file` keeps the editor's trailing
    # newline; no registry accepts a password ending in one, so it is dropped.
    text = text.rstrip("\r\n")
    if not text:
        raise SourceError(f"{label}: credentials.{what} {path} is empty")
    return text


def load_credentials(registry: Registry, label: str) -> BasicCredentials | None:
    """The registry's credentials as they are on disk now; ``None`` means anonymous.

    Called on every fetch rather than once at start-up, so rotating the mounted Secret takes
    effect at the next refresh. Errors name the file, never its content.
    """
    creds = registry.credentials
    if creds is None or (creds.username_file is None and creds.password_file is None):
        return None
    if creds.username_file is None or creds.password_file is None:
        missing = "usernameFile" if creds.username_file is None else "passwordFile"
        raise SourceError(
            f"{label}: credentials.{missing} is missing; set both usernameFile and passwordFile"
        )
    username = _read_secret_file(creds.username_file, "usernameFile", label)
    password = _read_secret_file(creds.password_file, "passwordFile", label)
    return BasicCredentials(username, password)
