"""What the apiserver is told: denials, warnings and audit annotations, readable and bounded.

The apiserver silently drops a warning that holds a control character and cuts long ones
(``docs/protocol.md`` §2), and every image string in a pod spec is written by a tenant. So
text is made single-line and clipped to the limits below, lists of refusals stop at their
limit saying how many were left out, and an image longer than any pullable reference is
quoted only by its first characters. A refusal also says what would make it pass
(:func:`remedy`).
"""

from __future__ import annotations

from policy.reference import MAX_REFERENCE_LENGTH
from policy.rules import ImageVerdict

# Warnings over 256 characters may be truncated by the apiserver; keep well under.
MAX_WARNING_CHARS = 256
# Audit annotation values are free text but end up in every audit event; keep them short.
MAX_ANNOTATION_CHARS = 1024
# The denial message goes back to the user in a Status and into the apiserver's logs.
MAX_MESSAGE_CHARS = 4096
# Warnings past this count are folded into one; the apiserver cuts them at 4096 runes anyway.
MAX_WARNINGS = 16
# How much of an image string a message quotes when the image itself is too long to show.
QUOTED_IMAGE_CHARS = 64

# C0 and C1 control characters (Go's unicode.IsControl) and the Unicode line separators.
_CONTROL = dict.fromkeys([*range(32), *range(127, 160), 0x2028, 0x2029], " ")


def single_line(text: str) -> str:
    """Control characters out: the apiserver silently drops warnings that contain them."""
    return " ".join(text.translate(_CONTROL).split())


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def joined(parts: list[str], limit: int) -> str:
    """``parts`` joined with "; " on one line, at most ``limit`` characters.

    Stops reading parts once the limit is reached, so a pod spec with thousands of refused
    images costs no more text than one with a few, and says how many were left out.
    """
    out: list[str] = []
    size = 0
    for part in parts:
        if size >= limit:
            break
        text = single_line(part[: limit + 1])
        out.append(text)
        size += len(text) + 2
    text = "; ".join(out)
    left_out = len(parts) - len(out)
    if not left_out and len(text) <= limit:
        return text
    suffix = f" (and {left_out} more)" if left_out else ""
    return clip(text, limit - len(suffix)) + suffix


def quote_image(image: str) -> str:
    """An image for a message: whole when it could be a real reference, else its start."""
    if len(image) <= MAX_REFERENCE_LENGTH:
        return image
    return f"{image[:QUOTED_IMAGE_CHARS]}… ({len(image)} characters)"


def workspace_phrase(workspace: str | None) -> str:
    """``workspace 101``, or ``no workspace``."""
    return f"workspace {workspace}" if workspace else "no workspace"


def remedy(verdict: ImageVerdict, namespace: str, workspace: str | None) -> str:
    """What would make a refused image pass, or "" when there is no simple answer.

    Chosen by the rule that refused it (``ImageVerdict.rule``), never by searching the
    reason's text, which quotes registry and space names.
    """
    if verdict.rule == "host-spelling":
        return f"write the image as {verdict.use}" if verdict.use else ""
    if verdict.rule == "workspace-registry":
        return "use a registry visible to this workspace or a public space"
    if verdict.rule != "unbound" or verdict.space is None:
        return ""
    if workspace is None:
        return (
            f"bind namespace {namespace} to a workspace that the space is bound to, "
            "or use an image from a public space"
        )
    return (
        f"bind space {verdict.space!r} to workspace {workspace}, "
        "or use an image from a public space"
    )


def bounded_warnings(warnings: list[str]) -> tuple[str, ...]:
    """At most :data:`MAX_WARNINGS` single-line warnings, each clipped."""
    if len(warnings) > MAX_WARNINGS:
        more = len(warnings) - (MAX_WARNINGS - 1)
        warnings = [*warnings[: MAX_WARNINGS - 1], f"spacegate: {more} more images refused"]
    return tuple(clip(single_line(w), MAX_WARNING_CHARS) for w in warnings)
