"""README command 1 (`unmask demo`) runs every stage on the embedded face and leaves its outputs."""

import re
import subprocess
import sys

import cv2


def test_demo_end_to_end_small(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "unmask.cli", "demo", "--out", str(out), "--steps", "2", "--frames", "6"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for png in ("faces.png", "synth_bbmg.png", "heatmaps/astronaut_png.png", "heatmaps/astronaut_bbmg_pseudofake_png.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.std() > 5, png  # a real picture, not a blank
    assert (out / "run" / "last.pt").is_file()
    rows = {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^(astronaut\S*\.png)\s+ok\s+([0-9.]+)", proc.stdout, flags=re.M)}
    assert set(rows) == {"astronaut.png", "astronaut_bbmg_pseudofake.png"}
    assert all(0.0 <= p <= 1.0 for p in rows.values())
    # a second run resumes: nothing is prepared again
    again = subprocess.run(
        [sys.executable, "-m", "unmask.cli", "demo", "--out", str(out), "--steps", "2", "--frames", "6"],
        capture_output=True, text=True, timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "1 already done, 0 processed" in again.stdout
