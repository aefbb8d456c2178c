"""Atomic writes: whole file or nothing, ordinary permissions, no temp files left behind."""

import os
import stat

import numpy as np
import pytest

from unmask.io import atomic_save_png, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert target.read_text().strip().endswith("}") and '"x": 2' in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "img.png"
    atomic_save_png(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()
    with pytest.raises(Exception):
        atomic_save_png(target, np.zeros((0, 0, 3), np.uint8))  # cannot encode an empty image
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["img.png"]
