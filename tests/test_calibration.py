"""Temperature scaling, ECE, `unmask calibrate`, calibration at the end of training, and ensembles in the
scoring core (faces found once, each model on the same crops, the mean of calibrated probabilities)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.errors import UnmaskError
from unmask.evaluate.calibration import (Calibration, calibrated_probability, checkpoint_calibration,
                                         expected_calibration_error, fit_calibration, fit_temperature, nll)

TINY = ["model.backbone=resnet18", "model.pretrained=null", "model.input_size=32", "run.progress=false",
        "run.tensorboard=false", "data.num_workers=0"]


# --- the maths -----------------------------------------------------------------------------------------------


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    n, t_true = 20000, 3.0
    y = rng.integers(0, 2, n)
    # calibrated logits d ~ N(+-2, 1.5) give p = sigmoid(d) with labels drawn from p; the model's logits are d * T
    d = rng.normal(np.where(y == 1, 2.0, -2.0), 1.5)
    y = (rng.random(n) < 1 / (1 + np.exp(-d))).astype(int)  # labels drawn from the calibrated probability
    logits = np.stack([np.zeros(n), d * t_true], 1)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(t_true, rel=0.05)
    assert nll(logits, y, t) < nll(logits, y, 1.0)
    # the fit is the NLL minimum: nudging T either way is worse
    assert nll(logits, y, t) <= min(nll(logits, y, t * 1.02), nll(logits, y, t / 1.02))
    # an already calibrated model keeps T ~ 1
    assert fit_temperature(np.stack([np.zeros(n), d], 1), y) == pytest.approx(1.0, abs=0.05)


def test_ece_hand_computed():
    p = np.array([0.1, 0.2, 0.8, 0.9])
    y = np.array([0, 1, 1, 1])
    # 2 bins: [0, .5): mean p .15, mean y .5 -> .35 * 2/4; [.5, 1]: .85 vs 1 -> .15 * 2/4; total .25
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.25)
    # 1 bin: |mean y - mean p| = |.75 - .5|
    assert expected_calibration_error(p, y, n_bins=1) == pytest.approx(0.25)
    # 10 bins: each point alone: (.1 + .8 + .2 + .1) / 4
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.3)
    assert expected_calibration_error(np.array([1.0, 0.0]), np.array([1, 0])) == 0.0  # p = 1 is in the last bin
    with pytest.raises(UnmaskError):
        expected_calibration_error(np.array([0.5]), np.array([0, 1]))


def test_calibrated_probability_and_meta_round_trip():
    logits = np.array([[0.0, 2.0], [1.0, -1.0]])
    p = calibrated_probability(logits, 2.0)
    assert p == pytest.approx([1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(1.0))])
    assert calibrated_probability(logits, None) == pytest.approx(calibrated_probability(logits, 1.0))
    cal = fit_calibration(np.array([[0, 3.0], [0, -3.0], [0, 2.0], [0, 1.0]]), np.array([1, 0, 0, 1]), "toy set")
    meta = cal.to_meta()
    assert json.loads(json.dumps(meta)) == meta  # plain data
    assert Calibration.from_meta(meta) == cal
    assert checkpoint_calibration({"calibration": meta}) == cal and checkpoint_calibration({}) is None
    with pytest.raises(UnmaskError):
        Calibration.from_meta({**meta, "temperature": -1.0})
    with pytest.raises(UnmaskError):
        fit_temperature(np.zeros((3, 2)), np.array([1, 1, 1]))  # one class only


# --- checkpoints: unmask calibrate, and the end of training ----------------------------------------------------


def _tiny_run(prepared_ffpp: Path, out: Path, seed: int = 0) -> Path:
    """A real run: 1 step of sbi on the shared sample's train reals, validated on its val reals + pseudo-fakes."""
    from unmask.train.config import load_train_config
    from unmask.train.loop import train

    cfg = load_train_config(None, ["method.name=sbi", *TINY, f"data.store={prepared_ffpp}", "data.dataset=ffpp",
                                   "epochs=1", "steps_per_epoch=1", "batch_size=2", "data.max_val_faces=16",
                                   f"seed={seed}", "optim.name=adam"])
    train(cfg, out)
    return out


