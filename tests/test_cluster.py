"""Papermill batches on a Dask cluster: a LocalCluster of 2 workers on 127.0.0.1 runs the 2x2 probe grid
(one run fails), a second invocation resumes; the files come back from the task, not through a shared disk."""

import json
import os
import socket
import sys
import time

import distributed
import pytest

from nstlib import cli, load_image
from nstlib.course import batch, cluster
from notebook_files import write_notebook
from test_batch import grid_file  # noqa: F401  (the probe notebook of tests/test_batch.py and its 2x2 grid)

LIGHT_CELLS = [  # the probe of tests/test_batch.py without torch (kernels start in a second); its failure is
    # lifted by a file beside the notebook (its working folder: the worker sees the notebook on the shared disk),
    # since RESULTS_DIR is a scratch folder on the worker
    ("A = 1\nB = 'x'\nC = 0\nRESULTS_DIR = None", ["parameters"]),
    ("import json\nfrom pathlib import Path\nfrom PIL import Image", []),
    ("if A == 2 and B == 'y' and not Path('allow').exists():\n    raise RuntimeError('deliberate failure')", []),
    ("Image.new('RGB', (12, 8), (round(255 * A / 2), 255 if B == 'y' else 0, 0)).save(Path(RESULTS_DIR) / 'stylized.png')\n"
     "(Path(RESULTS_DIR) / 'metrics.json').write_text(json.dumps({'total': float(A * 10), 'seconds': 0.5}))", []),
]


