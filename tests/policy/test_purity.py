"""policy/ stays pure: no I/O, network, Kubernetes libraries, environment or clock.

The import-linter contract in pyproject.toml guards imports between packages; this test
also catches standard-library escapes (``os.environ``, ``open()``, ``time.time()``) and
runs the import in a fresh interpreter to prove nothing heavy is pulled in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[2] / "policy"
FORBIDDEN_MODULES = {
    "httpx",
    "kubernetes",
    "starlette",
    "uvicorn",
    "cachetools",
    "cryptography",
    "socket",
    "subprocess",
    "requests",
    "urllib.request",
    "http",
    "asyncio",
    "threading",
    "os",
    "time",
    "datetime",
    "random",
    "secrets",
    "webhook",
    "certs",
    "prometheus_client",
    "pathlib",
    "io",
    "shutil",
    "tempfile",
    "signal",
}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


def _modules() -> list[Path]:
    return sorted(POLICY.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_policy_modules_import_nothing_that_does_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert name not in FORBIDDEN_MODULES and top not in FORBIDDEN_MODULES, (
                f"{path.name}:{getattr(node, 'lineno', 0)} imports {name}"
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_CALLS, (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )


HEAVY = (
    "httpx",
    "kubernetes",
    "starlette",
    "uvicorn",
    "cryptography",
    "prometheus_client",
    "webhook",
    "certs",
    "requests",
    "cachetools",
)


def test_importing_policy_loads_no_network_or_kubernetes_library() -> None:
    code = (
        "import sys\n"
        "import policy.config, policy.decision, policy.reference, policy.snapshot, policy.workload\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
