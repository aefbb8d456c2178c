"""``unmask reproduce`` beyond one process: torchrun (one or more nodes), slurm (sbatch scripts), ``--collect``.

The plan (:mod:`unmask.reproduce.plan`) already holds each row's exact ``unmask train`` and ``unmask protocol``
argument lists; a launcher only decides *where* they run, and leaves the scheduling to existing engines:

- ``torchrun``: each row that still needs training runs as ``torchrun --nproc_per_node N ... -m unmask.cli train
  ...`` (``--standalone`` on one node; ``--nnodes/--node-rank/--master-addr/--master-port`` are passed through for
  several nodes, one ``unmask reproduce`` per node, every node running the same rows in the same order).
  ``unmask train`` is DDP-aware (``unmask.train.distributed``: gloo on CPU, NCCL on CUDA; only rank 0 writes),
  and it resumes from ``last.pt``, so a row killed half-way finishes when the command is run again. Evaluation
  is single-process and stays with the command's local path (node rank 0 only).
- ``slurm``: one sbatch script per job into ``<slurm dir>`` (default ``<study out>/slurm``): ``prepare`` of each
  ``--prepare NAME=...`` store as a job array over ``--shard i/n`` (``unmask prepare`` shards and resumes), one
  training job per row (torchrun inside, several nodes through ``srun``), one evaluation job per row and a final
  ``--collect`` job; ``submit.sh`` submits them in order with ``--dependency=afterok`` (prepare -> train -> eval;
  ``afterany`` for collect, which must also report failed rows). Nothing is submitted unless ``--submit`` is
  given and ``sbatch`` is on PATH: the commands are printed, to be read and run where slurm is.
- ``--collect``: which rows are finished (trained to their last epoch, every protocol's ``table.json`` written),
  which are not and why (the last error line of the row's newest slurm log when there is one); the command then
  writes the study table from the run directories as they are.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from unmask.errors import UnmaskError

LAUNCHERS = ("local", "torchrun", "slurm")
DEFAULT_MASTER_PORT = 29500  # torchrun's own default


@dataclass
class LaunchOptions:
    """Everything ``--launcher`` and its options say; built by :func:`options_from_args`."""

    launcher: str = "local"
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    torchrun_args: list[str] = field(default_factory=list)
    # slurm
    slurm_dir: Path | None = None
    partition: str | None = None
    cpu_partition: str | None = None  # prepare and collect jobs (no GPU); default: partition
    account: str | None = None
    time: str | None = None  # training jobs; eval/prepare/collect get the cluster's default unless eval_time
    eval_time: str | None = None
    gpus_per_node: int | None = None  # default: nproc_per_node (a CPU cluster: 0)
    cpus_per_task: int | None = None
    mem: str | None = None
    sbatch_lines: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)  # shell lines before the command (module load ..., source ...)
    prepare: list[tuple[str, list[str]]] = field(default_factory=list)  # (--data NAME, prepare args)
    shards: int = 8
    submit: bool = False


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--launcher`` options of ``unmask reproduce`` (one argument group)."""
    g = parser.add_argument_group(
        "launchers (beyond one process)",
        "--launcher torchrun trains each row with torchrun (--nproc-per-node processes per node, DDP); "
        "--launcher slurm writes sbatch scripts (prepare job arrays, one training and one evaluation job per row, "
        "a collect job) and a submit.sh that chains them with --dependency=afterok, prints the sbatch commands and "
        "submits nothing unless --submit; --collect builds the table from the run directories and names the rows "
        "that are not finished.")
    g.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="where rows train: local (this process, default), torchrun, slurm")
    g.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="processes (GPUs) per node for torchrun and slurm training jobs (default 1); batch_size "
                        "in a config is per process")
    g.add_argument("--nnodes", type=int, default=1, metavar="N", help="nodes per training run (default 1)")
    g.add_argument("--node-rank", type=int, default=None, metavar="I",
                   help="torchrun, several nodes: this node's rank (run the same command on every node)")
    g.add_argument("--master-addr", default=None, metavar="HOST", help="torchrun: node 0's address (several nodes)")
    g.add_argument("--master-port", type=int, default=None, metavar="PORT",
                   help=f"torchrun: node 0's port (default {DEFAULT_MASTER_PORT} with --master-addr)")
    g.add_argument("--torchrun-args", default="", metavar='"ARGS"',
                   help='more torchrun options, one quoted string, e.g. "--max-restarts 2"')
    g.add_argument("--slurm-dir", default=None, metavar="DIR",
                   help="where the sbatch scripts, submit.sh and logs go (default <out>/slurm, beside the table)")
    g.add_argument("--slurm-partition", default=None, metavar="NAME", help="#SBATCH --partition of GPU jobs")
    g.add_argument("--slurm-cpu-partition", default=None, metavar="NAME",
                   help="partition of the prepare and collect jobs (no GPU; default: --slurm-partition)")
    g.add_argument("--slurm-account", default=None, metavar="NAME", help="#SBATCH --account")
    g.add_argument("--slurm-time", default=None, metavar="D-HH:MM:SS", help="#SBATCH --time of training jobs")
    g.add_argument("--slurm-eval-time", default=None, metavar="D-HH:MM:SS", help="#SBATCH --time of eval jobs")
    g.add_argument("--slurm-gpus", type=int, default=None, metavar="N",
                   help="GPUs per node of a training job (default --nproc-per-node; 0 on a CPU cluster)")
    g.add_argument("--slurm-cpus-per-task", type=int, default=None, metavar="N", help="#SBATCH --cpus-per-task")
    g.add_argument("--slurm-mem", default=None, metavar="SIZE", help="#SBATCH --mem, e.g. 64G")
    g.add_argument("--slurm-line", action="append", default=[], metavar='"OPTION"',
                   help='another #SBATCH option for every job, e.g. qos=high or constraint=a100 (written as '
                        '"#SBATCH --qos=high"; the leading -- may be given as --slurm-line=--qos=high); repeatable')
    g.add_argument("--slurm-setup", action="append", default=[], metavar='"SHELL LINE"',
                   help='a shell line every job runs first, e.g. "module load cuda/12.4" (repeatable)')
    g.add_argument("--prepare", action="append", default=[], metavar='NAME="DATASET ROOT [OPTIONS]"',
                   help='slurm: prepare the --data NAME store first, as a job array of `unmask prepare DATASET ROOT '
                        'OPTIONS --out STORE --shard i/n`, e.g. train="ffpp /data/FF++ --compression c23 --frames 8 '
                        '--split train,val" (repeatable)')
    g.add_argument("--shards", type=int, default=8, metavar="N", help="slurm: tasks of each prepare job array (default 8)")
    g.add_argument("--submit", action="store_true", help="slurm: run submit.sh (needs sbatch on PATH)")
    g.add_argument("--collect", action="store_true",
                   help="train and evaluate nothing: build the table from the run directories as they are and name "
                        "the rows that are not finished (exit 1 while any is missing)")


