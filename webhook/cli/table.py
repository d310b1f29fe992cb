"""Plain-text tables for the CLI (``check``, ``images``): aligned columns, no trailing blanks."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The header and rows as lines, columns padded to their widest cell.

    The last column is not padded, so long free text (a denial reason) adds no blanks.
    """
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    return [
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
        for row in [header, *rows]
    ]
