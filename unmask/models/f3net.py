"""The ``f3net`` arch: F3-Net (Qian et al., "Thinking in Frequency: Face Forgery Detection by Mining
Frequency-aware Clues", ECCV 2020), paper 001's fifth backbone, implemented from the paper's description.

Why a frequency network: forgeries that look clean in RGB (heavy compression, c40) still leave traces in
frequency bands and in local frequency statistics. F3-Net has two Xception streams on two frequency views of
the face, fused mid-way and late by cross attention:

* **FAD** (frequency-aware decomposition): the full-image 2-D DCT ``X = D x D^T`` (``D`` the orthonormal
  DCT-II matrix of the input size), ``N`` band filters ``f_i = f_base_i + sigma(f_w_i)`` on the spectrum,
  ``sigma(x) = (1 - e^-x) / (1 + e^-x)``, back to pixels per band (``y_i = D^T (X * f_i) D``) and the bands
  concatenated along channels: 3 bands x 3 colours = 9 channels (12 with the optional "all" band);
* **LFS** (local frequency statistics): a DCT of every 10 x 10 window (stride 2), ``M = 6`` band filters
  ``h_i = h_base_i + sigma(h_w_i)`` per window, and ``q_i = log10 || DCT(p) * h_i ||_1`` per window and band,
  a ``(B, 6, H', W')`` map;
* two ``legacy_xception`` streams (FAD: ``in_chans = 9``, LFS: ``in_chans = 6``), a **MixBlock** after block 7
  and after block 12, then both streams' pooled features concatenated -> dropout -> linear (2 classes).

What the description leaves open, and what this module does (each a choice, not the paper's word):

* **Band split.** Bands are by the DCT index sum ``i + j``, as a fraction ``r = (i + j) / (2S - 2)`` of its
  range. FAD (the paper's split): low ``r < 1/16``, middle ``1/16 <= r < 1/8``, high ``r >= 1/8``; they
  partition the spectrum, so with zero learnable filters the bands sum back to the image exactly. The optional
  "all" band (``fad_all_band: true``) is an all-ones base filter (the image itself, plus its learnable filter).
  LFS: ``M`` bands of equal width in ``r`` over the window's spectrum (window 10: ``i + j`` in 0-2, 3-5, ...,
  15-18).
* **Learnable filters.** One ``S x S`` (FAD) or ``w x w`` (LFS) filter per band, shared by the colour channels.
  FAD's start at zero, so training starts from the exact decomposition (no absolute value follows, so the
  gradient reaches every coefficient). LFS's start at N(0, 0.1): the L1 norm's ``|.|`` has zero gradient at
  zero, so zero-initialised filters could never leave their base band.
* **Normalization.** Both views are taken of the image normalized as the Xception weights expect
  (``[-1, 1]``; mean = std = 0.5); the DC term only moves the low band.
* **LFS colour.** Grayscale (ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B): the statistics are of local
  texture, and one map per band keeps the stream's input at 6 channels as in the paper.
* **LFS statistic.** ``q = log10(sum |DCT(p)| * |h_i| + 1e-3)`` -- equal to ``log10 || DCT(p) * h_i ||_1`` plus an
  epsilon that bounds ``q`` below at -3 for flat windows (one 8-bit grey step is 2/255 ~ 0.008 on this scale).
  The window DCT is one convolution with the 100 fixed DCT basis kernels, the band sums a 1x1 convolution.
* **Scale of the two streams.** The LFS map is computed on the grid of the FAD stream's first (stride-2)
  convolution: reflect padding of ``w - 3`` pixels (3 before, 4 after for w = 10) gives
  ``floor((S - 1) / 2)`` windows per side, and the LFS stream's first convolution has stride 1 and padding 1,
  so both streams have the same size after their first convolution and at every stage after it (a 299 px
  face: 149 x 149 LFS map; 128 px: 63 x 63). The LFS stride is therefore fixed at 2.
* **MixBlock** (my reading of the paper's cross-attention fusion). For FAD features ``F`` and LFS features
  ``L`` (``B x C x h x w``, ``n = hw`` positions): queries ``Q = W_q F`` and keys ``K = W_k L`` (1x1 convs to
  ``C / 8`` channels) give **one** cross-attention matrix ``A = Q^T K / sqrt(C / 8)`` (``n x n``: FAD position
  to LFS position). Each stream is updated with the other's values through it:
  ``F' = F + g_F * (W_vL L) softmax_rows(A)^T`` (each FAD position gathers LFS features) and
  ``L' = L + g_L * (W_vF F) softmax_cols(A)`` (each LFS position gathers FAD features); ``g_F``, ``g_L`` are
  learnable scalars starting at 0, so the streams start independent (as a pretrained Xception expects) and
  learn how much to mix.
* **Contract.** ``features`` = the two pooled 2048-d features concatenated (4096-d, before the dropout);
  ``feature_maps`` = the FAD stream at strides 2, 4, 8, 16 (after the first MixBlock) and 32 (``act4``);
  ``cam_layer`` = the FAD stream's ``act4`` (the last conv activation before pooling, after both MixBlocks);
  ``shallow_stage`` = the FAD stream's ``block3`` (the end of Xception's entry flow, stride 16, as for the
  ``timm_classifier`` Xception).
* **AMP.** FAD and LFS run in float32 even under autocast: bfloat16's 8-bit mantissa would lose the small
  high-frequency coefficients the network exists to see. The Xception streams run in the autocast dtype.
* **Input size** is fixed at build time (the DCT matrix is ``S x S``); another size is a one-line
  :class:`~unmask.errors.UnmaskError`. The DCT matrices and base filters are non-persistent buffers rebuilt
  from the meta, so checkpoints hold only weights and load bit-identically.
* **Weights.** ``pretrained``: ``None`` (random init; no offline Xception weights exist), ``"timm"`` or a local
  weights file: ImageNet Xception weights loaded into both streams, the first convolution adapted to 9/12 and
  6 input channels by timm's ``adapt_input_conv`` (the LFS stream's stride-1 first conv keeps the 3 x 3 kernel).
  Random init re-draws the depthwise convolutions with fan-in scaling (see ``_variance_preserving_depthwise``):
  with timm's fan-out init a briefly trained F3-Net scores every face the same in eval mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unmask.errors import UnmaskError
from unmask.models.arch import Arch, register_arch
from unmask.models.backbones import build_backbone, resolve_name

XCEPTION_MEAN = (0.5, 0.5, 0.5)  # legacy_xception's normalization: inputs in [-1, 1]
XCEPTION_STD = (0.5, 0.5, 0.5)
FAD_BANDS: tuple[tuple[float, float], ...] = ((0.0, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1.0))  # low, middle, high
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
LFS_STRIDE = 2  # fixed: the LFS map lies on the grid of the FAD stream's stride-2 first conv
LFS_EPS = 1e-3
MIX_AFTER = (7, 12)  # MixBlocks after Xception blocks 7 and 12 (the paper's mid and high semantic levels)
OPTIONS: dict[str, Any] = {"fad_all_band": False, "lfs_window": 10, "lfs_bands": 6}
NUM_BLOCKS = 12


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix ``D`` (``n x n``, float64): ``X = D x D^T``, ``x = D^T X D``."""
    from scipy.fft import dct

    return dct(np.eye(n), type=2, norm="ortho", axis=0)


