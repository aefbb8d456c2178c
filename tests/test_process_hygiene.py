"""`unmask prepare` as a good citizen: one writer per shard, and no process left behind when it is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from unmask.cli import main
from unmask.data import shard_lock

REPO = Path(__file__).resolve().parents[1]

_HOLD = """
import sys, time
from pathlib import Path
from unmask.data.shard_lock import acquire
acquire(Path(sys.argv[1]), (int(sys.argv[2]), int(sys.argv[3])))
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def image_folder(tmp_path, astronaut_rgb) -> Path:
    root = tmp_path / "media"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        cv2.imwrite(str(root / label / "a.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    return root


def _hold_lock(store: Path, i: int, n: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(store), str(i), str(n)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_of_the_same_shard_is_refused_and_touches_nothing(tmp_path, image_folder, capsys):
    store = tmp_path / "store"
    store.mkdir()
    holder = _hold_lock(store, 0, 1)
    try:
        before = sorted(p.relative_to(store) for p in store.rglob("*"))
        rc = main(["prepare", "generic", str(image_folder), "--out", str(store), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 1
        assert f"pid {holder.pid}" in err and "is being prepared by" in err and "Traceback" not in err, err
        assert sorted(p.relative_to(store) for p in store.rglob("*")) == before  # nothing written
        # another shard of the same store is not blocked
        assert main(["prepare", "generic", str(image_folder), "--out", str(store), "--shard", "0/2",
                     "--no-progress"]) == 0
        assert main(["prepare", "generic", str(image_folder), "--out", str(store), "--shard", "1/2",
                     "--no-progress"]) == 0
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path, image_folder, capsys):
    store = tmp_path / "store"
    store.mkdir()
    holder = _hold_lock(store, 0, 1)
    holder.kill()  # kill -9: the lock file stays behind
    holder.wait()
    lock = shard_lock.lock_path(store, (0, 1))
    assert json.loads(lock.read_text())["pid"] == holder.pid
    assert main(["prepare", "generic", str(image_folder), "--out", str(store), "--no-progress"]) == 0
    assert not lock.exists()  # released at the end of the run
    assert len(list((store / "items").rglob("*.json"))) == 2


def test_a_lock_from_another_host_names_it_and_the_file(tmp_path, image_folder, capsys):
    store = tmp_path / "store"
    lock = shard_lock.lock_path(store, (0, 1))
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "since": time.time()}))
    rc = main(["prepare", "generic", str(image_folder), "--out", str(store), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "pid 4242 on host node-17" in err and str(lock) in err, err
    assert not (store / "store.json").exists()


def _session_members(sid: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # fields[3] = session id; zombies are already dead
            pids.append(int(d.name))
    return pids


def _kill_parent_and_wait_for_the_rest(proc: subprocess.Popen, wait_s: float = 10.0) -> list[int]:
    """SIGKILL the run's parent process alone (as an OOM killer or `kill -9 PID` would); return the pids of the
    run's session still alive ``wait_s`` later."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + wait_s
    while time.time() < deadline and _session_members(proc.pid):
        time.sleep(0.2)
    return _session_members(proc.pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the run's processes")
def test_kill_9_of_prepare_leaves_no_process_behind(ffpp_root, tmp_path):
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "unmask.cli", "prepare", "ffpp", str(ffpp_root), "--out", str(store),
           "--compression", "c40", "--frames", "32", "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own session: every process of the run is findable
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            running = list((store / ".running").rglob("*.txt")) if (store / ".running").is_dir() else []
            if len(running) >= 2:  # both workers are busy with an item
                break
            time.sleep(0.05)
        assert proc.poll() is None, "prepare finished before it could be killed"
        assert len(_session_members(proc.pid)) >= 3  # the parent, two workers (and the resource tracker)
        left = _kill_parent_and_wait_for_the_rest(proc)
        assert left == [], f"processes of the killed run still alive after 10 s: {left}"
    finally:
        for pid in _session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
    # the next run takes over the dead run's lock and resumes
    rerun = subprocess.run(cmd[:-3] + ["--workers", "1", "--no-progress", "--methods", "real", "--split", "val",
                                       "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the run's processes")
def test_kill_9_of_train_leaves_no_loader_worker_behind(prepared_ffpp, tmp_path):
    cmd = [sys.executable, "-m", "unmask.cli", "train", "--config", str(REPO / "configs" / "tiny" / "sbi.yaml"),
           f"data.store={prepared_ffpp}", "--out", str(tmp_path / "run"), "data.num_workers=2",
           "model.backbone=resnet18", "model.pretrained=null", "model.input_size=64", "epochs=100",
           "batch_size=2", "run.progress=false", "run.tensorboard=false"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None and len(_session_members(proc.pid)) < 3:
            time.sleep(0.1)
        assert proc.poll() is None, "train ended before it could be killed"
        assert len(_session_members(proc.pid)) >= 3  # the trainer and its two loader workers
        time.sleep(1.0)
        left = _kill_parent_and_wait_for_the_rest(proc)
        assert left == [], f"processes of the killed run still alive after 10 s: {left}"
    finally:
        for pid in _session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)
