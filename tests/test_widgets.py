"""nstlib.widgets: widget values -> stylize arguments, runs, uploads (Colab and elsewhere), errors, the
no-widget fallback, and progress bars that leave no widget behind in a saved notebook (nstlib.config)."""

import datetime
import io
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import nstlib
from nstlib import widgets as ex

SIZE = 32




def fake_stylize(calls, image):
    """A stand-in for nstlib.stylize that records its arguments and returns ``image``."""

    def stylize(content, style, **kwargs):
        calls.append((content, style, kwargs))
        for step in range(1, kwargs["steps"] + 1):
            kwargs["callback"](step, image, {"total": 1.0 / step})
        history = {"total": [1.0, 0.5], "content": [0.1, 0.2], "style": [0.9, 0.3], "tv": [0.0, 0.0], "seconds": [0.1, 0.2]}
        return nstlib.StylizeResult(image=image, history=history, settings={})

    return stylize


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(height=30, width=40) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 6, y * 8, (x + y) * 3], axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------------------
# widgets -> arguments


def test_widget_values_map_to_stylize_arguments(monkeypatch, content, style):
    calls = []
    monkeypatch.setattr(nstlib.gatys, "stylize", fake_stylize(calls, content))
    explorer = ex.StyleExplorer(content, style, weights=None, device="cpu", seed=7)
    explorer.content_weight.value = 10.0
    explorer.style_weight.value = 1e9
    explorer.tv_weight.value = 0.01
    explorer.layers.value = "seed"
    explorer.optimizer.value = "adam"
    explorer.init.value = "noise"
    explorer.preserve_color.value = True
    explorer.size.value = 48
    explorer.steps.value = 4
    result = explorer.run()
    assert len(calls) == 1
    got_content, got_style, kwargs = calls[0]
    assert got_content is content and got_style is style
    kwargs.pop("callback")
    assert kwargs == {
        "size": 48, "steps": 4, "content_weight": 10.0, "style_weight": 1e9, "tv_weight": pytest.approx(0.01),
        "content_layers": ["conv_4"], "style_layers": ["conv_1", "conv_2", "conv_3", "conv_4", "conv_5"],
        "optimizer": "adam", "init": "noise", "preserve_color": True, "weights": None, "device": "cpu", "seed": 7,
        "callback_every": 1, "progress": False,
    }
    assert result is explorer.result
    assert explorer.progress.value == explorer.progress.max == 4


def test_tv_slider_at_its_minimum_means_no_tv_and_constructor_values_reach_the_widgets(content, style):
    explorer = ex.StyleExplorer(content, style, size=64, steps=9, content_weight=2.0, style_weight=1e7, layers="gatys")
    options = explorer.options()
    assert options["tv_weight"] == 0.0 and explorer.tv_weight.value == pytest.approx(ex.TV_OFF)
    assert options["content_weight"] == pytest.approx(2.0) and options["style_weight"] == pytest.approx(1e7)
    assert (options["size"], options["steps"]) == (64, 9)
    assert options["content_layers"] == list(nstlib.GATYS_CONTENT_LAYERS)
    assert options["style_layers"] == list(nstlib.GATYS_STYLE_LAYERS)
    assert ex.StyleExplorer(content, style, tv_weight=0.5).options()["tv_weight"] == pytest.approx(0.5)


def test_sample_names_are_selected_and_bad_choices_are_refused():
    explorer = ex.StyleExplorer("golden_gate", "The-Scream")
    assert explorer.content.value == "golden_gate" and explorer.style.value == "the_scream"
    assert set(nstlib.sample_names("content")) <= set(explorer.content.options)
    assert set(nstlib.sample_names("style")) <= set(explorer.style.options)
    assert explorer.image_for("content") == "golden_gate"
    default = ex.StyleExplorer()
    assert (default.content.value, default.style.value) == ("tubingen", "starry_night")
    with pytest.raises(ValueError, match="style sample, not a content sample"):
        ex.StyleExplorer("starry_night", "wave")
    with pytest.raises(ValueError, match="layers="):
        ex.StyleExplorer(layers="johnson")
    with pytest.raises(ValueError, match="style_weight"):
        ex.StyleExplorer(style_weight=0)
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        ex.StyleExplorer(optimizer="sgd")
    with pytest.raises(ValueError, match="tv_weight"):
        ex.StyleExplorer(tv_weight=-1.0)


def test_run_button_calls_run(monkeypatch, content, style):
    calls = []
    monkeypatch.setattr(nstlib.gatys, "stylize", fake_stylize(calls, content))
    explorer = ex.StyleExplorer(content, style, steps=2)
    explorer.run_button.click()
    assert len(calls) == 1 and explorer.result is not None
    assert not explorer.run_button.disabled


