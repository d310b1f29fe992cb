"""Durations as the config writes them: Go-style text (``30s``, ``10m``, ``1h30m``) and back."""

from __future__ import annotations

import re

from policy.config.model import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, path: str) -> float:
    """Seconds from a Go-style duration (``30s``, ``10m``, ``1h30m``) or a plain number."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a duration such as 30s or 10m, got {value!r}")
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
            raise ConfigError(
                f"{path}: expected a duration such as 30s, 10m or 1h30m, got {value!r}"
            )
    else:
        raise ConfigError(f"{path}: expected a duration such as 30s or 10m, got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{path}: expected a positive duration, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for whole seconds (used when writing configs)."""
    whole = int(seconds)
    if whole != seconds:
        return f"{int(seconds * 1000)}ms"
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"
