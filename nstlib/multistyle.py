"""Dumoulin, Shlens & Kudlur (2017), "A Learned Representation for Artistic Style": many styles, one network.

``TransformerNet(num_styles=N)`` (:mod:`nstlib.transform_net`) shares every convolution between
``N`` styles; a style owns only the scale ``gamma_s`` and the shift ``beta_s`` of each instance
norm (conditional instance normalisation, :class:`~nstlib.transform_net.ConditionalInstanceNorm2d`).

Training (:func:`train_multistyle_net`) is Johnson et al.'s loop (:mod:`nstlib.training`) changed
in one place: optimiser step ``k`` (1, 2, ...) trains one style ``s_k``::

    s_k = (k - 1) mod N                          style_order="cycle" (round robin)
    s_k = randint(N) from a generator seeded     style_order="random"
          with (seed, k)

    loss_k = content_weight * sum_l w_l MSE(F_l(f(x; s_k)), F_l(x))
           + style_weight   * sum_l w_l ||gram(F_l(f(x; s_k))) - A_l^(s_k)||_F^2  (+ tv_weight * TV)

with ``A_l^(s)`` the Gram targets of style image ``s`` alone and ``f(x; s)`` the network run with
style ``s``'s norm parameters. Only ``s_k``'s scales and shifts and the shared convolutions get a
gradient at step ``k`` (Adam's momentum still moves the other styles' rows a little, as for any
parameter whose gradient is zero for a step). ``s_k`` depends on ``(seed, k)`` alone, so a resumed
run trains the same styles. The loop itself is :mod:`nstlib.training`'s, given the number of styles
and :func:`style_for_step` as the style of each step: data order, the step, samples, checkpoints,
exact resumption and divergence checks are its code, and :mod:`nstlib.checkpoints` saves and loads
the net.

Inference: ``net(x, style=s)`` for one style, ``net(x, style=[1 - t, t])`` for a blend (the
scales and shifts are mixed, :func:`blend_strip`). :func:`extract_style` turns one style (or a
blend) into an ordinary one-style :class:`TransformerNet`.

Cost (:func:`parameter_cost`): an extra style adds ``2 * (sum of normalised channels)``
parameters: ``2 * 50 base = 3,200`` at ``base = 32`` (3 down + 10 residual + 2 up norms of
``base + 2 base + 4 base + 10 * 4 base + 2 base + base = 50 base`` channels), 0.19% of the
1,679,235 of a one-style network, instead of a whole network per style.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Sequence

import torch

from . import training
from .fast import stylize_image
from .training import HISTORY_KEYS, TrainResult, train_transform_net
from .transform_net import TransformerNet, count_parameters, style_weights
from .validate import positive_int

__all__ = [
    "MULTISTYLE_HISTORY_KEYS",
    "STYLE_ORDERS",
    "blend_strip",
    "extract_style",
    "parameter_cost",
    "style_for_step",
    "train_multistyle_net",
]

STYLE_ORDERS = ("cycle", "random")
"""How :func:`train_multistyle_net` picks the style of each step (:func:`style_for_step`)."""

MULTISTYLE_HISTORY_KEYS = (*HISTORY_KEYS, "style_index")
"""The loss history of :func:`train_multistyle_net`: train_transform_net's, plus the style of each step."""

TRAINER = "nstlib.train_multistyle_net"


def style_for_step(step: int, num_styles: int, order: str = "cycle", seed: int = 0) -> int:
    """The style trained at optimiser step ``step`` (1, 2, ...): ``(step - 1) mod num_styles`` for
    ``"cycle"``, or a uniform draw from a generator seeded with ``(seed, step)`` for ``"random"``."""
    if order == "cycle":
        return (step - 1) % num_styles
    generator = torch.Generator().manual_seed((seed * 2_000_003 + step) % 2**63)
    return int(torch.randint(num_styles, (), generator=generator))


# --------------------------------------------------------------------------------------
# training


def train_multistyle_net(styles: Sequence, dataset, *, style_order: str = "cycle", **options) -> TrainResult:
    """Train one ``TransformerNet(num_styles=len(styles))`` on all ``styles`` at once (Dumoulin et al. 2017).

    ``styles``: a list of style images (anything :func:`~nstlib.load_image` takes); style ``s`` of
    the network is ``styles[s]``. ``style_order``: ``"cycle"`` (round robin) or ``"random"``
    (seeded by ``seed`` and the step), see :func:`style_for_step`. Every other keyword argument is
    :func:`~nstlib.train_transform_net`'s, with the same defaults and meaning (``dataset``,
    ``steps``/``epochs`` counted over all styles together, loss weights, checkpoints,
    ``resume``...). ``sample_images`` are stylised in every style: the callback's ``samples``
    list and each saved grid hold style 0's results first, then style 1's, and so on.

    Returns a :class:`~nstlib.training.TrainResult` whose history has a ``style_index`` column
    (:data:`MULTISTYLE_HISTORY_KEYS`) and whose settings record ``num_styles`` and ``style_order``
    (a resumed run must match them, :data:`nstlib.checkpoints.RESUME_MUST_MATCH`).
    """
    o = _options(styles, dataset, options)
    if style_order not in STYLE_ORDERS:
        raise ValueError(f"style_order={style_order!r} must be one of {STYLE_ORDERS}")
    started = time.perf_counter()
    training._check_data_and_loss(o)
    training._check_run_controls(o)
    plan = training._set_up(o)  # quick mode's caps, device, data, the style images (one per style)
    count = len(plan.style_images)
    plan.settings.update(num_styles=count, style_order=style_order, trainer=TRAINER)
    schedule = functools.partial(style_for_step, num_styles=count, order=style_order, seed=o.seed)
    run = training._build(o, plan, training._find_checkpoint(o), num_styles=count, style_for_step=schedule)
    if run.step >= plan.total_steps:
        return training._nothing_to_train(run)
    training._train(run)  # training's loop, step k with style schedule(k): its targets, its norm parameters
    plan.settings["seconds"] = run.history["seconds"][-1] if run.history["seconds"] else 0.0
    plan.settings["total_seconds"] = time.perf_counter() - started
    return TrainResult(run.net, run.history, run.last_path, plan.settings)