def _split(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise UnmaskError(f"{what}: cannot split {text!r} ({exc})") from None


def options_from_args(args: argparse.Namespace) -> LaunchOptions:
    """Check the launcher options together (one-line errors) and gather them."""
    o = LaunchOptions(
        launcher=getattr(args, "launcher", "local") or "local",
        nproc_per_node=getattr(args, "nproc_per_node", 1) or 1, nnodes=getattr(args, "nnodes", 1) or 1,
        node_rank=getattr(args, "node_rank", None), master_addr=getattr(args, "master_addr", None),
        master_port=getattr(args, "master_port", None),
        torchrun_args=_split(getattr(args, "torchrun_args", ""), "--torchrun-args"),
        slurm_dir=Path(args.slurm_dir) if getattr(args, "slurm_dir", None) else None,
        partition=getattr(args, "slurm_partition", None), cpu_partition=getattr(args, "slurm_cpu_partition", None),
        account=getattr(args, "slurm_account", None), time=getattr(args, "slurm_time", None),
        eval_time=getattr(args, "slurm_eval_time", None), gpus_per_node=getattr(args, "slurm_gpus", None),
        cpus_per_task=getattr(args, "slurm_cpus_per_task", None), mem=getattr(args, "slurm_mem", None),
        sbatch_lines=list(getattr(args, "slurm_line", []) or []), setup=list(getattr(args, "slurm_setup", []) or []),
        shards=getattr(args, "shards", 8) or 8, submit=bool(getattr(args, "submit", False)),
    )
    for spec in getattr(args, "prepare", []) or []:
        name, sep, rest = spec.partition("=")
        words = _split(rest, "--prepare")
        if not sep or not name or len(words) < 2:
            raise UnmaskError(f'--prepare needs NAME="DATASET ROOT [OPTIONS]", got {spec!r}')
        bad = [w for w in words if w in ("--out", "--shard") or w.startswith(("--out=", "--shard="))]
        if bad:
            raise UnmaskError(f"--prepare {name}: leave out {bad[0].split('=')[0]} (the store is --data {name}'s, "
                              f"the shard is the array task's)")
        o.prepare.append((name, words))
    if o.nproc_per_node < 1 or o.nnodes < 1:
        raise UnmaskError("--nproc-per-node and --nnodes must be at least 1")
    if o.shards < 1:
        raise UnmaskError("--shards must be at least 1")
    if o.gpus_per_node is not None and o.gpus_per_node < 0:
        raise UnmaskError("--slurm-gpus must be 0 or more")
    if o.launcher == "torchrun" and o.nnodes > 1:
        if o.node_rank is None or not o.master_addr:
            raise UnmaskError("--launcher torchrun --nnodes N (N > 1) needs --node-rank and --master-addr "
                              "(run the same command on every node, each with its own --node-rank)")
    if o.node_rank is not None and not 0 <= o.node_rank < o.nnodes:
        raise UnmaskError(f"--node-rank {o.node_rank} is not in 0..{o.nnodes - 1} (--nnodes {o.nnodes})")
    if o.launcher == "local" and (o.nproc_per_node > 1 or o.nnodes > 1 or o.torchrun_args):
        raise UnmaskError("--nproc-per-node / --nnodes / --torchrun-args need --launcher torchrun or slurm "
                          "(the local launcher trains in this one process)")
    slurm_only = [flag for flag, v in (("--prepare", o.prepare), ("--submit", o.submit), ("--slurm-dir", o.slurm_dir))
                  if v]
    if slurm_only and o.launcher != "slurm":
        raise UnmaskError(f"{slurm_only[0]} belongs to --launcher slurm")
    return o


# ---- commands ------------------------------------------------------------------------------------------------

def python_exe() -> str:
    return sys.executable or "python"


def torchrun_exe() -> list[str]:
    """``torchrun`` beside this interpreter (the same environment), else ``python -m torch.distributed.run``."""
    exe = Path(python_exe())
    cand = exe.parent / "torchrun"
    return [str(cand)] if cand.is_file() else [str(exe), "-m", "torch.distributed.run"]


def torchrun_options(o: LaunchOptions) -> list[str]:
    """torchrun's own options for a run on this machine (one node: --standalone; several: static rendezvous)."""
    out = ["--nproc_per_node", str(o.nproc_per_node)]
    if o.nnodes > 1 or o.master_addr or o.master_port:
        out += ["--nnodes", str(o.nnodes), "--node_rank", str(o.node_rank or 0),
                "--master_addr", o.master_addr or "127.0.0.1", "--master_port", str(o.master_port or DEFAULT_MASTER_PORT)]
    else:
        out += ["--standalone"]  # a free port of its own: two studies on one machine do not collide
    return out + list(o.torchrun_args)


def train_command(train_argv: Sequence[str], o: LaunchOptions) -> list[str]:
    """The full command line that trains one row here: ``python -m unmask.cli train ...`` or torchrun's."""
    if o.launcher == "torchrun":
        return [*torchrun_exe(), *torchrun_options(o), "-m", "unmask.cli", *train_argv]
    return [python_exe(), "-m", "unmask.cli", *train_argv]


def _needs_training(rr: Any) -> bool:
    return bool(rr.train_argv) and rr.status != "done"


def run_torchrun(plan: Sequence[Any], o: LaunchOptions, echo: Callable[[str], None] = print) -> dict[str, int]:
    """Train every row of ``plan`` that needs it with torchrun, one row after another: row id -> exit code.

    Rows sharing a run directory train once. A row that fails does not stop the others (as the local path);
    its run directory resumes when the command is run again.
    """
    seen: set[Path] = set()
    codes: dict[str, int] = {}
    for rr in plan:
        if not _needs_training(rr) or Path(rr.run_dir) in seen:
            continue
        seen.add(Path(rr.run_dir))
        cmd = train_command(rr.train_argv, o)
        echo(f"[{rr.row_id}] {shlex.join(cmd)}")
        codes[rr.row_id] = subprocess.run(cmd).returncode
        if codes[rr.row_id] != 0:
            echo(f"[{rr.row_id}] torchrun exited {codes[rr.row_id]}; rerun the same command to resume the row")
    return codes


# ---- slurm ---------------------------------------------------------------------------------------------------

@dataclass
class SlurmJob:
    """One sbatch script and what it waits for (names of other jobs: shell variables in submit.sh)."""

    name: str  # shell-variable-safe, unique: prepare_train, train_row1, eval_row1, collect
    script: Path
    after_ok: list[str] = field(default_factory=list)
    after_any: list[str] = field(default_factory=list)


@dataclass
class SlurmBundle:
    directory: Path
    jobs: list[SlurmJob]
    submit_script: Path

    def sbatch_commands(self) -> list[str]:
        return [line for line in self.submit_script.read_text().splitlines() if "sbatch" in line
                and not line.lstrip().startswith("#")]


def _var(prefix: str, ident: str, taken: set[str]) -> str:
    base = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', ident)}"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def _sbatch_header(job_name: str, log: str, o: LaunchOptions, *, gpus: int, nodes: int = 1, time: str | None = None,
                   partition: str | None = None, array: str | None = None) -> list[str]:
    # sbatch reads #SBATCH values with its own quoting rules: double quotes keep a path with spaces whole
    lines = [f"#SBATCH --job-name={job_name}", f'#SBATCH --output="{log}"' if " " in log else f"#SBATCH --output={log}"]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    if o.account:
        lines.append(f"#SBATCH --account={o.account}")
    if time:
        lines.append(f"#SBATCH --time={time}")
    lines += [f"#SBATCH --nodes={nodes}", "#SBATCH --ntasks-per-node=1"]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-node={gpus}")
    if o.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={o.cpus_per_task}")
    if o.mem:
        lines.append(f"#SBATCH --mem={o.mem}")
    if array:
        lines.append(f"#SBATCH --array={array}")
    for extra in o.sbatch_lines:
        extra = extra.strip()
        if not extra.startswith(("#SBATCH", "-")):
            extra = f"--{extra}"
        lines.append(extra if extra.startswith("#SBATCH") else f"#SBATCH {extra}")
    return lines


