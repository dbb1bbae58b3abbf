"""download_coco / download_labelme_12_50k: small archives served locally with test checksums."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import warnings
import zipfile
from collections import namedtuple
from dataclasses import replace

import numpy as np
import pytest
from localserver import Route
from PIL import Image

from nstlib import config
from nstlib.data import datasets
from nstlib.data.datasets import ImageFolderDataset, download_coco, download_labelme_12_50k, open_dataset
from nstlib.data.download import DownloadError


@pytest.fixture(autouse=True)
def _not_quick(monkeypatch):
    """Real mode unless a test turns quick mode on (a caller's NSTLIB_QUICK=1 must not leak in)."""
    monkeypatch.delenv(config.ENV_QUICK, raising=False)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Downloads keep lock files in <cache>/locks: a cache of the test's own, outside the folders it lists."""
    monkeypatch.setenv(config.ENV_CACHE, str(tmp_path_factory.mktemp("cache")))


def png(seed: int, size=(20, 14)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png(seed))).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


COCO_FILES = {
    "val2017/000000000139.jpg": jpeg(1),
    "val2017/000000000285.jpg": jpeg(2),
    "val2017/000000000632.png": png(3),
    "val2017/000000000724.jpg": jpeg(4)[:150],  # corrupt (truncated)
    "val2017/LICENSE.txt": b"Flickr terms of use\n",
}
LABELME_FILES = {
    "LabelMe-12-50k/train/0000/0000000.jpg": jpeg(5),
    "LabelMe-12-50k/train/0000/0000001.jpg": jpeg(6),
    "LabelMe-12-50k/train/annotation.txt": b"0000000 1 -1 -1\n",
    "LabelMe-12-50k/test/0000/0000000.jpg": jpeg(7),
}


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


Served = namedtuple("Served", "url data sha256 md5")


def serve(server, path, data, **route) -> Served:
    url = server.add(path, Route(body=data, content_type="application/zip", **route), data)
    return Served(url, data, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest())


