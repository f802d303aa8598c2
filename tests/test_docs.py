"""The README stays true: every command it names exists, and its first commands are the ones CI runs."""

from __future__ import annotations

import argparse
import pathlib
import re

from relengine.cli import build_parser

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.add(prefix + name)
                found |= _commands(sub, prefix + name + " ")
    return found


def test_every_command_in_the_readme_exists() -> None:
    commands = _commands(build_parser())
    named = set(re.findall(r"relengine ((?:schema )?[a-z][a-z-]+)", README))
    named = {n for n in named if not n.startswith(("validate schemas", "serve --"))}
    unknown = {n for n in named if n not in commands and n.split(" ")[0] not in commands}
    assert not unknown, f"README names commands the CLI lacks: {sorted(unknown)}"
    for command in commands:
        assert f"relengine {command}" in README, f"`relengine {command}` is not in the README"


def test_readme_opens_with_the_install_and_test_commands_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    first = [line for line in blocks[0].splitlines() if line and not line.startswith("#")]
    install_and_run, test = first
    assert install_and_run.startswith("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'")
    assert "relengine serve --data-dir" in install_and_run and "--schema schemas/" in install_and_run
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'" in ci
    assert ci.strip().splitlines()[-1] == test
