"""``spacegate serve``: the one place where the admission server, live mode and the leader meet.

The admission room (``webhook.admission``) serves whatever snapshot state it is handed; the
live room (``webhook.live``) keeps a snapshot current; the leader room (``webhook.leader``)
provisions pull secrets and audits what runs while this replica holds the Lease, reading
the snapshots live mode makes. None of them imports another. This command loads the config,
picks the state (the embedded demo and offline configs are static; a config file runs live
mode: registries listed, namespaces watched, the file reloaded on change), joins the
leader's work to live mode when the config has some (:func:`live_state_factory`), resolves
the TLS files and runs the server.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from certs.errors import CertificateError
from certs.reload import DEFAULT_WATCH_INTERVAL, ReloadingTLSContext
from policy.config import Config, ConfigError
from policy.snapshot import Snapshot
from webhook.admission.app import AppSettings, StateOpener, create_app, static_state
from webhook.admission.bindings import ImpactProbe
from webhook.admission.logs import configure_logging
from webhook.admission.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    TLSFiles,
    build_server,
    resolve_tls_files,
    run_server,
)
from webhook.cli import exits
from webhook.settings import EMBEDDED_DEMO, read_config
from webhook.state import SnapshotState

if TYPE_CHECKING:  # the Kubernetes client loads only when live mode runs
    from webhook.clients.kube import ApiClientFactory
    from webhook.leader.provisioning.robot_api import RobotAPIFactory
    from webhook.selector.process import SelectorSettings

log = logging.getLogger(__name__)

# Opens the snapshot state for a loaded config (:func:`live_state_factory`).
ConfigStateOpener = Callable[[Config], AbstractAsyncContextManager[SnapshotState]]


def serve(
    *,
    config: str | None = None,
    host: str | None = None,
    port: int = DEFAULT_PORT,
    cert_dir: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    state_factory: ConfigStateOpener | None = None,
    live: bool | None = None,
    sockets: list[socket.socket] | None = None,
    watch_interval: float = DEFAULT_WATCH_INTERVAL,
    metrics_auth: str = "auto",
    selector_port: int | None = None,
    selector_tls_cert: str | None = None,
    selector_tls_key: str | None = None,
    token_audiences: tuple[str, ...] = (),
    binding_probe: ImpactProbe | None = None,
) -> int:
    """Serve the admission webhook until SIGTERM or SIGINT; return the exit status.

    ``config`` is a config file (None: the embedded demo). The state: ``state_factory`` when
    given; else live mode when ``live`` (default: whenever a config file is given), else the
    config as a static snapshot. ``sockets`` (pre-bound listening sockets) replaces
    host/port for tests and socket activation. ``metrics_auth`` is who may read
    ``/metrics`` (``webhook.cli.access_wiring``). ``selector_port`` is the image selector's
    listener (:func:`selector_settings`; None: 8444 in live mode with a Kubernetes API,
    otherwise off; 0: off), with the admission TLS files unless ``selector_tls_cert/key``
    are given, accepting tokens for ``token_audiences``. ``binding_probe`` computes a
    binding change's impact when the impact index cannot (default in live mode with a
    Kubernetes API: :class:`webhook.cli.impact.ClusterImpactProbe`). Returns 0 after a
    requested stop, 1 when the server could not start, 2 for an unusable config, TLS files
    or metrics setting.
    """
    from webhook.cli.access_wiring import MetricsAuthError, metrics_guard

    sink = configure_logging()
    bind_host = host or DEFAULT_HOST
    try:
        cfg = read_config(config)
        files = resolve_tls_files(cert_dir=cert_dir, tls_cert=tls_cert, tls_key=tls_key)
        tls = ReloadingTLSContext(files.cert, files.key)
        guard = metrics_guard(metrics_auth)
        use_live = state_factory is not None or (live if live is not None else config is not None)
        selector = selector_settings(
            selector_port,
            live=use_live,
            host=bind_host,
            files=files,
            cert=selector_tls_cert,
            key=selector_tls_key,
            audiences=token_audiences,
        )
    except (ConfigError, CertificateError, MetricsAuthError) as exc:
        print(f"spacegate serve: {exc}", file=sys.stderr)
        return exits.USAGE

    if state_factory is None and (live if live is not None else config is not None):
        # A real config: list live registries, watch namespaces when a cluster is reachable,
        # and reload the file on change. The embedded demo is static and needs none of it.
        state_factory = live_state_factory(config)
        from webhook.clients.kube import kube_configured

        if binding_probe is None and kube_configured():
            from webhook.cli.impact import ClusterImpactProbe

            binding_probe = ClusterImpactProbe()
    opener: StateOpener
    if state_factory is None:
        opener = static_state(Snapshot.from_config(cfg))
    else:
        open_live = state_factory

        def opener() -> AbstractAsyncContextManager[SnapshotState]:
            return open_live(cfg)

    if selector is not None:
        opener = _with_selector(opener, selector)
    # A lambda, not tls.not_after.timestamp: the certificate (and its expiry) is reloaded.
    expiry = lambda: tls.not_after.timestamp()  # noqa: E731, PLW0108
    app = create_app(
        AppSettings(
            state=opener,
            tls_not_after=expiry,
            log_sink=sink,
            metrics_guard=guard,
            binding_probe=binding_probe,
        )
    )
    server = build_server(app, host=bind_host, port=port, tls=tls.context)
    _print_banner(bind_host, port, sockets, files, config)
    if selector is not None:
        shown = f"[{selector.host}]" if ":" in selector.host else selector.host
        print(f"spacegate: image selector on https://{shown}:{selector.port}/", flush=True)
    stopped = run_server(server, tls, sink=sink, sockets=sockets, watch_interval=watch_interval)
    return exits.OK if stopped else exits.FAILED


def selector_settings(
    port: int | None,
    *,
    live: bool,
    host: str,
    files: TLSFiles,
    cert: str | None,
    key: str | None,
    audiences: tuple[str, ...],
) -> SelectorSettings | None:
    """Whether and how the image selector listens (None: off).

    It authenticates every request with the Kubernetes API, so it needs one: by default it
    runs in live mode when one is configured (port 8444); asked for explicitly without one,
    ``serve`` refuses to start rather than serve registry contents to anonymous callers.
    """
    from pathlib import Path

    from webhook.cli.access_wiring import MetricsAuthError
    from webhook.clients.kube import kube_configured
    from webhook.selector.process import DEFAULT_SELECTOR_PORT, SelectorSettings

    if port == 0:
        return None
    if bool(cert) != bool(key):
        raise CertificateError("--selector-tls-cert and --selector-tls-key go together")
    if port is None:
        if not (live and kube_configured()):
            log.info(
                "image selector off: it runs in live mode with a Kubernetes API to review "
                "tokens (--selector-port N to ask for it)"
            )
            return None
        port = DEFAULT_SELECTOR_PORT
    elif not kube_configured():
        raise MetricsAuthError(
            "--selector-port needs a Kubernetes API to review tokens (TokenReview, "
            "SubjectAccessReview): none is configured (not in a cluster, no kubeconfig)"
        )
    pair = (Path(cert), Path(key)) if cert and key else (files.cert, files.key)
    return SelectorSettings(host, port, pair[0], pair[1], tuple(audiences))


def _with_selector(opener: StateOpener, settings: SelectorSettings) -> StateOpener:
    """``opener`` with the selector process running beside the state it opens."""
    from webhook.selector.process import running_selector

    @asynccontextmanager
    async def opened() -> AsyncIterator[SnapshotState]:
        async with opener() as state, running_selector(state, settings):
            yield state

    return opened


def _print_banner(
    host: str,
    port: int,
    sockets: list[socket.socket] | None,
    files: TLSFiles,
    config: str | None,
) -> None:
    if sockets:
        host, port = sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    lines = [
        f"spacegate: serving https://{shown}:{port} "
        f"(config: {config or EMBEDDED_DEMO}; endpoints /validate /mutate /healthz /readyz "
        "/metrics)",
        f"spacegate: TLS certificate {files.cert}, key {files.key}",
    ]
    if files.ca is not None:
        lines.append(f"spacegate: CA certificate {files.ca.resolve()}")
        lines.append(f"spacegate: try  curl --cacert {files.ca} https://{shown}:{port}/healthz")
    print("\n".join(lines), flush=True)


def live_state_factory(
    config_path: str | None,
    *,
    kube: bool | None = None,
    api_client: ApiClientFactory | None = None,
    robots_for: RobotAPIFactory | None = None,
    settle: float | None = None,
    **live_options: Any,
) -> ConfigStateOpener:
    """The ``state_factory`` of ``serve`` for a config file: live mode
    (``webhook.live.mode.open_live_state``, which ``config_path``, ``kube``, ``api_client``
    and ``live_options`` are passed to), and beside it, when the config asks for
    provisioning or the audit or RegistrySpaceBinding objects are read (their statuses),
    the leader's work (``webhook.leader.parts.leader_work``) over
    the same Kubernetes API, reading each new snapshot, with its metrics on the state's.
    ``robots_for`` and ``settle`` are the leader's (tests inject fakes and shorter waits).

    The leader's work needs the namespaces from the cluster (its writes go there): without
    a namespace watch it does not run, and says so.
    """
    from webhook.leader.parts import leader_work, wants_leader
    from webhook.live.mode import open_live_state

    @asynccontextmanager
    async def opened(config: Config) -> AsyncIterator[SnapshotState]:
        async with open_live_state(
            config, config_path=config_path, kube=kube, api_client=api_client, **live_options
        ) as state:
            if not wants_leader(config, reads_bindings=state.reads_bindings):
                yield state
                return
            if not state.watches_namespaces:
                log.error(
                    "pullSecrets.provision or audit.enabled is on but there is no Kubernetes "
                    "API to work with; neither runs"
                )
                yield state
                return
            leader_options: dict[str, Any] = {} if settle is None else {"settle": settle}
            async with leader_work(
                config,
                state,
                api_client=api_client,
                registry=state.metrics_registry,
                robots_for=robots_for,
                **leader_options,
            ):
                yield state

    return opened
