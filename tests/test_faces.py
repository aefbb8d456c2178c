"""Face detection + landmarks (real dlib models) and the 81-point construction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from unmask.data.faces import FACE_DETECTORS, Face, build_face_detector, landmarks_81, sort_faces
from unmask.errors import UnmaskError

# Where the astronaut's face is (found by eye on skimage.data.astronaut(): forehead to chin, ear to ear).
ASTRONAUT_FACE = (170, 70, 280, 185)


@pytest.fixture(scope="module")
def hog():
    return build_face_detector("dlib_hog")


@pytest.fixture(scope="module")
def astronaut_face(hog, astronaut_rgb) -> Face:
    faces = hog.detect(astronaut_rgb)
    assert len(faces) == 1
    return faces[0]


def _inside(points: np.ndarray, box, slack: float = 0.0) -> np.ndarray:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return ((points[:, 0] >= x0 - slack * w) & (points[:, 0] <= x1 + slack * w)
            & (points[:, 1] >= y0 - slack * h) & (points[:, 1] <= y1 + slack * h))


@pytest.mark.parametrize("name", sorted(FACE_DETECTORS))
def test_every_registered_detector_finds_the_astronaut(name, astronaut_rgb):
    from unmask.data.mtcnn import MissingOptionalDependency

    try:
        det = build_face_detector(name)
    except MissingOptionalDependency as exc:  # an optional detector (mtcnn) that is not installed here
        pytest.skip(str(exc))
    faces = det.detect(astronaut_rgb)
    assert len(faces) == 1, f"{name} found {len(faces)} faces"
    f = faces[0]
    assert f.box.shape == (4,) and f.landmarks68.shape == (68, 2) and f.landmarks81.shape == (81, 2)
    assert f.landmarks68.dtype == np.float32
    # The box centre lies in the known face region and the box is face-sized.
    cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
    assert fx0 < cx < fx1 and fy0 < cy < fy1
    assert 50 < f.box[2] - f.box[0] < 160
    assert _inside(f.landmarks68, ASTRONAUT_FACE).all()


def test_landmarks_are_anatomically_ordered(astronaut_face):
    lm = astronaut_face.landmarks68
    eyes_y = lm[36:48, 1].mean()
    assert lm[17:27, 1].mean() < eyes_y < lm[30, 1] < lm[48:68, 1].mean() < lm[8, 1]  # brows, eyes, nose, mouth, chin
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean()  # image-left eye first (dlib order)


def test_landmarks_fall_inside_their_boxes(hog, ffpp_root):
    """Every detected face on real FF++ frames: landmarks inside the box (HOG boxes are tight: allow 30%)."""
    from unmask.data.media import sample_video_frames

    videos = sorted((ffpp_root / "original_sequences" / "youtube" / "c40" / "videos").glob("*.mp4"))[:3]
    n_faces = 0
    for v in videos:
        for _, rgb in sample_video_frames(v, 3).frames:
            for f in hog.detect(rgb):
                n_faces += 1
                assert _inside(f.landmarks68, f.box, slack=0.3).all()
                assert _inside(f.landmarks68, f.box).mean() > 0.6
                h, w = rgb.shape[:2]
                assert (f.box >= 0).all() and f.box[2] <= w and f.box[3] <= h
    assert n_faces >= 7  # 3 videos x 3 frames, one face each, a miss or two tolerated


def test_faces_sorted_by_size(hog, astronaut_rgb):
    """Two faces in one frame (the astronaut twice, the second at 1.6x): the larger comes first."""
    face = astronaut_rgb[40:220, 130:320]
    big = cv2.resize(face, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    canvas = np.full((big.shape[0] + 40, face.shape[1] + big.shape[1] + 60, 3), 128, np.uint8)
    canvas[20:20 + face.shape[0], 20:20 + face.shape[1]] = face
    canvas[20:20 + big.shape[0], 40 + face.shape[1]:40 + face.shape[1] + big.shape[1]] = big
    faces = hog.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].box[0] > faces[1].box[0]  # the big copy is on the right
    assert [f.area for f in sort_faces(list(reversed(faces)))] == [f.area for f in faces]


def _face(side: float, score: float) -> Face:
    return Face(box=np.array([0, 0, side, side], np.float32), score=score, landmarks68=np.zeros((68, 2), np.float32))


def test_weak_detections_rank_after_confident_ones():
    big_weak, small_sure, mid_sure = _face(200, 0.01), _face(50, 1.0), _face(80, 0.3)
    assert sort_faces([big_weak, small_sure, mid_sure]) == [mid_sure, small_sure, big_weak]
    small_weak = _face(40, 0.05)
    assert sort_faces([small_weak, big_weak]) == [big_weak, small_weak]  # only weak ones: by size


def test_detects_small_face_in_large_frame_via_fallback(hog, astronaut_rgb):
    """A 90 px face in a 2400 px frame is ~24 px at the 640 px detection scale: the full-size retry finds it."""
    canvas = np.full((1800, 2400, 3), 90, np.uint8)
    canvas[900:1412, 1500:2012] = astronaut_rgb
    faces = hog.detect(canvas)
    assert len(faces) >= 1
    cx = (faces[0].box[0] + faces[0].box[2]) / 2
    assert 1500 + 170 < cx < 1500 + 280
    assert hog.stats["retries"] >= 1


def test_no_face_in_blank_and_noise(hog):
    rng = np.random.default_rng(0)
    assert hog.detect(np.zeros((240, 320, 3), np.uint8)) == []
    assert hog.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


def test_unknown_detector_is_a_one_line_error():
    with pytest.raises(UnmaskError, match="unknown face detector"):
        build_face_detector("nope")


def test_detect_rejects_non_rgb(hog):
    with pytest.raises(ValueError):
        hog.detect(np.zeros((10, 10), np.uint8))


def test_models_located_without_importing_face_recognition_models():
    code = (
        "import sys; from unmask.data.faces import build_face_detector, dlib_model_path; "
        "build_face_detector('dlib_hog'); "
        "assert dlib_model_path().name == 'shape_predictor_68_face_landmarks.dat'; "
        "assert 'face_recognition_models' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# --- the 81-point construction ----------------------------------------------------------------------


def test_landmarks81_keeps_68_and_adds_13_forehead_points(astronaut_face):
    lm68 = astronaut_face.landmarks68
    lm81 = landmarks_81(lm68)
    assert lm81.shape == (81, 2) and lm81.dtype == np.float32
    np.testing.assert_allclose(lm81[:68], lm68)
    forehead = lm81[68:]
    # Left to right (image x increases along the arc) between the jaw tops.
    assert (np.diff(forehead[:, 0]) > 0).all()
    assert lm68[0, 0] < forehead[0, 0] and forehead[-1, 0] < lm68[16, 0]
    # The middle of the arc is above the brows; the whole arc is above the jaw tops.
    assert forehead[3:10, 1].max() < lm68[17:27, 1].min()
    assert (forehead[:, 1] < max(lm68[0, 1], lm68[16, 1])).all()
    # The top of the arc is less than a face height above the brows (it stays on the forehead).
    face_h = lm68[8, 1] - lm68[17:27, 1].min()
    assert lm68[17:27, 1].min() - forehead[:, 1].min() < 0.8 * face_h


def test_landmarks81_hull_contains_the_68_hull(astronaut_face):
    lm81 = astronaut_face.landmarks81
    hull = cv2.convexHull(lm81.astype(np.float32))
    for p in astronaut_face.landmarks68:
        assert cv2.pointPolygonTest(hull, (float(p[0]), float(p[1])), True) >= -1e-3
    area68 = cv2.contourArea(cv2.convexHull(astronaut_face.landmarks68))
    assert cv2.contourArea(hull) > 1.2 * area68


def test_landmarks81_is_equivariant_to_similarity_transforms(astronaut_face):
    lm68 = astronaut_face.landmarks68.astype(np.float64)
    ang = np.deg2rad(25.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    scale, shift = 1.7, np.array([31.0, -12.0])

    def tf(p):
        return (p @ rot.T) * scale + shift

    np.testing.assert_allclose(landmarks_81(tf(lm68))[68:], tf(landmarks_81(lm68)[68:].astype(np.float64)),
                               atol=1e-3)


def test_landmarks81_mirrors_under_horizontal_flip(astronaut_face):
    """Flipping the 68 points (and relabelling them) flips the forehead arc and reverses its order."""
    lm68 = astronaut_face.landmarks68.astype(np.float64)
    flipped = lm68.copy()
    flipped[:, 0] = 500.0 - flipped[:, 0]
    # dlib's mirror permutation for the jaw: i <-> 16 - i; the arc only uses points 0, 8, 16.
    relabel = flipped.copy()
    relabel[:17] = flipped[:17][::-1]
    expected = landmarks_81(lm68)[68:].astype(np.float64)
    expected[:, 0] = 500.0 - expected[:, 0]
    np.testing.assert_allclose(landmarks_81(relabel)[68:], expected[::-1], atol=1e-3)


def test_landmarks81_rejects_wrong_shape():
    with pytest.raises(ValueError):
        landmarks_81(np.zeros((5, 2)))


@pytest.mark.parametrize("scale", [0.9, 0.5, 0.42, 0.3, 0.17])
def test_detection_downscale_keeps_coordinates(scale):
    from unmask.data.faces import downscale

    g = np.zeros((720, 1280), np.uint8)
    g[100:300, 200:400] = 255
    small, sx, sy = downscale(g, scale)
    assert abs(small.shape[1] - 1280 * scale) <= 8 and abs(small.shape[0] - 720 * scale) <= 8
    ys, xs = np.nonzero(small > 128)
    # The bright square maps back onto itself within a (downscaled) pixel.
    assert abs(xs.min() / sx - 200) <= 1.5 / sx and abs(ys.min() / sy - 100) <= 1.5 / sy
    assert abs((xs.max() + 1) / sx - 400) <= 1.5 / sx and abs((ys.max() + 1) / sy - 300) <= 1.5 / sy


def test_search_region_covers_the_widened_boxes_and_clamps():
    from unmask.data.faces import search_region

    box = np.array([400.0, 200.0, 500.0, 320.0])  # side 120 -> 60 px per side at margin 0.5
    assert search_region([box], (720, 1280), margin=0.5) == (340, 140, 560, 380)
    assert search_region([np.array([10.0, 10.0, 110.0, 110.0])], (720, 1280), margin=0.5) == (0, 0, 160, 160)
    two = search_region([box, np.array([800.0, 300.0, 880.0, 380.0])], (720, 1280), margin=0.5)
    assert two == (340, 140, 920, 420)  # one region covering both
    assert search_region([np.array([0.0, 0.0, 600.0, 600.0])], (720, 1280), margin=0.5) is None  # most of it


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _astronaut_scene(astronaut_rgb) -> np.ndarray:
    """The astronaut pasted at 2x into a 720p frame, face near (640, 300)."""
    big = cv2.resize(astronaut_rgb, (1024, 1024))
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[:, 128:1152] = big[100:820]
    return frame


def test_region_hint_finds_the_same_face(astronaut_rgb):
    det = build_face_detector("dlib_hog")
    frame = _astronaut_scene(astronaut_rgb)
    ref = det.detect(frame)
    assert len(ref) == 1
    side = float(ref[0].box[2] - ref[0].box[0])
    before = det.stats.get("roi", 0)
    hinted = det.detect(frame, min_face=0.85 * side, near=[ref[0].box + 10])  # the face moved a little
    assert det.stats.get("roi", 0) == before + 1  # scanned only the region around the hint
    assert len(hinted) == 1 and _iou(hinted[0].box, ref[0].box) > 0.6
    assert np.abs(hinted[0].landmarks68 - ref[0].landmarks68).mean() < 0.03 * side


@pytest.mark.parametrize("shift", [0.0, 0.9])
def test_region_hint_away_from_the_face_falls_back_to_the_whole_frame(astronaut_rgb, shift):
    """A hint where the face is not (shift 0: far away; 0.9: the region's edge cuts the face): the face is still
    found whole, by the full-frame pass."""
    det = build_face_detector("dlib_hog")
    frame = _astronaut_scene(astronaut_rgb)
    ref = det.detect(frame)[0]
    side = float(ref.box[2] - ref.box[0])
    near = ref.box + np.array([-shift, 0, -shift, 0]) * side if shift else np.array([20.0, 500, 120, 600])
    rejected = det.stats.get("roi_rejected", 0)
    got = det.detect(frame, min_face=0.85 * side, near=[near])
    assert len(got) == 1
    np.testing.assert_array_equal(got[0].box, ref.box)  # what the unhinted pass finds
    if shift:  # the region pass saw a face at its edge (cut) and was not trusted
        assert det.stats["roi_rejected"] == rejected + 1


def test_pipeline_gives_no_hints_to_a_detector_that_takes_none(astronaut_rgb):
    from unmask.data.prepare import FacePipeline

    class Plain:
        name = "plain"

        def __init__(self):
            self.inner = build_face_detector("dlib_hog")
            self.calls = 0

        def detect(self, rgb):  # no min_face / near
            self.calls += 1
            return self.inner.detect(rgb)

    pipe = FacePipeline(Plain())
    pipe.start_video()
    for _ in range(3):
        assert len(pipe.faces(astronaut_rgb)) == 1
    pipe.end_video()
    assert pipe.detector.calls == 3


# --- faces HOG misses as they are: tight crops, small images, face-crop datasets (issue 8, item 7) ----------


def _cut(rgb: np.ndarray, box, ratio: float, px: int, shift=(0.0, 0.0)):
    """A px x px square cut centred on ``box`` (plus ``shift`` box sides), side ``ratio`` x the box's longer side
    (ratio < 1: the face fills the image and reaches past its borders); returns (image, box mapped into it)."""
    cx, cy = (box[0] + box[2]) / 2 + shift[0] * (box[2] - box[0]), (box[1] + box[3]) / 2 + shift[1] * (box[3] - box[1])
    s = px / (ratio * max(box[2] - box[0], box[3] - box[1]))
    m = np.array([[s, 0, px / 2 - s * cx], [0, s, px / 2 - s * cy]])
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    img = cv2.warpAffine(rgb, m, (px, px), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    mapped = np.array([box[0] * s + m[0, 2], box[1] * s + m[1, 2], box[2] * s + m[0, 2], box[3] * s + m[1, 2]])
    return np.ascontiguousarray(img), mapped


def _found(faces, ref_box) -> bool:
    return any(_iou(f.box, ref_box) > 0.3 for f in faces)


def test_tight_256_crop_gets_a_face(hog, astronaut_face, astronaut_rgb):
    """The face fills a 256 px image and touches every border (cut at 0.8x HOG's box): HOG alone sees no
    background around it; the padded retry finds it, with landmarks close to the full-image ones."""
    img, ref = _cut(astronaut_rgb, astronaut_face.box, 0.8, 256)
    faces = hog.detect(img)
    assert _found(faces, ref)
    f = max(faces, key=lambda g: _iou(g.box, ref))
    assert (f.box >= 0).all() and (f.box <= 256).all()  # clipped back into the image
    s = 256 / (0.8 * float(max(astronaut_face.box[2:] - astronaut_face.box[:2])))
    c = (astronaut_face.box[:2] + astronaut_face.box[2:]) / 2
    expected = (astronaut_face.landmarks68 - c) * s + 128
    assert np.linalg.norm(f.landmarks68 - expected, axis=1).mean() < 0.06 * (ref[2] - ref[0])
    assert f.fallback is None


@pytest.mark.parametrize("px, ratio", [(100, 2.0), (64, 1.5)])
def test_small_face_image_gets_a_face(hog, astronaut_face, astronaut_rgb, px, ratio):
    """A 100 px image with a ~50 px face, a 64 px one with a ~43 px face: below HOG's ~80 px minimum until the
    retry upsamples the image."""
    img, ref = _cut(astronaut_rgb, astronaut_face.box, ratio, px)
    faces = hog.detect(img)
    assert _found(faces, ref)
    f = max(faces, key=lambda g: _iou(g.box, ref))
    assert _inside(f.landmarks68, ref, slack=0.3).mean() > 0.9


def test_tight_and_small_crops_of_ffpp_frames(hog, ffpp_root):
    """The same on real FF++ frames: faces filling (0.75x) a 256 px image, and 64 px images of a 40-50 px face."""
    from unmask.data.media import sample_video_frames

    ref_det = build_face_detector("dlib_hog", detect_max_side=0, pad=0, small_side=0)
    videos = sorted((ffpp_root / "original_sequences" / "youtube" / "c40" / "videos").glob("*.mp4"))[:6]
    found = {"tight": 0, "small": 0}
    n = 0
    for v in videos:
        for _, rgb in sample_video_frames(v, 2).frames:
            ref = [f for f in ref_det.detect(rgb) if f.score >= 0.1]
            if not ref:
                continue
            n += 1
            img, box = _cut(rgb, ref[0].box, 0.75, 256)
            found["tight"] += _found(hog.detect(img), box)
            img, box = _cut(rgb, ref[0].box, 1.4, 64)
            found["small"] += _found(hog.detect(img), box)
    assert n >= 10
    assert found["tight"] >= 0.8 * n and found["small"] >= 0.8 * n, (found, n)


def test_context_retry_can_be_turned_off_and_costs_nothing_when_a_face_is_found(astronaut_face, astronaut_rgb):
    plain = build_face_detector("dlib_hog", pad=0, small_side=0)
    img, ref = _cut(astronaut_rgb, astronaut_face.box, 0.8, 256)
    assert not _found(plain.detect(img), ref) and plain.stats["context_retries"] == 0
    det = build_face_detector("dlib_hog")
    det.detect(astronaut_rgb)
    assert det.stats["context_retries"] == 0  # found on the first pass: no retry
    with pytest.raises(UnmaskError):
        build_face_detector("dlib_hog", pad=-1)


def test_whole_image_face_only_for_face_sized_images(astronaut_face, astronaut_rgb):
    from unmask.data.faces import whole_image_face

    img, ref = _cut(astronaut_rgb, astronaut_face.box, 0.6, 256)  # too tight even for the padded retry
    f = whole_image_face(img)
    assert f is not None and f.fallback == "whole_image" and f.score == 0.0
    np.testing.assert_array_equal(f.box, [0, 0, 256, 256])
    assert f.landmarks68.shape == (68, 2) and _inside(f.landmarks68, (0, 0, 256, 256), slack=0.1).all()
    assert f.landmarks81.shape == (81, 2)
    assert whole_image_face(np.zeros((300, 1280, 3), np.uint8)) is None  # a strip, not a face crop
    assert whole_image_face(np.zeros((1440, 1440, 3), np.uint8)) is None  # a whole frame, not a face crop


def test_crop_fallback_only_where_the_adapter_says_face_crops(tmp_path, astronaut_face, astronaut_rgb):
    """One face image HOG cannot find (cut at 0.6x its box), laid out as WildDeepfake (face crops by declaration),
    as a generic dataset (not), and as a generic dataset with face_crops=true: only the first and last take the
    whole image as the face, and say so in the record."""
    from unmask.data.adapters import list_items
    from unmask.data.prepare import FacePipeline, PrepareOptions, init_store, process_item

    img, _ = _cut(astronaut_rgb, astronaut_face.box, 0.6, 256)
    assert build_face_detector("dlib_hog").detect(img) == []
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    wdf = tmp_path / "wdf"
    (wdf / "fake_test" / "7" / "seq1").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(wdf / "fake_test" / "7" / "seq1" / f"{i}.png"), bgr)
    gen = tmp_path / "gen"
    (gen / "fake").mkdir(parents=True)
    cv2.imwrite(str(gen / "fake" / "a.png"), bgr)

    pipe = FacePipeline("dlib_hog")
    opts = PrepareOptions(frames=2)
    out = {}
    for name, root, extra in (("wilddeepfake", wdf, {}), ("generic", gen, {}),
                              ("generic_fc", gen, {"face_crops": "true"})):
        rows = list_items(name.split("_")[0], root, **extra)
        assert len(rows) == 1
        init_store(tmp_path / f"store_{name}", opts)
        out[name] = process_item(rows[0], tmp_path / f"store_{name}", opts, pipe)
    wd = out["wilddeepfake"]
    assert wd["status"] == "ok" and wd["fallback_frames"] == 2
    assert all(f["faces"][0]["fallback"] == "whole_image" for f in wd["frames"])
    assert out["generic"]["status"] == "no_face" and "fallback_frames" not in out["generic"]
    assert out["generic_fc"]["status"] == "ok"
    assert out["generic_fc"]["frames"][0]["faces"][0]["fallback"] == "whole_image"
    from unmask.data.store import PreparedStore

    assert [f.fallback for f in PreparedStore(tmp_path / "store_wilddeepfake").faces()] == ["whole_image"] * 2
    # A detected face is never marked.
    rows = list_items("generic", gen, face_crops="true")
    cv2.imwrite(str(gen / "fake" / "a.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    rec = process_item(rows[0], tmp_path / "store_detected", opts, pipe)
    assert rec["status"] == "ok" and "fallback" not in rec["frames"][0]["faces"][0]


def test_items_are_face_crops_is_declared_never_guessed(tmp_path, astronaut_rgb):
    """Per adapter (wilddeepfake), per generic run (face_crops option) or per CSV row (face_crops column)."""
    from unmask.data.adapters import FACE_CROP_ADAPTERS, items_are_face_crops, list_items

    assert FACE_CROP_ADAPTERS == {"wilddeepfake"}  # every other benchmark ships whole frames
    (tmp_path / "fake").mkdir()
    cv2.imwrite(str(tmp_path / "fake" / "a.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "fake" / "b.png"), cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2BGR))
    assert not any(items_are_face_crops(r) for r in list_items("generic", tmp_path))
    assert all(items_are_face_crops(r) for r in list_items("generic", tmp_path, face_crops="true"))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,face_crops\nfake/a.png,1,true\nfake/b.png,1,false\n")
    flags = {Path(r.source).name: items_are_face_crops(r) for r in list_items("generic", csv)}
    assert flags == {"a.png": True, "b.png": False}
    with pytest.raises(UnmaskError, match="face_crops"):
        list_items("generic", tmp_path, face_crops="maybe")


def test_a_missing_optional_detector_is_a_one_line_error_before_any_work(tmp_path, monkeypatch):
    """mtcnn without facenet-pytorch (made invisible here): a one-line error naming the install, from the
    builder and from prepare before a store or a worker exists."""
    import importlib.util

    from unmask.data.faces import check_face_detector
    from unmask.data.mtcnn import MissingOptionalDependency
    from unmask.data.prepare import PrepareOptions, run_prepare

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "facenet_pytorch" else real_find_spec(name, *a))
    for call in (lambda: check_face_detector("mtcnn"), lambda: build_face_detector("mtcnn")):
        with pytest.raises(MissingOptionalDependency, match="pip install --no-deps facenet-pytorch") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(UnmaskError, match="facenet-pytorch"):
        run_prepare([], tmp_path / "store", PrepareOptions(detector="mtcnn", workers=2), progress=False)
    assert not (tmp_path / "store").exists()
