"""Study files: one paper table as data (``configs/studies/<paper>_<table>.yaml``).

A study names the rows of a paper's results table -- each a training config plus overrides, or "uses row X's
run" (the same trained model shown again, e.g. the full method in an ablation and in a comparison) -- the
evaluation protocol(s) that fill its columns, and the paper's published numbers with the table reference.
``unmask reproduce`` turns it into a plan of runs (:mod:`unmask.reproduce.plan`) and a side-by-side table.

Why a file and not code: the paper's numbers, the protocol and the rows are what two people compare when a
number does not reproduce; they belong in one reviewed place, validated strictly (an unknown key, a missing
config, an override key the config does not have, a row using a missing row are one-line errors).

```yaml
name: 000_table11                 # default: the file name
paper: "000"                      # papers/INDEX.md number
table: "Table 11"
title: Ablation of BBMG and NRS (cross-dataset AUC %)
metric: auc                       # what the paper numbers are (auc, ap, eer, acc@0.5, acc@thr), in %
train_data: train                 # the --data NAME of the training store (a row may name another: data:)
train_faces: 5760                 # optional: training faces of the paper's setting (FF++: 720 train videos x 8
                                  # frames), the --dry-run size of a `steps_per_epoch: null` row when no store is given
average: [CDF, DFDC, DFDCP, FFIW] # columns whose mean is "Avg" (default: every paper column but Avg), or a
                                  # mapping {Avg: [FF++, CDF, ...], "Avg w/o FF++": [CDF, ...]}
protocols:
  - protocol: cross_dataset_000_table8   # configs/protocols/<name>.yaml or a YAML path
    only: [CDF, DFDC]                    # optional: test sets to run (default: all the protocol has)
    splits: [test]                       # optional: override every set's splits
    level: video                         # optional: video | frame
    frames: 32                           # optional: frames per video
    n_boot: 1000                         # optional
    overrides: ["eval.margin=0.125"]     # optional: protocol key=value
rows:
  - id: row1
    label: "w/o BBMG, w/o NRS"
    config: bbmg_nrs/table11_row1_none.yaml   # relative to configs/ (or to this file, or absolute)
    overrides: {method.nrs.start_epoch: 5}    # dotted config key -> value
    paper: {CDF: 93.18, DFDC: 72.42, Avg: 83.32}
  - id: ours
    label: BBMG + NRS (Table 8)
    uses: row4                                 # row4's run, evaluated again (train nothing)
    paper: {CDF: 94.14}
notes: what cannot be expressed yet, and why
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unmask.config import find_named_yaml, yaml_names
from unmask.errors import UnmaskError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
STUDY_DIR = CONFIG_DIR / "studies"
METRICS = ("auc", "ap", "eer", "acc@0.5", "acc@thr")

_STUDY_KEYS = {"name", "paper", "table", "title", "metric", "train_data", "train_faces", "average", "protocols", "rows",
               "notes"}
_ROW_KEYS = {"id", "label", "config", "overrides", "uses", "paper", "data", "notes"}
_PROTO_KEYS = {"protocol", "only", "splits", "level", "frames", "n_boot", "overrides"}


class StudyError(UnmaskError):
    """A study file is invalid; the message names the file and the key."""


@dataclass
class StudyProtocol:
    """One evaluation protocol run on every row (``unmask protocol`` with these settings)."""

    protocol: str
    only: list[str] | None = None
    splits: list[str] | None = None
    level: str | None = None
    frames: int | None = None
    n_boot: int | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class StudyRow:
    """One row of the paper's table: a config + overrides (trained), or ``uses`` another row's run."""

    id: str
    label: str
    config: str | None  # resolved path of the training config (None when ``uses``)
    overrides: dict[str, Any]
    uses: str | None
    paper: dict[str, float]  # column -> the paper's number (in %, as printed)
    data: str | None = None  # --data NAME of this row's training store (None: the study's train_data)
    notes: str = ""


@dataclass
class Study:
    name: str
    paper: str
    table: str
    rows: list[StudyRow]
    protocols: list[StudyProtocol]
    metric: str
    notes: str
    title: str = ""
    train_data: str = "train"
    average: list[str] | dict[str, list[str]] | None = None
    path: Path | None = None
    train_faces: int | None = None  # training faces of the paper's setting: --dry-run's size when no store is given

    def row(self, row_id: str) -> StudyRow:
        for r in self.rows:
            if r.id == row_id:
                return r
        raise StudyError(f"study {self.name}: no row {row_id!r} (rows: {', '.join(r.id for r in self.rows)})")

    def columns(self) -> list[str]:
        """The paper's columns in first-seen order (as the study file lists them)."""
        cols: list[str] = []
        for r in self.rows:
            cols += [c for c in r.paper if c not in cols]
        return cols

    def averages(self) -> dict[str, list[str]]:
        """Average column name -> the columns it averages (``Avg`` by default: every paper column but averages).

        A paper column ``"<prefix> Avg"`` (robustness: ``"Resize(s=128) Avg"``) averages ``"<prefix> <column>"``.
        """
        if isinstance(self.average, dict):
            return {k: list(v) for k, v in self.average.items()}
        if self.average:
            return {"Avg": list(self.average)}
        return {"Avg": [c for c in self.columns() if c != "Avg" and not c.endswith(" Avg")]}


