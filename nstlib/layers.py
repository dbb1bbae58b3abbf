"""VGG19's layers by name.

Two naming schemes are in use and the course needs both:

* **Gatys / pystiche names** (the course's own): ``conv{block}_{n}``, ``relu{block}_{n}``,
  ``pool{block}``. ``conv4_2`` is the second convolution of the fourth block.
* **PyTorch-tutorial names** (used on the seed slides): ``conv_{i}``, ``relu_{i}``, ``pool_{i}``,
  where ``i`` counts convolutions from 1 to 16 across the whole network and a pooling layer takes
  the count of the convolution before it (so the pools are ``pool_2, pool_4, pool_8, pool_12,
  pool_16``).

The two look alike but are not the same: the tutorial's ``conv_4`` is **conv2_2**, not Gatys'
``conv4_2``. Every nstlib function that takes layer names accepts either scheme and works
with the canonical Gatys name; :func:`layer_table` prints both side by side.

Position ``i`` of :data:`VGG19_LAYERS` is ``torchvision.models.vgg19().features[i]``.
"""

from __future__ import annotations

from typing import Iterable

# Output channels of each convolution, block by block (torchvision's configuration "E").
VGG19_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)


def _build_names() -> tuple[list[str], dict[str, str], dict[str, int]]:
    names: list[str] = []
    tutorial: dict[str, str] = {}
    channels: dict[str, int] = {}
    conv_count = 0
    for block, widths in enumerate(VGG19_BLOCKS, start=1):
        for n, width in enumerate(widths, start=1):
            conv_count += 1
            for kind in ("conv", "relu"):
                name = f"{kind}{block}_{n}"
                names.append(name)
                tutorial[f"{kind}_{conv_count}"] = name
                channels[name] = width
        pool = f"pool{block}"
        names.append(pool)
        tutorial[f"pool_{conv_count}"] = pool
        channels[pool] = widths[-1]
    return names, tutorial, channels


_names, _tutorial, _channels = _build_names()

VGG19_LAYERS: tuple[str, ...] = tuple(_names)
"""The 37 layer names of ``vgg19().features``, in order (``conv1_1`` ... ``pool5``)."""

TUTORIAL_NAMES: dict[str, str] = dict(_tutorial)
"""PyTorch-tutorial name -> Gatys name, e.g. ``{"conv_4": "conv2_2", "pool_2": "pool1", ...}``."""

LAYER_CHANNELS: dict[str, int] = dict(_channels)
"""Number of channels each layer outputs."""

_INDEX = {name: i for i, name in enumerate(VGG19_LAYERS)}
_TO_TUTORIAL = {v: k for k, v in TUTORIAL_NAMES.items()}

# Named layer choices used in the course.
GATYS_CONTENT_LAYERS = ("conv4_2",)
"""Content layer of Gatys, Ecker & Bethge (2016)."""
GATYS_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
"""Style layers of Gatys, Ecker & Bethge (2016)."""
SEED_CONTENT_LAYERS = ("conv_4",)
"""Content layer on the seed slides (PyTorch-tutorial naming: this is conv2_2)."""
SEED_STYLE_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5")
"""Style layers on the seed slides (tutorial naming: conv1_1, conv1_2, conv2_1, conv2_2, conv3_1)."""
SEED_VGG_OUTPUTS = {3: "relu1_2", 8: "relu2_2", 17: "relu3_4", 22: "relu4_2", 26: "relu4_4", 35: "relu5_4"}
"""The seed's loss-network outputs for fast style transfer, by ``features`` index."""

LAYER_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "gatys": {"content_layers": GATYS_CONTENT_LAYERS, "style_layers": GATYS_STYLE_LAYERS},
    "seed": {"content_layers": SEED_CONTENT_LAYERS, "style_layers": SEED_STYLE_LAYERS},
}
"""Layer choices by name, as keyword arguments: ``stylize(c, s, **LAYER_PRESETS["seed"])``."""