# --------------------------------------------------------------------------------------
# real runs


def test_tiny_real_run_equals_stylize_and_shows_before_after(content, style):
    explorer = ex.StyleExplorer(content, style, size=SIZE, steps=3, style_weight=1e8, layers="seed", weights=None,
                                device="cpu")
    result = explorer.run()
    direct = nstlib.stylize(content, style, size=SIZE, steps=3, style_weight=1e8, weights=None, device="cpu",
                            progress=False, **nstlib.LAYER_PRESETS["seed"])
    torch.testing.assert_close(result.image, direct.image)
    assert result.history["total"] == pytest.approx(direct.history["total"])
    axes = explorer.figure.axes
    assert [ax.get_title() for ax in axes] == ["before (content)", "after (result)", "style"]
    shown = axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(np.asarray(shown), result.image[0].permute(1, 2, 0).numpy(), atol=1e-6)
    live = np.asarray(Image.open(io.BytesIO(explorer.live.value)).convert("RGB"))
    np.testing.assert_allclose(live / 255.0, result.image[0].permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)
    assert explorer.status.value.startswith("Done in") and "total" in explorer.status.value
    assert explorer.progress.bar_style == "success"


def test_bad_values_show_an_error_in_the_status_line(content, style):
    explorer = ex.StyleExplorer(content, style, weights=None, device="cpu")
    explorer.steps.value = 0
    assert explorer.run() is None
    assert "steps=0" in explorer.status.value and "ValueError" in explorer.status.value
    assert explorer.progress.bar_style == "danger" and not explorer.run_button.disabled
    assert explorer.result is None and explorer.figure is None


def test_an_error_inside_stylize_is_shown_not_raised(monkeypatch, content, style):
    def broken(*args, **kwargs):
        raise nstlib.WeightsError("could not get the pretrained VGG19 weights <offline>")

    monkeypatch.setattr(nstlib.gatys, "stylize", broken)
    explorer = ex.StyleExplorer(content, style)
    assert explorer.run() is None
    assert "WeightsError" in explorer.status.value and "&lt;offline&gt;" in explorer.status.value


# --------------------------------------------------------------------------------------
# uploads


def test_uploaded_png_becomes_the_content_image(monkeypatch, content, style):
    array = gradient()
    value = ({"name": "my photo.png", "type": "image/png", "size": 0, "content": memoryview(png_bytes(array)),
              "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)
    explorer = ex.StyleExplorer(content, style)
    explorer.content_upload.value = value  # what the browser does; the observer decodes it
    assert explorer.content.value == "uploaded: my photo.png"
    expected = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    torch.testing.assert_close(explorer.image_for("content"), expected)
    calls = []
    monkeypatch.setattr(nstlib.gatys, "stylize", fake_stylize(calls, content))
    explorer.steps.value = 1
    explorer.run()
    torch.testing.assert_close(calls[0][0], expected)


def test_decode_upload_accepts_every_value_format():
    array = gradient(12, 20)
    data = png_bytes(array)
    expected = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    for value, name in [
        (({"name": "a.png", "content": memoryview(data)},), "a.png"),  # ipywidgets 8
        ({"b.png": {"metadata": {"name": "b.png"}, "content": data}}, "b.png"),  # ipywidgets 7
        (data, "upload"),
        (({"name": "../../etc/c.png", "content": data},), "c.png"),  # never a path
    ]:
        got_name, image = ex.decode_upload(value)
        assert got_name == name
        torch.testing.assert_close(image, expected)
    assert ex.decode_upload(()) is None and ex.decode_upload({}) is None and ex.decode_upload(None) is None


def test_large_uploads_are_shrunk(monkeypatch):
    monkeypatch.setattr(ex, "MAX_UPLOAD_SIDE", 16)
    _, image = ex.decode_upload(png_bytes(gradient(30, 40)))
    assert tuple(image.shape) == (1, 3, 12, 16)


def test_a_broken_upload_is_reported_and_keeps_the_choice(content, style):
    explorer = ex.StyleExplorer(content, style)
    before = explorer.style.value
    assert explorer.use_upload("style", ({"name": "x.png", "content": b"not an image"},)) is None
    assert explorer.style.value == before
    assert "Could not read the uploaded style image" in explorer.status.value


# --------------------------------------------------------------------------------------
# where widgets cannot render


def test_fallback_prints_the_message_and_returns_none(capsys):
    assert ex.explore(interactive=False) is None
    assert ex.FALLBACK_MESSAGE in capsys.readouterr().out
    assert ex.explore("tubingen", "wave") is None  # pytest: no kernel, so the rule picks the fallback
    assert "needs a live Jupyter or Colab session" in capsys.readouterr().out


def test_forced_widgets_without_ipywidgets_fall_back(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now raises ImportError
    assert ex.live_frontend() is False
    assert ex.explore(interactive=True) is None
    assert "needs a live Jupyter or Colab session" in capsys.readouterr().out


def test_live_frontend_follows_the_kernels_allow_stdin(monkeypatch):
    import IPython

    def shell_with(kernel):
        return lambda: types.SimpleNamespace(kernel=kernel)

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert ex.live_frontend() is False
    monkeypatch.setattr(IPython, "get_ipython", shell_with(None))  # terminal IPython
    assert ex.live_frontend() is False
    monkeypatch.setattr(IPython, "get_ipython", shell_with(types.SimpleNamespace(_allow_stdin=False)))
    assert ex.live_frontend() is False
    monkeypatch.setattr(IPython, "get_ipython", shell_with(types.SimpleNamespace(_allow_stdin=True)))
    assert ex.live_frontend() is True


def test_explore_shows_the_widget_in_a_live_frontend(monkeypatch, content, style):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=True)))
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    explorer = ex.explore(content, style, size=48, steps=7)
    assert isinstance(explorer, ex.StyleExplorer) and shown == [explorer.widget]
    assert (explorer.size.value, explorer.steps.value) == (48, 7)


