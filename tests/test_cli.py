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


def test_usage_errors_exit_2_and_errors_exit_1_in_one_line():
    """Exit codes as the README states them: 2 for a usage error (argparse), 1 for an error, one line each --
    also through `python -m unmask.cli`, whose commands raise the importable module's CommandError."""
    run = [sys.executable, "-m", "unmask.cli"]
    usage = subprocess.run(run + ["detect"], capture_output=True, text=True)
    assert usage.returncode == 2 and "the following arguments are required: inputs" in usage.stderr
    bad_opt = subprocess.run(run + ["evaluate", "--data", "x", "--no-such-option"], capture_output=True, text=True)
    assert bad_opt.returncode == 2 and "unrecognized arguments: --no-such-option" in bad_opt.stderr
    err = subprocess.run(run + ["detect", "/nonexistent/clip.mp4", "--untrained", "--backbone", "resnet18",
                                "--pretrained", "none", "--quiet"], capture_output=True, text=True)
    assert err.returncode == 1 and "Traceback" not in err.stderr
    assert err.stderr.strip().splitlines()[-1].startswith("unmask detect: error: nothing could be scored (clip.mp4: ")
