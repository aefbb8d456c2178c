"""F3-Net's own parts (unmask/models/f3net.py): the DCT, FAD's band decomposition, LFS's window statistics,
the fixed input size, build options through the meta, and ImageNet weights from a local file.

The arch contract (forward/backward, save -> load, ONNX, Grad-CAM, shallow stage) is tested for f3net with every
other arch in tests/test_models_contract.py. Inputs here are the astronaut's real face crop (conftest).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from unmask.errors import UnmaskError
from unmask.models import arch_from_meta, build_arch
from unmask.models.f3net import FAD, LFS, band_masks, dct_matrix

from _train_fixtures import one_torch_thread  # noqa: F401 (autouse)

SIZE = 64


def _face(img: np.ndarray, size: int = SIZE) -> torch.Tensor:
    """A (1, 3, size, size) [0, 1] tensor of the real face crop."""
    small = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def f3net():
    torch.manual_seed(0)
    return build_arch("f3net", pretrained=None, input_size=SIZE).eval()


@pytest.mark.parametrize("n", [10, 64, 97])
def test_dct_matrix_is_orthonormal_and_inverts(n, astronaut_face_256):
    d = dct_matrix(n)
    assert np.allclose(d @ d.T, np.eye(n), atol=1e-12)
    x = _face(astronaut_face_256[0], n)[0].double().numpy()  # (3, n, n)
    spectrum = d @ x @ d.T
    assert np.allclose(d.T @ spectrum @ d, x, atol=1e-10)
    # energy is preserved (Parseval) and concentrated in the low frequencies, as for any natural image
    assert np.isclose((spectrum**2).sum(), (x**2).sum())
    k = (n + 1) // 2
    assert (spectrum[:, :k, :k] ** 2).sum() > 0.5 * (spectrum**2).sum()  # the low quadrant outweighs the rest


def test_fad_base_bands_partition_the_spectrum_by_index_sum():
    n = 64
    low, mid, high = band_masks(n, ((0.0, 1 / 16), (1 / 16, 1 / 8), (1 / 8, 1.0)))
    assert np.array_equal(low + mid + high, np.ones((n, n)))
    s = np.add.outer(np.arange(n), np.arange(n)) / (2 * n - 2)
    assert low[0, 0] == 1 and high[-1, -1] == 1
    assert s[low == 1].max() < 1 / 16 <= s[mid == 1].min() and s[mid == 1].max() < 1 / 8 <= s[high == 1].min()


def test_fad_bands_sum_back_to_the_image(astronaut_face_256):
    x = _face(astronaut_face_256[0]) * 2 - 1
    fad = FAD(SIZE)
    with torch.no_grad():
        bands = fad(x).view(1, 3, 3, SIZE, SIZE)  # (B, band, colour, S, S)
    assert torch.allclose(bands.sum(dim=1), x, atol=1e-5)
    # each band carries something, the low band most of the energy, and the high band is the fine detail
    energy = bands.pow(2).sum(dim=(0, 2, 3, 4))
    assert bool((energy > 0).all()) and energy[0] > energy[1] and energy[0] > energy[2]
    blurred = torch.from_numpy(cv2.GaussianBlur(x[0].permute(1, 2, 0).numpy(), (0, 0), 3)).permute(2, 0, 1)
    assert (bands[0, 0] - blurred).abs().mean() < (x[0] - blurred).abs().mean()  # the low band is a smooth image


def test_fad_learnable_filters_change_the_decomposition(astronaut_face_256):
    x = _face(astronaut_face_256[0]) * 2 - 1
    fad = FAD(SIZE, all_band=True)
    assert fad.num_bands == 4
    out = fad(x).view(1, 4, 3, SIZE, SIZE)
    assert torch.allclose(out[:, 3], x, atol=1e-5)  # the "all" band starts as the image itself
    out.pow(2).sum().backward()
    assert fad.learnable.grad is not None and float(fad.learnable.grad.abs().sum()) > 0
    with torch.no_grad():
        fad.learnable[2][fad.base[2] == 1] = -3.0  # inside the high band: f = 1 + sigma(-3) = 1 - tanh(1.5)
        high = fad(x).view(1, 4, 3, SIZE, SIZE)[:, 2]
    scale = (1 - np.exp(3.0)) / (1 + np.exp(3.0)) + 1  # the paper's sigma(x) = (1 - e^-x) / (1 + e^-x) at x = -3
    assert torch.allclose(high, out[:, 2].detach() * scale, atol=1e-5)


@pytest.mark.parametrize("size", [64, 97, 128])
def test_lfs_map_shape_is_the_fad_streams_first_conv_grid(size, astronaut_face_256):
    lfs = LFS(window=10, bands=6)
    x = _face(astronaut_face_256[0], size) * 2 - 1
    with torch.no_grad():
        q = lfs(x)
    side = (size - 1) // 2
    assert q.shape == (1, 6, side, side) and torch.isfinite(q).all()
    conv1 = torch.nn.Conv2d(9, 32, 3, 2, 0)  # legacy_xception's first conv, on the FAD stream's full-size input
    assert conv1(torch.zeros(1, 9, size, size)).shape[-1] == side


def test_lfs_equals_the_per_window_definition(astronaut_face_256):
    """q_i = log10 || DCT(p) * h_i ||_1 for one window p, computed directly, equals the convolutional map."""
    torch.manual_seed(3)
    lfs = LFS(window=10, bands=6)
    x = _face(astronaut_face_256[0]) * 2 - 1
    with torch.no_grad():
        q = lfs(x)[0].double().numpy()
        h = (lfs.base + torch.tanh(lfs.learnable / 2)).double().numpy().reshape(6, 10, 10)
    gray = (x[0].double().numpy() * np.array([0.299, 0.587, 0.114])[:, None, None]).sum(0)
    padded = np.pad(gray, ((3, 4), (3, 4)), mode="reflect")
    d = dct_matrix(10)
    for r, c in [(0, 0), (10, 17), (30, 30)]:
        p = padded[2 * r : 2 * r + 10, 2 * c : 2 * c + 10]
        spec = d @ p @ d.T
        want = np.log10(np.abs(spec[None] * h).sum(axis=(1, 2)) + 1e-3)
        assert np.allclose(q[:, r, c], want, atol=1e-4), (r, c)
    # natural images: more local energy in the low bands than in the highest
    assert q[0].mean() > q[-1].mean()


def test_wrong_input_size_is_a_one_line_error(f3net):
    with pytest.raises(UnmaskError, match=r"built for \(N, 3, 64, 64\)") as err:
        f3net(torch.rand(1, 3, 72, 72))
    assert "\n" not in str(err.value)
    with pytest.raises(UnmaskError):
        f3net.features(torch.rand(1, 1, SIZE, SIZE))


def test_build_options_round_trip_through_meta():
    torch.manual_seed(0)
    net = build_arch("f3net", pretrained=None, input_size=48, drop_rate=0.3,
                     fad_all_band=True, lfs_window=8, lfs_bands=4).eval()
    assert net.fad_net.conv1.in_channels == 12 and net.lfs_net.conv1.in_channels == 4
    assert net.lfs_net.conv1.stride == (1, 1) and net.fad_net.conv1.stride == (2, 2)
    meta = json.loads(json.dumps(net.meta()))
    assert meta["options"] == {"fad_all_band": True, "lfs_window": 8, "lfs_bands": 4} and meta["drop_rate"] == 0.3
    copy = arch_from_meta(meta)
    assert copy.meta() == net.meta()
    copy.load_state_dict(net.state_dict())  # strict: the same parameters, buffers rebuilt from the meta
    copy.eval()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(copy(x), net(x))
    assert not any(k.endswith(("dct", "kernels", "base")) for k in net.state_dict())  # non-persistent


@pytest.mark.parametrize("kwargs, match", [
    ({"backbone": "resnet18"}, "Xception"),
    ({"fad_bands": 4}, "unknown f3net option"),
    ({"drop_path_rate": 0.2}, "stochastic depth"),
])
def test_bad_build_options_are_clear_errors(kwargs, match):
    with pytest.raises(UnmaskError, match=match):
        build_arch("f3net", pretrained=None, input_size=SIZE, **kwargs)


def test_imagenet_weights_from_a_local_file_load_into_both_streams(tmp_path):
    """pretrained=FILE: a 3-channel Xception state dict fills both streams, the first conv adapted per stream."""
    from unmask.models.backbones import build_backbone

    torch.manual_seed(5)
    src = build_backbone("xception", pretrained=None, num_classes=1000).net.state_dict()
    path = tmp_path / "xception.pth"
    torch.save(src, path)
    net = build_arch("f3net", pretrained=str(path), input_size=SIZE)
    for stream in (net.fad_net, net.lfs_net):
        sd = stream.state_dict()
        assert torch.equal(sd["block7.rep.1.pointwise.weight"], src["block7.rep.1.pointwise.weight"])
        assert torch.equal(sd["bn4.running_var"], src["bn4.running_var"])
    w = src["conv1.weight"]  # (32, 3, 3, 3) -> 9 channels: RGB repeated, scaled by 3/9 (timm's adapt_input_conv)
    assert torch.allclose(net.fad_net.conv1.weight, w.repeat(1, 3, 1, 1) * (3 / 9))
    assert net.lfs_net.conv1.weight.shape == (32, 6, 3, 3) and net.meta()["pretrained"] == str(path)


def test_random_init_is_not_collapsed_in_eval_mode(astronaut_face_256):
    """Eval-mode activations at random init are of the order of the batch-normalized ones, so a short run does
    not score every face the same (timm's fan-out init made the last stage ~1e-5 of its training-mode size)."""
    torch.manual_seed(0)
    net = build_arch("f3net", pretrained=None, input_size=SIZE)
    face = _face(astronaut_face_256[0])
    x = torch.cat([face, face.flip(-1), face.roll(7, dims=-1), 1 - face])
    with torch.no_grad():
        eval_maps = net.eval().feature_maps(x)
        train_maps = net.train().feature_maps(x)  # batch statistics
    ratio = float(eval_maps[-1].std() / train_maps[-1].std())
    assert 0.1 < ratio < 10, ratio
