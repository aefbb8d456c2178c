"""The ``sola`` arch: SOLA (Fei et al., "Learning Second Order Local Anomaly for General Face Forgery Detection",
paper 002), implemented from the paper's sec. 3.1-3.3.

Why this network: blending a forged region into its context leaves features that differ from their neighbours'.
SOLA predicts, for every local feature (one cell of a 16x16 map at 256 px, i.e. a 16 px patch), how anomalous it
is with respect to its upper / left nearest and next-nearest neighbours (first order), then how anomalous those
anomaly maps are (second order), and classifies from the four second-order maps. The pieces:

* **ASRM** (sec. 3.1, eq. 1-4): the noise branch's first layer, 3 SRM kernels (the 5x5 "KV" kernel, the 3x3
  second-order and the 1-D first-order residual, as in Zhou et al. [53]) quantized by 12, 4 and 2 so the centre is
  -1 and the rest sums to 1, each repeated over the 3 colour channels (weight ``(3, 3, 5, 5)``, every 2-D slice
  constrained). ``noise``: ``asrm`` (learnable, the constraint re-imposed after every optimizer step by
  :meth:`ASRM.constrain_`, which the ``sola`` method's ``after_step`` calls), ``srm`` (fixed), ``lsrm`` (learnable
  from the SRM init, no constraint), ``none`` (no noise branch: Table 6's "w/o noise").
* **Two branches + DCAM** (sec. 3.1): an RGB ResNet and a noise ResNet (ASRM -> the same stem and blocks), cut after
  block 3 (ResNet-18: 256 channels at stride 16). After each block, Dual Channel Attention fuses them: SE channel
  attention [46] (reduction 16) on the concatenated 2C channels, a 1x1 conv + BN + ReLU back to C, SE again. Our
  reading of Fig. 2 (the text does not say where the fused map goes): the fused map is the RGB branch's input to
  its next block; the noise branch runs on its own features.
* **LEM** (sec. 3.2, eq. 5-6), after each fusion: the map is split into a G x G grid of non-overlapping cells (G =
  the final map's size, so a cell of the stage-l map covers the same image patch as one final local feature);
  inside each cell ``W = softmax(theta(p)^T f(p))`` over the cell's positions (theta, f: 1x1 convs to C/2; no
  1/sqrt(d) scale: eq. 5 has none), ``p^ = W g(p)`` (g: 1x1 conv, C channels), the cells put back together,
  multiplied by a learnable ``lambda`` (starting at 0, so training starts from the plain backbone) and added to
  the input. ``lem: false`` turns it off (Table 7).
* **Patch size** (Table 7: 8 / 16 / 32 px at 256 px input, final maps 32x32 / 16x16 / 8x8), "by changing the
  pooling": 16 = the standard ResNet (stem max-pool, stride 16 after block 3); 8 = the stem max-pool removed
  (stride 8); 32 = an extra 2x2 average pool after block 3 (stride 32). That pooled map is the 16x16x256 local
  feature map of sec. 4.4.
* **SOLA head** (sec. 3.3, eq. 7-8): first-order predictors delta_v1, delta_v2 (1x2 convolutions, dilation 1 / 2:
  ``F_{i,j}`` with ``F_{i,j-1}`` / ``F_{i,j-2}``) and delta_h1, delta_h2 (2x1: ``F_{i-1,j}`` / ``F_{i-2,j}``), 64
  kernels each; second-order predictors phi_* (the same shapes, one kernel each) on the first-order maps; the 4
  second-order maps stacked -> 3x3 conv (64) + ReLU -> global average pool -> FC (2 logits). Anomaly maps are
  ``sigmoid`` of the predictors' outputs (eq. 10's BCE and eq. 12's L1 both need maps in [0, 1]); the second-order
  predictors take the first-order maps. **Borders**: the paper leaves cells without an upper / left neighbour open;
  here the map is replicate-padded before each predictor (a missing neighbour is the border cell: the first
  column / row is compared with itself, i.e. "no anomaly"), so every map is G x G and the four stack exactly; eq. 9's targets use the same rule
  (:func:`anomaly_targets`), so the border targets are 0 as well.
* **Contract**: ``features`` = the pooled classifier conv (64-d); ``feature_maps`` = the fused maps after blocks 1-3
  (block 3 after the patch pooling); ``cam_layer`` = the local feature map fed to the head; ``shallow_stage`` = the
  RGB branch's ``layer1``; :meth:`SOLA.anomaly_maps` = the 4 second-order maps (what ``detect --heatmaps`` draws).
* **Weights**: ``pretrained`` (``timm``: torchvision's ``tv_in1k`` ResNet weights, or a local file) initializes
  both branches' ResNets; ``None`` is random init. ``backbone``: ``resnet18`` (the paper's), ``resnet50`` /
  ``resnet101`` (Table 8).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unmask.errors import UnmaskError
from unmask.models.arch import Arch, register_arch
from unmask.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone, resolve_name

NOISE_MODES = ("asrm", "srm", "lsrm", "none")
PATCH_SIZES = (8, 16, 32)
OPTIONS: dict[str, Any] = {"noise": "asrm", "lem": True, "patch_size": 16, "first_order_kernels": 64}
DIRECTIONS = ("v1", "v2", "h1", "h2")  # eq. 7: v = left neighbours (1x2), h = upper (2x1); 1 / 2 = distance
HEAD_WIDTH = 64  # the classifier conv's channels (sec. 3.3 gives no number)


def srm_kernels() -> torch.Tensor:
    """The 3 SRM residual kernels, quantized by 12, 4 and 2: ``(3, 5, 5)``, centre -1, the rest summing to 1."""
    kv = torch.tensor([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                       [-1, 2, -2, 2, -1]], dtype=torch.float64) / 12.0
    second = torch.zeros(5, 5, dtype=torch.float64)
    second[1:4, 1:4] = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=torch.float64) / 4.0
    first = torch.zeros(5, 5, dtype=torch.float64)
    first[2, 1:4] = torch.tensor([1, -2, 1], dtype=torch.float64) / 2.0
    return torch.stack([kv, second, first]).float()


class ASRM(nn.Module):
    """SRM high-pass convolution (3 -> 3 channels, 5x5), fixed, learnable, or learnable with eq. 4's constraint."""

    def __init__(self, mode: str = "asrm") -> None:
        super().__init__()
        if mode not in ("asrm", "srm", "lsrm"):
            raise UnmaskError(f"sola: unknown noise mode {mode!r}; choose from {', '.join(NOISE_MODES)}")
        self.mode = mode
        weight = srm_kernels()[:, None].repeat(1, 3, 1, 1)  # each kernel repeated over R, G, B
        self.weight = nn.Parameter(weight, requires_grad=mode != "srm")

    @property
    def constrained(self) -> bool:
        return self.mode == "asrm"

    @torch.no_grad()
    def constrain_(self) -> None:
        """Eq. 4: every 2-D kernel's centre back to -1 and its other elements rescaled to sum to 1 (ASRM only)."""
        if not self.constrained:
            return
        w = self.weight
        c = w.shape[-1] // 2
        w[:, :, c, c] = 0.0
        total = w.sum(dim=(2, 3), keepdim=True)
        # A sum that crossed zero cannot be rescaled to 1 by a positive factor; keep its magnitude away from 0.
        total = torch.where(total.abs() < 1e-6, torch.full_like(total, 1e-6), total)
        w.div_(total)
        w[:, :, c, c] = -1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=self.weight.shape[-1] // 2)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention [46]."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 8)
        self.fc = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))


