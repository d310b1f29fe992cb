"""Image references, parsed exactly as the kubelet parses them.

The registry an image is pulled from, and the key its pull secret is looked up by, are decided by
the kubelet with ``ParseNormalizedNamed`` of github.com/distribution/reference (``normalize.go``,
``reference.go``, ``regexp.go`` at ``0965666``, after v0.6.0) plus go-digest 1.0.0. A policy that
reads an image differently from the kubelet can be bypassed (``docker.io/nginx`` and ``nginx`` are
the same image; ``localhost:5000`` is *not* a registry), so this module is a line-by-line port, not
a reimplementation from the grammar. Error messages are the upstream texts, so a denial quotes
what ``kubectl``/the kubelet would say.

Python ``re`` is not Go RE2; the differences that matter are handled here:

- ``fullmatch`` instead of ``^...$`` (Python's ``$`` also matches before a trailing newline);
- ``re.ASCII`` (Go's ``\\w`` and ``[0-9]`` are ASCII only);
- ``[[:xdigit:]]`` spelled ``[0-9a-fA-F]``;
- Go's ``strings.ToLower`` maps one rune to one rune (simple case mapping), while ``str.lower``
  applies full and context-dependent mappings (``İ`` → ``i̇``, final sigma), so ``_go_lower``
  maps per character. Go 1.19 and Python 3.11 ship different Unicode versions (13 and 14); only
  letters added in Unicode 14 could change which error message a non-ASCII input gets.

Captures are unaffected by the engine: Go's ``FindStringSubmatch`` is leftmost-first, as Python's
backtracking is (``aa/aa/bb`` gives the domain ``aa`` in both).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MAX_REFERENCE_LENGTH",
    "InvalidReference",
    "Reference",
    "is_local_image_id",
    "parse_reference",
]

# --- regexp.go -----------------------------------------------------------------------------------

_ALPHANUMERIC: Final = r"[a-z0-9]+"
_SEPARATOR: Final = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT: Final = r"(?::[0-9]+)?"
_TAG: Final = r"[\w][\w.-]{0,127}"
_DIGEST: Final = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IPV6_ADDRESS: Final = r"\[(?:[a-fA-F0-9:]+)\]"

_DOMAIN_NAME: Final = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST: Final = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT: Final = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT: Final = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME: Final = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME: Final = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

# referencePat: (name)(?::(tag))?(?:@(digest))?
_REFERENCE_RE: Final = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
# anchoredNameRegexp: (?:(domain)/)?(remote-name)
_NAME_RE: Final = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
# anchoredIdentifierRegexp: a bare image ID, which Docker refuses to read as a repository name.
_IDENTIFIER_RE: Final = re.compile(r"[a-f0-9]{64}", re.ASCII)

# --- go-digest 1.0.0 -----------------------------------------------------------------------------

# DigestRegexpAnchored: decides "unsupported" vs "invalid format" for unknown algorithms.
_GO_DIGEST_RE: Final = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
# Algorithms Available() in the kubelet: it imports crypto/sha256 and crypto/sha512, and
# crypto/sha512 registers SHA-384 as well. Value: the hex length (hash size * 2).
_HEX_LENGTH: Final = {"sha256": 64, "sha384": 96, "sha512": 128}
_LOWER_HEX_RE: Final = re.compile(r"[a-f0-9]+", re.ASCII)

# --- normalize.go / reference.go -----------------------------------------------------------------

_DEFAULT_DOMAIN: Final = "docker.io"
_LEGACY_DEFAULT_DOMAIN: Final = "index.docker.io"
_LOCALHOST: Final = "localhost"
_OFFICIAL_REPO_PREFIX: Final = "library/"
_NAME_TOTAL_LENGTH_MAX: Final = 255

_ERR_INVALID_FORMAT: Final = "invalid reference format"
_ERR_NAME_EMPTY: Final = "repository name must have at least one component"
_ERR_NAME_CONTAINS_UPPERCASE: Final = "repository name must be lowercase"
_ERR_NAME_TOO_LONG: Final = (
    f"repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters"
)
_ERR_DIGEST_INVALID_FORMAT: Final = "invalid checksum digest format"
_ERR_DIGEST_INVALID_LENGTH: Final = "invalid checksum digest length"
_ERR_DIGEST_UNSUPPORTED: Final = "unsupported digest algorithm"

# The longest string that can name a pullable image: a DNS name (at most 253 characters) with a
# port (":" and 5 digits), "/", the path (upstream's limit), ":" and a 128-character tag, "@" and
# a sha512 digest ("sha512:" and 128 hex digits). The grammar itself puts no bound on the
# domain, but no longer host resolves, so a longer string can never be pulled from a registry;
# callers refuse it before parsing, which would cost time linear in its length.
MAX_REFERENCE_LENGTH: Final = 253 + 6 + 1 + _NAME_TOTAL_LENGTH_MAX + 1 + 128 + 1 + 7 + 128

# ``<algorithm>:<hex>`` with no "/": the kubelet reads it as Docker Hub's ``library/sha256`` with a
# tag, but containerd's CRI first tries the string as a digest, then as a (possibly shortened)
# image ID of an image already on the node, and runs that image without pulling anything.
_LOCAL_IMAGE_ID_RE: Final = re.compile(r"(?:sha256|sha384|sha512):[0-9a-fA-F]+", re.ASCII)

# Inputs longer than this are parsed but not memoized: every real image fits (path <= 255,
# tag <= 128, sha512 digest 135), and it bounds what hostile pod specs can pin in the cache.
_CACHE_MAX_INPUT: Final = 512
_CACHE_SIZE: Final = 16384


class InvalidReference(ValueError):
    """An image string the kubelet would refuse to pull; ``str()`` is the upstream message.

    ``image`` keeps the offending input, so callers can name it without re-plumbing it.
    """

    def __init__(self, message: str, image: str) -> None:
        super().__init__(message)
        self.image = image


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized image reference (``ParseNormalizedNamed`` result).

    ``domain`` is the registry host[:port] the kubelet pulls from; ``path`` the repository within
    it. Both ``tag`` and ``digest`` are kept when both are given: the kubelet pulls by digest,
    but the tag still belongs to what the user wrote.

    ``domain`` is empty in one upstream corner: a first component with ``.`` or ``:`` that is
    not a valid host but is a valid path component (``foo_bar.com/app``). Upstream then keeps
    the whole name as the path, and ``name`` is the path alone. It is *not* Docker Hub.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``domain/path``: the kubelet's pull-secret lookup key (``Named.Name()``)."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The name as Docker users write it (``FamiliarName``): ``nginx``, ``user/app``."""
        if self.domain != _DEFAULT_DOMAIN:
            return self.name
        remainder = self.path.removeprefix(_OFFICIAL_REPO_PREFIX)
        # library/ is dropped only for single-component official images (library/foo/bar stays).
        if remainder != self.path and "/" not in remainder:
            return remainder
        return self.path

    @property
    def familiar(self) -> str:
        """The short form for messages (``FamiliarString``): familiar name, tag and digest.

        Not always parseable back to the same reference: ``docker.io/localhost/x`` shortens to
        ``localhost/x``, a registry on localhost, exactly as upstream does.
        """
        return self._with_suffix(self.familiar_name)

    def __str__(self) -> str:
        """``name[:tag][@digest]``, the fully qualified form (``String()``)."""
        return self._with_suffix(self.name)

    def _with_suffix(self, name: str) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return name + tag + digest


