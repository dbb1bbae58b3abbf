"""nstlib: the tested helpers behind the neural style transfer course.

Notebooks teach; the machinery lives here, one idea per module:

=================  ==============================================================
``stylize``        :func:`stylize`, Gatys et al.'s optimisation of pixels
``perceptual``     :class:`PerceptualLoss`, shared by Gatys optimisation and Johnson training
``transform_net``  :class:`TransformerNet`, Johnson et al.'s feed-forward stylisation network
``trainer``        :func:`train_transform_net`: perceptual-loss training with checkpoints
``pretrained``     pytorch/examples' four trained models, mapped to the course's conventions
``datasets``       training images: any folder, LabelMe (``labelme``), COCO, synthetic
``explorer``       :func:`explore`, an ipywidgets playground for Gatys style transfer
``batch``          papermill batches over parameter grids, with comparison figures
``layers``         VGG19 layer names (Gatys' ``conv4_2`` and the tutorial's ``conv_10``)
``vgg``            :class:`VGGFeatures`, a frozen VGG19 feature extractor
``losses``         :func:`gram_matrix`, :func:`content_loss`, :func:`style_loss`, :func:`total_variation`
``images``         :func:`load_image`, :func:`save_image`
``plotting``       pictures: image grids, loss curves, a live preview
``samples``        the manifest of sample paintings and photos, fetched and checked
``download``       atomic, resumable, checksummed downloads
``quick``          quick mode (``NSTLIB_QUICK=1``): tiny, offline, random weights
=================  ==============================================================
"""

from .layers import (
    GATYS_CONTENT_LAYERS,
    GATYS_STYLE_LAYERS,
    LAYER_PRESETS,
    SEED_CONTENT_LAYERS,
    SEED_STYLE_LAYERS,
    TUTORIAL_NAMES,
    VGG19_LAYERS,
    layer_table,
    resolve_layer,
)
from .download import DownloadError
from .exercises import check_exercise
from .explorer import StyleExplorer, explore
from .images import ImageError, image_path, load_image, save_image, to_pil
from .losses import content_loss, gram_matrix, style_loss, total_variation
from .perceptual import PerceptualLoss
from .plotting import LivePreview, LiveTrainingPlot, image_grid, plot_losses, save_figure, show_feature_maps, show_image, show_images
from .quick import is_quick
from .reconstruct import reconstruct_content, synthesize_texture
from .results import results_path, save_run
from .samples import fetch_sample, get_sample, sample_names
from .stylize import StylizeResult, stylize
from .trainer import TrainingDivergedError, TrainResult, plot_training, train_transform_net
from .transform_net import CheckpointError, TransformerNet, load_transform_net, save_transform_net, stylize_image, stylize_images
from .pretrained import PRETRAINED_STYLES, load_pretrained
from .datasets import ImageFolderDataset, SyntheticDataset, download_coco, open_dataset
from .labelme import download_labelme
from .utils import get_device, set_seed
from .vgg import VGGFeatures, WeightsError, normalize

__version__ = "0.1.0"
