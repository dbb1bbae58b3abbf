"""Tests for nstlib.plotting: figures are inspected (axes, texts, pixel data), not just made."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from unittest import mock

import matplotlib.colors
import matplotlib.pyplot as plt  # only to check that nothing lands in pyplot's list of figures
import matplotlib.text
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from nstlib import plotting
from nstlib.plotting import (
    LivePreview,
    image_grid,
    normalize_channels,
    plot_losses,
    html_table,
    show_feature_maps,
    show_gram,
    show_image,
    show_images,
)

REPO = Path(__file__).resolve().parents[1]


def texts(figure: Figure) -> set[str]:
    """Every non-empty text drawn in the figure (titles, labels, suptitle)."""
    return {text.get_text() for text in figure.findobj(matplotlib.text.Text) if text.get_text()}


def test_show_image_draws_the_pixels():
    image = torch.rand(1, 3, 6, 9, requires_grad=True)
    figure = show_image(image, title="noise")
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    ax = figure.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), image.detach()[0].permute(1, 2, 0).numpy())
    assert ax.get_title() == "noise"
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    width, height = figure.get_size_inches()
    assert height == pytest.approx(5.0 * 6 / 9 + 0.3)  # aspect kept, room for the title


def test_show_image_inputs_and_clamping():
    gray = show_image(torch.tensor([[-1.0, 0.5], [2.0, 0.25]])).axes[0].images[0]
    np.testing.assert_allclose(gray.get_array(), [[0.0, 0.5], [1.0, 0.25]])  # clamped to [0, 1]
    assert gray.get_cmap().name == "gray"
    pixels = np.array([[[255, 0, 51]]], dtype=np.uint8)
    for source in (pixels, Image.fromarray(pixels)):
        drawn = show_image(source).axes[0].images[0].get_array()
        np.testing.assert_allclose(drawn, [[[1.0, 0.0, 0.2]]], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*show_images"):
        show_image(torch.rand(2, 3, 4, 4))
    with pytest.raises(TypeError, match="list"):
        show_image([1, 2])


def test_show_image_into_given_axes():
    host = Figure()
    left, right = host.subplots(1, 2)
    assert show_image(torch.zeros(3, 2, 2), title="b", ax=right) is host
    assert len(right.images) == 1 and len(left.images) == 0 and right.get_title() == "b"


def test_show_images_layout_and_titles():
    batch = torch.rand(5, 3, 4, 8)
    figure = show_images(batch, titles=list("abcde"), ncols=2, size=2.0, suptitle="five")
    assert len(figure.axes) == 5  # a 3 x 2 grid with the unused cell removed
    assert [ax.get_title() for ax in figure.axes] == list("abcde")
    for ax, image in zip(figure.axes, batch):
        np.testing.assert_allclose(ax.images[0].get_array(), image.permute(1, 2, 0).numpy())
    assert "five" in texts(figure)
    assert figure.get_size_inches()[0] == pytest.approx(4.0)
    as_dict = show_images({"x": torch.zeros(3, 2, 2), "y": torch.ones(3, 2, 2)})
    assert [ax.get_title() for ax in as_dict.axes] == ["x", "y"]
    assert len(show_images([torch.zeros(3, 2, 2)] * 6).axes) == 6  # default 4 columns, 2 rows
    with pytest.raises(ValueError, match="titles has 1 entries but there are 2 images"):
        show_images([torch.zeros(3, 2, 2)] * 2, titles=["only one"])
    with pytest.raises(ValueError, match="empty"):
        show_images([])


def test_image_grid_labels_and_blank_cells(tmp_path):
    red, blue = torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)
    red[0], blue[2] = 1, 1
    rows = [[red, None, blue], [blue, red]]  # a None cell and a short row
    figure = image_grid(rows, row_labels=["w=1", "w=10"], col_labels=["a", "b", "c"], title="sweep")
    axes = np.array(figure.axes).reshape(2, 3)
    drawn = [[len(ax.images) for ax in row] for row in axes]
    assert drawn == [[1, 0, 1], [1, 1, 0]]
    np.testing.assert_allclose(axes[0, 2].images[0].get_array()[..., 2], 1.0)
    assert [ax.get_title() for ax in axes[0]] == ["a", "b", "c"]
    assert [axes[r, 0].get_ylabel() for r in range(2)] == ["w=1", "w=10"]
    assert {"sweep", "w=1", "w=10", "a", "b", "c"} <= texts(figure)
    png, pdf = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png")
    figure.savefig(pdf, format="pdf")
    assert png.getvalue().startswith(b"\x89PNG") and pdf.getvalue().startswith(b"%PDF")
    with pytest.raises(ValueError, match="row_labels has 1 entries but there are 2 rows"):
        image_grid(rows, row_labels=["one"])
    with pytest.raises(ValueError, match="None"):
        image_grid([[None, None]])


def test_plot_losses_lines_match_history():
    history = {
        "total": [10.0, 5.0, 2.0],
        "content": [4.0, 3.0, 1.0],
        "style": [6.0, 2.0, 1.0],
        "tv": [0.1, 0.1, 0.05],
        "seconds": [0.1, 0.2, 0.3],
    }
    figure = plot_losses(history, title="run")
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.lines] == ["total", "content", "style", "tv"]  # no 'seconds'
    for line, key in zip(ax.lines, ["total", "content", "style", "tv"]):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_array_equal(line.get_ydata(), history[key])
    assert ax.get_yscale() == "log" and ax.get_title() == "run"
    linear = plot_losses({"total": [torch.tensor(3.0), 1.0], "step": [10, 20]}, log=False).axes[0]
    assert linear.get_yscale() == "linear"
    np.testing.assert_array_equal(linear.lines[0].get_xdata(), [10, 20])
    np.testing.assert_array_equal(linear.lines[0].get_ydata(), [3.0, 1.0])
    only = plot_losses(history, keys=["style"]).axes[0]
    assert [line.get_label() for line in only.lines] == ["style"]
    with pytest.raises(ValueError, match=r"\['gram'\] are not in history"):
        plot_losses(history, keys=["gram"])
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_losses({"total": []})


def test_normalize_channels():
    features = torch.tensor([[[2.0, 4.0], [6.0, 10.0]], [[-1.0, -1.0], [-1.0, -1.0]], [[0.0, -3.0], [3.0, 0.0]]])
    expected = torch.tensor([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.5, 0.0], [1.0, 0.5]]])
    torch.testing.assert_close(normalize_channels(features), expected)


def test_show_feature_maps_normalises_each_channel():
    torch.manual_seed(0)
    features = torch.randn(1, 20, 5, 7) * torch.arange(1, 21).reshape(1, 20, 1, 1) + 100
    figure = show_feature_maps(features, n=12, ncols=5)
    assert len(figure.axes) == 12
    assert "12 of 20 channels, 5x7" in texts(figure)
    for index, ax in enumerate(figure.axes):
        channel = features[0, index]
        expected = (channel - channel.min()) / (channel.max() - channel.min())  # independent oracle
        np.testing.assert_allclose(ax.images[0].get_array(), expected.numpy(), atol=1e-6)
        assert ax.get_title() == str(index)
    few = show_feature_maps(torch.rand(3, 4, 4), title="conv1_1")
    assert len(few.axes) == 3 and "conv1_1" in texts(few)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\)"):
        show_feature_maps(torch.rand(2, 3, 4, 4))


def test_figures_do_not_accumulate_in_pyplot():
    plt.close("all")
    for _ in range(10):
        show_image(torch.rand(3, 4, 4))
        show_images([torch.rand(3, 4, 4)] * 2)
        image_grid([[torch.rand(3, 4, 4), None]])
        plot_losses({"total": [1.0, 0.5]})
        show_feature_maps(torch.rand(1, 4, 3, 3))
    assert plt.get_fignums() == []


# ----------------------------------------------------------------------------- live preview


class FakeDisplay:
    """Stands in for IPython.display.display: records calls, returns a handle recording updates."""

    def __init__(self):
        self.calls = []
        self.handle = mock.Mock()

    def __call__(self, obj, **kwargs):
        self.calls.append((obj, kwargs))
        return self.handle

    def bundles(self):
        return [self.calls[0][0]] + [call.args[0] for call in self.handle.update.call_args_list]


@pytest.fixture
def fake_display(monkeypatch):
    import IPython.display

    fake = FakeDisplay()
    monkeypatch.setattr(IPython.display, "display", fake)
    monkeypatch.setattr(plotting, "_in_notebook", lambda: True)
    return fake


def decode_png(bundle: dict) -> np.ndarray:
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', bundle["text/html"]).group(1)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def test_live_preview_one_display_then_updates(fake_display):
    images = [torch.full((1, 3, 8, 8), step / 4) for step in range(5)]
    with LivePreview() as preview:
        for step, image in enumerate(images):
            preview.update(image, step, {"total": 1.5 * step, "seconds": 0.25})
    assert len(fake_display.calls) == 1 and fake_display.calls[0][1] == {"raw": True, "display_id": True}
    assert fake_display.handle.update.call_count == 4
    last = fake_display.bundles()[-1]
    assert last["text/plain"] == "step 4 | total 6 | 0.2 s"
    assert "step 4 | total 6" in last["text/html"]
    pixels = decode_png(last)
    assert pixels.shape == (256, 256, 3)  # 8 px enlarged 32x with nearest
    np.testing.assert_array_equal(pixels, 255)
    np.testing.assert_array_equal(decode_png(fake_display.bundles()[2]), 128)  # round(0.5 * 255)


def test_live_preview_every_and_close_shows_the_last_image(fake_display):
    preview = LivePreview(every=3, upscale_to=4, total_steps=5)
    image = torch.zeros(3, 2, 4)
    for step in range(5):
        image.fill_(step / 4)  # changed in place, as an optimiser does
        preview(step, image, {"total": float(step)})  # callback form
    texts_shown = [bundle["text/plain"] for bundle in fake_display.bundles()]
    assert texts_shown == ["step 0/5 | total 0", "step 3/5 | total 3"]
    preview.close()
    preview.close()
    preview.update(image, 9, {})  # after close: ignored
    shown = fake_display.bundles()
    assert [bundle["text/plain"] for bundle in shown] == ["step 0/5 | total 0", "step 3/5 | total 3",
                                                         "step 4/5 | total 4"]
    assert decode_png(shown[-1]).shape == (2, 4, 3)  # already >= upscale_to: not enlarged
    np.testing.assert_array_equal(decode_png(shown[-1]), 255)  # the copy made at step 4, not a later state


def test_live_preview_outside_a_notebook_does_nothing(monkeypatch, capsys):
    import IPython.display

    display = mock.Mock()
    monkeypatch.setattr(IPython.display, "display", display)
    assert plotting._in_notebook() is False  # pytest is not a Jupyter kernel
    with LivePreview() as preview:
        for step in range(3):
            preview(step, torch.rand(3, 4, 4), {"total": 1.0})
    display.assert_not_called()
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="every"):
        LivePreview(every=0)


# ----------------------------------------------------------------------------- a real kernel


def test_notebook_shows_each_figure_exactly_once(monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)  # as in a real Jupyter session
    cells = [
        "import torch\nfrom nstlib.plotting import show_image, show_images, LivePreview",
        "show_image(torch.rand(3, 8, 8), title='noise')",  # before pyplot is imported
        "import matplotlib.pyplot as plt\nshow_images([torch.rand(3, 8, 8)] * 2)",  # inline backend active
        "figure = show_image(torch.rand(3, 8, 8))",  # not the last expression: nothing shown
        "for i in range(3):\n    show_image(torch.rand(3, 4, 4))\nlen(plt.get_fignums())",
        "preview = LivePreview()\nfor i in range(3):\n    preview.update(torch.rand(3, 8, 8), i, {'total': 1.0})",
        # five runs, one preview each, as in a loop over layers: the saved cell holds ONE picture, the last
        "for run in range(5):\n    print('run', run)\n    with LivePreview() as p:\n"
        "        for i in range(3):\n            p.update(torch.rand(3, 8, 8), i, {'total': float(run)})",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells]
    assert outputs[0] == []
    for shown in outputs[1:3]:
        assert len(shown) == 1 and shown[0]["output_type"] == "execute_result"
        assert "image/png" in shown[0]["data"]
    assert outputs[3] == []
    assert len(outputs[4]) == 1 and outputs[4][0]["data"] == {"text/plain": "0"}  # no figure left in pyplot
    assert len(outputs[5]) == 1 and outputs[5][0]["output_type"] == "display_data"  # updated in place
    assert "step 2 | total 1" in outputs[5][0]["data"]["text/html"]
    pictures = [output for output in outputs[6] if output["output_type"] == "display_data"]
    assert len(pictures) == 1 and "step 2 | total 4" in pictures[0]["data"]["text/html"]  # the fifth run's last step
    printed = "".join(output.get("text", "") for output in outputs[6] if output["output_type"] == "stream")
    assert printed == "".join(f"run {run}\n" for run in range(5))


def test_save_figure_is_atomic_and_checks_the_format(tmp_path):
    from nstlib.plotting import save_figure, show_image

    fig = show_image(torch.rand(1, 3, 8, 8))
    assert save_figure(fig, tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert save_figure(fig, tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(fig, tmp_path / "a.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png"]


def test_live_training_plot_redraws_in_place_on_samples_and_continues_a_history(fake_display, monkeypatch):
    from nstlib.plotting import LiveTrainingPlot

    live = LiveTrainingPlot("wave", sample_names=["a", "b"], history={"step": [1, 2], "total": [9.0, 8.0]},
                            every_seconds=1e9)
    live(3, {"total": 7.0}, None)  # first call: nothing drawn yet, so it draws
    live(4, {"total": 6.0}, None)  # not due (every_seconds is huge) and no samples: no redraw
    samples = [torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8)]
    live(5, {"total": 5.0}, samples)  # samples arrived: redraw
    assert len(fake_display.calls) == 1 and fake_display.handle.update.call_count == 1
    assert live.steps == [1, 2, 3, 4, 5] and live.totals == [9.0, 8.0, 7.0, 6.0, 5.0]
    figure = live.figure()
    curve, first, second = figure.axes
    np.testing.assert_array_equal(curve.lines[0].get_ydata(), [9.0, 8.0, 7.0, 6.0, 5.0])
    assert curve.get_title() == "wave: step 5" and first.get_title() == "a" and second.get_title() == "b"
    np.testing.assert_array_equal(second.images[0].get_array(), np.ones((8, 8, 3)))


def test_live_training_plot_outside_a_notebook_only_records(monkeypatch):
    import IPython.display

    from nstlib.plotting import LiveTrainingPlot

    display = mock.Mock()
    monkeypatch.setattr(IPython.display, "display", display)
    live = LiveTrainingPlot("x")
    live(1, {"total": 2.0}, [torch.rand(1, 3, 4, 4)])
    live.draw()
    display.assert_not_called()
    assert live.totals == [2.0]


# ----------------------------------------------------------------------------- sized for the book


def test_wide_figures_fit_the_book_column_with_readable_labels():
    """A 6-column grid and an 8-image row are at most BOOK_WIDTH inches wide. Oracle for readability: the book
    shows a picture at its column's width (720 px) when it is wider, so a label of s points is
    s * min(dpi, 720 / width) / 72 px tall; it must be at least 12 px."""
    cells = [torch.rand(3, 16, 16) for _ in range(6)]
    grid = image_grid([cells, cells], row_labels=["a", "b"], col_labels=[f"column {i}" for i in range(6)])
    row = show_images([torch.rand(3, 16, 16)] * 8, ncols=8, size=1.5)
    maps = show_feature_maps(torch.rand(1, 16, 8, 8), n=16, ncols=8)
    for figure in (grid, row, maps):
        width = figure.get_size_inches()[0]
        assert width <= plotting.BOOK_WIDTH + 1e-9
        png = Image.open(io.BytesIO(plotting._figure_png(figure)))
        assert png.width <= (plotting.BOOK_WIDTH + 0.2) * figure.dpi  # the saved picture too (tight bounding box)
        shown_dpi = min(figure.dpi, 720 / width)
        for text in figure.findobj(matplotlib.text.Text):
            if text.get_text():
                assert text.get_fontsize() * shown_dpi / 72 >= 12 * 0.75 - 1e-9  # panel indices of feature maps: 9 pt
    titles = [ax.get_title() for ax in np.array(grid.axes).reshape(2, 6)[0]]
    assert titles == [f"column {i}" for i in range(6)]
    assert all(ax.title.get_fontsize() * min(grid.dpi, 720 / grid.get_size_inches()[0]) / 72 >= 12 for ax in grid.axes[:6])
    # panels keep their aspect ratio when they shrink, and max_width=None keeps the asked-for size
    assert grid.get_size_inches()[0] == pytest.approx(plotting.BOOK_WIDTH)
    assert show_images([torch.rand(3, 16, 16)] * 8, ncols=8, size=1.5, max_width=None).get_size_inches()[0] == pytest.approx(12.0)
    assert image_grid([cells], size=2.5, max_width=None).get_size_inches()[0] == pytest.approx(15.0)


def test_long_column_labels_are_wrapped_to_the_cell():
    cells = [torch.rand(3, 8, 8)] * 4
    figure = image_grid([cells], col_labels=["a rather long column label here"] * 4, size=1.5)
    title = figure.axes[0].get_title()
    assert "\n" in title and title.replace("\n", " ") == "a rather long column label here"
    assert max(len(line) for line in title.splitlines()) <= 18  # 1.5 in x 12 characters per inch
    shown = show_images([torch.rand(3, 8, 8)] * 2, titles=["content\n(256 px)", "x" * 5], size=3.0)
    assert [ax.get_title() for ax in shown.axes] == ["content\n(256 px)", "xxxxx"]  # line breaks of the caller stay


def test_plot_losses_total_on_top_and_legend_outside_the_curves():
    history = {"step": [1, 2, 3], "total": [11.0, 6.0, 3.0], "content": [1.0, 1.0, 1.0], "style": [10.0, 5.0, 2.0]}
    figure = plot_losses(history, marks={"resumed here": 2.5})
    ax = figure.axes[0]
    total, content, style, mark = ax.lines
    assert total.get_label() == "total" and mark.get_label() == "resumed here"
    np.testing.assert_array_equal(mark.get_xdata(), [2.5, 2.5])
    assert total.get_zorder() > max(content.get_zorder(), style.get_zorder())  # drawn over the terms it sums
    assert matplotlib.colors.to_hex(total.get_color()) == "#000000"
    assert total.get_linewidth() < style.get_linewidth()  # a thin line on top of a wide one: both visible
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["total", "content", "style", "resumed here"]
    renderer = canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside the axes, not on them
    single = plot_losses({"total": [3.0, 2.0]}).axes[0]
    assert single.get_legend() is None and single.get_ylabel() == "loss (total)"  # one curve: no legend needed


def test_show_gram_labels_both_axes_and_its_colour_scale():
    gram = torch.tensor([[4.0, -1.0, 0.0], [-1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    figure = show_gram(gram[None], title="conv1_1")
    heat, bar = figure.axes
    assert heat.get_xlabel() == "channel j" and heat.get_ylabel() == "channel i" and heat.get_title() == "conv1_1"
    np.testing.assert_array_equal(heat.images[0].get_array(), gram.numpy())
    assert heat.images[0].get_clim() == (-4.0, 4.0)  # symmetric about 0: white means 0
    assert bar.get_ylabel() == "G[i, j]"
    assert show_gram(torch.eye(5)).axes[0].get_title() == "Gram matrix, 5 x 5"
    with pytest.raises(ValueError, match="square"):
        show_gram(torch.rand(3, 4))


def test_html_table_is_an_html_table_with_aligned_numbers():
    from html.parser import HTMLParser

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.tags = [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag in ("td", "th"):
                self.cells.append([tag, dict(attrs).get("style", ""), ""])

        def handle_data(self, data):
            if self.cells and self.tags[-1] in ("td", "th"):
                self.cells[-1][2] += data

    table = html_table([["128 px", 16384, 0.012345678, None], ["<b>", 65536, 3.0, "2.1 / 3.4"]],
                       ["size", "pixels", "seconds", "spread"], caption="CPU, 2 threads")
    parser = Cells()
    parser.feed(table._repr_html_())
    assert parser.tags[0] == "table" and "caption" in parser.tags
    texts = [cell[2] for cell in parser.cells]
    assert texts == ["size", "pixels", "seconds", "spread", "128 px", "16,384", "0.01235", "", "<b>", "65,536", "3",
                     "2.1 / 3.4"]
    aligns = [cell[1] for cell in parser.cells[4:8]]
    assert aligns == ["text-align: left", "text-align: right", "text-align: right", "text-align: left"]
    assert "<b>" not in table._repr_html_()  # escaped
    lines = str(table).splitlines()
    assert lines[0] == "CPU, 2 threads" and lines[1].split() == ["size", "pixels", "seconds", "spread"]
    assert lines[3].index("16,384") + len("16,384") == lines[4].index("65,536") + len("65,536")  # right-aligned
    assert "|" not in table._repr_html_()
    with pytest.raises(ValueError, match="row 0 has 1 cells but the header has 2 columns"):
        html_table([["x"]], ["a", "b"])
    folded = html_table([[1]], ["n"], details="The table <of n>")._repr_html_()
    assert folded.startswith("<details><summary>The table &lt;of n&gt;</summary><table") and folded.endswith("</details>")


def test_live_training_plot_with_one_point_draws_no_axis():
    from nstlib.plotting import LiveTrainingPlot

    live = LiveTrainingPlot("wave")
    live(1, {"total": 31415.9}, None)
    figure = live.figure()
    ax = figure.axes[0]
    assert len(ax.lines) == 0 and list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    assert any(text.startswith("step 1: total loss 3.142e+04") for text in texts(figure))
    live(2, {"total": 20000.0}, [torch.zeros(1, 3, 8, 8)] * 3)
    curve = live.figure().axes[0]
    np.testing.assert_array_equal(curve.lines[0].get_ydata(), [31415.9, 20000.0])
    assert live.figure().get_size_inches()[0] <= plotting.BOOK_WIDTH + 1e-9


def test_previews_made_in_one_cell_share_one_output(fake_display, monkeypatch):
    cell = {"key": (1, 7)}
    monkeypatch.setattr(plotting, "_cell_key", lambda: cell["key"])
    monkeypatch.setattr(plotting, "_cell_outputs", {})
    for run in range(3):  # three previews in one cell: one output, updated in place
        with LivePreview() as preview:
            preview.update(torch.rand(3, 4, 4), 0, {"total": float(run)})
    assert len(fake_display.calls) == 1 and fake_display.handle.update.call_count == 2
    assert fake_display.bundles()[-1]["text/plain"] == "step 0 | total 2"
    cell["key"] = (1, 8)  # the next cell gets its own output
    LivePreview().update(torch.rand(3, 4, 4), 0, {})
    assert len(fake_display.calls) == 2
