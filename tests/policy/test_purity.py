"""policy/ stays pure: no I/O, network, Kubernetes libraries, environment or clock.

The import-linter contract in pyproject.toml guards imports between packages, and its list of
forbidden modules is the one list: this test reads it, checks every module's imports against it
(import-linter cannot name ``urllib.request``), also catches built-in escapes (``open()``,
``eval()``), and imports every policy module in a fresh interpreter to prove that no
non-standard forbidden module is pulled in indirectly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "policy"


def _contract_forbidden_modules() -> set[str]:
    """The forbidden modules of the import-linter contract on ``policy``: the one list."""
    with (REPO / "pyproject.toml").open("rb") as f:
        contracts = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c.get("source_modules") == ["policy"]]
    return set(contract["forbidden_modules"])


# import-linter cannot name submodules of external packages; urllib.parse is pure, urllib.request
# is not, so it is added here.
FORBIDDEN_MODULES = _contract_forbidden_modules() | {"urllib.request"}
FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


def _modules() -> list[Path]:
    return sorted(POLICY.rglob("*.py"))


def _module_name(path: Path) -> str:
    """``policy/config/parse.py`` → ``policy.config.parse``; a package's ``__init__`` → it."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(POLICY)))
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


HEAVY = tuple(
    sorted(m for m in FORBIDDEN_MODULES if "." not in m and m not in sys.stdlib_module_names)
)


def test_importing_policy_loads_no_network_or_kubernetes_library() -> None:
    modules = ", ".join(_module_name(p) for p in _modules())
    code = (
        "import sys\n"
        f"import {modules}\n"
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