class DCAM(nn.Module):
    """Dual Channel Attention: attention on [rgb, noise], 1x1 fusion to C channels, attention again."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.before = ChannelAttention(2 * channels)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU(inplace=True))
        self.after = ChannelAttention(channels)

    def forward(self, rgb: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.after(self.fuse(self.before(torch.cat([rgb, noise], dim=1))))


class LEM(nn.Module):
    """Local Enhancement Module (eq. 5-6): non-local attention inside each cell of a ``grid`` x ``grid`` split."""

    def __init__(self, channels: int, grid: int) -> None:
        super().__init__()
        self.grid = int(grid)
        inner = max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inner, 1)
        self.f = nn.Conv2d(channels, inner, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.scale = nn.Parameter(torch.zeros(1))  # lambda

    def _cells(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B * G * G, s_h * s_w, C): the positions of each cell as rows."""
        b, c, h, w = t.shape
        g = self.grid
        t = t.reshape(b, c, g, h // g, g, w // g).permute(0, 2, 4, 3, 5, 1)
        return t.reshape(b * g * g, (h // g) * (w // g), c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = self.grid
        if not torch.jit.is_tracing() and (h % g or w % g):
            raise UnmaskError(f"sola LEM: a {h}x{w} map does not split into {g}x{g} cells (input size must be a "
                              "multiple of 32)")
        theta, f, v = self._cells(self.theta(x)), self._cells(self.f(x)), self._cells(self.g(x))
        weights = torch.softmax(theta @ f.transpose(1, 2), dim=-1)  # (BGG, n, n): eq. 5
        out = weights @ v  # (BGG, n, C): eq. 6
        sh, sw = h // g, w // g
        out = out.reshape(b, g, g, sh, sw, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        return x + self.scale * out


def neighbour_pad(t: torch.Tensor, direction: str) -> torch.Tensor:
    """Replicate-pad on the left (``v*``) or top (``h*``) by the neighbour distance: a missing neighbour is the
    border cell (module docstring, "Borders")."""
    d = int(direction[1])
    pad = (d, 0, 0, 0) if direction[0] == "v" else (0, 0, d, 0)
    return F.pad(t, pad, mode="replicate")


def _predictor(cin: int, cout: int, direction: str) -> nn.Conv2d:
    d = int(direction[1])
    if direction[0] == "v":
        return nn.Conv2d(cin, cout, kernel_size=(1, 2), dilation=(1, d))
    return nn.Conv2d(cin, cout, kernel_size=(2, 1), dilation=(d, 1))


class SOLAHead(nn.Module):
    """First- and second-order local anomaly predictors (eq. 7-8) and the classifier on the 4 second-order maps.

    ``forward(F) -> dict``: ``first`` / ``second`` map direction -> logits ``(B, 64, G, G)`` / ``(B, 1, G, G)``,
    ``anomaly`` = the 4 second-order maps as probabilities ``(B, 4, G, G)``, ``pooled`` ``(B, 64)``, ``logits``.
    """

    def __init__(self, channels: int, kernels: int = 64, num_classes: int = 2) -> None:
        super().__init__()
        self.delta = nn.ModuleDict({d: _predictor(channels, kernels, d) for d in DIRECTIONS})
        self.phi = nn.ModuleDict({d: _predictor(kernels, 1, d) for d in DIRECTIONS})
        self.conv = nn.Sequential(nn.Conv2d(len(DIRECTIONS), HEAD_WIDTH, 3, padding=1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(HEAD_WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        first = {d: self.delta[d](neighbour_pad(x, d)) for d in DIRECTIONS}
        second = {d: self.phi[d](neighbour_pad(torch.sigmoid(first[d]), d)) for d in DIRECTIONS}
        anomaly = torch.sigmoid(torch.cat([second[d] for d in DIRECTIONS], dim=1))
        pooled = self.conv(anomaly).mean(dim=(2, 3))
        return {"first": first, "second": second, "anomaly": anomaly, "pooled": pooled, "logits": self.fc(pooled)}


def _shift_diff(t: torch.Tensor, direction: str) -> torch.Tensor:
    """``|t(i, j) - t(neighbour)|`` with the same replicate border rule as the predictors."""
    padded = neighbour_pad(t, direction)
    if direction[0] == "v":
        return (t - padded[..., :, : t.shape[-1]]).abs()
    return (t - padded[..., : t.shape[-2], :]).abs()


def anomaly_targets(mask: torch.Tensor, grid: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Eq. 9a / 9b: forgery masks ``(B, 1, H, W)`` in [0, 1] -> per direction (first-order, second-order) targets
    ``(B, 1, G, G)`` in {0, 1}. A patch's score is its mean (``AVG(m_ij)``); 9a marks a cell whose score differs
    from its neighbour's, 9b a cell whose 9a target differs from its neighbour's (hard thresholds, ``> 0``)."""
    scores = F.adaptive_avg_pool2d(mask.float(), grid)
    out = {}
    for d in DIRECTIONS:
        first = (_shift_diff(scores, d) > 0).float()
        second = (_shift_diff(first, d) > 0).float()
        out[d] = (first, second)
    return out


def _resnet_trunk(backbone: str, pretrained: str | None) -> nn.Module:
    bb = build_backbone(backbone, pretrained=pretrained, num_classes=0)
    net = bb.net
    if not all(hasattr(net, a) for a in ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3")):
        raise UnmaskError(f"sola's branches are ResNets (resnet18 / resnet50 / resnet101), not {backbone!r}")
    net.layer4 = nn.Identity()  # blocks 1-3 only (sec. 4.4); the unused block would only carry dead weights
    net.fc = nn.Identity()
    return net


@register_arch("sola")
class SOLA(Arch):
    """RGB + noise ResNet branches fused by DCAM, LEM, SOLA head; logits ``(B, 2)``: index 0 = real, 1 = fake."""

    def __init__(self, *, input_size: int = 256, backbone: str = "resnet18", pretrained: str | None = None,
                 num_classes: int = 2, noise: str = "asrm", lem: bool = True, patch_size: int = 16,
                 first_order_kernels: int = 64) -> None:
        super().__init__(input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if noise not in NOISE_MODES:
            raise UnmaskError(f"sola: unknown noise mode {noise!r}; choose from {', '.join(NOISE_MODES)}")
        if int(patch_size) not in PATCH_SIZES:
            raise UnmaskError(f"sola: patch_size must be one of {PATCH_SIZES} (Table 7), got {patch_size}")
        if self.input_size % 32:
            raise UnmaskError(f"sola: input_size must be a multiple of 32 (got {self.input_size})")
        self.backbone, self.pretrained = str(backbone), pretrained
        self.num_classes = int(num_classes)
        self.noise, self.lem_on, self.patch_size = noise, bool(lem), int(patch_size)
        self.first_order_kernels = int(first_order_kernels)
        self.grid = self.input_size // self.patch_size
        self.rgb = _resnet_trunk(self.backbone, pretrained)
        self.noise_net = _resnet_trunk(self.backbone, pretrained) if noise != "none" else None
        self.asrm = ASRM(noise) if noise != "none" else None
        if self.patch_size == 8:  # stride 8 after block 3
            self.rgb.maxpool = nn.Identity()
            if self.noise_net is not None:
                self.noise_net.maxpool = nn.Identity()
        self.pool = nn.AvgPool2d(2) if self.patch_size == 32 else nn.Identity()
        channels = [int(info["num_chs"]) for info in self.rgb.feature_info[1:4]]  # layer1-3
        self.channels = channels[-1]
        self.dcam = nn.ModuleList([DCAM(c) for c in channels]) if self.noise_net is not None else None
        self.lem = nn.ModuleList([LEM(c, self.grid) for c in channels]) if self.lem_on else None
        self.local_features = nn.Identity()  # the G x G local feature map (Grad-CAM's layer)
        self.head = SOLAHead(self.channels, self.first_order_kernels, self.num_classes)

    @classmethod
    def build(cls, backbone: str = "resnet18", pretrained: str | None = None, input_size: int | None = None,
              drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_classes: int = 2, **options: Any) -> "SOLA":
        if resolve_name(str(backbone)).split(".", 1)[0] not in ("resnet18", "resnet34", "resnet50", "resnet101"):
            raise UnmaskError(f"sola's branches are ResNets (model.backbone: resnet18 / resnet50 / resnet101), "
                              f"not {backbone!r}")
        if drop_rate or drop_path_rate:
            raise UnmaskError("sola has no dropout or stochastic depth; set model.drop_rate and model.drop_path_rate to 0")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise UnmaskError(f"unknown sola option(s) {', '.join(unknown)}; valid model.options: "
                              f"{', '.join(sorted(OPTIONS))}")
        return cls(input_size=int(input_size or 256), backbone=str(backbone), pretrained=pretrained,
                   num_classes=num_classes, **{**OPTIONS, **options})

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "SOLA":
        net = cls.build(backbone=meta.get("backbone", "resnet18"), pretrained=None, input_size=int(meta["input_size"]),
                        num_classes=int(meta.get("num_classes", 2)), **dict(meta.get("options") or {}))
        net.pretrained = meta.get("pretrained")
        return net

    def arch_meta(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "pretrained": self.pretrained,
                "options": {"noise": self.noise, "lem": self.lem_on, "patch_size": self.patch_size,
                            "first_order_kernels": self.first_order_kernels}}

    # --- the network ----------------------------------------------------------------------------------
    @staticmethod
    def _stem(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return net.maxpool(net.act1(net.bn1(net.conv1(x))))

    def _local(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """[0, 1] images -> the G x G local feature map (after fusion, LEM and the patch pooling)."""
        x = self.normalize(x)
        rgb = self._stem(self.rgb, x)
        noise = self._stem(self.noise_net, self.asrm(x)) if self.noise_net is not None else None
        for i, name in enumerate(("layer1", "layer2", "layer3")):
            rgb = getattr(self.rgb, name)(rgb)
            if noise is not None:
                noise = getattr(self.noise_net, name)(noise)
                rgb = self.dcam[i](rgb, noise)
            if i == 2:
                rgb = self.pool(rgb)
            if self.lem is not None:
                rgb = self.lem[i](rgb)
            if maps is not None:
                maps.append(rgb)
        return self.local_features(rgb)

    def forward_all(self, x: torch.Tensor) -> dict[str, Any]:
        """Everything of one pass: the head's dict (first / second-order logits, anomaly maps, pooled, logits)."""
        return self.head(self._local(x))

    def forward(self, x: torch.Tensor, return_features: bool = False, return_all: bool = False):
        """Logits (and pooled features); ``return_all``: the head's whole dict (what the ``sola`` method's losses
        need, through a DDP wrapper's forward)."""
        out = self.forward_all(x)
        if return_all:
            return out
        return (out["logits"], out["pooled"]) if return_features else out["logits"]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)["pooled"]

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps: list[torch.Tensor] = []
        self._local(x, maps)
        return maps

    @torch.no_grad()
    def anomaly_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The 4 second-order anomaly maps (v1, v2, h1, h2) as probabilities, ``(B, 4, G, G)``."""
        return self.forward_all(x)["anomaly"]

    def constrain_(self) -> None:
        """Re-impose ASRM's constraint (eq. 4); a no-op for the other noise modes."""
        if self.asrm is not None:
            self.asrm.constrain_()

    @property
    def num_features(self) -> int:
        return HEAD_WIDTH

    @property
    def cam_layer(self) -> nn.Module:
        return self.local_features

    @property
    def shallow_stage(self) -> nn.Module:
        return self.rgb.layer1


__all__ = ["ASRM", "DCAM", "DIRECTIONS", "LEM", "NOISE_MODES", "OPTIONS", "PATCH_SIZES", "SOLA", "SOLAHead",
           "anomaly_targets", "neighbour_pad", "srm_kernels"]
