"""pytorch/examples' pretrained models: fetch end to end (checked against their own network), quick mode.

Converting their state dicts is nstlib.checkpoints' job: tests/test_checkpoints.py."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
import torch
from localserver import Route
from nets import examples_model, examples_state, oracle

from nstlib import TransformerNet
from nstlib.data import pretrained
from nstlib.data.pretrained import PRETRAINED_STYLES, fetch_pretrained, load_pretrained
from nstlib.vgg import WeightsError


# ---- fetch_pretrained end to end against a local server --------------------------------------------------

def make_archive(seed: int = 0, skip: str | None = None, b: int = 4, broken: str | None = None) -> tuple[bytes, dict]:
    """saved_models.zip as pytorch/examples ships it (in a folder, with macOS junk), and the reference nets."""
    refs, buffer = {}, io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("saved_models/", b"")
        for i, style in enumerate(PRETRAINED_STYLES):
            if style == skip:
                continue
            if style == broken:
                zf.writestr(f"saved_models/{style}.pth", b"not a model")
                continue
            refs[style] = examples_model(seed * 10 + i, b)
            data = io.BytesIO()
            torch.save(examples_state(refs[style]), data)
            zf.writestr(f"saved_models/{style}.pth", data.getvalue())
        zf.writestr("__MACOSX/saved_models/._candy.pth", b"resource fork junk")
    return buffer.getvalue(), refs


def cache_files(cache_dir) -> list[str]:
    root = cache_dir / "pretrained"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_fetch_end_to_end_records_sha_and_caches(http_server, cache_dir):
    data, refs = make_archive()
    url = http_server.add("/s/saved_models.zip", data)
    path = fetch_pretrained("mosaic", url=url, progress=False)
    assert path == cache_dir / "pretrained" / "saved_models" / "mosaic.pth"
    assert cache_files(cache_dir) == ["saved_models", "saved_models.zip", "saved_models.zip.sha256.json",
                                      "saved_models/candy.pth", "saved_models/mosaic.pth",
                                      "saved_models/rain_princess.pth", "saved_models/udnie.pth"]
    record = json.loads((cache_dir / "pretrained" / "saved_models.zip.sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size"] == len(data)
    assert record["url"] == url
    assert http_server.count() == 1
    # second call: no network, and load_pretrained gives the right model for [0, 1] images
    assert fetch_pretrained("udnie", url=url, progress=False) == path.with_name("udnie.pth")
    for style in ("candy", "rain_princess"):
        net = load_pretrained(style, url=url)
        assert net.pixel_scale == 255 and not net.training
        x = torch.rand(1, 3, 20, 36)
        with torch.no_grad():
            torch.testing.assert_close(net(x), oracle(refs[style], x), atol=2e-4, rtol=1e-4)
    assert http_server.count() == 1


def test_changed_archive_is_refused_trust_on_first_use(http_server, cache_dir):
    data, _ = make_archive(seed=0)
    other, _ = make_archive(seed=1)
    url = http_server.add("/saved_models.zip", data, other)
    fetch_pretrained("candy", url=url, progress=False)
    root = cache_dir / "pretrained"
    record = (root / "saved_models.zip.sha256.json").read_text()
    # the cache is cleared except the record: the same archive again is accepted ...
    for p in sorted(root.rglob("*"), reverse=True):
        if p.name != "saved_models.zip.sha256.json":
            p.rmdir() if p.is_dir() else p.unlink()
    http_server.add("/saved_models.zip", data, other)
    fetch_pretrained("candy", url=url, progress=False)
    # ... a different one is refused, deleted, and the trusted models are not touched
    for p in sorted((root / "saved_models").iterdir()):
        p.unlink()
    (root / "saved_models").rmdir()
    (root / "saved_models.zip").unlink()
    with pytest.raises(WeightsError) as info:
        fetch_pretrained("candy", url=url, progress=False)
    message = str(info.value)
    assert hashlib.sha256(other).hexdigest() in message and hashlib.sha256(data).hexdigest() in message
    assert "saved_models.zip.sha256.json" in message and "delete" in message
    assert cache_files(cache_dir) == ["saved_models.zip.sha256.json"]
    assert (root / "saved_models.zip.sha256.json").read_text() == record


@pytest.mark.parametrize("problem", ["missing", "broken", "html", "not_zip"])
def test_bad_archive_fails_clearly_and_leaves_nothing(http_server, cache_dir, problem):
    if problem == "missing":
        url = http_server.add("/z.zip", make_archive(skip="udnie")[0])
        expected = r"lacks udnie\.pth"
    elif problem == "broken":
        url = http_server.add("/z.zip", make_archive(broken="mosaic")[0])
        expected = r"'saved_models/mosaic\.pth' is not a usable model"
    elif problem == "html":
        url = http_server.add("/z.zip", Route(body=b"<!DOCTYPE html><html>Dropbox sign in</html>",
                                              content_type="text/html"))
        expected = "HTML"
    else:
        url = http_server.add("/z.zip", b"PK but not really a zip file")
        expected = "not a zip archive"
    with pytest.raises(WeightsError, match=expected) as info:
        fetch_pretrained("candy", url=url, progress=False)
    assert "saved_models.zip" in str(info.value)  # says where a hand-made copy would go
    assert cache_files(cache_dir) == []  # no archive, no record, no half-extracted model, no temp folder


def test_oversized_model_is_refused_before_it_is_written(http_server, cache_dir):
    # the real models are about 6.7 MB each: the cap holds all four, and is far below a bomb
    assert 4 * 6_700_000 < pretrained.MAX_MODELS_BYTES <= 100 * 10**6
    data, _ = make_archive()
    buffer = io.BytesIO()  # the same archive with candy.pth replaced by 100 MB of zeros (about 100 KB deflated)
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            if info.filename != "saved_models/candy.pth":
                zf.writestr(info, src.read(info))
                continue
            with zf.open(info.filename, "w") as out:
                for _ in range(100):
                    out.write(bytes(10**6))
    url = http_server.add("/z.zip", buffer.getvalue())
    with pytest.raises(WeightsError) as info:
        fetch_pretrained("candy", url=url, progress=False)
    message = str(info.value)
    assert f"more than max_bytes={pretrained.MAX_MODELS_BYTES:,}" in message and "Nothing was extracted" in message
    assert f"so {cache_dir / 'pretrained' / 'saved_models.zip'} was deleted" in message
    assert cache_files(cache_dir) == []  # no archive, no record, no model, no temporary folder

def test_archive_placed_by_hand_is_used_without_network(cache_dir, no_network):
    data, refs = make_archive(seed=3)
    (cache_dir / "pretrained").mkdir(parents=True)
    (cache_dir / "pretrained" / "saved_models.zip").write_bytes(data)
    net = load_pretrained("udnie")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(refs["udnie"], x), atol=2e-4, rtol=1e-4)


def test_unknown_style(cache_dir):
    for call in (fetch_pretrained, load_pretrained):
        with pytest.raises(ValueError, match="candy, mosaic, rain_princess, udnie"):
            call("starry_night")


# ---- quick mode ----------------------------------------------------------------------------------------------

def test_quick_mode_stand_in_is_seeded_and_offline(cache_dir, no_network, monkeypatch, capsys):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    state = torch.get_rng_state()
    net = load_pretrained("candy")
    again = load_pretrained("candy")
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    out = capsys.readouterr().out
    assert "QUICK MODE" in out and out.count("QUICK MODE") == 1 and "stand-in" in out
    assert isinstance(net, TransformerNet) and net.metadata["stand_in"] is True
    assert net.config == {"upsample": "nearest", "base": 32, "output": "none", "pixel_scale": 1.0}
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(pretrained.STAND_IN_SEED)
    fresh = TransformerNet(upsample="nearest")  # the documented recipe gives the same weights
    for a, b in zip(net.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(WeightsError, match="quick mode"):
        fetch_pretrained("candy")


def test_quick_mode_uses_a_cached_model(http_server, cache_dir, monkeypatch, capsys):
    data, refs = make_archive(seed=4)
    fetch_pretrained("candy", url=http_server.add("/z.zip", data), progress=False)
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    net = load_pretrained("mosaic")
    assert "stand-in" not in capsys.readouterr().out and net.pixel_scale == 255
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(refs["mosaic"], x), atol=2e-4, rtol=1e-4)


def test_no_stand_in_outside_quick_mode(http_server, cache_dir):
    url = http_server.add("/gone.zip", Route(body=b"gone", status=404, content_type="text/plain"))
    with pytest.raises(WeightsError, match="404"):
        load_pretrained("candy", url=url)
    assert cache_files(cache_dir) == []
