"""unmask reproduce (issue 15 A): study files, the plan, a real tiny reproduce, resume, provenance, --compare, --dry-run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unmask.cli import main
from unmask.reproduce.plan import make_plan, remaining_images
from unmask.reproduce.provenance import compare_text, diff_provenance, store_fingerprint
from unmask.reproduce.runner import dry_run_text, parse_data, run_study
from unmask.reproduce.study import StudyError, load_study, study_names

REPO = Path(__file__).resolve().parents[1]


# --- every study file ------------------------------------------------------------------------------------------


def test_every_study_loads_and_names_real_configs_and_keys() -> None:
    """Every configs/studies file validates: configs exist, override keys are config keys, uses-rows exist."""
    names = study_names()
    assert "tiny_demo" in names and "000_table11" in names
    for name in names:
        study = load_study(name)  # validate=True: each row's config + overrides through the strict loader
        assert study.paper and study.table, name
        for row in study.rows:
            if row.uses is None:
                assert row.config and Path(row.config).is_file(), (name, row.id)
            for col, v in row.paper.items():
                assert 0.0 <= v <= 100.0, (name, row.id, col, v)
        plan = make_plan(study, {}, "/nonexistent-runs")  # the plan of every study builds (what --dry-run shows)
        assert [r.row_id for r in plan] == [r.id for r in study.rows]
        assert all(r.status == "missing" for r in plan)


def _write(tmp: Path, text: str) -> Path:
    p = tmp / "s.yaml"
    p.write_text(text)
    return p


BASE = """
paper: "000"
table: "Table 11"
protocols: [cross_dataset]
rows:
  - {id: a, config: tiny/sbi.yaml}
"""


@pytest.mark.parametrize("text, message", [
    (BASE + "colour: red\n", "unknown key 'colour'"),
    (BASE.replace("tiny/sbi.yaml", "tiny/nope.yaml"), "config 'tiny/nope.yaml' not found"),
    (BASE + "  - {id: b, uses: zz}\n", "uses row 'zz', which is not in the study"),
    (BASE + "  - {id: a, config: tiny/sbi.yaml}\n", "duplicate row id 'a'"),
    (BASE + "  - {id: b, config: tiny/sbi.yaml, uses: a}\n", "exactly one of 'config:'"),
    (BASE + "  - {id: b, config: tiny/sbi.yaml, overrides: {optim.lrr: 1}}\n", "lrr"),
    (BASE + "  - {id: b, config: tiny/sbi.yaml, paper: {CDF: high}}\n", "expected a number"),
    (BASE.replace("protocols: [cross_dataset]", "protocols: [no_such_protocol]"), "unknown protocol"),
    (BASE.replace('table: "Table 11"\n', ""), "'table:' is required"),
    ("rows: [\n", "invalid YAML"),
])
def test_bad_study_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StudyError, match=None) as exc:
        load_study(_write(tmp_path, text))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_bad_study_on_the_command_line(tmp_path: Path, capsys) -> None:
    assert main(["reproduce", str(_write(tmp_path, BASE + "colour: red\n")), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unmask reproduce: error:") and "colour" in err[0]
    assert main(["reproduce", "tiny_demo", "--data", "train"]) == 1
    assert "NAME=STORE" in capsys.readouterr().err


def test_parse_data() -> None:
    assert parse_data(["train=a/b", "CDF=/x=y"]) == {"train": "a/b", "CDF": "/x=y"}


def test_dry_run_of_000_table11(capsys) -> None:
    """The paper-scale plan: 4 runs of 100 epochs on EfficientNet-B4 @380 with SAM; the GPU line is honest."""
    assert main(["reproduce", "000_table11", "--dry-run", "--runs", "/nonexistent-runs"]) == 0
    out = capsys.readouterr().out
    assert "paper 000 Table 11" in out and "cross_dataset_000_table8" in out
    assert out.count("| missing | 100 |") == 4
    assert out.count("| 1,152,000 |") == 4  # no store: the study's 5760 FF++ train faces / 16 x 100 epochs x 32 images
    assert "one GPU: no measurement" in out or "estimated training time on one GPU" in out
    assert "unmask train --config" in out and "bbmg_nrs/table11_row4_bbmg_nrs.yaml" in out


def test_dry_run_estimates_from_measured_step_times(tmp_path: Path) -> None:
    """images / measured img/s, this host's CPU file and any GPU file; SAM across optimizers is scaled and marked."""
    import platform

    from unmask.reproduce.estimate import estimate, load_results

    row = {"backbone": "tf_efficientnet_lite0", "size": 128, "method": "sbi", "batch": "8+8", "optim": "adam"}
    (tmp_path / "train_step_here_cpu.json").write_text(json.dumps(
        {"machine": {"host": platform.node(), "device": "cpu"}, "rows": [{**row, "img_s": 8.0}]}))
    (tmp_path / "train_step_box_cuda.json").write_text(json.dumps(
        {"machine": {"host": "box", "device": "cuda", "gpu": "Test GPU"},
         "rows": [{**row, "img_s": 400.0}, {**row, "img_s": 800.0, "compile": True}]}))
    (tmp_path / "train_step_other_cpu.json").write_text(json.dumps(  # another host's CPU: not "this machine"
        {"machine": {"host": "not-" + platform.node(), "device": "cpu"}, "rows": [{**row, "img_s": 1000.0}]}))
    results = load_results(tmp_path)
    assert len(results) == 3
    secs, m = estimate(96, "tf_efficientnet_lite0", 128, "sbi", "adam", "cpu", results)
    assert secs == pytest.approx(12.0) and m.exact
    secs, m = estimate(96, "tf_efficientnet_lite0", 128, "sbi", "adam", "cuda", results)
    assert secs == pytest.approx(96 / 800.0)  # the fastest measured setting
    secs, m = estimate(96, "tf_efficientnet_lite0", 128, "bbmg_nrs", "sam", "cpu", results)
    assert secs == pytest.approx(96 / 4.0) and not m.exact and "x0.5" in m.describe()
    assert estimate(96, "efficientnet_b4", 380, "sbi", "sam", "cpu", results) == (None, None)

    study = load_study("tiny_demo")
    text = dry_run_text(study, make_plan(study, {}, tmp_path / "runs"), tmp_path / "runs", results=results)
    assert "one GPU (Test GPU)" in text and "| 96 | 12 s @ 8 img/s" in text
    assert "estimated training time on one GPU: 0 s" in text
    assert "estimated training time on this machine" in text and "24 s" in text


