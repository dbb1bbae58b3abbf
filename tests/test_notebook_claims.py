"""What the notebooks' prose claims, checked on real runs: outside quick mode, so that prose and outputs cannot drift apart.

Each notebook listed in :data:`RUNS` is executed once with papermill, **not** in quick mode, on the CPU, with
seeded random VGG19 weights (``WEIGHTS=None``), at a small size and with few steps, on synthetic stand-in images
written to PNG files (so nothing is downloaded: every request goes to a refused local proxy). The tests then
read what the run left, its ``metrics.json`` and the text its cells printed, and check the sentences of the
prose that depend on it: "exactly 0 on the CPU", "the same image up to float rounding", "ends higher", ...
Claims about what the ImageNet weights show cannot be checked offline; the notebooks mark them as such.

These runs take minutes, so the tests are marked ``slow`` (``pytest -m "not slow"`` leaves them out).
To cover another notebook: add a :class:`NotebookRun` to :data:`RUNS` and write tests that call
``executed("NN_name")``; the notebook runs once per session, however many tests read it.
"""

from __future__ import annotations

import json
import re
import socket
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
BOX = "**Which weights?**"  # the one box per notebook that says what random weights can and cannot show


@dataclass(frozen=True)
class NotebookRun:
    """A notebook and the parameters of its short run; ``parameters(images)`` gets the folder of the PNGs
    written by :func:`standin_files` (``tubingen.png``, ``starry_night.png``, ``the_scream.png``)."""

    name: str
    parameters: Callable[[Path], dict]


RUNS = {run.name: run for run in [
    NotebookRun("01_image_representation", lambda images: {
        "CONTENT": str(images / "tubingen.png"), "SIZE": 64, "RECON_SIZE": 48, "STEPS": 20,
        "HAND_SIZE": 48, "HAND_STEPS": 10, "WEIGHTS": None, "SEED": 0,
    }),
    NotebookRun("02_gram_matrices", lambda images: {
        "STYLE": str(images / "starry_night.png"), "SIZE": 64, "STEPS": 20,
        "HAND_SIZE": 48, "HAND_STEPS": 10, "WEIGHTS": None, "SEED": 0,
    }),
    NotebookRun("03_gatys_style_transfer", lambda images: {
        "CONTENT": str(images / "tubingen.png"), "STYLE": str(images / "starry_night.png"),
        "SIZE": 48, "STEPS": 10, "HAND_SIZE": 48, "HAND_STEPS": 10, "COMPARE_SIZE": 40, "COMPARE_STEPS": 10,
        "COMPARE_STYLES": [str(images / "starry_night.png")],
        "SWEEP_CONTENT_WEIGHTS": [1.0, 100.0], "SWEEP_STYLE_WEIGHTS": [1e4, 1e6],
        "BLEND_STYLES": [str(images / "starry_night.png"), str(images / "the_scream.png")],
        "SCALES": [32, 48], "TIMING_SIZES": [32, 64], "TIMING_STEPS": 3, "TIMING_REPEATS": 2,
        "EXPLORER_SIZE": 32, "EXPLORER_STEPS": 2, "WEIGHTS": None, "SEED": 0,
    }),
]}


@dataclass
class Executed:
    """What one run left: the executed notebook, its ``metrics.json`` and its results folder."""

    notebook: nbformat.NotebookNode
    metrics: dict
    results: Path
    parameters: dict = field(default_factory=dict)

    def printed(self, cell_id: str) -> str:
        """The text cell ``cell_id`` printed (stdout)."""
        cell = next(c for c in self.notebook.cells if c.get("id") == cell_id)
        return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def standin_files(folder: Path) -> Path:
    """The synthetic stand-ins of the sample images, as PNG files (what a student's own files would be)."""
    from nstlib.data import samples

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tubingen", "starry_night", "the_scream"):
        samples.standin(name).save(folder / f"{name}.png")
    return folder


