"""Kubernetes client loading for live mode, the leader and the commands that read the cluster.

One place decides how spacegate finds a Kubernetes API: an explicit kubeconfig, else the
in-cluster service account, else the default kubeconfig; and whether there is one at all
(:func:`kube_configured`), which decides whether live mode watches namespaces or falls back
to the config's static map; and spacegate's own namespace (:func:`own_namespace`), home of
the Lease and the robot credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from webhook.clients.errors import SourceError

ApiClientFactory = Callable[[], k8s_client.ApiClient]


def kube_configured(env: Mapping[str, str] | None = None, home: Path | None = None) -> bool:
    """Whether a Kubernetes API is reachable in principle: in a cluster, or a kubeconfig.

    In a Pod the kubelet sets ``KUBERNETES_SERVICE_HOST``; elsewhere ``KUBECONFIG`` (a
    path list) or ``~/.kube/config`` must name an existing file.
    """
    env = os.environ if env is None else env
    if env.get("KUBERNETES_SERVICE_HOST"):
        return True
    listed = env.get("KUBECONFIG")
    if listed:
        return any(Path(p).expanduser().is_file() for p in listed.split(os.pathsep) if p)
    return ((home or Path.home()) / ".kube" / "config").is_file()


def load_api_client(
    kubeconfig: str | None = None, *, context: str | None = None
) -> k8s_client.ApiClient:
    """An ApiClient for the cluster this process runs in, or for a kubeconfig.

    An explicit ``kubeconfig`` file wins. Otherwise the in-cluster service account is used
    (the client re-reads the projected token file as it rotates), then the default
    kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``) for local runs. ``context`` picks a
    kubeconfig context. The kubeconfig is never written back. Raises :class:`SourceError`
    when nothing usable is found.
    """
    configuration = k8s_client.Configuration()

    def from_kubeconfig(path: str | None) -> None:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )

    try:
        if kubeconfig is not None or context is not None:
            from_kubeconfig(kubeconfig)
            return k8s_client.ApiClient(configuration)
        try:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except k8s_config.ConfigException as incluster_error:
            try:
                from_kubeconfig(None)
            except (k8s_config.ConfigException, OSError) as kubeconfig_error:
                raise SourceError(
                    "no Kubernetes API configuration: not running in a cluster "
                    f"({incluster_error}) and no usable kubeconfig ({kubeconfig_error})"
                ) from None
    except (k8s_config.ConfigException, OSError) as exc:
        raise SourceError(f"unusable kubeconfig {kubeconfig}: {exc}") from None
    return k8s_client.ApiClient(configuration)


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_HOME_NAMESPACE = "spacegate-system"


def own_namespace(
    configured: str | None = None,
    env: Mapping[str, str] | None = None,
    service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE,
) -> str:
    """spacegate's own namespace: ``configured``, else ``POD_NAMESPACE`` (the chart sets it
    through the downward API), else the in-cluster service account's, else spacegate-system."""
    if configured:
        return configured
    env = os.environ if env is None else env
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    try:
        text = service_account_file.read_text().strip()
    except OSError:
        text = ""
    return text or DEFAULT_HOME_NAMESPACE
