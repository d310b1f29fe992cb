"""What a selector request may name, checked before anything is looked up or fetched.

Every part of a request is tenant input: a namespace, a registry, a repository path, a search
string, page numbers. Each is checked against the grammar of what it names (a namespace is a
DNS-1123 label; a repository is Distribution's path grammar, as the kubelet parses it; a page
is a positive number) and bounded in length, so a malformed one is a 400 naming the part, and
never reaches a cache key, a registry URL or a log line unbounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_QUERY",
    "BadRequest",
    "Paging",
    "check_namespace",
    "check_query",
    "check_registry",
    "check_repository",
    "paging",
    "valid_digest",
    "valid_repository",
    "valid_tag",
]

MAX_LIMIT: Final = 100
DEFAULT_LIMIT: Final = 50
MAX_PAGE: Final = 100_000
MAX_QUERY: Final = 128
MAX_REPOSITORY: Final = 255  # Distribution's limit on a repository name

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_REGISTRY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,62})")
# distribution/reference: path components of lower-case alphanumerics joined by separators.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")


class BadRequest(ValueError):
    """A request part is malformed; the message names the part and what was expected."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def check_namespace(value: str) -> str:
    if len(value) > 63 or not _NAMESPACE.fullmatch(value):
        raise BadRequest(
            f"namespace {_shown(value)} is not a namespace name (a DNS-1123 label: lower-case "
            "letters, digits and '-', at most 63 characters)"
        )
    return value


def check_registry(value: str) -> str:
    if not _REGISTRY.fullmatch(value):
        raise BadRequest(f"registry {_shown(value)} is not a registry name of the config")
    return value


def valid_repository(value: str) -> bool:
    """Whether ``value`` is a repository path (also how registry answers are filtered)."""
    return len(value) <= MAX_REPOSITORY and _REPOSITORY.fullmatch(value) is not None


def valid_tag(value: str) -> bool:
    """Whether ``value`` is a tag by the reference grammar."""
    return _TAG.fullmatch(value) is not None


def valid_digest(value: str | None) -> bool:
    """Whether ``value`` is a digest by the reference grammar."""
    return value is not None and _DIGEST.fullmatch(value) is not None


def check_repository(value: str) -> str:
    if not valid_repository(value):
        raise BadRequest(
            f"repository {_shown(value)} is not a repository path (lower-case components "
            f"separated by '/', at most {MAX_REPOSITORY} characters)"
        )
    return value


def check_query(value: str) -> str:
    if len(value) > MAX_QUERY:
        raise BadRequest(f"q is {len(value)} characters long; at most {MAX_QUERY}")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise BadRequest("q contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class Paging:
    """A 1-based page of ``limit`` items."""

    page: int
    limit: int

    @property
    def start(self) -> int:
        return (self.page - 1) * self.limit


def _number(name: str, raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 7:
        raise BadRequest(f"{name} must be a whole number from 1 to {maximum}, got {_shown(raw)}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number from 1 to {maximum}, got {value}")
    return value


def paging(page: str | None, limit: str | None) -> Paging:
    """``page`` (default 1) and ``limit`` (default 50, at most 100) from a query string."""
    return Paging(
        _number("page", page, 1, MAX_PAGE), _number("limit", limit, DEFAULT_LIMIT, MAX_LIMIT)
    )
