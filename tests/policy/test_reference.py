"""policy.reference must read every image exactly as the kubelet does.

Three layers of evidence:

- hand-written cases, one per "rule that is easy to get wrong" of the upstream library
  (results of github.com/distribution/reference), so the rules stay tested without shared data;
- the upstream Go tests' own vectors and an oracle of the real library's results
  (``../shared/testdata``; skipped, saying why, when that folder is absent);
- hypothesis properties: what the parser prints, it reads back unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.reference import (
    _DOMAIN_AND_PORT,
    _IDENTIFIER_RE,
    _NAME_RE,
    _REFERENCE_RE,
    InvalidReference,
    Reference,
    parse_reference,
)

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"

HEX64 = "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
HEX128 = "ab" * 64
HEX96 = "cd" * 48
FORMAT = "invalid reference format"


def load_testdata(name: str) -> list[dict[str, Any]]:
    path = TESTDATA / name
    if not path.is_file():
        pytest.skip(
            f"shared test data not found at {path} (the upstream vectors live outside the repo)"
        )
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def error_of(image: str) -> str:
    with pytest.raises(InvalidReference) as info:
        parse_reference(image)
    return str(info.value)


# --- the rules that are easy to get wrong, one case per rule ----------------------------------------


@dataclass(frozen=True)
class Parsed:
    """What a rule says about a valid input (None: the rule says nothing)."""

    name: str
    tag: str | None = None
    digest: str | None = None
    familiar: str | None = None
    domain: str | None = None


RULES_VALID = [
    # Docker Hub spellings all normalize to one name.
    ("nginx", Parsed("docker.io/library/nginx", familiar="nginx")),
    ("library/nginx", Parsed("docker.io/library/nginx", familiar="nginx")),
    ("docker.io/nginx", Parsed("docker.io/library/nginx", familiar="nginx")),
    ("index.docker.io/nginx", Parsed("docker.io/library/nginx", familiar="nginx")),
    # registry-1.docker.io is a different domain as far as the parser is concerned.
    (
        "registry-1.docker.io/library/nginx",
        Parsed("registry-1.docker.io/library/nginx", domain="registry-1.docker.io"),
    ),
    # Without a slash, nothing is a registry: host:port reads as image:tag.
    ("localhost", Parsed("docker.io/library/localhost", familiar="localhost")),
    ("localhost:5000", Parsed("docker.io/library/localhost", tag="5000")),
    ("example.com:5000", Parsed("docker.io/library/example.com", tag="5000")),
    ("foo_bar.com:8080", Parsed("docker.io/library/foo_bar.com", tag="8080")),
    # First component is a domain: localhost, or with uppercase (Hub namespaces are lowercase).
    ("localhost/foo", Parsed("localhost/foo", domain="localhost", familiar="localhost/foo")),
    ("LOCALHOST/foo", Parsed("LOCALHOST/foo", domain="LOCALHOST")),
    ("Foo/bar", Parsed("Foo/bar", domain="Foo")),
    # No '.' or ':' and lowercase: a Docker Hub user, not a registry.
    ("myregistry/team/app", Parsed("docker.io/myregistry/team/app", domain="docker.io")),
    # Ports and IP literals are kept verbatim.
    (
        "myregistry:5000/team/app:v1",
        Parsed("myregistry:5000/team/app", tag="v1", domain="myregistry:5000"),
    ),
    ("[::1]:5000/app", Parsed("[::1]:5000/app", domain="[::1]:5000")),
    ("127.0.0.1:5000/app", Parsed("127.0.0.1:5000/app", domain="127.0.0.1:5000")),
    # library/ is only dropped from the familiar form when nothing nested follows.
    ("docker.io/library/foo/bar", Parsed("docker.io/library/foo/bar", familiar="library/foo/bar")),
    # A digest-looking string without '@' is an image named sha256 with a tag.
    (f"sha256:{HEX64}", Parsed("docker.io/library/sha256", tag=HEX64)),
    # 64 hex is refused as an image ID, but not behind a domain, nor at 63 or 65 digits.
    (f"docker.io/{HEX64}", Parsed(f"docker.io/library/{HEX64}")),
    (HEX64[:63], Parsed(f"docker.io/library/{HEX64[:63]}")),
    (HEX64 + "a", Parsed(f"docker.io/library/{HEX64}a")),
    # Tag and digest together: both kept.
    (
        f"busybox:latest@sha256:{HEX64}",
        Parsed(
            "docker.io/library/busybox",
            tag="latest",
            digest=f"sha256:{HEX64}",
            familiar=f"busybox:latest@sha256:{HEX64}",
        ),
    ),
    # The kubelet registers crypto/sha512, which also registers SHA-384.
    (f"app@sha512:{HEX128}", Parsed("docker.io/library/app", digest=f"sha512:{HEX128}")),
    (f"app@sha384:{HEX96}", Parsed("docker.io/library/app", digest=f"sha384:{HEX96}")),
    # Tags are case-sensitive, may start with '_', and hold up to 128 characters.
    ("app:Latest", Parsed("docker.io/library/app", tag="Latest")),
    ("app:_tag", Parsed("docker.io/library/app", tag="_tag")),
    ("app:" + "a" * 128, Parsed("docker.io/library/app", tag="a" * 128)),
    # The 255-character limit counts the path only: a long domain is fine.
    ("example.com/" + "a" * 255, Parsed("example.com/" + "a" * 255)),
    ("a" * 300 + ".com/app", Parsed("a" * 300 + ".com/app", domain="a" * 300 + ".com")),
]

RULES_INVALID = [
    (HEX64, f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings"),
    # The grammar admits uppercase hex, go-digest does not.
    (f"app@sha256:{HEX64.upper()}", "invalid checksum digest format"),
    (f"app@sha256:{HEX64[:63]}", "invalid checksum digest length"),
    ("app@md5:" + "ef" * 16, "unsupported digest algorithm"),
    ("app:-tag", FORMAT),
    ("app:.tag", FORMAT),
    ("app:", FORMAT),
    ("app:" + "a" * 129, FORMAT),
    ("APP", "invalid reference format: repository name (library/APP) must be lowercase"),
    ("App:tag", "invalid reference format: repository name (library/App) must be lowercase"),
    ("example.com/Foo", "invalid reference format: repository name (Foo) must be lowercase"),
    ("foo___bar/baz", FORMAT),
    ("dock..er/x", FORMAT),
    ("-docker/x", FORMAT),
    ("docker-/x", FORMAT),
    ("docker/", FORMAT),
    ("a//b", FORMAT),
    ("foo.-bar/baz", FORMAT),
    # No trimming: whitespace anywhere, even a trailing newline, is invalid.
    (" nginx", FORMAT),
    ("nginx ", FORMAT),
    ("nginx\n", FORMAT),
    ("domain/" + "a" * 256, "repository name must not be more than 255 characters"),
    ("a:b:c", FORMAT),
    ("foo/bar:tag/baz", FORMAT),
    ("example.com:/foo", FORMAT),
    ("foo@", FORMAT),
    ("foo:tag@", FORMAT),
    ("/foo", FORMAT),
    ("", FORMAT),
]


@pytest.mark.parametrize(("image", "expected"), RULES_VALID, ids=[r[0][:60] for r in RULES_VALID])
def test_images_normalize_as_the_kubelet_reads_them(image: str, expected: Parsed) -> None:
    ref = parse_reference(image)
    assert ref.name == expected.name
    assert (ref.tag, ref.digest) == (expected.tag, expected.digest)
    if expected.familiar is not None:
        assert ref.familiar == expected.familiar
    if expected.domain is not None:
        assert ref.domain == expected.domain
    assert ref.name == f"{ref.domain}/{ref.path}"
    assert str(ref) == expected.name + (f":{ref.tag}" if ref.tag else "") + (
        f"@{ref.digest}" if ref.digest else ""
    )


@pytest.mark.parametrize(
    ("image", "message"), RULES_INVALID, ids=[r[0][:60] for r in RULES_INVALID]
)
def test_invalid_images_are_refused_with_the_upstream_message(image: str, message: str) -> None:
    assert error_of(image) == message


def test_a_reference_prints_its_full_name_then_tag_then_digest() -> None:
    ref = parse_reference(f"busybox:latest@sha256:{HEX64}")
    assert str(ref) == f"docker.io/library/busybox:latest@sha256:{HEX64}"
    assert ref.familiar_name == "busybox"
    assert str(parse_reference("quay.io/org/app")) == "quay.io/org/app"
    assert parse_reference("quay.io/org/app:v1").familiar == "quay.io/org/app:v1"


def test_the_registry_port_is_part_of_the_domain() -> None:
    ref = parse_reference("localhost:5000/foo:1.0")
    assert (ref.domain, ref.path, ref.tag) == ("localhost:5000", "foo", "1.0")


def test_a_dotted_first_component_that_is_no_valid_host_leaves_the_domain_empty() -> None:
    # Upstream: "foo_bar.com" is not a host (underscore) but is a path component, so Parse
    # keeps the whole name as the path with an empty domain. It is not Docker Hub.
    ref = parse_reference("foo_bar.com/app:v1")
    assert (ref.domain, ref.path, ref.tag) == ("", "foo_bar.com/app", "v1")
    assert ref.name == "foo_bar.com/app"
    assert str(ref) == ref.familiar == "foo_bar.com/app:v1"
    assert parse_reference(str(ref)) == ref


def test_invalid_reference_is_a_value_error_that_keeps_the_image() -> None:
    with pytest.raises(ValueError, match="must be lowercase") as info:
        parse_reference("Registry.example.com/Team/app")
    assert isinstance(info.value, InvalidReference)
    assert info.value.image == "Registry.example.com/Team/app"


def test_non_ascii_letters_that_lowercase_to_ascii_get_the_uppercase_error_as_in_go() -> None:
    # Go's strings.ToLower maps KELVIN SIGN to "k" and "İ" to "i" (one rune each); Parse then
    # finds the lowercased string valid and reports ErrNameContainsUppercase.
    assert error_of("example.\u212aom/foo") == "repository name must be lowercase"
    assert error_of("\u0130.com/foo") == "repository name must be lowercase"
    assert error_of("app:\u212a") == "repository name must be lowercase"
    assert error_of("app:caf\u00e9") == FORMAT


def test_familiar_form_is_ambiguous_where_upstream_is() -> None:
    # familiarizeName drops docker.io even when the path then reads as a registry or an image ID;
    # these shortened forms name a different image (or none), exactly as in the Go library.
    local = parse_reference("docker.io/localhost/app")
    assert local.familiar == "localhost/app"
    assert parse_reference(local.familiar).domain == "localhost"
    dotted = parse_reference("docker.io/foo.bar/baz")
    assert parse_reference(dotted.familiar).domain == "foo.bar"
    image_id = parse_reference(f"docker.io/library/{HEX64}")
    assert image_id.familiar == HEX64
    with pytest.raises(InvalidReference):
        parse_reference(image_id.familiar)


# --- memoization ---------------------------------------------------------------------------------


def test_a_repeated_image_returns_the_same_parsed_object() -> None:
    assert parse_reference("registry.example.com/team/app:v1") is parse_reference(
        "registry.example.com/team/app:v1"
    )


def test_a_repeated_invalid_image_raises_a_fresh_error_every_time() -> None:
    errors = []
    for _ in range(3):
        with pytest.raises(InvalidReference) as info:
            parse_reference("Repeated/Bad")
        errors.append(info.value)
    assert [str(e) for e in errors] == [
        "invalid reference format: repository name (Bad) must be lowercase"
    ] * 3
    assert len({id(e) for e in errors}) == 3
    assert all(e.__context__ is None for e in errors)


def test_images_too_long_to_memoize_are_still_parsed_correctly() -> None:
    long_domain = ".".join(["segment"] * 100) + ":5000"
    ref = parse_reference(f"{long_domain}/team/app:v1")
    assert (ref.domain, ref.path, ref.tag) == (long_domain, "team/app", "v1")
    assert error_of(f"{long_domain}/Team/app") == (
        "invalid reference format: repository name (Team/app) must be lowercase"
    )


# --- upstream data: the Go tests' vectors and the library's own results --------------------------

ORACLE_FIELDS = ("string", "name", "domain", "path", "tag", "digest", "familiar_string")


def observed(image: str) -> dict[str, Any]:
    """The oracle's view of one ParseNormalizedNamed call, from our parser."""
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        return {"ok": False, "error": str(exc)}
    return {
        "ok": True,
        "error": None,
        "string": str(ref),
        "name": ref.name,
        "domain": ref.domain,
        "path": ref.path,
        "tag": ref.tag,
        "digest": ref.digest,
        "familiar_string": ref.familiar,
        "familiar_name": ref.familiar_name,
    }


