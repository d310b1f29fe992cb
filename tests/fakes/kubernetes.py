"""A small, faithful fake of the Kubernetes API server's namespace endpoints.

Why not a mock of the client: the namespace source's hard parts live on the wire (chunked
watch streams, resourceVersion resumption, bookmarks, ``410 Gone`` after compaction, dropped
connections, 5xx storms). Mocking ``CoreV1Api`` would test our assumptions about the client
instead of the client itself, so this fake speaks HTTP and the code under test uses the real
``kubernetes`` client against it::

    with FakeKubernetes() as fake:
        fake.create_namespace("team-a", {"workspace.ghippo.io/id": "101"})
        api = fake.api_client()            # kubernetes.client.ApiClient pointed at fake.url
        ...

The common path (list, watch, labels changing, an apiserver restart, 410 after etcd
compaction) is also tested against the real kube-apiserver in ``tests/e2e/test_namespaces.py``;
this fake stays for the faults a real apiserver cannot easily be made to produce on demand:
exact byte sequences of a stream, dropped connections mid-event, 5xx storms, expired
``continue`` tokens, bookmarks on demand, a server down at start-up.

It is a Starlette app served by uvicorn on 127.0.0.1 in a background thread. ``stop()`` and a
later ``start()`` keep both the state and the port, so a test can simulate an API server
outage and recovery; a fake built with ``start=False`` has its port reserved but nothing
listening (connection refused), for "API server down at startup".

What it models:

- ``GET /api/v1/namespaces``: list with ``metadata.resourceVersion``, ``labelSelector``
  (equality, inequality, existence, ``in``/``notin``), ``limit`` + ``continue`` paging from a
  consistent snapshot (tokens expire on :meth:`compact`, answering 410).
- ``GET /api/v1/namespaces?watch=true``: newline-delimited ADDED/MODIFIED/DELETED events after
  ``resourceVersion`` (unset or ``"0"``: synthetic ADDED events for the current objects
  first), label-selector transitions (an object leaving the selector is DELETED, entering it
  is ADDED), BOOKMARK events only with ``allowWatchBookmarks=true`` (on demand via
  :meth:`send_bookmark`, or every ``bookmark_interval`` seconds), ``timeoutSeconds`` (the
  stream ends cleanly), and a too-old ``resourceVersion`` answered by a 200 stream holding one
  ERROR event with a 410 ``Expired`` Status, like the watch cache does (``expired_as_http=True``:
  an HTTP 410 instead).
- One global, monotonically increasing resourceVersion shared by every kind (secrets included),
  and an event history with compaction (:meth:`compact`, or automatically past
  ``history_limit`` events).
- Writes the real client makes: ``POST``/``GET``/``PUT``/``PATCH`` (merge and strategic merge
  patch, both applied as RFC 7386 merge patches)/``DELETE`` of namespaces. The immutable
  ``kubernetes.io/metadata.name`` label is maintained as the API server does.
- Namespaced objects of the kinds spacegate reads or writes (:data:`BUILTIN_RESOURCES`:
  Secrets, ConfigMaps, Leases, Pods and the workload kinds) and of custom resources a test
  serves (:meth:`serve_resource`, e.g. PolicyReports), and cluster-scoped custom resources
  (RegistrySpaceBindings: ``metadata.generation``, bumped when ``spec`` changes, and a
  ``status`` subresource that main-resource writes leave alone): ``POST`` (409 when the
  name is taken, 404 when the namespace is missing), ``GET``, ``PUT`` (409 on a stale
  ``metadata.resourceVersion``, unconditional without one), merge ``PATCH`` (of the object
  or its ``/status``; a ``metadata.resourceVersion`` in the patch is a precondition),
  ``DELETE``; lists per namespace and across namespaces with ``labelSelector``,
  ``fieldSelector`` (``metadata.name`` and ``metadata.namespace``, ``=``/``==``/``!=``) and
  ``limit`` + ``continue``, and watches of them with the same selectors (ADDED, MODIFIED,
  DELETED, bookmarks, 410 after compaction, as for namespaces); discovery of a group
  version (``GET /apis/{group}/{version}``: 404 until something is served there). Deleting
  a namespace deletes its objects (without events). A ``DELETE`` whose ``DeleteOptions``
  body carries ``preconditions`` (``uid``, ``resourceVersion``) that the object no longer
  matches is refused with 409 ``Conflict``, as the apiserver does.
- Faults: :meth:`drop_watches` cuts open watch connections mid-stream (no clean end of the
  chunked body, as a network failure looks), :meth:`fail_next` answers the next N requests
  with an error Status, :meth:`interleave` runs a test's action just before the next request
  of a method and path is handled (someone else's write landing between a client's read and
  its write, deterministically), and every request is logged in :attr:`requests` with its
  status.

What it does not model: authentication and authorization, TLS, API discovery beyond a
group version (``/api``, ``/apis``), field selectors on anything but a name or namespace,
server-side apply, JSON patch, ``dryRun``, ``generateName``, schemas and validation of
objects (a Lease or Secret is stored as sent), admission, owner references and garbage
collection, finalizers and the ``Terminating`` phase (a delete is immediate), strategic
merge or JSON patches of objects, ``resourceVersionMatch``/``sendInitialEvents``, a watch from a
resourceVersion in the future (served as if current), protobuf and Table output, rate limits
and ``Retry-After``, and optimistic concurrency beyond a ``PUT`` carrying a stale
``metadata.resourceVersion`` (409).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import kubernetes.client
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON = dict[str, Any]
NAME_LABEL = "kubernetes.io/metadata.name"

# (API prefix, plural) -> kind of the built-in namespaced resources the fake serves.
BUILTIN_RESOURCES: Mapping[tuple[str, str], str] = {
    ("/api/v1", "secrets"): "Secret",
    ("/api/v1", "configmaps"): "ConfigMap",
    ("/api/v1", "pods"): "Pod",
    ("/api/v1", "replicationcontrollers"): "ReplicationController",
    ("/api/v1", "podtemplates"): "PodTemplate",
    ("/apis/apps/v1", "deployments"): "Deployment",
    ("/apis/apps/v1", "statefulsets"): "StatefulSet",
    ("/apis/apps/v1", "daemonsets"): "DaemonSet",
    ("/apis/apps/v1", "replicasets"): "ReplicaSet",
    ("/apis/batch/v1", "jobs"): "Job",
    ("/apis/batch/v1", "cronjobs"): "CronJob",
    ("/apis/coordination.k8s.io/v1", "leases"): "Lease",
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it, with the status it answered."""

    method: str
    path: str
    params: Mapping[str, str]
    status: int
    at: float  # time.monotonic() when the response started

    @property
    def is_watch(self) -> bool:
        return self.params.get("watch") in ("true", "1")

    @property
    def is_namespace_list(self) -> bool:
        """A plain (non-watch) list of namespaces: what a relist looks like."""
        return self.method == "GET" and self.path == "/api/v1/namespaces" and not self.is_watch


