"""Step time of learning to mask (paper 004: teacher CNN + ViT, student CNN, mixup) vs the supervised ``baseline``.

Both methods step on the same fixed batch (random images, half real / half fake labels: step time does not depend
on the pixels), one ``baseline`` step and one ``l2m`` step alternately, so a busy machine slows both alike; the
figure is the median per method and their ratio. An L2M step runs two CNNs (teacher and student) and the ViT, so
about 2x the baseline plus the ViT is expected. Inference cost is the student's alone (``arch_table.py`` row).

    .venv/bin/python benchmarks/l2m_step.py                                     # tiny profile: lite0 @128, small ViT
    .venv/bin/python benchmarks/l2m_step.py --backbone xception --size 224 --paper-teacher --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time


def _method(name: str, args, extra: list[str]):
    import torch

    from unmask.methods import build_method
    from unmask.train.config import load_train_config
    from unmask.train.optim import build_optimizer

    cfg = load_train_config(None, [f"method.name={name}", f"model.backbone={args.backbone}", "model.pretrained=null",
                                   f"model.input_size={args.size}", "optim.name=sgd", "optim.lr=0.01", *extra])
    torch.manual_seed(0)
    method = build_method(cfg)
    module = method.build().to(args.device).train()
    method.attach(module, device=torch.device(args.device))
    return method, build_optimizer(module.parameters(), cfg.optim)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per method (after one warm-up each)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--paper-teacher", action="store_true",
                    help="the paper's teacher ViT (6 blocks, 2048 wide); default: the tiny profile's (2 blocks, 192)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    small = [] if args.paper_teacher else ["method.teacher.depth=2", "method.teacher.latent_dim=192",
                                           "method.teacher.vit_dim=192", "method.teacher.mlp_dim=256",
                                           "method.mlp_hidden=128"]
    methods = {"baseline": _method("baseline", args, []), "l2m": _method("l2m", args, small)}
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(args.batch, 3, args.size, args.size, generator=g).to(args.device),
             "label": (torch.arange(args.batch) % 2).to(args.device)}
    times: dict[str, list[float]] = {k: [] for k in methods}
    for i in range(args.steps + 1):
        for name, (method, opt) in methods.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            method.step(batch, opt)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first step of each is a warm-up
                times[name].append(time.perf_counter() - t0)
    params = {k: sum(p.numel() for p in m.model.parameters()) / 1e6 for k, (m, _) in methods.items()}
    student = sum(p.numel() for p in methods["l2m"][0].detector(methods["l2m"][0].model).parameters()) / 1e6
    print(f"{args.backbone} @{args.size}, batch {args.batch}, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, teacher: {'paper' if args.paper_teacher else 'tiny'}")
    print("| method | s / step (median) | trained params (M) |")
    print("| --- | --- | --- |")
    for name in methods:
        print(f"| {name} | {statistics.median(times[name]):.3f} | {params[name]:.1f} |")
    print(f"l2m / baseline step time: {statistics.median(times['l2m']) / statistics.median(times['baseline']):.2f}x; "
          f"l2m inference network (student): {student:.1f} M params")


if __name__ == "__main__":
    main()
