"""The pinned video clips: Commons URLs, trust on first use, quick-mode stand-ins.

Oracles: Commons URLs of other files, known from elsewhere, for the URL rule; the SHA-256 of the bytes
the local server sent; the recorded file read back as JSON; the stand-in read back as a video.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from localserver import Route

from nstlib import config
from nstlib.data import clips
from nstlib.data.clips import ClipError, commons_url, fetch_clip
from nstlib.data.download import DownloadError
from nstlib.video import make_synthetic_clip, video_info


def test_commons_url_rule_on_files_whose_urls_are_known():
    base = "https://upload.wikimedia.org/wikipedia/commons"
    assert commons_url("The_Horse_in_Motion-anim.gif") == f"{base}/0/07/The_Horse_in_Motion-anim.gif"
    assert commons_url("Big Buck Bunny Trailer 400p.ogv") == f"{base}/b/b3/Big_Buck_Bunny_Trailer_400p.ogv"
    assert commons_url("Gymnopedie_No._1..ogg") == f"{base}/b/b7/Gymnopedie_No._1..ogg"


def test_pinned_clips_are_public_domain_commons_originals():
    assert clips.DEFAULT_CLIP in clips.CLIPS and clips.clip_names() == sorted(clips.CLIPS)
    for name, clip in clips.CLIPS.items():
        assert clip.name == name and clip.url == commons_url(clip.file) and clip.url.startswith("https://")
        assert clip.rights.startswith("Public domain") and clip.page.endswith(clip.file)
        assert clip.sha256 is None  # not known when pinned: trusted on first use
        assert str(clip.year) in clip.credit and clip.author in clip.credit
    assert clips.CLIPS["roundhay_garden"].url.endswith("/7/78/Roundhay_Garden_Scene.ogg")


def test_fetch_records_the_sha256_on_first_use_then_stays_offline(http_server, cache_dir, tmp_path):
    data = make_synthetic_clip(tmp_path / "clip.mp4", frames=6, size=(32, 24), fps=6).read_bytes()
    url = http_server.add("/Roundhay_Garden_Scene.ogg", data)
    path = fetch_clip("roundhay_garden", url=url, progress=False)
    assert path == cache_dir / "clips" / "Roundhay_Garden_Scene.ogg" == clips.clip_path("roundhay_garden")
    assert path.read_bytes() == data and video_info(path).frames == 6
    record = json.loads((cache_dir / "clips" / "Roundhay_Garden_Scene.ogg.sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size"] == len(data)
    assert record["url"] == url and "trust on first use" in record["note"]
    assert fetch_clip("roundhay_garden", url=url, progress=False) == path
    assert http_server.count() == 1


def test_a_changed_file_is_refused_and_deleted(http_server, cache_dir):
    url = http_server.add("/clip.gif", b"GIF89a first", b"GIF89a second")
    path = fetch_clip("horse_in_motion", url=url, progress=False)
    record = path.with_name(path.name + ".sha256.json")
    trusted = record.read_text()
    path.unlink()
    with pytest.raises(ClipError) as info:
        fetch_clip("horse_in_motion", url=url, progress=False)
    message = str(info.value)
    assert hashlib.sha256(b"GIF89a second").hexdigest() in message
    assert hashlib.sha256(b"GIF89a first").hexdigest() in message and f"delete {record}" in message
    assert not path.exists() and record.read_text() == trusted
    # a cached copy altered on disk is refused too
    path.write_bytes(b"GIF89a edited")
    with pytest.raises(ClipError, match="first downloaded"):
        fetch_clip("horse_in_motion", url=url, progress=False)


def test_a_clip_with_a_pinned_sha256_is_checked_against_it(http_server, cache_dir, monkeypatch):
    pinned = dataclasses.replace(clips.CLIPS["horse_in_motion"], sha256=hashlib.sha256(b"GIF89a right").hexdigest())
    monkeypatch.setitem(clips.CLIPS, "horse_in_motion", pinned)
    url = http_server.add("/h.gif", b"GIF89a wrong")
    with pytest.raises(DownloadError, match="sha256"):
        fetch_clip("horse_in_motion", url=url, progress=False)
    path = clips.clip_path("horse_in_motion")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GIF89a wrong")  # placed by hand
    with pytest.raises(ClipError, match="is pinned to"):
        fetch_clip("horse_in_motion", progress=False)
    path.write_bytes(b"GIF89a right")
    assert fetch_clip("horse_in_motion", progress=False) == path
    assert not path.with_name(path.name + ".sha256.json").exists()  # nothing to trust: the pin decides


def test_quick_mode_uses_a_synthetic_stand_in_offline(cache_dir, no_network, monkeypatch, capsys):
    monkeypatch.setenv(config.ENV_QUICK, "1")
    path = fetch_clip(progress=False)
    assert path == cache_dir / "clips" / "standins" / "roundhay_garden.mp4"
    assert "QUICK MODE" in capsys.readouterr().out
    info = video_info(path)
    assert (info.frames, info.fps, info.width, info.height) == (24, 12, 64, 48)
    assert fetch_clip(progress=False) == path


def test_quick_mode_uses_a_cached_clip(cache_dir, no_network, monkeypatch, tmp_path):
    path = clips.clip_path("horse_in_motion")
    make_synthetic_clip(tmp_path / "c.mp4", frames=3, size=16, fps=5)
    path.parent.mkdir(parents=True)
    path.write_bytes((tmp_path / "c.mp4").read_bytes())  # placed by hand: trusted on first use
    monkeypatch.setenv(config.ENV_QUICK, "1")
    assert fetch_clip("horse_in_motion", progress=False) == path
    assert path.with_name(path.name + ".sha256.json").is_file()


def test_failed_download_says_how_to_place_the_file(http_server, cache_dir):
    url = http_server.add("/gone.ogg", Route(body=b"gone", status=404, content_type="text/plain"))
    with pytest.raises(DownloadError) as info:
        fetch_clip("roundhay_garden", url=url, progress=False)
    assert str(clips.clip_path("roundhay_garden")) in str(info.value) and "NSTLIB_QUICK=1" in str(info.value)
    assert not clips.clip_path("roundhay_garden").exists()
    with pytest.raises(ValueError, match="horse_in_motion, roundhay_garden"):
        fetch_clip("big_buck_bunny")
