"""Messages stay on one line and within their limits, whatever a tenant's pod spec holds."""

from __future__ import annotations

from policy.messages import QUOTED_IMAGE_CHARS, clip, joined, quote_image, single_line
from policy.reference import MAX_REFERENCE_LENGTH


def test_control_characters_and_line_separators_become_single_spaces() -> None:
    assert single_line("a\nb\tc\x7fd\u2028e\x85f  g") == "a b c d e f g"


def test_a_clipped_text_ends_with_an_ellipsis_within_the_limit() -> None:
    assert clip("abcdef", 6) == "abcdef"
    assert clip("abcdefg", 6) == "abcde…"


def test_joined_parts_that_fit_are_all_kept() -> None:
    assert joined(["one", "two\nlines"], 100) == "one; two lines"


def test_joined_parts_stop_at_the_limit_and_say_how_many_were_left_out() -> None:
    text = joined([f"image {i} is refused" for i in range(10_000)], 100)
    assert len(text) <= 100
    assert text.startswith("image 0 is refused; image 1 is refused")
    assert text.endswith("more)")


def test_an_image_that_could_be_pulled_is_quoted_whole_and_a_longer_one_by_its_start() -> None:
    longest = "a" * MAX_REFERENCE_LENGTH
    assert quote_image(longest) == longest
    huge = "b" * (MAX_REFERENCE_LENGTH + 1)
    assert quote_image(huge) == f"{'b' * QUOTED_IMAGE_CHARS}… ({len(huge)} characters)"
