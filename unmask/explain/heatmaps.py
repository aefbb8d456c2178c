"""Heat-map frames for a scored file: the frames with each face's Grad-CAM overlay pasted back, boxes drawn.

Why a library module: ``unmask detect --heatmaps`` writes them as PNG files and ``unmask serve`` keeps them in
its own result store; both must draw exactly the same picture from the same ``MediaResult`` (scored with
``keep_images=True``), so the drawing lives here and each caller only decides where the pixels go.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def heatmap_name(path: Path, frame_index: int, kind: str) -> str:
    """``clip_mp4_f00012.png`` for a video frame, ``face_png.png`` for an image (what ``detect`` writes)."""
    base = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if path.suffix else path.stem
    return f"{base}.png" if kind == "image" else f"{base}_f{frame_index:05d}.png"


def heatmap_frames(result, detector, max_frames: int = 0, batch_size: int = 16,
                   threshold: float = 0.5) -> list[tuple[int, str, np.ndarray]]:
    """``(frame index, suffix, RGB uint8 image)`` per scored frame: the Grad-CAM overlay of every face
    (counted or not) with suffix ``""``, and, for archs with ``anomaly_maps`` such as SOLA, a second image of
    those maps with suffix ``"_anomaly"``. ``max_frames`` > 0 keeps that many evenly spaced scored frames.
    ``threshold``: the verdict's, so a box is red exactly when its face's score would be called fake."""
    from unmask.evaluate.aggregate import evenly_spaced
    from unmask.evaluate.scoring import to_batch
    from unmask.explain.anomaly import anomaly_heatmaps, has_anomaly_maps
    from unmask.explain.gradcam import frame_heatmap, gradcam_maps

    frames = [fr for fr in result.frames if fr.faces]
    keep = set(evenly_spaced([fr.index for fr in frames], max_frames))
    frames = [fr for fr in frames if fr.index in keep]
    keys = [(fr.index, f.face_index) for fr in frames for f in fr.faces]
    cams, anomalies = {}, {}
    device = next(detector.parameters()).device
    for i in range(0, len(keys), batch_size):
        chunk = keys[i:i + batch_size]
        batch = to_batch([result.crops[k] for k in chunk], detector.input_size).to(device)
        maps, _ = gradcam_maps(detector, batch)
        cams.update(zip(chunk, maps))
        if has_anomaly_maps(detector):  # SOLA: its second-order anomaly maps too
            anomalies.update(zip(chunk, anomaly_heatmaps(detector, batch)))
    out = []
    for fr in frames:
        for suffix, source in (("", cams), ("_anomaly", anomalies)):
            if not source:
                continue
            faces = [{"crop": result.crops[(fr.index, f.face_index)], "window": f.window,
                      "cam": source[(fr.index, f.face_index)], "box": f.box, "score": f.score, "counted": f.counted}
                     for f in fr.faces]
            out.append((fr.index, suffix, frame_heatmap(result.frame_images[fr.index], faces, threshold=threshold)))
    return out


def write_heatmaps(result, detector, out_dir: Path, max_frames: int = 0, batch_size: int = 16,
                   threshold: float = 0.5) -> list[str]:
    """``heatmap_frames`` written as PNGs into ``out_dir`` (atomically), named by ``heatmap_name``; the paths."""
    from unmask.io import atomic_save_png

    written = []
    for index, suffix, img in heatmap_frames(result, detector, max_frames, batch_size, threshold):
        name = heatmap_name(Path(result.path), index, result.kind)
        path = Path(out_dir) / (name[:-len(".png")] + suffix + ".png")
        atomic_save_png(path, img, compression=3)
        written.append(str(path))
    return written


__all__ = ["heatmap_frames", "heatmap_name", "write_heatmaps"]
