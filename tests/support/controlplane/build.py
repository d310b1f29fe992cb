r"""Build etcd, kube-apiserver and kube-controller-manager from pinned Go modules, once per pin.

Upstream ships no ``go install``-able Kubernetes: ``k8s.io/kubernetes`` requires its staging
modules at the placeholder ``v0.0.0`` and maps them to ``./staging`` with ``replace`` lines,
which Go ignores outside the main module. ``kube/go.mod`` is therefore a wrapper module that
requires ``k8s.io/kubernetes`` and replaces every staging module with its ``v0.X.Y`` tag (the
list was derived from the real go.mod, ``go mod download -json k8s.io/kubernetes@v1.X.Y``).
etcd sits in its own module (``etcd/go.mod``) because Kubernetes 1.37 pulls etcd 3.7 by
minimal version selection and we want the 3.6 server.

The binaries land in ``<cache>/<k8s-version>-<etcd-version>/``. ``<cache>`` is
``$SPACEGATE_CONTROLPLANE_CACHE`` if set, else ``$XDG_CACHE_HOME/spacegate/controlplane`` (or
``~/.cache/spacegate/controlplane``). A cold build on 2 cores takes minutes, so:

- the fast path (everything present and built from the same go.mod/go.sum) never runs ``go``;
- a file lock serialises concurrent builders (two pytest runs, ``make`` and an IDE), and the
  one that waited re-checks before building;
- each binary is built into a temporary directory beside the target and renamed into place,
  so a killed build never leaves a truncated binary that the fast path would trust;
- a stamp file records a hash of the module files and build flags; a mismatch rebuilds.

Moving to another patch release N (from ``kube/``; for a new minor, also check that
``go.mod``'s header comment still holds)::

    gomod=$(go mod download -json k8s.io/kubernetes@v1.37.N | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    for m in $(grep -oE '^\s*k8s\.io/\S+ => \./staging/' "$gomod" | awk '{print $1}'); do
        go mod edit -replace="$m=$m@v0.37.N"
    done
    go mod edit -require=k8s.io/kubernetes@v1.37.N && go mod tidy

and ``go mod edit -require=go.etcd.io/etcd/server/v3@v3.6.M && go mod tidy`` in ``etcd/``.
The cache key changes with the pins, so the next run builds the new binaries.

Go is ``$SPACEGATE_GO`` if set, else ``go`` on PATH, else ``/usr/local/go/bin/go``. Run
``python -m tests.support.controlplane.build`` to build and print the directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The wrapper modules keep the names they were given under tests/e2e
# (``spacegate.local/e2e/controlplane/{kube,etcd}``): go.mod lines are part of the stamp's
# digest, so renaming them would throw away every cached build for nothing.
KUBE_MODULE = HERE / "kube"
ETCD_MODULE = HERE / "etcd"

ETCD = "etcd"
KUBE_APISERVER = "kube-apiserver"
KUBE_CONTROLLER_MANAGER = "kube-controller-manager"
BINARIES = (ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER)

KUBE_PACKAGES = {
    KUBE_APISERVER: "k8s.io/kubernetes/cmd/kube-apiserver",
    KUBE_CONTROLLER_MANAGER: "k8s.io/kubernetes/cmd/kube-controller-manager",
}
ETCD_PACKAGE = "go.etcd.io/etcd/server/v3"

# Where Go lives when it is not on PATH (the official tarball's location).
GO_FALLBACKS = (Path("/usr/local/go/bin/go"),)
GO_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
STAMP = ".build-info.json"
# Two parallel compiles: the target machines have 2 cores, and each compile of the big
# Kubernetes packages takes over 1 GB of memory.
PARALLELISM = "2"

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """The control-plane binaries could not be built; the message says why and what to do."""


class GoNotFoundError(BuildError):
    """No ``go`` command: neither on PATH nor at the usual install location."""


class GoTooOldError(BuildError):
    """The ``go`` found is older than the ``go`` line of the wrapper modules."""


@dataclass(frozen=True)
class Pins:
    """The versions the wrapper modules pin, read from their go.mod files (the only source)."""

    kubernetes: str
    etcd: str
    go: str

    @property
    def key(self) -> str:
        """The cache directory name: ``<k8s-version>-<etcd-version>``."""
        return f"{self.kubernetes}-{self.etcd}"


def go_install_hint() -> str:
    """How to get a new enough Go, with the download command for this machine."""
    minimum = read_pins().go
    system = platform.system().lower()
    arch = GO_ARCHES.get(platform.machine().lower(), platform.machine().lower())
    return (
        f"Install Go {minimum} or newer from https://go.dev/dl/ (for example: curl -sSL "
        f"https://go.dev/dl/go{minimum}.{system}-{arch}.tar.gz | tar -C /usr/local -xz) "
        "and put /usr/local/go/bin on PATH (or point SPACEGATE_GO at it), "
        "or set SPACEGATE_SKIP_E2E=1 to skip the e2e tests."
    )


def _require_line(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def _go_line(go_mod: Path) -> str:
    match = re.search(r"^go\s+(\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise BuildError(f"{go_mod} has no go line")
    return match.group(1)


def read_pins() -> Pins:
    """The pinned Kubernetes and etcd versions, and the newest ``go`` line of both modules."""
    kube_mod, etcd_mod = KUBE_MODULE / "go.mod", ETCD_MODULE / "go.mod"
    go = max(_go_line(kube_mod), _go_line(etcd_mod), key=_version_tuple)
    return Pins(
        kubernetes=_require_line(kube_mod, "k8s.io/kubernetes"),
        etcd=_require_line(etcd_mod, ETCD_PACKAGE),
        go=go,
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    """``go1.26.8``, ``1.26.0`` or ``1.26rc1`` as comparable numbers (pre-releases count low)."""
    numbers = re.match(r"(?:go)?(\d+(?:\.\d+)*)", version)
    if numbers is None:
        return (0,)
    parts = tuple(int(p) for p in numbers.group(1).split("."))
    return parts + (0,) * (3 - len(parts))


def _kube_ldflags(pins: Pins) -> str:
    """Strip symbols and stamp the version the way hack/lib/version.sh does.

    Without the ``-X`` flags, ``/version`` and ``--version`` say ``v0.0.0-master+$Format:%H$``,
    which hides from a test which Kubernetes it is talking to.
    """
    major, minor = pins.kubernetes.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s",
            "-w",
            f"-X {pkg}.gitVersion={pins.kubernetes}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


def _build_commands(pins: Pins, go: Path, out: Path) -> dict[tuple[str, ...], list[str]]:
    """Which go build produces which binaries (the kube build makes two at once)."""
    kube = [
        str(go),
        "build",
        "-mod=readonly",
        "-trimpath",
        "-tags=selinux,notest",
        f"-p={PARALLELISM}",
        f"-ldflags={_kube_ldflags(pins)}",
        f"-o={out}{os.sep}",
        *KUBE_PACKAGES.values(),
    ]
    etcd = [
        str(go),
        "build",
        "-mod=readonly",
        "-trimpath",
        f"-p={PARALLELISM}",
        "-ldflags=-s -w",
        f"-o={out / ETCD}",
        ETCD_PACKAGE,
    ]
    return {(KUBE_APISERVER, KUBE_CONTROLLER_MANAGER): kube, (ETCD,): etcd}


def cache_root() -> Path:
    """Where per-version binary directories live (see the module docstring for overrides)."""
    override = os.environ.get("SPACEGATE_CONTROLPLANE_CACHE")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spacegate" / "controlplane"


def binaries_dir(pins: Pins | None = None) -> Path:
    """The directory :func:`ensure_binaries` fills for the current pins."""
    return cache_root() / (pins or read_pins()).key


def _inputs_digest(pins: Pins) -> str:
    """A hash of everything that decides the bytes of the binaries, for the stamp file.

    Comments in go.mod are left out, so documenting a pin does not cost a rebuild.
    """
    digest = hashlib.sha256()
    for module in (KUBE_MODULE, ETCD_MODULE):
        go_mod = (module / "go.mod").read_text().splitlines()
        digest.update(
            "\n".join(filter(None, (line.split("//")[0].strip() for line in go_mod))).encode()
        )
        digest.update((module / "go.sum").read_bytes())
    digest.update(_kube_ldflags(pins).encode())
    return digest.hexdigest()


def _is_complete(directory: Path, digest: str) -> bool:
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("inputs") == digest and all(
        os.access(directory / name, os.X_OK) for name in BINARIES
    )


def find_go(search_path: str | None = None, fallbacks: Sequence[Path] = GO_FALLBACKS) -> Path:
    """``$SPACEGATE_GO`` if set, else ``go`` on PATH (or ``search_path``), else a usual place."""
    chosen = os.environ.get("SPACEGATE_GO")
    if chosen:
        if os.access(chosen, os.X_OK):
            return Path(chosen)
        raise GoNotFoundError(
            "Cannot build the e2e control plane (etcd, kube-apiserver, kube-controller-manager): "
            f"SPACEGATE_GO={chosen} is not an executable `go` command. {go_install_hint()}"
        )
    found = shutil.which("go", path=search_path)
    if found:
        return Path(found)
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    places = ", ".join(str(p) for p in fallbacks) or "no other place"
    raise GoNotFoundError(
        "Cannot build the e2e control plane (etcd, kube-apiserver, kube-controller-manager): "
        f"no `go` command on PATH or at {places}. {go_install_hint()}"
    )


def check_go(go: Path, minimum: str) -> str:
    """The toolchain version of ``go``; raises :class:`GoTooOldError` below ``minimum``.

    ``GOTOOLCHAIN=local`` stops an old go from silently downloading a newer toolchain: the
    build should use what the developer installed, or say clearly that it is too old.
    """
    try:
        result = subprocess.run(
            [str(go), "env", "GOVERSION"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GoNotFoundError(f"`{go} env GOVERSION` failed ({exc}). {go_install_hint()}") from exc
    version = result.stdout.strip()
    if _version_tuple(version) < _version_tuple(minimum):
        raise GoTooOldError(
            f"{go} is {version or 'of unknown version'}, but building the e2e control plane "
            f"needs go {minimum} or newer (the go line of {KUBE_MODULE}/go.mod and "
            f"{ETCD_MODULE}/go.mod). {go_install_hint()}"
        )
    return version


@contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another build holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run_build(argv: list[str], cwd: Path, progress: Progress) -> None:
    progress(f"$ (cd {cwd} && {' '.join(argv)})")
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    started = time.monotonic()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"`go build` in {cwd} failed with exit code {result.returncode}:\n"
            f"{_tail(result.stdout + result.stderr)}"
        )
    progress(f"built in {time.monotonic() - started:.0f}s")


def _stderr_progress(message: str) -> None:
    print(f"[controlplane build] {message}", file=sys.stderr, flush=True)


def ensure_binaries(progress: Progress | None = None) -> Path:
    """A directory holding ``etcd``, ``kube-apiserver`` and ``kube-controller-manager``.

    Builds whatever is missing (or stale) first; see the module docstring. Raises
    :class:`GoNotFoundError`/:class:`GoTooOldError` when it must build but cannot, and
    :class:`BuildError` when the build itself fails.
    """
    report = progress or _stderr_progress
    pins = read_pins()
    digest = _inputs_digest(pins)
    target = binaries_dir(pins)
    if _is_complete(target, digest):
        return target

    go = find_go()
    go_version = check_go(go, pins.go)
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{pins.key}.lock", report):
        if _is_complete(target, digest):  # another process built it while we waited
            return target
        missing = _missing_binaries(target, digest)
        target.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{pins.key}-", dir=root) as scratch:
            out = Path(scratch)
            for names, argv in _build_commands(pins, go, out).items():
                if not set(names) & missing:
                    continue
                module = ETCD_MODULE if names == (ETCD,) else KUBE_MODULE
                report(
                    f"building {', '.join(names)} with {go_version} (minutes if Go's build cache is cold)"
                )
                _run_build(argv, module, report)
                for name in names:
                    os.replace(out / name, target / name)
            stamp = out / STAMP
            stamp.write_text(
                json.dumps(
                    {
                        "inputs": digest,
                        "kubernetes": pins.kubernetes,
                        "etcd": pins.etcd,
                        "go": go_version,
                    },
                    indent=2,
                )
                + "\n"
            )
            os.replace(stamp, target / STAMP)
    return target


def _missing_binaries(target: Path, digest: str) -> set[str]:
    """What to (re)build: every binary unless the stamp says the rest came from these inputs."""
    try:
        stamp = json.loads((target / STAMP).read_text())
    except (OSError, ValueError):
        return set(BINARIES)
    if stamp.get("inputs") != digest:
        return set(BINARIES)
    return {name for name in BINARIES if not os.access(target / name, os.X_OK)}


def main() -> int:
    """Print the binaries directory, building first if needed; exit 1 with the reason if not."""
    try:
        directory = ensure_binaries()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