def test_every_oracle_result_of_the_go_library_is_reproduced() -> None:
    entries = load_testdata("reference_oracle.json")
    compared = [e for e in entries if "ParseNormalizedNamed" in e]
    mismatches = []
    for entry in compared:
        want = entry["ParseNormalizedNamed"]
        got = observed(entry["input"])
        keys = ("ok", "error", *ORACLE_FIELDS, "familiar_name") if want["ok"] else ("ok", "error")
        diff = {k: (want.get(k), got.get(k)) for k in keys if want.get(k) != got.get(k)}
        if diff:
            mismatches.append((entry["input"], diff))
    assert len(compared) == len(entries) >= 350
    assert mismatches == []


def test_every_upstream_parse_normalized_named_vector_passes() -> None:
    vectors = [
        v
        for v in load_testdata("reference_vectors.json")
        if v["function"] == "ParseNormalizedNamed"
    ]
    assert len(vectors) >= 100
    for vector in vectors:
        got = observed(vector["input"])
        assert got["ok"] == vector["valid"], vector
        if not vector["valid"]:
            continue
        checks = {
            "domain": got["domain"],
            "path": got["path"],
            "tag": got["tag"],
            "digest": got["digest"],
            "normalized(String)": got["string"],
            "familiar(FamiliarName)": got["familiar_name"],
            "familiar(FamiliarString)": got["familiar_string"],
        }
        for asserted in vector["asserts"]:
            if asserted == "valid":
                continue
            field = asserted.split("(")[0]
            assert checks[asserted] == vector[field], (vector["input"], asserted)