# --- a real tiny reproduce ------------------------------------------------------------------------------------

# No validation split (best.pt = the last epoch): validation and the end-of-training calibration would double the
# run time of these 1-2 step runs on a loaded 2-core machine, and the plan/resume/report logic does not need them.
FAST = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "model.input_size": 64, "model.pretrained": None,
        "data.val_split": None, "run.tensorboard": False, "run.progress": False, "run.save_every_steps": 1}


def _tiny_study(tmp: Path) -> Path:
    study = {
        "name": "tiny_test", "paper": "000", "table": "Table 10 Raw FF++ (test profile)", "metric": "auc",
        "protocols": [{"protocol": "cross_dataset", "only": ["FF++"], "splits": ["val"], "frames": 2, "n_boot": 20}],
        "rows": [
            {"id": "a", "label": "SBI seed 0", "config": "tiny/sbi.yaml", "overrides": FAST,
             "paper": {"FF++": 99.56}},
            {"id": "b", "label": "SBI seed 1", "config": "tiny/sbi.yaml", "overrides": {**FAST, "seed": 1, "steps_per_epoch": 1},
             "paper": {"FF++": 99.52}},
            {"id": "c", "label": "a again", "uses": "a", "paper": {"FF++": 99.56}},
            {"id": "broken", "label": "no store", "config": "tiny/sbi.yaml", "overrides": FAST, "data": "nowhere"},
        ],
    }
    p = tmp / "tiny_test.yaml"
    p.write_text(yaml.safe_dump(study, sort_keys=False))
    return p


