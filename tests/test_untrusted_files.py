"""Files from elsewhere are data, never code or a way out: checkpoints with pickle payloads, store records with paths.

The checkpoint payload is a real one: an object whose ``__reduce__`` makes the unpickler call ``pathlib.Path.touch`` on a
marker file. Were any loader to unpickle with ``weights_only=False``, the marker would exist afterwards.
"""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest
import torch

from unmask.cli import main
from unmask.errors import UnmaskError
from unmask.models import build_detector, load_checkpoint, save_checkpoint
from unmask.models.checkpoint import CHECKPOINT_FORMAT
from unmask.train.config import load_train_config
from unmask.train.loop import train

from _train_fixtures import one_torch_thread, toy_train_data  # noqa: F401 (autouse)


class Payload:
    """Unpickling this calls ``Path(marker).touch()``: arbitrary code, as a malicious checkpoint would run."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _real_state(input_size: int = 64) -> dict:
    det = build_detector("resnet18", pretrained=None, input_size=input_size)
    return {"format": CHECKPOINT_FORMAT, "detector": det.meta(), "model": det.state_dict(), "config": None,
            "val": None, "epoch": 1, "step": 1, "training": None}


@pytest.fixture()
def evil(tmp_path) -> dict[str, pathlib.Path]:
    """A real best.pt with a payload added (torch zip), and a plain pickle with the same payload."""
    marker = tmp_path / "PWNED"
    run = tmp_path / "evil_run"
    run.mkdir()
    torch.save({**_real_state(), "extra": Payload(marker)}, run / "best.pt")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"format": CHECKPOINT_FORMAT, "x": Payload(marker)}, protocol=2))
    return {"marker": marker, "run": run, "zip": run / "best.pt", "plain": plain}


def _refused(rc: int, err: str, marker: pathlib.Path) -> None:
    assert not marker.exists(), "the checkpoint's payload ran"
    assert rc == 1, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and "refusing to load" in lines[0] and "Traceback" not in err, err


@pytest.mark.parametrize("which", ["zip", "plain"])
def test_detect_refuses_a_payload(evil, which, tmp_path, astronaut_rgb, capsys):
    import cv2

    img = tmp_path / "face.png"
    cv2.imwrite(str(img), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    rc = main(["detect", str(img), "--checkpoint", str(evil[which])])
    _refused(rc, capsys.readouterr().err, evil["marker"])


def test_evaluate_and_export_refuse_a_payload(evil, tmp_path, astronaut_rgb, capsys):
    import cv2

    for label in ("real", "fake"):
        (tmp_path / "data" / label).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / label / "a.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    rc = main(["evaluate", "--checkpoint", str(evil["run"]), "--data", str(tmp_path / "data"),
               "--out", str(tmp_path / "eval")])
    _refused(rc, capsys.readouterr().err, evil["marker"])
    rc = main(["export", "--checkpoint", str(evil["run"]), "--output", str(tmp_path / "m.onnx")])
    _refused(rc, capsys.readouterr().err, evil["marker"])
    assert not (tmp_path / "m.onnx").exists()


def test_resume_refuses_a_payload(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "PWNED"
    torch.save({**_real_state(32), "training": {"rng": Payload(marker)}}, run / "last.pt")
    cfg = load_train_config(None, ["method.name=sbi", "model.backbone=resnet18", "model.pretrained=null",
                                   "model.input_size=32", "epochs=1", "steps_per_epoch=1", "batch_size=2",
                                   "run.progress=false", "run.tensorboard=false", "data.num_workers=0"])
    with pytest.raises(UnmaskError, match="refusing to load"):
        train(cfg, run, data=toy_train_data(n=4))
    assert not marker.exists()


def test_saved_checkpoints_are_plain_data(tmp_path):
    """What unmask writes loads under weights_only=True, numpy values included (RNG state, metrics)."""
    det = build_detector("resnet18", pretrained=None, input_size=32)
    save_checkpoint(tmp_path / "last.pt", det, val={"auc": np.float64(0.5), "n": np.int64(3)},
                    training={"rng": {"numpy": np.random.default_rng(0).random(3)}})
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["val"] == {"auc": 0.5, "n": 3} and type(state["val"]["auc"]) is float
    assert isinstance(state["training"]["rng"]["numpy"], torch.Tensor)


@pytest.mark.parametrize("drop", ["detector", "model"])
def test_incomplete_checkpoint_is_one_line(tmp_path, drop, capsys):
    state = _real_state()
    del state[drop]
    torch.save(state, tmp_path / "best.pt")
    rc = main(["export", "--checkpoint", str(tmp_path), "--output", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and f"no {drop!r} section" in err and "Traceback" not in err, err


def test_store_records_cannot_point_outside_the_store(tmp_path, astronaut_rgb):
    import json

    import cv2

    from unmask.data.prepare import PrepareOptions, run_prepare
    from unmask.data.records import ManifestRow
    from unmask.data.store import PreparedStore, check_key

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    row = ManifestRow(dataset="generic", video_id="a", label=0, method="real", source=str(img))
    run_prepare([row], tmp_path / "store", PrepareOptions(frames=1, workers=1), progress=False)
    (rec_path,) = (tmp_path / "store" / "items").rglob("*.json")
    assert len(PreparedStore(tmp_path / "store").faces()) == 1
    for bad in ("../../a.png", "/etc/passwd", "crops/./x.png", "crops/../../x.png"):
        rec = json.loads(rec_path.read_text())
        rec["frames"][0]["faces"][0]["crop"] = bad
        rec_path.write_text(json.dumps(rec))
        with pytest.raises(UnmaskError, match="leaves the store"):
            PreparedStore(tmp_path / "store").faces()
    for key in ("generic/real/na/..", "../x", "/abs/key", "a//b", "./a"):
        with pytest.raises(UnmaskError, match="not a clean relative path"):
            check_key(key)