def _script(title: str, header: list[str], body: list[str], o: LaunchOptions, workdir: Path) -> str:
    """A bash sbatch script: the environment unmask reproduce ran in (its interpreter's bin first), then ``body``."""
    lines = ["#!/bin/bash", f"# {title}", "# written by unmask reproduce --launcher slurm; submit with submit.sh",
             *header, "set -euo pipefail", f"cd {shlex.quote(str(workdir))}",
             f'export PATH={shlex.quote(str(Path(python_exe()).parent))}:"$PATH"', "export PYTHONUNBUFFERED=1",
             *o.setup, *body, ""]
    return "\n".join(lines)


def _slurm_train_body(train_argv: Sequence[str], o: LaunchOptions) -> list[str]:
    """``python -m unmask.cli train`` (1 process), torchrun --standalone (1 node), or srun + torchrun (c10d)."""
    tr = "torchrun" if (Path(python_exe()).parent / "torchrun").is_file() else "python -m torch.distributed.run"
    unmask_train = shlex.join(["-m", "unmask.cli", *train_argv])
    if o.nnodes > 1:
        port = o.master_port or DEFAULT_MASTER_PORT
        opts = shlex.join(["--nnodes", str(o.nnodes), "--nproc_per_node", str(o.nproc_per_node),
                           "--rdzv_backend", "c10d", *o.torchrun_args])
        return ['head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
                f'srun --nodes={o.nnodes} --ntasks-per-node=1 {tr} {opts} --rdzv_id "$SLURM_JOB_ID" '
                f'--rdzv_endpoint "$head:{port}" {unmask_train}']
    if o.nproc_per_node > 1:
        return [f"{tr} {shlex.join(['--standalone', '--nproc_per_node', str(o.nproc_per_node), *o.torchrun_args])} "
                f"{unmask_train}"]
    return [f"python {unmask_train}"]


