"""The training pair: a real face crop and its pseudo-fake, cut by the same window (docs/ARCHITECTURE.md).

Per sample (all randomness from ``np.random.default_rng((seed, epoch, index))``, so a worker's draws depend
only on those three numbers -- any worker count, any resume point, same images):

1. load the stored crop (SBI's large-margin crop written by ``unmask prepare``; only the window's part of
   it is decoded, ``unmask.data.store.load_rgb_window``);
2. draw the final window: the detector box widened by a random margin per side (default (0.04, 0.20),
   paper 000 sec. 4.1; SBI's own code draws its margins differently -- see docs/synthesis.md), and resize
   it to ``image_size`` x ``image_size`` (380 by default);
3. synthesize the pseudo-fake **on that resized window** (a fixed, small cost per pair); the pair's real is
   the image the fake was blended onto (``SynthResult.real``: the transformed target when the target was
   transformed), so real and fake differ only where the blend mask is non-zero;
4. ``augment``: a horizontal flip of both images together, then ONE draw of the final augmentations
   (colour, JPEG; ``FinalAugConfig``) applied identically to the real and the fake (SBI's pipeline). Outside
   the mask the two stay byte-identical, except in the JPEG blocks that straddle the mask's edge.

``pair_collate`` stacks B samples as ``image`` (2B, 3, S, S) **uint8** (0-255) -- the B reals, then their
B fakes in the same order -- ``label`` (0 x B, 1 x B), ``mask`` (2B, 1, S, S) float32 (zeros for reals, the
blend weights for fakes) and ``index`` (2B,). The images travel as uint8 (the standard fast path): turning two
380 px images into float32 cost a loader worker ~1 ms of a ~7 ms pair, and uint8 is 4x fewer bytes through
the worker -> main queue and host -> device; the training loop converts on the device with
``unmask.train.data.to_float_images`` (float32 in [0, 1], what every method and the Detector expect).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from unmask.data.crops import margin_crop, margin_window, resize_face
from unmask.errors import UnmaskError
from unmask.process import keep_freed_memory
from unmask.synthesis.config import FinalAugConfig, SynthConfig
from unmask.synthesis.landmarks import SynthesisError, check_landmarks
from unmask.synthesis.pool import DonorPool
from unmask.synthesis.recipes import Synthesizer, build_synthesizer
from unmask.synthesis.transforms import Op, apply_ops, describe, draw_color, jpeg, jpeg_like, nonzero_box


def _default_loader(rec: Any) -> np.ndarray:
    from unmask.data.store import load_rgb

    return load_rgb(rec.crop_path)


def draw_final(cfg: FinalAugConfig, rng: np.random.Generator) -> list[Op]:
    """One final-augmentation draw: colour (RGBShift, HSV, brightness/contrast), then JPEG with ``p_jpeg``."""
    ops = draw_color(cfg.color, rng)
    if rng.random() < cfg.p_jpeg:
        ops.append(("jpeg", (float(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)),)))
    return ops


def apply_final_pair(real: np.ndarray, fake: np.ndarray, ops: list[Op],
                     box: tuple[int, int, int, int] | None | str = "diff") -> tuple[np.ndarray, np.ndarray]:
    """One final-augmentation draw applied to a pair, computing the fake only where it differs from the real:
    colour ops are per pixel and JPEG per 16-px block (``jpeg_like``), so the result is byte-identical to
    augmenting both images in full, for about the cost of one. ``box`` bounds where the two differ (the
    blend mask's non-zero box; None: nowhere); by default it is measured."""
    if isinstance(box, str):
        diff = cv2.absdiff(real, fake)
        box = nonzero_box(cv2.max(cv2.max(diff[..., 0], diff[..., 1]), diff[..., 2]))
    colour = [op for op in ops if op[0] != "jpeg"]
    r = apply_ops(real, colour)
    f = r.copy()
    if box is not None:
        x0, y0, x1, y1 = box
        if any(op[0] == "hsv" for op in colour):
            # OpenCV's 8-bit RGB<->HSV rounds by a pixel's column (SIMD lanes vs a row's tail), not by its row:
            # the box's whole rows convert exactly as inside the whole image (tests/test_pair_transport.py).
            f[y0:y1] = apply_ops(np.ascontiguousarray(fake[y0:y1]), colour)
        else:
            f[y0:y1, x0:x1] = apply_ops(np.ascontiguousarray(fake[y0:y1, x0:x1]), colour)
    for name, a in ops:
        if name == "jpeg":
            rj = jpeg(r, int(a[0]))
            f, r = jpeg_like(f, int(a[0]), r, rj, box), rj
    return r, f


def final_augment(images: np.ndarray | Sequence[np.ndarray], cfg: FinalAugConfig,
                  rng: np.random.Generator) -> tuple[Any, list[str]]:
    """Draw the final augmentations once and apply that draw to ``images`` (one image or several, e.g. a
    pair's real and fake). Returns (the image or the list of images, captions of what was applied)."""
    ops = draw_final(cfg, rng)
    if isinstance(images, np.ndarray):
        return apply_ops(np.ascontiguousarray(images), ops), describe(ops)
    return [apply_ops(np.ascontiguousarray(im), ops) for im in images], describe(ops)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW uint8 (a view; ``pair_collate``'s stack makes the batch contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)


class PairDataset(Dataset):
    """Real faces -> (real, pseudo-fake) pairs for training. See the module docstring for the pipeline.

    ``faces``: ``FaceRecord`` s (``crop_path``, ``box`` and 81 ``landmarks`` in crop coordinates).
    ``synthesizer``: a :class:`Synthesizer` or anything ``build_synthesizer`` takes (a recipe name, ...).
    Faces whose landmarks are degenerate (non-finite, collinear, a face under 16 px) are left out at
    construction with one warning (``self.skipped`` lists them); a crop that cannot be read, or a face whose
    blend fails, raises an error naming the crop -- never a substitute sample.
    ``loader(record) -> RGB`` replaces reading ``crop_path`` (e.g. in-memory faces); ``pool`` gives a donor
    pool to donor recipes (default: one built over ``faces``).
    """

    def __init__(self, faces: Sequence[Any], synthesizer: Synthesizer | str | SynthConfig | dict, image_size: int = 380,
                 margin: float | tuple[float, float] = (0.04, 0.20), seed: int = 0, augment: bool = True,
                 final_aug: FinalAugConfig | None = None, loader: Callable[[Any], np.ndarray] | None = None,
                 pool: DonorPool | None = None) -> None:
        self.image_size = int(image_size)
        if self.image_size < 32:
            raise UnmaskError(f"image_size must be at least 32, got {image_size}")
        self.margin = margin if isinstance(margin, (int, float)) else (float(margin[0]), float(margin[1]))
        self.seed = int(seed)
        self.augment = bool(augment)
        self.final_aug = final_aug or FinalAugConfig()
        self.loader = loader or _default_loader
        self.epoch = 0
        self.faces: list[Any] = []
        self.skipped: list[tuple[str, str]] = []
        for rec in faces:
            try:
                check_landmarks(rec.landmarks, None)
                b = np.asarray(rec.box, np.float64)
                if not (np.all(np.isfinite(b)) and b[2] - b[0] >= 2 and b[3] - b[1] >= 2):
                    raise SynthesisError(f"degenerate detector box {b.tolist()}")
            except SynthesisError as exc:
                self.skipped.append((str(getattr(rec, "crop_path", "?")), str(exc)))
                continue
            self.faces.append(rec)
        if self.skipped:
            warnings.warn(f"PairDataset: left out {len(self.skipped)} of {len(self.skipped) + len(self.faces)} faces "
                          f"with degenerate landmarks (first: {self.skipped[0][0]}: {self.skipped[0][1]})",
                          stacklevel=2)
        if not self.faces:
            raise UnmaskError("PairDataset: no usable faces (all landmarks degenerate or no faces given)")
        synth = synthesizer if isinstance(synthesizer, Synthesizer) else build_synthesizer(synthesizer)
        if synth.needs_pool and synth.pool is None:
            synth = synth.with_pool(pool if pool is not None else DonorPool.from_faces(self.faces, self.loader))
        self.synthesizer = synth
        self._threads_set = False

    def set_epoch(self, epoch: int) -> None:
        """Vary the draws per epoch (call it before each epoch, in every process, like DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.faces)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def pair(self, index: int) -> dict[str, Any]:
        """One pair as numpy: ``real``, ``fake`` (SxSx3 uint8), ``mask`` (SxS float32), ``record`` (options drawn)."""
        rec = self.faces[index]
        rng = self.rng(index)
        where = getattr(rec, "crop_path", f"face {index}")
        if self.loader is _default_loader:
            # The stored crop decoded only where the window is (same pixels, ~0.4 ms less per pair: the window
            # is ~43% of SBI's large stored crop); the margins are drawn first, from the crop's size.
            drawn: dict[str, Any] = {}

            def window_of(hw: tuple[int, int]) -> tuple[int, int, int, int]:
                drawn["mc"] = margin_window(hw, rec.box, rec.landmarks, self.margin, rng=rng)
                return drawn["mc"].window

            from unmask.data.store import load_rgb_window

            cut, (img_h, img_w) = load_rgb_window(rec.crop_path, window_of)
            mc = drawn["mc"]
            mc.image = cut
        else:
            img = self.loader(rec)
            mc = margin_crop(img, rec.box, rec.landmarks, self.margin, rng=rng)
            img_h, img_w = img.shape[:2]
        h, w = mc.image.shape[:2]
        real = resize_face(mc.image, self.image_size)
        lm = mc.landmarks * np.array([self.image_size / w, self.image_size / h], np.float32)
        # The stored crop's rectangle in window coordinates: where SBI's own (large-margin) crop is cut.
        wx0, wy0 = mc.window[0], mc.window[1]
        sx, sy = self.image_size / w, self.image_size / h
        bounds = (-wx0 * sx, -wy0 * sy, (img_w - wx0) * sx, (img_h - wy0) * sy)
        try:
            res = self.synthesizer.synth(real, lm, rng, identity=getattr(rec, "identity", None)
                                         or getattr(rec, "video_id", None), bounds=bounds,
                                         pixel_scale=float(np.sqrt(sx * sy)))
        except SynthesisError as exc:
            raise SynthesisError(f"{where}: {exc}") from None
        fake, mask = res.fake, res.mask
        if res.real is not None:
            real = res.real  # the image the fake was blended onto (transformed target included)
        record = dict(res.record)
        record["window"] = [int(v) for v in mc.window]
        if self.augment:
            # The mask's non-zero box as synthesis found it (measured when it was not given), mirrored with the flip.
            box = nonzero_box(mask > 0) if isinstance(res.box, str) else res.box
            if rng.random() < self.final_aug.p_hflip:
                real, fake, mask = cv2.flip(real, 1), cv2.flip(fake, 1), cv2.flip(mask, 1)
                record["hflip"] = True
                if box is not None:
                    box = (mask.shape[1] - box[2], box[1], mask.shape[1] - box[0], box[3])
            ops = draw_final(self.final_aug, rng)
            # Synthesizer.synth copies the target and blends inside the mask's box only: outside it the
            # fake is the real byte for byte (tests/test_synthesis_sbi.py checks it on every recipe).
            real, fake = apply_final_pair(real, fake, ops, box=box)
            record["final"] = describe(ops)
        return {"real": np.ascontiguousarray(real), "fake": np.ascontiguousarray(fake),
                "mask": np.ascontiguousarray(mask), "record": record, "index": int(index)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self._threads_set:
            if torch.utils.data.get_worker_info() is not None:
                cv2.setNumThreads(1)  # one core per loader worker: OpenCV's own pool would oversubscribe
                keep_freed_memory()  # reuse freed image buffers instead of fresh zero-filled pages per pair
            self._threads_set = True
        p = self.pair(index)
        return {"real": _to_tensor(p["real"]), "fake": _to_tensor(p["fake"]),
                "mask": torch.from_numpy(p["mask"])[None], "index": p["index"]}


def pair_collate(samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """B samples -> one batch of 2B uint8 images: the B reals, then their B fakes in the same order."""
    if not samples:
        raise ValueError("pair_collate needs at least one sample")
    b = len(samples)
    reals = torch.stack([s["real"] for s in samples])
    fakes = torch.stack([s["fake"] for s in samples])
    fmask = torch.stack([s["mask"] for s in samples])
    idx = torch.tensor([int(s["index"]) for s in samples], dtype=torch.long)
    return {
        "image": torch.cat([reals, fakes]),
        "label": torch.cat([torch.zeros(b, dtype=torch.long), torch.ones(b, dtype=torch.long)]),
        "mask": torch.cat([torch.zeros_like(fmask), fmask]),
        "index": torch.cat([idx, idx]),
    }
