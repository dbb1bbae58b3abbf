"""An interactive style-transfer explorer for Jupyter and Colab (ipywidgets).

>>> explorer = nstlib.explore("tubingen", "starry_night", size=128, steps=50)   # doctest: +SKIP

shows drop-downs for the content and style images (the course's samples, or your own file
via the upload buttons), logarithmic sliders for the content, style and total-variation
weights, the layer set (:data:`~nstlib.LAYER_PRESETS`), the optimiser, the start image, the
size and the number of steps, and a **Run** button. Run calls :func:`nstlib.stylize` with
those values, shows a progress bar and the image as it is optimised, then the before/after
comparison (content | result | style), with a status line that reports the time and the
losses, or the error when a value is wrong.

Where widgets cannot work, :func:`explore` prints a short message instead and returns
``None``; it never raises. The rule (see :func:`live_frontend`): widgets are shown only in a
Jupyter kernel whose current cell was sent by a live front end. Interactive front ends
(JupyterLab, Notebook, VS Code, Colab) send each cell with ``allow_stdin=True`` so that
``input()`` works; headless runners (nbval, nbclient, papermill, Jupyter Book) send
``allow_stdin=False``; plain Python and terminal IPython have no kernel. Pass
``interactive=True`` or ``False`` to override the rule.

All the logic works without a browser: :class:`StyleExplorer` builds the widgets, and
:meth:`StyleExplorer.run` reads them, runs :func:`nstlib.stylize` and returns its
:class:`~nstlib.StylizeResult` (the button only calls :meth:`~StyleExplorer.run`).

The explorer draws its pictures into ``Image`` widgets (PNG bytes), which every widget front end
can show (an ``Output`` widget fails to load in the classic Notebook with ipywidgets 7 and blanks
the whole explorer). :func:`upload_image` asks for one image from the student's computer: on Colab
through ``google.colab.files.upload()`` (Colab's ``FileUpload`` widget is reported to lose files of
1 MB or more, ipywidgets issue 3452), elsewhere through a ``FileUpload`` button.
"""

from __future__ import annotations

import html
import importlib.util
import io
import math
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import torch

from . import gatys  # gatys.stylize is looked up at run time, so it can be replaced (tests, instructors)
from .config import live_frontend
from .data.samples import get_sample, is_sample, sample_names
from .images import load_image, resize, to_pil
from .layers import LAYER_PRESETS
from .plotting import _figure_png, show_images

__all__ = [
    "FALLBACK_MESSAGE", "ImageUpload", "StyleExplorer", "decode_upload", "explore", "in_colab", "live_frontend",
    "upload_image",
]

DIRECT_CALL = """\
    result = nstlib.stylize("tubingen", "starry_night", size=128, steps=50,
                            content_weight=1, style_weight=1e6, tv_weight=0,
                            **nstlib.LAYER_PRESETS["gatys"])
    nstlib.show_images([result.image])"""

FALLBACK_MESSAGE = """\
The style explorer needs a live Jupyter or Colab session (it uses ipywidgets), and this
output was made without one (a script, a test run or a static web page).
Run this notebook in Jupyter or Colab to get the sliders, or call the same function directly:

""" + DIRECT_CALL + """

(To force the widgets anyway: nstlib.explore(..., interactive=True).)"""
"""What :func:`explore` prints where widgets cannot render."""

WIDGET_ERROR_MESSAGE = """\
The style explorer could not create its widgets: {error}
Your ipywidgets ({version}) and the notebook's widget extension probably do not match: JupyterLab 4
and Notebook 7 need ipywidgets 8 (`pip install -U "ipywidgets>=8"`, then restart the kernel and
reload the page). Meanwhile, call the same function directly:

""" + DIRECT_CALL
"""What :func:`explore` prints when a widget cannot be created (the error and ipywidgets' version filled in)."""

UPLOADED = "uploaded: "
"""Prefix of the drop-down entry that stands for an uploaded image."""

MAX_UPLOAD_SIDE = 1024
"""Uploaded images are shrunk to this longer side (the explorer works at small sizes)."""

TV_OFF = 1e-6
"""The TV slider's leftmost value, which means ``tv_weight = 0`` (a log slider cannot reach 0)."""

DESCRIPTION_WIDTH = "150px"
"""Width of the labels left of the controls: "TV weight (min=off)" fits in it (tests/test_widgets.py measures)."""

