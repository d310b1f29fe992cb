"""``spacegate provision``: one pull-secret provisioning pass, or its plan.

Syncs once from the live sources (registries, and namespaces from the Kubernetes API of
``KUBECONFIG`` or the cluster, like ``serve``), then runs one level-triggered pass of the
same provisioner the leader runs in ``serve`` (``webhook.leader.provisioning.writer``). With
``--dry-run`` it prints the plan (robots to create or delete with their permissions, Secrets
to create, update or delete) and changes nothing. Without it, it takes the provisioning Lease
for the pass, so it never writes while a running leader does, and exits.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from kubernetes.client import ApiClient

from policy.config import Config, ConfigError
from webhook.cli import exits
from webhook.cli.cluster import connect, live_snapshot
from webhook.clients.errors import API_ERRORS, SourceError, describe_api_error
from webhook.leader.lease import LeaseElector, LostLeadership
from webhook.leader.parts import build_parts
from webhook.leader.provisioning.robot_api import RobotAPIFactory
from webhook.settings import read_config

PROG = "spacegate provision"


def run(
    config_path: str | None,
    *,
    dry_run: bool,
    kubeconfig: str | None = None,
    context: str | None = None,
    robots_for: RobotAPIFactory | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """One pass (or its plan); the exit code (0 done, 1 something failed, 2 bad input)."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        config = read_config(config_path)
    except ConfigError as exc:
        print(f"{PROG}: config error: {exc}", file=err)
        return exits.USAGE
    if not dry_run and not config.pull_secrets.provision:
        print(
            f"{PROG}: pullSecrets.provision is off in this config; set it to true, or use "
            "--dry-run to see the plan",
            file=err,
        )
        return exits.USAGE
    api = connect(PROG, kubeconfig, context, err)
    if api is None:
        return exits.USAGE
    try:
        return asyncio.run(_run(config, api, robots_for, dry_run=dry_run, out=out, err=err))
    finally:
        api.close()  # type: ignore[no-untyped-call]


async def _run(
    config: Config,
    api: ApiClient,
    robots_for: RobotAPIFactory | None,
    *,
    dry_run: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    try:
        snapshot, _ = await live_snapshot(config, api)
    except SourceError as exc:
        print(f"{PROG}: {exc}", file=err)
        return exits.REFUSED
    parts = build_parts(config, api, robots_for=robots_for)
    elector, provisioner = parts.elector, parts.provisioner
    leading = False  # released afterwards only if taken: a refused Lease call leaves none
    try:
        if not dry_run and not (leading := await asyncio.to_thread(elector.try_acquire_or_renew)):
            print(
                f"{PROG}: provisioning is led by {elector.holder} (Lease "
                f"{parts.home}/{elector.name}); not writing. --dry-run shows the plan",
                file=err,
            )
            return exits.REFUSED
        try:
            result = await provisioner.run_pass(snapshot, apply=not dry_run)
        except (SourceError, LostLeadership) as exc:
            print(f"{PROG}: {exc}", file=err)
            return exits.REFUSED
        for line in result.plan.lines():
            print(("would " if dry_run and line != "nothing to change" else "") + line, file=out)
        for failure in result.failures:
            print(f"{PROG}: {failure}", file=err)
        return exits.REFUSED if result.failures else exits.OK
    except API_ERRORS as exc:  # RBAC refused a Lease or Secret call, or the apiserver went away
        print(f"{PROG}: Kubernetes API error: {describe_api_error(exc)}", file=err)
        return exits.REFUSED
    finally:
        await parts.aclose()
        if leading:
            await asyncio.to_thread(_release, elector, err)


def _release(elector: LeaseElector, err: TextIO) -> None:
    try:
        elector.release()
    except Exception as exc:  # the pass is done; a stale Lease only delays the next leader
        print(f"{PROG}: could not release the Lease: {describe_api_error(exc)}", file=err)
