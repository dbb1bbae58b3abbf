"""The benchmark script works (a tiny smoke configuration); its numbers are not tested here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmark_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "smoke.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    sections = [r["section"] for r in report["records"]]
    assert sections == ["gatys", "gatys", "gatys", "quality", "fast", "train"]
    assert not [r for r in report["records"] if "error" in r], report["records"]
    gatys = {r["impl"]: r for r in report["records"] if r["section"] == "gatys"}
    # both implementations ran the same number of evaluations on the same inputs
    assert gatys["naive"]["steps"] == gatys["naive-frozen"]["steps"] == gatys["nstlib"]["steps"] == report["plan"]["gatys_steps"]
    assert gatys["naive"]["shape"] == gatys["naive-frozen"]["shape"] == gatys["nstlib"]["shape"]
    assert report["summary"]["gatys_step_ratio_64"] == gatys["nstlib"]["seconds_per_step"] / gatys["naive"]["seconds_per_step"]
    quality = next(r for r in report["records"] if r["section"] == "quality")
    assert quality["target_total"] > 0 and quality["single_seconds"] > 0
    assert "gatys_step_ratio_64" in run.stdout  # the table and summary are printed
