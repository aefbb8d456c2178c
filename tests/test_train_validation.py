"""Validation for model selection: the papers' aggregation, and a threshold that evaluate/detect pick up."""

import numpy as np

from unmask.data.records import FAKE, REAL, FaceRecord
from unmask.evaluate.scoring import checkpoint_threshold
from unmask.train.validation import video_metrics


def _rec(item, label, frame, side):
    box = np.array([0, 0, side, side], np.float32)
    return FaceRecord(item_key=item, dataset="d", video_id=item, label=label, method="m", split="val",
                      frame_index=frame, face_index=0, crop_path="x.png", box=box,
                      landmarks=np.zeros((81, 2), np.float32), score=1.0, frame_box=box, crop_origin=(0, 0))


def test_video_metrics_aggregate_and_choose_a_threshold():
    faces, scores = [], []
    # real video r1: frame 0 has a big face (0.2) and a tiny background face (0.9, ignored: < half the size)
    faces += [_rec("r1", REAL, 0, 100), _rec("r1", REAL, 0, 30), _rec("r1", REAL, 1, 100)]
    scores += [0.2, 0.9, 0.4]  # video = mean(0.2, 0.4) = 0.3
    faces += [_rec("r2", REAL, 0, 100)]
    scores += [0.55]  # a real above 0.5: the 0.5 threshold gets it wrong
    faces += [_rec("f1", FAKE, 0, 100), _rec("f1", FAKE, 1, 100)]
    scores += [0.7, 0.9]  # 0.8
    faces += [_rec("f2", FAKE, 0, 100)]
    scores += [0.6]
    m = video_metrics(faces, np.array(scores))
    assert m["videos"] == 4 and m["real_videos"] == 2 and m["frames"] == 6
    assert m["video_auc"] == 1.0
    assert m["video_acc"] == 0.75  # r2 (0.55) is called fake at 0.5
    assert 0.55 <= m["threshold"] < 0.6  # the accuracy-maximizing cut between r2 and f2
    assert checkpoint_threshold({"val": m}) == m["threshold"]


def test_no_threshold_without_both_classes():
    m = video_metrics([_rec("r1", REAL, 0, 100)], np.array([0.3]))
    assert m["threshold"] is None and m["video_auc"] is None
