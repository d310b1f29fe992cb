"""The log line sink: what reaches the stream, when, and in what shape.

``spacegate serve`` buffers its log lines while serving (``webhook.admission.logs``); these tests pin
down the promises that make that safe: nothing is held outside a serving block, warnings
are never held, every line reaches the stream when serving ends, lines are never split or
reordered, and a decision line written straight into the sink is the same JSON object a
logging record would have produced.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from webhook.admission.logs import DECISION_LOGGER, DecisionLog, JsonFormatter, LogSink, SinkHandler


def lines(stream: io.BytesIO) -> list[str]:
    return stream.getvalue().decode().splitlines()


@pytest.fixture
def handler_on_a_logger() -> Iterator[tuple[logging.Logger, io.BytesIO, LogSink]]:
    """A private logger whose records go through a SinkHandler into a buffer."""
    stream = io.BytesIO()
    sink = LogSink(stream)
    logger = logging.getLogger("tests.webhook.sink")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = SinkHandler(sink)
    logger.addHandler(handler)
    yield logger, stream, sink
    logger.removeHandler(handler)


def test_outside_a_serving_block_every_line_is_written_at_once() -> None:
    stream = io.BytesIO()

    LogSink(stream).write(b'{"a":1}\n')

    assert stream.getvalue() == b'{"a":1}\n'


def test_while_serving_lines_wait_for_the_flush_interval_and_all_arrive_at_the_end() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream)
    seen: dict[str, bytes] = {}

    async def serve() -> None:
        async with sink.buffering(interval=0.05):
            sink.write(b"first\n")
            seen["at once"] = stream.getvalue()
            await asyncio.sleep(0.2)
            seen["after the interval"] = stream.getvalue()
            sink.write(b"last\n")

    asyncio.run(serve())

    assert seen == {"at once": b"", "after the interval": b"first\n"}
    assert stream.getvalue() == b"first\nlast\n"


def test_a_full_buffer_is_written_without_waiting_for_the_interval() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream, flush_bytes=100)
    seen = []

    async def serve() -> None:
        async with sink.buffering(interval=60):
            for _ in range(3):
                sink.write(b"x" * 39 + b"\n")
                seen.append(len(stream.getvalue()))

    asyncio.run(serve())

    assert seen == [0, 0, 120]


def test_a_serving_block_that_fails_still_writes_its_lines() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream)

    async def serve() -> None:
        async with sink.buffering(interval=60):
            sink.write(b"before the crash\n")
            raise SystemExit(1)

    with pytest.raises(SystemExit):
        asyncio.run(serve())

    assert stream.getvalue() == b"before the crash\n"


def test_warnings_are_written_at_once_even_while_serving(
    handler_on_a_logger: tuple[logging.Logger, io.BytesIO, LogSink],
) -> None:
    logger, stream, sink = handler_on_a_logger
    seen = []

    async def serve() -> None:
        async with sink.buffering(interval=60):
            logger.info("routine")
            seen.append(lines(stream))
            logger.warning("trouble", extra={"fields": {"registry": "harbor"}})
            seen.append(lines(stream))

    asyncio.run(serve())

    assert seen[0] == []
    assert [json.loads(line)["message"] for line in seen[1]] == ["routine", "trouble"]
    assert json.loads(seen[1][1])["registry"] == "harbor"


def test_lines_from_many_threads_are_never_split_or_lost() -> None:
    stream = io.BytesIO()
    sink = LogSink(stream, flush_bytes=4096)

    def writer(n: int) -> None:
        for i in range(500):
            sink.write(json.dumps({"thread": n, "i": i, "pad": "x" * (n * 7)}).encode() + b"\n")

    async def serve() -> None:
        async with sink.buffering(interval=0.001):
            threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                await asyncio.sleep(0.001)

    asyncio.run(serve())

    entries = [json.loads(line) for line in lines(stream)]
    assert len(entries) == 8 * 500
    for n in range(8):
        assert [e["i"] for e in entries if e["thread"] == n] == list(range(500))


def test_a_broken_stream_drops_lines_instead_of_failing_the_caller() -> None:
    stream = io.BytesIO()
    stream.close()

    LogSink(stream).write(b"lost\n")  # no exception: there is nowhere left to report it


def test_a_decision_line_is_the_json_object_a_log_record_would_give(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fields = {"uid": "u-1", "allowed": False, "reason": 'refused "web"', "refused": 1}
    stream = io.BytesIO()

    DecisionLog(LogSink(stream)).write(fields)
    with caplog.at_level(logging.INFO, logger=DECISION_LOGGER):
        DecisionLog(None).write(fields)

    [written] = lines(stream)
    [record] = [r for r in caplog.records if r.name == DECISION_LOGGER]
    from_record = json.loads(JsonFormatter().format(record))
    from_sink = json.loads(written)
    assert list(from_sink) == list(from_record)
    assert from_sink | {"time": ""} == from_record | {"time": ""}
    assert from_sink["time"].endswith("Z")
    assert len(from_sink["time"]) == len("2027-01-15T08:00:00.250Z")