@pytest.fixture(scope="module")
def runs(prepared_ffpp, tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("calib_runs")
    return _tiny_run(prepared_ffpp, base / "a", 0), _tiny_run(prepared_ffpp, base / "b", 1)


def test_training_ends_with_a_calibrated_best_checkpoint(runs):
    from unmask.models.checkpoint import load_checkpoint
    from unmask.train.runlog import read_metrics

    state = load_checkpoint(runs[0] / "best.pt")
    cal = checkpoint_calibration(state)
    assert cal is not None and cal.temperature > 0 and cal.n == 32  # 16 val reals + their 16 pseudo-fakes
    assert "val split of" in cal.fitted_on and "pseudo" in cal.fitted_on
    assert cal.nll_after <= cal.nll_before + 1e-9  # T = 1 is a candidate: the fit never makes NLL worse
    assert any(r["kind"] == "calibration" for r in read_metrics(runs[0]))


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from unmask.cli import main

    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_calibrate_command_rewrites_best_keeping_weights(runs, prepared_ffpp, tmp_path, capsys):
    import shutil

    from unmask.models.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    before = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    before.pop("calibration")  # as a run trained before calibration existed
    torch.save(before, run / "best.pt")
    code, stdout, stderr = _cli(["calibrate", "--checkpoint", str(run), "--data", str(prepared_ffpp), "--split", "val",
                                 "--format", "json", "--device", "cpu"], capsys)
    assert code == 0, stderr[-2000:]
    out = json.loads(stdout)
    after = torch.load(run / "best.pt", map_location="cpu", weights_only=True)  # still plain data
    assert after["calibration"] == out["calibration"] and after["calibration"]["temperature"] > 0
    assert set(after) == set(before) | {"calibration"}
    for k, v in before["model"].items():  # weights byte-identical
        assert after["model"][k].dtype == v.dtype and after["model"][k].numpy().tobytes() == v.numpy().tobytes()
    assert {k: after[k] for k in ("config", "val", "epoch", "step")} == {k: before[k] for k in ("config", "val", "epoch", "step")}
    assert load_checkpoint(run)["calibration"]["n"] == 32
    code, _, stderr = _cli(["calibrate", "--checkpoint", str(run), "--data", str(prepared_ffpp), "--split", "test"],
                           capsys)
    assert code == 1 and stderr.count("\n") == 1 and "test split" in stderr
    # the weights of a calibrated run score the same faces as before; evaluate reports ECE before / after
    from unmask.evaluate.protocols import EvalSettings, TestSet, evaluate_set
    from unmask.evaluate.scoring import open_detector

    det, meta = open_detector(str(run), device="cpu")
    res = evaluate_set(det, meta, TestSet(name="val", path=str(prepared_ffpp), splits=["val"]), EvalSettings(n_boot=10),
                       out_dir=tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())["meta"]
    assert report["calibration"]["temperature"] == out["calibration"]["temperature"]
    assert 0 <= report["calibration"]["ece_raw"] <= 1 and 0 <= report["calibration"]["ece_calibrated"] <= 1
    assert any("ECE on this set" in n for n in report["notes"]) and res.table["all"]["auc"] is not None


# --- ensembles in the scoring core ------------------------------------------------------------------------


def test_ensemble_finds_faces_once_and_averages_calibrated_probabilities(runs, astronaut_rgb, tmp_path):
    from unmask.data.faces import DlibDetector
    from unmask.evaluate.scoring import MediaScorer, model_id, open_detector
    from unmask.io import atomic_save_png

    class Counting(DlibDetector):
        """The real dlib HOG detector, counting its calls."""

        calls = 0

        def detect(self, rgb):
            Counting.calls += 1
            return super().detect(rgb)

    counting, base = Counting(kind="hog"), DlibDetector(kind="hog")
    img = tmp_path / "face.png"
    atomic_save_png(img, astronaut_rgb)
    members = [open_detector(str(r), device="cpu") for r in runs]
    ens = MediaScorer.ensemble(members, counting)
    res = ens.score(img)
    assert res.status == "ok" and Counting.calls == 1  # one detection for the two models
    singles = [MediaScorer(d, base, meta=m).score(img) for d, m in members]
    assert [p["model_id"] for p in res.per_model] == [model_id(m) for _, m in members]
    for single, pm in zip(singles, res.per_model):
        assert pm["probability"] == pytest.approx(single.fake_probability, abs=1e-9)
        assert pm["probability_raw"] == pytest.approx(single.probability_raw, abs=1e-9)
        assert pm["temperature"] == checkpoint_calibration(members[res.per_model.index(pm)][1]).temperature
    # one face in the image: the ensemble probability is exactly the mean of the members'
    assert res.fake_probability == pytest.approx(np.mean([s.fake_probability for s in singles]), abs=1e-9)
    assert res.fake_probability != pytest.approx(res.probability_raw, abs=1e-6)  # calibrated differs from raw
    assert ens.threshold == pytest.approx(np.mean([m["threshold"] for m in res.per_model]))
    assert model_id(members[0][1]) != model_id(members[1][1])
    with pytest.raises(UnmaskError):
        MediaScorer.ensemble([members[0], members[0]], base)


def test_detect_with_two_checkpoints_prints_per_model_columns(runs, astronaut_rgb, tmp_path, capsys):
    from unmask.evaluate.scoring import model_id
    from unmask.io import atomic_save_png
    from unmask.models.checkpoint import load_checkpoint

    img = tmp_path / "face.png"
    atomic_save_png(img, astronaut_rgb)
    args = ["detect", str(img), "--checkpoint", str(runs[0]), "--checkpoint", str(runs[1]), "--device", "cpu",
            "--quiet"]
    ids = [model_id({"path": load_checkpoint(r)["path"]}) for r in runs]
    code, table, err = _cli(args, capsys)
    assert code == 0, err[-2000:]
    assert all(i in table for i in ids) and "ensemble of 2" in table
    row = next(line for line in table.splitlines() if line.startswith("face.png"))
    assert len(row.split()) >= 8  # file, status, prob, m1, m2, verdict, frames, faces
    code, csv, _ = _cli(args + ["--format", "csv"], capsys)
    header = csv.splitlines()[0].split(",")
    assert {"probability_raw", f"p:{ids[0]}", f"p:{ids[1]}", f"face:{ids[0]}"} <= set(header)
    js = json.loads(_cli(args + ["--format", "json"], capsys)[1])
    r = js["results"][0]
    assert [m["model_id"] for m in js["models"]] == ids and len(r["per_model"]) == 2
    assert r["fake_probability"] == pytest.approx(np.mean([m["probability"] for m in r["per_model"]]), abs=1e-5)
    assert js["threshold"] == pytest.approx(np.mean([m["threshold"] for m in js["models"]]))