def _refused_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Callable[[str], Executed]:
    """``executed(name)`` runs notebook ``name`` of :data:`RUNS` once (outside quick mode, offline) and returns it."""
    import papermill

    done: dict[str, Executed] = {}
    failed: dict[str, str] = {}  # a notebook that failed is not run again for the next test: its error is reported
    images = standin_files(tmp_path_factory.mktemp("images"))
    dead_proxy = f"http://127.0.0.1:{_refused_port()}"

    def run(name: str) -> Executed:
        if name in failed:
            pytest.fail(f"{name} failed to run (see the first test that ran it): {failed[name]}", pytrace=False)
        if name not in done:
            folder = tmp_path_factory.mktemp(name)
            parameters = {**RUNS[name].parameters(images), "RESULTS_DIR": str(folder / "results")}
            with pytest.MonkeyPatch.context() as env:  # the kernel inherits this environment
                env.setenv("NSTLIB_QUICK", "0")
                env.setenv("NSTLIB_CACHE", str(folder / "cache"))
                env.setenv("NSTLIB_RESULTS", str(folder / "results"))
                env.setenv("TORCH_HOME", str(folder / "torch"))
                env.delenv("NSTLIB_MIRROR", raising=False)
                for variable in PROXY_VARIABLES:
                    env.setenv(variable, dead_proxy)
                env.delenv("NO_PROXY", raising=False)
                env.delenv("no_proxy", raising=False)
                try:
                    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(folder / f"{name}.ipynb"),
                                               parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOKS),
                                               progress_bar=False)
                except Exception as error:
                    failed[name] = f"{type(error).__name__}: {str(error).strip().splitlines()[-1:]}"
                    raise
            notebook = nbformat.read(folder / f"{name}.ipynb", as_version=4)
            metrics = json.loads((folder / "results" / "metrics.json").read_text())
            done[name] = Executed(notebook, metrics, folder / "results", parameters)
        return done[name]

    return run


def _markdown(name: str) -> str:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")


# ---- without running: one box per notebook, and the stale claims stay gone ---------------------------

@pytest.mark.parametrize("name", sorted(RUNS))
def test_one_marked_box_says_what_random_weights_can_show(name):
    markdown = _markdown(name)
    assert markdown.count(BOX) == 1, f"{name}: exactly one '{BOX}' box"
    box = markdown[markdown.index(BOX):]
    box = box[: box.index("</div>")]
    assert all(word in box.lower() for word in ("random", "imagenet", "quick mode"))
    assert "in our runs" not in markdown.lower(), f"{name}: write what the cells show, not what a past run showed"


def test_stale_claims_are_gone():
    assert "on the CPU exactly" not in _markdown("01_image_representation")  # the loop did not rescale the loss
    for name in ("02_gram_matrices", "03_gatys_style_transfer"):
        assert "dislikes tiny losses" not in _markdown(name)
        assert "soft, small blobs" not in _markdown(name)
    gatys = _markdown("03_gatys_style_transfer")
    assert "every layer counts equally" not in gatys  # notebook 02 measures the layers' shares
    assert "as in the\nseed's experiments" not in gatys and "as in the seed's experiments" not in gatys


# ---- notebook 01 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_01_the_hand_written_loop_is_reconstruct_content_bit_for_bit(executed):
    run = executed("01_image_representation")
    check = run.metrics["hand_check"]
    # prose: "On the CPU both runs do the same floating-point operations in the same order, so both differences are exactly 0"
    assert check["steps"] == run.parameters["HAND_STEPS"]
    assert check["loss_difference"] == 0.0 and check["pixel_difference"] == 0.0
    assert "largest loss difference 0.0e+00" in run.printed("747c9037")


@pytest.mark.slow
def test_01_receptive_fields_and_normalisation_as_the_prose_says(executed):
    run = executed("01_image_representation")
    # "The measured squares agree with the formula"
    for name, field_ in run.metrics["receptive_fields"].items():
        assert field_["measured"] == [field_["formula"], field_["formula"]], name
    # "Both mistakes move the features a long way"
    changes = [float(x) for x in re.findall(r"change by\s+([\d.]+) %", run.printed("90ab013f"))]
    assert len(changes) == 2 and min(changes) > 10


