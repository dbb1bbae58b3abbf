"""Pictures: images, comparison grids, loss curves, feature maps, Gram matrices, tables and live previews.

Every function returns a :class:`matplotlib.figure.Figure` built directly, not
through ``pyplot``: nothing accumulates in pyplot's list of open figures, so a
batch run can make hundreds of figures. In a notebook the figure shows (once) when
the call is the last expression of a cell; elsewhere, keep it and call
``fig.savefig("grid.png")`` (or ``.pdf``), or ``IPython.display.display(fig)``
to show it from the middle of a cell or a loop.

Images may be tensors ``[1, 3, H, W]``, ``[3, H, W]``, ``[1, H, W]`` or ``[H, W]``
(any device, gradients allowed), NumPy arrays ``[H, W]`` / ``[H, W, 3]`` (uint8,
or floats in [0, 1]) or PIL images; values are clamped to [0, 1] for display.

**Sized for the course book.** Figures of several panels are at most :data:`BOOK_WIDTH` inches
wide: the book shows every picture at the width of its text column (about 720 px), so a wider
figure would be shrunk and its labels with it. At 8 inches a figure is shown at >= 90 px per inch,
and a label of ``LABEL_SIZE`` = 10 pt stays 10 x 90 / 72 = 12.5 px tall. Panels shrink to fit
instead (``max_width=None`` turns that off).

**Live previews keep one picture per cell.** :class:`LivePreview` and :class:`LiveTrainingPlot`
update one output in place (``display_id``); a second preview made in the same cell reuses that
output. A notebook saved after running (and the course book made from it) therefore holds one
picture per cell, the final state, not a stack of stale frames.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from .fileio import atomic_write
from .validate import positive_int


__all__ = [
    "BOOK_WIDTH",
    "HTMLTable",
    "LABEL_SIZE",
    "LivePreview",
    "LiveTrainingPlot",
    "html_table",
    "image_grid",
    "normalize_channels",
    "plot_losses",
    "save_figure",
    "show_feature_maps",
    "show_gram",
    "show_image",
    "show_images",
]

BOOK_WIDTH = 8.0
"""Widest multi-panel figure, in inches (see the module docstring: labels stay readable in the book)."""

LABEL_SIZE = 10
"""Font size in points of panel titles and row labels."""


# --------------------------------------------------------------------------------------
# figures that show in notebooks without pyplot


def _figure_png(figure: Figure) -> bytes:
    """The PNG bytes IPython shows for a figure (tight bounding box, like the inline backend)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", facecolor=figure.get_facecolor())
    return buffer.getvalue()


