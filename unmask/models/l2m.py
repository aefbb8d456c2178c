"""Paper 004 (Fei et al., "Learning to Mask"): the student arch ``l2m_student`` and the teacher network.

**Student** (registered; the only network in ``best.pt``): a timm CNN -> deep map X_s (B, C, h, w) -> optional
mask M (eq. 4: 0 at the teacher's top-k attended positions) -> average pooling -> MLP classifier (sec. 3.3).
At inference there is no mask and no mixup: ``forward(x)`` is CNN -> mean pool -> MLP, an ordinary detector.
It subclasses :class:`~unmask.models.detector.Detector` for the timm plumbing it shares (family, Grad-CAM layer,
shallow stage, feature maps) and replaces the head.

**Teacher** (:class:`L2MTeacher`, never registered: it only trains and lives in ``last.pt``): a CNN -> X_t
(B, c, h, w) as a token sequence (sec. 3.1) + a learnable class token + learnable position embeddings -> a ViT of
``depth`` pre-norm blocks with ``heads``-head attention written with torch ops, so that every block returns its
per-head attention weights A_i (eq. 1; timm's fused attention returns none). The attention map is the mean over
heads (eq. 2) of the last block's class-token row restricted to the spatial tokens. Two heads: a classifier on
the pooled CNN features (L_cls^t) and one on the final class token (L_vit^t).

Widths (sec. 4.1 says "6-head MHA with latent dimension 2048", and 2048 is not divisible by 6): the token
(residual) width ``vit_dim`` is the CNN's channel count c by default (2048 for Xception: the paper feeds X_t
itself), with a linear projection when set otherwise; the Q/K/V width ``latent_dim`` = 2048 is split into
``heads`` heads of ``latent_dim // heads`` = 341 channels (6 x 341 = 2046 in all; the output projection maps
2046 back to ``vit_dim``), and eq. 1's scale is 1/sqrt(341). The MLP width ``mlp_dim`` is not given: 2048.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unmask.errors import ConfigError
from unmask.models.arch import register_arch
from unmask.models.backbones import build_backbone
from unmask.models.detector import Detector

STRATEGIES = ("high", "low", "random")  # paper 004 Table 4


# --- the student -----------------------------------------------------------------------------------------------

@register_arch("l2m_student")
class L2MStudent(Detector):
    """Paper 004's student: timm CNN trunk, (masked) average pooling, MLP classifier. Logits (B, 2)."""

    def __init__(self, net: nn.Module, *, mlp_hidden: int = 512, **kwargs: Any) -> None:
        super().__init__(net, **kwargs)
        self.mlp_hidden = int(mlp_hidden)
        c = int(net.num_features)
        # The paper's "MLP classifier" (sec. 3.3) gives no widths: one hidden layer of mlp_hidden (512) + ReLU.
        self.mlp = nn.Sequential(nn.Linear(c, self.mlp_hidden), nn.ReLU(inplace=False),
                                 nn.Linear(self.mlp_hidden, self.num_classes))

    @classmethod
    def build(cls, backbone: str = "xception", pretrained: str | None = None, input_size: int | None = None,
              drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_classes: int = 2, mlp_hidden: int = 512,
              mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
              **timm_kwargs: Any) -> "L2MStudent":
        timm_kwargs = {k: v for k, v in timm_kwargs.items() if k != "drop_rate"}
        if drop_path_rate:
            timm_kwargs["drop_path_rate"] = float(drop_path_rate)
        # num_classes=0: timm's own classifier is an Identity; the MLP head is ours.
        bb = build_backbone(backbone, pretrained=pretrained, num_classes=0, drop_rate=0.0, **timm_kwargs)
        if hasattr(bb.net, "patch_embed"):
            raise ConfigError(f"l2m_student: {backbone} is a ViT; the student masks a CNN's (B, C, h, w) feature map")
        return cls(bb.net, mlp_hidden=mlp_hidden, backbone=backbone, timm_name=bb.timm_name,
                   input_size=input_size or bb.default_input_size, mean=tuple(mean) if mean else bb.mean,
                   std=tuple(std) if std else bb.std, num_classes=num_classes, pretrained=pretrained,
                   timm_kwargs=timm_kwargs, drop_rate=drop_rate)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "L2MStudent":
        m = cls.build(meta.get("timm_name") or meta["backbone"], pretrained=None, input_size=int(meta["input_size"]),
                      drop_rate=float(meta.get("drop_rate") or 0.0), num_classes=int(meta.get("num_classes", 2)),
                      mlp_hidden=int(meta.get("mlp_hidden", 512)), mean=tuple(meta["mean"]), std=tuple(meta["std"]),
                      **dict(meta.get("timm_kwargs") or {}))
        m.backbone, m.pretrained = meta.get("backbone", m.backbone), meta.get("pretrained")
        return m

    # --- pieces the training step composes (mask and mixup sit between them) ------------------------------
    def deep_map(self, x: torch.Tensor) -> torch.Tensor:
        """X_s: the CNN's last feature map (B, C, h, w) for ``x`` in [0, 1]."""
        return self.net.forward_features(self.normalize(x))

    @staticmethod
    def pool(fmap: torch.Tensor, mask: torch.Tensor | None = None, mode: str = "mean") -> torch.Tensor:
        """F = Pooling(X_s * M) (sec. 3.2). ``mask`` (B, h*w) of 0/1 or None (inference: no mask).

        ``mode="mean"``: the plain average over all h*w positions, masked ones counting as 0 (as printed);
        ``"visible"``: the average over the unmasked positions only (keeps the feature scale of inference)."""
        if mask is None:
            return fmap.mean(dim=(2, 3))
        b, c, h, w = fmap.shape
        m = mask.to(fmap.dtype).view(b, 1, h, w)
        summed = (fmap * m).sum(dim=(2, 3))
        if mode == "visible":
            return summed / m.sum(dim=(2, 3)).clamp_min(1.0)
        return summed / float(h * w)

    def classify(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.head_drop(feats))

    # --- the Arch contract ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Inference path: no mask, no mixup. ``x`` in [0, 1] -> logits (and the pooled features)."""
        pooled = self.pool(self.deep_map(x))
        logits = self.classify(pooled)
        return (logits, pooled) if return_features else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.deep_map(x))

    @property
    def num_features(self) -> int:
        return int(self.net.num_features)

    def arch_meta(self) -> dict[str, Any]:
        return {**super().arch_meta(), "mlp_hidden": self.mlp_hidden}