@pytest.mark.slow
def test_01_reconstructions_match_the_box_and_the_naming_trap(executed):
    run = executed("01_image_representation")
    rmse, relative = run.metrics["pixel_rmse"], run.metrics["relative_content_loss"]
    noise = rmse["white noise"]
    # the box: random weights' low layers pin the pixels down; from conv3_2 on much of the noise stays
    assert rmse["conv1_2"] < 0.25 * noise and rmse["conv2_2"] < 0.25 * noise
    for deep in ("conv3_2", "conv4_2", "conv5_2"):
        assert rmse[deep] > 0.4 * noise, deep
        # "a small loss is not a small pixel difference": the deep losses fell far, the pixels did not
        assert relative[deep] < 0.1, deep
    # the naming trap: conv_4 = conv2_2 pins the pixels down far more tightly than conv4_2
    assert rmse["conv2_2"] < 0.5 * rmse["conv4_2"]


# ---- notebook 02 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_02_the_hand_written_loop_is_synthesize_texture_bit_for_bit(executed):
    run = executed("02_gram_matrices")
    check = run.metrics["hand_check"]
    assert check["pixel_difference"] == 0.0
    assert check["history_difference"] == {"total": 0.0, "style": 0.0}


@pytest.mark.slow
def test_02_the_chart_of_shuffles_reads_as_the_prose_says(executed):
    change = executed("02_gram_matrices").metrics["gram_change"]
    positions, pixels, tiles = change["feature positions shuffled"], change["pixels shuffled"], change["16 px tiles shuffled"]
    assert max(positions.values()) < 1e-5                      # zero up to rounding at every layer
    assert max(p["pixels"] for p in change.values()) < 1e-5    # the "pixels (RGB)" group is zero in every row
    assert pixels["conv1_1"] > 5 * tiles["conv1_1"]            # "a large change already at conv1_1", tiles smaller
    for layer in ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"):
        assert tiles[layer] < pixels[layer], layer


@pytest.mark.slow
def test_02_textures_loss_shares_and_gram_errors_are_printed_from_the_numbers(executed):
    run = executed("02_gram_matrices")
    shares, errors = run.metrics["loss_share_at_start"], run.metrics["gram_error"]
    assert abs(sum(shares.values()) - 1) < 1e-9 and min(shares.values()) > 0
    assert max(shares.values()) > 2 * min(shares.values())     # "does not make the layers count equally"
    printed = run.printed("g4e7r02c")
    for layer, share in shares.items():
        assert f"{layer} {share:.1%}" in printed
    deep = sum(shares[n] for n in ("conv3_1", "conv4_1", "conv5_1"))
    assert f"conv3_1 + conv4_1 + conv5_1 together: {deep:.1%}" in printed
    # "a texture's error falls at the layers of its set"
    for layers in run.metrics["layer_sets"]:
        label = layers[0] if len(layers) == 1 else f"{layers[0]} ... {layers[-1]}"
        for layer in layers:
            assert errors[label][layer] < errors["noise start"][layer], (label, layer)
    # the ratios printed with each run are those of the recorded histories
    lines = run.printed("114f4ef8")
    for history in run.metrics["style_loss"].values():
        assert f"({history[-1] / history[0]:.2g} of its start)" in lines


# ---- notebook 03 ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_03_the_hand_written_loop_is_stylize_to_float_rounding(executed):
    run = executed("03_gatys_style_transfer")
    check = run.metrics["hand_check"]
    # "differences ... at the level of float32 rounding, about 1e-7 of the values": per step, relative to each history
    for key in ("total", "content", "style"):
        largest = max(abs(v) for v in run.metrics["hand_history"][key])
        assert check[key] <= 1e-5 * largest, key
    assert check["pixels"] < 1 / 255  # amplified over the short run, still below one 8-bit level


