"""pytorch-AdaIN's released weights: fetched from a local server, layout-checked, trusted on first use, mirrors,
files placed by hand, quick mode's stand-ins, and never a random fallback outside quick mode."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
import torch
from adain_nets import reference_decoder, reference_style_transfer, reference_vgg, seeded
from localserver import Route

from nstlib.adain_model import AdaINModel, adain_decoder, stylize_adain
from nstlib.data import adain_weights
from nstlib.data.adain_weights import (
    ADAIN_CHECKPOINT_KIND,
    DECODER_FILE,
    ENCODER_FILE,
    STAND_IN_SEED,
    fetch_adain_file,
    load_adain,
    load_adain_decoder,
    load_adain_encoder,
    random_decoder,
    random_encoder,
    save_adain_decoder,
)
from nstlib.vgg import WeightsError


def to_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def release():
    """Files laid out as the release's: the full 53-module vgg (to relu5_4) and the decoder, seeded."""
    vgg, decoder = seeded(reference_vgg, 1), seeded(reference_decoder, 2)
    return {"vgg": vgg, "decoder": decoder, ENCODER_FILE: to_bytes(vgg.state_dict()),
            DECODER_FILE: to_bytes(decoder.state_dict()),
            "other_decoder": to_bytes(seeded(reference_decoder, 3).state_dict())}


def serve(http_server, release) -> dict[str, str]:
    return {"encoder_url": http_server.add(f"/v0.0.0/{ENCODER_FILE}", release[ENCODER_FILE]),
            "decoder_url": http_server.add(f"/v0.0.0/{DECODER_FILE}", release[DECODER_FILE])}


def cache_files(cache_dir) -> list[str]:
    root = cache_dir / "adain"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_release_files_load_unchanged_and_are_trusted_on_first_use(http_server, cache_dir, release):
    urls = serve(http_server, release)
    model = load_adain(progress=False, **urls)
    assert isinstance(model, AdaINModel) and not model.training and len(model.encoder) == 31
    assert cache_files(cache_dir) == sorted([DECODER_FILE, DECODER_FILE + ".sha256.json", ENCODER_FILE,
                                             ENCODER_FILE + ".sha256.json"])
    for name, url in ((ENCODER_FILE, urls["encoder_url"]), (DECODER_FILE, urls["decoder_url"])):
        record = json.loads((cache_dir / "adain" / f"{name}.sha256.json").read_text())
        assert record["sha256"] == hashlib.sha256(release[name]).hexdigest() and record["url"] == url
        assert record["size"] == len(release[name])
    assert model.metadata == {"encoder": str(cache_dir / "adain" / ENCODER_FILE),
                              "decoder": str(cache_dir / "adain" / DECODER_FILE), "stand_in": False}
    content, style = torch.rand(1, 3, 32, 24), torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = reference_style_transfer(release["vgg"][:31], release["decoder"], content, style, 0.7)
    torch.testing.assert_close(stylize_adain(model, content, style, alpha=0.7), expected.clamp(0, 1),
                               atol=1e-5, rtol=1e-5)
    assert http_server.count() == 2
    again = load_adain(progress=False, **urls)  # from the cache: no request
    assert http_server.count() == 2 and same(again, model)


def test_a_changed_file_is_refused(http_server, cache_dir, release):
    url = http_server.add("/decoder.pth", release[DECODER_FILE], release["other_decoder"])
    fetch_adain_file(DECODER_FILE, url=url, progress=False)
    root = cache_dir / "adain"
    record = (root / "decoder.pth.sha256.json").read_text()
    (root / DECODER_FILE).unlink()  # the next download brings another file: refused and deleted
    with pytest.raises(WeightsError) as info:
        fetch_adain_file(DECODER_FILE, url=url, progress=False)
    message = str(info.value)
    assert hashlib.sha256(release["other_decoder"]).hexdigest() in message
    assert hashlib.sha256(release[DECODER_FILE]).hexdigest() in message
    assert "was deleted" in message and "decoder.pth.sha256.json" in message
    assert cache_files(cache_dir) == ["decoder.pth.sha256.json"] and (root / "decoder.pth.sha256.json").read_text() == record
    (root / DECODER_FILE).write_bytes(release["other_decoder"])  # a different file placed by hand: kept, not used
    with pytest.raises(WeightsError, match="it was not used"):
        load_adain_decoder(url=url, progress=False)
    assert (root / DECODER_FILE).is_file()
    (root / DECODER_FILE).write_bytes(release[DECODER_FILE])  # the trusted one again
    assert same(load_adain_decoder(url=url, progress=False), release["decoder"])