def test_a_real_kernel_tells_headless_from_live_requests():
    """nbval, nbclient and papermill send allow_stdin=False; JupyterLab, VS Code and Colab send True."""
    import jupyter_client.manager
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        answers = {}
        for allow in (False, True):
            output = []
            client.execute_interactive(
                "import nstlib.widgets; print(nstlib.widgets.live_frontend())",
                allow_stdin=allow, timeout=60,
                output_hook=lambda msg: output.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
            )
            answers[allow] = "".join(output).strip()
        assert answers == {False: "False", True: "True"}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


# --------------------------------------------------------------------------------------
# what every widget front end can draw (issue: blank explorer, truncated label, broken-image icon)


def _all_widgets(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _all_widgets(child)


def test_the_explorer_draws_into_image_widgets_with_a_placeholder_before_the_first_run(monkeypatch, content, style):
    import ipywidgets

    explorer = ex.StyleExplorer(content, style, steps=2)
    widgets = list(_all_widgets(explorer.widget))
    outputs = [w for w in widgets if isinstance(w, ipywidgets.Output)]
    assert not outputs, "an Output widget blanks the whole explorer in the classic Notebook with ipywidgets 7"
    assert explorer.comparison in widgets and isinstance(explorer.comparison, ipywidgets.Image)
    before = explorer.comparison.value
    placeholder = Image.open(io.BytesIO(before))
    assert placeholder.format == "PNG" and placeholder.size == (480, 60)
    assert len(np.unique(np.asarray(placeholder.convert("L")))) > 2, "the placeholder has text on it"
    assert explorer.live.layout.display == "none" and explorer.live.value == b"", "no empty (broken) image shown"
    calls = []
    monkeypatch.setattr(nstlib.gatys, "stylize", fake_stylize(calls, content))
    explorer.run()
    assert explorer.live.layout.display is None
    picture = Image.open(io.BytesIO(explorer.comparison.value))
    assert picture.format == "PNG" and picture.width > 2 * picture.height, "three panels side by side"
    assert explorer.comparison.value != before


def test_every_label_fits_its_description_width(content, style):
    """Measured in DejaVu Sans at 13 px (wider than the UI fonts Jupyter uses) plus the label's 8 px margin."""
    from matplotlib import font_manager
    from PIL import ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 13)
    checked = []
    for widget in _all_widgets(ex.StyleExplorer(content, style).widget):
        width = getattr(getattr(widget, "style", None), "description_width", "")
        if getattr(widget, "description", "") and width.endswith("px"):
            needed = font.getlength(widget.description) + 8
            assert needed <= float(width[:-2]), f"{widget.description!r} needs {needed:.0f} px, has {width}"
            checked.append(widget.description)
    assert "TV weight (min=off)" in checked and len(checked) >= 9