def test_the_grammar_matches_the_upstream_regexp_tests() -> None:
    # Upstream's own regexp tables, against the patterns the parser is built from: they pin
    # captures (leftmost-first: "aa/aa/bb/bb/bb" has the domain "aa") and anchoring.
    matchers = {
        "regexp anchoredNameRegexp": _NAME_RE.fullmatch,
        "regexp referenceRegexp": _REFERENCE_RE.fullmatch,
        "regexp ^domainAndPort$": re.compile(_DOMAIN_AND_PORT, re.ASCII).fullmatch,
        "regexp ^([a-f0-9]{64})$ (anchoredIdentifierRegexp)": _IDENTIFIER_RE.fullmatch,
    }
    vectors = [v for v in load_testdata("reference_vectors.json") if v["function"] in matchers]
    assert len(vectors) >= 100
    for vector in vectors:
        match = matchers[vector["function"]](vector["input"])
        assert (match is not None) == vector["match"], vector["input"]
        if match is not None and vector.get("subs") is not None:
            assert [g or "" for g in match.groups()] == vector["subs"], vector["input"]


# --- properties ----------------------------------------------------------------------------------

# The grammar's productions with bounded repetition, so examples stay short and fast to draw.
_PATH_COMPONENT = r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,6}){0,3}"
_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?"