def _eval_sets(eval_argv: Sequence[Sequence[str]]) -> set[str]:
    """Test-set names an evaluation reads (``--set NAME=PATH``): its prepare jobs must finish first."""
    names = set()
    for argv in eval_argv:
        for a, b in zip(argv, list(argv[1:])):
            if a == "--set" and "=" in b:
                names.add(b.split("=", 1)[0])
    return names


def write_slurm(plan: Sequence[Any], o: LaunchOptions, *, study: str, data: dict[str, str], directory: Path,
                collect_argv: Sequence[str], train_data: dict[str, str] | None = None,
                workdir: Path | None = None) -> SlurmBundle:
    """Write the sbatch scripts and submit.sh for ``plan`` into ``directory``; nothing is submitted.

    ``data``: --data NAME -> store (prepare jobs write there); ``train_data``: row id -> the --data NAME its training
    reads (its train job waits for that prepare); ``collect_argv``: the ``unmask reproduce ... --collect`` argv
    (without the executable) the last job runs.
    """
    from unmask.io import atomic_write_text

    directory = Path(directory)
    logs = directory.resolve() / "logs"  # absolute: sbatch resolves --output from where it is called (submit.sh cd's)
    logs.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir or Path.cwd()).resolve()
    gpus = o.nproc_per_node if o.gpus_per_node is None else o.gpus_per_node
    cpu_part = o.cpu_partition or o.partition
    taken: set[str] = set()
    jobs: list[SlurmJob] = []

    def write(name: str, title: str, header: list[str], body: list[str]) -> Path:
        path = directory / f"{name}.sbatch"
        atomic_write_text(path, _script(title, header, body, o, workdir))
        path.chmod(0o755)
        return path

    prep_jobs: dict[str, str] = {}
    for name, words in o.prepare:
        if name not in data:
            raise UnmaskError(f"--prepare {name}: no --data {name}=STORE says where its store goes")
        var = _var("prepare", name, taken)
        n = o.shards
        argv = ["-m", "unmask.cli", "prepare", *words, "--out", str(data[name]), "--no-progress"]
        body = [f'python {shlex.join(argv)} --shard "${{SLURM_ARRAY_TASK_ID}}/{n}" '
                f'--workers "${{SLURM_CPUS_PER_TASK:-1}}"']
        header = _sbatch_header(f"unmask-{study}-{var}", str(logs / "%x-%A_%a.out"), o, gpus=0,
                                partition=cpu_part, array=f"0-{n - 1}")
        jobs.append(SlurmJob(var, write(var, f"unmask reproduce {study}: prepare --data {name} ({n} shards)",
                                        header, body)))
        prep_jobs[name] = var

    train_jobs: dict[Path, str] = {}
    for rr in plan:
        if not _needs_training(rr) or Path(rr.run_dir) in train_jobs:
            continue
        var = _var("train", rr.row_id, taken)
        header = _sbatch_header(f"unmask-{study}-{var}", str(logs / "%x-%j.out"), o, gpus=gpus, nodes=o.nnodes,
                                time=o.time, partition=o.partition)
        dname = (train_data or {}).get(rr.row_id)
        after = [prep_jobs[dname]] if dname in prep_jobs else []
        jobs.append(SlurmJob(var, write(var, f"unmask reproduce {study}: train row {rr.row_id} ({rr.label})", header,
                                        _slurm_train_body(rr.train_argv, o)), after_ok=after))
        train_jobs[Path(rr.run_dir)] = var

    eval_vars: list[str] = []
    for rr in plan:
        if not rr.eval_argv or (rr.status == "done" and _evaluated(rr)):
            continue
        var = _var("eval", rr.row_id, taken)
        header = _sbatch_header(f"unmask-{study}-{var}", str(logs / "%x-%j.out"), o, gpus=1 if gpus else 0,
                                time=o.eval_time, partition=o.partition)
        body = [f"python {shlex.join(['-m', 'unmask.cli', *argv])}" for argv in rr.eval_argv]
        after = [train_jobs[Path(rr.run_dir)]] if Path(rr.run_dir) in train_jobs else []
        after += [prep_jobs[s] for s in sorted(_eval_sets(rr.eval_argv)) if s in prep_jobs]
        jobs.append(SlurmJob(var, write(var, f"unmask reproduce {study}: evaluate row {rr.row_id} ({rr.label})",
                                        header, body), after_ok=after))
        eval_vars.append(var)

    var = _var("collect", "table", taken)
    header = _sbatch_header(f"unmask-{study}-collect", str(logs / "%x-%j.out"), o, gpus=0, partition=cpu_part)
    jobs.append(SlurmJob(var, write(var, f"unmask reproduce {study}: the table, when the jobs above have ended", header,
                                    [f"python {shlex.join(['-m', 'unmask.cli', *collect_argv])}"]),
                         after_any=[j.name for j in jobs if j.name.startswith(("train_", "eval_"))]))

    submit = directory / "submit.sh"
    lines = ["#!/bin/bash", f"# Submit unmask reproduce {study}'s jobs in dependency order: prepare (job arrays) -> "
             "train -> eval (afterok), then collect (afterany: it reports failed rows too).",
             "set -euo pipefail", 'cd "$(dirname "$0")"',
             'jid() { local out; out=$(sbatch --parsable "$@"); echo "${out%%;*}"; }  # "id;cluster" -> id']
    for job in jobs:
        dep = []
        if job.after_ok:
            dep.append("afterok:" + ":".join(f"${v}" for v in job.after_ok))
        if job.after_any:
            dep.append("afterany:" + ":".join(f"${v}" for v in job.after_any))
        dep_opt = f"--dependency={','.join(dep)} " if dep else ""
        lines.append(f"{job.name}=$(jid {dep_opt}{shlex.quote(job.script.name)})")
        lines.append(f'echo "{job.name} ${job.name}"')
    atomic_write_text(submit, "\n".join(lines) + "\n")
    submit.chmod(0o755)
    return SlurmBundle(directory, jobs, submit)