def files_under(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_val2017_download_verify_extract_manifest_and_no_second_download(http_server, cache_dir, request):
    served = serve(http_server, "/zips/val2017.zip", make_zip(COCO_FILES))
    folder = download_coco("val2017", url=served.url, size=len(served.data), sha256=served.sha256, progress=False)
    dest = cache_dir / "datasets" / "coco"
    assert folder == dest / "val2017"
    for name, data in COCO_FILES.items():  # byte-identical
        assert (dest / name).read_bytes() == data
    assert files_under(dest) == sorted([*COCO_FILES, "coco-val2017.manifest.json"])  # the archive is deleted
    manifest = json.loads((dest / "coco-val2017.manifest.json").read_text())
    assert manifest["files"] == sorted(COCO_FILES) and manifest["count"] == 5
    assert manifest["folder"] == "val2017" and manifest["sha256"] == served.sha256
    assert manifest["bytes"] == len(served.data) and manifest["url"] == served.url
    # everything present: no request, not even a connection
    requests = http_server.count()
    request.getfixturevalue("no_network")
    assert download_coco("val2017", url=served.url, size=len(served.data), sha256=served.sha256) == folder
    assert download_coco("val2017") == folder  # the published facts do not matter once it is there
    assert http_server.count() == requests == 1
    # open_dataset finds it; the corrupt JPEG is skipped with one warning
    data = open_dataset("coco-val2017", 16)
    assert isinstance(data, ImageFolderDataset) and len(data) == 4
    with pytest.warns(UserWarning, match="000000000724.jpg"):
        items = [data[i] for i in range(4)]
    assert all(x.shape == (3, 16, 16) for x in items) and data.skipped == [folder / "000000000724.jpg"]
    assert (items[3] == items[0]).all()  # the last file is broken: wraps round to the first


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    served = serve(http_server, "/val2017.zip", make_zip(COCO_FILES))
    dest = tmp_path / "coco"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_coco("val2017", dest, url=served.url, size=len(served.data), sha256="0" * 64, progress=False)
    assert files_under(dest) == []
    with pytest.raises(DownloadError, match="bytes but 10 were expected"):
        download_coco("val2017", dest, url=served.url, size=10, sha256=served.sha256, progress=False)
    assert files_under(dest) == []


def test_train2014_md5_is_checked_after_the_download(http_server, tmp_path):
    files = {"train2014/COCO_train2014_000000000009.jpg": jpeg(8)}
    served = serve(http_server, "/train2014.zip", make_zip(files))
    dest = tmp_path / "coco"
    with pytest.raises(DownloadError, match=f"md5 mismatch: expected {'f' * 32}, got {served.md5}"):
        download_coco("train2014", dest, url=served.url, size=len(served.data), md5="f" * 32, progress=False)
    assert files_under(dest) == []
    folder = download_coco("train2014", dest, url=served.url, size=len(served.data), md5=served.md5,
                           progress=False)
    assert folder == dest / "train2014"
    assert (folder / "COCO_train2014_000000000009.jpg").read_bytes() == jpeg(8)
    manifest = json.loads((dest / "coco-train2014.manifest.json").read_text())
    assert manifest["md5"] == served.md5 and manifest["sha256"] is None  # 13 GB are not hashed twice


def test_interrupted_download_resumes(http_server, tmp_path):
    data = make_zip(COCO_FILES)
    url = http_server.add("/val2017.zip", Route(body=data, content_type="application/zip",
                                                drop_after=len(data) // 2), data)
    folder = download_coco("val2017", tmp_path, url=url, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                           progress=False, backoff=0.0)
    assert (folder / "000000000139.jpg").read_bytes() == COCO_FILES["val2017/000000000139.jpg"]
    first, second = http_server.requests_for("/val2017.zip")
    assert "range" not in first.headers and second.headers["range"] == f"bytes={len(data) // 2}-"


def test_kept_archive_is_reused_without_network(http_server, tmp_path, request):
    served = serve(http_server, "/val2017.zip", make_zip(COCO_FILES))
    kwargs = dict(url=served.url, size=len(served.data), sha256=served.sha256, progress=False)
    folder = download_coco("val2017", tmp_path, keep_archive=True, **kwargs)
    assert (tmp_path / "val2017.zip").read_bytes() == served.data
    (tmp_path / "coco-val2017.manifest.json").unlink()
    (folder / "000000000285.jpg").unlink()
    request.getfixturevalue("no_network")
    assert download_coco("val2017", tmp_path, **kwargs) == folder  # checked, extracted again
    assert (folder / "000000000285.jpg").read_bytes() == COCO_FILES["val2017/000000000285.jpg"]
    assert not (tmp_path / "val2017.zip").exists()


def test_a_tampered_kept_archive_is_deleted(http_server, tmp_path):
    served = serve(http_server, "/val2017.zip", make_zip(COCO_FILES))
    (tmp_path / "val2017.zip").write_bytes(served.data[:-1] + b"X")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_coco("val2017", tmp_path, url=served.url, size=len(served.data), sha256=served.sha256,
                      progress=False)
    assert files_under(tmp_path) == [] and http_server.count() == 0


def test_escaping_archive_member_is_refused(http_server, tmp_path):
    served = serve(http_server, "/val2017.zip", make_zip({"val2017/ok.jpg": jpeg(1), "../evil.jpg": jpeg(2)}))
    with pytest.raises(ValueError, match="evil.jpg"):
        download_coco("val2017", tmp_path / "coco", url=served.url, sha256=served.sha256, size=len(served.data),
                      progress=False)
    assert not (tmp_path / "evil.jpg").exists()
    assert not (tmp_path / "coco" / "val2017").exists()
    assert not (tmp_path / "coco" / "coco-val2017.manifest.json").exists()


def test_not_enough_disk_space_stops_before_any_request(http_server, tmp_path, monkeypatch):
    served = serve(http_server, "/val2017.zip", make_zip(COCO_FILES))
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(datasets.shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 100, 100))
    with pytest.raises(OSError, match="not enough free disk space"):
        download_coco("val2017", tmp_path, url=served.url, size=len(served.data), sha256=served.sha256)
    assert http_server.count() == 0


def test_labelme_12_50k_tar_gz_records_its_sha256(http_server, cache_dir):
    served = serve(http_server, "/deep_learning/LabelMe-12-50k.tar.gz", make_tar_gz(LABELME_FILES))
    folder = download_labelme_12_50k(url=served.url, progress=False)
    dest = cache_dir / "datasets" / "labelme-12-50k"
    assert folder == dest / "LabelMe-12-50k"
    for name, data in LABELME_FILES.items():
        assert (dest / name).read_bytes() == data
    manifest = json.loads((dest / "labelme-12-50k.manifest.json").read_text())
    assert manifest["sha256"] == served.sha256 and manifest["md5"] is None
    data = open_dataset("labelme-12-50k", 8)
    assert [p.relative_to(folder).as_posix() for p in data.files] == [
        "test/0000/0000000.jpg", "train/0000/0000000.jpg", "train/0000/0000001.jpg"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert data[2].shape == (3, 8, 8)


def test_published_facts():
    val, train, lm = (datasets.ARCHIVES[k] for k in ("coco-val2017", "coco-train2014", "labelme-12-50k"))
    assert val.url == "https://images.cocodataset.org/zips/val2017.zip" and val.size == 815_585_330
    assert val.sha256 == "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"
    assert train.size == 13_510_573_713 and train.md5 == "0da8c0bd3d6becc4dcb32757491aca88"
    assert train.sha256 is None
    assert lm.url == "http://www.ais.uni-bonn.de/deep_learning/LabelMe-12-50k.tar.gz"
    assert lm.size is lm.sha256 is lm.md5 is None and lm.allow_http
    with pytest.raises(ValueError, match="split='val2014'"):
        download_coco("val2014")


def test_quick_mode_never_downloads(cache_dir, monkeypatch, capsys, no_network):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    assert download_coco("train2014") == cache_dir / "datasets" / "coco" / "train2014"
    assert download_labelme_12_50k() == cache_dir / "datasets" / "labelme-12-50k" / "LabelMe-12-50k"
    assert not cache_dir.exists()
    out = capsys.readouterr().out
    assert out.count(config.BANNER) == 1 and "not downloading coco-train2014" in out


def test_fallback_addresses_are_tried_in_order(http_server, tmp_path):
    data = make_zip(COCO_FILES)
    good = http_server.add("/mirror/val2017.zip", Route(body=data, content_type="application/zip"))
    archive = datasets.Archive(
        name="coco-val2017", url=http_server.url("/missing/val2017.zip"), filename="val2017.zip", folder="val2017",
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), md5=None, images=4,
        fallback_urls=(http_server.url("/broken/val2017.zip"), good))
    http_server.add("/broken/val2017.zip", Route(status=403, body=b"no"))
    folder = datasets.download_archive(archive, tmp_path, progress=False)
    assert (folder / "000000000139.jpg").read_bytes() == COCO_FILES["val2017/000000000139.jpg"]
    assert [r.path for r in http_server.requests] == ["/missing/val2017.zip", "/broken/val2017.zip",
                                                      "/mirror/val2017.zip"]
    # every address failing: one error naming them all; nothing left
    bad = datasets.Archive(**{**archive.__dict__, "fallback_urls": (http_server.url("/broken/val2017.zip"),)})
    with pytest.raises(DownloadError, match=r"every address failed: .*missing.*404.*broken.*403"):
        datasets.download_archive(bad, tmp_path / "other", progress=False)
    assert files_under(tmp_path / "other") == []


def test_plain_http_fallbacks_need_a_checksum(http_server, tmp_path):
    val = datasets.ARCHIVES["coco-val2017"]
    assert val.fallback_urls == ("https://s3.amazonaws.com/images.cocodataset.org/zips/val2017.zip",
                                 "http://images.cocodataset.org/zips/val2017.zip")
    assert datasets._override(val, "http://127.0.0.1/x.zip", None, None, None).fallback_urls == ()
    served = serve(http_server, "/plain/x.tar.gz", make_tar_gz(LABELME_FILES))
    unchecked = datasets.Archive(name="labelme-12-50k", url=http_server.url("/missing.tar.gz"),
                                 filename="x.tar.gz", folder="LabelMe-12-50k", size=None, sha256=None, md5=None,
                                 images=3, fallback_urls=(served.url,))
    with pytest.raises(DownloadError, match="404"):  # the http fallback is not used without a checksum
        datasets.download_archive(unchecked, tmp_path, progress=False)
    assert http_server.count("/plain/x.tar.gz") == 0
    checked = datasets.Archive(**{**unchecked.__dict__, "md5": served.md5})
    assert datasets.download_archive(checked, tmp_path, progress=False) == tmp_path / "LabelMe-12-50k"
    assert http_server.count("/plain/x.tar.gz") == 1


def test_labelme_12_50k_bomb_is_refused_and_deleted(http_server, cache_dir):
    # plain http, no checksum: only the limits stand between a 20 KB download and 20 MB (or 20 GB) on disk
    bomb = make_tar_gz({**LABELME_FILES, "LabelMe-12-50k/train/zeros.jpg": bytes(20 * 10**6)})
    assert len(bomb) * 500 < 20 * 10**6  # the oracle: far beyond the ratio of a folder of JPEGs (about 1)
    served = serve(http_server, "/deep_learning/LabelMe-12-50k.tar.gz", bomb)
    dest = cache_dir / "datasets" / "labelme-12-50k"
    with pytest.raises(ValueError) as info:
        download_labelme_12_50k(url=served.url, progress=False)
    message = str(info.value)
    assert "max_ratio=100" in message and f"The refused archive {dest / 'LabelMe-12-50k.tar.gz'} was deleted" in message
    assert files_under(dest) == []  # no archive, no image, no manifest: nothing reports it as downloaded
    with pytest.raises(datasets.DatasetNotFoundError):
        open_dataset("labelme-12-50k", 8)
    assert http_server.count() == 1


def test_archive_over_its_max_bytes_is_refused_and_deleted(http_server, tmp_path):
    data = make_zip(COCO_FILES)
    total = sum(len(v) for v in COCO_FILES.values())
    served = serve(http_server, "/val2017.zip", data)
    archive = datasets.Archive(name="coco-val2017", url=served.url, filename="val2017.zip", folder="val2017",
                               size=len(data), sha256=served.sha256, md5=None, images=4, max_bytes=total - 1)
    with pytest.raises(ValueError) as info:
        datasets.download_archive(archive, tmp_path / "coco", progress=False)
    message = str(info.value)
    assert f"declaring {total:,} bytes in all, more than max_bytes={total - 1:,}" in message
    assert f"The refused archive {tmp_path / 'coco' / 'val2017.zip'} was deleted" in message
    assert files_under(tmp_path / "coco") == []
    # exactly at the limit: extracted
    folder = datasets.download_archive(replace(archive, max_bytes=total), tmp_path / "coco", progress=False)
    assert (folder / "000000000285.jpg").read_bytes() == COCO_FILES["val2017/000000000285.jpg"]


def test_archive_limits_fit_the_published_archives():
    val, train, lm = (datasets.ARCHIVES[k] for k in ("coco-val2017", "coco-train2014", "labelme-12-50k"))
    # COCO zips store JPEGs as they are: the contents are about the archive's size; the cap leaves room, not 2x
    for coco in (val, train):
        assert 1.1 * coco.size < coco.max_bytes < 1.5 * coco.size
    # LabelMe-12-50k: 50,000 JPEGs of 256x256; even 60 KB each (a quality-100 JPEG of that size) fits
    assert lm.images * 60_000 < lm.max_bytes < 10 * 10**9
