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

Short schedules: eq. 6 moves a noise sample's weight from 1 towards its distance by t / beta, and the paper's
beta = 200 over 100 epochs reaches t / beta = 0.5 at the end. With beta 200 a run of a few epochs keeps every
weight above ~0.99 (NRS is then a no-op), so ``nrs.beta_per_epoch`` sets beta = beta_per_epoch x epochs
instead: 2 is the paper's ratio (200 / 100) at any length. The paper configs keep beta 200; the tiny profile
uses beta_per_epoch 2. Each epoch's pseudo-fake weights are summarized (min / mean / share weighted below 1)
in the epoch metrics, so a run shows whether NRS acted.
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
    beta_per_epoch: float | None = None  # when set: beta = this x epochs (2 = the paper's 200 / 100); see above
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
        if self.nrs.beta_per_epoch is not None and self.nrs.beta_per_epoch <= 0:
            raise ConfigError("method.nrs.beta_per_epoch must be > 0 (or null to use method.nrs.beta)")


@register_method
class BBMGNRS(Method):
    name = "bbmg_nrs"
    Config = BBMGNRSConfig

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.nrs = self.options.nrs
        self.memory = RealFeatureMemory(self.nrs.k_s)
        self._weights: torch.Tensor | None = None  # first-pass weights, reused on SAM's second pass
        # eq. 6's beta: the paper's value, or scaled to the run's length (nrs.beta_per_epoch)
        self.beta = float(self.nrs.beta if self.nrs.beta_per_epoch is None else self.nrs.beta_per_epoch * cfg.epochs)
        self._stats = self._empty_stats()  # this epoch's pseudo-fake weights (see epoch_weight_stats)

    @staticmethod
    def _empty_stats() -> torch.Tensor:
        # [fakes weighted, sum of weights, fakes below lambda (noise), min weight]
        return torch.tensor([0.0, 0.0, 0.0, float("inf")], dtype=torch.float64)

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
                    self._weights = nrs_weights(dist, labels == FAKE, self.t, self.nrs.lam, self.beta)
                    fake = labels == FAKE
                    w_fake = self._weights[fake].double().cpu()
                    noise = int((dist[fake] < self.nrs.lam).sum())
                    if w_fake.numel():  # accumulated until on_epoch_end (and kept in state_dict for a resume)
                        self._stats[:3] += torch.tensor([w_fake.numel(), float(w_fake.sum()), noise], dtype=torch.float64)
                        self._stats[3] = min(float(self._stats[3]), float(w_fake.min()))
                    metrics["nrs_noise_frac"] = noise / max(int(fake.sum()), 1)
                    metrics["nrs_weight_fake"] = float(w_fake.mean())
                    metrics["nrs_weight_min"] = float(w_fake.min())
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

    def epoch_weight_stats(self) -> dict[str, float]:
        """This epoch's pseudo-fake weights over all ranks: min, mean, share below 1 (noise samples), t / beta."""
        stats = all_gather_cat(self._stats.clone()).view(-1, 4)
        n = float(stats[:, 0].sum())
        if n == 0:
            return {}
        return {"nrs_epoch_weight_min": float(stats[:, 3].min()), "nrs_epoch_weight_mean": float(stats[:, 1].sum()) / n,
                "nrs_epoch_noise_frac": float(stats[:, 2].sum()) / n, "nrs_t_over_beta": min(self.t / self.beta, 1.0)}

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Algorithm 1 lines 18-20: centres of the top-k_s reals of this epoch, for the next epoch."""
        self.epoch = epoch
        if not self.collecting():
            return {}
        out = self.epoch_weight_stats()
        self._stats = self._empty_stats()
        feats_present = torch.tensor([0 if self.memory.feats is None else 1])
        if int(all_gather_cat(feats_present).min()) == 0:  # some rank saw no real sample this epoch
            self.memory.clear()
            return out
        _, feats, _ = self.memory.gathered(all_gather_cat)
        centres = kmeans(feats, self.nrs.k, seed=self.cfg.seed * 1000 + epoch, iters=self.nrs.kmeans_iters)
        self.memory.centres = centres.to(self.device)
        n = len(feats)
        self.memory.clear()
        return {**out, "nrs_memory": float(n), "nrs_centres": float(self.memory.centres.shape[0])}

    def state_dict(self):
        return {"memory": self.memory.state_dict(), "weight_stats": self._stats.clone()}

    def load_state_dict(self, state):
        self.memory.load_state_dict(state["memory"])
        if state.get("weight_stats") is not None:  # older checkpoints lack it
            self._stats = state["weight_stats"].clone().to(torch.float64)
