"""`unmask inspect`: a PNG that shows prepared crops (or a file's faces) with boxes and landmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from unmask.data.render import BOX, LM13, LM68, draw_face

REPO = Path(__file__).resolve().parents[1]


def _unmask(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unmask.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def _inspect(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `unmask inspect ARGS` in this process: the same `main` the command line
    runs (test_inspect_default_astronaut runs it as a subprocess), without a second interpreter start-up."""
    from unmask.cli import main

    capsys.readouterr()
    code = main(["inspect", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _count(img: np.ndarray, color) -> int:
    return int((np.abs(img.astype(int) - np.array(color)).sum(axis=2) < 30).sum())


def test_inspect_store_draws_crops_with_landmarks(prepared_ffpp, tmp_path, capsys):
    out = tmp_path / "inspect.png"
    code, stdout, stderr = _inspect(capsys, str(prepared_ffpp), "--out", str(out), "--n", "6", "--cols", "3",
                                    "--tile", "200")
    assert code == 0, stderr
    assert "6 of" in stdout
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert img.shape[1] == 600 and img.shape[0] == 2 * (200 + 34)
    for r in range(2):
        for c in range(3):
            tile = img[r * 234:r * 234 + 200, c * 200:(c + 1) * 200]
            assert _count(tile, LM68) > 20 and _count(tile, LM13) > 5 and _count(tile, BOX) > 50


def test_inspect_filters_and_errors(prepared_ffpp, tmp_path, capsys):
    code, _, err = _inspect(capsys, str(prepared_ffpp), "--out", str(tmp_path / "a.png"), "--method", "NoSuchMethod")
    assert code == 1 and "no stored face" in err
    code, _, err = _inspect(capsys, str(tmp_path), "--out", str(tmp_path / "b.png"))
    assert code == 1 and "not a prepared store" in err


def test_inspect_default_astronaut(tmp_path):
    out = tmp_path / "astro.png"
    res = _unmask("inspect", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "1 face(s)" in res.stdout
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert _count(img, LM68) > 20


def test_draw_face_puts_points_where_the_landmarks_are():
    img = np.zeros((100, 100, 3), np.uint8)
    lm = np.array([[20.0, 30.0]] * 68 + [[70.0, 10.0]] * 13)
    out = draw_face(img, np.array([10, 10, 90, 90]), lm, test_margin=None)
    assert tuple(out[30, 20]) == LM68 and tuple(out[10, 70]) == LM13
    assert tuple(out[50, 10]) == BOX
    assert img.sum() == 0  # the input is not modified
