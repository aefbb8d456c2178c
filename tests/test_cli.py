"""The CLI dispatcher: help lists every command, unknown commands fail cleanly."""

import subprocess
import sys

from unmask.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "unmask.cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().count(".") == 2


import pytest  # noqa: E402


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_working_help(name, capsys):
    """Each registered command imports and explains itself (a broken import or parser fails here)."""
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: unmask {name}") and len(out.splitlines()) > 3