domains = st.one_of(
    st.sampled_from(["docker.io", "index.docker.io", "localhost", "quay.io", "[::1]"]),
    st.from_regex(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT}){{1,3}}", fullmatch=True),
    st.from_regex(r"\[[a-fA-F0-9]{0,4}:[a-fA-F0-9:]{0,8}\]", fullmatch=True),
    st.from_regex(r"[a-z](?:[a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True).map(str.upper),
).flatmap(lambda d: st.sampled_from([d, d + ":5000", d + ":1"]))
paths = st.lists(
    st.from_regex(_PATH_COMPONENT, fullmatch=True),
    min_size=1,
    max_size=4,
).map("/".join)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digests = st.sampled_from([("sha256", 32), ("sha384", 48), ("sha512", 64)]).flatmap(
    lambda alg: st.binary(min_size=alg[1], max_size=alg[1]).map(lambda b: f"{alg[0]}:{b.hex()}")
)


@st.composite
def images(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
    """Image strings as users write them, with the tag and digest that went into each."""
    domain = draw(st.none() | domains)
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    image = (f"{domain}/" if domain else "") + draw(paths)
    image += (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")
    return image, tag, digest


def parsed_or_none(image: str) -> Reference | None:
    try:
        return parse_reference(image)
    except InvalidReference:
        return None


def familiar_is_unambiguous(ref: Reference) -> bool:
    """False where upstream's familiar form reads back differently (see the test above)."""
    if ref.domain != "docker.io":
        return True
    first, slash, _ = ref.familiar_name.partition("/")
    if not slash:
        return not _IDENTIFIER_RE.fullmatch(first)
    return not (first == "localhost" or "." in first or ":" in first)


PROPERTY_SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(images())
def test_a_parsed_reference_reads_back_unchanged_from_its_printed_forms(
    case: tuple[str, str | None, str | None],
) -> None:
    image, tag, digest = case
    ref = parse_reference(image)
    assert (ref.tag, ref.digest) == (tag, digest)
    assert parse_reference(str(ref)) == ref
    if familiar_is_unambiguous(ref):
        assert parse_reference(ref.familiar) == ref
    assert ref.name == (f"{ref.domain}/{ref.path}" if ref.domain else ref.path)


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.sampled_from("abAB09:/@._-[]\n é"), max_size=40) | st.text(max_size=40))
def test_any_text_either_parses_to_a_stable_reference_or_raises_invalid_reference(
    text: str,
) -> None:
    ref = parsed_or_none(text)
    if ref is None:
        assert error_of(text)  # a message, never another exception type
        return
    assert parse_reference(str(ref)) == ref
