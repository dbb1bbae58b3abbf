"""Everything the course fetches or makes up: downloads, archives, sample images, datasets, models.

=================  ==============================================================
``download``       atomic, resumable, checksummed downloads (``download.download``, :func:`fetch_url`)
``archives``       safe zip/tar extraction (no path escapes, no links out of the folder)
``samples``        the manifest of sample paintings and photos, fetched and checked
``synthetic``      deterministic synthetic stand-ins for images (quick mode and tests)
``datasets``       training images: any folder, COCO, LabelMe-12-50k, synthetic
``labelme``        a polite, resumable crawler for LabelMe's image folders
``pretrained``     pytorch/examples' four trained fast models
``manifest``       the shipped ``images.tsv`` (the repository's ``data/`` folder)
=================  ==============================================================

The names students use are re-exported by :mod:`nstlib` itself; import the modules here for the
rest (``from nstlib.data.datasets import list_images``).
"""

from .datasets import ImageFolderDataset, SyntheticDataset, download_coco, download_labelme_12_50k, list_images, open_dataset
from .download import DownloadError, fetch_url, sha256_file
from .labelme import CrawlError, download_labelme
from .pretrained import PRETRAINED_STYLES, fetch_pretrained, load_pretrained
from .samples import Sample, fetch_sample, get_sample, is_sample, sample_names, standin

__all__ = [
    "CrawlError", "DownloadError", "ImageFolderDataset", "PRETRAINED_STYLES", "Sample", "SyntheticDataset",
    "download_coco", "download_labelme", "download_labelme_12_50k", "fetch_pretrained", "fetch_sample",
    "fetch_url", "get_sample", "is_sample", "list_images", "load_pretrained", "open_dataset", "sample_names",
    "sha256_file", "standin",
]
