"""Every open connection of the admission server, what it is doing, and when it must end.

Nothing authenticates a client before it reaches the port, so every connection may be
hostile. Two kinds of attack aim at connections rather than at requests: a *slowloris*
opens connections and never finishes a request head (each one holds a file descriptor
and some memory), and a flood of such connections leaves no descriptor for the
apiserver. The server answers both here (the numbers are in ``docs/limits.md``):

- **Deadlines.** A new connection has :attr:`ConnectionLimits.head_timeout` seconds from
  its accept to finish the TLS handshake and its first request head (Go's
  ``ReadHeaderTimeout`` bounds the handshake the same way); a later request's head has as
  long from its first byte. Once a head is in, the request's whole body must follow
  within ``body_timeout`` (the endpoints answer 408 then; the table closes the
  connection a little later, so a body that keeps arriving after its reply cannot hold the
  connection either). A connection between requests is closed by uvicorn's keep-alive
  timeout; one that is closing gets a few seconds for its TLS goodbye. The sweeper
  aborts whatever overstays: an abort frees the descriptor at once, where a TLS close
  could wait for a peer that never answers.
- **A cap, with eviction rather than refusal.** At most ``capacity`` connections are open
  (``max_connections``, lowered to fit the descriptor limit, which the server first raises
  to its hard limit). Refusing new connections at the cap, as Go's ``LimitListener`` or
  nginx's ``worker_connections`` do, would refuse the apiserver too. Instead a new
  connection evicts, oldest first, one that is closing, one that has not finished its
  handshake or request head, or else one idle between requests (nginx reclaims idle
  keep-alive connections the same way when it runs out). A connection with a request in
  flight is never evicted. A genuine client finishes its head within milliseconds of
  connecting, so the oldest unfinished connection is the slowest client, not the
  apiserver; and the apiserver's keep-alive connections, busy every few milliseconds,
  are the last to be idle the longest. Only when every connection has a request in
  flight is a new one refused.

The table is a handful of dicts, one per phase, in order of entry, so the oldest of a
phase is its first key and the sweeper stops at the first deadline still ahead: a phase
change costs two dict operations, twice per request. It lives on the serving loop's
thread and is never locked.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "BODY_GRACE_SECONDS",
    "CLOSE_GRACE_SECONDS",
    "HEAD_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "RESERVED_FDS",
    "Connection",
    "ConnectionLimits",
    "ConnectionTable",
    "Phase",
    "raise_fd_limit",
]

# The request line and headers, counted as they arrive. What the clients of this port send
# is far smaller: the apiserver's review POST carries six headers in about 200 bytes (a
# bearer token from an admission kubeconfig adds one or two KiB), kubelet probes send a
# User-Agent and an Accept, Prometheus adds a bearer token of about one KiB.
MAX_HEAD_BYTES: Final = 16 * 1024
# Handshake plus first head of a new connection, or a later head from its first byte. The
# apiserver writes a head in one go right after connecting.
HEAD_TIMEOUT_SECONDS: Final = 10.0
# Open connections at most. The apiserver keeps a few dozen per instance; the cap bounds
# what an attacker's connections can hold: each is a descriptor and 50-60 KiB of TLS and
# protocol state, so 512 of them about 30 MiB.
MAX_CONNECTIONS: Final = 512
# Descriptors kept for everything else the process opens (its own API and registry
# clients, the audit child's pipes, log and certificate files).
RESERVED_FDS: Final = 128
# After a request's body deadline the endpoint answers 408; the table closes the
# connection this much later if the body is still arriving.
BODY_GRACE_SECONDS: Final = 1.0
# A closing connection's last reply and TLS goodbye (close_notify both ways) get this long.
CLOSE_GRACE_SECONDS: Final = 2.0

_MIN_CAPACITY: Final = 16
_LOG_EVERY_SECONDS: Final = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of one server's connections (defaults above; tests shorten them)."""

    max_head_bytes: int = MAX_HEAD_BYTES
    head_timeout: float = HEAD_TIMEOUT_SECONDS
    body_timeout: float = 10.0  # the endpoints' own body deadline (BODY_TIMEOUT_SECONDS)
    max_connections: int = MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if self.max_head_bytes < 1024:
            raise ValueError("max_head_bytes below 1024 would refuse ordinary requests")
        if self.head_timeout <= 0 or self.body_timeout <= 0:
            raise ValueError("head_timeout and body_timeout must be positive")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


class Phase:
    """Where a connection is; the order of :data:`_EVICTABLE` is the order of eviction."""

    CLOSING: Final = 0  # its transport is closing: nothing more will be served
    UNFINISHED: Final = 1  # TLS handshake, or a request head not complete yet
    IDLE: Final = 2  # between requests, nothing in flight
    READING: Final = 3  # a head is in, the body is still arriving
    BUSY: Final = 4  # the request is complete and being answered
    GONE: Final = 5  # closed and forgotten