def submit(bundle: SlurmBundle) -> int:
    """Run submit.sh when sbatch is on PATH; a one-line error otherwise."""
    if shutil.which("sbatch") is None:
        raise UnmaskError(f"--submit: sbatch is not on PATH (not a slurm login node?); the scripts are written: "
                          f"bash {shlex.quote(str(bundle.submit_script))} where sbatch is")
    return subprocess.run(["bash", str(bundle.submit_script)]).returncode


# ---- collect -------------------------------------------------------------------------------------------------

@dataclass
class RowState:
    row_id: str
    label: str
    state: str  # done | not trained | training | not evaluated
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.state == "done"


def _evaluated(rr: Any) -> bool:
    dirs = list(getattr(rr, "eval_dirs", []) or [])
    return bool(dirs) and all((Path(d) / "table.json").is_file() for d in dirs)


def _last_error(slurm_dir: Path | None, study: str, row_id: str) -> str:
    """The last line naming an error in the row's newest train / eval slurm log ('' when none)."""
    if slurm_dir is None or not (Path(slurm_dir) / "logs").is_dir():
        return ""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", row_id)
    logs = [p for kind in ("train", "eval") for p in (Path(slurm_dir) / "logs").glob(f"unmask-{study}-{kind}_{safe}-*.out")]
    for log in sorted(logs, key=lambda p: p.stat().st_mtime, reverse=True):
        tail = log.read_text(errors="replace").splitlines()[-200:]
        for line in reversed(tail):
            if re.search(r"error|CANCELLED|Traceback|Killed|TIME LIMIT", line, re.IGNORECASE):
                return f"{log.name}: {line.strip()[:200]}"
    return ""


