"""Batch runs on a Dask cluster: each papermill run is one ``dask.distributed`` task.

``nstlib batch GRID.yaml --scheduler ADDRESS`` sends every incomplete run of the grid to a Dask
scheduler instead of the local process pool; ``--scheduler local:N`` starts a ``LocalCluster`` of N
worker processes on 127.0.0.1 for the length of the batch. Dask is an optional dependency:
``pip install "nstlib[cluster]"`` (HPC users add ``dask-jobqueue`` for SLURM, PBS, ...).

What the batch runner promises holds on the cluster, because only the notebook's execution moves:

* the task receives the notebook's bytes (and its path, used in place when the worker sees the same
  file there, so relative paths keep working on a shared disk) and runs it in a temporary folder of
  the worker, with ``RESULTS_DIR`` pointing there;
* it returns the run's record and every file that folder holds, as bytes; the machine that runs
  ``nstlib batch`` writes them into the run's own folder, each file atomically, and ``run.json``
  last, so workers need not share its disk and an interrupted batch never leaves a run that looks
  complete;
* a run whose task fails (the notebook raised, or the worker died) gets a ``failed`` record and the
  other runs go on; resumption, the figure and the tables work on those local folders as before.

Quick mode travels with the run: the worker's kernel gets ``NSTLIB_QUICK`` as the submitting
machine has it, so the run's content hash (which includes quick mode) describes what was executed.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from .. import config
from ..fileio import atomic_write, atomic_write_json

INSTALL_HINT = 'pip install "nstlib[cluster]"'

_LOCAL = re.compile(r"local:(\d+)")

_ENVIRONMENT_LOCK = threading.Lock()
"""Serialises the runs of one worker process that must change its environment (quick mode)."""


class ClusterError(RuntimeError):
    """The cluster cannot be used (Dask is missing, the scheduler cannot be reached); the message says why."""


def parse_scheduler(text: str) -> tuple[str, Any]:
    """``("local", N)`` for ``local:N``, ``("file", path)`` for a scheduler file (``*.json``, written by
    ``dask scheduler --scheduler-file``), otherwise ``("address", text)`` (``tcp://host:8786``).

    Raises ValueError naming ``--scheduler`` for ``local:`` without a positive whole number.
    """
    text = text.strip()
    if text.startswith("local"):
        match = _LOCAL.fullmatch(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"--scheduler {text!r}: write local:N with N >= 1 workers (e.g. local:4), "
                             "or give a scheduler address such as tcp://head-node:8786")
        return "local", int(match.group(1))
    if not text:
        raise ValueError("--scheduler is empty: give local:N or a scheduler address such as tcp://head-node:8786")
    if text.endswith(".json"):
        return "file", os.path.expanduser(text)
    return "address", text


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"running a batch on a Dask cluster needs dask.distributed: {INSTALL_HINT}") from None
    return distributed


@contextmanager
def connect(scheduler: Any, timeout: float = 30.0) -> Iterator[Any]:
    """A ``distributed.Client`` for ``scheduler``: ``"local:N"``, an address, a scheduler file, a
    cluster object (``LocalCluster``, dask-jobqueue's ``SLURMCluster``) or a ``Client`` (used as is).

    A cluster started here (``local:N``: N single-threaded worker processes and the scheduler's status
    page on free ports of 127.0.0.1) and a client opened here are closed on exit.
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if not isinstance(scheduler, str):  # a cluster object
        with distributed.Client(scheduler) as client:
            yield client
        return
    kind, value = parse_scheduler(scheduler)
    if kind == "local":
        with distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0") as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = (distributed.Client(scheduler_file=value, timeout=timeout) if kind == "file"
                  else distributed.Client(value, timeout=timeout))
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({error}); start one "
                           "(dask scheduler, or a dask-jobqueue cluster) or use --scheduler local:N") from None
    with client:
        yield client


@contextmanager
def _quick_environment(quick: bool) -> Iterator[None]:
    """``NSTLIB_QUICK`` set to ``quick`` in this worker process while the body runs (the kernel that
    papermill starts inherits it); nothing to do, and no lock, when it already agrees."""
    if config.quick_mode() == quick:
        yield
        return
    with _ENVIRONMENT_LOCK:
        before = os.environ.get(config.ENV_QUICK)
        os.environ[config.ENV_QUICK] = "1" if quick else "0"
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(config.ENV_QUICK, None)
            else:
                os.environ[config.ENV_QUICK] = before


def remote_run(execute: Callable[..., dict], notebook: str, source: bytes, parameters: dict[str, Any], key: str,
               axes: dict[str, Any], quick: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The task a worker runs: ``execute`` (the batch's :func:`~nstlib.course.batch.execute_run`) in a
    temporary folder; returns the record and the folder's files (relative POSIX path -> bytes).

    The notebook runs in place when the worker has the file at ``notebook`` with the same bytes
    (a shared disk: its relative paths work), otherwise from a copy of ``source``.
    """
    with tempfile.TemporaryDirectory(prefix="nstlib-run-") as scratch:
        scratch_path = Path(scratch)
        path = Path(notebook)
        try:
            in_place = path.read_bytes() == source
        except OSError:
            in_place = False
        if not in_place:
            path = scratch_path / "notebook" / path.name
            path.parent.mkdir()
            path.write_bytes(source)
        folder = scratch_path / "run"
        with _quick_environment(quick):
            record = execute(str(path), str(folder), parameters, key, axes)
        files = {file.relative_to(folder).as_posix(): file.read_bytes()
                 for file in sorted(folder.rglob("*")) if file.is_file() and file.name != "run.json"}
    record["notebook"] = notebook
    return record, files


def _target(folder: Path, name: str) -> Path:
    """``folder / name`` for a relative path from a task; ValueError for one that would leave ``folder``."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise ValueError(f"a run returned the file name {name!r}, which leaves its folder {folder}")
    return folder.joinpath(*relative.parts)


def store_run(folder: Path, record: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
    """Write a task's ``files`` into ``folder`` (each atomically), then ``run.json`` from ``record``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = _target(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda handle, data=data: handle.write(data))
    atomic_write_json(folder / "run.json", record)
    return record


def _lost(run, error: BaseException) -> dict[str, Any]:
    """The record of a run whose task did not come back (the worker died, the task could not run)."""
    message = " ".join(str(error).split())
    return {"notebook": str(run.notebook), "parameters": run.parameters, "axes": run.axes, "key": run.key,
            "quick": config.quick_mode(), "status": "failed",
            "error": f"{type(error).__name__} on the cluster: {message}"[:500]}


def run_on_cluster(runs: list, scheduler: Any, execute: Callable[..., dict]) -> Iterator[dict[str, Any]]:
    """Submit one task per run (:func:`remote_run` around ``execute``) and yield each run's record as it
    completes, after its files and ``run.json`` are written into ``run.folder`` on this machine."""
    distributed = _distributed()
    quick = config.quick_mode()
    with connect(scheduler) as client:
        futures = {}
        for run in runs:
            future = client.submit(remote_run, execute, str(run.notebook), run.notebook.read_bytes(), run.parameters,
                                   run.key, run.axes, quick, pure=False, key=f"nstlib-run-{run.folder.name}-{uuid.uuid4().hex[:12]}")
            futures[future] = run
        for future in distributed.as_completed(futures):
            run = futures[future]
            try:
                record, files = future.result()
            except Exception as error:  # a lost task is a failed run, never fatal to the batch
                yield store_run(run.folder, _lost(run, error), {})
                continue
            yield store_run(run.folder, record, files)
