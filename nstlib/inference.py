"""The same :class:`~nstlib.TransformerNet`, rewritten for fast inference on a CPU.

:class:`CPUInference` computes exactly the function ``net(x)`` (in float64 the two agree to about
1e-13) with the same weights, but arranges the arithmetic so that a CPU spends less time on it:

* **Channels-last memory** (``[B, H, W, C]`` in memory) throughout: oneDNN's convolutions run fastest
  on it. Reflection padding is written straight into a channels-last buffer (``F.pad`` would return the
  default layout and every convolution would convert it back).
* **Sub-pixel up-sampling** (Shi et al. 2016). Nearest-neighbour x2 up-sampling, reflection pad 1 and
  a 3x3 convolution ``w`` equal a 3x3 convolution of the *small* image, replicate-padded by 1, with
  four times the output channels, followed by :func:`torch.nn.functional.pixel_shuffle`. In one
  dimension, output pixel ``2 i + a`` of the up-sampled image reads small pixels::

      a = 0:  x[i - 1] w0 + x[i] (w1 + w2)          a = 1:  x[i] (w0 + w1) + x[i + 1] w2

  (:func:`subpixel_weight` builds the 2-D version). Each phase reads only a 2x2 neighbourhood of the
  small image, so the layer runs as one 2x2 convolution with four kernels per channel
  (:func:`subpixel_weight_2x2`): 4 multiply-adds per input channel and output pixel instead of 9,
  and the 4x larger image is never made before the convolution.
* **Space-to-depth last layer.** The 9x9 convolution to 3 channels has too few output channels to
  keep a CPU's vector units busy. On ``pixel_unshuffle(x, 2)`` (each 2x2 block of pixels becomes 4
  channels) it is a 5x5 convolution from ``4 C`` to 12 channels, one output per pixel of each
  block (:func:`space_to_depth_weight`): a larger, faster convolution that computes the same sums.
  The sub-pixel layer before it already produces its output as such blocks, so that output is
  normalised (group norm: the four phase channels of a channel are one group), relu'd and
  reflection-padded in block form (:func:`reflect_pad_blocks`); the full-size image is never made.
* **No copies between residual blocks**: each block's sum is written straight into the padded
  buffer the next block's convolution reads, and each ReLU into the buffer of the next convolution.
* **Instance norm of one image as batch norm**: for a batch of one, ``F.batch_norm`` in training
  mode normalises each channel over its ``H x W`` pixels, as instance norm does, and keeps the
  channels-last layout.

``dtype=torch.bfloat16`` (what :func:`nstlib.stylize_image`'s ``backend="bfloat16"`` uses) keeps
the weights and activations in bfloat16; the normalisation statistics are computed by PyTorch's
CPU kernels in float32 internally. ``benchmarks/README.md`` measures the gain.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .transform_net import MULTIPLE, ConditionalInstanceNorm2d, TransformerNet, pad_to_multiple, style_weights

__all__ = ["CPUInference", "reflect_pad", "reflect_pad_blocks", "replicate_pad", "space_to_depth_weight",
           "subpixel_weight", "subpixel_weight_2x2"]

CHANNELS_LAST = torch.channels_last


def _buffer(x: torch.Tensor, pad: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return torch.empty((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype, device=x.device,
                       memory_format=CHANNELS_LAST)


def _reflect_border(out: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad``-wide border of ``out`` by reflecting its interior (edge excluded); returns ``out``."""
    h, w = out.shape[-2] - 2 * pad, out.shape[-1] - 2 * pad
    for i in range(pad):  # padded column pad - 1 - i mirrors column pad + 1 + i
        out[:, :, pad:pad + h, pad - 1 - i] = out[:, :, pad:pad + h, pad + 1 + i]
        out[:, :, pad:pad + h, pad + w + i] = out[:, :, pad:pad + h, pad + w - 2 - i]
    for i in range(pad):
        out[:, :, pad - 1 - i] = out[:, :, pad + 1 + i]
        out[:, :, pad + h + i] = out[:, :, pad + h - 2 - i]
    return out


