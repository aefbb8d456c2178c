"""Learning to mask (paper 004: Fei, Dai, Wang, Xia, "Learning to Mask: Towards Generalized Face Forgery Detection").

A teacher (CNN + diverse-MHA ViT, :class:`unmask.models.l2m.L2MTeacher`) and a student (CNN + masked average
pooling + MLP, the registered arch ``l2m_student``) train together on real and fake faces (supervised, like
``baseline``). Per step, eq. 7:

    L = L_cls^t + L_vit^t + alpha L_diversity + L^s

* the teacher's attention map (eq. 2: the mean over heads of the last block's class-token attention to the
  spatial tokens) chooses k = round(25% of h*w) positions (eq. 4; ``strategy`` high / low / random, Table 4);
* the student's deep map is zeroed there and average pooled (sec. 3.2); the mask is detached (it guides the
  student, the student's loss never trains the teacher through it);
* deep mixup (eq. 5-6): F' = lam F_i + (1 - lam) F_perm(i) and y' likewise, one lam ~ Beta(a, a) per step and a
  random permutation of the batch (mixup's own recipe [10]; paper 004 gives no distribution for lam: a =
  ``mixup_alpha`` = 1.0, i.e. lam uniform on [0, 1]); ``mixup: false`` is Table 3's "w/o mixup";
* L^s: cross-entropy of the MLP's logits against the soft labels y'.

Only the student is the inference network (``detector``): ``best.pt`` holds it alone and ``detect`` / ``export``
see an ordinary CNN classifier (no mask, no mixup). ``last.pt`` holds the whole module (teacher too) for resume.
The mixup / random-mask draws come from the method's own ``np.random.Generator`` (seeded by ``seed``, saved in the
checkpoint), and a SAM second pass reuses the first pass's draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unmask.errors import ConfigError
from unmask.methods.base import DataRecipe, Method, MethodConfig, accuracy
from unmask.methods.registry import register_method
from unmask.models.arch import Arch
from unmask.models.l2m import STRATEGIES, L2MModule, L2MStudent, L2MTeacher, diversity_loss


@dataclass
class TeacherConfig:
    """The teacher network (sec. 3.1-3.2, 4.1). ``backbone: null`` = the student's (homogeneous pair)."""

    backbone: str | None = None  # Table 5: resnet18 / resnet34 / xception
    pretrained: str | None = "same"  # "same" = model.pretrained; else a source name / weights file / null
    depth: int = 6  # transformer blocks (sec. 4.1)
    heads: int = 6  # heads of the diverse MHA (sec. 4.1)
    latent_dim: int = 2048  # Q/K/V width, split as heads x (latent_dim // heads): 6 x 341 = 2046 (see models/l2m.py)
    vit_dim: int | None = None  # token width; null = the CNN's channels (X_t itself is the token sequence)
    mlp_dim: int = 2048  # the ViT blocks' MLP width (not given by the paper)


@dataclass
class L2MConfig(MethodConfig):
    name: str = "l2m"
    mask_ratio: float = 0.25  # share of the h*w positions masked (sec. 4.1)
    strategy: str = "high"  # Table 4: high (default) | low | random
    pool: str = "mean"  # "mean": average over all positions, masked = 0 (as printed) | "visible": over unmasked ones
    alpha: float = 0.1  # weight of the diversity loss, eq. 7 (sec. 4.1)
    diversity: str = "diverse"  # "diverse" (penalize similar heads) | "as_printed" (eq. 3 literally; see diversity_loss)
    mixup: bool = True  # deep mixup (sec. 3.3); false = Table 3's "w/o mixup"
    mixup_alpha: float = 1.0  # lam ~ Beta(a, a): not given by the paper; 1.0 = uniform on [0, 1]
    mlp_hidden: int = 512  # the student's MLP classifier: hidden width (not given by the paper)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"method.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"method.strategy {self.strategy!r}: choose from {', '.join(STRATEGIES)} (paper 004 Table 4)")
        if self.pool not in ("mean", "visible"):
            raise ConfigError(f"method.pool {self.pool!r}: choose mean or visible")
        if self.diversity not in ("diverse", "as_printed"):
            raise ConfigError(f"method.diversity {self.diversity!r}: choose diverse or as_printed")
        if self.mixup and self.mixup_alpha <= 0:
            raise ConfigError("method.mixup_alpha must be > 0 (Beta(a, a)); set method.mixup=false to turn mixup off")


@register_method
class L2M(Method):
    name = "l2m"
    Config = L2MConfig

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.rng = np.random.default_rng(int(cfg.seed) * 1_000_003 + 4)
        self._draws: dict[str, Any] | None = None  # the first pass's draws, reused by a SAM second pass

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("real_fake")

    def build(self) -> L2MModule:
        m, o = self.cfg.model, self.options
        t = o.teacher
        student = L2MStudent.build(m.backbone, pretrained=m.pretrained, input_size=m.input_size,
                                   drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate,
                                   mlp_hidden=o.mlp_hidden, **dict(m.options))
        teacher = L2MTeacher(t.backbone or m.backbone, pretrained=m.pretrained if t.pretrained == "same" else t.pretrained,
                             input_size=student.input_size, depth=t.depth, heads=t.heads, latent_dim=t.latent_dim,
                             vit_dim=t.vit_dim, mlp_dim=t.mlp_dim)
        return L2MModule(student, teacher)

    def detector(self, module) -> Arch:
        return module.student

    def _draw(self, batch_size: int, grid: tuple[int, int]) -> dict[str, Any]:
        o = self.options
        draws: dict[str, Any] = {"perm": None, "lam": 1.0, "scores": None}
        if o.mixup:
            draws["lam"] = float(self.rng.beta(o.mixup_alpha, o.mixup_alpha))
            draws["perm"] = torch.from_numpy(self.rng.permutation(batch_size))
        if o.strategy == "random":
            draws["scores"] = torch.from_numpy(self.rng.random((batch_size, grid[0] * grid[1])))
        return draws

    def loss(self, batch: dict[str, torch.Tensor], first_pass: bool):
        o = self.options
        x, y = batch["image"], batch["label"]
        module = getattr(self.model, "module", self.model)
        if first_pass or self._draws is None:
            self._draws = self._draw(x.shape[0], module.student_grid)
        d = self._draws
        targets = F.one_hot(y, num_classes=2).float()
        out = self.model(x, ratio=o.mask_ratio, strategy=o.strategy, pool_mode=o.pool, random_scores=d["scores"],
                         perm=d["perm"], lam=d["lam"], targets=targets)
        l_cls = F.cross_entropy(out["logits_cls"].float(), y)
        l_vit = F.cross_entropy(out["logits_vit"].float(), y)
        l_div = diversity_loss(out["head_maps"], o.diversity)
        l_s = F.cross_entropy(out["logits_s"].float(), out["targets_s"])  # soft labels y' (eq. 6)
        loss = l_cls + l_vit + o.alpha * l_div + l_s  # eq. 7
        return loss, {"loss": float(loss.detach()), "loss_cls_t": float(l_cls.detach()),
                      "loss_vit_t": float(l_vit.detach()), "loss_div": float(l_div.detach()),
                      "loss_s": float(l_s.detach()), "lam": d["lam"], "acc_vit_t": accuracy(out["logits_vit"].detach(), y)}

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state and "rng" in state:
            self.rng.bit_generator.state = state["rng"]
