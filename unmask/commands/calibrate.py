"""Calibrate an existing run: temperature scaling on its validation set, written into its best.pt.

A detector's softmax is not a probability you can read as one: the tiny runs score every real above 0.5.
Temperature scaling (Guo et al. 2017) divides the logits by one T > 0 fitted on the validation set by
minimizing the negative log-likelihood; the ranking (AUC) does not change, the probabilities do. Training
does this itself at its end (for runs with a validation split); this command does it for a run trained
before, or on another split or store.

The validation set is built from the run's own config, as training builds it: for pair methods (sbi,
bbmg_nrs, ...) the split's real faces and one fixed-seed pseudo-fake of each (data.val_fakes: pseudo), for
the supervised baseline the split's real and fake faces. Never fit on a test split.

The checkpoint is rewritten atomically with a "calibration" section (T, ECE before/after, the calibrated
validation threshold, what it was fitted on); the weights and every other section stay as they were.
ECE is the binary expected calibration error of the fake probability, 15 equal-width bins.

  unmask calibrate --checkpoint runs/sbi --data prepared/ffpp_c23
  unmask calibrate --checkpoint runs/sbi/best.pt --data prepared/ffpp_c23 --split val
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run directory (its best.pt) or a checkpoint file")
    p.add_argument("--data", default=None, help="prepared store (default: the run's data.store)")
    p.add_argument("--split", default=None, help="store split to fit on (default: the run's data.val_split, else val)")
    p.add_argument("--batch-size", type=int, default=32, help="faces per forward pass (default 32)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def run(args: argparse.Namespace) -> int:
    from unmask.cli import CommandError
    from unmask.evaluate.scoring import default_device
    from unmask.train.calibrate import calibrate_checkpoint

    if args.split is not None and args.split.strip().lower() == "test":
        raise CommandError("refusing to calibrate on the test split: fit on a validation split (--split val)")
    path, cal = calibrate_checkpoint(args.checkpoint, args.data, args.split, device=args.device or default_device(),
                                     batch_size=args.batch_size)
    if args.format == "json":
        print(json.dumps({"checkpoint": str(path), "calibration": cal.to_meta()}, indent=1))
    else:
        thr = "-" if cal.threshold is None else f"{cal.threshold:.4f}"
        print(f"calibrated {path}\n"
              f"  temperature   {cal.temperature:.4f}\n"
              f"  ECE           {cal.ece_before:.4f} -> {cal.ece_after:.4f}  (binary, {cal.n_bins} bins)\n"
              f"  NLL           {cal.nll_before:.4f} -> {cal.nll_after:.4f}\n"
              f"  threshold     {thr}  (validation-chosen, on calibrated video scores)\n"
              f"  fitted on     {cal.n} faces; {cal.fitted_on}")
    return 0