NAMESPACES = ("/api/v1", "namespaces")


@dataclass(frozen=True)
class _Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    old: JSON | None
    new: JSON
    resource: tuple[str, str] = NAMESPACES  # (api prefix, plural)
    namespace: str = ""


@dataclass(eq=False)
class _Watcher:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]]
    selector: Predicate
    bookmarks: bool
    resource: tuple[str, str] = NAMESPACES
    namespace: str | None = None  # None: every namespace (and cluster-scoped objects)
    fields: Callable[[Mapping[str, Any]], bool] = lambda meta: True
    kind: str = "Namespace"
    api_version: str = "v1"

    def sees(self, event: _Event) -> bool:
        """Whether the event is about this watch's resource and namespace."""
        return event.resource == self.resource and self.namespace in (None, event.namespace)

    def put(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the server loop is already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _ConnectionDropped(Exception):
    """Raised inside a watch body to make uvicorn cut the connection mid-stream."""


class _DropFilter(logging.Filter):
    """Keep uvicorn from logging our deliberate connection drops as application errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        for _ in range(10):  # through exception groups and chains, never in a cycle
            if exc is None:
                break
            if isinstance(exc, _ConnectionDropped):
                return False
            nested = getattr(exc, "exceptions", None)
            exc = nested[0] if nested else exc.__cause__ or exc.__context__
        return True


_DROP_FILTER = _DropFilter()


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status_object(code: int, reason: str, message: str) -> JSON:
    """A ``Status`` body as the API server returns it for failures."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {
    400: "BadRequest",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --------------------------------------------------------------------------- selectors

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield text[start:i]
            start = i + 1
    yield text[start:]


Predicate = Callable[[Mapping[str, str]], bool]


def _requirement(term: str) -> Predicate:
    """One selector requirement (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``...)."""
    match = _SET_RE.match(term)
    if match:
        key, op, values_text = match.groups()
        values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
        negate = op == "notin"
        return lambda labels: (labels.get(key) in values) != negate
    if "!=" in term:
        key, _, value = (part.strip() for part in term.partition("!="))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, _, value = (part.strip() for part in term.partition("==" if "==" in term else "="))
        return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        absent = term[1:].strip()
        return lambda labels: absent not in labels
    if re.fullmatch(r"[A-Za-z0-9./_-]+", term):
        return lambda labels: term in labels
    raise ValueError(f"unable to parse requirement: {term!r}")


def parse_label_selector(text: str) -> Predicate:
    """A predicate over labels for a ``labelSelector`` string; ValueError when malformed."""
    tests = [_requirement(raw.strip()) for raw in _split_selector(text) if raw.strip()]
    return lambda labels: all(test(labels) for test in tests)


def _labels(obj: JSON | None) -> Mapping[str, str]:
    if obj is None:
        return {}
    labels = obj.get("metadata", {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _line(obj: JSON) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _reserve_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- the fake


class FakeKubernetes:
    """The fake API server. Test-side methods are thread-safe and return at once.

    ``history_limit``: keep at most this many namespace events (older ones are compacted).
    ``bookmark_interval``: seconds between periodic BOOKMARK events (None: only on demand).
    ``expired_as_http``: answer a too-old watch resourceVersion with HTTP 410 instead of an
    ERROR event. ``start``: listen at once (False: reserve the port, refuse connections).
    """

    def __init__(
        self,
        *,
        history_limit: int | None = None,
        bookmark_interval: float | None = None,
        expired_as_http: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
        start: bool = True,
    ) -> None:
        self.host = host
        self.port = port if port is not None else _reserve_port(host)
        self.history_limit = history_limit
        self.bookmark_interval = bookmark_interval
        self.expired_as_http = expired_as_http
        self._lock = threading.RLock()
        self._rv = 1
        self._compacted = 1  # a watch may start from any rv >= this
        self._history: list[_Event] = []
        self._namespaces: dict[str, JSON] = {}
        # (api prefix, plural, namespace, name) -> object; api prefix "/api/v1" or
        # "/apis/<group>/<version>"
        self._objects: dict[tuple[str, str, str, str], JSON] = {}
        self._resources: dict[tuple[str, str], str] = dict(BUILTIN_RESOURCES)  # -> kind
        self._watchers: set[_Watcher] = set()
        self._continues: dict[str, tuple[int, list[JSON]]] = {}
        self._failures: list[tuple[int, str, str | None]] = []
        self._interleaved: list[tuple[str, str, Callable[[], object]]] = []
        self._requests: list[RecordedRequest] = []
        self._closing = False  # stop() in progress: refuse new watches
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.app = self._build_app()
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, timeout: float = 5.0) -> None:
        """Listen on the reserved port (again, after :meth:`stop`); state is kept."""
        if self._server is not None:
            return
        logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        config = uvicorn.Config(
            self._asgi,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            interface="asgi3",
            loop="asyncio",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-kube-api", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError("the fake Kubernetes API server did not start")
            time.sleep(0.005)
        self._server, self._thread = server, thread
        self._sock = sock
        self._closing = False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; open watches are cut as if the server crashed. State is kept."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._lock:
            # Watches opened from now on would hold up uvicorn's graceful shutdown.
            self._closing = True
        self.drop_watches()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server, self._thread, self._sock = None, None, None

    def __enter__(self) -> FakeKubernetes:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def configuration(self) -> kubernetes.client.Configuration:
        """A client configuration pointing at the fake (plain HTTP, no auth)."""
        return kubernetes.client.Configuration(host=self.url)

    def api_client(self) -> kubernetes.client.ApiClient:
        """A real ``kubernetes`` ApiClient pointing at the fake."""
        return kubernetes.client.ApiClient(self.configuration())

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for the fake at ``path`` (context ``fake``; no credentials), for code
        that finds its cluster itself (``KUBECONFIG``, a child process)."""
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: fake, cluster: {{server: "{self.url}"}}}}]\n'
            "users: [{name: nobody, user: {}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: nobody}}]\n"
            "current-context: fake\n"
        )
        return path

    def pull_secret_login(self, namespace: str, name: str, host: str) -> tuple[str, str] | None:
        """(username, password) the ``.dockerconfigjson`` Secret ``name`` holds for ``host``;
        None when there is no such Secret (KeyError when it lacks the host)."""
        with self._lock:
            secret = self._objects.get(("/api/v1", "secrets", namespace, name))
            if secret is None:
                return None
            raw = base64.b64decode(secret["data"][".dockerconfigjson"])
        entry = json.loads(raw)["auths"][host]
        return entry["username"], entry["password"]

    # ------------------------------------------------------------------ inspection

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def open_watches(self) -> int:
        with self._lock:
            return len(self._watchers)

    def wait_for_watches(self, count: int = 1, timeout: float = 2.0) -> bool:
        """Wait until at least ``count`` watch streams are open; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.open_watches < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def namespace(self, name: str) -> JSON | None:
        with self._lock:
            obj = self._namespaces.get(name)
            return copy.deepcopy(obj) if obj is not None else None

    def namespace_names(self) -> list[str]:
        with self._lock:
            return sorted(self._namespaces)

    # ------------------------------------------------------------------ test-side writes

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> JSON:
        """Create a namespace (ADDED event); ApiError 409 when it exists."""
        return self._create_namespace({"metadata": {"name": name, "labels": dict(labels or {})}})

    def label_namespace(self, name: str, labels: Mapping[str, str | None]) -> JSON:
        """Merge labels into a namespace (MODIFIED event); a None value removes the label."""
        return self._patch_namespace(name, {"metadata": {"labels": dict(labels)}})

    def delete_namespace(self, name: str) -> JSON:
        """Delete a namespace and its secrets at once (DELETED event)."""
        return self._delete_namespace(name)

    def create_secret(
        self, namespace: str, name: str, data: Mapping[str, str] | None = None
    ) -> JSON:
        """Create a secret: bumps the global resourceVersion without a namespace event."""
        body = {"metadata": {"name": name}, "data": dict(data or {})}
        return self._create_object("/api/v1", "secrets", namespace, body)

    def create_object(self, path: str, namespace: str, body: JSON) -> JSON:
        """Create a namespaced object under ``path`` (``/apis/apps/v1/deployments``,
        ``/api/v1/secrets``): what a client's ``POST`` would do; ApiError 409 when taken."""
        prefix, plural = path.rsplit("/", 1)
        return self._create_object(prefix, plural, namespace, body)

    def get_object(self, path: str, namespace: str, name: str) -> JSON | None:
        """The object ``name`` in ``namespace`` under ``path``, or None."""
        prefix, plural = path.rsplit("/", 1)
        with self._lock:
            obj = self._objects.get((prefix, plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, path: str, namespace: str | None = None) -> list[JSON]:
        """Every object under ``path`` (in ``namespace``), by namespace and name."""
        prefix, plural = path.rsplit("/", 1)
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (p, kind, ns, _), obj in sorted(self._objects.items())
                if p == prefix and kind == plural and namespace in (None, ns)
            ]

    def replace_object(self, path: str, namespace: str, body: JSON) -> JSON:
        """Replace an object as a client's ``PUT`` would (409 on a stale resourceVersion)."""
        prefix, plural = path.rsplit("/", 1)
        return self._replace_object(prefix, plural, namespace, body)

    def delete_object(self, path: str, namespace: str, name: str) -> JSON:
        """Delete an object (ApiError 404 when absent)."""
        prefix, plural = path.rsplit("/", 1)
        return self._delete_object(prefix, plural, namespace, name)

    def serve_resource(self, group_version: str, plural: str, kind: str) -> None:
        """Serve a custom resource (as installing its CRD does): ``wgpolicyk8s.io/v1alpha2``,
        ``policyreports``, ``PolicyReport``."""
        with self._lock:
            self._resources[(f"/apis/{group_version}", plural)] = kind

    # ------------------------------------------------------------------ faults

    def compact(self) -> int:
        """Forget the event history: watches from an older resourceVersion now get 410.

        Returns the oldest resourceVersion a watch may still start from.
        """
        with self._lock:
            self._compacted = self._rv
            self._history.clear()
            self._continues.clear()
            return self._compacted

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream; returns how many were cut."""
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.put(("drop", None))
        return len(watchers)

    def end_watches(self) -> int:
        """End every open watch cleanly, as a server-side timeout does."""
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.put(("end", None))
        return len(watchers)

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        path_prefix: str = "/",
        retry_after: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with an error Status
        (with a ``Retry-After`` header when given, as priority and fairness sends on 429)."""
        with self._lock:
            self._failures.extend([(status, path_prefix, retry_after)] * count)

    def interleave(self, method: str, path: str, action: Callable[[], object]) -> None:
        """Run ``action`` once, just before the next ``method`` request to exactly ``path``
        is handled (``action`` may use this fake's test-side methods)."""
        with self._lock:
            self._interleaved.append((method, path, action))

    def send_bookmark(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to watches that allow them."""
        with self._lock:
            rv = self._rv
            watchers = [w for w in self._watchers if w.bookmarks]
        for watcher in watchers:
            watcher.put(("bookmark", rv))
        return len(watchers)

    # ------------------------------------------------------------------ state changes

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record_event(
        self,
        kind: str,
        old: JSON | None,
        new: JSON,
        resource: tuple[str, str] = NAMESPACES,
        namespace: str = "",
    ) -> None:
        """Append to history and fan out; caller holds the lock."""
        event = _Event(
            int(new["metadata"]["resourceVersion"]),
            kind,
            old,
            copy.deepcopy(new),
            resource,
            namespace,
        )
        self._history.append(event)
        if self.history_limit is not None and len(self._history) > self.history_limit:
            dropped = self._history[: len(self._history) - self.history_limit]
            del self._history[: len(dropped)]
            self._compacted = dropped[-1].rv
        for watcher in self._watchers:
            watcher.put(("event", event))

    def _create_namespace(self, body: JSON) -> JSON:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
            raise ApiError(422, "Invalid", f"Namespace {name!r} is invalid: metadata.name")
        with self._lock:
            if name in self._namespaces:
                raise ApiError(409, "AlreadyExists", f'namespaces "{name}" already exists')
            labels = {**(meta.get("labels") or {}), NAME_LABEL: name}
            obj: JSON = {
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": str(self._next_rv()),
                    "creationTimestamp": _now(),
                    "labels": labels,
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
            if meta.get("annotations"):
                obj["metadata"]["annotations"] = dict(meta["annotations"])
            self._namespaces[name] = obj
            self._record_event("ADDED", None, obj)
            return copy.deepcopy(obj)

    def _update_namespace(self, name: str, change: Callable[[JSON], JSON]) -> JSON:
        with self._lock:
            old = self._namespaces.get(name)
            if old is None:
                raise ApiError(404, "NotFound", f'namespaces "{name}" not found')
            new = change(copy.deepcopy(old))
            meta = new.setdefault("metadata", {})
            # Identity and bookkeeping fields are the server's, whatever the client sent.
            for key in ("name", "uid", "creationTimestamp"):
                meta[key] = old["metadata"][key]
            meta["labels"] = {**(meta.get("labels") or {}), NAME_LABEL: name}
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            new["kind"], new["apiVersion"] = "Namespace", "v1"
            if new == old:
                return copy.deepcopy(old)  # a no-op write bumps nothing, as in Kubernetes
            meta["resourceVersion"] = str(self._next_rv())
            self._namespaces[name] = new
            self._record_event("MODIFIED", old, new)
            return copy.deepcopy(new)

    def _patch_namespace(self, name: str, patch: JSON) -> JSON:
        return self._update_namespace(name, lambda obj: merge_patch(obj, patch))

    def _replace_namespace(self, name: str, body: JSON) -> JSON:
        wanted = (body.get("metadata") or {}).get("resourceVersion")

        def change(obj: JSON) -> JSON:
            if wanted and wanted != obj["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on namespaces "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                )
            new = copy.deepcopy(body)
            new.setdefault("status", obj.get("status"))
            return new

        return self._update_namespace(name, change)

    def _delete_namespace(self, name: str) -> JSON:
        with self._lock:
            old = self._namespaces.pop(name, None)
            if old is None:
                raise ApiError(404, "NotFound", f'namespaces "{name}" not found')
            for key in [k for k in self._objects if k[2] == name]:
                del self._objects[key]
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record_event("DELETED", old, gone)
            return gone

    def _kind(self, prefix: str, plural: str) -> str:
        kind = self._resources.get((prefix, plural))
        if kind is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({plural})"
            )
        return kind

    def _create_object(self, prefix: str, plural: str, namespace: str, body: JSON) -> JSON:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        with self._lock:
            kind = self._kind(prefix, plural)
            if not isinstance(name, str) or not name:
                raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value")
            if namespace and namespace not in self._namespaces:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
            key = (prefix, plural, namespace, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj: JSON = copy.deepcopy(body)
            obj["kind"] = kind
            obj["apiVersion"] = prefix.removeprefix("/api/").removeprefix("/apis/")
            obj["metadata"] = {
                **{
                    k: v
                    for k, v in meta.items()
                    if k in ("labels", "annotations", "ownerReferences")
                },
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(self._next_rv()),
                "creationTimestamp": _now(),
            }
            if plural == "secrets":
                obj["type"] = body.get("type") or "Opaque"
                obj["data"] = dict(body.get("data") or {})
                for k, value in (obj.pop("stringData", None) or {}).items():
                    obj["data"][k] = base64.b64encode(str(value).encode()).decode()
            if not namespace:
                del obj["metadata"]["namespace"]
                obj["metadata"]["generation"] = 1
            self._objects[key] = obj
            self._record_event("ADDED", None, obj, (prefix, plural), namespace)
            return copy.deepcopy(obj)

    def _replace_object(
        self, prefix: str, plural: str, namespace: str, body: JSON, *, status_only: bool = False
    ) -> JSON:
        meta = body.get("metadata") or {}
        name = meta.get("name")
        with self._lock:
            kind = self._kind(prefix, plural)
            key = (prefix, plural, namespace, str(name))
            old = self._objects.get(key)
            if old is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            wanted = meta.get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {plural} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                )
            obj: JSON = copy.deepcopy(body)
            obj["kind"] = kind
            obj["apiVersion"] = old["apiVersion"]
            obj["metadata"] = {
                **{
                    k: v
                    for k, v in meta.items()
                    if k in ("labels", "annotations", "ownerReferences")
                },
                **{
                    k: old["metadata"][k]
                    for k in ("name", "namespace", "uid", "creationTimestamp", "generation")
                    if k in old["metadata"]
                },
            }
            if status_only:
                obj = {**copy.deepcopy(old), "status": copy.deepcopy(body.get("status"))}
            elif "generation" in old["metadata"]:
                obj["status"] = copy.deepcopy(old.get("status"))
                if obj.get("spec") != old.get("spec"):
                    obj["metadata"]["generation"] = old["metadata"]["generation"] + 1
            obj["metadata"]["resourceVersion"] = str(self._next_rv())
            self._objects[key] = obj
            self._record_event("MODIFIED", old, obj, (prefix, plural), namespace)
            return copy.deepcopy(obj)

    def _patch_object(
        self,
        prefix: str,
        plural: str,
        namespace: str,
        name: str,
        patch: JSON,
        status_only: bool,
    ) -> JSON:
        """A merge patch (RFC 7386); a ``metadata.resourceVersion`` in it is a precondition."""
        with self._lock:
            self._kind(prefix, plural)
            old = self._objects.get((prefix, plural, namespace, name))
            if old is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            merged = merge_patch(copy.deepcopy(old), patch)
            merged.setdefault("metadata", {})["name"] = name
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if not wanted:
                merged["metadata"].pop("resourceVersion", None)
            return self._replace_object(prefix, plural, namespace, merged, status_only=status_only)

    def _delete_object(
        self, prefix: str, plural: str, namespace: str, name: str, options: JSON | None = None
    ) -> JSON:
        preconditions = (options or {}).get("preconditions") or {}
        with self._lock:
            self._kind(prefix, plural)
            key = (prefix, plural, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            meta = obj["metadata"]
            for field, stored in (("uid", "uid"), ("resourceVersion", "resourceVersion")):
                wanted = preconditions.get(field)
                if wanted and wanted != meta[stored]:
                    raise ApiError(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {plural} "{name}": Precondition '
                        f"failed: {field} in precondition: {wanted}, {field} in object meta: "
                        f"{meta[stored]}",
                    )
            del self._objects[key]
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record_event("DELETED", obj, gone, (prefix, plural), namespace)
            return obj

    def _list_objects(self, prefix: str, plural: str, namespace: str | None, params: Any) -> JSON:
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
            fields = _field_selector(params.get("fieldSelector", ""))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        with self._lock:
            kind = self._kind(prefix, plural)
            items = [
                copy.deepcopy(obj)
                for (p, r, ns, _), obj in sorted(self._objects.items())
                if p == prefix
                and r == plural
                and namespace in (None, ns)
                and labels(_labels(obj))
                and fields(obj["metadata"])
            ]
            page = self._page(items, params)
        return {"kind": f"{kind}List", **page}

    def _page(self, items: list[JSON], params: Any) -> JSON:
        """One page of ``items`` (``limit``/``continue``); caller holds the lock."""
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        if token:
            if token not in self._continues:
                raise ApiError(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent "
                    "list result. You can start a new list without the continue parameter.",
                )
            rv, items = self._continues.pop(token)
        else:
            rv = self._rv
        meta: JSON = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            next_token = uuid.uuid4().hex
            self._continues[next_token] = (rv, rest)
            meta["continue"] = next_token
            meta["remainingItemCount"] = len(rest)
        return {"metadata": meta, "items": items}

    # ------------------------------------------------------------------ HTTP

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/v1/namespaces", self._namespaces_endpoint, methods=["GET", "POST"]),
                Route(
                    "/api/v1/namespaces/{name}",
                    self._namespace_endpoint,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
                # Every other namespaced resource, core and grouped, and group discovery.
                Route("/api/v1/{plural}", self._collection_endpoint, methods=["GET"]),
                Route(
                    "/api/v1/namespaces/{ns}/{plural}",
                    self._collection_endpoint,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/api/v1/namespaces/{ns}/{plural}/{name}",
                    self._object_endpoint,
                    methods=["GET", "PUT", "DELETE"],
                ),
                Route("/apis/{group}/{version}", self._discovery_endpoint, methods=["GET"]),
                Route(
                    "/apis/{group}/{version}/{plural}",
                    self._collection_endpoint,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/apis/{group}/{version}/namespaces/{ns}/{plural}",
                    self._collection_endpoint,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}",
                    self._object_endpoint,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
                # Cluster-scoped custom resources (serve_resource): object and status.
                Route(
                    "/apis/{group}/{version}/{plural}/{name}",
                    self._object_endpoint,
                    methods=["GET", "PUT", "PATCH", "DELETE"],
                ),
                Route(
                    "/apis/{group}/{version}/{plural}/{name}/status",
                    self._object_endpoint,
                    methods=["PUT", "PATCH"],
                ),
            ]
        )

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record every request with its status, and inject the queued failures."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        params = dict(parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True))
        method, path = scope["method"], scope["path"]
        failure: int | None = None
        wait: str | None = None
        action: Callable[[], object] | None = None
        with self._lock:
            for i, (status, prefix, retry_after) in enumerate(self._failures):
                if path.startswith(prefix):
                    failure, wait = status, retry_after
                    del self._failures[i]
                    break
            for i, (wanted_method, wanted_path, hook) in enumerate(self._interleaved):
                if (method, path) == (wanted_method, wanted_path):
                    action = hook
                    del self._interleaved[i]
                    break
        if action is not None:
            action()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self._requests.append(
                        RecordedRequest(
                            method, path, params, int(message["status"]), time.monotonic()
                        )
                    )
            await send(message)

        app: ASGIApp = self.app
        if failure is not None:
            reason = _REASONS.get(failure, "InternalError")
            app = JSONResponse(
                status_object(failure, reason, f"injected failure ({failure})"),
                status_code=failure,
                headers=None if wait is None else {"Retry-After": wait},
            )
        await app(scope, receive, recording_send)

    async def _namespaces_endpoint(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                return _json(self._create_namespace(await _body(request)), 201)
            params = request.query_params
            try:
                selector = parse_label_selector(params.get("labelSelector", ""))
            except ValueError as exc:
                raise ApiError(400, "BadRequest", str(exc)) from None
            if params.get("watch") in ("true", "1"):
                return self._watch(params.get("resourceVersion", ""), selector, params)
            return _json(self._list(selector, params))
        except ApiError as exc:
            return _error(exc)

    def _list(self, selector: Predicate, params: Any) -> JSON:
        with self._lock:
            items = [
                copy.deepcopy(self._namespaces[name])
                for name in sorted(self._namespaces)
                if selector(_labels(self._namespaces[name]))
            ]
            page = self._page(items, params)
        return {"kind": "NamespaceList", "apiVersion": "v1", **page}

    def _watch(self, rv_text: str, selector: Predicate, params: Any) -> Response:
        """A watch of namespaces."""

        def current() -> list[JSON]:
            return [
                self._namespaces[name]
                for name in sorted(self._namespaces)
                if selector(_labels(self._namespaces[name]))
            ]

        return self._watch_stream(rv_text, params, current, selector=selector)

    def _watch_objects(
        self, prefix: str, plural: str, namespace: str | None, params: Any
    ) -> Response:
        """A watch of one resource (in one namespace, or all), with label and field
        selectors on ``metadata.name``/``metadata.namespace``."""
        try:
            selector = parse_label_selector(params.get("labelSelector", ""))
            fields = _field_selector(params.get("fieldSelector", ""))
        except ValueError as exc:
            raise ApiError(400, "BadRequest", str(exc)) from None
        kind = self._kind(prefix, plural)

        def current() -> list[JSON]:
            return [
                obj
                for (p, r, ns, _), obj in sorted(self._objects.items())
                if p == prefix
                and r == plural
                and namespace in (None, ns)
                and selector(_labels(obj))
                and fields(obj["metadata"])
            ]

        return self._watch_stream(
            rv_text=params.get("resourceVersion", ""),
            params=params,
            current=current,
            selector=selector,
            resource=(prefix, plural),
            namespace=namespace,
            fields=fields,
            kind=kind,
            api_version=prefix.removeprefix("/api/").removeprefix("/apis/"),
        )

    def _watch_stream(
        self,
        rv_text: str,
        params: Any,
        current: Callable[[], list[JSON]],
        *,
        selector: Predicate,
        resource: tuple[str, str] = NAMESPACES,
        namespace: str | None = None,
        fields: Callable[[Mapping[str, Any]], bool] = lambda meta: True,
        kind: str = "Namespace",
        api_version: str = "v1",
    ) -> Response:
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        timeout_text = params.get("timeoutSeconds")
        timeout = float(timeout_text) if timeout_text else None
        loop = asyncio.get_running_loop()
        watcher = _Watcher(
            loop,
            asyncio.Queue(),
            selector,
            bookmarks,
            resource,
            namespace,
            fields,
            kind,
            api_version,
        )
        backlog: list[bytes] = []
        with self._lock:
            if self._closing:
                raise ApiError(503, "ServiceUnavailable", "the API server is shutting down")
            if rv_text in ("", "0"):
                backlog = [_line({"type": "ADDED", "object": obj}) for obj in current()]
            else:
                try:
                    start = int(rv_text)
                except ValueError:
                    raise ApiError(
                        400, "BadRequest", f"invalid resource version: {rv_text!r}"
                    ) from None
                if start < self._compacted:
                    message = f"too old resource version: {start} ({self._compacted})"
                    if self.expired_as_http:
                        raise ApiError(410, "Expired", message)
                    error = status_object(410, "Expired", message)
                    expired = _line({"type": "ERROR", "object": error})
                    return StreamingResponse(_once(expired), media_type="application/json")
                for event in self._history:
                    if event.rv > start and (line := _event_line(event, watcher)):
                        backlog.append(line)
            self._watchers.add(watcher)
        return StreamingResponse(
            self._stream(watcher, backlog, timeout), media_type="application/json"
        )

    async def _stream(
        self, watcher: _Watcher, backlog: list[bytes], timeout: float | None
    ) -> AsyncIterator[bytes]:
        loop = watcher.loop
        deadline = None if timeout is None else loop.time() + timeout
        next_bookmark = (
            loop.time() + self.bookmark_interval
            if watcher.bookmarks and self.bookmark_interval
            else None
        )
        try:
            for line in backlog:
                yield line
            while True:
                now = loop.time()
                waits = [t - now for t in (deadline, next_bookmark) if t is not None]
                try:
                    kind, payload = await asyncio.wait_for(
                        watcher.queue.get(), max(0.0, min(waits)) if waits else None
                    )
                except TimeoutError:
                    if deadline is not None and loop.time() >= deadline:
                        return
                    kind, payload = "bookmark", self.resource_version
                    next_bookmark = loop.time() + (self.bookmark_interval or 0.0)
                if kind == "drop":
                    raise _ConnectionDropped
                if kind == "end":
                    return
                if kind == "bookmark":
                    yield _line(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": watcher.kind,
                                "apiVersion": watcher.api_version,
                                "metadata": {"resourceVersion": str(payload)},
                            },
                        }
                    )
                elif event_line := _event_line(payload, watcher):
                    yield event_line
        finally:
            with self._lock:
                self._watchers.discard(watcher)

    async def _namespace_endpoint(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            if request.method == "GET":
                obj = self.namespace(name)
                if obj is None:
                    raise ApiError(404, "NotFound", f'namespaces "{name}" not found')
                return _json(obj)
            if request.method == "DELETE":
                return _json(self._delete_namespace(name))
            body = await _body(request)
            if request.method == "PUT":
                return _json(self._replace_namespace(name, body))
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the fake supports merge patches only, not {content_type or 'none'}",
                )
            return _json(self._patch_namespace(name, body))
        except ApiError as exc:
            return _error(exc)

    @staticmethod
    def _prefix(request: Request) -> str:
        params = request.path_params
        if "group" in params:
            return f"/apis/{params['group']}/{params['version']}"
        return "/api/v1"

    async def _discovery_endpoint(self, request: Request) -> Response:
        prefix = self._prefix(request)
        with self._lock:
            served = sorted(
                (plural, kind) for (p, plural), kind in self._resources.items() if p == prefix
            )
        if not served:
            return _error(
                ApiError(404, "NotFound", "the server could not find the requested resource")
            )
        return _json(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": prefix.removeprefix("/apis/"),
                "resources": [
                    {"name": plural, "kind": kind, "namespaced": True} for plural, kind in served
                ],
            }
        )

    async def _collection_endpoint(self, request: Request) -> Response:
        prefix, plural = self._prefix(request), request.path_params["plural"]
        namespace = request.path_params.get("ns")
        try:
            if request.method == "POST":
                body = await _body(request)
                return _json(self._create_object(prefix, plural, namespace or "", body), 201)
            if request.query_params.get("watch") in ("true", "1"):
                return self._watch_objects(prefix, plural, namespace, request.query_params)
            listed = self._list_objects(prefix, plural, namespace, request.query_params)
            listed["apiVersion"] = prefix.removeprefix("/api/").removeprefix("/apis/")
            return _json(listed)
        except ApiError as exc:
            return _error(exc)

    async def _object_endpoint(self, request: Request) -> Response:
        prefix, plural = self._prefix(request), request.path_params["plural"]
        namespace, name = request.path_params.get("ns", ""), request.path_params["name"]
        status_only = request.url.path.endswith("/status")
        try:
            if request.method == "DELETE":
                options = await _body(request)
                return _json(self._delete_object(prefix, plural, namespace, name, options))
            if request.method == "PATCH":
                content_type = request.headers.get("content-type", "").split(";")[0].strip()
                if content_type != "application/merge-patch+json":
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the fake patches objects with merge patches only, not {content_type}",
                    )
                patch = await _body(request)
                return _json(
                    self._patch_object(prefix, plural, namespace, name, patch, status_only)
                )
            if request.method == "PUT":
                body = await _body(request)
                if (body.get("metadata") or {}).get("name") != name:
                    raise ApiError(
                        400, "BadRequest", "the name of the object does not match the URL"
                    )
                return _json(
                    self._replace_object(prefix, plural, namespace, body, status_only=status_only)
                )
            with self._lock:
                self._kind(prefix, plural)
                obj = copy.deepcopy(self._objects.get((prefix, plural, namespace, name)))
            if obj is None:
                raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
            return _json(obj)
        except ApiError as exc:
            return _error(exc)


# --------------------------------------------------------------------------- helpers


def _field_selector(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over ``metadata`` for a ``fieldSelector`` on a name or namespace."""
    terms: list[tuple[str, str, bool]] = []  # (metadata field, value, negated)
    for term in (t.strip() for t in text.split(",") if t.strip()):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        field = {"metadata.name": "name", "metadata.namespace": "namespace"}.get(key.strip())
        if field is None:
            raise ValueError(f'"{key.strip()}" is not a known field selector: only name, namespace')
        terms.append((field, value.strip(), negate))
    return lambda meta: all((meta.get(f) == v) != n for f, v, n in terms)


def _event_line(event: _Event, watcher: _Watcher) -> bytes | None:
    """The event as this watcher sees it, or None when it sees nothing."""
    if not watcher.sees(event):
        return None

    def selected(obj: JSON) -> bool:
        return watcher.selector(_labels(obj)) and watcher.fields(obj.get("metadata") or {})

    was = event.old is not None and selected(event.old)
    now = selected(event.new)
    if event.type == "DELETED":
        kind = "DELETED" if was else None
    elif event.type == "ADDED":
        kind = "ADDED" if now else None
    else:
        kind = {(True, True): "MODIFIED", (True, False): "DELETED", (False, True): "ADDED"}.get(
            (was, now)
        )
    return None if kind is None else _line({"type": kind, "object": event.new})


async def _once(line: bytes) -> AsyncIterator[bytes]:
    yield line


async def _body(request: Request) -> JSON:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object")
    return body


def _json(obj: JSON, status: int = 200) -> Response:
    return JSONResponse(obj, status_code=status)


def _error(exc: ApiError) -> Response:
    return JSONResponse(status_object(exc.code, exc.reason, exc.message), status_code=exc.code)
