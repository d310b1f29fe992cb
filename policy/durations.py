"""Durations as the config writes them: Go-style text (``30s``, ``10m``, ``1h30m``) and back.

The config reads them (``refreshInterval``, ``maxStaleness``, ...), ``dump_config`` writes them,
and readiness and refresh messages print ages in the same form. Errors carry no key path: the
config parser adds it.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a Go-style duration (``30s``, ``10m``, ``1h30m``) or a plain number.

    Raises ``ValueError`` saying what was expected for anything else, and for zero or less.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s or 10m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(f"expected a duration such as 30s, 10m or 1h30m, got {value!r}")
    else:
        raise ValueError(f"expected a duration such as 30s or 10m, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`: 90 → ``90s``, 600 → ``10m``, 0.5 → ``500ms``."""
    whole = int(seconds)
    if whole != seconds:
        return f"{int(seconds * 1000)}ms"
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"
