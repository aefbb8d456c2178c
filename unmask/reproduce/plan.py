"""A study -> one ``RowRun`` per row: where it trains, the exact commands, and how far along it is.

The plan is the contract between ``unmask reproduce`` (which runs it here, one row after another) and the
launchers (torchrun, slurm: :mod:`unmask.reproduce.launchers`), which run the same argument lists elsewhere.

- ``train_argv``: the ``unmask train`` arguments (no executable) that train the row into ``run_dir``:
  ``["train", "--config", CONFIG, *overrides, "data.store=STORE", "--out", RUN_DIR]``. ``unmask train`` resumes
  from ``RUN_DIR/last.pt`` when it is there (and refuses a run dir holding another config), so running the
  same argv again finishes a half-done row and a finished row's argv is never run (status ``done``). Empty for
  a row that ``uses`` another row's run.
- ``eval_argv``: one ``unmask protocol`` argument list per study protocol, writing ``table.json`` (+ one
  report folder per cell, with bootstrap CIs) under ``RUN_DIR/reproduce/<protocol>[-<settings hash>]``.

Run directories are named after the config and its overrides (``runs/<config dir>__<config stem>[-<hash>]``),
not after the study: the same config in two studies (000 Table 11 row 4 and Table 8's "Ours") is one run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unmask.errors import UnmaskError
from unmask.reproduce.study import CONFIG_DIR, Study, StudyRow, override_args, resolve_paths

Status = Literal["done", "partial", "missing"]
EVAL_DIR = "reproduce"  # <run>/reproduce/<protocol>/table.json


@dataclass
class RowRun:
    row_id: str
    label: str
    run_dir: Path
    config_path: Path
    overrides: dict[str, Any]  # the row's overrides plus data.store (what train_argv passes)
    train_argv: list[str]  # [] for a row that uses another row's run
    eval_argv: list[list[str]]
    status: Status
    epochs: int
    images: int | None  # images the training processes (epochs x steps x batch x images per sample); None: unknown
    uses: str | None = None
    done_epochs: int = 0
    steps_per_epoch: int | None = None
    images_per_step: int = 0
    backbone: str = ""
    input_size: int = 0
    method: str = ""
    optim: str = ""
    eval_dirs: list[Path] = field(default_factory=list)  # one per eval_argv: where its table.json lands
    note: str = ""  # e.g. why images is unknown, or a config mismatch found in the run dir


def run_dir_name(row: StudyRow) -> str:
    """``configs/bbmg_nrs/table11_row4_bbmg_nrs.yaml`` -> ``bbmg_nrs__table11_row4_bbmg_nrs`` (+ ``-<hash>``).

    The hash covers the overrides and the row's own ``data:`` name (not the store path: pointing ``--data train=``
    at another store resumes the same run dir, which ``unmask train`` refuses when the config then differs).
    """
    cfg = Path(row.config or "")
    try:
        rel = cfg.resolve().relative_to(CONFIG_DIR).with_suffix("")
        stem = "__".join(rel.parts)
    except ValueError:
        stem = cfg.stem
    if row.overrides or row.data:  # a row trained on another --data store is another run
        blob = json.dumps(row.overrides, sort_keys=True, default=str) + (f"|data={row.data}" if row.data else "")
        stem += "-" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return stem


def training_progress(run_dir: Path) -> int:
    """Completed epochs of the run in ``run_dir`` (0 when there is no last.pt), read from last.pt."""
    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        return 0
    import torch

    try:
        state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a truncated or foreign file: unmask train will say more
        raise UnmaskError(f"cannot read {last}: {exc.__class__.__name__}") from None
    tr = state.get("training") if isinstance(state, dict) else None
    epoch = tr.get("epoch") if isinstance(tr, dict) else None
    return int(epoch) if isinstance(epoch, int) else 0


def _status(run_dir: Path, epochs: int) -> tuple[Status, int]:
    if not (run_dir / "last.pt").is_file():
        return ("partial" if (run_dir / "config.yaml").is_file() else "missing"), 0
    done = training_progress(run_dir)
    if done >= epochs and (run_dir / "best.pt").is_file():
        return "done", done
    return "partial", done


def _train_faces(cfg, per_sample: int) -> int | None:
    """Training items of the store for a config with ``steps_per_epoch: null`` (one pass over the faces)."""
    from unmask.data.records import FAKE, REAL
    from unmask.data.store import PreparedStore
    from unmask.train.data import _store_faces, pick_evenly

    d = cfg.data
    if not d.store or not Path(d.store).is_dir():
        return None
    store = PreparedStore(d.store)
    if per_sample == 2:
        faces = _store_faces(store, d.train_split, [REAL], None, d.dataset, d.largest_only)
    else:
        faces = _store_faces(store, d.train_split, [REAL, FAKE], d.fake_methods and ["real", *d.fake_methods],
                             d.dataset, d.largest_only)
    return len(pick_evenly(faces, d.max_faces))


_PROTOCOLS: dict[tuple, Any] = {}  # (name, overrides, file mtime) -> ProtocolConfig: a plan loads each protocol once


def _load_protocol(name: str, overrides: list[str]):
    from unmask.evaluate.protocols import find_protocol, load_protocol

    path = find_protocol(name)
    key = (name, tuple(overrides), path.stat().st_mtime_ns)
    if key not in _PROTOCOLS:
        _PROTOCOLS[key] = load_protocol(name, overrides)
    return _PROTOCOLS[key]


def protocol_argv(study: Study, index: int, label: str, run_dir: Path, data: dict[str, str]) -> tuple[list[str], Path]:
    """The ``unmask protocol`` call for the study's ``index``-th protocol on ``run_dir``, and its --out."""
    sp = study.protocols[index]
    cfg = _load_protocol(sp.protocol, sp.overrides)
    set_names = {t.name for t in cfg.test_sets}
    settings = {"only": sp.only, "splits": sp.splits, "level": sp.level, "frames": sp.frames, "n_boot": sp.n_boot,
                "overrides": sp.overrides}
    tag = cfg.name
    if any(v for v in settings.values()):
        tag += "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    out = run_dir / EVAL_DIR / tag
    argv = ["protocol", sp.protocol, "--checkpoint", f"{label}={run_dir}", "--out", str(out), "--quiet"]
    for name, path in data.items():
        if name in set_names:
            argv += ["--set", f"{name}={path}"]
    if sp.only:
        argv += ["--only", ",".join(sp.only)]
    for s in sp.splits or []:
        argv += ["--split", s]
    if sp.level:
        argv += ["--level", sp.level]
    if sp.frames is not None:
        argv += ["--frames", str(sp.frames)]
    if sp.n_boot is not None:
        argv += ["--n-boot", str(sp.n_boot)]
    argv += list(sp.overrides)
    return argv, out


