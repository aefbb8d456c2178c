"""unmask reproduce's launchers: the sbatch scripts they write (read and run for real where slurm is not needed),
the option checks, --collect's row states, and a real 2-process torchrun (gloo) training of a study row."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unmask.errors import UnmaskError
from unmask.reproduce import launchers as L
from unmask.reproduce.plan import make_plan
from unmask.reproduce.study import load_study

REPO = Path(__file__).resolve().parents[1]


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    L.add_launcher_arguments(p)
    return p.parse_args(list(argv))


def _script_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _command(path: Path, start: str) -> list[str]:
    """The script's one line that starts with ``start``, split as bash would (variables stay as written)."""
    lines = [ln for ln in _script_lines(path) if ln.startswith(start)]
    assert len(lines) == 1, (start, _script_lines(path))
    return shlex.split(lines[0])


@pytest.fixture()
def spaced(tmp_path) -> dict[str, Path]:
    """Store and runs paths with spaces (and a quote) in them: the scripts must quote them."""
    base = tmp_path / "my data" / "it's here"
    return {"train": base / "ffpp c40", "FF++": base / "ffpp c40 test", "runs": tmp_path / "my runs"}


def _plan(spaced):
    study = load_study("tiny_demo")
    data = {"train": str(spaced["train"]), "FF++": str(spaced["FF++"])}
    return study, data, make_plan(study, data, spaced["runs"])


def test_slurm_scripts_content(tmp_path, spaced):
    study, data, plan = _plan(spaced)
    opts = L.options_from_args(_args(
        "--launcher", "slurm", "--nproc-per-node", "4", "--slurm-partition", "gpu", "--slurm-cpu-partition", "cpu",
        "--slurm-account", "proj42", "--slurm-time", "2-00:00:00", "--slurm-line=--qos=high", "--slurm-line", "constraint=a100",
        "--slurm-setup", "module load cuda/12.4", "--shards", "3",
        "--prepare", "train=ffpp '/data/FF++ raw' --compression c40 --frames 8 --split train,val",
        "--prepare", "FF++=ffpp '/data/FF++ raw' --compression c40 --frames 32 --split test"))
    out = tmp_path / "slurm dir"
    bundle = L.write_slurm(plan, opts, study=study.name, data=data, directory=out,
                           collect_argv=["reproduce", "tiny_demo", "--collect"],
                           train_data={rr.row_id: "train" for rr in plan}, workdir=tmp_path)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == ["collect_table.sbatch", "eval_bbmg_nrs.sbatch", "eval_sbi.sbatch", "prepare_FF__.sbatch",
                     "prepare_train.sbatch",
                     "submit.sh", "train_bbmg_nrs.sbatch", "train_sbi.sbatch"]
    for p in out.glob("*.sbatch"):
        lines = _script_lines(p)
        assert lines[0] == "#!/bin/bash"
        assert "set -euo pipefail" in lines and "module load cuda/12.4" in lines
        assert "#SBATCH --account=proj42" in lines and "#SBATCH --qos=high" in lines
        assert "#SBATCH --constraint=a100" in lines
        assert shlex.split(next(ln for ln in lines if ln.startswith("cd ")))[1] == str(tmp_path)
        assert os.access(p, os.X_OK)
        assert subprocess.run(["bash", "-n", str(p)]).returncode == 0  # bash parses it

    prep = out / "prepare_train.sbatch"
    lines = _script_lines(prep)
    assert "#SBATCH --array=0-2" in lines and "#SBATCH --partition=cpu" in lines
    assert not any("gpus" in ln for ln in lines)
    logs = out / "logs"
    assert f'#SBATCH --output="{logs}/%x-%A_%a.out"' in lines  # sbatch's quoting: the space stays
    assert _command(prep, "python ") == [
        "python", "-m", "unmask.cli", "prepare", "ffpp", "/data/FF++ raw", "--compression", "c40", "--frames", "8",
        "--split", "train,val", "--out", str(spaced["train"]), "--no-progress",
        "--shard", "${SLURM_ARRAY_TASK_ID}/3", "--workers", "${SLURM_CPUS_PER_TASK:-1}"]

    for rr in plan:
        train = out / f"train_{rr.row_id}.sbatch"
        lines = _script_lines(train)
        assert "#SBATCH --gpus-per-node=4" in lines and "#SBATCH --time=2-00:00:00" in lines
        assert "#SBATCH --partition=gpu" in lines and "#SBATCH --nodes=1" in lines
        assert f"#SBATCH --job-name=unmask-tiny_demo-train_{rr.row_id}" in lines
        cmd = _command(train, "torchrun ")
        assert cmd == ["torchrun", "--standalone", "--nproc_per_node", "4", "-m", "unmask.cli", *rr.train_argv]
        assert cmd[cmd.index("--out") + 1] == str(rr.run_dir) and " " in str(rr.run_dir)
        ev = out / f"eval_{rr.row_id}.sbatch"
        assert "#SBATCH --gpus-per-node=1" in _script_lines(ev)
        assert _command(ev, "python ") == ["python", "-m", "unmask.cli", *rr.eval_argv[0]]
    assert _command(out / "collect_table.sbatch", "python ") == [
        "python", "-m", "unmask.cli", "reproduce", "tiny_demo", "--collect"]

    # the dependency chain, as submit.sh writes it
    sub = bundle.submit_script.read_text()
    assert "prepare_train=$(jid prepare_train.sbatch)" in sub
    assert "train_sbi=$(jid --dependency=afterok:$prepare_train train_sbi.sbatch)" in sub
    assert "prepare_FF__=$(jid prepare_FF__.sbatch)" in sub
    assert "eval_sbi=$(jid --dependency=afterok:$train_sbi:$prepare_FF__ eval_sbi.sbatch)" in sub
    assert ("collect_table=$(jid --dependency=afterany:$train_sbi:$train_bbmg_nrs:$eval_sbi:$eval_bbmg_nrs "
            "collect_table.sbatch)") in sub
    assert len(bundle.sbatch_commands()) == 8  # the jid helper + 7 jobs


