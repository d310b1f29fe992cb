"""What a request may name: each malformed part is refused naming itself."""

from __future__ import annotations

import pytest

from webhook.selector.names import (
    BadRequest,
    check_namespace,
    check_query,
    check_repository,
    paging,
    valid_digest,
    valid_tag,
)


@pytest.mark.parametrize("value", ["Team-A", "a_b", "-a", "a" * 64, "", "a/b", "ä"])
def test_a_namespace_must_be_a_dns_label(value: str) -> None:
    with pytest.raises(BadRequest, match="namespace"):
        check_namespace(value)


@pytest.mark.parametrize("value", ["Team/web", "../etc", "a//b", "a/", "x" * 256, "a b", "a%2Fb"])
def test_a_repository_must_follow_the_reference_grammar(value: str) -> None:
    with pytest.raises(BadRequest, match="repository"):
        check_repository(value)


def test_good_names_pass_as_they_are() -> None:
    assert check_namespace("team-a-dev") == "team-a-dev"
    assert check_repository("team-a/tools/debug_x.y") == "team-a/tools/debug_x.y"


@pytest.mark.parametrize(
    ("page", "limit", "words"),
    [
        ("-1", None, "page must be"),
        ("0", None, "page must be"),
        ("1e3", None, "page must be"),
        (None, "101", "limit must be"),
        (None, "0", "limit must be"),
        ("99999999999", None, "page"),
    ],
)
def test_pages_are_positive_and_bounded(page: str | None, limit: str | None, words: str) -> None:
    with pytest.raises(BadRequest, match=words):
        paging(page, limit)


def test_paging_defaults_and_offsets() -> None:
    assert paging(None, None).limit == 50
    assert paging("3", "20").start == 40


def test_a_huge_or_control_character_query_is_refused() -> None:
    with pytest.raises(BadRequest, match="at most 128"):
        check_query("x" * 129)
    with pytest.raises(BadRequest, match="control"):
        check_query("a\nb")


def test_what_a_registry_answers_is_held_to_the_grammar_too() -> None:
    assert valid_tag("1.2.3-rc_1") and not valid_tag("-x") and not valid_tag("a\ny")
    assert not valid_tag("x" * 129)
    assert valid_digest("sha256:" + "a" * 64)
    assert not valid_digest("sha256:<script>") and not valid_digest(None)