def _register_png_formatter() -> None:
    """Let IPython show a bare ``Figure`` as PNG, unless a formatter (the inline backend's) exists."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return
    png = formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
    except KeyError:
        png.for_type(Figure, _figure_png)


def _new_figure(width: float, height: float) -> Figure:
    _register_png_formatter()
    return Figure(figsize=(width, height), layout="constrained")


def _root_figure(ax) -> Figure:
    try:
        return ax.get_figure(root=True)  # matplotlib >= 3.10 (axes in subfigures)
    except TypeError:
        return ax.figure


def _display_array(image: Any, what: str = "image") -> np.ndarray:
    """``image`` as an ``[H, W, 3]`` or ``[H, W]`` (gray) float array clamped to [0, 1]."""
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().to("cpu", torch.float32)
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() == 3 and tensor.shape[0] in (1, 3):
            tensor = tensor[0] if tensor.shape[0] == 1 else tensor.permute(1, 2, 0)
        elif tensor.dim() != 2:
            hint = " (a batch: use show_images)" if tensor.dim() == 4 else ""
            raise ValueError(
                f"{what} has shape {tuple(image.shape)}: expected [1, 3, H, W], [3, H, W], [1, H, W] or [H, W]{hint}"
            )
        array = tensor.numpy()
    elif isinstance(image, np.ndarray):
        array = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
            raise ValueError(f"{what} has shape {image.shape}: expected [H, W] or [H, W, 3]")
    else:
        raise TypeError(f"{what} must be a tensor, a NumPy array or a PIL image, not {type(image).__name__}")
    if 0 in array.shape:
        raise ValueError(f"{what} is empty: shape {tuple(array.shape)}")
    return np.clip(np.nan_to_num(array, nan=0.0), 0.0, 1.0)


def _clean_axes(ax) -> None:
    """No ticks and no frame, but keep the axes so that labels (``set_ylabel``) still show."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw(ax, array: np.ndarray, title: str | None = None) -> None:
    if array.ndim == 2:
        ax.imshow(array, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(array)
    _clean_axes(ax)
    if title is not None:
        ax.set_title(str(title), fontsize=LABEL_SIZE)


def _panel_size(size: float, ncols: int, extra: float, max_width: float | None) -> float:
    """``size``, or less so that ``ncols`` panels plus ``extra`` inches fit in ``max_width`` (None: no limit)."""
    if max_width is None or ncols * size + extra <= max_width:
        return size
    return max(0.5, (max_width - extra) / ncols)


def _wrap(label: Any, inches: float) -> str:
    """``label`` broken into lines that fit ``inches`` at :data:`LABEL_SIZE` (about 12 characters per inch)."""
    import textwrap

    width = max(8, int(inches * 12))
    lines = [wrapped for line in str(label).split("\n")
             for wrapped in (textwrap.wrap(line, width=width, break_on_hyphens=False) or [""])]
    return "\n".join(lines)


def _as_list(images: Any) -> list:
    """A batch tensor ``[B, C, H, W]`` becomes a list of ``[C, H, W]``; sequences become lists."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    if isinstance(images, (torch.Tensor, np.ndarray, Image.Image)):
        return [images]
    return list(images)


# --------------------------------------------------------------------------------------
# images


def show_image(image: Any, title: str | None = None, ax=None, *, size: float = 5.0) -> Figure:
    """Show one image (no ticks); returns its Figure.

    With ``ax`` the image is drawn into that axes and its figure is returned;
    otherwise a new figure ``size`` inches wide (height from the aspect ratio).
    """
    array = _display_array(image)
    if ax is None:
        height, width = array.shape[:2]
        figure = _new_figure(size, size * height / width + (0.3 if title else 0.0))
        ax = figure.add_subplot()
    else:
        figure = _root_figure(ax)
    _draw(ax, array, title)
    return figure


def show_images(
    images: Any,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 3.0,
    suptitle: str | None = None,
    max_width: float | None = BOOK_WIDTH,
) -> Figure:
    """Show images side by side, ``ncols`` per row (default ``min(n, 4)``); returns the Figure.

    ``images`` is a sequence of images, a batch tensor ``[B, C, H, W]`` or a dict
    ``{title: image}``. Each panel is ``size`` inches wide, less when ``ncols`` panels would
    make the figure wider than ``max_width`` (default :data:`BOOK_WIDTH`; None: no limit);
    the figure has exactly one axes per image (unused grid cells are removed).
    """
    if isinstance(images, Mapping):
        if titles is not None:
            raise ValueError("pass titles either as the keys of the images dict or as titles=, not both")
        titles = list(images.keys())
        images = list(images.values())
    arrays = [_display_array(image, f"images[{i}]") for i, image in enumerate(_as_list(images))]
    if not arrays:
        raise ValueError("images is empty: pass at least one image")
    if titles is not None and len(titles) != len(arrays):
        raise ValueError(f"titles has {len(titles)} entries but there are {len(arrays)} images")
    ncols = min(len(arrays), 4) if ncols is None else min(positive_int(ncols, "ncols"), len(arrays))
    nrows = math.ceil(len(arrays) / ncols)
    size = _panel_size(size, ncols, 0.0, max_width)
    aspect = float(np.median([array.shape[0] / array.shape[1] for array in arrays]))
    title_space = 0.3 if titles is not None else 0.0
    figure = _new_figure(ncols * size, nrows * (size * aspect + title_space) + (0.4 if suptitle else 0.0))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        if index < len(arrays):
            _draw(ax, arrays[index], None if titles is None else _wrap(titles[index], size))
        else:
            ax.remove()
    if suptitle:
        figure.suptitle(suptitle)
    return figure


def image_grid(
    rows: Sequence[Any],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 2.5,
    max_width: float | None = BOOK_WIDTH,
) -> Figure:
    """A labelled comparison grid: ``rows[r][c]`` is the image in row r, column c.

    A row may be a sequence or a batch tensor ``[B, C, H, W]``; short rows and
    ``None`` cells are left blank. ``row_labels`` go on the left of each row,
    ``col_labels`` above each column, ``title`` above the grid, all in :data:`LABEL_SIZE`
    points. Cells are ``size`` inches wide, less when the grid would be wider than
    ``max_width`` (default :data:`BOOK_WIDTH`, the book's column; None: no limit). The
    figure has ``len(rows) * max_row_length`` axes; save it with ``fig.savefig("grid.png")``
    or ``.pdf``.
    """
    grid = [[cell for cell in _as_list(row)] if row is not None else [] for row in rows]
    if not grid:
        raise ValueError("rows is empty: pass a list of rows of images")
    ncols = max(len(row) for row in grid)
    arrays = [
        [None if cell is None else _display_array(cell, f"rows[{r}][{c}]") for c, cell in enumerate(row)]
        + [None] * (ncols - len(row))
        for r, row in enumerate(grid)
    ]
    present = [array for row in arrays for array in row if array is not None]
    if not present:
        raise ValueError("every cell of the grid is None: pass at least one image")
    if row_labels is not None and len(row_labels) != len(arrays):
        raise ValueError(f"row_labels has {len(row_labels)} entries but there are {len(arrays)} rows")
    if col_labels is not None and len(col_labels) != ncols:
        raise ValueError(f"col_labels has {len(col_labels)} entries but there are {ncols} columns")
    aspect = float(np.median([array.shape[0] / array.shape[1] for array in present]))
    label_space = 0.4 if row_labels is not None else 0.0
    size = _panel_size(size, ncols, label_space, max_width)
    width = ncols * size + label_space
    height = len(arrays) * size * aspect + (0.3 if col_labels is not None else 0.0) + (0.4 if title else 0.0)
    figure = _new_figure(width, height)
    axes = figure.subplots(len(arrays), ncols, squeeze=False)
    for r, row in enumerate(arrays):
        for c, array in enumerate(row):
            ax = axes[r, c]
            if array is None:
                _clean_axes(ax)
            else:
                _draw(ax, array)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(_wrap(row_labels[r], size * aspect), fontsize=LABEL_SIZE)
            if r == 0 and col_labels is not None:
                ax.set_title(_wrap(col_labels[c], size), fontsize=LABEL_SIZE)
    if title:
        figure.suptitle(title)
    return figure


# --------------------------------------------------------------------------------------
# losses and features


def plot_losses(
    history: Mapping[str, Sequence[float]],
    keys: Sequence[str] | None = None,
    log: bool = True,
    title: str | None = None,
    ax=None,
    marks: Mapping[str, float] | None = None,
) -> Figure:
    """Loss curves: one line per key of ``history`` against the step.

    ``keys`` defaults to every key except ``"seconds"`` and ``"step"``. The x axis is
    ``history["step"]`` when present, else 1, 2, ... . ``log=True`` uses a log y axis
    (values <= 0 are not drawn there). Histories of up to 20 points get markers, so a
    one-step run still shows. ``marks`` draws a labelled dashed vertical line at each
    ``{label: step}`` (say ``{"resumed here": 100.5}``).

    Drawn to be read: a ``"total"`` curve among others is a thin black line on top of the
    thicker, lighter component curves, so it stays visible where it coincides with the term that
    dominates it; with more than one line the legend sits *outside* the axes, to the right, so
    it never covers a curve. Returns the Figure (``ax``'s when given).
    """
    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a dict of lists of numbers, not {type(history).__name__}")
    if keys is None:
        keys = [key for key in history if key not in ("seconds", "step")]
    missing = [key for key in keys if key not in history]
    if missing:
        raise ValueError(f"keys {missing} are not in history; it has {list(history)}")
    curves = {key: np.array([float(value) for value in history[key]], dtype=np.float64) for key in keys}
    curves = {key: values for key, values in curves.items() if len(values)}
    if not curves:
        raise ValueError(f"history has nothing to plot (keys {list(keys)} are empty or missing)")
    steps = np.array([float(step) for step in history["step"]]) if "step" in history else None
    if ax is None:
        figure = _new_figure(6.0, 3.5)
        ax = figure.add_subplot()
    else:
        figure = _root_figure(ax)
    layered = "total" in curves and len(curves) > 1
    for key, values in curves.items():
        x = steps[: len(values)] if steps is not None and len(steps) >= len(values) else np.arange(1, len(values) + 1)
        style = dict(marker="o" if len(values) <= 20 else None, markersize=3)  # short runs stay visible
        if layered and key == "total":
            style.update(color="black", linewidth=1.4, zorder=3)  # on top of the terms it adds up
        elif layered:
            style.update(linewidth=2.8, alpha=0.7, zorder=2)
        ax.plot(x, values, label=key, **style)
    for label, step in (marks or {}).items():
        ax.axvline(float(step), color="gray", linestyle="--", linewidth=1, label=label, zorder=1)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("loss" if len(curves) > 1 else f"loss ({next(iter(curves))})")
    ax.grid(True, alpha=0.3)
    if len(curves) + len(marks or {}) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=9, frameon=False)
    if title:
        ax.set_title(title)
    return figure


def normalize_channels(features: torch.Tensor) -> torch.Tensor:
    """Each channel of ``[C, H, W]`` rescaled to [0, 1]: ``(x - min) / (max - min)``; constant channels become 0."""
    flat = features.detach().to("cpu", torch.float32).flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.reshape(features.shape)


def show_feature_maps(features: torch.Tensor, n: int = 16, ncols: int = 8, title: str | None = None) -> Figure:
    """The first ``n`` channels of a ``[1, C, H, W]`` (or ``[C, H, W]``) feature tensor, one panel each.

    Each channel is normalised to [0, 1] on its own (:func:`normalize_channels`) and
    shown with the viridis colour map; panels are titled with the channel index.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a tensor [1, C, H, W], not {type(features).__name__}")
    if features.dim() == 4 and features.shape[0] == 1:
        features = features[0]
    if features.dim() != 3 or 0 in features.shape:
        raise ValueError(f"features has shape {tuple(features.shape)}: expected [1, C, H, W] or [C, H, W]")
    n = min(positive_int(n, "n"), features.shape[0])
    ncols = min(positive_int(ncols, "ncols"), n)
    nrows = math.ceil(n / ncols)
    maps = normalize_channels(features[:n]).numpy()
    panel = _panel_size(1.5, ncols, 0.0, BOOK_WIDTH)
    aspect = features.shape[1] / features.shape[2]
    figure = _new_figure(ncols * panel, nrows * (panel * aspect + 0.2) + 0.3)
    for index, ax in enumerate(figure.subplots(nrows, ncols, squeeze=False).ravel()):
        if index < n:
            ax.imshow(maps[index], cmap="viridis", vmin=0.0, vmax=1.0)
            _clean_axes(ax)
            ax.set_title(str(index), fontsize=9)
        else:
            ax.remove()
    channels, height, width = features.shape
    figure.suptitle(title if title is not None else f"{n} of {channels} channels, {height}x{width}")
    return figure


def show_gram(gram: torch.Tensor, title: str | None = None, ax=None) -> Figure:
    """A Gram matrix ``G`` (``[C, C]`` or ``[1, C, C]``) as a heat map with labelled axes; returns the Figure.

    Entry ``G[i, j]`` (row i, column j) is the correlation of channels i and j, so the y axis is
    "channel i", the x axis "channel j". The colour scale is symmetric about 0 (``RdBu_r``: red > 0,
    blue < 0, white = 0, limits ``±max|G|``) and its colour bar is labelled ``G[i, j]``. With ``ax``
    the map is drawn there (and the colour bar beside it); otherwise in a new 4 x 3.4 inch figure.
    """
    if not isinstance(gram, torch.Tensor):
        raise TypeError(f"gram must be a tensor [C, C] or [1, C, C], not {type(gram).__name__}")
    matrix = gram.detach().to("cpu", torch.float32)
    if matrix.dim() == 3 and matrix.shape[0] == 1:
        matrix = matrix[0]
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"gram has shape {tuple(gram.shape)}: expected a square [C, C] or [1, C, C]")
    if ax is None:
        figure = _new_figure(4.0, 3.4)
        ax = figure.add_subplot()
    else:
        figure = _root_figure(ax)
    limit = float(matrix.abs().max()) or 1.0
    shown = ax.imshow(matrix.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    channels = matrix.shape[0]
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.set_xlabel("channel j")
    ax.set_ylabel("channel i")
    ax.set_title(title if title is not None else f"Gram matrix, {channels} x {channels}", fontsize=LABEL_SIZE)
    figure.colorbar(shown, ax=ax, shrink=0.85, label="G[i, j]")
    return figure


# --------------------------------------------------------------------------------------
# tables


def _cell_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _is_number(text: str) -> bool:
    """True for "1,234", "0.5", "3e-05", "12 %", "181x": a number, maybe with separators, a unit % or x."""
    core = text.replace(",", "").rstrip("%x ").strip()
    try:
        float(core)
    except ValueError:
        return False
    return bool(core)


class HTMLTable:
    """A small table that notebooks show as HTML (``_repr_html_``) and terminals as aligned text.

    Made by :func:`html_table`; ``header`` and ``rows`` hold the cells' texts. A column whose
    cells are all numbers (or empty) is right-aligned. With ``details`` the HTML table is folded
    into a ``<details>`` element whose summary line is ``details`` (click to unfold).
    """

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None,
                 details: str | None = None):
        self.header = [str(cell) for cell in header]
        self.rows = [[str(cell) for cell in row] for row in rows]
        self.caption = caption
        self.details = details
        self.numeric = [all(_is_number(row[c]) or not row[c] for row in self.rows) and any(row[c] for row in self.rows)
                        for c in range(len(self.header))]

    def _repr_html_(self) -> str:
        def cells(tag: str, values: Sequence[str]) -> str:
            return "".join(f'<{tag} style="text-align: {"right" if right else "left"}">{html.escape(v)}</{tag}>'
                           for v, right in zip(values, self.numeric))

        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        body = "".join(f"<tr>{cells('td', row)}</tr>" for row in self.rows)
        table = (f'<table class="nstlib-table">{caption}<thead><tr>{cells("th", self.header)}</tr></thead>'
                 f"<tbody>{body}</tbody></table>")
        if self.details:
            return f"<details><summary>{html.escape(self.details)}</summary>{table}</details>"
        return table

    def __str__(self) -> str:
        widths = [max(len(row[c]) for row in [self.header, *self.rows]) for c in range(len(self.header))]

        def line(values: Sequence[str]) -> str:
            return "  ".join(v.rjust(w) if right else v.ljust(w)
                             for v, w, right in zip(values, widths, self.numeric)).rstrip()

        lines = ([self.caption] if self.caption else []) + [line(self.header), line(["-" * w for w in widths])]
        return "\n".join(lines + [line(row) for row in self.rows])

    def __repr__(self) -> str:
        return str(self)


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str], caption: str | None = None,
               details: str | None = None) -> HTMLTable:
    """A table for notebooks: ``display(html_table(rows, header))`` shows it as an HTML ``<table>``.

    The course book renders HTML outputs as tables (Markdown printed by a cell would stay raw
    ``|`` pipes). ``rows`` is a list of rows, each with one cell per entry of ``header``: strings
    are shown as they are, ints with thousands separators, floats with 4 significant digits,
    None as an empty cell. The text is HTML-escaped; numeric columns are right-aligned.
    ``details="..."`` folds the table away behind that summary line (an expandable detail).
    """
    header = [str(cell) for cell in header]
    if not header:
        raise ValueError("header is empty: pass one column name per column")
    texts = []
    for index, row in enumerate(rows):
        row = list(row)
        if len(row) != len(header):
            raise ValueError(f"row {index} has {len(row)} cells but the header has {len(header)} columns")
        texts.append([_cell_text(value) for value in row])
    return HTMLTable(header, texts, caption, details)