def test_submit_sh_chains_job_ids(tmp_path, spaced, monkeypatch):
    """Run submit.sh with bash for real; ``sbatch`` is a stand-in script on PATH (no slurm here) that records its
    arguments and answers ``--parsable`` the way sbatch does (``id;cluster``)."""
    study, data, plan = _plan(spaced)
    opts = L.options_from_args(_args("--launcher", "slurm", "--prepare", "train=ffpp /data/ffpp", "--submit"))
    bundle = L.write_slurm(plan, opts, study=study.name, data=data, directory=tmp_path / "s",
                           collect_argv=["reproduce", "tiny_demo", "--collect"],
                           train_data={rr.row_id: "train" for rr in plan})
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UnmaskError, match="sbatch is not on PATH"):
        L.submit(bundle)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "sbatch.log"
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\n"
        f'n=$(( $(wc -l < "{log}" 2>/dev/null || echo 0) + 100 ))\n'
        f'echo "$n $*" >> "{log}"\n'
        'echo "$n;cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert L.submit(bundle) == 0
    calls = {line.split()[-1]: line.split()[:-1] for line in log.read_text().splitlines()}
    ids = {script: words[0] for script, words in calls.items()}
    assert calls["prepare_train.sbatch"] == [ids["prepare_train.sbatch"], "--parsable"]
    assert calls["train_sbi.sbatch"][1:] == ["--parsable", f"--dependency=afterok:{ids['prepare_train.sbatch']}"]
    assert calls["eval_bbmg_nrs.sbatch"][2] == f"--dependency=afterok:{ids['train_bbmg_nrs.sbatch']}"
    want = ":".join(ids[f"{k}.sbatch"] for k in ("train_sbi", "train_bbmg_nrs", "eval_sbi", "eval_bbmg_nrs"))
    assert calls["collect_table.sbatch"][2] == f"--dependency=afterany:{want}"


