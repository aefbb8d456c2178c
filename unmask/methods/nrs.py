"""Noise Refinement Strategy (paper 000, sec. 3.4 and Algorithm 1) as pure functions + a feature memory.

* During epoch t the real samples' (real probability, pooled feature) pairs are collected
  (Algorithm 1 lines 6-8); :class:`RealFeatureMemory` keeps only the best ``k_s`` so far, so memory stays
  bounded however long the epoch.
* At the end of epoch t >= T_k - 1 the top ``k_s`` by real probability ("correctly predicted reals") are
  clustered by k-means into ``k`` centres (lines 18-20); under DDP the ranks' memories are gathered first so
  every rank computes identical centres.
* From epoch T_k on, a pseudo-fake whose min cosine distance to the centres is below lambda is a "noise
  sample" and its CE is weighted by alpha = Dist * (t / beta) + (1 - t / beta) (eq. 5-6); reals and far
  fakes weigh 1; the loss is the mean of the weighted CE over all samples (eq. 9).

Epoch numbering: the paper counts t = 1, 2, ..., T_max. The trainer counts epochs from 0, so these functions
take the paper's 1-based ``t`` and the method passes ``epoch + 1``. T_k (``start_epoch``) is 1-based too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def min_cosine_distance(features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Dist(F, C) = min_j (1 - cos(F, c_j)), one value per row of ``features`` (in [0, 2])."""
    f = F.normalize(features.float(), dim=1)
    c = F.normalize(centres.float(), dim=1)
    return (1.0 - f @ c.t()).min(dim=1).values


def alpha_pf(dist: torch.Tensor, t: int, beta: float) -> torch.Tensor:
    """Eq. 6: alpha = Dist * (t / beta) + 1 * (1 - t / beta); t / beta is capped at 1 so alpha stays in [Dist, 1]."""
    r = min(float(t) / float(beta), 1.0)
    return dist * r + (1.0 - r)


def nrs_weights(dist: torch.Tensor, is_fake: torch.Tensor, t: int, lam: float, beta: float) -> torch.Tensor:
    """Eq. 5: alpha_pf for pseudo-fakes with Dist < lambda, else 1 (all reals, and fakes far from the reals)."""
    noisy = is_fake.bool() & (dist < lam)
    return torch.where(noisy, alpha_pf(dist, t, beta), torch.ones_like(dist))


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 9: L = 1/N * sum_i w_i * CE_i (normalized by the sample count, not by the weights' sum)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (weights.to(ce.dtype) * ce).mean()


def top_k_memory(probs: torch.Tensor, feats: torch.Tensor, keys: torch.Tensor, k_s: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k_s`` rows with the highest real probability; ties broken by the smaller key (deterministic)."""
    order = torch.argsort(keys, stable=True)
    probs, feats, keys = probs[order], feats[order], keys[order]
    order = torch.argsort(probs, descending=True, stable=True)[:k_s]
    return probs[order], feats[order], keys[order]


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Euclidean k-means (Lloyd) with k-means++ initialization; deterministic for a given seed.

    Returns (min(k, N), D) centres. An emptied cluster is re-seeded with the point farthest from its centre.
    """
    x = x.float()
    n = x.shape[0]
    if n == 0:
        raise ValueError("k-means needs at least one point")
    k = min(k, n)
    gen = torch.Generator().manual_seed(seed)
    xc = x.cpu()
    # k-means++ (Arthur & Vassilvitskii 2007): next centre drawn with probability ~ D(x)^2.
    centres = [xc[int(torch.randint(n, (1,), generator=gen))]]
    d2 = ((xc - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # all remaining points coincide with a centre
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            idx = int(torch.multinomial(d2 / total, 1, generator=gen))
        centres.append(xc[idx])
        d2 = torch.minimum(d2, ((xc - xc[idx]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        dist = torch.cdist(xc, c)
        assign = dist.argmin(1)
        new = torch.zeros_like(c).index_add_(0, assign, xc)
        counts = torch.bincount(assign, minlength=k).to(xc.dtype)
        for j in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.min(1).values.argmax())
            new[j], counts[j] = xc[far], 1.0
        new = new / counts[:, None]
        shift = float((new - c).norm(dim=1).max())
        c = new
        if shift <= tol:
            break
    return c.to(x.device)


class RealFeatureMemory:
    """Running top-``k_s`` of (real probability, feature, sample key) over one epoch, plus the centres."""

    def __init__(self, k_s: int) -> None:
        self.k_s = k_s
        self.centres: torch.Tensor | None = None
        self.clear()

    def clear(self) -> None:
        self.probs = torch.empty(0)
        self.feats: torch.Tensor | None = None
        self.keys = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return int(self.probs.numel())

    @torch.no_grad()
    def add(self, probs: torch.Tensor, feats: torch.Tensor, keys: torch.Tensor) -> None:
        # Kept on the features' device: no host sync per step on a GPU (k_s x D floats is a few MB).
        dev = feats.device
        probs, feats, keys = probs.detach().float(), feats.detach().float(), keys.detach().long().to(dev)
        if self.feats is None:
            self.feats = feats.new_empty((0, feats.shape[1]))
        self.probs, self.feats, self.keys = top_k_memory(
            torch.cat([self.probs.to(dev), probs]), torch.cat([self.feats.to(dev), feats]),
            torch.cat([self.keys.to(dev), keys]), self.k_s
        )

    def gathered(self, gather) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All ranks' memories merged into the global top ``k_s`` (``gather`` = all_gather_cat)."""
        if self.feats is None:
            raise RuntimeError("the real-feature memory is empty")
        pad = self.k_s - len(self)  # all_gather needs equal shapes: pad with -inf probabilities
        probs = torch.cat([self.probs.cpu(), torch.full((pad,), float("-inf"))])
        feats = torch.cat([self.feats.cpu(), self.feats.new_zeros((pad, self.feats.shape[1]), device="cpu")])
        keys = torch.cat([self.keys.cpu(), torch.full((pad,), -1, dtype=torch.long)])
        probs, feats, keys = gather(probs), gather(feats), gather(keys)
        keep = torch.isfinite(probs)
        return top_k_memory(probs[keep], feats[keep], keys[keep], self.k_s)

    def state_dict(self) -> dict[str, Any]:
        return {"probs": self.probs, "feats": self.feats, "keys": self.keys, "centres": self.centres}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.probs, self.feats, self.keys = state["probs"], state["feats"], state["keys"]
        self.centres = state["centres"]
