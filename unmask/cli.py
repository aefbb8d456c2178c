"""The ``unmask`` command line.

Each subcommand lives in ``unmask/commands/<name>.py`` and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only for the command that
runs, so ``unmask --help`` is instant and one command's heavy imports (torch, dlib) never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module under unmask.commands, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the main job on the embedded default face (no dataset needed)"),
    "prepare": ("prepare", "turn a benchmark's videos into face crops + landmarks (sharded, resumable)"),
    "inspect": ("inspect", "render prepared frames with boxes and landmarks to a PNG"),
    "synth": ("synth", "gallery of pseudo-fakes (real | mask | fake) for a synthesis recipe"),
    "train": ("train", "train a detector with one of the registered methods from a YAML config"),
    "evaluate": ("evaluate", "score a checkpoint on prepared data: metrics, tables, ROC"),
    "calibrate": ("calibrate", "fit a run's temperature (calibrated probabilities) on its validation set"),
    "protocol": ("protocol", "run a paper's evaluation protocol (cross-dataset, cross-manipulation, robustness)"),
    "detect": ("detect", "fake probability (and heat maps) for your own images and videos"),
    "serve": ("serve", "REST API and a web page for detection (FastAPI; 127.0.0.1 by default)"),
    "export": ("export", "export a checkpoint to ONNX and check it against torch"),
    "probe": ("probe", "sensitivity to shallow feature statistics (paper 003 Tables II-III): metrics + t-SNE"),
    "reproduce": ("reproduce", "a paper's table from a study file: train missing rows, evaluate, ours vs the paper"),
    "prle-maps": ("prle_maps", "paper 001 PRLE: a model zoo's Grad-CAM map per stored face (cached) + gallery"),
}


EXIT_CODES = """exit codes:
  0    success (every command); detect: every file read and at least one scored; prepare: at least one item of
       the shard has a face (or the shard is empty); evaluate: the metrics were computed
  1    an error (one line: unmask <command>: error: ...); detect: a file could not be read, or nothing was
       scored; prepare: no item of the shard succeeded; evaluate: nothing could be evaluated
  2    a usage error (unknown command or option, missing argument)
  130  interrupted (Ctrl-C); prepare and train resume when rerun"""


class CommandError(Exception):
    """An expected failure a command reports as one line (bad input, missing file)."""


def _top_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="unmask",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="unmask: generalizable face-forgery (deepfake) detection.",
        epilog=f"commands:\n{lines}\n\nRun `unmask <command> --help` for a command's options.\n\n{EXIT_CODES}",
        usage="unmask [-h] [--version] <command> [options]",
    )


def build_parser(name: str):
    """(command module, its argparse parser) for command ``name`` (also used by the docs' command-line test)."""
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(f"unmask.commands.{module_name}")
    parser = argparse.ArgumentParser(
        prog=f"unmask {name}",
        description=(module.__doc__ or help_).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    return module, parser


def parse_command(parser: argparse.ArgumentParser, rest: list[str]) -> argparse.Namespace:
    """Parse a command's arguments; a usage error exits 2 (argparse)."""
    try:  # lets `key=value` overrides stand anywhere, also after options
        return parser.parse_intermixed_args(rest)
    except TypeError:  # parsers argparse cannot intermix (e.g. with REMAINDER)
        return parser.parse_args(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    top.add_argument("--version", action="store_true", help="print the version and exit")
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        from unmask import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.print_usage(sys.stderr)
        print(f"unmask: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, parser = build_parser(name)
    args = parse_command(parser, rest)
    from unmask.errors import UnmaskError

    try:
        return int(module.run(args) or 0)
    except (CommandError, UnmaskError) as exc:
        print(f"unmask {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"unmask {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    # `python -m unmask.cli` (and torchrun -m) runs this file as __main__, a second copy of the module: run the
    # importable one, or the commands' `unmask.cli.CommandError` would not be this copy's and escape as a traceback.
    from unmask.cli import main as _main

    sys.exit(_main())