def test_slurm_multi_node_and_single_process(tmp_path, spaced, monkeypatch):
    study, data, plan = _plan(spaced)
    monkeypatch.chdir(tmp_path)
    rel = L.options_from_args(_args("--launcher", "slurm"))
    L.write_slurm(plan, rel, study=study.name, data=data, directory=Path("rel") / "slurm", collect_argv=["reproduce"])
    # sbatch resolves --output from where it is called (submit.sh cd's into the folder): the log path is absolute
    assert f"#SBATCH --output={tmp_path / 'rel' / 'slurm' / 'logs'}/%x-%j.out" in \
        _script_lines(tmp_path / "rel" / "slurm" / "train_sbi.sbatch")
    opts = L.options_from_args(_args("--launcher", "slurm", "--nproc-per-node", "8", "--nnodes", "2",
                                     "--master-port", "29600", "--torchrun-args", "--max-restarts 1"))
    L.write_slurm(plan, opts, study=study.name, data=data, directory=tmp_path / "m", collect_argv=["reproduce"])
    train = tmp_path / "m" / "train_sbi.sbatch"
    lines = _script_lines(train)
    assert "#SBATCH --nodes=2" in lines and "#SBATCH --gpus-per-node=8" in lines
    assert 'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in lines
    cmd = _command(train, "srun ")
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "torchrun"]
    assert cmd[4:cmd.index("-m")] == ["--nnodes", "2", "--nproc_per_node", "8", "--rdzv_backend", "c10d",
                                      "--max-restarts", "1", "--rdzv_id", "$SLURM_JOB_ID",
                                      "--rdzv_endpoint", "$head:29600"]
    assert cmd[cmd.index("-m"):] == ["-m", "unmask.cli", *plan[0].train_argv]
    assert not (tmp_path / "m" / "prepare_train.sbatch").exists()  # no --prepare: the stores exist

    one = L.options_from_args(_args("--launcher", "slurm", "--slurm-gpus", "0"))
    L.write_slurm(plan, one, study=study.name, data=data, directory=tmp_path / "c", collect_argv=["reproduce"])
    t = tmp_path / "c" / "train_sbi.sbatch"
    assert _command(t, "python ") == ["python", "-m", "unmask.cli", *plan[0].train_argv]
    assert not any("gpus" in ln for ln in _script_lines(t) + _script_lines(tmp_path / "c" / "eval_sbi.sbatch"))