COLAB_UPLOAD_HINT = (
    "On Colab, files of 1 MB or more can get lost through the upload buttons: run "
    "<code>upload = nstlib.upload_image()</code>, then "
    "<code>nstlib.explore(upload.image()[1])</code>."
)
"""Added to the explorer's first status line on Colab."""


# --------------------------------------------------------------------------------------
# where widgets can render


def explore(
    content: Any = None,
    style: Any = None,
    *,
    size: int = 128,
    steps: int = 50,
    interactive: bool | None = None,
    **options,
) -> "StyleExplorer | None":
    """Show a :class:`StyleExplorer` and return it, or print :data:`FALLBACK_MESSAGE` and return None.

    ``interactive=None`` decides with :func:`live_frontend`; True or False forces the choice.
    ``content`` / ``style`` are sample names (default ``tubingen`` / ``starry_night``) or any
    image :func:`~nstlib.load_image` takes; ``options`` go to :class:`StyleExplorer` (for example
    ``style_weight=1e9``, ``layers="seed"``, ``weights=None``). Never raises for a missing front
    end: with ``interactive=True`` but no ipywidgets, it prints the message as well. A widget that
    cannot be created (ipywidgets too old, say) prints :data:`WIDGET_ERROR_MESSAGE` and returns
    None; bad arguments still raise ``ValueError``.
    """
    if interactive is None:
        interactive = live_frontend()
    if interactive:
        try:
            explorer = StyleExplorer(content, style, size=size, steps=steps, **options)
        except ImportError:
            interactive = False
        except ValueError:
            raise
        except Exception as error:  # a widget that this ipywidgets cannot make: say so in plain text
            import ipywidgets

            print(WIDGET_ERROR_MESSAGE.format(error=f"{type(error).__name__}: {error}",
                                              version=getattr(ipywidgets, "__version__", "unknown version")))
            return None
        else:
            from IPython.display import display

            display(explorer.widget)
            return explorer
    print(FALLBACK_MESSAGE)
    return None


# --------------------------------------------------------------------------------------
# uploads


def decode_upload(value: Any) -> tuple[str, torch.Tensor] | None:
    """The first file of a ``FileUpload`` value as ``(file name, [1, 3, H, W] image)``, or None if empty.

    Accepts ipywidgets 8 values (a tuple of dicts with ``name`` and ``content``), ipywidgets 7
    values (``{name: {"content": bytes, ...}}``), what ``google.colab.files.upload()`` returns
    (``{name: bytes}``) and plain ``bytes``. The bytes go through
    :func:`~nstlib.load_image` (all its checks: broken files raise :class:`~nstlib.ImageError`);
    images larger than :data:`MAX_UPLOAD_SIDE` pixels are shrunk to it.
    """

    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        name, data = "upload", bytes(value)
    elif isinstance(value, Mapping):
        name, entry = next(iter(value.items()))
        data = bytes(entry["content"]) if isinstance(entry, Mapping) else bytes(entry)
    else:
        entry = value[0]
        name, data = entry.get("name", "upload"), bytes(entry["content"])
    name = PurePath(str(name)).name or "upload"  # never a path from the browser
    with tempfile.TemporaryDirectory(prefix="nstlib-upload-") as folder:
        path = Path(folder) / ("upload" + (PurePath(name).suffix.lower() or ".img"))
        path.write_bytes(data)
        image = load_image(path)
    if max(image.shape[-2:]) > MAX_UPLOAD_SIDE:
        image = resize(image, MAX_UPLOAD_SIDE)
    return name, image


def in_colab() -> bool:
    """True in a Google Colab runtime: its ``google.colab`` package is imported or importable."""
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no "google" package at all, or a module without a spec
        return False


