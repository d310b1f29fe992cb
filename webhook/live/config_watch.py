"""Watching the config file, so a changed ConfigMap applies without a restart.

Kubernetes updates a mounted ConfigMap in place by writing a new timestamped folder and
swapping the ``..data`` symlink; the path the process opened never changes and inotify on it
sees nothing useful. Polling the *content* of the resolved file every few seconds is simple
and catches every form of update (symlink swap, rename over, in-place write), at the cost of
reading a few kilobytes per poll. Comparing mtimes or inodes instead would miss a rewrite
within one mtime tick and would reload on a ``touch``; the content hash is the truth.

A new file that does not parse keeps the old config: a typo pushed to a ConfigMap must not
take admission down. The reason (the ``ConfigError`` message with its key path) is logged
once per distinct bad content, not on every poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from types import TracebackType

from policy.config import Config, ConfigError, load_config

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 2.0

OnChange = Callable[[Config], Awaitable[None]]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConfigWatcher:
    """Polls one config file and calls ``on_change`` with each new valid config.

    ``initial_text`` is the text the running config was loaded from (so a poll right after
    start does not reload it). ``initial_config`` does the same from the parsed config: the
    first poll applies the file only if it parses to something else, so an edit made
    between loading the config and starting the watcher is not missed. With neither, the
    file is read at construction. Files are read in a worker thread: a slow or hung volume
    must never stall the event loop that answers admission reviews.
    """

    def __init__(
        self,
        path: str,
        on_change: OnChange,
        *,
        interval: float = DEFAULT_POLL_INTERVAL,
        initial_text: str | None = None,
        initial_config: Config | None = None,
    ) -> None:
        self._path = path
        self._on_change = on_change
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._initial = initial_config
        if initial_config is not None and initial_text is None:
            self._digest: str | None = None
        elif initial_text is None:
            data = self._read()
            self._digest = None if data is None else _digest(data)
        else:
            self._digest = _digest(initial_text.encode("utf-8"))
        self._rejected: str | None = None  # digest of the bad content already reported
        self._missing_reported = False

    @property
    def path(self) -> str:
        return self._path

    def _read(self) -> bytes | None:
        try:
            with open(os.path.realpath(self._path), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def poll(self) -> Config | None:
        """Read the file once: the new config when it changed and is valid, else None."""
        data = self._read()
        if data is None:
            if not self._missing_reported:
                log.warning("config %s cannot be read; keeping the current config", self._path)
                self._missing_reported = True
            return None
        self._missing_reported = False
        digest = _digest(data)
        if digest in (self._digest, self._rejected):
            return None
        try:
            config = load_config(data.decode("utf-8"), self._path)
        except UnicodeDecodeError as exc:
            reason = f"{self._path}: not UTF-8 text: {exc.reason}"
        except ConfigError as exc:
            reason = str(exc)
        else:
            self._digest = digest
            self._rejected = None
            initial, self._initial = self._initial, None
            if initial is not None and config == initial:
                return None  # the file still says what is running
            return config
        self._rejected = digest
        log.error("config changed but is invalid, keeping the current config: %s", reason)
        return None

    async def check(self) -> bool:
        """Poll once and apply a valid change; True when a new config was applied."""
        config = await asyncio.to_thread(self.poll)
        if config is None:
            return False
        log.info("config %s changed; applying it", self._path)
        try:
            await self._on_change(config)
        except Exception:
            log.exception("applying the new config from %s failed", self._path)
            return False
        return True

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.check()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> ConfigWatcher:
        self._task = asyncio.create_task(self.run(), name="spacegate-config-watch")
        return self

    async def __aexit__(
        self,
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