@pytest.mark.slow
def test_tiny_reproduce_resume_provenance_compare(prepared_ffpp: Path, tmp_path: Path, capsys) -> None:
    study = load_study(_tiny_study(tmp_path))
    store = str(prepared_ffpp)
    data = {"train": store, "FF++": store, "nowhere": str(tmp_path / "no_store")}
    runs = tmp_path / "runs"
    plan = make_plan(study, data, runs)
    a, b, c, broken = plan
    assert [r.status for r in plan] == ["missing"] * 4 and c.run_dir == a.run_dir and c.train_argv == []
    assert a.train_argv[:3] == ["train", "--config", a.config_path.as_posix()] and f"data.store={store}" in a.train_argv
    assert a.images == 1 * 2 * 2 * 2 and a.run_dir != b.run_dir  # epochs x steps x batch x (real + pseudo-fake)

    # half a run: killed right after step 1 (mid-epoch checkpoint) -> "partial"
    env = {**os.environ, "UNMASK_KILL_AFTER_STEP": "1"}
    proc = subprocess.run([sys.executable, "-m", "unmask.cli", *a.train_argv], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and (a.run_dir / "last.pt").is_file() and not (a.run_dir / "best.pt").exists()
    plan = make_plan(study, data, runs)
    assert [r.status for r in plan] == ["partial", "missing", "partial", "missing"]
    text = dry_run_text(study, plan, runs, results=[])
    assert "| a | SBI seed 0 | partial | 0/1 |" in text and "| c | a again | uses a |" in text
    assert "no measurement" in text and "one GPU: no measurement" in text

    out = tmp_path / "report"
    report = run_study(study, plan, out, log=lambda m: None)
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["a"]["trained"] == "resumed" and rows["b"]["trained"] == "trained"
    assert rows["broken"]["error"].startswith("training failed:") and "prepared store not found" in rows["broken"]["error"]
    for rid in ("a", "b", "c"):
        v = rows[rid]["values"]["FF++"]
        assert rows[rid]["error"] is None and 0.0 <= v["ours"] <= 100.0
        assert v["diff"] == pytest.approx(v["ours"] - v["paper"])
        assert v["ci"] is not None and v["ci"][0] <= v["ours"] <= v["ci"][1]
    assert rows["c"]["values"]["FF++"]["ours"] == rows["a"]["values"]["FF++"]["ours"]
    for f in ("table.md", "table.csv", "table.json", "table.png"):
        assert (out / f).stat().st_size > 0
    md = (out / "table.md").read_text()
    assert "SBI seed 0" in md and "/ 99.56 (" in md and "prepared store not found" in md
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = (out / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith("row,label,column,ours,paper,diff,ci_low,ci_high")

    # provenance in the run dir (written by unmask train itself) and in the report
    prov = json.loads((a.run_dir / "provenance.json").read_text())
    assert prov["packages"]["torch"] and prov["git"]["commit"] and prov["config"]["seed"] == 0
    assert prov["store"]["sha256"] == store_fingerprint(store)["sha256"] and prov["store"]["items"] > 0
    assert prov["resumed"] is True and prov["hardware"]["cpu_count"] >= 1
    assert len((a.run_dir / "provenance_history.jsonl").read_text().splitlines()) == 2  # killed session + resume
    assert rows["a"]["provenance"]["store"]["sha256"] == prov["store"]["sha256"]
    assert report["protocols"][0]["frames"] == 2 and report["protocols"][0]["margin"] == 0.125

    # a second run: nothing to train, the same numbers
    plan2 = make_plan(study, data, runs)
    assert [r.status for r in plan2[:3]] == ["done"] * 3 and remaining_images(plan2[0]) == 0
    report2 = run_study(study, plan2, tmp_path / "report2", log=lambda m: None)
    rows2 = {r["id"]: r for r in report2["rows"]}
    assert rows2["a"]["trained"] == rows2["b"]["trained"] == "skipped (done)"
    assert rows2["a"]["values"] == rows["a"]["values"]

    # --compare: two runs that differ in one setting (the seed), then two reports
    assert main(["reproduce", "--compare", str(a.run_dir), str(b.run_dir)]) == 0
    cmp_out = capsys.readouterr().out
    assert "config.seed: 0 -> 1" in cmp_out and "\nseed: 0 -> 1" in cmp_out and "config.steps_per_epoch: 2 -> 1" in cmp_out
    assert "packages." not in cmp_out  # same process, same packages
    text, n = compare_text(str(out), str(tmp_path / "report2"))
    assert "row a:" in text and "trained: resumed -> skipped (done)" in text and n >= 1
    # one package version changed in a copy of the run: named as such
    other = tmp_path / "copy"
    shutil.copytree(a.run_dir, other, ignore=shutil.ignore_patterns("*.pt", "reproduce"))
    p2 = json.loads((other / "provenance.json").read_text())
    p2["packages"]["timm"] = "0.0.1"
    (other / "provenance.json").write_text(json.dumps(p2))
    diff = diff_provenance(prov, p2)
    assert diff == [("packages.timm", prov["packages"]["timm"], "0.0.1")]


def test_compare_errors(tmp_path: Path, capsys) -> None:
    (tmp_path / "x").mkdir()
    assert main(["reproduce", "--compare", str(tmp_path / "x"), str(tmp_path / "y")]) == 1
    assert "neither a run dir" in capsys.readouterr().err
