"""naoto0804/pytorch-AdaIN's networks written out module by module, index by index (the oracle).

Read from that repository's ``net.py``: ``vgg`` has 53 modules (relu1_1, relu2_1, relu3_1, relu4_1
end at 3, 10, 17, 30; AdaIN uses ``vgg[:31]``), ``decoder`` has 29. Written here as explicit lists,
independently of nstlib's loop-built stacks, so that a state dict round trip through both proves
the layouts agree. Also their ``calc_mean_std`` / AdaIN / ``style_transfer`` arithmetic, restated.
"""

from __future__ import annotations

import torch
from torch import nn


def _pad() -> nn.Module:
    return nn.ReflectionPad2d((1, 1, 1, 1))


def _pool() -> nn.Module:
    return nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)


def reference_vgg() -> nn.Sequential:
    """The 53-module ``vgg`` of net.py (to relu5_4)."""
    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)),                                   # 0
        _pad(), nn.Conv2d(3, 64, (3, 3)), nn.ReLU(),               # 1-3   relu1_1
        _pad(), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),              # 4-6   relu1_2
        _pool(),                                                   # 7
        _pad(), nn.Conv2d(64, 128, (3, 3)), nn.ReLU(),             # 8-10  relu2_1
        _pad(), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),            # 11-13 relu2_2
        _pool(),                                                   # 14
        _pad(), nn.Conv2d(128, 256, (3, 3)), nn.ReLU(),            # 15-17 relu3_1
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 18-20 relu3_2
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 21-23 relu3_3
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 24-26 relu3_4
        _pool(),                                                   # 27
        _pad(), nn.Conv2d(256, 512, (3, 3)), nn.ReLU(),            # 28-30 relu4_1 (the last one AdaIN uses)
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 31-33 relu4_2
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 34-36 relu4_3
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 37-39 relu4_4
        _pool(),                                                   # 40
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 41-43 relu5_1
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 44-46 relu5_2
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 47-49 relu5_3
        _pad(), nn.Conv2d(512, 512, (3, 3)), nn.ReLU(),            # 50-52 relu5_4
    )


def reference_decoder() -> nn.Sequential:
    """The 29-module ``decoder`` of net.py."""
    up = lambda: nn.Upsample(scale_factor=2, mode="nearest")  # noqa: E731
    return nn.Sequential(
        _pad(), nn.Conv2d(512, 256, (3, 3)), nn.ReLU(),            # 0-2
        up(),                                                      # 3
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 4-6
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 7-9
        _pad(), nn.Conv2d(256, 256, (3, 3)), nn.ReLU(),            # 10-12
        _pad(), nn.Conv2d(256, 128, (3, 3)), nn.ReLU(),            # 13-15
        up(),                                                      # 16
        _pad(), nn.Conv2d(128, 128, (3, 3)), nn.ReLU(),            # 17-19
        _pad(), nn.Conv2d(128, 64, (3, 3)), nn.ReLU(),             # 20-22
        up(),                                                      # 23
        _pad(), nn.Conv2d(64, 64, (3, 3)), nn.ReLU(),              # 24-26
        _pad(), nn.Conv2d(64, 3, (3, 3)),                          # 27-28 (no ReLU)
    )


def seeded(build, seed: int) -> nn.Sequential:
    """``build()`` with weights drawn from ``seed``: N(0, sqrt(2 / fan_in)) (features neither vanish nor blow up)
    and small random biases; the decoder's output bias 0.5, so its images sit inside [0, 1] rather than clamped."""
    g = torch.Generator().manual_seed(seed)
    net = build()
    with torch.no_grad():
        for module in net:
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                module.bias.copy_(0.01 * torch.randn(module.bias.shape, generator=g))
        if isinstance(net[-1], nn.Conv2d) and net[-1].out_channels == 3:  # the decoder's output layer
            net[-1].weight.mul_(0.05)
            net[-1].bias.fill_(0.5)
    return net.eval()


def mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Their calc_mean_std: per channel mean, sqrt(unbiased variance + eps)."""
    n, c = feat.shape[:2]
    flat = feat.reshape(n, c, -1)
    return flat.mean(2).reshape(n, c, 1, 1), (flat.var(2) + eps).sqrt().reshape(n, c, 1, 1)


def reference_adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    (cm, cs), (sm, ss) = mean_std(content), mean_std(style)
    return (content - cm.expand(content.size())) / cs.expand(content.size()) * ss.expand(content.size()) \
        + sm.expand(content.size())


def reference_style_transfer(vgg, decoder, content, style, alpha=1.0, weights=None) -> torch.Tensor:
    """Their test.py's style_transfer: ``vgg`` is the 31-module encoder; several styles as a batch with weights."""
    content_f, style_f = vgg(content), vgg(style)
    if weights:
        base = reference_adain(content_f.expand(style_f.shape[0], -1, -1, -1), style_f)
        feat = sum(w * base[i:i + 1] for i, w in enumerate(weights))
        content_f = content_f[:1]
    else:
        feat = reference_adain(content_f, style_f)
    return decoder(feat * alpha + content_f * (1 - alpha))
