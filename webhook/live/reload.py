"""What changes when the config is reloaded: a pure plan the refresher carries out.

A config reload must not throw away what is still true: a registry whose endpoint and
credentials are unchanged keeps its poller, its task and its listed spaces; one whose
credentials changed gets a new source but keeps its spaces until relisted (same endpoint,
same spaces); one whose type or URL changed starts over; removed registries stop and new
ones start listing at once. Deciding that is pure and tested on its own
(``tests/webhook/live/test_reload.py``); doing it is the refresher's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from policy.config import Config, Registry
from webhook.live.readiness import is_listed


def same_endpoint(a: Registry, b: Registry) -> bool:
    """Same registry endpoint: its listed spaces stay valid across a config reload."""
    return (a.type, a.url) == (b.type, b.url)


def same_source(a: Registry, b: Registry) -> bool:
    """A source built for ``a`` can serve ``b`` unchanged."""
    return same_endpoint(a, b) and a.credentials == b.credentials


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """Registry names by what happens to their pollers (each name in at most one set).

    ``keep``: the poller stays and takes the new declaration (interval, hosts, workspace);
    ``restart``: a new poller replaces the old one, carrying its spaces over when the name
    is in ``carry_spaces``; ``start``: a new registry; ``stop``: a registry no longer listed.
    """

    keep: frozenset[str]
    restart: frozenset[str]
    carry_spaces: frozenset[str]
    start: frozenset[str]
    stop: frozenset[str]

    @property
    def relisted(self) -> list[str]:
        """The registries listed afresh, for the log line."""
        return sorted(self.restart | self.start)


def plan_reload(current: Mapping[str, Registry], config: Config) -> ReloadPlan:
    """The plan from the listed registries now (name -> declaration) to ``config``'s."""
    keep: set[str] = set()
    restart: set[str] = set()
    carry: set[str] = set()
    start: set[str] = set()
    listed = [r for r in config.registries if is_listed(r)]
    for registry in listed:
        old = current.get(registry.name)
        if old is None:
            start.add(registry.name)
        elif same_source(old, registry):
            keep.add(registry.name)
        else:
            restart.add(registry.name)
            if same_endpoint(old, registry):
                carry.add(registry.name)
    names = {r.name for r in listed}
    return ReloadPlan(
        keep=frozenset(keep),
        restart=frozenset(restart),
        carry_spaces=frozenset(carry),
        start=frozenset(start),
        stop=frozenset(set(current) - names),
    )
