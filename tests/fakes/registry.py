"""Docker Registry doubles: the real ``docker-registry`` binary, and a bearer-token fake.

:class:`RealRegistry` runs Debian's ``/usr/bin/docker-registry`` (CNCF Distribution 2.8.2)
on ``127.0.0.1:<free port>`` with a temporary storage directory and bcrypt htpasswd basic
auth (``htpasswd -Bbn``; 2.8.2 accepts only bcrypt entries). Basic auth, ``/v2/``,
``/v2/_catalog`` pagination and error bodies are therefore the real thing. Content gets in
two ways:

- :meth:`RealRegistry.push_image` pushes through the HTTP API like ``docker push`` would:
  a config blob (``POST /v2/<repo>/blobs/uploads/`` + monolithic ``PUT ...&digest=``, or a
  cross-repository mount once the blob exists) and a schema2 manifest with no layers
  (``PUT /v2/<repo>/manifests/<tag>``). About 9 ms per repository on this machine (two
  requests, each checking a bcrypt password): 5,000 repositories take ~45 s.
- :meth:`RealRegistry.prefill` writes the storage layout directly, for catalogs of
  thousands of repositories in well under a second. **Distribution 2.8.2 lists a
  repository in ``_catalog`` when ``repositories/<name>/_layers`` exists** (verified; a
  directory holding only ``_manifests`` is *not* listed — that changed in v3). ``prefill``
  writes the same link files a push leaves (``_layers``, ``_manifests/revisions``,
  ``_manifests/tags/<tag>/{current,index}``) pointing at blobs pushed once, so prefilled
  images can also be pulled (manifest GET, tags/list) like pushed ones.

The registry reads the filesystem on every catalog request (no cache is configured), so
:meth:`RealRegistry.reset` (delete every repository directory) takes effect at once.

Bearer tokens: 2.8.2 supports ``auth: token:``, but a token server must sign JWTs with a
certificate chain the registry trusts. Instead :class:`TokenRegistryFake` is a small
Starlette app that plays both parts: a token realm (``GET /token?service=&scope=``, basic
auth, JSON ``token``/``access_token``) and a registry answering ``/v2/`` and
``/v2/_catalog`` (Distribution's pagination, ``Link`` format and error bodies) with
``WWW-Authenticate: Bearer realm=...,service=...[,scope=...]`` challenges. Not modelled
there: JWT contents and expiry, refresh tokens, OAuth2 POST, manifests and blobs.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import (
    FaultMiddleware,
    Faults,
    RecordedRequest,
    ServedFake,
    ServerThread,
    Startable,
    basic_auth,
)

__all__ = [
    "REGISTRY_BINARY",
    "RealRegistry",
    "TokenRegistryFake",
    "real_registry_unavailable",
]

REGISTRY_BINARY = "/usr/bin/docker-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
_CONFIG_BLOB = orjson.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
)
_CONFIG_DIGEST = "sha256:" + hashlib.sha256(_CONFIG_BLOB).hexdigest()
_MANIFEST = orjson.dumps(
    {
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(_CONFIG_BLOB),
            "digest": _CONFIG_DIGEST,
        },
        "layers": [],
    }
)
_MANIFEST_DIGEST = "sha256:" + hashlib.sha256(_MANIFEST).hexdigest()
_SEED_REPO = "spacegate-seed/image"  # holds the shared blobs; removed from the catalog


def real_registry_unavailable() -> str | None:
    """Why the real registry cannot run here, or None when it can."""
    if not os.access(REGISTRY_BINARY, os.X_OK):
        return (
            f"{REGISTRY_BINARY} not found (Debian package docker-registry; `make test` installs it)"
        )
    if shutil.which("htpasswd") is None:
        return "htpasswd not found (Debian package apache2-utils; `make test` installs it)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RealRegistry(Startable):
    """The real Distribution 2.8.2 registry, with basic auth, in ``workdir``.

    ``url`` (``http://127.0.0.1:<port>``), ``host`` (``127.0.0.1:<port>``, the image
    domain), ``username``/``password`` (the htpasswd account), ``storage`` (the root
    directory). The password contains ``$`` and ``:`` on purpose.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        username: str = "spacegate",
        password: str = "s3cret$pass:word",
        max_entries: int = 1000,
    ) -> None:
        self.workdir = Path(workdir)
        self.username = username
        self.password = password
        self.max_entries = max_entries
        self.storage = self.workdir / "storage"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None
        self._seeded = False
        self._mount_from: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def repositories_dir(self) -> Path:
        return self.storage / "docker" / "registry" / "v2" / "repositories"

    @property
    def log_file(self) -> Path:
        return self.workdir / "registry.log"

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20.0) -> RealRegistry:
        reason = real_registry_unavailable()
        if reason:
            raise RuntimeError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", self.username, self.password],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        (self.workdir / "htpasswd").write_bytes(htpasswd)
        last_error = ""
        for _ in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config())
            log = self.log_file.open("ab")
            self._process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
            log.close()
            atexit.register(self._kill)  # never leave a registry behind a crashed run
            last_error = self._wait_ready(timeout)
            if not last_error:
                self._client = httpx.Client(
                    base_url=self.url, auth=(self.username, self.password), timeout=10.0
                )
                return self
            self._kill()
        raise RuntimeError(f"docker-registry did not start: {last_error}")

    def _config(self) -> str:
        return (
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {self.storage}}}\n"
            "  delete: {enabled: true}\n"
            "  maintenance: {uploadpurging: {enabled: false}}\n"
            "http:\n"
            f"  addr: 127.0.0.1:{self.port}\n"
            f"  secret: {secrets.token_hex(16)}\n"
            "auth:\n"
            "  htpasswd:\n"
            "    realm: spacegate-test\n"
            f"    path: {self.workdir / 'htpasswd'}\n"
            f"catalog: {{maxentries: {self.max_entries}}}\n"
        )

    def _wait_ready(self, timeout: float) -> str:
        """'' once our process answers ``/v2/``; else why not."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-500:]
                return f"exited with {self._process.returncode}: {tail.strip()}"
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=1.0)
            except httpx.HTTPError:
                time.sleep(0.02)
                continue
            if "docker-distribution-api-version" in response.headers:
                return ""
            return f"port {self.port} answered, but not as a registry"
        return f"no answer on {self.url}/v2/ within {timeout}s"

    def _kill(self) -> None:
        atexit.unregister(self._kill)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._kill()

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, **kwargs: Any) -> Iterator[RealRegistry]:
        """A started registry in a fresh directory, stopped and removed on exit.

        The directory is on ``/dev/shm`` when there is one: creating and deleting thousands
        of small files for a big catalog is 10-20x faster on tmpfs than on a VM disk.
        """
        shm = Path("/dev/shm")
        parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        workdir = Path(tempfile.mkdtemp(prefix="spacegate-registry-", dir=parent))
        registry = cls(workdir, **kwargs)
        try:
            yield registry.start()
        finally:
            registry.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    # ------------------------------------------------------------------ content

    @property
    def client(self) -> httpx.Client:
        """An authenticated client for the registry's HTTP API."""
        if self._client is None:
            raise RuntimeError("RealRegistry is not started")
        return self._client

    def push_image(self, repo: str, tag: str = "latest") -> str:
        """Push a minimal image (config blob + schema2 manifest) over HTTP; its digest."""
        client = self.client
        # Mounting the blob from the previous push saves the upload (one request, not two).
        source = self._mount_from or _SEED_REPO
        response = client.post(
            f"/v2/{repo}/blobs/uploads/", params={"mount": _CONFIG_DIGEST, "from": source}
        )
        if response.status_code == 202:  # no mount possible: upload the blob
            location = response.headers["location"]
            separator = "&" if "?" in location else "?"
            response = client.put(
                f"{location}{separator}{urlencode({'digest': _CONFIG_DIGEST})}",
                content=_CONFIG_BLOB,
                headers={"Content-Type": "application/octet-stream"},
            )
        if response.status_code != 201:
            raise RuntimeError(f"blob upload to {repo}: {response.status_code} {response.text}")
        response = client.put(
            f"/v2/{repo}/manifests/{tag}", content=_MANIFEST, headers={"Content-Type": MANIFEST_V2}
        )
        if response.status_code != 201:
            raise RuntimeError(f"manifest push to {repo}: {response.status_code} {response.text}")
        self._mount_from = repo
        return response.headers["docker-content-digest"]

    def _seed(self) -> None:
        """Make sure the shared config and manifest blobs exist in the blob store."""
        if self._seeded:
            return
        self.push_image(_SEED_REPO)
        shutil.rmtree(self.repositories_dir / _SEED_REPO.partition("/")[0], ignore_errors=True)
        self._mount_from = None
        self._seeded = True

    def prefill(self, repos: Iterable[str], tag: str = "latest", *, pullable: bool = True) -> int:
        """Create repositories by writing the storage layout a push leaves; returns how many.

        Each gets the link files of the shared minimal image under ``tag``, so it shows in
        ``_catalog`` and its manifest can be pulled. With ``pullable=False`` only the
        ``_layers`` link the catalog needs is written (one file per repository instead of
        four). Either is far faster than :meth:`push_image`.
        """
        self._seed()
        config_hex = _CONFIG_DIGEST.split(":")[1]
        manifest_hex = _MANIFEST_DIGEST.split(":")[1]
        files = {f"_layers/sha256/{config_hex}/link": _CONFIG_DIGEST}
        if pullable:
            files.update(
                {
                    f"_manifests/revisions/sha256/{manifest_hex}/link": _MANIFEST_DIGEST,
                    f"_manifests/tags/{tag}/current/link": _MANIFEST_DIGEST,
                    f"_manifests/tags/{tag}/index/sha256/{manifest_hex}/link": _MANIFEST_DIGEST,
                }
            )
        directories = sorted({os.path.dirname(relative) for relative in files})
        root = str(self.repositories_dir)
        count = 0
        for repo in repos:
            base = os.path.join(root, repo)
            for directory in directories:
                os.makedirs(os.path.join(base, directory), exist_ok=True)
            for relative, content in files.items():
                with open(os.path.join(base, relative), "w") as handle:
                    handle.write(content)
            count += 1
        return count

    def reset(self) -> None:
        """Remove every repository (blobs stay, unreferenced)."""
        if self.repositories_dir.is_dir():
            for child in self.repositories_dir.iterdir():
                shutil.rmtree(child)
        self._mount_from = None