# --------------------------------------------------------------------------------------
# live preview


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, VS Code, Colab), False in scripts and terminal IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


_cell_outputs: dict[tuple[int, int], Any] = {}
"""The display handle of the live output of each (shell, execution count): one live picture per cell."""


def _cell_key() -> tuple[int, int] | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else (id(shell), int(getattr(shell, "execution_count", 0) or 0))


def _show_live(handle, obj: Any, *, raw: bool = False):
    """Show ``obj`` in the cell's live output and return its display handle.

    The first live picture of a cell is displayed with ``display_id=True``; every later one, from the
    same object (``handle``) or from another preview made in the same cell, replaces it in place.
    nbclient (and so papermill, jupyter-cache and the course book) stores only the replaced output, so
    a saved notebook shows each cell's final picture once.
    """
    from IPython.display import display

    key = _cell_key()
    handle = handle if handle is not None else _cell_outputs.get(key)
    if handle is None:
        handle = display(obj, raw=raw, display_id=True)
    else:
        handle.update(obj, raw=raw)
    if key is not None:
        _cell_outputs.clear()  # only the current cell's handle is ever reused
        _cell_outputs[key] = handle
    return handle


def _png_bytes(image: Any, upscale_to: int) -> bytes:
    """PNG bytes of ``image``; an image smaller than ``upscale_to`` is enlarged by a whole factor (nearest)."""
    picture = Image.fromarray((_display_array(image) * 255.0 + 0.5).astype(np.uint8))
    factor = upscale_to // max(picture.size)
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _format_losses(step: int, losses: Mapping[str, Any] | None, total_steps: int | None) -> str:
    parts = [f"step {step}" + (f"/{total_steps}" if total_steps else "")]
    for key, value in (losses or {}).items():
        value = float(value)
        parts.append(f"{value:.1f} s" if key == "seconds" else f"{key} {value:.4g}")
    return " | ".join(parts)