def find_study(name_or_path: str | Path) -> Path:
    """``000_table11`` -> configs/studies/000_table11.yaml; a path is taken as it is."""
    return find_named_yaml(name_or_path, STUDY_DIR, "study", StudyError)


def study_names() -> list[str]:
    return yaml_names(STUDY_DIR)


def _resolve_config(ref: str, study_path: Path) -> Path | None:
    p = Path(ref).expanduser()
    cands = [p] if p.is_absolute() else [CONFIG_DIR / p, study_path.parent / p, Path.cwd() / p]
    for c in cands:
        if c.is_file():
            return c.resolve()
    return None


def _str_list(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise StudyError(f"{where}: expected a list of names, got {value!r}")
    return [str(v) for v in value]


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise StudyError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _protocol(item: Any, where: str) -> StudyProtocol:
    if isinstance(item, str):
        item = {"protocol": item}
    if not isinstance(item, dict) or "protocol" not in item:
        raise StudyError(f"{where}: expected a protocol name or a mapping with 'protocol:'")
    _check_keys(item, _PROTO_KEYS, where)
    from unmask.evaluate.protocols import find_protocol

    try:
        find_protocol(str(item["protocol"]))
    except UnmaskError as exc:
        raise StudyError(f"{where}: {exc}") from None
    level = item.get("level")
    if level not in (None, "video", "frame"):
        raise StudyError(f"{where}.level: {level!r} is not video or frame")
    for key in ("frames", "n_boot"):
        v = item.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise StudyError(f"{where}.{key}: expected a non-negative integer, got {v!r}")
    over = item.get("overrides") or []
    if not isinstance(over, list) or not all(isinstance(o, str) and "=" in o for o in over):
        raise StudyError(f"{where}.overrides: expected a list of key=value strings")
    return StudyProtocol(protocol=str(item["protocol"]), only=_str_list(item.get("only"), f"{where}.only"),
                         splits=_str_list(item.get("splits"), f"{where}.splits"), level=level,
                         frames=item.get("frames"), n_boot=item.get("n_boot"), overrides=list(over))


def _averages(value: Any, where: str) -> list[str] | dict[str, list[str]] | None:
    if isinstance(value, dict):
        return {str(k): _str_list(v, f"{where}.{k}") or [] for k, v in value.items()}
    return _str_list(value, where)


def _paper_numbers(value: Any, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{where}: expected a mapping column -> number")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise StudyError(f"{where}.{k}: expected a number (the paper's %), got {v!r}")
        out[str(k)] = float(v)
    return out


def override_args(overrides: dict[str, Any]) -> list[str]:
    """``{"optim.lr": 5e-4, "method.bbmg": False}`` -> ``["optim.lr=0.0005", "method.bbmg=false"]``.

    Values are written so that ``unmask train``'s YAML parsing of ``key=value`` gives them back unchanged.
    """
    import json

    out = []
    for key, value in overrides.items():
        if isinstance(value, str) and yaml.safe_load(value) == value:
            text = value
        elif isinstance(value, (dict, list, tuple)):
            text = json.dumps(value)
        else:
            text = json.dumps(value)
        out.append(f"{key}={text}")
    return out


def resolve_paths(overrides: dict[str, Any]) -> dict[str, Any]:
    """Override values naming a YAML file relative to the repository (``configs/synthesis/sbi_global.yaml``, as
    ``method.synthesizer`` takes) -> absolute paths, so the commands work from any directory (and on a cluster)."""
    out = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.endswith((".yaml", ".yml")) and not Path(value).is_absolute():
            for base in (ROOT, CONFIG_DIR):
                if (base / value).is_file():
                    value = str((base / value).resolve())
                    break
        out[key] = value
    return out


def _check_overrides(config: Path, overrides: dict[str, Any], where: str) -> None:
    """Every override key must be a real key of the config (strict dataclass validation of the result), and a
    synthesis recipe it names must load."""
    from unmask.train.config import load_train_config

    try:
        cfg = load_train_config(config, override_args(resolve_paths(overrides)))
        synth = getattr(cfg.method, "synthesizer", None)
        if isinstance(synth, str) and synth:
            from unmask.synthesis.recipes import resolve_config

            resolve_config(synth)
    except UnmaskError as exc:
        raise StudyError(f"{where}: {exc}") from None


def load_study(path_or_name: str | Path, validate: bool = True) -> Study:
    """Read and validate a study file (``yaml.safe_load``: nothing in it executes).

    ``validate`` also loads every row's config with its overrides (strict keys), so a study that loads is one
    whose rows ``unmask train`` accepts.
    """
    path = find_study(path_or_name)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise StudyError(f"{path}: top level must be a mapping")
    _check_keys(data, _STUDY_KEYS, str(path))
    name = str(data.get("name") or path.stem)
    where = f"study {name}"
    for key in ("paper", "table"):
        if not data.get(key):
            raise StudyError(f"{where}: '{key}:' is required (which paper table this reproduces)")
    metric = str(data.get("metric", "auc"))
    if metric not in METRICS:
        raise StudyError(f"{where}.metric: {metric!r} is not one of {list(METRICS)}")
    protos = data.get("protocols")
    if not isinstance(protos, list) or not protos:
        raise StudyError(f"{where}: 'protocols:' must list at least one evaluation protocol")
    protocols = [_protocol(p, f"{where}.protocols[{i}]") for i, p in enumerate(protos)]
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list) or not raw_rows:
        raise StudyError(f"{where}: 'rows:' must list at least one row")
    rows: list[StudyRow] = []
    seen: set[str] = set()
    for i, r in enumerate(raw_rows):
        rw = f"{where}.rows[{i}]"
        if not isinstance(r, dict):
            raise StudyError(f"{rw}: expected a mapping")
        _check_keys(r, _ROW_KEYS, rw)
        rid = r.get("id")
        if not rid or not isinstance(rid, (str, int)):
            raise StudyError(f"{rw}: 'id:' is required")
        rid = str(rid)
        if not all(c.isalnum() or c in "-_." for c in rid):
            raise StudyError(f"{rw}: id {rid!r} may hold only letters, digits, - _ .")
        if rid in seen:
            raise StudyError(f"{rw}: duplicate row id {rid!r}")
        seen.add(rid)
        rw = f"{where} row {rid}"
        has_config, uses = r.get("config"), r.get("uses")
        if bool(has_config) == bool(uses):
            raise StudyError(f"{rw}: give exactly one of 'config:' (train it) or 'uses:' (another row's run)")
        overrides = r.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise StudyError(f"{rw}.overrides: expected a mapping of dotted config keys to values")
        if uses and overrides:
            raise StudyError(f"{rw}: a 'uses:' row trains nothing, so it takes no 'overrides:'")
        config = None
        if has_config:
            config = _resolve_config(str(has_config), path)
            if config is None:
                raise StudyError(f"{rw}: config {has_config!r} not found (looked under {CONFIG_DIR})")
        rows.append(StudyRow(id=rid, label=str(r.get("label") or rid), config=str(config) if config else None,
                             overrides={str(k): v for k, v in overrides.items()},
                             uses=str(uses) if uses else None, paper=_paper_numbers(r.get("paper"), f"{rw}.paper"),
                             data=str(r["data"]) if r.get("data") else None, notes=str(r.get("notes") or "")))
    ids = {r.id for r in rows}
    for r in rows:
        if r.uses is not None:
            if r.uses not in ids:
                raise StudyError(f"{where} row {r.id}: uses row {r.uses!r}, which is not in the study")
            target = next(x for x in rows if x.id == r.uses)
            if target.uses is not None:
                raise StudyError(f"{where} row {r.id}: uses row {r.uses!r}, which itself uses {target.uses!r}; "
                                 f"name the trained row")
    tf = data.get("train_faces")
    if tf is not None and (isinstance(tf, bool) or not isinstance(tf, int) or tf < 1):
        raise StudyError(f"{where}.train_faces: expected a positive integer, got {tf!r}")
    study = Study(name=name, paper=str(data["paper"]), table=str(data["table"]), rows=rows, protocols=protocols,
                  metric=metric, notes=str(data.get("notes") or "").strip(), title=str(data.get("title") or ""),
                  train_data=str(data.get("train_data") or "train"),
                  average=_averages(data.get("average"), f"{where}.average"), path=path, train_faces=tf)
    if validate:
        for r in rows:
            if r.config:
                _check_overrides(Path(r.config), r.overrides, f"{where} row {r.id}")
    return study
