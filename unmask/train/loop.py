"""The training loop, readable top to bottom.

    setup: process group, device, seeds -> method -> model (DDP) -> data -> optimizer, schedule, AMP
    resume: if <run>/last.pt exists, restore model, optimizer, schedule, method state, RNG and position
    for each epoch:
        for each step: batch -> method.step (forward/backward/update, the method's own business)
                       -> method.after_step -> schedule.step -> log -> maybe a mid-epoch checkpoint
        method.on_epoch_end (e.g. NRS k-means) -> validate on the validation split
        -> last.pt (+ best.pt when the validation video AUC improved)

Only rank 0 validates, logs and writes files; every rank runs the same steps. Epochs count from 0 inside
the loop; everything a user reads (logs, metrics.jsonl, checkpoints, "best") counts from 1, as the papers do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from unmask.methods import build_method
from unmask.models import save_checkpoint
from unmask.errors import UnmaskError
from unmask.models.checkpoint import load_checkpoint
from unmask.train.config import TrainConfig, config_to_dict
from unmask.train.data import TrainData, build_train_data, to_float_images
from unmask.train.distributed import barrier, broadcast_object, init_distributed
from unmask.train.optim import build_optimizer
from unmask.train.run_dir import BEST, LAST
from unmask.train.runlog import RunLogger
from unmask.train.schedules import build_scheduler
from unmask.train.seeding import EpochSampler, capture_rng_state, restore_rng_state, seed_everything, worker_init_fn
from unmask.train.validation import improves, validate

# Test hook: SIGKILL this process right after global step N (after any checkpoint of that step), to prove that
# a run killed mid-epoch resumes exactly. Never set in normal use.
KILL_ENV = "UNMASK_KILL_AFTER_STEP"


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    best: dict[str, Any] | None
    last_val: dict[str, Any] | None
    losses: list[float]  # loss of every step this process ran (for tests and summaries)
    seconds: float


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def train(cfg: TrainConfig, run_dir: str | Path, data: TrainData | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (resuming from ``run_dir/last.pt`` when it exists).

    ``data`` overrides the datasets built from ``cfg.data.store`` (tests, notebooks).
    """
    t_start = time.time()
    run_dir = Path(run_dir)

    # ---- setup ------------------------------------------------------------------------------------------
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", 0)))
    dist = init_distributed(device.type)
    seed_everything(cfg.seed + dist.rank)  # model init below is identical anyway: DDP broadcasts rank 0's
    amp_on = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype) if amp_on else contextlib.nullcontext
    scaler = torch.amp.GradScaler("cuda") if amp_on and amp_dtype == torch.float16 else None

    method = build_method(cfg)
    module = method.build().to(device)
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    model = DDP(module, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else module
    method.attach(model, device=device, dist=dist, autocast=autocast, grad_clip=cfg.optim.grad_clip)

    data = data or build_train_data(cfg, method.data_recipe)
    steps_per_epoch = cfg.steps_per_epoch or max(1, len(data.train) // (cfg.batch_size * dist.world_size))
    sampler = EpochSampler(len(data.train), cfg.batch_size, steps_per_epoch, seed=cfg.seed,
                           rank=dist.rank, world_size=dist.world_size, labels=data.balance_labels)
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule, steps_per_epoch, cfg.epochs)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(run_dir, tensorboard=cfg.run.tensorboard, enabled=dist.is_main)

    # ---- resume --------------------------------------------------------------------------------------------
    epoch, step_in_epoch, global_step, best = 0, 0, 0, None
    if (run_dir / LAST).is_file():
        state = load_checkpoint(run_dir / LAST, map_location="cpu")
        tr = state.get("training")
        if not isinstance(tr, dict):
            raise UnmaskError(f"{run_dir / LAST} holds no resume state; train into a new --out, or delete it")
        if tr.get("module") is not None:  # a training module larger than its detector (e.g. teacher + student)
            module.load_state_dict(tr["module"])
        else:
            method.detector(module).load_state_dict(state["model"])
        optimizer.load_state_dict(tr["optimizer"])
        scheduler.load_state_dict(tr["scheduler"])
        if scaler is not None and tr.get("scaler"):
            scaler.load_state_dict(tr["scaler"])
        method.load_state_dict(tr["method"])
        restore_rng_state(tr["rng"][dist.rank] if isinstance(tr["rng"], list) else tr["rng"])
        epoch, step_in_epoch, global_step, best = tr["epoch"], tr["step_in_epoch"], state["step"], tr["best"]
        logger.truncate_after(global_step)
        if dist.is_main:
            tqdm.write(f"resuming {run_dir} at epoch {epoch + 1}, step {step_in_epoch} of the epoch")

    def checkpoint(next_epoch: int, next_step: int, val: dict | None) -> None:
        """last.pt with everything a resume needs; RNG states of all ranks (each resumes its own)."""
        rng = capture_rng_state()
        rngs = _gather_objects(rng) if dist.enabled else rng
        if dist.is_main:
            save_checkpoint(
                run_dir / LAST, method.detector(module), config=config_to_dict(cfg), val=val, epoch=next_epoch,
                step=global_step,
                training={
                    "epoch": next_epoch, "step_in_epoch": next_step, "best": best,
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "method": method.state_dict(), "rng": rngs,
                    "module": None if method.detector(module) is module else module.state_dict(),
                },
            )

    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    losses: list[float] = []
    last_val = None
    images_per_step = cfg.batch_size * data.images_per_sample * dist.world_size

    # ---- epochs -----------------------------------------------------------------------------------------------
    while epoch < cfg.epochs:
        model.train()
        if cfg.model.freeze_bn_stats:  # BatchNorm normalizes with its pretrained running statistics (config.py)
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        sampler.set_epoch(epoch)
        sampler.set_start(step_in_epoch * cfg.batch_size)
        data.train.set_epoch(epoch)
        method.on_epoch_start(epoch)
        if cfg.data.num_workers > 0:
            _cv2_single_thread()  # before the workers fork (see there)
        loader = DataLoader(
            data.train, batch_size=cfg.batch_size, sampler=sampler, collate_fn=data.collate, drop_last=True,
            num_workers=cfg.data.num_workers, worker_init_fn=worker_init_fn, pin_memory=device.type == "cuda",
            generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch),  # workers' seeds; never the global RNG
        )
        bar = tqdm(total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (dist.is_main and cfg.run.progress), leave=False, dynamic_ncols=True)
        t_last = time.time()
        epoch_losses: list[float] = []  # this epoch's steps run by this process (a resumed epoch: from the resume on)
        for batch in loader:
            t_data = time.time()
            batch = to_float_images(_to_device(batch, device))  # uint8 pair images -> float32 on the device
            if cfg.channels_last and batch["image"].dim() == 4:
                batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            metrics = method.step(batch, optimizer, scaler)
            method.after_step()
            scheduler.step()
            global_step += 1
            step_in_epoch += 1
            losses.append(metrics["loss"])
            epoch_losses.append(float(metrics["loss"]))

            now = time.time()
            img_s = images_per_step / max(now - t_last, 1e-9)  # end to end, data loading included
            timing = {"img_s": img_s, "data_s": t_data - t_last, "step_s": now - t_data}
            t_last = now
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", img_s=f"{img_s:.1f}")
            bar.update(1)
            if global_step % cfg.run.log_every == 0 or step_in_epoch == steps_per_epoch:
                lr = optimizer.param_groups[0]["lr"]
                logger.log("train", epoch + 1, global_step, {**metrics, "lr": lr, **timing})
            if cfg.run.save_every_steps and global_step % cfg.run.save_every_steps == 0 \
                    and step_in_epoch < steps_per_epoch:
                checkpoint(epoch, step_in_epoch, None)
            if kill_at and global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        bar.close()

        # ---- end of epoch: method hook, validation, checkpoints ------------------------------------------------
        epoch_metrics = method.on_epoch_end(epoch)
        if epoch_metrics:
            logger.log("epoch", epoch + 1, global_step, epoch_metrics)
        val = None
        is_val_epoch = (epoch + 1) % cfg.run.val_every == 0 or epoch + 1 == cfg.epochs
        if dist.is_main and data.val is not None and is_val_epoch:
            val = validate(method.detector(module), data.val, data.val_faces, device,
                           batch_size=cfg.batch_size * 2, autocast=autocast if amp_on else None)
            logger.log("val", epoch + 1, global_step, val)
            mean_loss = sum(epoch_losses) / len(epoch_losses) if epoch_losses else float("nan")
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: train loss {mean_loss:.4f} (mean of {len(epoch_losses)} steps), val video AUC "
                       f"{_fmt(val['video_auc'])}, frame AUC {_fmt(val['frame_auc'])}, val loss {val['loss']:.4f} "
                       f"({val.get('fakes', 'real')} fakes)")
            last_val = val
        improved = False
        if dist.is_main:
            # best.pt: highest validation video AUC (ties: lower val loss); without a validation set, the latest.
            if data.val is None:
                best, improved = {"epoch": epoch + 1, "step": global_step}, True
            elif val is not None and improves(val, best):
                best, improved = {"epoch": epoch + 1, "step": global_step, **val}, True
        best = broadcast_object(best)
        epoch += 1
        step_in_epoch = 0
        checkpoint(epoch, 0, val)
        if dist.is_main and improved:
            save_checkpoint(run_dir / BEST, method.detector(module), config=config_to_dict(cfg), val=val,
                            epoch=epoch, step=global_step)
        barrier()

    if dist.is_main and data.val is not None and losses and (run_dir / BEST).is_file():
        from unmask.train.calibrate import calibrate_at_end  # temperature scaling of best.pt (Guo et al. 2017)

        calibrate_at_end(cfg, run_dir / BEST, data, device, autocast if amp_on else None, logger, global_step)
    logger.close()
    return TrainResult(run_dir=run_dir, epochs=cfg.epochs, steps=global_step, best=best, last_val=last_val,
                       losses=losses, seconds=time.time() - t_start)


def _cv2_single_thread() -> None:
    """OpenCV's thread pool is not fork-safe: a loader worker forked while the pool's idle threads wait on its
    condition variable (after validation or any cv2 work here) hangs for ever in its first ``cv2.setNumThreads``
    (``pthread_cond_destroy``; PairDataset sets one thread per worker) -- measured: every run that used cv2's pool
    before an epoch with ``data.num_workers > 0``. One thread here leaves the workers no pool to inherit."""
    import cv2

    cv2.setNumThreads(1)


def _gather_objects(obj: Any) -> list[Any]:
    import torch.distributed as tdist

    out: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
