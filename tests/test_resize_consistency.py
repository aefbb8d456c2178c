"""Training and test-time scoring must feed the network identically resampled faces."""

import numpy as np
import pytest
import torch

from unmask.data.crops import margin_crop
from unmask.data.records import REAL, FaceRecord
from unmask.evaluate.scoring import to_batch
from unmask.io import atomic_save_png
from unmask.train.data import FaceDataset


@pytest.mark.parametrize("size", [64, 400])  # shrinking (area) and enlarging (bilinear)
def test_validation_faces_equal_scored_faces(tmp_path, size):
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)  # high-frequency content: resampling shows
    path = atomic_save_png(tmp_path / "c.png", crop)
    box = np.array([60, 70, 200, 230], np.float32)
    rec = FaceRecord(item_key="k", dataset="d", video_id="v", label=REAL, method="real", split="val", frame_index=0,
                     face_index=0, crop_path=str(path), box=box, landmarks=np.zeros((81, 2), np.float32), score=1.0,
                     frame_box=box, crop_origin=(0, 0))
    trained = FaceDataset([rec], size, 0.125, augment=False)[0]["image"]
    scored = to_batch([margin_crop(crop, box, None, 0.125).image], size)[0]
    assert trained.shape == (3, size, size)
    assert torch.equal(trained, scored)


@pytest.mark.parametrize("size", [64, 400])
def test_training_pairs_resample_reals_like_scoring(tmp_path, astronaut_rgb, size):
    """The real half of a training pair (fixed 12.5% margin, no augmentation) equals the scored crop."""
    from unmask.data.faces import build_face_detector
    from unmask.evaluate.scoring import resize_crop
    from unmask.synthesis import PairDataset

    face = build_face_detector("dlib_hog").detect(astronaut_rgb)[0]
    path = atomic_save_png(tmp_path / "a.png", astronaut_rgb)
    rec = FaceRecord(item_key="k", dataset="d", video_id="v", label=REAL, method="real", split="train",
                     frame_index=0, face_index=0, crop_path=str(path), box=face.box, landmarks=face.landmarks81,
                     score=face.score, frame_box=face.box, crop_origin=(0, 0))
    from unmask.synthesis import build_synthesizer

    # Transforms on the source only: the real of a pair is the target it was blended onto, untouched here.
    synth = build_synthesizer("sbi", overrides=["transforms.object=source"])
    real = PairDataset([rec], synth, image_size=size, margin=0.125, augment=False).pair(0)["real"]
    scored = resize_crop(margin_crop(astronaut_rgb, face.box, None, 0.125).image, size)
    assert np.array_equal(real, scored)