@pytest.mark.slow
def test_03_prints_the_size_that_ran(executed):
    run = executed("03_gatys_style_transfer")
    with Image.open(run.results / "stylized.png") as image:
        width, height = image.size
    assert max(width, height) == run.metrics["settings"]["size"] == run.parameters["SIZE"]
    assert f"steps at {width} x {height} px" in run.printed("c7539e4b")
    assert run.metrics["settings"]["rescale_loss"] is True and run.metrics["settings"]["weights"] == "random"


@pytest.mark.slow
def test_03_same_ratio_panels_are_the_same_image(executed):
    same = executed("03_gatys_style_transfer").metrics["same_ratio_pixel_difference"]
    assert len(same) == 1  # content x 1, style x 1e4 and content x 100, style x 1e6
    assert max(same.values()) < 1 / 255  # "the same image up to float rounding": not one 8-bit level apart


@pytest.mark.slow
def test_03_optimiser_and_start_comparisons_read_as_the_prose_says(executed):
    metrics = executed("03_gatys_style_transfer").metrics
    race = metrics["lbfgs_vs_adam"]
    # "L-BFGS ... gets further than Adam in the same number of steps"
    assert race["caught_up"] is not None and race["caught_up"] < len(race["lbfgs_total"])
    assert race["lbfgs_total"][-1] < race["adam_total"][-1]
    start = metrics["start"]
    # "from noise ... the total starts higher"; "Within the same budget of steps the noise start ends higher too"
    assert start["noise"][0] > start["content"][0]
    assert start["noise"][-1] > start["content"][-1]
    assert start["pixel_rmse"]["noise"] > start["pixel_rmse"]["content"]  # "its image is further from the photo"


@pytest.mark.slow
def test_03_timing_is_a_median_after_a_warm_up(executed):
    run = executed("03_gatys_style_transfer")
    runs, per_step = run.metrics["timing_runs"], run.metrics["seconds_per_step"]
    assert sorted(int(px) for px in runs) == sorted(run.parameters["TIMING_SIZES"])
    for px, seconds in runs.items():
        assert len(seconds) == run.parameters["TIMING_REPEATS"] and min(seconds) > 0
        assert per_step[px] == statistics.median(seconds)
    assert f"median of {run.parameters['TIMING_REPEATS']} runs" in run.printed("4c934840")


# ---- notebooks 04 and 05 (added with the book-rendering work) ------------------------------------------

def _random_model(folder: Path) -> Path:
    """A TransformerNet with seeded random weights saved as a notebook-04 checkpoint (notebook 05's MODEL)."""
    import torch

    import nstlib

    path = folder / "random_model.pth"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            nstlib.save_transform_net(nstlib.TransformerNet(), path, note="random weights, for the claims tests")
    return path


RUNS.update({run.name: run for run in [
    NotebookRun("04_johnson_transform_net", lambda images: {
        "STYLE": str(images / "starry_night.png"), "DATASET": str(images), "N_IMAGES": 3, "IMAGE_SIZE": 32,
        "BATCH_SIZE": 2, "STEPS": 4, "CHECK_STEPS": 2, "CHECK_SIZE": 32, "CHECKPOINT_EVERY": 2, "SAMPLE_EVERY": 2,
        "LOG_EVERY": 1, "SAMPLE_IMAGES": [str(images / "tubingen.png")], "CONTENT": str(images / "tubingen.png"),
        "CONTENT_SIZE": 48, "WEIGHTS": None, "SEED": 0,
    }),
    NotebookRun("05_fast_stylization", lambda images: {
        "STYLE": str(images / "starry_night.png"), "MODEL": str(_random_model(images)),
        "CONTENT": str(images / "tubingen.png"), "SIZE": 48, "FOLDER": str(images), "BATCH_SIZE": 2,
        "TIMING_SIZES": [32, 48], "TIMING_REPEATS": 2, "TIMING_WARMUP": 1, "GATYS_STEPS": 3, "WEIGHTS": None,
        "SEED": 0,
    }),
]})


def _cell_outputs(run: Executed, cell_id: str) -> list:
    return next(c for c in run.notebook.cells if c.get("id") == cell_id).get("outputs", [])


