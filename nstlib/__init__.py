"""nstlib: the tested helpers behind the neural style transfer course.

The notebooks teach each idea by writing it out in plain PyTorch; this package is the tested,
reusable form of what they teach. Its top level is the teaching core, one idea per module:

=================  ==============================================================
``layers``         VGG19 layer names (Gatys' ``conv4_2`` and the tutorial's ``conv_10``)
``vgg``            :class:`VGGFeatures`, a frozen VGG19 feature extractor
``losses``         :func:`gram_matrix`, :func:`content_loss`, :func:`style_loss`, :func:`total_variation`
``perceptual``     :class:`PerceptualLoss`, shared by Gatys optimisation and Johnson training
``color``          luminance-only transfer (YIQ), to keep the content's colours
``gatys``          :func:`stylize`, Gatys et al.'s optimisation of pixels, and reconstructions
``transform_net``  :class:`TransformerNet`, Johnson et al.'s feed-forward network (the network only)
``fast``           :func:`stylize_image`: a trained network applied to photos
``training``       :func:`train_transform_net`, the Johnson training loop
``adain_model``    Huang & Belongie's AdaIN: :func:`adain`, :class:`AdaINModel`, :func:`stylize_adain`;
                   ``adain_training``: :func:`train_adain_decoder` (weights: ``data.adain_weights``)
``multistyle``     :func:`train_multistyle_net`: many styles in one network (Dumoulin et al. 2017), blends
``finetune``       :func:`finetune_from_gatys`: a fast network pulled towards Gatys results, and measured
``checkpoints``    checkpoint formats, saving, loading and resuming
``images``         :func:`load_image`, :func:`save_image`
``plotting``       pictures: grids, loss curves, Gram maps, tables, live previews
``widgets``        :func:`explore`, :func:`upload_image` and the upload decoder (ipywidgets)
``exercises``      :func:`check_exercise`, the notebooks' self-checks
``config``         settings, quick mode (``NSTLIB_QUICK=1``), the device and the seed
``results``        where a run leaves its images and ``metrics.json``
``fileio``         atomic writes; ``validate``: argument checks
=================  ==============================================================

Two subpackages hold the machinery: :mod:`nstlib.data` (downloads, archives, the sample
manifest, synthetic stand-ins, datasets, the LabelMe crawler, pretrained models) and
:mod:`nstlib.course` (papermill batches and the course book). ``nstlib.cli`` is the one command
line. Notebooks import from ``nstlib`` (every name below) and, for the rest, from those two.

Importing :mod:`nstlib` is cheap: the names below are looked up in :data:`_EXPORTS` and their module is
imported the first time one of them is used (PEP 562's module ``__getattr__``), so ``nstlib --help``
starts without importing torch. ``nstlib.stylize``, ``from nstlib import stylize``, ``dir(nstlib)``
and tab completion work as if everything had been imported; ``nstlib.<module>`` imports that module.
"""

from __future__ import annotations

import importlib
import importlib.util

__version__ = "0.1.0"

# The public names, by the module (relative to nstlib) that defines them: the one table of exports.
# To export a name, add it to its module's entry (a new module: a new entry). tests/test_architecture.py
# reads this table as imports of those modules (import cycles, the notebooks' public API).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "adain_model": ("AdaINModel", "EncodedStyle", "adain", "adain_decoder", "adain_encoder", "calc_mean_std", "coral",
                    "encode_style", "stylize_adain"),
    "adain_training": ("AdaINTrainResult", "train_adain_decoder"),
    "checkpoints": (
        "CheckpointError", "load_transform_net", "save_examples_format", "save_transform_net", "to_examples_state_dict"),
    "config": ("cap_size", "cap_steps", "get_device", "quick_mode", "set_seed"),
    "cpu_memory": ("release_freed_memory", "reuse_freed_memory"),
    "data.adain_weights": ("load_adain",),
    "data.datasets": ("ImageFolderDataset", "SyntheticDataset", "download_coco", "list_images", "open_dataset"),
    "data.download": ("DownloadError",),
    "data.labelme": ("download_labelme",),
    "data.pretrained": ("PRETRAINED_STYLES", "load_pretrained"),
    "data.samples": ("fetch_sample", "get_sample", "is_sample", "sample_names"),
    "exercises": ("check_exercise",),
    "export": ("export_onnx", "psnr"),
    "fast": ("cpu_backend", "native_bfloat16", "stylize_image", "stylize_images"),
    "finetune": ("evaluate_against_gatys", "finetune_from_gatys", "gatys_targets", "johnson_loss", "mean_by_output"),
    "gatys": ("StylizeResult", "reconstruct_content", "stylize", "synthesize_texture"),
    "images": ("ImageError", "image_path", "load_image", "save_image", "target_size", "to_pil"),
    "inference": ("CPUInference",),
    "layers": (
        "GATYS_CONTENT_LAYERS", "GATYS_STYLE_LAYERS", "LAYER_CHANNELS", "LAYER_PRESETS", "SEED_CONTENT_LAYERS",
        "SEED_STYLE_LAYERS", "SEED_VGG_OUTPUTS", "TUTORIAL_NAMES", "VGG19_LAYERS", "downsampling",
        "format_layer_table", "layer_table", "receptive_field", "resolve_layer", "tutorial_name"),
    "losses": ("content_loss", "gram_matrix", "style_loss", "total_variation"),
    "multistyle": ("blend_strip", "extract_style", "parameter_cost", "train_multistyle_net"),
    "perceptual": ("PerceptualLoss", "default_layer_weights"),
    "plotting": (
        "LivePreview", "LiveTrainingPlot", "html_table", "image_grid", "normalize_channels", "plot_losses",
        "save_figure", "show_feature_maps", "show_gram", "show_image", "show_images"),
    "results": ("results_path", "save_run"),
    "training": (
        "DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS", "TrainingDivergedError", "TrainResult", "epoch_order",
        "train_transform_net"),
    "transform_net": (
        "ConditionalInstanceNorm2d", "ConvLayer", "ResidualBlock", "TransformerNet", "UpsampleConvLayer",
        "count_parameters"),
    "vgg": ("IMAGENET_MEAN", "IMAGENET_STD", "VGGFeatures", "WeightsError", "vgg19_layers"),
    "video": (
        "VideoResult", "flicker", "frame_differences", "make_synthetic_clip", "plot_flicker", "read_frames",
        "stylize_video", "temporal_blend", "video_info"),
    "widgets": ("StyleExplorer", "decode_upload", "explore", "upload_image"),
}

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """``nstlib.<name>``: the exported object (its module imported on first use), or the submodule ``name``."""
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later look-ups find it without calling __getattr__
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The exported names, the two documented subpackages and what is already bound (tab completion)."""
    return sorted(set(globals()) | set(__all__) | {"data", "course"})

