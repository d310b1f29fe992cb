"""One JSON object per log line, so that decisions can be searched and counted.

An admission webhook's logs are read by machines first (which pod was refused, by which
rule, how long it took), so every line is a JSON object with fixed keys plus the
structured fields a caller passes as ``extra={"fields": {...}}``. Decisions go to the
``spacegate.decision`` logger, one line each (fields listed in ``webhook.app``).

Only what the server derives from the review is logged: never the request body, never
``userInfo`` or the object's content, and never registry credentials (the admission path
does not hold any).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, Final

import orjson

__all__ = ["DECISION_LOGGER", "JsonFormatter", "configure_logging", "log_fields"]

DECISION_LOGGER: Final = "spacegate.decision"


class JsonFormatter(logging.Formatter):
    """Format a record as a single-line JSON object (orjson: fast, always valid UTF-8)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # ISO 8601 UTC with milliseconds; the seconds part is formatted once per second
        # because the decision line is written for every review.
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        """``time``, ``level``, ``logger``, ``message``, then the record's ``fields``."""
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


def log_fields(logger: logging.Logger, level: int, message: str, fields: Mapping[str, Any]) -> None:
    """Log ``message`` with structured ``fields`` (skipped cheaply when the level is off)."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields})


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every logger (ours and uvicorn's) to ``stream`` as JSON lines.

    Called by ``serve``; libraries and tests leave logging alone. uvicorn's access log is
    silenced because the decision line already records each review with more context.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # Not in our line format, and each costs a lookup per record (logging's documented
    # "optimization" switches).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
