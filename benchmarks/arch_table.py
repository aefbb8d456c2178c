"""Parameters, GFLOPs and CPU images/s of every registered architecture at the papers' input sizes.

Each row builds the network with random init (cost does not depend on the weights), counts parameters,
counts FLOPs of one forward with torch's own ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is
2 FLOPs; convolutions, matmuls and attention are counted, elementwise ops are not -- the usual convention of
fvcore / thop's MACs x 2), and times inference (eval, no grad, batch ``--batch``) on this machine's CPU.
Rows and sizes are the papers': EfficientNet-B4 @380 (000, 003), Xception @299 (001, 003, 004), VGG-16 and
ResNet-50 @256/224 (001, 003), ResNet-18 and SOLA @256 (002), ConvNeXt-B @224 (003), ViT-B/16 @224 (Grad-CAM via token
reshape), F3-Net @299 (001), paper 004's student (``l2m_student``: Xception + MLP head) @224, and the offline
CPU default EfficientNet-Lite0 @128.

    .venv/bin/python benchmarks/arch_table.py [--batch 4] [--repeats 3] [--threads 2] [--only f3net,resnet18]
"""

from __future__ import annotations

import argparse
import statistics
import time

# (row label, arch, build kwargs, input size)
ROWS: list[tuple[str, str, dict, int]] = [
    ("efficientnet_b4 (000/003)", "timm_classifier", {"backbone": "efficientnet_b4"}, 380),
    ("xception (001/003/004)", "timm_classifier", {"backbone": "xception"}, 299),
    ("vgg16 (001)", "timm_classifier", {"backbone": "vgg16"}, 256),
    ("resnet50 (001/003)", "timm_classifier", {"backbone": "resnet50"}, 224),
    ("resnet18 (002)", "timm_classifier", {"backbone": "resnet18"}, 256),
    ("sola (002; resnet18 RGB + ASRM noise branches, LEM, patch 16)", "sola", {"backbone": "resnet18"}, 256),
    ("convnext_base (003)", "timm_classifier", {"backbone": "convnext_base"}, 224),
    ("vit_base_patch16_224", "timm_classifier", {"backbone": "vit_base_patch16_224"}, 224),
    ("f3net (001)", "f3net", {}, 299),
    ("l2m_student xception (004)", "l2m_student", {"backbone": "xception"}, 224),
    ("tf_efficientnet_lite0 (CPU default)", "timm_classifier", {"backbone": "tf_efficientnet_lite0"}, 128),
]


def flops_of(model, x) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed forwards per row (after one warm-up)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", default="", help="comma-separated substrings of row labels to run")
    args = ap.parse_args()

    import torch

    from unmask.models import ARCHS, build_arch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [r for r in ROWS if not args.only or any(s in r[0] for s in args.only.split(","))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, CPU, random init")
    print("| arch | input | params (M) | GFLOPs / image | CPU images/s |")
    print("| --- | --- | --- | --- | --- |")
    for label, arch, kwargs, size in rows:
        if arch not in ARCHS:
            print(f"| {label} | {size} | - | - | not registered |")
            continue
        torch.manual_seed(0)
        model = build_arch(arch, pretrained=None, input_size=size, **kwargs).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.rand(args.batch, 3, size, size)
        gflops = flops_of(model, x[:1]) / 1e9
        with torch.no_grad():
            model(x)  # warm-up
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        ips = args.batch / statistics.median(times)
        print(f"| {label} | {size} | {params:.1f} | {gflops:.2f} | {ips:.1f} |", flush=True)
        del model


if __name__ == "__main__":
    main()
