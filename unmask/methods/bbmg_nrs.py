"""BBMG + NRS (paper 000: Wang et al., "Explore and Enhance the Generalization of Anomaly DeepFake Detection").

* **BBMG** is a data recipe: pseudo-fakes from the ``bbmg`` synthesizer (boundary-blurred local + global
  masks, sec. 3.3). With ``bbmg: false`` the SBI synthesizer is used instead (Table 11 ablation rows).
* **NRS** (sec. 3.4, Algorithm 1) reweights the pseudo-fakes' CE by their min cosine distance to k-means
  centres of the most confidently real features of the previous epoch; see :mod:`unmask.methods.nrs`.
  With ``nrs.enabled: false`` the loss is plain CE.

Algorithm 1 step by step, in this module's terms (t = epoch + 1, the paper's 1-based epoch):

1. every step: one forward pass of reals + pseudo-fakes gives logits and pooled features;
2. if t >= T_k and centres exist: loss = eq. 9 with weights of eq. 5-6, else plain CE (same 1/N mean);
3. if t >= T_k - 1: the reals' (real probability, feature) go to the memory (top k_s kept);
4. end of epoch t >= T_k - 1: gather the memory across ranks, k-means -> k centres for epoch t + 1.

T_k is not given in the paper; ``nrs.start_epoch`` defaults to 10 (of 100 epochs): late enough that
the classifier separates reals from pseudo-fakes ("the model has acquired some discriminative ability",
sec. 3.5), early enough for the weights to act on most of training. The features are collected during the
training steps of epoch t (Algorithm 1 lines 8 and 18), from the first (unperturbed) pass under SAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from unmask.data.records import FAKE, REAL
from unmask.errors import ConfigError
from unmask.methods.base import DataRecipe, Method, MethodConfig, accuracy
from unmask.methods.nrs import RealFeatureMemory, kmeans, min_cosine_distance, nrs_weights, weighted_ce
from unmask.methods.registry import register_method
from unmask.train.distributed import all_gather_cat


@dataclass
class NRSConfig:
    enabled: bool = True
    lam: float = 0.5  # lambda: distance threshold of a noise sample (sec. 4.1)
    beta: float = 200.0  # epoch parameter of eq. 6 (sec. 4.1)
    k: int = 5  # k-means centres (sec. 4.1)
    k_s: int = 500  # real features kept in memory (sec. 4.1)
    start_epoch: int = 10  # T_k, 1-based as in Algorithm 1; not given in the paper (see module docstring)
    kmeans_iters: int = 100


@dataclass
class BBMGNRSConfig(MethodConfig):
    name: str = "bbmg_nrs"
    bbmg: bool = True  # False: SBI pseudo-fakes (Table 11 rows 1 and 3)
    nrs: NRSConfig = field(default_factory=NRSConfig)

    def __post_init__(self) -> None:
        if self.nrs.enabled and self.nrs.start_epoch < 2:
            raise ConfigError("method.nrs.start_epoch (T_k) must be >= 2: centres come from epoch T_k - 1")


@register_method
class BBMGNRS(Method):
    name = "bbmg_nrs"
    Config = BBMGNRSConfig

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.nrs = self.options.nrs
        self.memory = RealFeatureMemory(self.nrs.k_s)
        self._weights: torch.Tensor | None = None  # first-pass weights, reused on SAM's second pass

    @property
    def data_recipe(self) -> DataRecipe:
        return DataRecipe("pairs", synthesizer="bbmg" if self.options.bbmg else "sbi")

    @property
    def t(self) -> int:
        """The paper's 1-based epoch number."""
        return self.epoch + 1

    def nrs_active(self) -> bool:
        return self.nrs.enabled and self.t >= self.nrs.start_epoch and self.memory.centres is not None

    def collecting(self) -> bool:
        return self.nrs.enabled and self.t >= self.nrs.start_epoch - 1

    def loss(self, batch, first_pass):
        labels = batch["label"]
        logits, feats = self.model(batch["image"], return_features=True)
        metrics: dict[str, float] = {"acc": accuracy(logits.detach(), labels)}
        if first_pass:
            self._weights = None
            with torch.no_grad():
                is_real = labels == REAL
                if self.collecting():
                    p_real = logits.detach().float().softmax(1)[:, REAL]
                    self.memory.add(p_real[is_real], feats.detach()[is_real], batch["index"][is_real])
                if self.nrs_active():
                    dist = min_cosine_distance(feats.detach(), self.memory.centres.to(feats.device))
                    self._weights = nrs_weights(dist, labels == FAKE, self.t, self.nrs.lam, self.nrs.beta)
                    fake = labels == FAKE
                    metrics["nrs_noise_frac"] = float((dist[fake] < self.nrs.lam).float().mean())
                    metrics["nrs_weight_fake"] = float(self._weights[fake].mean())
                    metrics["nrs_dist_fake"] = float(dist[fake].mean())
        if self._weights is not None:
            loss = weighted_ce(logits, labels, self._weights)
        else:
            loss = F.cross_entropy(logits.float(), labels)
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self._weights = None

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Algorithm 1 lines 18-20: centres of the top-k_s reals of this epoch, for the next epoch."""
        self.epoch = epoch
        if not self.collecting():
            return {}
        feats_present = torch.tensor([0 if self.memory.feats is None else 1])
        if int(all_gather_cat(feats_present).min()) == 0:  # some rank saw no real sample this epoch
            self.memory.clear()
            return {}
        _, feats, _ = self.memory.gathered(all_gather_cat)
        centres = kmeans(feats, self.nrs.k, seed=self.cfg.seed * 1000 + epoch, iters=self.nrs.kmeans_iters)
        self.memory.centres = centres.to(self.device)
        n = len(feats)
        self.memory.clear()
        return {"nrs_memory": float(n), "nrs_centres": float(self.memory.centres.shape[0])}

    def state_dict(self):
        return {"memory": self.memory.state_dict()}

    def load_state_dict(self, state):
        self.memory.load_state_dict(state["memory"])