EVAL_LABEL = "run"  # the row label inside <run>/reproduce/<protocol>/table.json (one run per folder)


def make_plan(study: Study, data: dict[str, str], runs_dir: str | Path, rows: list[str] | None = None) -> list[RowRun]:
    """One RowRun per study row (or per id in ``rows``; a picked row that uses another plans that one too).

    ``data`` maps ``--data`` names to prepared stores: the study's ``train_data`` name (default ``train``) is the
    training store (``data.store=``), names of the protocols' test sets become ``--set NAME=PATH``.
    """
    from unmask.methods import METHODS
    from unmask.train.config import load_train_config

    runs_dir = Path(runs_dir)
    picked = list(study.rows)
    if rows:
        unknown = [r for r in rows if r not in {x.id for x in study.rows}]
        if unknown:
            raise UnmaskError(f"--rows: study {study.name} has no row {unknown[0]!r} "
                              f"(rows: {', '.join(r.id for r in study.rows)})")
        want = set(rows) | {study.row(r).uses for r in rows if study.row(r).uses}
        picked = [r for r in study.rows if r.id in want]
    trained: dict[str, RowRun] = {}
    plan: list[RowRun] = []
    for row in sorted(picked, key=lambda r: r.uses is not None):  # trained rows first: "uses" rows copy them
        if row.uses is not None:
            base = trained[row.uses]
            evals = [protocol_argv(study, i, EVAL_LABEL, base.run_dir, data) for i in range(len(study.protocols))]
            plan.append(RowRun(row_id=row.id, label=row.label, run_dir=base.run_dir, config_path=base.config_path,
                               overrides=dict(base.overrides), train_argv=[], eval_argv=[a for a, _ in evals],
                               status=base.status, epochs=base.epochs, images=0, uses=row.uses,
                               done_epochs=base.done_epochs, steps_per_epoch=base.steps_per_epoch,
                               images_per_step=base.images_per_step, backbone=base.backbone,
                               input_size=base.input_size, method=base.method, optim=base.optim,
                               eval_dirs=[o for _, o in evals], note=f"uses row {row.uses}'s run"))
            continue
        data_name = row.data or study.train_data
        store = data.get(data_name)
        overrides = resolve_paths(row.overrides)
        if store:
            overrides["data.store"] = str(store)
        config_path = Path(row.config or "")
        cfg = load_train_config(config_path, override_args(overrides))
        per_sample = 2 if METHODS[cfg.method.name](cfg).data_recipe.kind == "pairs" else 1
        run_dir = runs_dir / run_dir_name(row)
        status, done = _status(run_dir, cfg.epochs)
        note = "" if store else f"no --data {data_name}=STORE: the training store is the config's ({cfg.data.store!r})"
        steps = cfg.steps_per_epoch
        if steps is None:
            n = _train_faces(cfg, per_sample)
            if n is None and study.train_faces:
                n = study.train_faces
                note = (note + "; " if note else "") + (f"no store: steps per epoch from the study's train_faces "
                                                        f"({study.train_faces} faces, the paper's setting)")
            if n is None:
                note = (note + "; " if note else "") + "steps per epoch = one pass over the store's faces (store not given)"
            else:
                steps = max(1, n // cfg.batch_size)
        images_per_step = cfg.batch_size * per_sample
        images = None if steps is None else cfg.epochs * steps * images_per_step
        train_argv = ["train", "--config", str(config_path), *override_args(overrides), "--out", str(run_dir)]
        evals = [protocol_argv(study, i, EVAL_LABEL, run_dir, data) for i in range(len(study.protocols))]
        rr = RowRun(row_id=row.id, label=row.label, run_dir=run_dir, config_path=config_path, overrides=overrides,
                    train_argv=train_argv, eval_argv=[a for a, _ in evals],
                    status=status, epochs=cfg.epochs, images=images, done_epochs=done, steps_per_epoch=steps,
                    images_per_step=images_per_step, backbone=cfg.model.backbone if cfg.model.arch == "timm_classifier"
                    else f"{cfg.model.arch}:{cfg.model.backbone}", input_size=cfg.model.input_size,
                    method=cfg.method.name, optim=cfg.optim.name, eval_dirs=[o for _, o in evals], note=note)
        trained[row.id] = rr
        plan.append(rr)
    order = {r.id: i for i, r in enumerate(study.rows)}
    plan.sort(key=lambda rr: order[rr.row_id])
    return plan


def remaining_images(rr: RowRun) -> int | None:
    """Images still to process for a row (0 when done or when it uses another row's run)."""
    if rr.uses is not None or rr.status == "done":
        return 0
    if rr.images is None:
        return None
    return int(rr.images * max(0, rr.epochs - rr.done_epochs) / max(rr.epochs, 1))