def _interior(out: torch.Tensor, pad: int) -> torch.Tensor:
    return out[:, :, pad:out.shape[-2] - pad, pad:out.shape[-1] - pad]


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``F.pad(x, (pad,) * 4, mode="reflect")`` written into a channels-last tensor.

    Reflection excludes the edge: padded column ``-1 - i`` is column ``1 + i``. Needs ``pad < H, W``.
    """
    out = _buffer(x, pad)
    _interior(out, pad).copy_(x)
    return _reflect_border(out, pad)


def reflect_pad_blocks(blocks: torch.Tensor, pad: int) -> torch.Tensor:
    """``pixel_unshuffle(reflect_pad(pixel_shuffle(blocks, 2), pad), 2)`` without the full-size image.

    ``blocks`` is ``[B, 4 C, h, w]``, channel ``4 c + 2 a + b`` holding pixel ``(2 i + a, 2 j + b)`` of
    channel ``c``; ``pad`` (even) full-size pixels are ``pad / 2`` blocks. Reflecting full-size row
    ``-2 k`` gives row ``2 k`` (block ``k``, phase 0) and row ``1 - 2 k`` gives ``2 k - 1`` (block
    ``k - 1``, phase 1); at the far side block ``h - 1 + k`` takes phase 0 of block ``h - k`` and
    phase 1 of block ``h - k - 1``. The same holds for columns.
    """
    q = pad // 2
    out = _buffer(blocks, q)
    _interior(out, q).copy_(blocks)
    return _reflect_border_blocks(out, pad)


def _reflect_border_blocks(out: torch.Tensor, pad: int) -> torch.Tensor:
    """Fill the ``pad / 2``-block border of a :func:`reflect_pad_blocks` buffer from its interior; returns ``out``."""
    q = pad // 2
    n, c4, h, w = out.shape[0], out.shape[1], out.shape[2] - 2 * q, out.shape[3] - 2 * q
    o = out.view(n, c4 // 4, 2, 2, h + 2 * q, w + 2 * q)  # [.., row phase, column phase, rows, columns]
    for k in range(1, q + 1):
        o[:, :, 0, :, q - k, q:q + w] = o[:, :, 0, :, q + k, q:q + w]
        o[:, :, 1, :, q - k, q:q + w] = o[:, :, 1, :, q + k - 1, q:q + w]
        o[:, :, 0, :, q + h - 1 + k, q:q + w] = o[:, :, 0, :, q + h - k, q:q + w]
        o[:, :, 1, :, q + h - 1 + k, q:q + w] = o[:, :, 1, :, q + h - k - 1, q:q + w]
    for k in range(1, q + 1):
        o[:, :, :, 0, :, q - k] = o[:, :, :, 0, :, q + k]
        o[:, :, :, 1, :, q - k] = o[:, :, :, 1, :, q + k - 1]
        o[:, :, :, 0, :, q + w - 1 + k] = o[:, :, :, 0, :, q + w - k]
        o[:, :, :, 1, :, q + w - 1 + k] = o[:, :, :, 1, :, q + w - k - 1]
    return out


def replicate_pad(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="replicate")`` written into a channels-last tensor."""
    out = _buffer(x, 1)
    _interior(out, 1).copy_(x)
    return _replicate_border(out)


def _replicate_border(out: torch.Tensor) -> torch.Tensor:
    """Fill the 1-pixel border of ``out`` by repeating its interior's edge pixels; returns ``out``."""
    h, w = out.shape[-2] - 2, out.shape[-1] - 2
    out[:, :, 1:h + 1, 0] = out[:, :, 1:h + 1, 1]
    out[:, :, 1:h + 1, w + 1] = out[:, :, 1:h + 1, w]
    out[:, :, 0] = out[:, :, 1]
    out[:, :, h + 1] = out[:, :, h]
    return out


def subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[O, I, 3, 3]`` weights of "nearest x2, reflection pad 1, conv 3x3" -> ``[4 O, I, 3, 3]``.

    Convolving ``replicate_pad(x)`` with the result and applying ``pixel_shuffle(., 2)`` gives the
    up-sampled layer's output: output channel ``4 o + 2 a + b`` is pixel ``(2 i + a, 2 j + b)`` of
    channel ``o``. (Replicate padding of the small image equals reflection padding of the up-sampled
    one: both repeat the edge pixel once.) Row ``a`` of ``taps`` below says which of the small
    image's three rows ``i - 1, i, i + 1`` each tap of ``w`` lands on.
    """
    if weight.dim() != 4 or tuple(weight.shape[-2:]) != (3, 3):
        raise ValueError(f"weight must be [out, in, 3, 3], got {tuple(weight.shape)}")
    taps = weight.new_zeros(2, 3, 3)  # [phase a, small-image tap, original tap]
    taps[0, 0, 0] = taps[0, 1, 1] = taps[0, 1, 2] = 1  # a = 0: w0 on i - 1, w1 + w2 on i
    taps[1, 1, 0] = taps[1, 1, 1] = taps[1, 2, 2] = 1  # a = 1: w0 + w1 on i, w2 on i + 1
    big = torch.einsum("aps,bqt,oist->oabipq", taps, taps, weight)
    return big.reshape(weight.shape[0] * 4, weight.shape[1], 3, 3)


def subpixel_weight_2x2(weight: torch.Tensor) -> torch.Tensor:
    """:func:`subpixel_weight` without its zeros: ``[4 O, I, 2, 2]``, one 2x2 kernel per phase.

    Phase ``a`` of a row reads the small image's rows ``i - 1, i`` (``a = 0``) or ``i, i + 1``
    (``a = 1``): taps ``a, a + 1`` of the 3x3 kernel. A 2x2 convolution of ``replicate_pad(x)`` has
    ``h + 1`` output rows; output row ``i + a`` reads rows ``i - 1 + a`` and ``i + a``, so phase ``a``
    is the output's rows ``a .. a + h - 1`` (:func:`_interleave`). 4 instead of 9 multiply-adds per tap.
    """
    big = subpixel_weight(weight)
    big = big.view(weight.shape[0], 2, 2, weight.shape[1], 3, 3)
    small = big.new_empty(weight.shape[0], 2, 2, weight.shape[1], 2, 2)
    for a in range(2):
        for b in range(2):
            small[:, a, b] = big[:, a, b, :, a:a + 2, b:b + 2]
    return small.reshape(weight.shape[0] * 4, weight.shape[1], 2, 2)


def _interleave(phases: torch.Tensor, blocks: bool) -> torch.Tensor:
    """The ``[B, 4 C, h + 1, w + 1]`` output of the 2x2 phase kernels as ``pixel_shuffle`` order blocks
    ``[B, 4 C, h, w]`` (``blocks=True``) or as the up-sampled image ``[B, C, 2 h, 2 w]``."""
    n, c4, h, w = phases.shape[0], phases.shape[1], phases.shape[2] - 1, phases.shape[3] - 1
    shape = (n, c4, h, w) if blocks else (n, c4 // 4, 2 * h, 2 * w)
    out = torch.empty(shape, dtype=phases.dtype, device=phases.device, memory_format=CHANNELS_LAST)
    for a in range(2):
        for b in range(2):
            phase = phases[:, 2 * a + b::4, a:a + h, b:b + w]
            if blocks:
                out[:, 2 * a + b::4] = phase
            else:
                out.view(n, c4 // 4, h, 2, w, 2)[:, :, :, a, :, b] = phase
    return out


def space_to_depth_weight(weight: torch.Tensor) -> torch.Tensor:
    """``[O, I, k, k]`` stride-1 weights (odd ``k``) -> ``[4 O, 4 I, k', k']`` on ``pixel_unshuffle(x, 2)``.

    With ``x`` padded by ``k // 2`` on every side, output pixel ``(2 Y + a, 2 X + b)`` reads padded
    pixel ``(2 Y + a + u, 2 X + b + v)`` with tap ``w[u, v]``; that pixel is channel ``2 c + d`` of
    block ``(Y + P, X + Q)`` in the unshuffled image, where ``a + u = 2 P + c`` and
    ``b + v = 2 Q + d``; ``P`` runs from 0 to ``k // 2``, so ``k' = k // 2 + 1`` block taps cover every ``u``.
    Output channel ``4 o + 2 a + b`` (``pixel_shuffle`` order) is phase ``(a, b)`` of channel ``o``.
    """
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2] or weight.shape[-1] % 2 == 0:
        raise ValueError(f"weight must be [out, in, k, k] with odd k, got {tuple(weight.shape)}")
    out_channels, in_channels, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    size = k // 2 + 1
    big = weight.new_zeros(out_channels, 2, 2, in_channels, 2, 2, size, size)  # [o, a, b, i, c, d, P, Q]
    for a in range(2):
        for b in range(2):
            for u in range(k):
                for v in range(k):
                    (p, c), (q, d) = divmod(a + u, 2), divmod(b + v, 2)
                    big[:, a, b, :, c, d, p, q] = weight[:, :, u, v]
    return big.reshape(out_channels * 4, in_channels * 4, size, size)


def _norm_params(norm: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Scale, shift and eps of an instance norm; ``[num_styles, C]`` scales and shifts for a conditional one."""
    if isinstance(norm, ConditionalInstanceNorm2d):
        return norm.gamma, norm.beta, norm.norm.eps
    return norm.weight, norm.bias, norm.eps


