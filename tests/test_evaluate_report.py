"""Report files: per-unit CSV, metrics JSON without NaN, markdown tables, ROC PNG, per-method breakdown."""

import csv
import json

import numpy as np
import pytest

from unmask.evaluate.aggregate import UnitScore
from unmask.evaluate.metrics import auc
from unmask.evaluate.report import grid_markdown, metrics_markdown, per_method, write_evaluation


def _units():
    rng = np.random.default_rng(0)
    units = []
    for i in range(6):
        units.append(UnitScore(f"r{i}", 0, "real", "ffpp", float(rng.random() * 0.6), None, 4, 4, False))
    for m, shift in (("Deepfakes", 0.5), ("FaceSwap", 0.1)):
        for i in range(5):
            units.append(UnitScore(f"{m}{i}", 1, m, "ffpp", float(min(1.0, rng.random() * 0.6 + shift)), None, 4, 4, False))
    units.append(UnitScore("nf", 1, "FaceSwap", "ffpp", 0.5, None, 0, 0, True))
    return units


def test_per_method_compares_each_method_with_all_reals():
    units = _units()
    table = per_method(units, threshold=0.4, n_boot=50)
    assert list(table) == ["all", "Deepfakes", "FaceSwap"]
    assert (table["Deepfakes"]["n_real"], table["Deepfakes"]["n_fake"]) == (6, 5)
    assert (table["FaceSwap"]["n_real"], table["FaceSwap"]["n_fake"]) == (6, 6)
    reals = [u for u in units if u.label == 0]
    df = reals + [u for u in units if u.method == "Deepfakes"]
    assert table["Deepfakes"]["auc"] == pytest.approx(auc([u.label for u in df], [u.score for u in df]))
    assert table["all"]["no_face"] == 1 and table["FaceSwap"]["no_face"] == 1 and table["Deepfakes"]["no_face"] == 0
    assert table["Deepfakes"]["auc"] > table["FaceSwap"]["auc"]  # DF fakes were made easier


def test_written_report(tmp_path):
    units = _units()
    table = per_method(units, threshold=0.4, n_boot=50)
    paths = write_evaluation(tmp_path, units, table, {"level": "video", "notes": ["a note"]}, title="t")
    rows = list(csv.DictReader(open(paths["scores"])))
    assert len(rows) == len(units) and rows[-1]["no_face"] == "1" and rows[-1]["score"] == "0.500000"
    data = json.loads(paths["metrics_json"].read_text())  # strict JSON: no NaN
    assert data["metrics"]["all"]["n"] == len(units) and data["meta"]["level"] == "video"
    md = paths["metrics_md"].read_text()
    assert "| Deepfakes | 6 | 5 |" in md and "Acc@thr" in md and "- a note" in md
    assert f"{100 * table['all']['auc']:.2f} [" in md
    png = paths["roc"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_single_class_metrics_are_null_not_nan(tmp_path):
    units = [UnitScore("a", 1, "x", "d", 0.7, None, 1, 1, False), UnitScore("b", 1, "x", "d", 0.2, None, 1, 1, False)]
    table = per_method(units, n_boot=10)
    paths = write_evaluation(tmp_path, units, table, {"level": "video"})
    data = json.loads(paths["metrics_json"].read_text())
    assert data["metrics"]["all"]["auc"] is None
    assert "| all | 0 | 2 | - |" in paths["metrics_md"].read_text()


def test_grid_average_over_chosen_columns():
    md = grid_markdown({"m": {"FF++": 0.99, "CDF": 0.8, "DFDC": 0.7}}, ["FF++", "CDF", "DFDC"], corner="Model",
                       avg_name="Avg", avg_columns=["CDF", "DFDC"])
    assert md.splitlines()[2] == "| m | 99.00 | 80.00 | 70.00 | 75.00 |"
    md = metrics_markdown({"all": {"n_real": 1, "n_fake": 1, "auc": 1.0}})
    assert "| all | 1 | 1 | 100.00 |" in md


def test_per_group_within_and_against_all_reals():
    from unmask.evaluate.aggregate import ItemInfo
    from unmask.evaluate.report import group_markdown, per_group

    units = _units()
    comp = {u.item: ("c23" if i % 2 else "c40") for i, u in enumerate(units)}
    items = [ItemInfo(key=u.item, label=u.label, method=u.method, dataset=u.dataset,
                      extra={"columns": {"compression": comp[u.item]}}) for u in units]
    table = per_group(units, items, "compression", n_boot=20)
    assert list(table) == ["c23", "c40"]
    sub = [u for u in units if comp[u.item] == "c23"]
    assert table["c23"]["auc"] == pytest.approx(auc([u.label for u in sub], [u.score for u in sub]))
    assert "auc_note" not in table["c23"] and table["c23"]["ci"]["auc"][0] <= table["c23"]["auc"]
    fakes = [u for u in sub if u.label == 1]
    reals = [u for u in units if u.label == 0]
    vs = reals + fakes
    assert table["c23"]["vs_all_reals"]["auc"] == pytest.approx(auc([u.label for u in vs], [u.score for u in vs]))
    md = group_markdown(table, "compression")
    assert md.startswith("### By compression") and f"| c23 | {table['c23']['n_real']} | {len(fakes)} |" in md
    by_method = per_group(units, items, "method", n_boot=0)
    assert by_method["real"]["auc_note"] == "n/a: only real items in this group" and "vs_all_reals" not in by_method["real"]
