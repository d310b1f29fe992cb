"""The README's console examples are what the commands really print."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO
from webhook.cli.main import main

README = (REPO / "README.md").read_text(encoding="utf-8")

# ```console blocks: "$ spacegate ..." lines, each followed by its output up to the next "$ ".
_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str, int | None]]:
    """(command, its output, the exit code an ``echo $?`` right after it shows, if any)."""
    found: list[tuple[str, str, int | None]] = []
    for block in _BLOCK.findall(README):
        chunks = re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]
        for i, chunk in enumerate(chunks):
            command, _, output = chunk.partition("\n")
            if command.startswith("spacegate ") and not command.rstrip().endswith("\\"):
                code = None
                if i + 1 < len(chunks) and chunks[i + 1].startswith("echo $?"):
                    code = int(chunks[i + 1].partition("\n")[2].strip())
                found.append((command, output.rstrip("\n"), code))
    return found


EXAMPLES = _examples()


def test_the_readme_has_offline_command_examples() -> None:
    assert {c.split()[1] for c, _, _ in EXAMPLES} >= {"check", "explain", "images"}
    assert any(code is not None for _, _, code in EXAMPLES)


@pytest.mark.parametrize(("command", "expected", "code"), EXAMPLES, ids=[c for c, _, _ in EXAMPLES])
def test_a_readme_example_prints_what_the_readme_shows(
    command: str,
    expected: str,
    code: int | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    status = main(shlex.split(command)[1:])
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed == expected
    if code is not None:
        assert status == code
