"""The README's console examples are what the commands really print."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO
from webhook.cli import main

README = (REPO / "README.md").read_text(encoding="utf-8")

# ```console blocks: "$ spacegate ..." lines, each followed by its output up to the next "$ ".
_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for block in _BLOCK.findall(README):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            if command.startswith("spacegate ") and not command.rstrip().endswith("\\"):
                found.append((command, output.rstrip("\n")))
    return found


EXAMPLES = _examples()


def test_the_readme_has_offline_command_examples() -> None:
    assert {c.split()[1] for c, _ in EXAMPLES} >= {"check", "explain", "images"}


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_a_readme_example_prints_what_the_readme_shows(
    command: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    main(shlex.split(command)[1:])
    printed = capsys.readouterr().out.rstrip("\n")
    assert printed == expected
