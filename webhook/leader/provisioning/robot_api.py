"""The Harbor robot calls provisioning needs, as a protocol.

The writer (``webhook.leader.provisioning.writer``) is tested against fakes of these calls;
``webhook.leader.provisioning.robots.HarborRobots`` is the real client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from policy.config import Registry
from webhook.leader.provisioning.plan import RobotView

__all__ = ["CreatedView", "RobotAPI", "RobotAPIFactory"]


class CreatedView(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def secret(self) -> str: ...


class RobotAPI(Protocol):
    """The Harbor robot calls provisioning needs (``robots.HarborRobots``)."""

    async def list_robots(self, name_prefix: str) -> Iterable[RobotView]: ...
    async def create_robot(
        self, name: str, description: str, projects: Iterable[str]
    ) -> CreatedView: ...
    async def delete_robot(self, robot_id: int) -> None: ...
    async def aclose(self) -> None: ...


RobotAPIFactory = Callable[[Registry], RobotAPI]