class ImageUpload:
    """One image from the student's computer, through the upload path that works where the code runs.

    On Colab (:func:`in_colab`) the constructor calls ``google.colab.files.upload()`` at once: Colab
    shows a *Choose files* button under the cell, and the cell waits until a file is chosen or the
    upload is cancelled. Elsewhere it makes an ipywidgets ``FileUpload`` button (``widget``) that the
    notebook displays; the file arrives when the student picks it, and a later cell reads it.

    :meth:`image` decodes what arrived with :func:`decode_upload`: ``(file name, [1, 3, H, W] image)``,
    or None when nothing was uploaded. ``value`` is the raw value (Colab's ``{name: bytes}``, or the
    widget's value, whose format differs between ipywidgets 7 and 8).
    """

    def __init__(self, description: str = "Upload", *, colab: bool | None = None):
        self.colab = in_colab() if colab is None else bool(colab)
        self.widget = None
        self.files: dict[str, bytes] = {}
        if self.colab:
            from google.colab import files

            self.files = dict(files.upload() or {})
        else:
            import ipywidgets as w

            self.widget = w.FileUpload(accept="image/*", multiple=False, description=description)

    @property
    def value(self) -> Any:
        """Colab's ``{file name: bytes}``, or the ``FileUpload`` widget's value."""
        return self.files if self.colab else self.widget.value

    def image(self) -> tuple[str, torch.Tensor] | None:
        """``(file name, [1, 3, H, W] image)`` of the uploaded file, or None; broken files raise ImageError."""
        return decode_upload(self.value)

    def _repr_mimebundle_(self, **kwargs):
        if self.widget is not None:
            return self.widget._repr_mimebundle_(**kwargs)
        names = ", ".join(f"{PurePath(name).name} ({len(data):,} bytes)" for name, data in self.files.items())
        return {"text/plain": f"uploaded: {names}" if names else "nothing uploaded"}


def upload_image(description: str = "Upload") -> ImageUpload:
    """An :class:`ImageUpload`: on Colab asks for the file now, elsewhere returns a button to display.

    >>> upload = nstlib.upload_image()            # doctest: +SKIP
    >>> display(upload)                           # Colab: what arrived; Jupyter: the Upload button
    >>> uploaded = upload.image()                 # in the next cell: (name, image) or None
    """
    return ImageUpload(description)


# --------------------------------------------------------------------------------------
# the explorer


def _log10(value: float, argument: str) -> float:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{argument}={value!r} must be a finite number > 0 for its log slider")
    return math.log10(value)


