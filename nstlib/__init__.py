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
``checkpoints``    checkpoint formats, saving, loading and resuming
``images``         :func:`load_image`, :func:`save_image`
``plotting``       pictures: image grids, loss curves, live previews
``widgets``        :func:`explore` and the upload decoder (ipywidgets)
``exercises``      :func:`check_exercise`, the notebooks' self-checks
``config``         settings, quick mode (``NSTLIB_QUICK=1``), the device and the seed
``results``        where a run leaves its images and ``metrics.json``
``fileio``         atomic writes; ``validate``: argument checks
=================  ==============================================================

Two subpackages hold the machinery: :mod:`nstlib.data` (downloads, archives, the sample
manifest, synthetic stand-ins, datasets, the LabelMe crawler, pretrained models) and
:mod:`nstlib.course` (papermill batches and the course book). ``nstlib.cli`` is the one command
line. Notebooks import from ``nstlib`` (every name below) and, for the rest, from those two.
"""

from .checkpoints import CheckpointError, load_transform_net, save_transform_net
from .config import cap_size, cap_steps, get_device, quick_mode, set_seed
from .data.datasets import ImageFolderDataset, SyntheticDataset, download_coco, list_images, open_dataset
from .data.download import DownloadError
from .data.labelme import download_labelme
from .data.pretrained import PRETRAINED_STYLES, load_pretrained
from .data.samples import fetch_sample, get_sample, is_sample, sample_names
from .exercises import check_exercise
from .fast import stylize_image, stylize_images
from .gatys import StylizeResult, reconstruct_content, stylize, synthesize_texture
from .images import ImageError, image_path, load_image, save_image, target_size, to_pil
from .layers import (
    GATYS_CONTENT_LAYERS,
    GATYS_STYLE_LAYERS,
    LAYER_CHANNELS,
    LAYER_PRESETS,
    SEED_CONTENT_LAYERS,
    SEED_STYLE_LAYERS,
    SEED_VGG_OUTPUTS,
    TUTORIAL_NAMES,
    VGG19_LAYERS,
    downsampling,
    format_layer_table,
    layer_table,
    receptive_field,
    resolve_layer,
    tutorial_name,
)
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .perceptual import PerceptualLoss, default_layer_weights
from .plotting import (
    LivePreview,
    LiveTrainingPlot,
    image_grid,
    normalize_channels,
    plot_losses,
    save_figure,
    show_feature_maps,
    show_image,
    show_images,
)
from .results import results_path, save_run
from .training import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    TrainingDivergedError,
    TrainResult,
    epoch_order,
    train_transform_net,
)
from .transform_net import ConvLayer, ResidualBlock, TransformerNet, UpsampleConvLayer, count_parameters
from .vgg import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures, WeightsError, vgg19_layers
from .widgets import StyleExplorer, decode_upload, explore

__version__ = "0.1.0"
