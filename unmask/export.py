"""ONNX export of a Detector, and the check that ONNX Runtime computes what torch computes.

The exported graph is the whole Detector: input ``image`` float32 (N, 3, S, S) in [0, 1] (normalization is
inside, as in torch), output ``logits`` (N, 2); the batch axis is dynamic. The fake probability is
``softmax(logits)[:, 1]``. The model's meta (backbone, input size, labels) is stored in the ONNX file's
``metadata_props`` so a consumer needs nothing else.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from unmask.errors import UnmaskError
from unmask.io import atomic_write_bytes

DEFAULT_OPSET = 17


def _logits_only(detector):
    import torch

    class LogitsOnly(torch.nn.Module):
        """``x -> detector(x)``: a one-argument forward, so tracing sees no Python flags."""

        def __init__(self, det) -> None:
            super().__init__()
            self.det = det

        def forward(self, x):
            return self.det(x)

    return LogitsOnly(detector).eval()


def export_onnx(detector, path: str | Path, opset: int = DEFAULT_OPSET, meta: dict | None = None) -> Path:
    """Trace ``detector`` to ONNX at ``path`` (atomic write) with a dynamic batch axis."""
    import io

    import onnx
    import torch

    detector = detector.eval().cpu()
    size = int(detector.input_size)
    dummy = torch.rand(2, 3, size, size)
    buf = io.BytesIO()
    # The TorchScript-based exporter: the torch.export-based one needs onnxscript, which is not a dependency.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_logits_only(detector), (dummy,), buf, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    info = {"input": "image: float32 (N, 3, S, S) RGB in [0, 1]", "output": "logits (N, 2); fake = softmax[:, 1]",
            "labels": json.dumps(["real", "fake"]), "input_size": str(size)}
    for k, v in (meta or {}).items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            info[str(k)] = str(v)
    for k, v in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    return atomic_write_bytes(path, model.SerializeToString())


def onnx_logits(path: str | Path, batch: np.ndarray) -> np.ndarray:
    """Run the exported model with ONNX Runtime (CPU) on a float32 (N, 3, S, S) batch."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"image": np.ascontiguousarray(batch, dtype=np.float32)})[0]


def reference_crop(size: int) -> np.ndarray:
    """A real face crop for the agreement check: skimage's astronaut, dlib face, 12.5% margin, resized.

    Falls back to a centre crop of the portrait if no face is found (it always is on this image).
    """
    from skimage import data

    from unmask.data.crops import margin_crop
    from unmask.evaluate.scoring import TEST_MARGIN, resize_crop

    rgb = np.ascontiguousarray(data.astronaut())
    try:
        from unmask.data.faces import build_face_detector

        faces = build_face_detector("dlib_hog").detect(rgb)
    except UnmaskError:
        faces = []
    crop = margin_crop(rgb, faces[0].box, None, TEST_MARGIN).image if faces else rgb[40:300, 120:380]
    return resize_crop(crop, size)


def check_agreement(detector, path: str | Path, crops: list[np.ndarray] | None = None) -> dict:
    """Torch vs ONNX Runtime on real crops (default: the astronaut face, and it flipped): max |diff|.

    Returns logits and fake probabilities from both and the largest absolute differences.
    """
    import torch

    from unmask.evaluate.scoring import to_batch

    size = int(detector.input_size)
    if crops is None:
        c = reference_crop(size)
        crops = [c, np.ascontiguousarray(c[:, ::-1])]
    x = to_batch(crops, size)
    detector = detector.eval().cpu()
    with torch.no_grad():
        t_logits = detector(x).float().numpy()
    o_logits = onnx_logits(path, x.numpy())
    t_prob = torch.softmax(torch.from_numpy(t_logits), 1)[:, 1].numpy()
    o_prob = torch.softmax(torch.from_numpy(o_logits), 1)[:, 1].numpy()
    return {
        "batch": int(x.shape[0]),
        "torch_logits": t_logits.tolist(),
        "onnx_logits": o_logits.tolist(),
        "torch_fake_prob": t_prob.tolist(),
        "onnx_fake_prob": o_prob.tolist(),
        "max_abs_diff_logits": float(np.abs(t_logits - o_logits).max()),
        "max_abs_diff_prob": float(np.abs(t_prob - o_prob).max()),
    }