def test_a_widget_that_cannot_be_created_prints_a_message(monkeypatch, capsys, content, style):
    import ipywidgets
    import traitlets

    def broken(*args, **kwargs):
        raise traitlets.TraitError("The 'readout_format' trait of a FloatLogSlider instance expected a str")

    monkeypatch.setattr(ipywidgets, "FloatLogSlider", broken)
    assert ex.explore(content, style, interactive=True) is None
    out = capsys.readouterr().out
    assert "could not create its widgets: TraitError: The 'readout_format'" in out
    assert f"Your ipywidgets ({ipywidgets.__version__})" in out and "nstlib.stylize(" in out
    with pytest.raises(ValueError, match="layers="):  # a bad argument is still the caller's error
        ex.explore(content, style, interactive=True, layers="nope")


# --------------------------------------------------------------------------------------
# uploads on Colab (files.upload) and elsewhere (FileUpload)


@pytest.fixture
def fake_colab(monkeypatch):
    """``google.colab.files.upload`` returning the files set in ``fake_colab.files``; calls counted."""
    state = types.SimpleNamespace(files={}, calls=0)

    def upload():
        state.calls += 1
        return dict(state.files)

    google, colab, files = (types.ModuleType(name) for name in ("google", "google.colab", "google.colab.files"))
    files.upload = upload
    colab.files, google.colab = files, colab
    for name, module in (("google", google), ("google.colab", colab), ("google.colab.files", files)):
        monkeypatch.setitem(sys.modules, name, module)
    return state


def test_on_colab_an_upload_of_over_a_megabyte_goes_through_files_upload(fake_colab):
    noise = np.random.default_rng(0).integers(0, 256, size=(700, 760, 3), dtype=np.uint8)
    data = png_bytes(noise)
    assert len(data) > 1_000_000, "the size that FileUpload on Colab is reported to drop"
    fake_colab.files = {"phone photo.png": data}
    assert ex.in_colab()
    upload = ex.upload_image()
    assert fake_colab.calls == 1 and upload.colab and upload.widget is None
    name, image = upload.image()
    assert name == "phone photo.png"
    torch.testing.assert_close(image, torch.from_numpy(noise).permute(2, 0, 1).unsqueeze(0).float() / 255.0)
    assert upload._repr_mimebundle_() == {"text/plain": f"uploaded: phone photo.png ({len(data):,} bytes)"}


def test_on_colab_a_cancelled_upload_gives_none(fake_colab):
    upload = ex.upload_image()
    assert fake_colab.calls == 1 and upload.image() is None
    assert upload._repr_mimebundle_() == {"text/plain": "nothing uploaded"}


def test_elsewhere_the_upload_is_a_widget_read_in_a_later_cell():
    import ipywidgets

    assert not ex.in_colab()
    upload = ex.upload_image("Your photo")
    assert isinstance(upload.widget, ipywidgets.FileUpload) and upload.widget.description == "Your photo"
    assert "application/vnd.jupyter.widget-view+json" in upload._repr_mimebundle_()
    assert upload.image() is None  # nothing picked yet
    array = gradient(10, 14)
    upload.widget.value = ({"name": "mine.png", "type": "image/png", "size": 0, "content": memoryview(png_bytes(array)),
                            "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)
    name, image = upload.image()
    assert name == "mine.png"
    torch.testing.assert_close(image, torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0)


def test_decode_upload_reads_colabs_files_upload_value():
    array = gradient(8, 6)
    name, image = ex.decode_upload({"c.png": png_bytes(array)})
    assert name == "c.png"
    torch.testing.assert_close(image, torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float() / 255.0)


def test_the_explorer_points_colab_users_to_upload_image(fake_colab, content, style):
    assert "upload_image()" in ex.StyleExplorer(content, style).status.value


def test_outside_colab_the_explorer_does_not_mention_colab(content, style):
    assert not ex.in_colab() and "Colab" not in ex.StyleExplorer(content, style).status.value


# --------------------------------------------------------------------------------------
# progress bars: no widget views left in saved notebooks


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_progress_bars_are_text_without_a_front_end_and_widgets_that_leave_text_with_one(monkeypatch):
    import IPython
    import IPython.display
    from tqdm.notebook import tqdm as notebook_bar
    from tqdm.std import tqdm as text_bar

    from nstlib import config

    bar = config.progress_bar(total=3, leave=False, file=io.StringIO())  # pytest: no kernel
    assert type(bar) is text_bar and not bar.disable and bar.mininterval == 0.1
    bar.close()

    def kernel(allow_stdin):
        return lambda: types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=allow_stdin))

    monkeypatch.setattr(IPython, "get_ipython", kernel(False))  # nbval, papermill, the book
    kept = config.progress_bar(total=3, file=io.StringIO())
    assert type(kept) is text_bar and not kept.disable and kept.mininterval == config.HEADLESS_MININTERVAL
    assert config.progress_bar(total=3, mininterval=0.5, file=io.StringIO()).mininterval == 0.5
    assert config.progress_bar(total=3, leave=False).disable, "a bar that would vanish is not shown at all"

    monkeypatch.setattr(IPython, "get_ipython", kernel(True))  # JupyterLab, Notebook, VS Code, Colab
    shown, updates = [], []

    def display(obj, display_id=None):
        shown.append((obj, display_id))
        return types.SimpleNamespace(update=lambda data, raw=False: updates.append((data, raw)))

    monkeypatch.setattr(IPython.display, "display", display)
    finished, vanishing, stopped = (config.progress_bar(total=4, desc=desc, leave=desc == "kept")
                                    for desc in ("kept", "gone", "stopped"))
    assert all(isinstance(b, notebook_bar) for b in (finished, vanishing, stopped))
    assert shown == [(finished.container, True), (vanishing.container, True), (stopped.container, True)]
    finished.update(4), vanishing.update(4), stopped.update(2)
    for b in (finished, vanishing, stopped):
        b.close()
        b.close()  # a second close (tqdm's __del__) changes nothing
        assert all(w.comm is None for w in (b.container, *b.container.children)), "widgets closed"
    (kept_text, raw), (gone_text, _), (stopped_text, _) = updates
    assert raw and kept_text["text/plain"].startswith("kept: 100%") and "4/4" in kept_text["text/plain"]
    assert gone_text == {"text/plain": ""}
    assert stopped_text["text/plain"].startswith("stopped:  50%") and "2/4" in stopped_text["text/plain"]


