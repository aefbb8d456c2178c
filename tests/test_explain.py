"""Grad-CAM on the detector's cam_layer, overlays, and pasting back onto the frame."""

import numpy as np
import pytest
import torch

from unmask.explain.gradcam import frame_heatmap, gradcam_maps, overlay, paste_back


@pytest.fixture(scope="module")
def resnet_detector():
    from unmask.models import build_detector

    torch.manual_seed(0)
    return build_detector("resnet18", pretrained=None, input_size=128).eval()


def test_gradcam_matches_the_closed_form_for_gap_linear_head(resnet_detector, astronaut_rgb):
    """After global average pooling + a linear layer, the gradient of the log-odds (fake - real logit) w.r.t.
    the last feature map is (W_fake - W_real) / (H W) everywhere, so Grad-CAM = relu(sum_k (W_fake,k -
    W_real,k) A_k), min-max scaled and resized."""
    import cv2

    from unmask.evaluate.scoring import to_batch

    det = resnet_detector
    crops = [astronaut_rgb[30:290, 120:380], astronaut_rgb[200:460, 50:310]]
    x = to_batch(crops, det.input_size)
    maps, probs = gradcam_maps(det, x)
    assert maps.shape == (2, 128, 128) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    with torch.no_grad():
        feats = det.net.forward_features(det.normalize(x))  # (2, 512, 4, 4): the cam_layer's output
        fc = det.net.get_classifier().weight.detach()
        w = fc[1] - fc[0]
        expected_probs = torch.softmax(det(x), 1)[:, 1].numpy()
    assert det.cam_layer is det.net.layer4
    assert probs == pytest.approx(expected_probs, abs=1e-5)  # the map explains the score detect prints
    for i in range(2):
        cam = torch.relu(torch.einsum("k,khw->hw", w, feats[i])).numpy()
        cam = (cam - cam.min()) / (cam.max() + 1e-7)
        ref = cv2.resize(cam.astype(np.float32), (128, 128))
        ref = (ref - ref.min()) / (ref.max() + 1e-7)  # scaled again after resizing (multi-layer aggregation)
        assert np.abs(maps[i] - ref).max() < 1e-3
    # the map depends on the image: two different faces give two different maps
    assert np.abs(maps[0] - maps[1]).mean() > 0.01


def test_overlay_and_paste_back_touch_only_the_window(astronaut_rgb):
    frame = astronaut_rgb.copy()
    crop = frame[40:200, 100:260]
    cam = np.zeros((16, 16), np.float32)
    cam[:8] = 1.0  # evidence in the top half only
    ov = overlay(crop, cam, alpha=0.5)
    assert ov.shape == crop.shape
    # JET maps 1 to red and 0 to blue: the top half turns red, the bottom blue
    top, bottom = ov[:60].astype(int), ov[100:].astype(int)
    assert (top[..., 0] - top[..., 2]).mean() > 40 and (bottom[..., 2] - bottom[..., 0]).mean() > 40
    pasted = paste_back(frame, ov, (100, 40, 260, 200))
    assert np.array_equal(pasted[40:200, 100:260], ov)
    outside = np.ones(frame.shape[:2], bool)
    outside[40:200, 100:260] = False
    assert np.array_equal(pasted[outside], frame[outside])
    assert np.array_equal(frame, astronaut_rgb)  # input untouched
    # a patch of another size is resized into the window
    small = paste_back(frame, ov[::2, ::2], (100, 40, 260, 200))
    assert small.shape == frame.shape


def test_frame_heatmap_draws_each_face(astronaut_rgb):
    frame = astronaut_rgb.copy()
    faces = [{"crop": frame[40:200, 100:260], "window": (100, 40, 260, 200), "cam": np.ones((4, 4), np.float32),
              "box": (120, 60, 240, 180), "score": 0.9, "counted": True}]
    out = frame_heatmap(frame, faces)
    assert out.shape == frame.shape
    diff = np.abs(out.astype(int) - frame).sum(axis=2) > 0
    ys, xs = np.nonzero(diff)
    # changes stay within the window (plus the score label drawn above the box)
    assert xs.min() >= 100 and xs.max() < 260 + 100 and ys.max() < 200


def test_box_colour_follows_the_verdicts_threshold(astronaut_rgb):
    """A face scoring 0.4 is called fake at threshold 0.3 (red box) and real at 0.5 (green), as the verdict says."""
    from unmask.explain.gradcam import annotate

    for threshold, colour in ((0.3, (230, 40, 40)), (0.5, (40, 200, 60))):
        frame = np.zeros((200, 200, 3), np.uint8)
        annotate(frame, (50, 80, 150, 180), 0.4, True, threshold)
        assert tuple(int(v) for v in frame[130, 50]) == colour  # on the box's left edge, below the label
