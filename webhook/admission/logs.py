"""One JSON object per log line, so that decisions can be searched and counted.

An admission webhook's logs are read by machines first (which pod was refused, by which
rule, how long it took), so every line is a JSON object with fixed keys plus the
structured fields a caller passes as ``extra={"fields": {...}}``. Decisions are logged
as ``spacegate.decision``, one line each (fields listed in ``webhook.admission.app``).

**Where lines go.** ``spacegate serve`` writes every line, decisions and ordinary log
records alike, into one :class:`LogSink`. The decision line is written for every review,
and going through ``logging`` (a LogRecord, handler locks, a formatter, one ``write``
system call per line) cost more than decoding and deciding together;
:class:`DecisionLog` serializes the line straight into the sink instead. While
the server runs, the sink buffers lines and writes them out every
:data:`FLUSH_INTERVAL_SECONDS`, when :data:`FLUSH_BYTES` have gathered, at once for a
warning or an error, and at shutdown.
All lines share that one buffer, so they never interleave mid-line and keep their order.

The price: a process killed without notice (SIGKILL, an OOM kill) loses the lines of its
last ~0.2 s. That is acceptable for an operational log: a graceful stop (SIGTERM, what
Kubernetes sends first) flushes everything; warnings and errors, the lines that explain a
crash, are never held back; and the decision log is an operational aid, not the record
of admissions (that is the apiserver's audit log, where a cluster keeps one, with
spacegate's audit annotations on the requests it refuses or flags). zap, the logger of
most Go webhooks, makes the same trade in its ``BufferedWriteSyncer`` (by default up to
256 kB and 30 s of lines).

Only what the server derives from the review is logged: never the request body, never
``userInfo`` or the object's content, and never registry credentials (the admission path
does not hold any). Names and messages come from objects tenants write, and reach the
mutating webhook before the apiserver has validated them, so every string field is clipped
to :data:`MAX_FIELD_CHARS`: a hostile object cannot grow the log by more than a line's worth.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import IO, Any, Final

import orjson

__all__ = [
    "DECISION_LOGGER",
    "FLUSH_BYTES",
    "FLUSH_INTERVAL_SECONDS",
    "MAX_FIELD_CHARS",
    "DecisionLog",
    "JsonFormatter",
    "LogSink",
    "SinkHandler",
    "clipped",
    "configure_logging",
]

DECISION_LOGGER: Final = "spacegate.decision"
DECISION_MESSAGE: Final = "admission decision"

# Short enough that `kubectl logs -f` feels live, long enough that a busy server writes
# a few hundred lines per system call instead of one.
FLUSH_INTERVAL_SECONDS: Final = 0.2
# Bounds the memory held and the size of one write (16 pipe pages).
FLUSH_BYTES: Final = 64 * 1024
# Longest string field value written to a line; longer ones are cut and marked.
MAX_FIELD_CHARS: Final = 1024


def clipped(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """``fields`` with every string value cut to :data:`MAX_FIELD_CHARS` (same object if none)."""
    if not any(isinstance(v, str) and len(v) > MAX_FIELD_CHARS for v in fields.values()):
        return fields
    limit = MAX_FIELD_CHARS
    return {
        k: (v[: limit - 1] + "…" if isinstance(v, str) and len(v) > limit else v)
        for k, v in fields.items()
    }


class _IsoTime:
    """ISO 8601 UTC timestamps with milliseconds, formatted once per millisecond.

    ``strftime`` costs more than the rest of a timestamp, and a busy server writes many
    decision lines within one millisecond. The cache is one tuple so that threads logging
    at once never pair one millisecond's text with another's number.
    """

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def format(self, created: float) -> str:
        millis = int(created * 1000)
        cached_millis, text = self._cached
        if millis != cached_millis:
            second, fraction = divmod(millis, 1000)
            date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            text = f"{date}.{fraction:03d}Z"
            self._cached = (millis, text)
        return text


class JsonFormatter(logging.Formatter):
    """Format a record as a single-line JSON object (orjson: fast, always valid UTF-8)."""

    def __init__(self) -> None:
        super().__init__()
        self._time = _IsoTime()

    def format(self, record: logging.LogRecord) -> str:
        """``time``, ``level``, ``logger``, ``message``, then the record's ``fields``."""
        entry: dict[str, Any] = {
            "time": self._time.format(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(clipped(fields))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode("utf-8")


class LogSink:
    """Complete log lines into one binary stream, buffered while a server runs.

    Outside :meth:`buffering` every line is written and flushed at once (start-up
    messages, CLI use, tests). Inside it, lines gather in memory and are written in
    batches (see the module docstring for when, and what a hard kill loses). Safe to use
    from several threads: one lock guards the buffer and the stream, so a flush never
    splits or reorders lines. A stream that fails (a closed pipe, a full disk) drops the
    pending lines rather than failing the review that logged them: there is nowhere left
    to report the failure.
    """

    def __init__(self, stream: IO[bytes], *, flush_bytes: int = FLUSH_BYTES) -> None:
        self._stream = stream
        self._flush_bytes = flush_bytes
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._buffering = 0  # nesting depth of buffering() blocks

    def write(self, line: bytes) -> None:
        """Add one line (ending in a newline); written out per the buffering rules."""
        with self._lock:
            self._buffer += line
            if not self._buffering or len(self._buffer) >= self._flush_bytes:
                self._write_out()

    def flush(self) -> None:
        """Write out every pending line now."""
        with self._lock:
            self._write_out()

    def _write_out(self) -> None:
        if not self._buffer:
            return
        try:
            self._stream.write(self._buffer)
            self._stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            pass
        self._buffer.clear()

    @asynccontextmanager
    async def buffering(self, interval: float = FLUSH_INTERVAL_SECONDS) -> AsyncIterator[None]:
        """Buffer lines while the block runs; flush every ``interval`` s and at its end.

        The flushing task lives on the running loop, so it stops with the server, and the
        final flush happens however the block ends (a stop, an exception, SystemExit).
        """
        flusher = asyncio.create_task(self._flush_every(interval), name="log-flush")
        self._buffering += 1
        try:
            yield
        finally:
            self._buffering -= 1
            flusher.cancel()
            self.flush()

    async def _flush_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.flush()


class SinkHandler(logging.Handler):
    """A logging handler writing JSON lines into a :class:`LogSink`.

    Warnings and errors flush the sink at once: they are rare, and they are what someone
    reads after an incident, so they must not wait in a buffer of a process about to die.
    """

    def __init__(self, sink: LogSink, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.sink = sink
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` as one line and hand it to the sink."""
        try:
            line = self.format(record).encode("utf-8") + b"\n"
        except Exception:
            self.handleError(record)
            return
        self.sink.write(line)
        if record.levelno >= logging.WARNING:
            self.sink.flush()


class DecisionLog:
    """Writes the per-review decision line, skipping ``logging``'s per-record machinery.

    With a sink, the line is serialized straight into it: same keys, same order, same
    format as any other record (``time``, ``level``, ``logger``, ``message``, then the
    fields), at a fraction of the cost. Without one (an app embedded in a process with
    its own logging setup, or tests capturing records), each decision is an ordinary
    INFO record of the ``spacegate.decision`` logger. Either way the line is skipped when
    that logger is not enabled for INFO, so operators can silence decisions by level.
    """

    def __init__(self, sink: LogSink | None) -> None:
        self.sink = sink
        self._logger = logging.getLogger(DECISION_LOGGER)
        self._time = _IsoTime()

    @property
    def enabled(self) -> bool:
        """Whether a decision line would be written (checked before building one)."""
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, fields: Mapping[str, Any]) -> None:
        """Log one decision with its ``fields`` (which must not be empty)."""
        fields = clipped(fields)
        if self.sink is None:
            # makeRecord + handle: the same record as .info() without findCaller's stack
            # walk, which costs as much as the rest of the line and tells nothing here.
            self._logger.handle(
                self._logger.makeRecord(
                    DECISION_LOGGER,
                    logging.INFO,
                    __file__,
                    0,
                    DECISION_MESSAGE,
                    (),
                    None,
                    extra={"fields": fields},
                )
            )
            return
        # The fixed keys are spliced in front of the serialized fields ('{' dropped) rather
        # than merged into a second dict: the same JSON object, one copy fewer.
        dumped = orjson.dumps(fields, default=str, option=orjson.OPT_APPEND_NEWLINE)
        self.sink.write(
            b'{"time":"'
            + self._time.format(time.time()).encode("ascii")
            + _DECISION_KEYS
            + dumped[1:]
        )


_DECISION_KEYS: Final = (
    f'","level":"info","logger":"{DECISION_LOGGER}","message":"{DECISION_MESSAGE}",'.encode()
)


def configure_logging(level: int | str = logging.INFO, stream: IO[bytes] | None = None) -> LogSink:
    """Send every logger (ours and uvicorn's) to ``stream`` as JSON lines; return the sink.

    ``stream`` defaults to the standard error's binary layer. Called by ``serve``, which
    hands the sink to the app for decision lines and buffers it while serving; libraries
    and tests leave logging alone. uvicorn's access log is silenced because the decision
    line already records each review with more context.
    """
    sink = LogSink(stream if stream is not None else sys.stderr.buffer)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(SinkHandler(sink))
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
    return sink
