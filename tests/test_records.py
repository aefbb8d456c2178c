"""Record helpers every stage relies on."""

import numpy as np

from unmask.data.records import FAKE, FaceRecord, ManifestRow


def _face(frame_box, box):
    return FaceRecord(item_key="k", dataset="d", video_id="v", label=FAKE, method="m", split=None, frame_index=0,
                      face_index=0, crop_path="x.png", box=np.array(box, np.float32),
                      landmarks=np.zeros((81, 2), np.float32), score=1.0,
                      frame_box=np.array(frame_box, np.float32), crop_origin=(0, 0))


def test_box_size_is_measured_in_frame_pixels():
    # a crop stored at half scale must not halve the size the half-size rule compares
    rec = _face(frame_box=[100, 100, 300, 180], box=[10, 10, 110, 50])
    assert np.isclose(rec.box_size, (200 * 80) ** 0.5)


def test_manifest_key_is_filesystem_safe_and_stable():
    row = ManifestRow(dataset="ffpp", video_id="01_02__meeting serious", label=FAKE, method="DeepFakeDetection",
                      source="/x.mp4", compression="c23")
    assert row.key == "ffpp/DeepFakeDetection/c23/01_02__meeting_serious"
    assert ManifestRow.from_json(row.to_json()) == row
