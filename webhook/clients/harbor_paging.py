"""Harbor's paged listings: page size bounds and the total Harbor reports."""

from __future__ import annotations

from typing import Final

import httpx

MAX_PAGE_SIZE: Final = 100  # swagger: page_size maximum 100


def total_count(response: httpx.Response) -> int | None:
    """``X-Total-Count`` of a listing page, or None when absent or not a number."""
    value = response.headers.get("x-total-count")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
