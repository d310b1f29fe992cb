"""Just enough of a Kubernetes API server for Helm's ``lookup`` of Secrets.

Helm's offline render makes ``lookup`` return nothing, which hides the upgrade path of
certificates.mode=helm (reuse the CA that is already in the cluster). The SDK can also render
against a cluster (``helm_python.Config.render``); pointed at this server, ``lookup`` sees
the Secrets a test put here. Helm asks discovery (``GET /api/v1``) which resource serves the
kind, then ``GET``s the object; everything else answers 404 like a real apiserver would for a
missing object.

The common path (install, upgrade keeping the CA through a real ``lookup``, uninstall) runs
against the real kube-apiserver in ``tests/e2e/test_chart.py``; this fake stays for quick
render-time checks of the upgrade logic without a control plane.

What it does not model: authentication and authorization (every request is served), any
kind but Secret, list/watch, writes (tests put Secrets in directly), API groups other than
core v1, resourceVersions, and server-side apply.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CORE_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "secrets",
            "singularName": "secret",
            "namespaced": True,
            "kind": "Secret",
            "verbs": ["get", "list"],
        }
    ],
}


class FakeAPIServer:
    """Holds Secrets by (namespace, name) and records the paths Helm requested."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []

    def add_secret(self, obj: Mapping[str, Any]) -> None:
        """Store a Secret manifest as the cluster would return it."""
        meta = obj["metadata"]
        self.secrets[(meta["namespace"], meta["name"])] = dict(obj)

    def _answer(self, path: str) -> tuple[int, Mapping[str, Any]]:
        self.requests.append(path)
        route = path.split("?", 1)[0].rstrip("/")
        if route == "/api/v1":
            return 200, _CORE_RESOURCES
        parts = route.split("/")
        # /api/v1/namespaces/<ns>/secrets/<name>
        if len(parts) == 7 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "secrets":
            found = self.secrets.get((parts[4], parts[6]))
            if found is not None:
                return 200, found
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "NotFound",
            "message": f"{route} not found",
            "code": 404,
        }

    @contextmanager
    def serving(self) -> Iterator[str]:
        """Serve on a free loopback port; yields a kubeconfig (YAML text) that points at it."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake._answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]
        kubeconfig = (
            "apiVersion: v1\n"
            "kind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: fake, user: {token: fake-token}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: fake}}]\n"
            "current-context: fake\n"
        )
        try:
            yield kubeconfig
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
