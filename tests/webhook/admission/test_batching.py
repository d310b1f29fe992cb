"""The write batching under uvicorn, and the uvicorn internals it leans on.

``webhook.admission._batching`` wraps uvicorn's httptools protocol and transport. Those are
not uvicorn's API, so the first test here fails loudly, naming what changed, when a uvicorn
release moves one of them; the others check the batching itself on a recording transport.
"""

from __future__ import annotations

import asyncio
import inspect

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from webhook.admission._batching import HttpProtocol, StepBatchingTransport


def test_the_uvicorn_internals_the_batching_relies_on_are_still_there() -> None:
    assert list(inspect.signature(HttpToolsProtocol.connection_made).parameters) == [
        "self",
        "transport",
    ], "HttpToolsProtocol.connection_made(transport) changed"
    assert callable(getattr(HttpToolsProtocol, "on_response_complete", None)), (
        "HttpToolsProtocol.on_response_complete is gone"
    )
    assert "on_response=self.on_response_complete" in inspect.getsource(HttpToolsProtocol), (
        "uvicorn no longer hands on_response_complete to its request cycles"
    )

    async def made() -> tuple[HttpProtocol, asyncio.AbstractEventLoop, RecordingTransport]:
        loop = asyncio.get_running_loop()
        config = uvicorn.Config(app=lambda *a: None, http=HttpProtocol, log_config=None)
        config.load()
        state = ServerState()
        protocol = HttpProtocol(config=config, server_state=state, app_state={}, _loop=loop)
        assert protocol.tasks is state.tasks, "HttpToolsProtocol.tasks is not the server's tasks"
        inner = RecordingTransport()
        protocol.connection_made(inner)
        return protocol, loop, inner

    protocol, loop, _inner = asyncio.run(made())

    assert protocol.loop is loop, "HttpToolsProtocol.loop is not the serving loop"
    assert isinstance(protocol.transport, StepBatchingTransport), (
        "uvicorn no longer writes through the transport given to connection_made"
    )


class RecordingTransport(asyncio.Transport):
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.events.append(("close", b""))
        self.closing = True

    def abort(self) -> None:
        self.events.append(("abort", b""))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0


def test_what_one_loop_step_writes_reaches_the_connection_as_one_write() -> None:
    inner = RecordingTransport()
    seen = []

    async def steps() -> None:
        batching = StepBatchingTransport(inner, asyncio.get_running_loop())
        batching.write(b"HTTP/1.1 200 OK\r\n\r\n")
        batching.write(b"")
        batching.writelines([b'{"a":', bytearray(b"1}")])
        seen.append((list(inner.events), batching.get_write_buffer_size()))
        await asyncio.sleep(0)
        batching.write(b"next")
        await asyncio.sleep(0)

    asyncio.run(steps())

    assert seen == [([], 26)]
    assert inner.events == [("write", b'HTTP/1.1 200 OK\r\n\r\n{"a":1}'), ("write", b"next")]


def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    closed, aborted, gone = RecordingTransport(), RecordingTransport(), RecordingTransport()

    async def steps() -> None:
        loop = asyncio.get_running_loop()
        for inner in (closed, aborted, gone):
            batching = StepBatchingTransport(inner, loop)
            batching.write(b"last reply")
            if inner is closed:
                batching.close()
            elif inner is aborted:
                batching.abort()
            else:
                inner.closing = True  # the peer went away before the step ended
        await asyncio.sleep(0)

    asyncio.run(steps())

    assert closed.events == [("write", b"last reply"), ("close", b"")]
    assert aborted.events == [("abort", b"")]
    assert gone.events == []