def _options(styles, dataset, options: dict) -> training._Options:
    """train_transform_net's options: its defaults, updated with ``options``; ``style`` = the list of styles."""
    parameters = inspect.signature(train_transform_net).parameters
    unknown = sorted(set(options) - set(parameters) | set(options) & {"style", "dataset"})
    if unknown:
        raise TypeError(f"train_multistyle_net() got unexpected keyword arguments {unknown}: it takes "
                        "styles, dataset, style_order and the keyword arguments of train_transform_net")
    if isinstance(styles, (str, torch.Tensor)) or not isinstance(styles, Sequence) or not styles:
        raise ValueError("styles must be a non-empty list of style images (paths, sample names or tensors), "
                         "one per style of the network")
    values = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return training._Options(**{**values, **options, "style": list(styles), "dataset": dataset})


# --------------------------------------------------------------------------------------
# using a multi-style network


def _num_styles(net) -> int:
    if not isinstance(net, TransformerNet) or net.num_styles is None:
        raise ValueError("net must be a multi-style TransformerNet(num_styles=N) (train_multistyle_net makes one)")
    return net.num_styles


def blend_strip(net: TransformerNet, image: torch.Tensor, a: int, b: int, n: int = 5, **options) -> list[torch.Tensor]:
    """Stylise ``image`` with blends of styles ``a`` and ``b``: ``n`` images, weights ``(1 - t, t)``
    on ``(a, b)`` for ``t = 0, 1/(n-1), ..., 1`` (style ``a`` first, style ``b`` last).

    Each is :func:`nstlib.stylize_image` ``(net, image, style=w)`` with ``w_a = 1 - t``, ``w_b = t``,
    all other weights 0 (``options``: its other arguments); ``[1, 3, H, W]`` CPU tensors in [0, 1].
    """
    count = _num_styles(net)
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise ValueError(f"{name}={value!r} must be a style index of this network, 0 .. {count - 1}")
    n = positive_int(n, "n")
    if n < 2:
        raise ValueError(f"n={n} must be at least 2 (style a and style b)")
    strip = []
    for i in range(n):
        t = i / (n - 1)
        weights = torch.zeros(count)
        weights[a] += 1 - t
        weights[b] += t
        strip.append(stylize_image(net, image, style=weights, **options))
    return strip


def extract_style(net: TransformerNet, style) -> TransformerNet:
    """An ordinary one-style :class:`TransformerNet` computing ``net(x, style=style)``.

    It shares no memory with ``net``: the convolutions are copied, and each instance norm holds the
    mixed scale and shift ``w @ gamma``, ``w @ beta`` (``style``: an index or a weight vector).
    """
    count = _num_styles(net)
    weights = style_weights(style, count, 1)
    if not isinstance(weights, torch.Tensor):
        weights = torch.nn.functional.one_hot(torch.tensor(weights), count).float()
    if weights.dim() != 1:
        raise ValueError("style must be an index or one weight vector, not one per image")
    config = {key: value for key, value in net.config.items() if key != "num_styles"}
    single = TransformerNet(**config).to(weights.device)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith(".norm.gamma"):
            state[key.removesuffix("gamma") + "weight"] = weights.to(value) @ value
        elif key.endswith(".norm.beta"):
            state[key.removesuffix("beta") + "bias"] = weights.to(value) @ value
        else:
            state[key] = value.clone()
    single.load_state_dict(state)
    single.metadata = {**net.metadata, "extracted_style": weights.tolist()}
    return single.train(net.training)


def parameter_cost(num_styles: int, base: int = 32) -> dict[str, float]:
    """Parameters of one network for ``num_styles`` styles against one network per style.

    Counted on networks built on the ``meta`` device (no memory): ``single_style`` (1,679,235 at
    ``base=32``), ``per_style`` (what each style adds: ``2 * 50 base``), ``shared`` (the
    convolutions: ``single_style - per_style``), ``multi_style = shared + num_styles * per_style``,
    ``separate_networks = num_styles * single_style``, ``per_style_fraction = per_style / single_style``
    and ``saving = 1 - multi_style / separate_networks``.
    """
    num_styles = positive_int(num_styles, "num_styles")
    with torch.device("meta"):
        single = count_parameters(TransformerNet(base=base))
        one, two = (count_parameters(TransformerNet(base=base, num_styles=n)) for n in (1, 2))
        multi = count_parameters(TransformerNet(base=base, num_styles=num_styles))
    per_style = two - one
    return {"num_styles": num_styles, "single_style": single, "per_style": per_style, "shared": one - per_style,
            "multi_style": multi, "separate_networks": num_styles * single,
            "per_style_fraction": per_style / single, "saving": 1 - multi / (num_styles * single)}