def band_masks(n: int, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Binary ``(len(bands), n, n)`` masks selecting ``lo <= (i + j) / (2n - 2) < hi`` (``hi = 1`` includes 1)."""
    idx = np.arange(n)
    r = (idx[:, None] + idx[None, :]) / max(2 * n - 2, 1)
    return np.stack([(r >= lo) & ((r < hi) | (hi >= 1.0)) for lo, hi in bands]).astype(np.float64)


def sigma(x: torch.Tensor) -> torch.Tensor:
    """The paper's ``sigma(x) = (1 - e^-x) / (1 + e^-x)``, written as ``tanh(x / 2)`` (the same function, stable)."""
    return torch.tanh(x * 0.5)


class FAD(nn.Module):
    """Frequency-aware decomposition: (B, C, S, S) -> (B, N*C, S, S), band-major (low RGB, middle RGB, ...)."""

    def __init__(self, size: int, all_band: bool = False) -> None:
        super().__init__()
        self.size = int(size)
        bands = FAD_BANDS + (((0.0, 1.0),) if all_band else ())
        self.register_buffer("dct", torch.tensor(dct_matrix(self.size), dtype=torch.float32), persistent=False)
        self.register_buffer("base", torch.tensor(band_masks(self.size, bands), dtype=torch.float32), persistent=False)
        self.learnable = nn.Parameter(torch.zeros(len(bands), self.size, self.size))

    @property
    def num_bands(self) -> int:
        return int(self.base.shape[0])

    def filters(self) -> torch.Tensor:
        return self.base + sigma(self.learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dct
        spectrum = d @ x @ d.T  # (B, C, S, S)
        bands = spectrum.unsqueeze(1) * self.filters()[None, :, None]  # (B, N, C, S, S)
        return (d.T @ bands @ d).flatten(1, 2)


class LFS(nn.Module):
    """Local frequency statistics: (B, 3, S, S) -> (B, M, floor((S-1)/2), floor((S-1)/2))."""

    def __init__(self, window: int = 10, bands: int = 6) -> None:
        super().__init__()
        if window < 3 or bands < 1:
            raise UnmaskError(f"f3net: lfs_window must be >= 3 and lfs_bands >= 1 (got {window}, {bands})")
        self.window, self.num_bands = int(window), int(bands)
        d = dct_matrix(self.window)
        # Window DCT as a convolution: coefficient (u, v) of a patch p is sum_ab D[u, a] D[v, b] p[a, b].
        kernels = np.einsum("ua,vb->uvab", d, d).reshape(self.window**2, 1, self.window, self.window)
        edges = np.linspace(0.0, 1.0, self.num_bands + 1)
        base = band_masks(self.window, tuple(zip(edges[:-1], edges[1:]))).reshape(self.num_bands, -1)
        self.register_buffer("kernels", torch.tensor(kernels, dtype=torch.float32), persistent=False)
        self.register_buffer("base", torch.tensor(base, dtype=torch.float32), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.learnable = nn.Parameter(torch.randn(self.num_bands, self.window**2) * 0.1)
        pad = self.window - 3  # floor((S + pad - w) / 2) + 1 == floor((S - 1) / 2): the FAD stream's conv1 grid
        self.pad = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)

    def out_size(self, size: int) -> int:
        return (size + sum(self.pad[:2]) - self.window) // LFS_STRIDE + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = (x * self.luma).sum(dim=1, keepdim=True)
        gray = F.pad(gray, self.pad, mode="reflect")
        coeffs = F.conv2d(gray, self.kernels, stride=LFS_STRIDE).abs()  # (B, w*w, H', W')
        weights = (self.base + sigma(self.learnable)).abs()  # (M, w*w): ||c * h||_1 = sum |c| |h|
        norm = F.conv2d(coeffs, weights[:, :, None, None])
        return torch.log(norm + LFS_EPS) * (1.0 / math.log(10.0))  # log10 (ONNX has no Log10 op)


class MixBlock(nn.Module):
    """Cross attention between the FAD and LFS feature maps, updating each with the other (module docstring)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        inner = max(channels // reduction, 1)
        self.scale = 1.0 / math.sqrt(inner)
        self.query = nn.Conv2d(channels, inner, 1)  # from FAD
        self.key = nn.Conv2d(channels, inner, 1)  # from LFS
        self.value_lfs = nn.Conv2d(channels, channels, 1)  # LFS -> FAD
        self.value_fad = nn.Conv2d(channels, channels, 1)  # FAD -> LFS
        self.gamma_fad = nn.Parameter(torch.zeros(1))
        self.gamma_lfs = nn.Parameter(torch.zeros(1))

    def forward(self, fad: torch.Tensor, lfs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = fad.shape
        q = self.query(fad).flatten(2)  # (B, c', n)
        k = self.key(lfs).flatten(2)
        affinity = (q.transpose(1, 2) @ k) * self.scale  # (B, n_fad, n_lfs)
        to_fad = self.value_lfs(lfs).flatten(2) @ affinity.softmax(dim=2).transpose(1, 2)  # (B, C, n_fad)
        to_lfs = self.value_fad(fad).flatten(2) @ affinity.softmax(dim=1)  # (B, C, n_lfs)
        return (fad + self.gamma_fad * to_fad.view(b, c, h, w),
                lfs + self.gamma_lfs * to_lfs.view(b, c, h, w))


def _xception(in_chans: int, imagenet: dict[str, torch.Tensor] | None) -> nn.Module:
    """A headless legacy_xception with ``in_chans`` inputs, optionally from a 3-channel ImageNet state dict."""
    from unmask._compat.torchvision_ops import ensure_torchvision_ops

    ensure_torchvision_ops()
    import timm
    from timm.models import adapt_input_conv

    net = timm.create_model("legacy_xception", pretrained=False, num_classes=0, in_chans=in_chans)
    if imagenet is None:
        _variance_preserving_depthwise(net)
    else:
        sd = {k: v for k, v in imagenet.items() if not k.startswith("fc.")}
        sd["conv1.weight"] = adapt_input_conv(in_chans, sd["conv1.weight"])
        net.load_state_dict(sd, strict=True)
    return net


def _variance_preserving_depthwise(net: nn.Module) -> None:
    """Random init: re-draw the depthwise convolutions with fan-in scaling (std 1/3 for 3 x 3).

    timm's Xception init is Kaiming fan-out for every conv, and torch's fan-out of a depthwise conv counts all
    its output channels (728 x 9), so each separable conv shrinks its input's variance ~300x. Batch norm hides
    that in training, but in eval mode the running variances start at 1 and follow the true (tiny) ones only
    after hundreds of steps: a short run then scores every face the same (a validation loss of exactly ln 2).
    """
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels:
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")


def _imagenet_xception(pretrained: str | None) -> dict[str, torch.Tensor] | None:
    if pretrained in (None, "", "none"):
        return None
    return build_backbone("xception", pretrained=str(pretrained), num_classes=0).net.state_dict()


@register_arch("f3net")
class F3Net(Arch):
    """FAD + LFS Xception streams fused by two MixBlocks; logits ``(B, 2)``: index 0 = real, 1 = fake."""

    def __init__(self, *, input_size: int = 299, pretrained: str | None = None, drop_rate: float = 0.0,
                 num_classes: int = 2, backbone: str = "xception", fad_all_band: bool = False,
                 lfs_window: int = 10, lfs_bands: int = 6) -> None:
        super().__init__(input_size=input_size, mean=XCEPTION_MEAN, std=XCEPTION_STD)
        if self.input_size < 32:
            raise UnmaskError(f"f3net: input_size must be at least 32 (got {self.input_size})")
        self.backbone, self.pretrained = backbone, pretrained
        self.num_classes = int(num_classes)
        self.drop_rate = float(drop_rate)
        self.fad_all_band, self.lfs_window, self.lfs_bands = bool(fad_all_band), int(lfs_window), int(lfs_bands)
        self.fad = FAD(self.input_size, all_band=self.fad_all_band)
        self.lfs = LFS(self.lfs_window, self.lfs_bands)
        imagenet = _imagenet_xception(pretrained)
        self.fad_net = _xception(3 * self.fad.num_bands, imagenet)
        self.lfs_net = _xception(self.lfs.num_bands, imagenet)
        # The LFS map is already at the stride-2 grid: the LFS stream's first conv keeps its kernel, stride 1.
        old = self.lfs_net.conv1
        conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
        with torch.no_grad():
            conv1.weight.copy_(old.weight)
        self.lfs_net.conv1 = conv1
        self.mix = nn.ModuleDict({"7": MixBlock(728), "12": MixBlock(1024)})
        self.head_drop = nn.Dropout(self.drop_rate) if self.drop_rate > 0 else nn.Identity()
        self.classifier = nn.Linear(2 * self.fad_net.num_features, self.num_classes)

    @classmethod
    def build(cls, backbone: str = "xception", pretrained: str | None = None, input_size: int | None = None,
              drop_rate: float = 0.0, drop_path_rate: float = 0.0, num_classes: int = 2, **options: Any) -> "F3Net":
        if resolve_name(str(backbone)).split(".", 1)[0] != "legacy_xception":
            raise UnmaskError(f"f3net's streams are Xception (model.backbone: xception), not {backbone!r}")
        if drop_path_rate:
            raise UnmaskError("f3net: Xception has no stochastic depth; set model.drop_path_rate: 0")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise UnmaskError(f"unknown f3net option(s) {', '.join(unknown)}; valid model.options: "
                              f"{', '.join(sorted(OPTIONS))}")
        opts = {**OPTIONS, **options}
        return cls(input_size=int(input_size or 299), pretrained=pretrained, drop_rate=drop_rate,
                   num_classes=num_classes, backbone=str(backbone), **opts)

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "F3Net":
        net = cls.build(backbone=meta.get("backbone", "xception"), pretrained=None,
                        input_size=int(meta["input_size"]), drop_rate=float(meta.get("drop_rate") or 0.0),
                        num_classes=int(meta.get("num_classes", 2)), **dict(meta.get("options") or {}))
        net.pretrained = meta.get("pretrained")
        return net

    def arch_meta(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "pretrained": self.pretrained, "drop_rate": self.drop_rate,
                "options": {"fad_all_band": self.fad_all_band, "lfs_window": self.lfs_window,
                            "lfs_bands": self.lfs_bands}}

    # --- the two streams ----------------------------------------------------------------------------
    def _check(self, x: torch.Tensor) -> None:
        s = self.input_size
        if torch.jit.is_tracing():  # ONNX export traces at the built size; shapes are constants there
            return
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] != s or x.shape[-1] != s:
            raise UnmaskError(f"f3net was built for (N, 3, {s}, {s}) inputs (its DCT matrix is {s}x{s}); "
                              f"got {tuple(x.shape)}")

    def _frequency_views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(x)
        if x.device.type in ("cuda", "cpu", "xpu", "mps") and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, enabled=False):
                x = x.float()
                return self.fad(x), self.lfs(x)
        return self.fad(x), self.lfs(x)

    @staticmethod
    def _stem(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = net.act1(net.bn1(net.conv1(x)))
        return net.act2(net.bn2(net.conv2(x)))

    @staticmethod
    def _exit(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = net.act3(net.bn3(net.conv3(x)))
        return net.act4(net.bn4(net.conv4(x)))

    def _run(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Both streams to their final maps; appends the FAD stream's stage maps to ``maps`` when given."""
        self._check(x)
        f, l = self._frequency_views(x)
        f, l = self._stem(self.fad_net, f), self._stem(self.lfs_net, l)
        if maps is not None:
            maps.append(f)
        for i in range(1, NUM_BLOCKS + 1):
            f = getattr(self.fad_net, f"block{i}")(f)
            l = getattr(self.lfs_net, f"block{i}")(l)
            if str(i) in self.mix:
                f, l = self.mix[str(i)](f, l)
            if maps is not None and i in (1, 2, MIX_AFTER[0]):
                maps.append(f)
        f, l = self._exit(self.fad_net, f), self._exit(self.lfs_net, l)
        if maps is not None:
            maps.append(f)
        return f, l

    def _pool(self, f: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fad_net.global_pool(f), self.lfs_net.global_pool(l)], dim=1)

    # --- the contract -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, return_features: bool = False):
        """``x`` in [0, 1] -> logits; with ``return_features`` also the pooled features, from the same pass."""
        pooled = self._pool(*self._run(x))
        logits = self.classifier(self.head_drop(pooled))
        return (logits, pooled) if return_features else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Both streams' pooled features concatenated, ``(B, 4096)``, before the dropout."""
        return self._pool(*self._run(x))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The FAD stream at strides 2, 4, 8, 16 (after the first MixBlock) and 32 (after the second, act4)."""
        maps: list[torch.Tensor] = []
        self._run(x, maps)
        return maps

    @property
    def num_features(self) -> int:
        return int(self.classifier.in_features)

    @property
    def cam_layer(self) -> nn.Module:
        """The FAD stream's last conv activation before pooling (``act4``, after both MixBlocks)."""
        return self.fad_net.act4

    @property
    def shallow_stage(self) -> nn.Module:
        """The end of the FAD stream's entry flow (Xception ``block3``, stride 16), where PIM perturbs."""
        return self.fad_net.block3


__all__ = ["FAD", "LFS", "F3Net", "MixBlock", "band_masks", "dct_matrix", "sigma"]