def parse_reference(image: str) -> Reference:
    """Parse ``image`` as the kubelet does (``ParseNormalizedNamed``).

    Memoized: a cluster runs few distinct images, and each admission names them again. Failures
    are memoized too (as their message), so repeating a bad image is as cheap as a good one.

    Raises:
        InvalidReference: with the upstream error message.
    """
    result = _parse_cached(image) if len(image) <= _CACHE_MAX_INPUT else _parse(image)
    if isinstance(result, Reference):
        return result
    # A fresh exception each time: re-raising a cached instance would grow its traceback.
    raise InvalidReference(result, image)


def is_local_image_id(image: str) -> bool:
    """``sha256:<hex>`` and the like: an image ID the runtime resolves locally, not a pull.

    The parser accepts it (upstream does too); the decision refuses it, because the container
    runtime would start whatever image with that ID (or ID prefix) is cached on the node, with
    no registry, space or pull secret involved.
    """
    return _LOCAL_IMAGE_ID_RE.fullmatch(image) is not None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(image: str) -> Reference | str:
    return _parse(image)


def _parse(s: str) -> Reference | str:
    """``ParseNormalizedNamed``: the reference, or the upstream error message."""
    if _IDENTIFIER_RE.fullmatch(s):
        return f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
    domain, remainder = _split_docker_domain(s)
    remote = remainder.partition(":")[0]
    if _go_lower(remote) != remote:
        return f"{_ERR_INVALID_FORMAT}: repository name ({remote}) must be lowercase"
    return _parse_full(domain + "/" + remainder)


