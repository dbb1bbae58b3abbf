"""ONNX export of a TransformerNet, run by ONNX Runtime: the same function as the PyTorch network.

Oracles: the PyTorch network itself at sizes the trace never saw (odd sizes, a batch), PSNR
computed by hand, and a module whose traced graph is known to differ from its Python forward.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
from nets import make_net
from torch import nn

from nstlib.export import (
    CHECK_PSNR_DB,
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    onnx_session,
    onnxruntime_available,
    psnr,
)


def _run(session, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])


def test_psnr_by_hand():
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a) == math.inf
    # every pixel off by 0.1: mean squared error 0.01, 10 log10(1 / 0.01) = 20 dB
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    # one pixel in 48 off by 1: mse 1/48, 10 log10(48) = 16.81 dB; peak 255 scales by 255^2
    b = a.clone()
    b[0, 0, 0, 0] = 1
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    assert psnr(a * 255, b * 255, peak=255) == pytest.approx(10 * math.log10(48))
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, a[..., :3])


@pytest.mark.parametrize("config", [{}, {"upsample": "transpose"}, {"output": "tanh", "pixel_scale": 255.0}])
def test_export_matches_torch_at_sizes_never_traced(tmp_path, config):
    net = make_net(3, base=8, **config).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    path = tmp_path / "net.onnx"
    model = export_onnx(net, path)
    assert path.read_bytes() == model and len(model) > 1000
    assert net.training  # the export ran in eval mode and restored the mode
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights untouched
    session = onnx_session(path, threads=1)
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    g = torch.Generator().manual_seed(0)
    net.eval()
    for shape in [(1, 3, 16, 16), (1, 3, 64, 48), (1, 3, 17, 99), (2, 3, 40, 41)]:
        x = torch.rand(*shape, generator=g)
        with torch.no_grad():
            want = net(x)
        got = _run(session, x)
        assert got.shape == want.shape  # the padding to a multiple of 4 and the crop are in the graph
        torch.testing.assert_close(got, want, atol=2e-4 * float(want.abs().max()), rtol=1e-4)
        assert psnr(got.clamp(0, 1), want.clamp(0, 1)) > CHECK_PSNR_DB


class ShapeBranch(nn.Module):
    """Returns ``x`` for even heights and ``1 - x`` for odd ones: a Python branch the tracer freezes."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x if x.shape[-2] % 2 == 0 else 1 - self.scale * x


def test_export_check_rejects_a_graph_that_differs_from_the_module(tmp_path):
    # traced at an odd height (37), the graph always computes 1 - x; at height 48 the module returns x
    with pytest.raises(RuntimeError, match="differs from PyTorch at 48x64"):
        export_onnx(ShapeBranch(), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()  # nothing written when the check fails
    model = export_onnx(ShapeBranch(), check=False)  # unchecked, it exports: the graph is 1 - x everywhere
    x = torch.rand(1, 3, 48, 64)
    torch.testing.assert_close(_run(onnx_session(model, threads=1), x), 1 - x)


def test_export_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="nn.Module"):
        export_onnx(lambda x: x)


def test_without_onnxruntime_the_session_says_how_to_install_it(monkeypatch):
    assert onnxruntime_available()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert not onnxruntime_available()
    with pytest.raises(ImportError, match="pip install onnxruntime onnx"):
        onnx_session(b"")
    # the export itself needs no ONNX Runtime (the check is then skipped)
    assert len(export_onnx(make_net(1, base=4))) > 1000