@pytest.mark.parametrize("name", ["04_johnson_transform_net", "05_fast_stylization"])
def test_04_and_05_have_the_one_marked_box(name):
    test_one_marked_box_says_what_random_weights_can_show(name)  # RUNS grew after that test was parametrized


def test_04_and_05_read_as_a_course_not_a_lab_diary():
    for name in ("04_johnson_transform_net", "05_fast_stylization"):
        markdown = _markdown(name)
        for diary in ("What we saw while preparing", "We could not check this here", "used to prepare this notebook",
                      "On our single CPU thread", "we could not time it"):
            assert diary not in markdown, f"{name}: {diary!r}"
        assert "What to expect, and how to check it" in markdown, name


@pytest.mark.slow
def test_04_prints_the_size_that_ran_and_the_checks_the_prose_names(executed):
    run = executed("04_johnson_transform_net")
    size = run.parameters["IMAGE_SIZE"]
    assert run.metrics["image_size"] == run.metrics["settings"]["image_size"] == size
    rate = run.printed("da8d030b")
    assert f"on cpu at {size} px" in rate  # the size that ran, from the run's settings
    # "The cell under it prints each weighted term at the first and the last step"
    steps = run.metrics["steps"]
    for term in ("content", "style"):
        assert re.search(rf"weighted {term}\s+loss: .* at step 1 -> .* at step {steps}", rate), term
    # "The resume worked when session 2 printed that its history starts with session 1's losses, unchanged"
    assert "unchanged: True" in run.printed("ca137d60")
    # "the printed largest difference is 0 or at the level of float rounding"
    gap = float(re.search(r"largest difference ([0-9.e+-]+)\)", run.printed("3aa78594")).group(1))
    assert gap < 1e-5
    # the architecture: one summary line, the table folded into an expandable <details>
    outputs = _cell_outputs(run, "e9ce108e")
    html_outputs = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html_outputs) == 1 and html_outputs[0].startswith("<details><summary>")
    assert html_outputs[0].count("<tr>") == 1 + 11  # header, then 3 down + 5 residual + 2 up + 1 final block


@pytest.mark.slow
def test_05_tables_are_html_and_the_speedup_is_printed_from_the_numbers(executed):
    run = executed("05_fast_stylization")
    timing = [o["data"]["text/html"] for o in _cell_outputs(run, "b16c187e") if "text/html" in o.get("data", {})]
    assert len(timing) == 1 and timing[0].startswith('<table class="nstlib-table">')
    for row in run.metrics["timing"]:  # the ms-per-megapixel column the prose reads is computed from each row
        per_megapixel = 1000 * row["seconds_per_image"] / (row["pixels"] / 1e6)
        assert f">{per_megapixel:.0f}<" in timing[0]
    comparison = _cell_outputs(run, "3fb4e83c")
    tables = [o["data"]["text/html"] for o in comparison if "text/html" in o.get("data", {})]
    assert len(tables) == 1 and "content photo (unchanged)" in tables[0] and "|" not in tables[0]
    speedup = run.metrics["gatys_seconds"] / run.metrics["seconds_per_image"]
    assert f"The fast network was {speedup:,.0f} times faster here." in run.printed("3fb4e83c")
    for cell in run.notebook.cells:  # no Markdown table printed anywhere (the book would show raw pipes)
        for output in cell.get("outputs", []):
            text = output.get("text", "") + "".join(output.get("data", {}).get("text/markdown", ""))
            assert "|---" not in text


@pytest.mark.slow
def test_03_random_weights_bring_the_paintings_colours_as_the_box_says(executed):
    """The box: with random weights "the painting's colours and fine grain reach the photo" (the mean colour, here)."""
    import nstlib

    run = executed("03_gatys_style_transfer")
    result = nstlib.load_image(run.results / "stylized.png")
    size = max(result.shape[-2:])
    content, style = (nstlib.load_image(run.parameters[key], size) for key in ("CONTENT", "STYLE"))
    mean = lambda image: image.mean(dim=(2, 3))[0]  # noqa: E731
    assert (mean(result) - mean(style)).norm() < 0.5 * (mean(content) - mean(style)).norm()
