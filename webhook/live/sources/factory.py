"""Builds the live space source for a configured registry, by its ``type``.

The refresher should not need to know which classes exist or how they are constructed; it
asks for "the source of this registry" and gets a :class:`~webhook.live.sources.SpaceSource`.
Whether a registry is listed live at all (``spaces:`` given in the config means static,
offline data) is the caller's decision; this function always builds a live source.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx

from policy.config import Registry
from webhook.clients.http import Sleep
from webhook.live.sources import SpaceSource
from webhook.live.sources.docker_registry import DockerRegistrySource
from webhook.live.sources.harbor import HarborSource

__all__ = ["make_source"]

log = logging.getLogger(__name__)


def make_source(
    registry: Registry,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: httpx.Timeout | float | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> SpaceSource:
    """The live source listing ``registry``'s spaces (Harbor projects or catalog spaces).

    Keyword arguments are passed to the source; see :class:`HarborSource`. A plain-http
    registry URL is accepted (local registries, tests) with a warning, since credentials
    then travel in clear text.
    """
    if registry.insecure_url:
        log.warning(
            "registry '%s': %s is plain http; credentials and the space list are not protected",
            registry.name,
            registry.url,
        )
    if registry.type == "harbor":
        return HarborSource(
            registry,
            client=client,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            sleep=sleep,
            rng=rng,
        )
    if registry.type == "docker-registry":
        return DockerRegistrySource(
            registry,
            client=client,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            sleep=sleep,
            rng=rng,
        )
    raise ValueError(f"registry '{registry.name}': unknown type {registry.type!r}")