def bad_state(problem: str, release) -> bytes:
    state = dict(release["decoder"].state_dict())
    if problem == "missing":
        del state["28.bias"]
    else:
        state["1.weight"] = torch.zeros(256, 512, 1, 1)
    return to_bytes(state)


@pytest.mark.parametrize("problem, expected", [
    ("missing", "missing keys: 28.bias"),
    ("shape", r"1\.weight \(256, 512, 1, 1\) instead of \(256, 512, 3, 3\)"),
    ("html", "HTML"),
    ("garbage", "not a readable PyTorch file"),
    ("404", "HTTP 404"),
])
def test_bad_files_fail_clearly_and_leave_nothing(http_server, cache_dir, release, problem, expected):
    if problem in ("missing", "shape"):
        route = bad_state(problem, release)
    elif problem == "html":
        route = Route(body=b"<!DOCTYPE html><html>sign in</html>", content_type="text/html")
    elif problem == "garbage":
        route = b"this is not a state dict"
    else:
        route = Route(body=b"gone", status=404, content_type="text/plain")
    url = http_server.add("/decoder.pth", route)
    with pytest.raises(WeightsError, match=expected) as info:
        load_adain(encoder="random", progress=False, decoder_url=url)
    message = str(info.value)
    assert f"place it at {cache_dir / 'adain' / DECODER_FILE}" in message and url in message  # the manual route
    assert cache_files(cache_dir) == []  # no file, no record: nothing random was returned either