# --------------------------------------------------------------------------- token flow


class TokenRegistryFake(ServedFake):
    """A registry behind a bearer-token realm, on ``127.0.0.1`` (see the module docstring).

    ``users`` maps username -> password for the token realm; ``catalog_users`` are the
    ones whose tokens grant ``registry:catalog:*`` (by default all). ``token_field`` picks
    the JSON key of the token (``token``, ``access_token`` or ``both``).
    """

    SERVICE = "fake-registry"

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        catalog_users: Iterable[str] | None = None,
        anonymous_catalog: bool = False,
        max_entries: int = 1000,
        token_field: str = "both",
    ) -> None:
        self.users = dict(users or {})
        self.catalog_users = set(self.users if catalog_users is None else catalog_users)
        self.anonymous_catalog = anonymous_catalog
        self.max_entries = max_entries
        self.token_field = token_field
        self.repositories: list[str] = []
        self.tokens: dict[str, set[str]] = {}  # token -> granted scopes
        self._lock = threading.Lock()
        self.faults = Faults()
        app = Starlette(
            routes=[
                Route("/token", self._token),
                Route("/v2/", self._version),
                Route("/v2/_catalog", self._catalog),
            ]
        )
        self._middleware = FaultMiddleware(app, self.faults, prefix="/v2/")
        self._server = ServerThread(self._middleware, name="token-registry-fake")

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._middleware.recorded()

    def set_repositories(self, names: Iterable[str]) -> None:
        with self._lock:
            self.repositories = sorted(set(names))

    # ------------------------------------------------------------------ handlers

    async def _token(self, request: Request) -> Response:
        params = parse_qsl(request.url.query)
        scopes = {value for key, value in params if key == "scope"}
        service = dict(params).get("service")
        creds = basic_auth(request.headers.get("authorization"))
        if creds is not None and self.users.get(creds[0]) != creds[1]:
            return _registry_error(401, "UNAUTHORIZED", "authentication required", {})
        if service != self.SERVICE:
            return _registry_error(400, "UNSUPPORTED", f"unknown service {service!r}", {})
        may_list = self.anonymous_catalog if creds is None else creds[0] in self.catalog_users
        granted = {s for s in scopes if s == "registry:catalog:*" and may_list}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = granted
        body: dict[str, object] = {"expires_in": 60, "issued_at": "2024-05-01T08:00:00Z"}
        if self.token_field in ("token", "both"):
            body["token"] = token
        if self.token_field in ("access_token", "both"):
            body["access_token"] = token
        return Response(orjson.dumps(body), media_type="application/json")

    def _scopes(self, request: Request) -> set[str] | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        with self._lock:
            return self.tokens.get(header[7:].strip())

    def _challenge(self, scope: str | None) -> dict[str, str]:
        value = f'Bearer realm="{self.realm}",service="{self.SERVICE}"'
        if scope:
            value += f',scope="{scope}"'
        return {"WWW-Authenticate": value}

    async def _version(self, request: Request) -> Response:
        if self._scopes(request) is None:
            return _registry_error(
                401, "UNAUTHORIZED", "authentication required", self._challenge(None)
            )
        return _registry_json({})

    async def _catalog(self, request: Request) -> Response:
        scopes = self._scopes(request)
        if scopes is None or "registry:catalog:*" not in scopes:
            return _registry_error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                self._challenge("registry:catalog:*"),
            )
        params = dict(parse_qsl(request.url.query))
        entries = 100
        if "n" in params:
            try:
                entries = int(params["n"])
            except ValueError:
                entries = -1
            if entries < 0 or entries > self.max_entries:
                return _registry_error(
                    400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", {}
                )
        entries = min(entries, self.max_entries)
        last = params.get("last", "")
        with self._lock:
            after = [r for r in self.repositories if r > last]
        page, more = after[:entries], len(after) > entries
        headers = {}
        if more and page:
            query = urlencode({"last": page[-1], "n": entries})
            headers["Link"] = f'</v2/_catalog?{query}>; rel="next"'
        return _registry_json({"repositories": page}, headers)


def _registry_json(body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body) + b"\n",
        media_type="application/json; charset=utf-8",
        headers={"Docker-Distribution-Api-Version": "registry/2.0", **(headers or {})},
    )


def _registry_error(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    body = orjson.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
    return Response(
        body + b"\n",
        status_code=status,
        media_type="application/json; charset=utf-8",
        headers={"Docker-Distribution-Api-Version": "registry/2.0", **headers},
    )