@pytest.fixture(scope="module")
def two_workers():
    """A LocalCluster of 2 single-threaded worker processes on the loopback interface (started without quick
    mode: a batch in quick mode must send it with each run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("NSTLIB_QUICK", raising=False)
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address="127.0.0.1:0")
    with local:
        yield local.scheduler_address


def test_two_by_two_grid_on_a_cluster_with_a_failure_then_resume(grid_file, two_workers, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("NSTLIB_QUICK", "1")
    write_notebook(grid_file.parent / "probe.ipynb", LIGHT_CELLS)
    out = grid_file.parent / "out"
    assert two_workers.startswith("tcp://127.0.0.1:")
    assert cli.main(["batch", str(grid_file), "--scheduler", two_workers]) == 1  # one run failed
    records = {name: json.loads((out / name / "run.json").read_text())
               for name in ("A=1__B=x", "A=1__B=y", "A=2__B=x", "A=2__B=y")}
    assert records["A=2__B=y"]["status"] == "failed" and "deliberate failure" in records["A=2__B=y"]["error"]
    assert [records[k]["status"] for k in ("A=1__B=x", "A=1__B=y", "A=2__B=x")] == ["ok"] * 3
    # quick mode reached the workers' kernels with each run (the workers started without it)
    assert all(r["quick"] is True and r["notebook"] == str(grid_file.parent / "probe.ipynb") for r in records.values())
    # the run's files came back into its own folder: image (channel 0 = A/2), metrics, executed notebook
    image = load_image(out / "A=2__B=x" / "stylized.png")
    assert abs(image[0, 0].mean().item() - 1.0) < 0.01 and image[0, 1].max().item() == 0.0
    assert json.loads((out / "A=1__B=y" / "metrics.json").read_text())["total"] == 10.0
    assert (out / "A=1__B=x" / "probe.ipynb").exists() and (out / "A=2__B=y" / "probe.ipynb").exists()
    assert "2,y,failed,," in (out / "table.csv").read_text().splitlines()[4]
    assert (out / "figure.png").stat().st_size > 0
    first = capsys.readouterr().out
    assert "FAILED A=2__B=y" in first and "3/4 runs complete" in first

    # second invocation, once the failed run's input is there: only that run is submitted again
    (grid_file.parent / "allow").touch()
    done_before = {name: os.stat(out / name / "run.json").st_mtime_ns for name in ("A=1__B=x", "A=1__B=y", "A=2__B=x")}
    time.sleep(0.01)
    assert cli.main(["batch", str(grid_file), "--scheduler", two_workers]) == 0
    assert {name: os.stat(out / name / "run.json").st_mtime_ns for name in done_before} == done_before
    assert "3 run(s) already complete: skipped" in capsys.readouterr().out
    assert "2,y,ok,20," in (out / "table.csv").read_text()
    assert all(run.is_complete() for run in batch.load_grid(grid_file).runs)


def _task_that_breaks(notebook, folder, parameters, key, axes):
    raise OSError("the worker's scratch disk is full")


def test_a_task_that_breaks_is_a_failed_run_and_the_others_go_on(grid_file, two_workers):  # noqa: F811
    write_notebook(grid_file.parent / "probe.ipynb", LIGHT_CELLS)
    runs = batch.load_grid(grid_file).runs[:2]
    records = list(cluster.run_on_cluster(runs[:1], two_workers, _task_that_breaks))
    records += list(cluster.run_on_cluster(runs[1:], two_workers, batch.execute_run))
    assert records[0]["status"] == "failed" and records[1]["status"] == "ok"
    assert records[0]["error"] == "OSError on the cluster: the worker's scratch disk is full"
    assert json.loads(runs[0].record.read_text()) == records[0] and runs[1].is_complete() and not runs[0].is_complete()


def test_a_task_ships_the_notebook_and_returns_the_files(tmp_path, monkeypatch):
    """The worker need not see the submitting machine's disk: the notebook travels as bytes, runs in a
    scratch folder, and the files come back as bytes; quick mode travels with the run."""
    monkeypatch.delenv("NSTLIB_QUICK", raising=False)
    source = write_notebook(tmp_path / "probe.ipynb", [
        ("RESULTS_DIR = None\nA = 1", ["parameters"]),
        ("import os, nstlib\nfrom pathlib import Path\n"
         "nstlib.save_run(RESULTS_DIR, {'quick': nstlib.quick_mode(), 'A': A, 'cwd': os.getcwd()})\n"
         "(Path(RESULTS_DIR) / 'sub').mkdir()\n(Path(RESULTS_DIR) / 'sub' / 'x.bin').write_bytes(bytes([0, 255]))", []),
    ]).read_bytes()
    elsewhere = str(tmp_path / "not_on_this_worker" / "probe.ipynb")
    record, files = cluster.remote_run(batch.execute_run, elsewhere, source, {"A": 3}, "k", {"A": 3}, True)
    assert record["status"] == "ok" and record["notebook"] == elsewhere and record["quick"] is True
    metrics = json.loads(files["metrics.json"])
    assert metrics["quick"] is True and metrics["A"] == 3 and not metrics["cwd"].startswith(str(tmp_path))
    assert files["sub/x.bin"] == bytes([0, 255]) and "probe.ipynb" in files and "run.json" not in files
    assert "NSTLIB_QUICK" not in os.environ  # the worker's environment is restored
    assert not (tmp_path / "not_on_this_worker").exists()

    folder = tmp_path / "local" / "A=3"
    cluster.store_run(folder, record, files)
    assert (folder / "sub" / "x.bin").read_bytes() == bytes([0, 255])
    assert json.loads((folder / "run.json").read_text()) == json.loads(json.dumps(record))


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "a/../../b"])
def test_files_from_a_task_cannot_leave_the_run_folder(tmp_path, name):
    with pytest.raises(ValueError, match="leaves its folder"):
        cluster.store_run(tmp_path / "run", {"status": "ok"}, {name: b"x"})
    assert not (tmp_path / "run" / "run.json").exists() and not (tmp_path / "escape.txt").exists()


def test_local_n_starts_n_single_threaded_workers_on_the_loopback_interface():
    with cluster.connect("local:2") as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers.values())
        assert all(address.startswith("tcp://127.0.0.1:") for address in [client.scheduler.address, *workers])
    assert client.status == "closed"


@pytest.mark.parametrize("text, expected", [("local:3", ("local", 3)), ("tcp://head:8786", ("address", "tcp://head:8786")),
                                            ("/shared/scheduler.json", ("file", "/shared/scheduler.json"))])
def test_scheduler_values(text, expected):
    assert cluster.parse_scheduler(text) == expected


def test_bad_scheduler_options_name_the_fix(grid_file, capsys):  # noqa: F811
    assert cli.main(["batch", str(grid_file), "--scheduler", "local:0"]) == 2
    assert "write local:N with N >= 1" in capsys.readouterr().err
    assert cli.main(["batch", str(grid_file), "--scheduler", "local:2", "--workers", "2"]) == 2
    assert "--workers 2 and --scheduler exclude each other" in capsys.readouterr().err
    assert not (grid_file.parent / "out" / "A=1__B=x").exists()


def test_missing_dask_names_the_extra(grid_file, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    assert cli.main(["batch", str(grid_file), "--scheduler", "local:2"]) == 1
    assert 'needs dask.distributed: pip install "nstlib[cluster]"' in capsys.readouterr().err


def test_an_unreachable_scheduler_is_a_clear_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(cluster.ClusterError, match=f"tcp://127.0.0.1:{port}: cannot reach the Dask scheduler"):
        with cluster.connect(f"tcp://127.0.0.1:{port}", timeout=1):
            pass
