"""Networks the tests share: noisy TransformerNets, and pytorch/examples' fast_neural_style network.

pytorch/examples' network is written out here with its own attribute names (``conv1.conv2d``,
``in1``, ``res1.in2`` ...); it is the oracle for converting its trained models
(tests/test_checkpoints.py, tests/test_pretrained.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nstlib.transform_net import TransformerNet


def perturbed(net: TransformerNet, seed: int = 0) -> TransformerNet:
    """Add noise to every parameter (instance-norm scales start at 1 and shifts at 0: too special)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def make_net(seed: int = 0, **kwargs) -> TransformerNet:
    torch.manual_seed(seed)
    return perturbed(TransformerNet(**kwargs), seed)


# ---- pytorch/examples' fast_neural_style network, with its attribute names (the oracle) ---------------------

class ConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = torch.nn.InstanceNorm2d(channels, affine=True)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = torch.nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class ExamplesTransformerNet(torch.nn.Module):
    """pytorch/examples' TransformerNet (width 32 there; ``b`` here to keep tests fast)."""

    def __init__(self, b=32):
        super().__init__()
        self.conv1 = ConvLayer(3, b, kernel_size=9, stride=1)
        self.in1 = torch.nn.InstanceNorm2d(b, affine=True)
        self.conv2 = ConvLayer(b, 2 * b, kernel_size=3, stride=2)
        self.in2 = torch.nn.InstanceNorm2d(2 * b, affine=True)
        self.conv3 = ConvLayer(2 * b, 4 * b, kernel_size=3, stride=2)
        self.in3 = torch.nn.InstanceNorm2d(4 * b, affine=True)
        self.res1 = ResidualBlock(4 * b)
        self.res2 = ResidualBlock(4 * b)
        self.res3 = ResidualBlock(4 * b)
        self.res4 = ResidualBlock(4 * b)
        self.res5 = ResidualBlock(4 * b)
        self.deconv1 = UpsampleConvLayer(4 * b, 2 * b, kernel_size=3, stride=1, upsample=2)
        self.in4 = torch.nn.InstanceNorm2d(2 * b, affine=True)
        self.deconv2 = UpsampleConvLayer(2 * b, b, kernel_size=3, stride=1, upsample=2)
        self.in5 = torch.nn.InstanceNorm2d(b, affine=True)
        self.deconv3 = ConvLayer(b, 3, kernel_size=9, stride=1)
        self.relu = torch.nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def examples_model(seed: int, b: int = 32) -> ExamplesTransformerNet:
    torch.manual_seed(seed)
    net = ExamplesTransformerNet(b)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        # trained models output pixels around 0..255: scale the last layer like one
        net.deconv3.conv2d.weight.mul_(200)
        net.deconv3.conv2d.bias.add_(127.5)
    return net.eval()


def examples_state(net: ExamplesTransformerNet) -> dict:
    """Its state dict plus the stale running statistics old PyTorch versions saved for instance norms."""
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    return state


def oracle(net: ExamplesTransformerNet, x: torch.Tensor) -> torch.Tensor:
    """What our [0, 1] network must return: theirs on 0..255 pixels, divided by 255 (reflect-pad to 4, crop)."""
    h, w = x.shape[-2:]
    padded = F.pad(x * 255, (0, (-w) % 4, 0, (-h) % 4), mode="reflect")
    with torch.no_grad():
        return net(padded)[..., :h, :w] / 255
