"""PIM and DualFlat (paper 003: Guan et al., "Improving Generalization of Deepfake Detectors by Imposing Gradient
Regularization").

**PIM** (Algorithm 1, eq. 9-12). Per step:

1. clean pass with d = 0 at the shallow stage (:class:`unmask.models.pim.FeatureStatPerturber`): g1 = dL/dtheta
   and dL/d(d_mu, d_sigma);
2. d = r * grad / ||grad||_2 (eq. 9), the gradient all-reduced (averaged) across DDP ranks first, so every rank
   perturbs with the same, batch-shared d;
3. perturbed pass: g2 = dL(f')/dtheta with d fixed;
4. update with g = (1 - alpha) g1 + alpha g2 (eq. 12; alpha = lambda / r). Defaults r = 0.1, alpha = 1 (sec. V-A-3).

**DualFlat** (eq. 13-14): a third pass at SAM's weight perturbation w + r' g1 / ||g1|| (r' = ``rho_w`` = 0.05,
the SAM value the paper fixes in sec. V-F), with d = 0, and g = (1 - alpha - beta) g1 + alpha g2 + beta g3.
``dualflat`` is this method with beta > 0; {alpha 1, beta 0} is PIM, {alpha 0, beta 1} is SAM (sec. V-F).

All of it is one :class:`unmask.train.multipass.PassPlan` (the same mechanism SAM runs on), so the perturbed
passes leave BatchNorm running statistics where the clean pass put them (once per step; see that module).
Because the method owns its weight perturbation, ``optim.name`` must be a plain optimizer (sgd / adam / adamw).

The data recipe is free (Table V): ``recipe: supervised`` trains on the store's real and fake faces (FF++ with its
four manipulations, Table IV), any synthesizer name (``sbi``, ``bbmg``, a synthesis YAML) on reals + their
pseudo-fakes. The hook is installed only inside a training step: the saved model is the plain arch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as tdist

from unmask.errors import ConfigError
from unmask.methods.base import CrossEntropyMethod, DataRecipe, MethodConfig
from unmask.methods.registry import register_method
from unmask.models.pim import FeatureStatPerturber
from unmask.train.multipass import Pass, PassPlan, Perturbation, WeightPerturbation

SUPERVISED = "supervised"


@dataclass
class PIMConfig(MethodConfig):
    name: str = "pim"
    recipe: str = SUPERVISED  # "supervised" (real + fake faces of the store) or a synthesizer: sbi, bbmg, FILE.yaml
    r: float = 0.1  # approximation scalar of eq. 9 (sec. V-A-3)
    alpha: float = 1.0  # weight of the perturbed-statistics loss, eq. 12 / 14 (sec. V-A-3)
    beta: float = 0.0  # DualFlat: weight of the SAM-perturbed loss, eq. 14 (0 = PIM)
    rho_w: float = 0.05  # DualFlat's r': radius of the weight perturbation (sec. V-F, as SAM)

    def __post_init__(self) -> None:
        if self.r < 0 or self.rho_w < 0:
            raise ConfigError("method.r and method.rho_w must be >= 0")
        # sec. V-E: alpha < 0 rewards sensitivity, alpha > 1 rewards a higher clean loss; the same holds for beta.
        if not (0 <= self.alpha <= 1 and 0 <= self.beta <= 1 and self.alpha + self.beta <= 1 + 1e-9):
            raise ConfigError(f"method.alpha ({self.alpha}) and method.beta ({self.beta}) must lie in [0, 1] with "
                              "alpha + beta <= 1 (paper 003 sec. V-E)")


@dataclass
class DualFlatConfig(PIMConfig):
    name: str = "dualflat"
    # Table VIII's best row with both directions at alpha + beta = 1 (0.8 : 0.2); the tables' configs set both.
    alpha: float = 0.8
    beta: float = 0.2


class StatPerturbation(Perturbation):
    """PIM's direction as a multi-pass perturbation: probe d = 0 on the clean pass, d = r g / ||g|| after it."""

    name = "stats"
    needs_weight_grads = False  # d comes from dL/dd alone

    def grad_inputs(self) -> list[torch.Tensor]:
        return [self.perturber.d_mu, self.perturber.d_sigma]

    def __init__(self, stage: torch.nn.Module, r: float, perturber: FeatureStatPerturber | None = None) -> None:
        self.stage, self.r = stage, float(r)
        self.perturber = perturber or FeatureStatPerturber()
        self._hook = None
        self.d_mu: torch.Tensor | None = None  # the last step's direction (tests, logs)
        self.d_sigma: torch.Tensor | None = None

    def begin(self) -> None:
        self._hook = self.perturber.installed(self.stage)
        self._hook.__enter__()
        self.perturber.probe()

    def prepare(self) -> None:
        g_mu, g_sigma = self.perturber.grad()
        g = torch.cat([g_mu.detach().float(), g_sigma.detach().float()])
        if tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1:
            tdist.all_reduce(g)  # one d for the global batch (Algorithm 1 line 5 over all ranks' samples)
            g /= tdist.get_world_size()
        d = self.r * g / (g.norm(2) + 1e-12)
        c = g_mu.numel()
        self.d_mu, self.d_sigma = d[:c], d[c:]
        self.perturber.off()  # no probing on later passes until apply

    def apply(self) -> None:
        self.perturber.perturb(self.d_mu, self.d_sigma)

    def restore(self) -> None:
        self.perturber.off()

    def end(self) -> None:
        if self._hook is not None:
            self._hook.__exit__(None, None, None)
            self._hook = None


@register_method
class PIM(CrossEntropyMethod):
    name = "pim"
    Config = PIMConfig

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.stats: StatPerturbation | None = None
        self.weights: WeightPerturbation | None = None

    @property
    def data_recipe(self) -> DataRecipe:
        recipe = self.options.recipe
        return DataRecipe("real_fake") if recipe == SUPERVISED else DataRecipe("pairs", synthesizer=recipe)

    def attach(self, model, **kwargs) -> None:
        # Checked here (before any data is built), not in __init__: the method is also built for introspection.
        if getattr(self.cfg.optim, "name", None) == "sam":
            raise ConfigError(f"method {self.name} perturbs the weights itself (DualFlat: method.beta, method.rho_w): "
                              "set optim.name to sgd, adam or adamw")
        super().attach(model, **kwargs)
        arch = self.detector(getattr(model, "module", model))  # DDP wraps the training module
        self.stats = StatPerturbation(arch.shallow_stage, self.options.r)

    def pass_plan(self, optimizer: torch.optim.Optimizer) -> PassPlan:
        o = self.options
        clean = 1.0 - o.alpha - o.beta
        clean = 0.0 if abs(clean) < 1e-9 else clean  # alpha + beta = 1: no clean term (0.8 + 0.2 is not 1.0 in floats)
        self.weights = WeightPerturbation([{"params": [p for g in optimizer.param_groups for p in g["params"]],
                                            "rho": o.rho_w, "adaptive": False}])
        return PassPlan(clean_coef=clean,
                        passes=(Pass(self.stats, o.alpha, "loss_pim"), Pass(self.weights, o.beta, "loss_sam")))


@register_method
class DualFlat(PIM):
    name = "dualflat"
    Config = DualFlatConfig