def collect_states(plan: Sequence[Any], study: str = "", slurm_dir: Path | None = None) -> list[RowState]:
    """Where each row of ``plan`` stands, read from its run directory (and slurm logs for the reason)."""
    out = []
    for rr in plan:
        status, missing = rr.status, [Path(d).name for d in getattr(rr, "eval_dirs", []) or []
                                      if not (Path(d) / "table.json").is_file()]
        if status == "missing":
            st, detail = "not trained", "no run yet"
        elif status != "done":
            st, detail = "training", f"{rr.done_epochs} of {rr.epochs} epochs"
        elif missing:
            st, detail = "not evaluated", "no table.json for " + ", ".join(missing)
        else:
            st, detail = "done", ""
        if st != "done":
            why = _last_error(slurm_dir, study, rr.uses or rr.row_id) if st != "not evaluated" else \
                _last_error(slurm_dir, study, rr.row_id)
            if why:
                detail += f"; failed? {why}"
        out.append(RowState(rr.row_id, rr.label, st, detail))
    return out


def format_states(states: Sequence[RowState]) -> str:
    lines = [f"{s.row_id:<12} {s.state:<14} {s.label}" + (f"  ({s.detail})" if s.detail else "") for s in states]
    todo = [s.row_id for s in states if not s.done]
    lines.append(f"{len(states) - len(todo)} of {len(states)} rows done" +
                 (f"; not finished: {', '.join(todo)}" if todo else ""))
    return "\n".join(lines)


