"""Every `unmask ...` command line shown in a command's --help and in README.md / docs/*.md parses with the real
argparse parser of that command, and every config file it names exists (a stale example is a defect)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from unmask.cli import COMMANDS, build_parser, parse_command

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _command_lines(text: str, fenced_only: bool) -> list[str]:
    """`unmask <command> ...` lines: inside ``` blocks (docs) or anywhere (help texts); comments and `\\` joins
    handled; `torchrun ... -m unmask.cli <command>` counts as `unmask <command>`."""
    out, in_block, pending = [], False, ""
    for raw in text.splitlines():
        if raw.strip().startswith("```"):
            in_block = not in_block
            continue
        if fenced_only and not in_block:
            continue
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        line = re.sub(r"^\$\s+", "", line)
        m = re.search(r"(?:^|\s)(?:unmask|-m unmask\.cli)\s+([a-z]+)\b(.*)$", line)
        if m and (line.startswith("unmask ") or "-m unmask.cli" in line) and m.group(1) in COMMANDS:
            out.append(f"unmask {m.group(1)}{m.group(2)}")
    return out


def _strip_comment(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars="")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        found += [(doc.name, line) for line in _command_lines(doc.read_text(encoding="utf-8"), fenced_only=True)]
    for name in COMMANDS:
        _, parser = build_parser(name)
        found += [(f"unmask {name} --help", line) for line in _command_lines(parser.format_help(), fenced_only=False)]
    return found


EXAMPLES = _examples()


def test_the_docs_and_help_texts_show_command_lines():
    where = {w for w, _ in EXAMPLES}
    assert "README.md" in where and "datasets.md" in where and "unmask train --help" in where
    assert len(EXAMPLES) > 30


@pytest.mark.parametrize("where,line", EXAMPLES, ids=[f"{w}: {l[:70]}" for w, l in EXAMPLES])
def test_every_shown_command_line_parses(where, line):
    tokens = _strip_comment(line)
    name, rest = tokens[1], tokens[2:]
    rest = [t for t in rest if t not in ("...",)]
    _, parser = build_parser(name)
    try:
        parse_command(parser, rest)
    except SystemExit as exc:  # argparse: a usage error
        pytest.fail(f"{where}: `{line}` does not parse (exit {exc.code})")
    for tok in tokens:
        value = tok.split("=", 1)[-1]
        if value.startswith("configs/"):
            assert (REPO / value).is_file(), f"{where}: `{line}` names {value}, which does not exist"