def _for_style(norm: tuple, style) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(gamma, beta, eps)`` of one style: ``style`` None (a one-style norm), an index, ``[N]`` weights
    (``w @ gamma``) or ``[B, N]`` weights (one ``[B, C]`` row per image), as :class:`ConditionalInstanceNorm2d`."""
    gamma, beta, eps = norm
    if style is None:
        return norm
    if isinstance(style, int):
        return gamma[style], beta[style], eps
    return style @ gamma, style @ beta, eps


def _normalise(x: torch.Tensor, norm: tuple, relu: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """``ReLU(IN(x))`` (or ``IN(x)``), written into ``out`` when given (e.g. the interior of a padded buffer)."""
    gamma, beta, eps = norm
    if gamma.dim() == 2:  # one scale and shift per image
        y = F.instance_norm(x, eps=eps) * gamma[:, :, None, None] + beta[:, :, None, None]
    elif x.shape[0] == 1:  # one image: batch statistics are the image's own and the layout is kept
        y = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    else:
        y = F.instance_norm(x, weight=gamma, bias=beta, eps=eps)
    if out is None:
        return y.relu_() if relu else y
    return torch.clamp(y, min=0, out=out) if relu else out.copy_(y)


def _normalised_buffer(x: torch.Tensor, norm: tuple, pad: int) -> torch.Tensor:
    """``ReLU(IN(x))`` written into the interior of a new channels-last buffer with a ``pad``-wide border
    (left for the caller to fill: reflection or replication)."""
    out = _buffer(x, pad)
    _normalise(x, norm, out=_interior(out, pad))
    return out


def _normalise_blocks(blocks: torch.Tensor, norm: tuple, out: torch.Tensor) -> torch.Tensor:
    """``ReLU(IN(.))`` of ``pixel_shuffle(blocks, 2)``, kept in block form: the four phase channels of a
    channel are one group, so instance norm is group norm with ``C`` groups and repeated scales.
    Written into ``out`` (the interior of a padded buffer)."""
    gamma, beta, eps = norm
    gamma4, beta4 = gamma.repeat_interleave(4, dim=-1), beta.repeat_interleave(4, dim=-1)
    if gamma.dim() == 2:
        y = F.group_norm(blocks, gamma.shape[-1], eps=eps) * gamma4[:, :, None, None] + beta4[:, :, None, None]
    else:
        y = F.group_norm(blocks, gamma.shape[-1], gamma4, beta4, eps=eps)
    return torch.clamp(y, min=0, out=out)


class CPUInference:
    """``net(x)`` computed the CPU-friendly way described in the module docstring.

    ``CPUInference(net, dtype=torch.bfloat16)`` copies ``net``'s weights (converted to ``dtype``) once;
    later changes to ``net`` are not seen (make a new one). Calling it with ``[B, 3, H, W]`` in
    [0, 1] (any float dtype) returns ``net(x)`` in ``dtype``, channels-last, unclamped.
    ``forward(x, style)`` is ``net(x, style=style)`` for a multi-style network (an index, blend
    weights or one blend per image; None: style 0).
    """

    def __init__(self, net: TransformerNet, dtype: torch.dtype = torch.bfloat16):
        if not isinstance(net, TransformerNet):
            raise TypeError(f"net must be a TransformerNet, got {type(net).__name__}")
        self.dtype = dtype
        self.pixel_scale, self.output, self.upsample = net.pixel_scale, net.output, net.upsample
        self.num_styles = net.num_styles
        with torch.no_grad():
            self.down = [(self._conv(layer.conv.weight), self._vector(layer.conv.bias), layer.conv.stride,
                          layer.pad.padding[0], self._norm(layer.norm)) for layer in net.down]
            self.res = [[(self._conv(layer.conv.weight), self._vector(layer.conv.bias), self._norm(layer.norm))
                         for layer in (block.conv1, block.conv2)] for block in net.res]
            self.up = [self._up_layer(layer) for layer in net.up]
            final = net.final.conv
            self.final = (self._conv(space_to_depth_weight(final.weight.double())),
                          self._vector(final.bias.repeat_interleave(4)), final.kernel_size[0] // 2)

    def _conv(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().to("cpu", self.dtype).contiguous(memory_format=CHANNELS_LAST)

    def _vector(self, vector: torch.Tensor) -> torch.Tensor:
        return vector.detach().to("cpu", self.dtype)

    def _norm(self, norm: torch.nn.Module) -> tuple:
        gamma, beta, eps = _norm_params(norm)
        return self._vector(gamma), self._vector(beta), eps

    def _up_layer(self, layer: torch.nn.Module) -> tuple:
        conv = layer.conv
        if self.upsample == "nearest":
            return (self._conv(subpixel_weight_2x2(conv.weight.double())),
                    self._vector(conv.bias.repeat_interleave(4)), self._norm(layer.norm))
        return self._conv(conv.weight), self._vector(conv.bias), self._norm(layer.norm)

    def _down(self, x: torch.Tensor, norm) -> torch.Tensor:
        """The three down layers; each one's ``ReLU(IN(.))`` is written into the padded buffer the next
        convolution reads (the last one's into the first residual block's). Returns that buffer."""
        padded = reflect_pad(x, self.down[0][3])
        following = [layer[3] for layer in self.down[1:]] + [1]
        for (weight, bias, stride, _, params), pad in zip(self.down, following):
            padded = _reflect_border(_normalised_buffer(F.conv2d(padded, weight, bias, stride), norm(params), pad), pad)
        return padded

    def _residual_blocks(self, padded: torch.Tensor, norm) -> torch.Tensor:
        """``y + IN(conv(ReLU(IN(conv(y)))))`` five times, ``y`` the interior of ``padded`` (reflection pad 1);
        each sum is written into the next padded buffer."""
        for i, ((weight1, bias1, params1), (weight2, bias2, params2)) in enumerate(self.res):
            y = _interior(padded, 1)
            z = _reflect_border(_normalised_buffer(F.conv2d(padded, weight1, bias1), norm(params1), 1), 1)
            residual = _normalise(F.conv2d(z, weight2, bias2), norm(params2), relu=False)
            if i == len(self.res) - 1:
                return y + residual
            following = _buffer(y, 1)
            torch.add(y, residual, out=_interior(following, 1))
            padded = _reflect_border(following, 1)
        return _interior(padded, 1)

    def _up_blocks(self, y: torch.Tensor, norm, pad: int) -> torch.Tensor:
        """The up-sampling layers, ending in ``pixel_unshuffle(reflect_pad(., pad), 2)``: the blocks the
        space-to-depth last layer reads. With sub-pixel up-sampling the last layer's output stays in block
        form (normalised as groups, padded as blocks) and the full-size image is never made."""
        last = len(self.up) - 1
        padded = None  # y replicate-padded, when the layer before wrote it so
        for i, (weight, bias, params) in enumerate(self.up):
            if self.upsample == "transpose":
                y = _normalise(F.conv_transpose2d(y, weight, bias, stride=2, padding=1, output_padding=1), norm(params))
                continue
            phases = F.conv2d(replicate_pad(y) if padded is None else padded, weight, bias)
            if i == last and pad % 2 == 0:
                blocks = _interleave(phases, blocks=True)
                out = _buffer(blocks, pad // 2)
                _normalise_blocks(blocks, norm(params), out=_interior(out, pad // 2))
                return _reflect_border_blocks(out, pad)
            full = _interleave(phases, blocks=False)
            if i == last:
                y = _normalise(full, norm(params))
            else:  # the next layer reads it replicate-padded: normalise straight into that buffer
                padded = _replicate_border(_normalised_buffer(full, norm(params), 1))
        return F.pixel_unshuffle(reflect_pad(y, pad), 2)  # even height and width: multiples of 4 plus 2 pad

    def __call__(self, x: torch.Tensor, style=None) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.num_styles is None and style is not None:
            raise ValueError("style= needs a multi-style network, TransformerNet(num_styles=N); this one has one style")
        if self.num_styles is not None:
            style = style_weights(style, self.num_styles, x.shape[0], self.final[0])
        norm = functools.partial(_for_style, style=style)
        scale = self.pixel_scale
        y = pad_to_multiple(x * scale if scale != 1.0 else x, MULTIPLE)
        y = y.to("cpu", self.dtype).contiguous(memory_format=CHANNELS_LAST)
        y = self._residual_blocks(self._down(y, norm), norm)
        weight, bias, pad = self.final
        y = F.pixel_shuffle(F.conv2d(self._up_blocks(y, norm, pad), weight, bias), 2)[..., :height, :width]
        if scale != 1.0:
            y = y / scale
        if self.output == "tanh":
            y = (torch.tanh(y) + 1) / 2
        return y