class LivePreview:
    """Show the image being optimised and update it in place, in a notebook.

    >>> with LivePreview(every=10) as preview:
    ...     for step in range(steps):
    ...         ...
    ...         preview.update(image, step, {"total": loss.item()})

    The first :meth:`update` displays one output (the image as PNG and a line
    ``step 10 | total 1.2e+04 | ...``); later updates replace it
    (``IPython.display`` with ``display_id``), and so does a second preview made later in
    the same cell (a loop over several runs shows one picture, the current run's). A saved
    notebook or the course book therefore shows only the final frame. Only steps where ``step % every == 0``
    are drawn; the last image given is drawn by :meth:`close` if it was skipped.
    Images whose longer side is under ``upscale_to`` pixels are enlarged by a whole
    factor with nearest-neighbour so their pixels stay visible.

    Called as ``preview(step, image, losses)`` it is an optimisation callback.
    Outside a Jupyter kernel (scripts, terminal) it does nothing at all.
    """

    def __init__(self, every: int = 1, upscale_to: int = 256, total_steps: int | None = None):
        self.every = positive_int(every, "every")
        self.upscale_to = positive_int(upscale_to, "upscale_to")
        self.total_steps = total_steps
        self.enabled = _in_notebook()
        self.closed = False
        self._handle = None
        self._pending: tuple | None = None

    def update(self, image: Any, step: int, losses: Mapping[str, Any] | None = None) -> None:
        """Show ``image`` with the step and losses if this step is due (see the class docs)."""
        if not self.enabled or self.closed:
            return
        if self._handle is None or step % self.every == 0:
            self._pending = None
            self._show(image, step, losses)
        else:  # keep a copy: the optimiser changes its image in place
            self._pending = (image.detach().to("cpu", copy=True) if isinstance(image, torch.Tensor) else image,
                             step, dict(losses or {}))

    def __call__(self, step: int, image: Any, losses: Mapping[str, Any] | None = None) -> None:
        """Callback form: ``preview(step, image, losses)``."""
        self.update(image, step, losses)

    def _show(self, image: Any, step: int, losses: Mapping[str, Any] | None) -> None:
        text = _format_losses(step, losses, self.total_steps)
        encoded = base64.b64encode(_png_bytes(image, self.upscale_to)).decode("ascii")
        bundle = {
            "text/html": (
                f'<div><img src="data:image/png;base64,{encoded}" style="image-rendering: pixelated"/>'
                f'<pre style="margin: 0.3em 0">{html.escape(text)}</pre></div>'
            ),
            "text/plain": text,
        }
        self._handle = _show_live(self._handle, bundle, raw=True)

    def close(self) -> None:
        """Draw the last skipped image, if any, and stop updating. Safe to call twice."""
        if self.enabled and not self.closed and self._pending is not None:
            self._show(*self._pending)
        self._pending = None
        self.closed = True

    def __enter__(self) -> LivePreview:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class LiveTrainingPlot:
    """A training callback that keeps ONE picture up to date: the loss curve so far and the newest samples.

    >>> live = LiveTrainingPlot("wave", sample_names=["tubingen", "amber"])
    >>> nstlib.train_transform_net(..., callback=live)
    >>> live.draw()                     # the final state

    :func:`~nstlib.train_transform_net` calls it as ``live(step, losses, samples)``; it redraws
    in place (``IPython.display`` with ``display_id``) when new samples arrive and otherwise at
    most every ``every_seconds``. ``history`` (a previous session's ``TrainResult.history``) makes a
    resumed run continue the same curve. Outside a Jupyter kernel it only records.
    """

    def __init__(self, title: str, sample_names: Sequence[str] | None = None,
                 history: Mapping[str, Sequence[float]] | None = None, every_seconds: float = 5.0):
        self.title = title
        self.sample_names = [str(name) for name in sample_names or []]
        self.every_seconds = float(every_seconds)
        self.steps = [int(s) for s in history["step"]] if history else []
        self.totals = [float(t) for t in history["total"]] if history else []
        self.samples: list = []
        self.enabled = _in_notebook()
        self._handle = None
        self._drawn_at = -math.inf

    def __call__(self, step: int, losses: Mapping[str, Any], samples: Sequence[Any] | None = None) -> None:
        """Record ``losses["total"]`` at ``step``; redraw when samples arrive or the picture is old."""
        import time

        self.steps.append(int(step))
        self.totals.append(float(losses["total"]))
        if samples is not None:
            self.samples = list(samples)
        if samples is not None or time.perf_counter() - self._drawn_at > self.every_seconds:
            self.draw()

    def figure(self) -> Figure:
        """The picture: loss curve (left), newest samples (right), at most :data:`BOOK_WIDTH` wide.

        With fewer than two recorded steps there is no curve to draw: the left panel then states the
        step and its loss in words instead of showing a one-point axis.
        """
        panel = _panel_size(2.2, len(self.samples), 4.5, BOOK_WIDTH) if self.samples else 2.2
        figure = _new_figure(min(4.5 + panel * len(self.samples), BOOK_WIDTH), 2.8)
        axes = figure.subplots(1, 1 + len(self.samples), width_ratios=[2] + [1] * len(self.samples), squeeze=False)[0]
        title = f"{self.title}: step {self.steps[-1]}" if self.steps else self.title
        if len(self.steps) >= 2:
            plot_losses({"step": self.steps, "total": self.totals}, ax=axes[0], title=title)
        else:
            _clean_axes(axes[0])
            axes[0].set_title(title, fontsize=LABEL_SIZE)
            words = (f"step {self.steps[0]}: total loss {self.totals[0]:.4g}\n(the curve starts at the second step)"
                     if self.steps else "no step yet")
            axes[0].text(0.5, 0.5, words, ha="center", va="center", fontsize=LABEL_SIZE, transform=axes[0].transAxes)
        names = self.sample_names + [None] * len(self.samples)
        for ax, image, name in zip(axes[1:], self.samples, names):
            show_image(image, name, ax=ax)
        figure.set_layout_engine("constrained")
        return figure

    def draw(self) -> None:
        """Show the picture now (replacing the previous one); nothing outside a notebook."""
        import time

        if not self.enabled:
            return
        from IPython.display import Image as IPImage

        self._handle = _show_live(self._handle, IPImage(_figure_png(self.figure())))
        self._drawn_at = time.perf_counter()


def save_figure(figure: Figure, path, *, dpi: int = 120) -> Path:
    """Save ``figure`` atomically; the format (png, pdf, svg, jpg) comes from the extension."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in {"png", "pdf", "svg", "jpg", "jpeg"}:
        raise ValueError(f"cannot save a figure as {path}: use .png, .pdf, .svg or .jpg")
    return atomic_write(path, lambda handle: figure.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight"))

