"""What does a layer know? Reconstructions from white noise (Gatys et al. 2016, Fig. 1).

* :func:`reconstruct_content` optimises noise until its features at **one** layer match an
  image's: low layers give back the pixels almost exactly, high layers keep objects and layout
  but lose exact colours and textures.
* :func:`synthesize_texture` optimises noise until its **Gram matrices** at a set of layers match
  an image's: the result has the image's textures and colours but none of its layout.

Both are :func:`~nstlib.stylize` with one of the two losses switched off.
"""

from __future__ import annotations

from collections.abc import Sequence

from .stylize import StylizeResult, stylize


def reconstruct_content(image, layer: str, *, steps: int = 200, size: int | None = 256, **options) -> StylizeResult:
    """Noise optimised to match ``image``'s features at ``layer`` (content loss only)."""
    options = {"init": "noise", "style_weight": 0.0, "content_weight": 1.0, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[layer], style_layers=[layer], **options)


def synthesize_texture(image, layers: Sequence[str], *, steps: int = 200, size: int | None = 256, **options) -> StylizeResult:
    """Noise optimised to match ``image``'s Gram matrices at ``layers`` (style loss only)."""
    options = {"init": "noise", "content_weight": 0.0, "style_weight": 1e6, **options}
    return stylize(image, image, steps=steps, size=size, content_layers=[list(layers)[0]], style_layers=layers, **options)
