"""Training step time and peak memory per method (sbi, bbmg_nrs), and the overhead NRS adds.

Measures ``method.step`` alone (forward, backward, optimizer; SAM's two passes by default, as paper 000
trains) on a fixed batch of B reals + B fakes, so data loading and synthesis are not part of the figure
(see benchmarks for synthesis). bbmg_nrs is measured with NRS fully active: centres exist and the
memory collects, i.e. epoch >= T_k. Each (backbone, method) runs in its own process so that peak memory
(CPU: peak RSS; CUDA: torch.cuda.max_memory_allocated) belongs to that configuration alone; the overhead
ratio comes from one more process that alternates sbi and bbmg_nrs steps (same weights at start), so that
a busy machine slows both alike.

    .venv/bin/python benchmarks/train_step.py                           # CPU: resnet18@224, efficientnet_b4@380
    .venv/bin/python benchmarks/train_step.py --device cuda --steps 20  # on a GPU
    .venv/bin/python benchmarks/train_step.py --models resnet18@224 --optim adam
    .venv/bin/python benchmarks/train_step.py --json     # also write benchmarks/results/train_step_<host>_<device>.json
    # the GPU path (benchmarks/gpu_suite.sh runs it): bf16 autocast (the CUDA default), channels_last, torch.compile
    .venv/bin/python benchmarks/train_step.py --device cuda --methods sbi --batch 16 --channels-last --compile \
        --models efficientnet_b4@380:sam resnet50@256:sgd xception@299:sgd --json

--amp bf16 autocasts forward and loss (as `unmask train` with amp: true on CUDA; on CPU too when asked, where
torch supports bf16 autocast); --channels-last converts the model and the batch to NHWC; --compile [MODE] compiles
the model's forward (nn.Module.compile; a few warm-up steps absorb the compilation, --warmup). A model spec
``backbone@size:optim`` overrides --optim for that model.

--json writes the figures (and the machine: host, CPU, GPU, torch) to a JSON file; `unmask reproduce --dry-run`
reads every benchmarks/results/train_step_*.json to estimate a study's training time on this machine and on a
GPU. A later run merges into the file: a (backbone, size, method, optim, batch, amp, channels_last,
compile) row is replaced, others are kept.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _setup(backbone: str, size: int, method_name: str, batch: int, device: str, optim: str, amp: str = "auto",
           channels_last: bool = False, compile_mode: str | None = None):
    import torch

    from unmask.methods import build_method
    from unmask.train.config import load_train_config
    from unmask.train.optim import build_optimizer

    cfg = load_train_config(None, [
        f"method.name={method_name}", f"model.backbone={backbone}", "model.pretrained=null",
        f"model.input_size={size}", f"optim.name={optim}", f"batch_size={batch}", "amp=true",
        *(["method.nrs.start_epoch=2", "method.nrs.k_s=500", "method.nrs.k=5"] if method_name == "bbmg_nrs" else []),
    ])
    dev = torch.device(device)
    torch.manual_seed(0)
    method = build_method(cfg)
    model = method.build().to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile_mode:
        model.compile(**({} if compile_mode == "default" else {"mode": compile_mode}))
    if resolve_amp(amp, dev.type) == "bf16":
        method.attach(model, device=dev, autocast=lambda: torch.autocast(dev.type, dtype=torch.bfloat16))
    else:
        method.attach(model, device=dev)
    opt = build_optimizer(model.parameters(), cfg.optim)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * batch, 3, size, size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    b = {"image": x.to(dev), "label": torch.cat([torch.zeros(batch), torch.ones(batch)]).long().to(dev),
         "index": torch.arange(2 * batch).remainder(batch).to(dev)}
    if method_name == "bbmg_nrs":  # epoch T_k - 1: collect, k-means at its end -> NRS active from epoch T_k
        method.on_epoch_start(0)
        method.step(b, opt, None)
        method.on_epoch_end(0)
        method.on_epoch_start(1)
        assert method.nrs_active()
    return method, opt, b, dev


def resolve_amp(amp: str, device_type: str) -> str:
    """``auto``: bf16 on CUDA (as training), none on CPU."""
    return ("bf16" if device_type == "cuda" else "none") if amp == "auto" else amp


def nrs_extra_ms(dim: int, batch: int, k_s: int = 500, k: int = 5, repeats: int = 200, device: str = "cpu") -> float:
    """Best-of-N time of the work NRS adds to a step: memory top-k update, distances, weights, weighted CE.

    (The pooled features themselves come free with the forward pass: ``forward_head(pre_logits=True)``.)
    A load-insensitive figure, unlike whole-step times on a shared machine.
    """
    import torch

    from unmask.methods.nrs import RealFeatureMemory, min_cosine_distance, nrs_weights, weighted_ce

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    mem = RealFeatureMemory(k_s)
    mem.add(torch.rand(k_s, generator=g).to(dev), torch.randn(k_s, dim, generator=g).to(dev), torch.arange(k_s).to(dev))
    centres = torch.randn(k, dim, generator=g).to(dev)
    feats = torch.randn(2 * batch, dim, generator=g).to(dev)
    logits = torch.randn(2 * batch, 2, generator=g).to(dev)
    labels = torch.cat([torch.zeros(batch), torch.ones(batch)]).long().to(dev)
    keys = torch.arange(batch).to(dev)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        p_real = logits.softmax(1)[:, 0]
        mem.add(p_real[:batch], feats[:batch], keys)
        d = min_cosine_distance(feats, centres)
        w = nrs_weights(d, labels == 1, 50, 0.5, 200.0)
        loss = weighted_ce(logits, labels, w)
        float(loss)
        best = min(best, time.perf_counter() - t)
    return best * 1000


def measure(backbone: str, size: int, methods: list[str], batch: int, steps: int, device: str, optim: str,
            threads: int | None, amp: str = "auto", channels_last: bool = False, compile_mode: str | None = None,
            warmup: int = 1) -> list[dict]:
    """Time ``steps`` steps of each method, interleaved step by step so machine load hits all alike."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    runs = [_setup(backbone, size, m, batch, device, optim, amp, channels_last, compile_mode) for m in methods]

    def sync():
        if runs[0][3].type == "cuda":
            torch.cuda.synchronize()

    t_warm = time.perf_counter()
    for _ in range(max(1, warmup)):  # warm-up (and torch.compile's compilation)
        for method, opt, b, _ in runs:
            method.step(b, opt, None)
    sync()
    warmup_s = time.perf_counter() - t_warm
    if runs[0][3].type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(steps):
        for i, (method, opt, b, _) in enumerate(runs):
            t = time.perf_counter()
            method.step(b, opt, None)
            sync()
            times[i].append(time.perf_counter() - t)
    out = []
    dim = runs[0][0].model.num_features
    for name, ts in zip(methods, times):
        ts = sorted(ts)
        row = {"backbone": backbone, "size": size, "method": name, "batch": f"{batch}+{batch}", "optim": optim,
               "device": device, "steps": steps, "step_s_median": ts[len(ts) // 2], "step_s_min": ts[0],
               "img_s": 2 * batch / ts[len(ts) // 2], "times": times[methods.index(name)],
               "amp": resolve_amp(amp, torch.device(device).type), "channels_last": channels_last,
               "compile": compile_mode, "warmup_steps": max(1, warmup), "warmup_s": warmup_s}
        if name == "bbmg_nrs":
            row["nrs_extra_ms"] = nrs_extra_ms(dim, batch, device=device)
            row["nrs_extra_frac_of_min_step"] = row["nrs_extra_ms"] / 1000 / ts[0]
        if runs[0][3].type == "cuda":
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
            row["gpu"] = torch.cuda.get_device_name(runs[0][3])
        else:
            row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18@224", "efficientnet_b4@380"],
                    help="backbone@size or backbone@size:optim (that model's optimizer instead of --optim)")
    ap.add_argument("--methods", nargs="+", default=["sbi", "bbmg_nrs"])
    ap.add_argument("--batch", type=int, default=8, help="real images per step (as many fakes are added)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--optim", default="sam", choices=["sam", "sgd", "adam"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "none"],
                    help="bf16 autocast (auto: on CUDA, as training; none on CPU)")
    ap.add_argument("--channels-last", action="store_true", help="model and batch in channels_last (NHWC)")
    ap.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                    help="torch.compile the model (MODE: default, reduce-overhead, max-autotune)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 1; 3 with --compile)")
    ap.add_argument("--json", nargs="?", const="", default=None, metavar="PATH",
                    help="also write the figures to PATH (default: benchmarks/results/train_step_<host>_<device>.json)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child process: one configuration
    args = ap.parse_args()
    if args.one:
        backbone, size, *methods = args.one.split(",")
        print(json.dumps(measure(backbone, int(size), methods, args.batch, args.steps, args.device, args.optim,
                                 args.threads, args.amp, args.channels_last, args.compile,
                                 args.warmup or (3 if args.compile else 1))))
        return
    rows, paired = [], {}
    for spec in args.models:
        backbone, size = spec.split("@")
        size, _, optim = size.partition(":")
        optim = optim or args.optim
        groups = [[m] for m in args.methods]  # alone: peak memory of each method by itself
        if {"sbi", "bbmg_nrs"} <= set(args.methods):
            groups.append(["sbi", "bbmg_nrs"])  # together, interleaved: the overhead ratio
        for group in groups:
            cmd = [sys.executable, __file__, "--one", ",".join([backbone, size, *group]), "--batch", str(args.batch),
                   "--steps", str(args.steps), "--device", args.device, "--optim", optim, "--amp", args.amp]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            cmd += ["--channels-last"] * args.channels_last + (["--compile", args.compile] if args.compile else [])
            cmd += ["--warmup", str(args.warmup)] if args.warmup else []
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{spec} {group}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            if len(group) > 1:
                paired[spec] = {r["method"]: r for r in result}
                continue
            row = result[0]
            rows.append(row)
            mem = f"{row['peak_mem_mb']:.0f} MB GPU" if "peak_mem_mb" in row else f"{row['peak_rss_mb']:.0f} MB RSS"
            print(f"{spec:<22} {row['method']:<9} {row['optim']:<4} batch {row['batch']:<6} "
                  f"step {row['step_s_median']:.3f} s (min {row['step_s_min']:.3f})  {row['img_s']:.1f} img/s  "
                  f"peak {mem}  [amp {row.get('amp')}{', channels_last' if row.get('channels_last') else ''}"
                  f"{', compile ' + row['compile'] if row.get('compile') else ''}]", flush=True)
            if "nrs_extra_ms" in row:
                print(f"{'':<22} NRS's own work (memory top-k, distances, weights; best of 200): "
                      f"{row['nrs_extra_ms']:.2f} ms = {100 * row['nrs_extra_frac_of_min_step']:.2f}% of the fastest "
                      f"step", flush=True)
        if spec in paired:
            a, b = paired[spec]["sbi"], paired[spec]["bbmg_nrs"]
            step_ratios = sorted(y / x for x, y in zip(a["times"], b["times"]))
            print(f"{spec}: bbmg_nrs / sbi step time, interleaved: {b['step_s_median'] / a['step_s_median']:.3f} "
                  f"(medians), {b['step_s_min'] / a['step_s_min']:.3f} (minima), "
                  f"{step_ratios[len(step_ratios) // 2]:.3f} (median of paired steps); target < 1.05", flush=True)
    if args.json is not None:
        path = write_json(rows, args.json or None, args.device, args.threads)
        print(f"wrote {path}")


def write_json(rows: list[dict], path: str | None, device: str, threads: int | None) -> str:
    """Merge ``rows`` into the results file (the schema `unmask reproduce --dry-run` reads: unmask.reproduce.estimate)."""
    import os
    import platform
    from pathlib import Path

    import torch

    host = platform.node() or "host"
    dev = "cuda" if device.startswith("cuda") else "cpu"
    out = Path(path) if path else Path(__file__).resolve().parent / "results" / f"train_step_{host}_{dev}.json"
    machine = {"host": host, "device": dev, "cpu_count": os.cpu_count(), "torch": torch.__version__,
               "threads": threads or torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
               "gpu": torch.cuda.get_device_name(0) if dev == "cuda" and torch.cuda.is_available() else None}
    old = json.loads(out.read_text()).get("rows", []) if out.is_file() else []
    key = lambda r: (r["backbone"], r["size"], r["method"], r["optim"], r["batch"], r.get("amp") or "none",  # noqa: E731
                     bool(r.get("channels_last")), r.get("compile") or None)  # a bf16 / NHWC / compiled row is its own
    new = [{k: v for k, v in r.items() if k != "times"} | {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                           "load_avg_1m": round(os.getloadavg()[0], 2)}
           for r in rows]
    merged = {key(r): r for r in old} | {key(r): r for r in new}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": machine, "rows": list(merged.values())}, indent=1) + "\n")
    os.replace(tmp, out)
    return str(out)


if __name__ == "__main__":
    main()