@pytest.mark.slow
def test_prepare_array_script_runs_for_real(tmp_path, ffpp_root):
    """The prepare job array's script, run by bash once per array task (as slurm would), fills one store."""
    store = tmp_path / "store with space"
    opts = L.options_from_args(_args("--launcher", "slurm", "--shards", "2", "--prepare",
                                     f"train=ffpp {shlex.quote(str(ffpp_root))} --compression c40 --frames 1 "
                                     "--split val --methods real"))
    L.write_slurm([], opts, study="t", data={"train": str(store)}, directory=tmp_path / "s",
                  collect_argv=["reproduce"], workdir=REPO)
    env = {**os.environ, "SLURM_CPUS_PER_TASK": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for task in (0, 1):
        proc = subprocess.run(["bash", str(tmp_path / "s" / "prepare_train.sbatch")], capture_output=True, text=True,
                              env={**env, "SLURM_ARRAY_TASK_ID": str(task)}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"shard {task}/2" in proc.stdout
    from unmask.data.store import PreparedStore

    items = PreparedStore(store).items()
    assert len(items) == 4  # the sample's 4 val originals, split over the two shards


def test_option_errors():
    with pytest.raises(UnmaskError, match="needs --node-rank and --master-addr"):
        L.options_from_args(_args("--launcher", "torchrun", "--nnodes", "2"))
    with pytest.raises(UnmaskError, match="not in 0..1"):
        L.options_from_args(_args("--launcher", "torchrun", "--nnodes", "2", "--node-rank", "2",
                                  "--master-addr", "n0"))
    with pytest.raises(UnmaskError, match="need --launcher torchrun or slurm"):
        L.options_from_args(_args("--nproc-per-node", "4"))
    with pytest.raises(UnmaskError, match="belongs to --launcher slurm"):
        L.options_from_args(_args("--launcher", "torchrun", "--submit"))
    with pytest.raises(UnmaskError, match='--prepare needs NAME="DATASET ROOT'):
        L.options_from_args(_args("--launcher", "slurm", "--prepare", "ffpp /data"))
    with pytest.raises(UnmaskError, match="leave out --shard"):
        L.options_from_args(_args("--launcher", "slurm", "--prepare", "train=ffpp /data --shard 1/2"))
    with pytest.raises(UnmaskError, match="cannot split"):
        L.options_from_args(_args("--launcher", "torchrun", "--torchrun-args", "--x 'open"))
    with pytest.raises(UnmaskError, match="no --data test="):
        L.write_slurm([], L.options_from_args(_args("--launcher", "slurm", "--prepare", "test=ffpp /d")),
                      study="s", data={}, directory=Path("/tmp/unused-launchers"), collect_argv=[])


def test_torchrun_options():
    one = L.options_from_args(_args("--launcher", "torchrun", "--nproc-per-node", "2"))
    cmd = L.train_command(["train", "--config", "c.yaml"], one)
    assert cmd[cmd.index("--nproc_per_node"):] == ["--nproc_per_node", "2", "--standalone", "-m", "unmask.cli",
                                                   "train", "--config", "c.yaml"]
    multi = L.options_from_args(_args("--launcher", "torchrun", "--nproc-per-node", "8", "--nnodes", "2",
                                      "--node-rank", "1", "--master-addr", "node0", "--torchrun-args", "--max-restarts 3"))
    assert L.torchrun_options(multi) == ["--nproc_per_node", "8", "--nnodes", "2", "--node_rank", "1", "--master_addr",
                                         "node0", "--master_port", "29500", "--max-restarts", "3"]
    local = L.options_from_args(_args())
    assert L.train_command(["train"], local) == [sys.executable, "-m", "unmask.cli", "train"]


def test_collect_states_name_missing_rows_and_their_errors(tmp_path, spaced):
    study, data, plan = _plan(spaced)
    logs = tmp_path / "s" / "logs"
    logs.mkdir(parents=True)
    (logs / "unmask-tiny_demo-train_sbi-123.out").write_text(
        "epoch 1/2 ...\nunmask train: error: data.store: /x is not a prepared store\n")
    states = L.collect_states(plan, study.name, tmp_path / "s")
    assert [s.state for s in states] == ["not trained", "not trained"]
    assert "unmask train: error: data.store" in states[0].detail and "failed?" not in states[1].detail
    text = L.format_states(states)
    assert text.splitlines()[-1] == "0 of 2 rows done; not finished: sbi, bbmg_nrs"


# ---- the torchrun path, really: 2 CPU processes, gloo ------------------------------------------------------------

# Test-only sitecustomize (on PYTHONPATH of the torchrun workers): every file a worker creates for writing is
# logged, one line at a time (a SIGKILLed worker keeps what it logged), to UNMASK_TEST_WRITE_LOG/rank<R>-<pid>.txt.
# tempfile.mkstemp (unmask.io's atomic writes) and open() for writing raise audit events (PEP 578).
_WRITE_SPY = '''
import os, sys
_dir = os.environ.get("UNMASK_TEST_WRITE_LOG")
if _dir and "RANK" in os.environ:
    _fh = open(os.path.join(_dir, "rank%s-%d.txt" % (os.environ["RANK"], os.getpid())), "w", buffering=1)
    _fh.write("world %s\\n" % os.environ.get("WORLD_SIZE"))
    _W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
    def _hook(event, args):
        if event == "tempfile.mkstemp":
            _fh.write("write %s\\n" % args[0])
        elif event == "open" and isinstance(args[0], str):
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & _W):
                _fh.write("write %s\\n" % args[0])
    sys.addaudithook(_hook)
'''


def _spy_writes(log_dir: Path) -> dict[int, list[list[str]]]:
    """rank -> one list of written paths per worker process."""
    out: dict[int, list[list[str]]] = {}
    for f in sorted(log_dir.glob("rank*.txt")):
        rank = int(f.name[4:].split("-")[0])
        lines = f.read_text().splitlines()
        assert lines[0] == "world 2"
        out.setdefault(rank, []).append([ln[6:] for ln in lines[1:] if ln.startswith("write ")])
    return out


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_resume_and_load(tmp_path, prepared_ffpp, monkeypatch, capfd):
    study_file = tmp_path / "two_proc.yaml"
    study_file.write_text(
        "name: two_proc\npaper: '000'\ntable: tiny torchrun check\n"
        "protocols: [{protocol: cross_dataset, only: [FF++], splits: [val], frames: 2, n_boot: 20}]\nrows:\n"
        "  - id: sbi\n    config: tiny/sbi.yaml\n    paper: {FF++: 99.0}\n"
        "    overrides: {epochs: 2, steps_per_epoch: 2, batch_size: 2, model.input_size: 64, model.pretrained: null,"
        " run.save_every_steps: null, run.tensorboard: false, run.progress: false}\n")
    study = load_study(study_file)
    runs = tmp_path / "runs"
    plan = make_plan(study, {"train": str(prepared_ffpp)}, runs)
    assert plan[0].status == "missing"
    opts = L.options_from_args(_args("--launcher", "torchrun", "--nproc-per-node", "2"))
    spy_dir, spy_logs = tmp_path / "spy", tmp_path / "spylogs"
    spy_dir.mkdir()
    spy_logs.mkdir()
    (spy_dir / "sitecustomize.py").write_text(_WRITE_SPY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(spy_dir), str(REPO)]))
    monkeypatch.setenv("UNMASK_TEST_WRITE_LOG", str(spy_logs))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    # 1) killed right after global step 3 (epoch 2 of 2, its first step): torchrun fails, last.pt = end of epoch 1
    monkeypatch.setenv("UNMASK_KILL_AFTER_STEP", "3")
    assert L.run_torchrun(plan, opts, echo=lambda s: None)["sbi"] != 0
    run_dir = plan[0].run_dir
    plan = make_plan(study, {"train": str(prepared_ffpp)}, runs)
    assert plan[0].status == "partial" and plan[0].done_epochs == 1
    monkeypatch.delenv("UNMASK_KILL_AFTER_STEP")
    for f in spy_logs.iterdir():
        f.unlink()
    capfd.readouterr()

    # 2) `unmask reproduce --launcher torchrun`: resumes the row at epoch 2 with torchrun, finishes it, evaluates
    from unmask.cli import main

    data_args = ["--data", f"train={prepared_ffpp}", "--data", f"FF++={prepared_ffpp}", "--runs", str(runs)]
    assert main(["reproduce", str(study_file), *data_args, "--launcher", "torchrun", "--nproc-per-node", "2"]) == 0
    out = capfd.readouterr().out
    assert "resuming" in out and "at epoch 2" in out
    summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert summary["steps"] == 4

    writes = _spy_writes(spy_logs)
    assert sorted(writes) == [0, 1] and all(len(v) == 1 for v in writes.values())  # both ranks ran, once each
    rd = str(run_dir.resolve())
    mine = [p for p in writes[0][0] if os.path.realpath(p).startswith(rd)]
    assert any(Path(p).name.startswith(".last.pt.") for p in mine)  # rank 0 wrote the checkpoint (atomically)
    assert [p for p in writes[1][0] if os.path.realpath(p).startswith(rd)] == []  # rank 1 wrote nothing there

    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert isinstance(state["training"]["rng"], list) and len(state["training"]["rng"]) == 2  # gathered from 2 ranks
    assert state["training"]["epoch"] == 2 and state["step"] == 4
    train_steps = [json.loads(ln)["step"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()
                   if json.loads(ln)["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4]  # one log line per step: only rank 0 logs, the resume truncated nothing twice
    assert make_plan(study, {"train": str(prepared_ffpp)}, runs)[0].status == "done"
    table = json.loads((runs / "studies" / "two_proc" / "table.json").read_text())
    cell = table["rows"][0]["values"]["FF++"]
    assert table["rows"][0]["error"] is None and 0 <= cell["ours"] <= 100 and cell["paper"] == 99.0
    assert main(["reproduce", str(study_file), "--runs", str(runs), "--collect"]) == 0  # every row done
    assert "1 of 1 rows done" in capfd.readouterr().out

    # 3) the result loads and scores a real crop of the store
    from unmask.data.store import PreparedStore, load_rgb
    from unmask.models import load_detector

    det, meta = load_detector(run_dir)
    assert meta["input_size"] == 64
    face = PreparedStore(prepared_ffpp).faces(split="val")[0]
    img = torch.from_numpy(load_rgb(face.crop_path)).permute(2, 0, 1)[None].float() / 255
    img = torch.nn.functional.interpolate(img, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        p = det(img).softmax(1)[0, 1].item()
    assert 0.0 <= p <= 1.0


# ---- a bug the multi-process paths exposed: loader workers forked after OpenCV's pool was used ---------------------

_FORK_AFTER_CV2 = """
import sys, time
import cv2, numpy as np
cv2.setNumThreads(2)
img = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
for _ in range(10):
    cv2.resize(img, (1200, 1200), interpolation=cv2.INTER_LINEAR)  # OpenCV's thread pool runs ...
time.sleep(1.0)  # ... and its idle threads now wait on the pool's condition variable, as after validation
from unmask.train.config import load_train_config
from unmask.train.loop import train
cfg = load_train_config(sys.argv[3], ["data.store=" + sys.argv[1], "model.input_size=64", "batch_size=2",
      "steps_per_epoch=1", "epochs=1", "model.pretrained=null", "run.progress=false", "data.num_workers=2",
      "data.val_split=null", "run.tensorboard=false"])
print("steps", train(cfg, sys.argv[2]).steps)
"""


@pytest.mark.slow
def test_loader_workers_fork_after_cv2_pool_use(tmp_path, prepared_ffpp):
    """Workers forked while OpenCV's pool threads were waiting hung for ever in their first cv2.setNumThreads
    (seen as a DDP / GPU-path run that stopped at the start of its second or third epoch, after validation)."""
    script = tmp_path / "fork_after_cv2.py"
    script.write_text(_FORK_AFTER_CV2)
    try:
        proc = subprocess.run([sys.executable, str(script), str(prepared_ffpp), str(tmp_path / "run"),
                               str(REPO / "configs" / "tiny" / "sbi.yaml")], capture_output=True, text=True,
                              timeout=240, env={**os.environ, "PYTHONPATH": str(REPO)})
    except subprocess.TimeoutExpired:
        pytest.fail("training with data.num_workers=2 hung after OpenCV's thread pool was used in the trainer")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "steps 1" in proc.stdout


def test_channels_last_training_matches_nchw_and_loads(tmp_path):
    """train's channels_last (the GPU path's NHWC option): the same losses as NCHW up to float rounding, and its
    checkpoint loads into a plain (NCHW) detector."""
    sys.path.insert(0, str(REPO / "tests"))
    from _train_fixtures import toy_train_data, train_capturing_method

    from unmask.models import load_detector
    from unmask.train.config import load_train_config
    from unmask.train.loop import train

    torch.set_num_threads(1)
    base = ["method.name=sbi", "model.backbone=resnet18", "model.pretrained=null", "model.input_size=32",
            "run.progress=false", "run.tensorboard=false", "optim.name=sgd", "optim.lr=0.01", "epochs=1",
            "batch_size=4", "steps_per_epoch=3", "schedule.name=constant"]
    a = train(load_train_config(None, base), tmp_path / "nchw", data=toy_train_data(n=12))
    b, method = train_capturing_method(load_train_config(None, [*base, "channels_last=true"]), tmp_path / "nhwc",
                                       toy_train_data(n=12))
    convs = [m.weight for m in method.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)  # NHWC for real
    assert torch.allclose(torch.tensor(a.losses), torch.tensor(b.losses), rtol=1e-3, atol=1e-4), (a.losses, b.losses)
    det, _ = load_detector(tmp_path / "nhwc")
    x = torch.rand(2, 3, 32, 32)
    ref, _ = load_detector(tmp_path / "nchw")
    with torch.no_grad():
        assert torch.allclose(det(x), ref(x), rtol=1e-2, atol=1e-3)