def test_mirror_folder_is_used_without_network(cache_dir, tmp_path, monkeypatch, release, no_network):
    mirror = tmp_path / "mirror"
    (mirror / "adain").mkdir(parents=True)
    (mirror / "adain" / DECODER_FILE).write_bytes(release[DECODER_FILE])
    monkeypatch.setenv("NSTLIB_MIRROR", str(mirror))
    assert same(load_adain_decoder(progress=False), release["decoder"])
    assert (cache_dir / "adain" / DECODER_FILE).read_bytes() == release[DECODER_FILE]
    assert json.loads((cache_dir / "adain" / "decoder.pth.sha256.json").read_text())["sha256"] == \
        hashlib.sha256(release[DECODER_FILE]).hexdigest()
    monkeypatch.setenv("NSTLIB_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="NSTLIB_MIRROR"):
        load_adain_encoder(progress=False)


def test_mirror_url_replaces_the_release_url(http_server, cache_dir, monkeypatch, release):
    http_server.add(f"/m/adain/{ENCODER_FILE}", release[ENCODER_FILE])
    monkeypatch.setenv("NSTLIB_MIRROR", http_server.url("/m"))
    encoder = load_adain_encoder(url="https://example.invalid/never-asked", progress=False)
    assert [r.path for r in http_server.requests] == [f"/m/adain/{ENCODER_FILE}"]
    assert same(encoder, release["vgg"][:31])


def test_files_placed_by_hand_are_used_offline(cache_dir, release, no_network):
    (cache_dir / "adain").mkdir(parents=True)
    (cache_dir / "adain" / ENCODER_FILE).write_bytes(release[ENCODER_FILE])
    (cache_dir / "adain" / DECODER_FILE).write_bytes(release[DECODER_FILE])
    model = load_adain(progress=False)
    assert same(model.encoder, release["vgg"][:31]) and same(model.decoder, release["decoder"])
    assert (cache_dir / "adain" / "vgg_normalised.pth.sha256.json").is_file()


def test_quick_mode_gives_seeded_stand_ins_offline(cache_dir, monkeypatch, capsys, no_network):
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    state = torch.get_rng_state()
    model, again = load_adain(), load_adain()
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    out = capsys.readouterr().out
    assert out.count("QUICK MODE") == 1 and "vgg_normalised.pth is not cached; using a random stand-in" in out
    assert model.metadata == {"encoder": "stand-in", "decoder": "stand-in", "stand_in": True}
    assert same(model, again)
    assert same(model.encoder, random_encoder(STAND_IN_SEED)) and same(model.decoder, random_decoder(STAND_IN_SEED))
    with torch.random.fork_rng(devices=[]):  # the documented recipe
        torch.manual_seed(STAND_IN_SEED)
        decoder = adain_decoder()
        for module in decoder:
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)
    decoder[-1].bias.data.fill_(0.5)
    assert same(model.decoder, decoder)
    features = model.encode(torch.rand(1, 3, 32, 32))
    assert 1e-3 < float(features.std()) < 1e3  # the random encoder's features neither vanish nor explode
    picture = stylize_adain(model, torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert 0.3 < float(picture.mean()) < 0.7 and float(picture.std()) > 0.02  # visible noise, not black
    with pytest.raises(WeightsError, match="quick mode"):
        fetch_adain_file(DECODER_FILE)
    assert cache_files(cache_dir) == []


def test_quick_mode_uses_a_cached_file(http_server, cache_dir, monkeypatch, release, capsys):
    fetch_adain_file(DECODER_FILE, url=http_server.add("/d.pth", release[DECODER_FILE]), progress=False)
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    model = load_adain()
    assert same(model.decoder, release["decoder"]) and model.metadata["encoder"] == "stand-in"
    assert "decoder.pth is not cached" not in capsys.readouterr().out


def test_decoders_saved_trained_or_from_a_model_load(tmp_path, release):
    model = AdaINModel(random_encoder(), random_decoder(5))
    path = save_adain_decoder(model, tmp_path / "mine.pth")
    plain = torch.load(path, weights_only=True)  # a plain state dict: pytorch-AdaIN's decoder loads it as it is
    reference_decoder().load_state_dict(plain, strict=True)
    assert same(load_adain_decoder(path), model.decoder)
    loaded = load_adain(path, encoder="random")
    assert same(loaded.decoder, model.decoder) and loaded.metadata["decoder"] == str(path)
    whole = tmp_path / "model.pth"
    torch.save(model.state_dict(), whole)  # an AdaINModel state dict: the decoder.* part
    assert same(load_adain_decoder(whole), model.decoder)
    checkpoint = tmp_path / "step_000001.pth"
    torch.save({"kind": ADAIN_CHECKPOINT_KIND, "decoder": release["decoder"].state_dict(), "step": 1}, checkpoint)
    assert same(load_adain_decoder(checkpoint), release["decoder"])
    encoder_file = tmp_path / "vgg.pth"
    encoder_file.write_bytes(release[ENCODER_FILE])
    assert same(load_adain(None, encoder=encoder_file).encoder, release["vgg"][:31])


def test_bad_paths_and_arguments(tmp_path, release):
    with pytest.raises(FileNotFoundError, match=r"weights='nowhere\.pth' is neither 'pretrained'"):
        load_adain_decoder("nowhere.pth")
    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(release[ENCODER_FILE])  # an encoder given as the decoder
    with pytest.raises(WeightsError, match=r"wrong\.pth does not have the layout.*missing keys: 1\.bias"):
        load_adain_decoder(wrong)
    assert wrong.is_file()  # the user's own file is never deleted
    with pytest.raises(TypeError, match="weights must be"):
        load_adain_decoder(3)
    with pytest.raises(ValueError, match="filename='x.pth' must be"):
        fetch_adain_file("x.pth")
    with pytest.raises(IsADirectoryError):
        save_adain_decoder(random_decoder(), tmp_path)


def test_none_means_random_on_purpose(cache_dir, no_network):
    model = load_adain(None)
    assert model.metadata == {"encoder": "random", "decoder": "random", "stand_in": False}
    assert cache_files(cache_dir) == []
    assert adain_weights.ENCODER_URL.endswith("/v0.0.0/vgg_normalised.pth")
    assert adain_weights.DECODER_URL == "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0/decoder.pth"
