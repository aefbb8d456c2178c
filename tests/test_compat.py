"""The torchvision shim makes timm importable on CPU torch, and never replaces real ops."""

import subprocess
import sys


def test_timm_imports_and_nms_works():
    code = (
        "from unmask._compat.torchvision_ops import ensure_torchvision_ops as e; mode = e();"
        "import torch, timm;"
        "b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.]]);"
        "keep = torch.ops.torchvision.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5);"
        "print(mode, keep.tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] in ("native", "shim")
    assert "".join(out[1:]) == "[0,2]"  # the overlapping box 1 is suppressed


def test_shim_is_idempotent():
    from unmask._compat.torchvision_ops import ensure_torchvision_ops

    assert ensure_torchvision_ops() == ensure_torchvision_ops()
