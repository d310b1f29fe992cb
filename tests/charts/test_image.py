"""The Dockerfile builds the image the chart expects to run.

There is no container engine in the test environment, so these are static checks of the
Dockerfile and .dockerignore against the chart and the project: the things that would break
a `docker build` or a pod start (a missing build input, a user the pod's securityContext
refuses, arguments that differ from the chart's) rather than style.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.charts.chartlib import Rendered

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    """One FROM ... stage: its base, name and instructions (keyword, argument text)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [text for kw, text in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of the Dockerfile."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=alias))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def _dockerignored(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *(str(p) for p in Path(path).parents if str(p) != ".")]
        if any(
            fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.removeprefix("**/"))
            for c in candidates
        ):
            ignored = not negate
    return ignored


def test_final_image_is_slim_python_311_built_in_a_separate_stage() -> None:
    _, stages = _stages()
    assert len(stages) == 2
    build, final = stages
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", stage.base)
    assert build.name == "build"
    assert any("pip install ." in run for run in build.args("RUN"))
    assert final.args("COPY") == ["--from=build /opt/spacegate /opt/spacegate"]


def test_final_stage_installs_no_build_tools() -> None:
    _, (_, final) = _stages()
    for run in final.args("RUN"):
        assert not re.search(r"apt-get|apk |gcc|build-essential|pip install", run), run


def test_image_runs_as_the_numeric_non_root_user_the_chart_expects(default: Rendered) -> None:
    _, (_, final) = _stages()
    (user,) = final.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), "runAsNonRoot can only verify a numeric USER"
    assert int(uid) != 0
    pod = default.pod_spec["securityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_entrypoint_and_default_arguments_match_the_charts_container(default: Rendered) -> None:
    _, (_, final) = _stages()
    (entrypoint,) = final.args("ENTRYPOINT")
    (cmd,) = final.args("CMD")
    assert json.loads(entrypoint) == default.container["command"] == ["spacegate", "serve"]
    assert json.loads(cmd) == default.container["args"]


@pytest.mark.parametrize("source", ["pyproject.toml", "README.md", "policy", "webhook", "certs"])
def test_every_build_input_exists_and_is_in_the_build_context(source: str) -> None:
    _, (build, _) = _stages()
    copied = [part for copy in build.args("COPY") for part in copy.split()[:-1]]
    assert source in copied
    assert (ROOT / source).exists(), f"{source} is missing from the repository"
    assert not _dockerignored(source)


def test_build_context_includes_every_package_pyproject_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    _, (build, _) = _stages()
    copied = {part for copy in build.args("COPY") for part in copy.split()[:-1]}
    assert {p.rstrip("*") for p in packages} <= copied
    assert project["project"]["readme"] in copied


@pytest.mark.parametrize(
    "path", [".dev-certs/tls.key", ".git/config", ".venv/bin/python", "tests/__init__.py"]
)
def test_build_context_leaves_out_keys_history_and_local_environments(path: str) -> None:
    assert _dockerignored(path)
