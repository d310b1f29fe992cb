r"""Build the Go oracle (``go/main.go``) once per source, into a cache outside the work tree.

The oracle runs the upstream code the Python port in ``policy/`` must agree with:
github.com/distribution/reference (``ParseNormalizedNamed``) and the kubelet's pull-secret
keyring (k8s.io/kubernetes ``pkg/credentialprovider``), at the versions pinned in
``go/go.mod``/``go/go.sum``.

The binary lands in ``<cache>/<key>/spacegate-oracle``: ``<cache>`` is
``$XDG_CACHE_HOME/spacegate/oracle`` (or ``~/.cache/spacegate/oracle``), ``<key>`` a hash of
``go.mod``, ``go.sum``, the Go sources, the Go version/OS/architecture and the build flags. So:

- the fast path (the binary exists for this key) runs ``go env`` once and never ``go build``;
- a file lock serialises concurrent builders (two pytest runs, an IDE), and the one that waited
  checks again before building;
- the binary is built in a temporary directory beside the target and renamed into place, so a
  killed build never leaves a truncated binary that the fast path would trust.

Go is ``$SPACEGATE_GO`` if set, else ``go`` on PATH, else ``/usr/local/go/bin/go``; it needs
the version ``go/go.mod`` names (1.26). A cold build (empty Go build cache, module cache warm)
takes about 30 s on 2 cores; rebuilding after a source change takes a few seconds. Moving the
pins: see the header of ``go/go.mod``. ``python -m tests.oracle`` builds and prints the
binary's path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

GO_MODULE = Path(__file__).resolve().parent / "go"
BINARY = "spacegate-oracle"
BUILD_FLAGS = ("-trimpath",)
BUILD_ENV = {"CGO_ENABLED": "0", "GOWORK": "off"}
GO_FALLBACKS = (Path("/usr/local/go/bin/go"),)
# A cold build takes about 30 s; a first build that must also download the modules takes longer.
BUILD_TIMEOUT = 1800.0

__all__ = [
    "BINARY",
    "GO_MODULE",
    "GoNotFound",
    "OracleBuildError",
    "cache_root",
    "ensure_oracle",
    "find_go",
    "go_not_found_reason",
]


class GoNotFound(RuntimeError):
    """No ``go`` binary: the oracle cannot be built (the tests skip, saying so)."""


class OracleBuildError(RuntimeError):
    """``go`` was found but could not build the oracle; the message has its output."""


def find_go() -> Path | None:
    """``$SPACEGATE_GO``, else ``go`` on PATH, else the official tarball's location."""
    configured = os.environ.get("SPACEGATE_GO")
    if configured:
        path = Path(configured)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("go")
    if found:
        return Path(found)
    return next((p for p in GO_FALLBACKS if p.is_file() and os.access(p, os.X_OK)), None)


def go_not_found_reason() -> str:
    """Why :func:`find_go` found nothing, for a skip or an error message."""
    configured = os.environ.get("SPACEGATE_GO")
    where = (
        f"$SPACEGATE_GO={configured!r} is not an executable file"
        if configured
        else "no `go` on PATH nor at /usr/local/go/bin/go, and $SPACEGATE_GO is not set"
    )
    return f"{where}: the upstream oracle ({GO_MODULE}) needs Go >= 1.26 to build"


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/spacegate/oracle``, or ``~/.cache/spacegate/oracle``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "spacegate" / "oracle"


def ensure_oracle(go: Path | None = None) -> Path:
    """The oracle binary for the current sources and Go, built first if need be.

    Raises:
        GoNotFound: no ``go`` binary (see :func:`find_go`).
        OracleBuildError: ``go env`` or ``go build`` failed; the message has their output.
    """
    go = go or find_go()
    if go is None:
        raise GoNotFound(go_not_found_reason())
    directory = cache_root() / _cache_key(go)
    binary = directory / BINARY
    if _usable(binary):
        return binary
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.parent / ".lock"):
        if _usable(binary):  # another process built it while we waited
            return binary
        _build(go, directory)
    return binary


def _cache_key(go: Path) -> str:
    digest = hashlib.sha256()
    goenv = _run([str(go), "env", "-json", "GOVERSION", "GOOS", "GOARCH"], timeout=120.0)
    toolchain = json.loads(goenv)
    for name in ("GOVERSION", "GOOS", "GOARCH"):
        digest.update(f"{name}={toolchain.get(name, '')}\0".encode())
    digest.update(("\0".join(BUILD_FLAGS) + "\0").encode())
    digest.update(json.dumps(BUILD_ENV, sort_keys=True).encode() + b"\0")
    for path in _sources():
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def _sources() -> list[Path]:
    files = [
        p
        for p in GO_MODULE.iterdir()
        if p.is_file() and (p.name in ("go.mod", "go.sum") or p.suffix == ".go")
    ]
    if not any(p.name == "go.mod" for p in files):
        raise OracleBuildError(f"{GO_MODULE}/go.mod is missing")
    return sorted(files)


def _usable(binary: Path) -> bool:
    return binary.is_file() and os.access(binary, os.X_OK)


def _build(go: Path, directory: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=directory.parent))
    try:
        _run(
            [str(go), "build", *BUILD_FLAGS, "-o", str(staging / BINARY), "."],
            timeout=BUILD_TIMEOUT,
        )
        if directory.exists():  # a leftover without a usable binary
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _run(command: list[str], *, timeout: float) -> str:
    env = {**os.environ, **BUILD_ENV}
    try:
        done = subprocess.run(
            command,
            cwd=GO_MODULE,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OracleBuildError(f"`{' '.join(command)}` took over {timeout:.0f} s") from exc
    except OSError as exc:
        raise OracleBuildError(f"`{' '.join(command)}` could not start: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip()[-4000:]
        raise OracleBuildError(
            f"`{' '.join(command)}` (in {GO_MODULE}) exited with {done.returncode}:\n{output}"
        )
    return done.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> int:
    started = time.monotonic()
    try:
        binary = ensure_oracle()
    except (GoNotFound, OracleBuildError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(binary)
    print(f"ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
