"""Frame/video aggregation: max over faces >= half the largest, mean over frames, 0.5 for no face."""

import pytest

from unmask.evaluate.aggregate import (AggregationConfig, FaceScore, ItemInfo, aggregate, evenly_spaced, frame_score,
                                       no_face_items, video_score)


def test_frame_score_is_max_over_faces_at_least_half_the_largest():
    # sizes 100, 60, 40: the 40 px face (< 50) is ignored even though it scores highest
    assert frame_score([0.2, 0.9, 0.99], [100, 60, 40]) == pytest.approx(0.9)
    # exactly half counts
    assert frame_score([0.2, 0.99], [100, 50]) == pytest.approx(0.99)
    # the largest face always counts, even when it scores lowest
    assert frame_score([0.1], [10]) == pytest.approx(0.1)
    assert frame_score([], []) is None
    # the fraction is a parameter: at 0.3 the 40 px face counts
    assert frame_score([0.2, 0.9, 0.99], [100, 60, 40], min_face_fraction=0.3) == pytest.approx(0.99)


def test_video_score_is_mean_over_frames_with_faces_and_half_without():
    assert video_score([0.2, 0.4, None, 0.9]) == (pytest.approx(0.5), 3)
    assert video_score([None, None]) == (0.5, 0)
    assert video_score([], no_face_score=0.3) == (0.3, 0)


def test_evenly_spaced_keeps_first_and_last():
    assert evenly_spaced(list(range(10)), 4) == [0, 3, 6, 9]
    assert evenly_spaced([5, 1, 3], 32) == [1, 3, 5]
    assert evenly_spaced(list(range(100)), 0) == list(range(100))


def _faces():
    return [
        # video a (fake): frame 0 two faces (big 0.3, small 0.95 ignored), frame 10 one face 0.7
        FaceScore("a", 0, 0, 120.0, 0.3), FaceScore("a", 0, 1, 40.0, 0.95), FaceScore("a", 10, 0, 110.0, 0.7),
        # video b (real): two faces of similar size -> max
        FaceScore("b", 5, 0, 100.0, 0.1), FaceScore("b", 5, 1, 90.0, 0.4),
    ]


def _items():
    return [ItemInfo("a", 1, "Deepfakes"), ItemInfo("b", 0, "real"), ItemInfo("c", 1, "FaceSwap")]


def test_video_level_units():
    units = aggregate(_faces(), _items(), AggregationConfig(level="video"))
    by = {u.item: u for u in units}
    assert [u.item for u in units] == ["a", "b", "c"]
    assert by["a"].score == pytest.approx((0.3 + 0.7) / 2) and by["a"].n_frames == 2 and by["a"].n_faces == 2
    assert by["b"].score == pytest.approx(0.4)
    assert by["c"].score == 0.5 and by["c"].no_face and by["c"].n_frames == 0
    assert no_face_items(_faces(), _items()) == ["c"]


def test_frame_level_units_leave_out_no_face_items():
    units = aggregate(_faces(), _items(), AggregationConfig(level="frame"))
    assert [(u.item, u.frame_index, u.score) for u in units] == [("a", 0, 0.3), ("a", 10, 0.7), ("b", 5, 0.4)]
    assert not any(u.no_face for u in units)


def test_num_frames_subsamples_evenly():
    faces = [FaceScore("v", i, 0, 100.0, float(i)) for i in range(10)]
    units = aggregate(faces, [ItemInfo("v", 1)], AggregationConfig(num_frames=4))
    assert units[0].n_frames == 4
    assert units[0].score == pytest.approx((0 + 3 + 6 + 9) / 4)


def test_weak_detections_count_only_without_a_sure_face():
    """HOG's false positive (detector score 0.06, larger than the real face) beside a real face (1.1) must not
    decide the frame; a frame whose only detections are weak still gets a score from them."""
    from unmask.evaluate.aggregate import counted_faces

    scores, sizes = [0.06, 0.51], [88.0, 105.0]
    assert frame_score(scores, sizes, confidences=[1.1, 0.06]) == pytest.approx(0.06)
    assert counted_faces(sizes, 0.5, [1.1, 0.06]).tolist() == [True, False]
    assert frame_score(scores, sizes) == pytest.approx(0.51)  # without confidences: the size rule alone
    assert frame_score([0.3, 0.7], [50.0, 60.0], confidences=[0.05, 0.02]) == pytest.approx(0.7)  # all weak
    # the half-size rule is relative to the largest sure face, not to a larger weak one
    assert counted_faces([40.0, 60.0, 200.0], 0.5, [1.0, 0.9, 0.01]).tolist() == [True, True, False]
    assert counted_faces([40.0, 60.0], 0.5, [None, 0.01]).tolist() == [True, False]  # unknown = sure