# ---- the command's hook --------------------------------------------------------------------------------------

def collect_argv(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """``reproduce STUDY --data ... --runs ... [--rows ...] --out OUT --collect``: what the collect job runs."""
    argv = ["reproduce", str(args.study)]
    for item in getattr(args, "data", []) or []:
        argv += ["--data", item]
    argv += ["--runs", str(args.runs)]
    if getattr(args, "rows", None):
        argv += ["--rows", args.rows]
    return argv + ["--out", str(out_dir), "--collect"]


def launch(study: Any, plan: list[Any], args: argparse.Namespace, out_dir: str | Path,
           replan: Callable[[], list[Any]]) -> int | None:
    """``unmask reproduce``'s --launcher / --collect; None when the command's own local path should run.

    - ``--collect``: the table from the run directories as they are (nothing trained or evaluated) and each
      unfinished row with its reason; exit 0 when every row is done, 1 otherwise.
    - ``torchrun``: trains the rows with torchrun, then (node rank 0) evaluates them here and writes the table.
    - ``slurm``: writes the scripts, prints the sbatch commands, submits only with ``--submit``.
    """
    from unmask.reproduce.runner import collect_report, report_markdown, run_study
    from unmask.reproduce.study import study_names

    o = options_from_args(args)
    out_dir = Path(out_dir)
    slurm_dir = o.slurm_dir or out_dir / "slurm"
    if getattr(args, "collect", False):
        report = collect_report(study, plan, out_dir)
        print(report_markdown(report), end="")
        print(f"wrote {out_dir}/table.md, table.csv, table.json, table.png")
        states = collect_states(plan, study.name, slurm_dir)
        print(format_states(states))
        return 0 if all(s.done for s in states) else 1
    if o.launcher == "local":
        return None
    if getattr(args, "no_train", False):  # --no-train: evaluate what is trained, train nothing (no train jobs)
        import dataclasses

        plan = [dataclasses.replace(rr, train_argv=[]) for rr in plan]
    if o.launcher == "slurm":
        if study.name not in study_names() and study.path is not None:
            args.study = str(Path(study.path).resolve())  # a study file given by path: the collect job finds it
        data = dict(item.split("=", 1) for item in getattr(args, "data", []) or [] if "=" in item)
        bundle = write_slurm(plan, o, study=study.name, data=data, directory=slurm_dir,
                             collect_argv=collect_argv(args, out_dir),
                             train_data={rr.row_id: study.row(rr.row_id).data or study.train_data for rr in plan})
        print(f"wrote {len(bundle.jobs)} sbatch scripts and submit.sh to {slurm_dir}:")
        for job in bundle.jobs:
            deps = [f"afterok {', '.join(job.after_ok)}"] * bool(job.after_ok) + \
                   [f"afterany {', '.join(job.after_any)}"] * bool(job.after_any)
            print(f"  {job.script.name:<28} {'; '.join(deps)}")
        print("submit them in order (each job waits for the ones it needs):")
        print(f"  bash {shlex.quote(str(bundle.submit_script))}    # runs:")
        for line in bundle.sbatch_commands()[1:]:
            print(f"    {line}")
        if not o.submit:
            print("nothing submitted (--submit runs submit.sh where sbatch is on PATH); when the jobs have ended, "
                  "the collect job writes the table, or run: unmask " + shlex.join(collect_argv(args, out_dir)))
            return 0
        return submit(bundle)
    codes = run_torchrun(plan, o, echo=lambda m: print(m, file=sys.stderr, flush=True))
    failed_train = sorted(r for r, c in codes.items() if c != 0)
    if (o.node_rank or 0) != 0:
        print(f"unmask reproduce: node {o.node_rank}: training done; node 0 evaluates and writes the table")
        return 1 if failed_train else 0
    report = run_study(study, replan(), out_dir, train=False)  # a failed row shows its status (partial / missing)
    print(report_markdown(report), end="")
    print(f"wrote {out_dir}/table.md, table.csv, table.json, table.png")
    failed = [r for r in report["rows"] if r["error"]]
    if failed:
        print(f"{len(failed)} of {len(report['rows'])} rows failed or are incomplete (reasons above)", file=sys.stderr)
    if failed_train:
        print(f"training failed for {', '.join(failed_train)} (torchrun's exit codes above); rerun to resume",
              file=sys.stderr)
        return 1
    return 0 if len(failed) < len(report["rows"]) else 1