def resolve_layer(name: str) -> str:
    """The canonical (Gatys) name of ``name``, given in either naming scheme.

    >>> resolve_layer("conv_4"), resolve_layer("relu4_2")
    ('conv2_2', 'relu4_2')
    """
    if not isinstance(name, str):
        raise ValueError(f"layer name {name!r} must be a string such as 'conv4_2'")
    key = name.strip().lower()
    if key in _INDEX:
        return key
    if key in TUTORIAL_NAMES:
        return TUTORIAL_NAMES[key]
    raise ValueError(
        f"unknown VGG19 layer {name!r}: use Gatys names conv1_1 ... relu5_4, pool1 ... pool5 "
        f"(nstlib.VGG19_LAYERS) or the PyTorch tutorial's conv_1 ... conv_16, relu_1 ... relu_16 "
        f"(nstlib.TUTORIAL_NAMES)"
    )


def resolve_layers(names: Iterable[str] | str, argument: str = "layers") -> list[str]:
    """Canonical names of ``names`` (either scheme), duplicates removed, order kept.

    ``argument`` names the caller's parameter in error messages.
    """
    if isinstance(names, str):
        names = [names]
    try:
        out = list(dict.fromkeys(resolve_layer(n) for n in names))
    except ValueError as error:
        raise ValueError(f"{argument}: {error}") from None
    if not out:
        raise ValueError(f"{argument} is empty: name at least one VGG19 layer, e.g. ['conv4_2']")
    return out


def layer_index(name: str) -> int:
    """Position of the layer in ``vgg19().features`` (either naming scheme)."""
    return _INDEX[resolve_layer(name)]


def tutorial_name(name: str) -> str:
    """The PyTorch-tutorial name of a layer: ``tutorial_name("conv2_2") == "conv_4"``."""
    return _TO_TUTORIAL[resolve_layer(name)]


def receptive_field(name: str) -> int:
    """Side (pixels) of the input square that one unit of ``name`` sees.

    Walks the network: a 3x3 convolution with stride 1 adds ``2 * jump`` pixels and a 2x2 max
    pool with stride 2 adds ``jump`` and doubles ``jump`` (the distance in input pixels between
    neighbouring units), starting from ``rf = jump = 1``.
    """
    rf, jump = 1, 1
    for layer in VGG19_LAYERS[: layer_index(name) + 1]:
        if layer.startswith("conv"):
            rf += 2 * jump
        elif layer.startswith("pool"):
            rf += jump
            jump *= 2
    return rf


def downsampling(name: str) -> int:
    """How many input pixels one step of the layer's feature map spans (1, 2, 4, 8, 16 or 32)."""
    return 2 ** sum(1 for layer in VGG19_LAYERS[: layer_index(name) + 1] if layer.startswith("pool"))


def layer_table() -> list[dict[str, object]]:
    """One row per layer: index, Gatys name, tutorial name, kind, channels, downsampling, receptive field."""
    return [
        {
            "index": i,
            "name": name,
            "tutorial": _TO_TUTORIAL[name],
            "kind": name.rstrip("0123456789_"),
            "channels": LAYER_CHANNELS[name],
            "downsampling": downsampling(name),
            "receptive_field": receptive_field(name),
        }
        for i, name in enumerate(VGG19_LAYERS)
    ]


def format_layer_table(rows: list[dict[str, object]] | None = None) -> str:
    """:func:`layer_table` as aligned text, for printing in a notebook."""
    rows = layer_table() if rows is None else rows
    header = f"{'index':>5}  {'Gatys':<8} {'tutorial':<9} {'kind':<5} {'channels':>8} {'stride':>6} {'receptive field':>15}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['index']:>5}  {r['name']:<8} {r['tutorial']:<9} {r['kind']:<5} {r['channels']:>8} "
            f"{r['downsampling']:>6} {str(r['receptive_field']) + ' px':>15}"
        )
    return "\n".join(lines)