NOTEBOOK_CELLS = [
    "import torch, nstlib\n"
    "from nstlib.config import progress_bar",
    "bar = progress_bar(total=5, desc='kept')\n"
    "for _ in range(5):\n    bar.update(1)\n"
    "bar.close()",
    "with progress_bar(total=5, desc='gone', leave=False) as bar:\n    bar.update(5)",
    "generator = torch.Generator().manual_seed(0)\n"
    "content, style = torch.rand(1, 3, 24, 24, generator=generator), torch.rand(1, 3, 24, 24, generator=generator)\n"
    "with nstlib.LivePreview(every=1) as preview:\n"
    "    result = nstlib.stylize(content, style, steps=3, weights=None, device='cpu',\n"
    "                            callback=preview, callback_every=1)",
]


def test_a_saved_notebook_holds_no_widget_views_from_progress_bars_or_previews():
    """Run cells as nbval/papermill do (allow_stdin=False) and as a live front end does (True) in a real
    kernel; nbclient replays display updates the way JupyterLab does, so its outputs are what gets saved."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS * 2])
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3")
    with client.setup_kernel():  # one kernel: the cells run headless first, then as from a live front end
        for index, cell in enumerate(nb.cells):
            client.kc.allow_stdin = index >= len(NOTEBOOK_CELLS)  # what JupyterLab, Notebook, VS Code, Colab send
            client.execute_cell(cell, index)
    views = [i for i, cell in enumerate(nb.cells) for o in cell.outputs if WIDGET_VIEW in o.get("data", {})]
    assert not views, f"widget views left in cells {views} (0-{len(NOTEBOOK_CELLS) - 1}: headless, then live)"
    outputs = [cell.outputs for cell in nb.cells]
    headless, live = outputs[:len(NOTEBOOK_CELLS)], outputs[len(NOTEBOOK_CELLS):]
    kept = "".join(o.text for o in headless[1] if o.output_type == "stream")
    assert "kept: 100%" in kept.split("\r")[-1] and "5/5" in kept, "a text bar on stderr, final state last"
    assert headless[2] == [], "a leave=False bar is not shown in headless runs"
    (kept_live,) = live[1]
    assert list(kept_live.data) == ["text/plain"], "the widget's output became plain text"
    assert kept_live.data["text/plain"].startswith("kept: 100%") and "5/5" in kept_live.data["text/plain"]
    assert [o.data for o in live[2]] == [{"text/plain": ""}], "the finished leave=False bar leaves nothing to see"
    for cell in (headless[3], live[3]):  # the preview's one picture (HTML), and nothing else that is visible
        pictures = [o for o in cell if "text/html" in o.get("data", {})]
        assert len(pictures) == 1 and "step 3" in pictures[0].data["text/plain"]
        assert all(o in pictures or o.get("data") == {"text/plain": ""} for o in cell), cell


def test_no_module_uses_tqdm_auto():
    """tqdm.auto leaves widget views in notebooks: every bar goes through nstlib.config.progress_bar."""
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(nstlib.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in {"tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"}:
                if path.name != "config.py":
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"use nstlib.config.progress_bar instead of tqdm.auto/notebook in {offenders}"