def _split_docker_domain(name: str) -> tuple[str, str]:
    """``splitDockerDomain``: Docker Hub defaults, decided on the first ``/`` component only."""
    maybe_domain, slash, maybe_remainder = name.partition("/")
    if not slash:
        # No slash at all: always an image on Docker Hub, even "localhost:5000" or "example.com".
        return _DEFAULT_DOMAIN, _OFFICIAL_REPO_PREFIX + name
    if maybe_domain == _LEGACY_DEFAULT_DOMAIN:
        domain, remainder = _DEFAULT_DOMAIN, maybe_remainder
    elif (
        maybe_domain == _LOCALHOST
        or "." in maybe_domain
        or ":" in maybe_domain
        or _go_lower(maybe_domain) != maybe_domain  # Docker Hub namespaces are lowercase
    ):
        domain, remainder = maybe_domain, maybe_remainder
    else:
        domain, remainder = _DEFAULT_DOMAIN, name
    if domain == _DEFAULT_DOMAIN and "/" not in remainder:
        remainder = _OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def _parse_full(s: str) -> Reference | str:
    """``Parse``; its input always has a name here, so never a digest-only result."""
    match = _REFERENCE_RE.fullmatch(s)
    if match is None:
        if not s:
            return _ERR_NAME_EMPTY
        if _REFERENCE_RE.fullmatch(_go_lower(s)):
            return _ERR_NAME_CONTAINS_UPPERCASE
        return _ERR_INVALID_FORMAT
    name, tag, digest = match.groups()
    name_match = _NAME_RE.fullmatch(name)
    if name_match is None:  # pragma: no cover - the reference pattern embeds the name pattern
        return _ERR_INVALID_FORMAT
    domain, path = name_match.group(1) or "", name_match.group(2)
    if len(path) > _NAME_TOTAL_LENGTH_MAX:
        return _ERR_NAME_TOO_LONG
    if digest is not None:
        error = _validate_digest(digest)
        if error is not None:
            return error
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def _validate_digest(digest: str) -> str | None:
    """go-digest ``Digest.Validate``: which algorithms exist, exact length, lowercase hex."""
    algorithm, sep, encoded = digest.partition(":")
    if not algorithm or not sep or not encoded:
        return _ERR_DIGEST_INVALID_FORMAT
    length = _HEX_LENGTH.get(algorithm)
    if length is None:
        if not _GO_DIGEST_RE.fullmatch(digest):
            return _ERR_DIGEST_INVALID_FORMAT
        return _ERR_DIGEST_UNSUPPORTED
    if len(encoded) != length:
        return _ERR_DIGEST_INVALID_LENGTH
    if not _LOWER_HEX_RE.fullmatch(encoded):
        return _ERR_DIGEST_INVALID_FORMAT
    return None


def _go_lower(s: str) -> str:
    """Go's ``strings.ToLower``: one rune to one rune (``str.lower`` may change the length)."""
    if s.isascii():
        return s.lower()
    return "".join(_go_lower_rune(c) for c in s)


def _go_lower_rune(c: str) -> str:
    lowered = c.lower()
    if len(lowered) == 1:
        return lowered
    # Only U+0130 (İ) has a multi-rune full lowering; its simple mapping, Go's, is "i".
    return lowered[0]
