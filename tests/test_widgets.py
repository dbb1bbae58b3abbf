"""nstlib.explorer: widget values -> stylize arguments, runs, uploads, errors and the no-widget fallback."""

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
