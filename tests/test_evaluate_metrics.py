"""Metrics against values computed by hand, cross-checked with scikit-learn, and the bootstrap's behaviour."""

import math

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from unmask.evaluate import metrics as M


def test_hand_computed_small_case():
    # reals 0.1, 0.4; fakes 0.35, 0.8. Pairs (fake > real): 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert M.auc(y, s) == pytest.approx(0.75)
    # ranked 0.8(F) 0.4(R) 0.35(F) 0.1(R): recall steps 0.5 at precision 1, 0.5 at precision 2/3
    assert M.average_precision(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1): FNR = FPR = 0.5 at the third point
    assert M.eer(y, s) == pytest.approx(0.5)
    assert M.accuracy(y, s, 0.5) == pytest.approx(0.75)  # 0.8 is the only "fake" call
    assert M.accuracy(y, s, 0.3) == pytest.approx(0.75)  # 0.35, 0.4, 0.8 called fake


def test_ties_count_half_and_eer_interpolates():
    # reals 0.2, 0.5; fakes 0.5, 0.9: the 0.5/0.5 pair is a tie -> (1 + 0.5 + 1 + 1) / 4
    y, s = [0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9]
    assert M.auc(y, s) == pytest.approx(0.875)
    # ROC (0,0) (0,.5) (.5,1) (1,1): on the diagonal segment FNR goes .5 -> 0 while FPR goes 0 -> .5:
    # they meet at 0.25
    assert M.eer(y, s) == pytest.approx(0.25)
    # a score equal to the threshold is called real
    assert M.accuracy(y, s, 0.5) == pytest.approx(0.75)
    assert M.accuracy([1], [0.5], 0.5) == 0.0


def test_degenerate_inputs():
    assert math.isnan(M.auc([1, 1], [0.2, 0.3]))
    assert math.isnan(M.eer([0, 0], [0.2, 0.3]))
    assert M.auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert M.auc([0, 1], [0.9, 0.1]) == 0.0
    with pytest.raises(ValueError):
        M.auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        M.auc([0, 1], [0.1])


@pytest.mark.parametrize("seed", range(4))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.random(n) * 0.7 + 0.3 * y, 2)  # rounding makes ties
    assert M.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # EER the usual way: where the sklearn ROC polyline meets the line TPR = 1 - FPR
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    expected = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0)
    assert M.eer(y, s) == pytest.approx(expected, abs=1e-6)


def test_choose_threshold_maximizes_accuracy_nearest_half():
    y, s = [0, 1, 0, 1], [0.2, 0.5, 0.5, 0.9]
    # candidates 0.35 and 0.7 both give 3/4; 0.35 is nearer 0.5
    assert M.choose_threshold(y, s) == pytest.approx(0.35)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) * 0.5 + 0.4 * y
    t = M.choose_threshold(y, s)
    grid = np.linspace(-0.1, 1.1, 2001)
    assert M.accuracy(y, s, t) >= max(M.accuracy(y, s, g) for g in grid) - 1e-12


def test_bootstrap_ci_brackets_the_point_and_perfect_separation_is_exact():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    s = rng.random(400) + 0.5 * y
    m = M.compute_metrics(y, s, threshold=0.6, n_boot=300, seed=0)
    for key in ("auc", "ap", "eer", "acc@0.5", "acc@thr"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi
        assert hi - lo > 0.01
    perfect = M.compute_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=50)
    assert perfect["ci"]["auc"] == [1.0, 1.0] and perfect["eer"] == 0.0


def test_cluster_bootstrap_of_repeated_frames_equals_video_bootstrap():
    # 40 videos, each with 5 frames of the same score: AUC is invariant to replicating every item 5 times,
    # so the frame-level bootstrap over videos must reproduce the video-level interval exactly.
    rng = np.random.default_rng(3)
    yv = np.r_[np.zeros(20), np.ones(20)].astype(int)
    sv = rng.random(40) + 0.3 * yv
    video = M.compute_metrics(yv, sv, n_boot=200, seed=7)
    yf, sf, gf = np.repeat(yv, 5), np.repeat(sv, 5), np.repeat(np.arange(40), 5)
    frames = M.compute_metrics(yf, sf, n_boot=200, seed=7, groups=gf)
    assert frames["auc"] == pytest.approx(video["auc"])
    assert frames["ci"]["auc"] == pytest.approx(video["ci"]["auc"])
    # treating the 200 frames as independent would understate the uncertainty
    naive = M.compute_metrics(yf, sf, n_boot=200, seed=7)
    assert np.diff(naive["ci"]["auc"])[0] < np.diff(frames["ci"]["auc"])[0]