@torch.no_grad()
def feature_grid(net: nn.Module, input_size: int) -> tuple[int, int]:
    """(h, w) of a timm CNN's last feature map at ``input_size`` (one eval-mode forward of a zero image)."""
    was = net.training
    net.eval()
    fmap = net.forward_features(torch.zeros(1, 3, input_size, input_size))
    net.train(was)
    return int(fmap.shape[-2]), int(fmap.shape[-1])


# --- the teacher -----------------------------------------------------------------------------------------------

class WeightedAttention(nn.Module):
    """Multi-head self-attention that returns its weights: softmax(Q_i K_i^T / sqrt(d_head)) per head (eq. 1).

    ``dim`` is the token width, ``heads * head_dim`` the Q/K/V width (need not equal ``dim``)."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = int(heads), int(head_dim)
        inner = self.heads * self.head_dim
        self.qkv = nn.Linear(dim, 3 * inner)  # the "3 different MLP layers" of sec. 3.2, as one matmul
        self.proj = nn.Linear(inner, dim)
        self.scale = self.head_dim ** -0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, dim) -> (output (B, N, dim), weights (B, heads, N, N), each row a softmax summing to 1)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(b, n, self.heads * self.head_dim)
        return self.proj(out), weights


class ViTBlock(nn.Module):
    """Pre-norm transformer encoder block (ViT's): x + MHA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WeightedAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, weights = self.attn(self.norm1(x))
        x = x + a
        return x + self.mlp(self.norm2(x)), weights


class L2MTeacher(nn.Module):
    """CNN + diverse-MHA ViT (sec. 3.1-3.2). Training-only: not an Arch, never exported."""

    def __init__(self, backbone: str = "xception", pretrained: str | None = None, input_size: int = 224, *,
                 depth: int = 6, heads: int = 6, latent_dim: int = 2048, vit_dim: int | None = None,
                 mlp_dim: int = 2048, num_classes: int = 2) -> None:
        super().__init__()
        if heads < 1 or depth < 1 or latent_dim < heads:
            raise ConfigError(f"teacher ViT: need depth >= 1, heads >= 1 and latent_dim >= heads "
                              f"(got depth {depth}, heads {heads}, latent_dim {latent_dim})")
        bb = build_backbone(backbone, pretrained=pretrained, num_classes=0, drop_rate=0.0)
        if hasattr(bb.net, "patch_embed"):
            raise ConfigError(f"l2m teacher: {backbone} is a ViT; the teacher's tokens come from a CNN's feature map")
        self.net, self.backbone, self.timm_name = bb.net, backbone, bb.timm_name
        self.register_buffer("mean", torch.tensor(bb.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(bb.std).view(1, -1, 1, 1), persistent=False)
        c = int(self.net.num_features)
        self.grid = feature_grid(self.net, input_size)  # (h, w) of X_t: fixes the number of position embeddings
        dim = int(vit_dim or c)
        self.dim, self.heads, self.head_dim = dim, int(heads), int(latent_dim) // int(heads)
        self.embed = nn.Identity() if dim == c else nn.Linear(c, dim)  # X_t itself is the sequence (sec. 3.1)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(ViTBlock(dim, self.heads, self.head_dim, int(mlp_dim)) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.vit_head = nn.Linear(dim, num_classes)  # L_vit^t, on the class token
        self.cls_head = nn.Linear(c, num_classes)  # L_cls^t, on the pooled CNN features

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` in [0, 1] -> logits of both branches, the attention map (B, h, w) (eq. 2, last block, class
        token -> spatial tokens), the last block's per-head maps (B, heads, h*w) and every block's weights."""
        fmap = self.net.forward_features((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))
        b, c, h, w = fmap.shape
        if (h, w) != self.grid:
            raise ConfigError(f"teacher: feature grid {h}x{w} differs from the {self.grid[0]}x{self.grid[1]} its "
                              "position embeddings were built for (train at the model's input_size)")
        tokens = self.embed(fmap.flatten(2).transpose(1, 2))
        seq = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.pos_embed
        weights = []
        for blk in self.blocks:
            seq, wts = blk(seq)
            weights.append(wts)
        cls_out = self.norm(seq)[:, 0]
        head_maps = weights[-1][:, :, 0, 1:]  # (B, heads, h*w): each head's class-token row, spatial part
        return {"logits_vit": self.vit_head(cls_out), "logits_cls": self.cls_head(fmap.mean(dim=(2, 3))),
                "head_maps": head_maps, "attention": head_maps.mean(dim=1).view(b, h, w), "weights": weights}


# --- the method's building blocks (pure functions: tested one by one) -------------------------------------------

def diversity_loss(head_maps: torch.Tensor, form: str = "diverse") -> torch.Tensor:
    """Eq. 3 over the heads of one block. ``head_maps`` (B, h, N): head i's attention A_i as an N-vector.

    d_ij = A_i . A_j / (||A_i|| ||A_j||) (cosine similarity, in [0, 1] for non-negative attention), averaged over the
    batch. Eq. 3 as printed, (1/h^2)(sum_{i=j} -d_ii + sum_{i!=j} (1 - d_ij)), equals a constant minus the mean
    off-diagonal similarity: minimizing it would make the heads *identical*, the opposite of "encourage more
    diversity" and of the grouping loss of its source [9] (Zheng et al. 2019: 1 - d within a group, d across
    groups). ``form="diverse"`` (default) is that grouping loss with one head per group:
    (1/h^2)(sum_{i=j} (1 - d_ii) + sum_{i!=j} d_ij) -> 0 for orthogonal heads, (h - 1)/h for identical heads.
    ``form="as_printed"`` is eq. 3 literally (-1/h for identical heads, (h - 2)/h for orthogonal ones)."""
    a = F.normalize(head_maps.float(), dim=-1, eps=1e-12)
    d = a @ a.transpose(1, 2)  # (B, h, h)
    h = d.shape[-1]
    eye = torch.eye(h, dtype=torch.bool, device=d.device)
    diag, off = d[:, eye].sum(dim=-1), d[:, ~eye].sum(dim=-1)
    if form == "diverse":
        loss = ((1.0 - d[:, eye]).sum(dim=-1) + off) / h ** 2
    elif form == "as_printed":
        loss = (-diag + (1.0 - d[:, ~eye]).sum(dim=-1)) / h ** 2
    else:
        raise ConfigError(f"diversity form {form!r}: use 'diverse' or 'as_printed'")
    return loss.mean()


def num_masked(n: int, ratio: float) -> int:
    """k = round(ratio * n) positions (half up), 0 <= k <= n."""
    return max(0, min(n, int(math.floor(ratio * n + 0.5))))


def attention_mask(attn: torch.Tensor, ratio: float, strategy: str = "high",
                   random_scores: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4: M (B, N) with 0 at k = round(ratio * N) positions, 1 elsewhere, from ``attn`` (B, N) (or (B, h, w)).

    ``high``: the k highest-attended positions (the paper's default); ``low``: the k lowest; ``random``: k positions
    drawn from ``random_scores`` (B, N) (the k highest scores; the caller draws them from its generator). Ties are
    broken by position (a stable sort: the earlier position is masked first), so the mask is deterministic."""
    attn = attn.detach().flatten(1)
    b, n = attn.shape
    k = num_masked(n, ratio)
    if strategy == "high":
        order = torch.sort(attn, dim=1, descending=True, stable=True).indices
    elif strategy == "low":
        order = torch.sort(attn, dim=1, descending=False, stable=True).indices
    elif strategy == "random":
        if random_scores is None or tuple(random_scores.shape) != (b, n):
            raise ValueError(f"strategy 'random' needs random_scores of shape {(b, n)}")
        order = torch.sort(random_scores.to(attn.device), dim=1, descending=True, stable=True).indices
    else:
        raise ConfigError(f"mask strategy {strategy!r}: choose from {', '.join(STRATEGIES)} (paper 004 Table 4)")
    mask = torch.ones(b, n, dtype=attn.dtype, device=attn.device)
    mask.scatter_(1, order[:, :k], 0.0)
    return mask


def resize_attention(attn: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The teacher's (B, h, w) map on the student's grid (heterogeneous pairs, Table 5): bilinear, as is if equal."""
    if tuple(attn.shape[-2:]) == tuple(size):
        return attn
    return F.interpolate(attn.unsqueeze(1).float(), size=size, mode="bilinear", align_corners=False).squeeze(1)


def deep_mixup(feats: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor,
               lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5-6 within the batch: F' = lam F_i + (1 - lam) F_perm(i), y' likewise (``targets``: one-hot / soft)."""
    perm = perm.to(feats.device)
    return lam * feats + (1.0 - lam) * feats[perm], lam * targets + (1.0 - lam) * targets[perm]


class L2MModule(nn.Module):
    """The training module: teacher + student. ``forward`` runs both and returns what eq. 7's losses need, so a
    DDP wrapper sees every parameter used inside one forward call."""

    def __init__(self, student: L2MStudent, teacher: L2MTeacher) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.student_grid = feature_grid(student.net, student.input_size)  # random masking draws h*w scores

    def forward(self, x: torch.Tensor, *, ratio: float, strategy: str, pool_mode: str = "mean",
                random_scores: torch.Tensor | None = None, perm: torch.Tensor | None = None, lam: float = 1.0,
                targets: torch.Tensor | None = None) -> dict[str, Any]:
        t = self.teacher(x)
        fmap = self.student.deep_map(x)
        attn = resize_attention(t["attention"].detach(), tuple(fmap.shape[-2:]))  # the mask guides, never trains
        mask = attention_mask(attn, ratio, strategy, random_scores)
        feats = self.student.pool(fmap, mask, pool_mode)
        soft = targets
        if perm is not None and targets is not None:
            feats, soft = deep_mixup(feats, targets, perm, lam)
        return {**t, "mask": mask, "logits_s": self.student.classify(feats), "targets_s": soft}


__all__ = ["L2MModule", "L2MStudent", "L2MTeacher", "STRATEGIES", "ViTBlock", "WeightedAttention",
           "attention_mask", "deep_mixup", "diversity_loss", "num_masked", "resize_attention"]
