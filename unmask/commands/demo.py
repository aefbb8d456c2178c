"""The main job, end to end, on the embedded default face: no dataset, no download, a few minutes on a CPU.

Input: scikit-image's astronaut portrait (Eileen Collins, NASA, public domain), which ships inside an
installed package. The demo runs every stage of unmask on it, with the same code a benchmark goes through:

  1. video     a 4 s pan-and-zoom clip is encoded from the portrait (a real H.264 video on disk);
  2. prepare   the clip goes through `unmask prepare` (seek-sampled frames, dlib faces, 81 landmarks, crops);
  3. inspect   the prepared faces are drawn with boxes and landmarks (faces.png);
  4. synth     a gallery of BBMG pseudo-fakes made from those faces (synth_bbmg.png);
  5. train     `unmask train` with the tiny SBI profile (EfficientNet-Lite0, offline ImageNet weights, 128 px)
               on the clip's faces: real faces vs their self-blended pseudo-fakes;
  6. detect    `unmask detect` scores the original portrait and a held-out BBMG pseudo-fake of it (a different
               seed from any training draw), with Grad-CAM heat maps pasted back onto the images.

One identity and a few dozen steps make a pipeline check, not a detector: the scores show that the stages
connect, not how well a trained model generalizes (see README: reproducing the papers). Everything lands in
--out; running the demo again resumes (finished stages are skipped).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from unmask.cli import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="unmask-demo", help="output folder (default: ./unmask-demo)")
    parser.add_argument("--steps", type=int, default=24,
                        help="training steps of 8 real + 8 pseudo-fake faces (default 24; 0 = skip training)")
    parser.add_argument("--checkpoint", default=None,
                        help="score with this checkpoint (file or run dir) instead of the demo's own training")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled from the demo clip (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-fake drawn for detection")


def write_clip(rgb: np.ndarray, path: Path, seconds: float = 4.0, fps: int = 25, size: int = 384) -> Path:
    """Encode a slow pan-and-zoom over ``rgb`` as H.264, written atomically (temp file + rename)."""
    import av
    import cv2

    from unmask.io import atomic_write_bytes

    h, w = rgb.shape[:2]
    frames = int(seconds * fps)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": "25"}
        for i in range(frames):
            t = i / max(frames - 1, 1)
            zoom = 1.0 + 0.25 * math.sin(math.pi * t)  # in, then out again
            side = min(h, w) / zoom
            cx = w / 2 + 0.08 * w * math.sin(2 * math.pi * t)
            cy = h / 2 - 0.05 * h * math.cos(2 * math.pi * t)
            x0 = int(np.clip(cx - side / 2, 0, w - side))
            y0 = int(np.clip(cy - side / 2, 0, h - side))
            crop = rgb[y0:y0 + int(side), x0:x0 + int(side)]
            frame = av.VideoFrame.from_ndarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return path


def held_out_fake(rgb: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """A BBMG pseudo-fake of the full portrait: an honest synthetic forgery to score."""
    from unmask.data.faces import build_face_detector
    from unmask.synthesis import build_synthesizer

    faces = build_face_detector("dlib_hog").detect(rgb)
    if not faces:
        raise CommandError("no face found in the embedded image (dlib models missing?)")
    result = build_synthesizer("bbmg")(rgb, faces[0].landmarks81, np.random.default_rng(10_000 + seed))
    return result.fake, result.record


def _cli(argv: list[str]) -> None:
    from unmask.cli import main

    code = main(argv)
    if code != 0:
        raise CommandError(f"`unmask {' '.join(argv)}` failed with exit code {code}")


def run(args: argparse.Namespace) -> int:
    from skimage.data import astronaut

    from unmask.io import atomic_save_png

    out = Path(args.out)
    started = time.time()
    rgb = np.ascontiguousarray(astronaut())

    def stage(n: int, text: str) -> None:
        print(f"[demo {n}/6] {text}  ({time.time() - started:.0f} s)", flush=True)

    clip = out / "data" / "train" / "real" / "astronaut_pan.mp4"
    stage(1, f"encoding the demo clip -> {clip}")
    if not clip.is_file():
        write_clip(rgb, clip)

    store = out / "prepared"
    stage(2, f"unmask prepare generic {out / 'data'} --out {store}")
    _cli(["prepare", "generic", str(out / "data"), "--out", str(store), "--frames", str(args.frames),
          "--workers", "1", "--no-progress"])

    stage(3, f"unmask inspect -> {out / 'faces.png'}")
    _cli(["inspect", str(store), "--out", str(out / "faces.png"), "--n", "8"])

    stage(4, f"unmask synth --recipe bbmg -> {out / 'synth_bbmg.png'}")
    _cli(["synth", "--recipe", "bbmg", "--store", str(store), "--n", "6", "--out", str(out / "synth_bbmg.png"),
          "--size", "256"])

    checkpoint = args.checkpoint
    if checkpoint is None and args.steps > 0:
        run_dir = out / "run"
        stage(5, f"unmask train --config configs/tiny/sbi.yaml ({args.steps} steps) -> {run_dir}")
        config = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "sbi.yaml"
        if not config.is_file():
            raise CommandError(f"tiny training profile not found at {config} (run the demo from a source checkout)")
        _cli(["train", "--config", str(config), "--out", str(run_dir), f"data.store={store}", "data.dataset=generic",
              "data.val_split=null", "epochs=1", f"steps_per_epoch={args.steps}", "run.save_every_steps=null",
              "run.log_every=4", "run.tensorboard=false", "run.progress=false", "--allow-config-change"])
        checkpoint = str(run_dir)
    else:
        stage(5, "training skipped" + (f" (scoring with {checkpoint})" if checkpoint else ""))

    real_png, fake_png = out / "detect" / "astronaut.png", out / "detect" / "astronaut_bbmg_pseudofake.png"
    fake, record = held_out_fake(rgb, args.seed)
    atomic_save_png(real_png, rgb)
    atomic_save_png(fake_png, fake)
    stage(6, f"unmask detect {real_png.name} {fake_png.name} --heatmaps {out / 'heatmaps'}")
    detect = ["detect", str(real_png), str(fake_png), "--heatmaps", str(out / "heatmaps"), "--format", "table"]
    _cli(detect + (["--checkpoint", checkpoint] if checkpoint else ["--untrained"]))
    print(f"pseudo-fake drawn with: {record.get('mask', record)}" if isinstance(record, dict) else "")
    print(f"done in {time.time() - started:.0f} s. Look at: {out / 'faces.png'}, {out / 'synth_bbmg.png'}, "
          f"{out / 'heatmaps'}/")
    return 0
