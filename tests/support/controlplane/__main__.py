"""Run the e2e control plane by hand: ``python -m tests.support.controlplane --kubeconfig FILE``.

Useful to poke at the same apiserver the tests use (``kubectl``, the webhook under a
debugger). It builds the binaries if needed, starts etcd, kube-apiserver and
kube-controller-manager on 127.0.0.1, copies the admin kubeconfig to FILE, prints one ready
line and runs until Ctrl-C or SIGTERM, then stops all three. It exits non-zero if one of them
dies on its own, naming it and showing the tail of its log.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from tests.support.controlplane.build import BuildError, ensure_binaries
from tests.support.controlplane.plane import ControlPlane, ControlPlaneError


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.controlplane", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        required=True,
        help="where to write the admin kubeconfig (overwritten)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep certificates, etcd data and logs after stopping",
    )
    return parser.parse_args(argv)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM takes the same path as Ctrl-C, so the ``with`` block stops everything."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start, announce, wait for a signal or a dead process, stop."""
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        binaries = ensure_binaries()
        with ControlPlane(binaries, keep_workdir=args.keep_workdir or None) as plane:
            target = args.kubeconfig.resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plane.kubeconfig, target)
            target.chmod(0o600)
            print(
                f"control plane ready in {plane.timings['total']:.1f}s: {plane.server} "
                f"(logs in {plane.workdir}); export KUBECONFIG={target}",
                flush=True,
            )
            while True:
                dead = plane.dead_process()
                if dead is not None:
                    print(f"error: {dead}", file=sys.stderr)
                    return 1
                time.sleep(1)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    except (BuildError, ControlPlaneError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
