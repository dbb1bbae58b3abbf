"""VGG19 as a feature extractor: ``VGGFeatures(layers)(image) -> {name: features}``.

The network is torchvision's ``vgg19().features`` (the 37 layers of :data:`VGG19_LAYERS`),
truncated after the deepest requested layer, frozen and in eval mode. Its input is an image in
[0, 1]; the ImageNet normalisation ``(x - mean) / std`` with mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225) happens inside, because that is what the pretrained weights expect.
"""

from __future__ import annotations

import torch
from torch import nn

from . import config
from .layers import VGG19_BLOCKS, VGG19_LAYERS, downsampling, layer_index, resolve_layers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0
"""Seed of the random weights used by ``weights=None`` and by quick mode."""


class WeightsError(RuntimeError):
    """The pretrained weights could not be obtained."""


_state_cache: dict[object, dict[str, torch.Tensor]] = {}


def vgg19_layers(pooling: str = "max", upto: int | None = None) -> nn.Sequential:
    """An uninitialised ``vgg19().features`` stack (layers ``0 .. upto``, all 37 by default).

    In-place ReLUs (torchvision's default) would overwrite a convolution's output after we
    captured it, so every ReLU here is out of place. The weights are left uninitialised (load a
    state dict into them): initialising 20 million numbers only to overwrite them is wasted
    time, and building the stack leaves the global random number generator untouched.
    ``pooling="avg"`` swaps max pooling for average pooling, which Gatys et al. found gives
    slightly smoother images.
    """
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling={pooling!r} must be 'max' or 'avg'")
    modules: list[nn.Module] = []
    channels = 3
    for widths in VGG19_BLOCKS:
        for width in widths:
            modules += [nn.utils.skip_init(nn.Conv2d, channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
            channels = width
        modules.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
    assert len(modules) == len(VGG19_LAYERS)
    return nn.Sequential(*modules[: None if upto is None else upto + 1])


def _random_state(seed: int) -> dict[str, torch.Tensor]:
    """torchvision's VGG initialisation (Kaiming normal, fan-out, zero bias), seeded locally."""
    layers = vgg19_layers()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in layers:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return layers.state_dict()


def _imagenet_state(progress: bool) -> dict[str, torch.Tensor]:
    """The ``features.*`` weights of ``VGG19_Weights.IMAGENET1K_V1`` (cached by torch hub)."""
    from torchvision.models import VGG19_Weights

    weights = VGG19_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except Exception as error:  # network, proxy, disk, corrupt file: all explained the same way
        target = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        raise WeightsError(
            f"Could not get the pretrained VGG19 weights (about 548 MB) from {weights.url}\n"
            f"  reason: {type(error).__name__}: {error}\n"
            "Are you offline, or behind a proxy (set HTTPS_PROXY)? To install them by hand, download "
            f"that file on a machine with internet access and place it at\n  {target}\n"
            "(TORCH_HOME moves that folder). For an offline smoke test of the course set "
            "NSTLIB_QUICK=1; to use random weights on purpose pass weights=None."
        ) from error
    return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}


def load_vgg19_state(weights: str | None = "imagenet", *, progress: bool = True) -> dict[str, torch.Tensor]:
    """State dict of the 37-layer features stack for ``weights`` ("imagenet" or None = random).

    In quick mode "imagenet" gives the seeded random weights (and the quick-mode banner).
    Loaded states are kept in memory, so building many extractors is cheap.
    """
    if weights not in ("imagenet", None, "random"):
        raise ValueError(f"weights={weights!r} must be 'imagenet' (pretrained) or None (seeded random weights)")
    if weights == "imagenet" and config.quick_mode():
        config.announce()
        weights = None
    key = "imagenet" if weights == "imagenet" else ("random", RANDOM_SEED)
    if key not in _state_cache:
        _state_cache[key] = _imagenet_state(progress) if weights == "imagenet" else _random_state(RANDOM_SEED)
    return _state_cache[key]


class VGGFeatures(nn.Module):
    """Frozen VGG19 that returns the activations of the requested layers.

    ``VGGFeatures(["conv4_2", "conv_1"])(image)`` returns ``{"conv4_2": ..., "conv1_1": ...}``:
    names in either scheme are accepted and the keys are the canonical (Gatys) names.
    ``image`` is ``[B, 3, H, W]`` in [0, 1]. ``weights="imagenet"`` loads torchvision's
    ``VGG19_Weights.IMAGENET1K_V1`` (downloaded once by torch hub; a clear :class:`WeightsError`
    when that fails, never a silent fallback); ``weights=None`` gives seeded random weights
    (which still transfer colour and texture: He, Wang & Hopcroft 2016).
    """

    def __init__(self, layers, weights: str | None = "imagenet", pooling: str = "max", progress: bool = True):
        super().__init__()
        self.layers = resolve_layers(layers, "layers")
        self.weights = weights
        deepest = max(layer_index(name) for name in self.layers)
        self.features = vgg19_layers(pooling, upto=deepest)
        state = load_vgg19_state(weights, progress=progress)
        self.features.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) <= deepest})
        self._wanted = {layer_index(name): name for name in self.layers}
        self.min_size = downsampling(VGG19_LAYERS[deepest])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        """Stays in eval mode: the loss network is fixed."""
        return super().train(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [batch, 3, height, width] in [0, 1], got shape {tuple(image.shape)}")
        if min(image.shape[-2:]) < self.min_size:
            deepest = VGG19_LAYERS[len(self.features) - 1]
            raise ValueError(
                f"image is {image.shape[-2]}x{image.shape[-1]} px but layer {deepest} needs at least "
                f"{self.min_size} px on each side: use a larger size"
            )
        x = (image - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._wanted:
                out[self._wanted[i]] = x
        return {name: out[name] for name in self.layers}