_EVICTABLE: Final = (Phase.CLOSING, Phase.UNFINISHED, Phase.IDLE)
_DEADLINED: Final = (Phase.CLOSING, Phase.UNFINISHED, Phase.READING)
_REASONS: Final = {
    Phase.CLOSING: "closing for too long",
    Phase.UNFINISHED: "head deadline",
    Phase.READING: "body deadline",
}


class Connection(Protocol):
    """What the table needs of a connection: its place here, and a way to end it now."""

    phase: int

    def abort(self) -> None:
        """Close at once, without a goodbye (frees the descriptor now)."""


class ConnectionTable:
    """The open connections of one server by phase; deadlines, the cap, eviction."""

    def __init__(self, limits: ConnectionLimits | None = None) -> None:
        self.limits = limits or ConnectionLimits()
        self.capacity = self.limits.max_connections
        # phase -> {connection: deadline (or 0.0 where the phase has none)}, in order of entry
        self._phases: tuple[dict[Connection, float], ...] = tuple({} for _ in range(5))
        self.open = 0
        self.closed: Counter[str] = Counter()  # why the table ended connections, since start
        self._logged: Counter[str] = Counter()
        self.accepting = True

    def fit_to_descriptors(self, soft_limit: int) -> int:
        """Lower the capacity to what ``soft_limit`` descriptors allow; the capacity."""
        if soft_limit == resource.RLIM_INFINITY:
            self.capacity = self.limits.max_connections
        else:
            room = max(_MIN_CAPACITY, soft_limit - RESERVED_FDS)
            self.capacity = min(self.limits.max_connections, room)
        return self.capacity

    # ------------------------------------------------------------------ connections come and go

    def admit(self, connection: Connection, now: float) -> bool:
        """Take a new connection (unfinished, its head deadline from now); False: refuse it.

        At the cap, the oldest evictable connection is aborted to make room.
        """
        if not self.accepting:
            return False
        if self.open >= self.capacity:
            victim = self._victim()
            if victim is None:
                self.closed["refused: every connection busy"] += 1
                return False
            self._end(victim, "evicted at the connection cap")
        connection.phase = Phase.UNFINISHED
        self._phases[Phase.UNFINISHED][connection] = now + self.limits.head_timeout
        self.open += 1
        return True

    def move(self, connection: Connection, phase: int, deadline: float = 0.0) -> None:
        """Put ``connection`` in ``phase`` (with ``deadline``); staying in its phase keeps
        its place and its deadline, and a closing connection stays closing."""
        current = connection.phase
        if current in (phase, Phase.GONE, Phase.CLOSING):
            return
        del self._phases[current][connection]
        connection.phase = phase
        self._phases[phase][connection] = deadline

    def discard(self, connection: Connection) -> None:
        """The connection is closed (its transport said so): forget it."""
        if connection.phase == Phase.GONE:
            return
        del self._phases[connection.phase][connection]
        connection.phase = Phase.GONE
        self.open -= 1

    def count(self, phase: int) -> int:
        """How many connections are in ``phase``."""
        return len(self._phases[phase])

    def _victim(self) -> Connection | None:
        for phase in _EVICTABLE:
            for connection in self._phases[phase]:
                return connection
        return None

    def _end(self, connection: Connection, reason: str) -> None:
        self.discard(connection)
        self.closed[reason] += 1
        connection.abort()

    # ------------------------------------------------------------------ deadlines

    def sweep(self, now: float) -> int:
        """Abort every connection past its deadline; how many were."""
        ended = 0
        for phase in _DEADLINED:
            connections = self._phases[phase]
            while connections:
                connection, deadline = next(iter(connections.items()))
                if deadline > now:
                    break
                self._end(connection, _REASONS[phase])
                ended += 1
        return ended

    def stop_accepting(self) -> None:
        """The server is stopping: refuse new connections, abort the unfinished ones."""
        self.accepting = False
        for connection in list(self._phases[Phase.UNFINISHED]):
            self._end(connection, "server stopping")

    async def run_sweeper(self) -> None:
        """Sweep a few times per shortest deadline, and log what was ended, at most once
        every ten seconds (an attack must not flood the log)."""
        loop = asyncio.get_running_loop()
        shortest = min(self.limits.head_timeout, self.limits.body_timeout)
        tick = min(0.5, shortest / 4)
        logged_at = loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            self.sweep(now)
            if now - logged_at >= _LOG_EVERY_SECONDS:
                logged_at = now
                self._log_closed()

    def _log_closed(self) -> None:
        news = self.closed - self._logged
        if not news:
            return
        self._logged = Counter(self.closed)
        log.warning(
            "connections ended by the server's limits",
            extra={
                "fields": {
                    "ended": dict(sorted(news.items())),
                    "open": self.open,
                    "capacity": self.capacity,
                }
            },
        )


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the soft limit now in force.

    Container runtimes often start processes with a soft limit of 1,024 and a hard limit
    far above it; every connection is a descriptor, so the server takes what it may.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still stops at the kernel's nr_open (2**20 by default).
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        log.warning("could not raise the open-file limit", extra={"fields": {"soft": soft}})
        return soft
    return target