class StyleExplorer:
    """ipywidgets controls around :func:`nstlib.stylize`; ``widget`` is the box to display.

    Controls (attributes): ``content`` and ``style`` (Dropdowns of sample names, plus an
    ``"uploaded: <file>"`` entry after an upload), ``content_upload`` and ``style_upload``
    (FileUploads), ``content_weight``, ``style_weight``, ``tv_weight`` (FloatLogSliders; the TV
    slider's leftmost value :data:`TV_OFF` means 0), ``layers`` (Dropdown of
    :data:`~nstlib.LAYER_PRESETS` keys), ``optimizer``, ``init`` (Dropdowns), ``preserve_color``
    (Checkbox), ``size`` (IntSlider), ``steps`` (IntText), ``run_button``. Outputs: ``progress``
    (IntProgress), ``live`` (Image updated while optimising, hidden until the first run),
    ``comparison`` (Image: a "press Run" placeholder, then the before/after figure as PNG),
    ``status`` (HTML line). After a run, ``result`` holds the
    :class:`~nstlib.StylizeResult` and ``figure`` the before/after figure.

    ``weights``, ``device`` and ``seed`` are passed to every run unchanged (``weights=None`` uses
    seeded random VGG19 weights: no download, and they still transfer colour and fine texture).
    Bad constructor arguments raise ``ValueError``; bad values set later in the widgets (such as 0
    steps) are reported in the status line by :meth:`run`.
    """

    def __init__(
        self,
        content: Any = None,
        style: Any = None,
        *,
        size: int = 128,
        steps: int = 50,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
        layers: str = "gatys",
        optimizer: str = "lbfgs",
        init: str = "content",
        preserve_color: bool = False,
        weights: str | None = "imagenet",
        device=None,
        seed: int = 0,
    ):
        import ipywidgets as w


        if layers not in LAYER_PRESETS:
            raise ValueError(f"layers={layers!r} must be one of {sorted(LAYER_PRESETS)}")
        for value, argument, allowed in ((optimizer, "optimizer", ("lbfgs", "adam")), (init, "init", ("content", "noise"))):
            if value not in allowed:
                raise ValueError(f"{argument}={value!r} must be one of {allowed}")
        self.weights, self.device, self.seed = weights, device, seed
        self.result = None
        self.figure = None
        self._images: dict[str, Any] = {}  # dropdown label -> image for non-sample choices

        wide = w.Layout(width="460px")
        style_desc = {"description_width": DESCRIPTION_WIDTH}
        self.content = w.Dropdown(options=sample_names("content"), description="Content", style=style_desc, layout=wide)
        self.style = w.Dropdown(options=sample_names("style"), description="Style", style=style_desc, layout=wide)
        self._choose(self.content, content, "tubingen", "content")
        self._choose(self.style, style, "starry_night", "style")
        self.content_upload = w.FileUpload(accept="image/*", multiple=False, description="Your content")
        self.style_upload = w.FileUpload(accept="image/*", multiple=False, description="Your style")
        self.content_upload.observe(lambda change: self.use_upload("content", change["new"]), names="value")
        self.style_upload.observe(lambda change: self.use_upload("style", change["new"]), names="value")

        def log_slider(description, value, low, high):
            return w.FloatLogSlider(value=value, base=10, min=low, max=high, step=0.25, description=description,
                                    readout_format=".2g", style=style_desc, layout=wide, continuous_update=False)

        _log10(content_weight, "content_weight"), _log10(style_weight, "style_weight")
        if not (isinstance(tv_weight, (int, float)) and 0 <= tv_weight < math.inf):
            raise ValueError(f"tv_weight={tv_weight!r} must be a finite number >= 0")
        self.content_weight = log_slider("Content weight", content_weight, -3, 3)
        self.style_weight = log_slider("Style weight", style_weight, 0, 12)
        self.tv_weight = log_slider("TV weight (min=off)", max(tv_weight, TV_OFF), math.log10(TV_OFF), 3)
        self.layers = w.Dropdown(options=list(LAYER_PRESETS), value=layers, description="Layers", style=style_desc)
        self.optimizer = w.Dropdown(options=["lbfgs", "adam"], value=optimizer, description="Optimizer", style=style_desc)
        self.init = w.Dropdown(options=["content", "noise"], value=init, description="Start from", style=style_desc)
        self.preserve_color = w.Checkbox(value=bool(preserve_color), description="Keep the content's colours")
        self.size = w.IntSlider(value=size, min=32, max=512, step=16, description="Size (px)", style=style_desc,
                                layout=wide, continuous_update=False)
        self.steps = w.IntText(value=steps, description="Steps", style=style_desc)
        self.run_button = w.Button(description="Run", button_style="primary", icon="paint-brush")
        self.run_button.on_click(lambda _button: self.run())
        self.progress = w.IntProgress(value=0, min=0, max=max(int(steps), 1), description="Progress", style=style_desc)
        self.live = w.Image(format="png", layout=w.Layout(max_width="256px", display="none"))
        self.comparison = w.Image(value=_placeholder_png(PLACEHOLDER_TEXT), format="png")
        hint = "<br>" + COLAB_UPLOAD_HINT if in_colab() else ""
        self.status = w.HTML(value="Pick images and weights, then press <b>Run</b>." + hint)

        controls = w.VBox([
            w.HBox([self.content, self.content_upload]),
            w.HBox([self.style, self.style_upload]),
            self.content_weight, self.style_weight, self.tv_weight,
            w.HBox([self.layers, self.optimizer]),
            w.HBox([self.init, self.preserve_color]),
            self.size, w.HBox([self.steps, self.run_button]),
        ])
        self.widget = w.VBox([controls, self.progress, self.status, self.live, self.comparison])

    def _choose(self, dropdown, image, default: str, kind: str) -> None:
        """Select ``image`` in ``dropdown``: a sample name directly, anything else as an extra entry."""

        if image is None:
            image = default
        if isinstance(image, str) and is_sample(image):
            name = get_sample(image).name
            if name not in dropdown.options:
                raise ValueError(f"{kind}={image!r} is a {get_sample(image).kind} sample, not a {kind} sample")
            dropdown.value = name
            return
        label = f"{kind}: {PurePath(image).name}" if isinstance(image, (str, PurePath)) else f"{kind}: your image"
        self._images[label] = image
        dropdown.options = [label, *dropdown.options]
        dropdown.value = label

    def use_upload(self, kind: str, value: Any) -> str | None:
        """Decode an uploaded file and select it as the ``kind`` ("content"/"style") image; returns its label.

        A file that cannot be read leaves the selection unchanged and shows the error in the status line.
        """
        if kind not in ("content", "style"):
            raise ValueError(f"kind={kind!r} must be 'content' or 'style'")
        try:
            decoded = decode_upload(value)
        except Exception as error:  # a broken file is the student's to fix, not a crash
            self._set_status(f"Could not read the uploaded {kind} image: {error}", error=True)
            return None
        if decoded is None:
            return None
        name, image = decoded
        label = UPLOADED + name
        self._images[label] = image
        dropdown = self.content if kind == "content" else self.style
        dropdown.options = [label, *[o for o in dropdown.options if o != label]]
        dropdown.value = label
        self._set_status(f"Using your {kind} image {html.escape(name)} ({image.shape[-1]}x{image.shape[-2]} px).")
        return label

    def image_for(self, kind: str) -> Any:
        """The current ``kind`` ("content"/"style") choice: a sample name or an image (upload, path, tensor)."""
        dropdown = self.content if kind == "content" else self.style
        return self._images.get(dropdown.value, dropdown.value)

    def options(self) -> dict[str, Any]:
        """The keyword arguments for :func:`nstlib.stylize` that the widgets describe now.

        ``content_weight`` / ``style_weight`` / ``tv_weight`` are the sliders' values (TV at its
        leftmost value :data:`TV_OFF` gives 0), ``content_layers`` / ``style_layers`` come from
        ``LAYER_PRESETS[layers]``, and ``weights``, ``device``, ``seed`` are the constructor's.
        Values are passed on unchecked: :func:`nstlib.stylize` reports bad ones.
        """
        tv = float(self.tv_weight.value)
        return {
            "size": int(self.size.value),
            "steps": int(self.steps.value),
            "content_weight": float(self.content_weight.value),
            "style_weight": float(self.style_weight.value),
            "tv_weight": 0.0 if tv <= TV_OFF * (1 + 1e-9) else tv,
            **{key: list(value) for key, value in LAYER_PRESETS[self.layers.value].items()},
            "optimizer": self.optimizer.value,
            "init": self.init.value,
            "preserve_color": bool(self.preserve_color.value),
            "weights": self.weights,
            "device": self.device,
            "seed": self.seed,
        }

    def run(self):
        """Stylise with the current values; returns the :class:`~nstlib.StylizeResult`, or None on an error.

        Shows progress and the live image while it runs, then the before/after figure
        (:attr:`figure`) and a status line with the time and final losses. Any error (a bad value,
        an unreadable image, missing weights) goes to the status line instead of being raised.
        """
        options = self.options()
        content, style = self.image_for("content"), self.image_for("style")
        self.run_button.disabled = True
        self.progress.value, self.progress.max = 0, max(options["steps"], 1)
        self.progress.bar_style = ""
        self.live.layout.display = None  # shown from the first run on
        self._set_status(f"Running {options['steps']} steps at {options['size']} px ...")
        every = max(1, options["steps"] // 10)

        def callback(step: int, image: torch.Tensor, losses: Mapping[str, float]) -> None:
            self.progress.value = min(step, self.progress.max)
            if step % every == 0:
                self.live.value = _png(image)

        try:
            result = gatys.stylize(content, style, callback=callback, callback_every=1, progress=False, **options)
            long_side = max(result.image.shape[-2:])
            before, style_image = load_image(content, long_side), load_image(style, long_side)
            figure = show_images([before, result.image, style_image],
                                        ["before (content)", "after (result)", "style"], size=3.0)
        except Exception as error:  # shown to the student, never raised into the widget machinery
            self.progress.bar_style = "danger"
            self._set_status(f"{type(error).__name__}: {error}", error=True)
            return None
        finally:
            self.run_button.disabled = False
        self.result, self.figure = result, figure
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.live.value = _png(result.image)
        self._show(figure)
        losses = ", ".join(f"{key} {value:.3g}" for key, value in result.final_losses().items())
        self._set_status(f"Done in {result.seconds:.1f} s ({len(result.history['total'])} steps): {losses}.")
        return result

    def _show(self, figure) -> None:
        self.comparison.value = _figure_png(figure)

    def _set_status(self, text: str, error: bool = False) -> None:
        message = html.escape(text) if error else text
        self.status.value = f'<span style="color: #b00020">{message}</span>' if error else message

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


PLACEHOLDER_TEXT = "Press Run: the before / after comparison appears here."
"""What the comparison picture says before the first run (instead of a broken-image icon)."""


def _placeholder_png(text: str, width: int = 480, height: int = 60) -> bytes:
    """PNG bytes of a light grey ``width`` x ``height`` box with ``text`` in dark grey.

    The font is PIL's default, at 15 px where Pillow can scale it (10.1 and later, with FreeType).
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=15)  # Pillow >= 10.1 with FreeType
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()
    picture = Image.new("RGB", (width, height), (238, 238, 238))
    ImageDraw.Draw(picture).text((12, height // 2 - 9), text, fill=(60, 60, 60), font=font)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _png(image: torch.Tensor) -> bytes:
    """PNG bytes of a ``[1, 3, H, W]`` image in [0, 1]."""

    buffer = io.BytesIO()
    to_pil(image.detach().clamp(0, 1).cpu()).save(buffer, format="PNG")
    return buffer.getvalue()
