"""Export a checkpoint to ONNX and check it against torch on a real face crop.

The ONNX model takes ``image``: float32 (N, 3, S, S) RGB in [0, 1] (N dynamic; normalization is inside)
and returns ``logits`` (N, 2); fake probability = softmax(logits)[:, 1]. After writing the file, the
command runs it with ONNX Runtime and with torch on the astronaut face crop (skimage, public domain) and
prints the largest absolute difference; it fails if that exceeds --tolerance.

  unmask export --checkpoint runs/sbi_effb4 --output sbi_effb4.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unmask.cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint file or run directory")
    p.add_argument("--untrained", action="store_true", help="export an untrained backbone (for pipeline tests)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", help="backbone for --untrained (default: %(default)s)")
    p.add_argument("--pretrained", default="none", help="weights source for --untrained (default: none = random init)")
    p.add_argument("--seed", type=int, default=0, help="seed of --untrained's random weights (default 0)")
    p.add_argument("--output", "-o", help="ONNX file to write (default: <checkpoint stem>.onnx beside the checkpoint)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="largest allowed |torch - onnx| logit difference (default 1e-3)")
    p.add_argument("--json", action="store_true", help="print the check as JSON")


def run(args: argparse.Namespace) -> int:
    from unmask.evaluate.scoring import open_detector
    from unmask.export import check_agreement, export_onnx

    detector, meta = open_detector(args.checkpoint, untrained=args.untrained, backbone=args.backbone,
                                   pretrained=None if args.pretrained in ("none", "") else args.pretrained,
                                   device="cpu", seed=args.seed)
    if args.output:
        out = Path(args.output)
    elif meta.get("path"):
        ck = Path(meta["path"])
        out = ck.with_suffix(".onnx")
    else:
        raise CommandError("--output is required with --untrained")
    keep = {k: meta.get(k) for k in ("arch", "backbone", "timm_name", "pretrained", "path", "epoch", "untrained")}
    export_onnx(detector, out, opset=args.opset, meta=keep)
    check = check_agreement(detector, out)
    if args.json:
        print(json.dumps({"onnx": str(out), **check}, indent=1))
    else:
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, input (N, 3, "
              f"{detector.input_size}, {detector.input_size}) in [0, 1], output logits (N, 2))")
        for i, (tp, op) in enumerate(zip(check["torch_fake_prob"], check["onnx_fake_prob"])):
            print(f"astronaut crop {i}: fake prob torch {tp:.6f}  onnxruntime {op:.6f}")
        print(f"max abs diff: logits {check['max_abs_diff_logits']:.3g}, fake prob {check['max_abs_diff_prob']:.3g}")
    if check["max_abs_diff_logits"] > args.tolerance:
        raise CommandError(f"ONNX Runtime and torch disagree: max |logit diff| {check['max_abs_diff_logits']:.3g} "
                           f"> tolerance {args.tolerance:g}")
    return 0
