"""Run the pipeline on one stack and write its outputs folder.

``run_stack`` is the one entry point the CLI, batch runs and the napari
plugin call. Each stage is a function of the previous stage's output and its
own config section; this module only wires them together, times them and
writes the outputs contract (see the README).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import platform
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import columns as col
from .config import PipelineConfig, config_to_dict

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_FRAME_PIXELS",
    "RunResult",
    "events_key",
    "file_record",
    "input_checksum",
    "new_run_id",
    "outputs_intact",
    "read_table",
    "run_stack",
    "table_path",
    "write_json_atomic",
    "write_table",
]

#: the first columns of tracks.csv, in this order (the outputs contract)
TRACK_KEY_COLUMNS = [
    col.FRAME,
    col.TRACK_ID,
    col.POPULATION,
    col.T_S,
    col.Y,
    col.X,
    col.Y_UM,
    col.X_UM,
    col.AREA_UM2,
]


@dataclass
class RunResult:
    """What :func:`run_stack` did: where it wrote, counts, timings and warnings."""

    stack: Path
    out_dir: Path
    stages: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def input_checksum(path: str | Path, *, chunk: int = 1 << 22) -> str:
    """SHA-256 of a stack's bytes (a file, or every file of a folder in sorted order)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return "sha256:" + h.hexdigest()


def write_json_atomic(data: dict, path: str | Path) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    from .io import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
    return path


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("deathtrack", "numpy", "scipy", "scikit-image", "pandas", "tifffile", "trackpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover - a broken install
            out[pkg] = "not installed"
    return out


def write_table(df: pd.DataFrame, path: str | Path, table_format: str = "csv") -> Path:
    """Write a table atomically (temporary file, then rename) as CSV or Parquet."""
    path = Path(path)
    if table_format == "parquet":
        path = path.with_suffix(".parquet")
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            from .errors import ConfigError

            raise ConfigError(
                "output.table_format = 'parquet' needs pyarrow: pip install pyarrow, "
                "or use table_format = 'csv'"
            ) from None
    from .io import atomic_write, write_csv

    with atomic_write(path) as tmp:
        if table_format == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            write_csv(df, tmp)
    return path


def table_path(folder: str | Path, name: str) -> Path | None:
    """``folder/name.csv`` or ``folder/name.parquet`` (``output.table_format``), if present."""
    for suffix in (".csv", ".parquet"):
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def read_table(folder: str | Path, name: str) -> pd.DataFrame | None:
    """A table of a results folder written by :func:`write_table`; None if it is not there."""
    path = table_path(folder, name)
    if path is None:
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _sanitize_frame(frame: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """Non-finite pixels (NaN, ±inf) of each channel replaced by the median of its finite
    ones: (frame, how many were replaced, channels with no finite pixel at all)."""
    if frame.dtype.kind != "f":
        return frame, 0, []
    bad = ~np.isfinite(frame)
    n_bad = int(bad.sum())
    if not n_bad:
        return frame, 0, []
    frame = frame.copy()
    empty = []
    for c in range(frame.shape[0]):
        b = bad[c]
        if b.any():
            good = frame[c][~b]
            if not good.size:
                empty.append(c)
            frame[c][b] = np.median(good) if good.size else 0
    return frame, n_bad, empty


def _finite(image) -> np.ndarray:
    """One channel as float32, non-finite pixels replaced as :func:`_sanitize_frame` does."""
    return _sanitize_frame(np.asarray(image, dtype=np.float32)[None])[0][0]


def _segment_measure_frame(
    frame: np.ndarray, t: int, job: dict, given: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, pd.DataFrame], dict[str, Any]]:
    """Segment and measure one frame (C, Y, X): labels and object table per population, and
    notes on the frame's pixels.

    A pure function of its arguments, so it runs the same in a thread or in
    another process. ``given``: label images brought from another tool.
    Non-finite pixels are replaced (see :func:`_sanitize_frame`); a population
    whose channel is constant in this frame (no signal) gets no objects here.
    Notes: ``nonfinite`` (pixels replaced), ``no_finite`` (channels without a
    finite pixel), ``blank`` (population -> the constant value of its channel).
    """
    from .segment import crosstalk_ratio

    frame, n_bad, no_finite = _sanitize_frame(np.asarray(frame))
    notes: dict[str, Any] = {"nonfinite": n_bad, "no_finite": no_finite, "blank": {}}
    images = {pop: frame[job["roles"][pop]].astype(np.float32) for pop in job["populations"]}
    labels = {}
    for pop in job["populations"]:
        image = images[pop]
        lo, hi = float(image.min()), float(image.max())
        if pop in given:
            labels[pop] = given[pop]
        elif lo == hi:  # no signal: nothing to segment (a threshold would cut noise-free flat)
            notes["blank"][pop] = lo
            labels[pop] = np.zeros(image.shape, np.int32)
        else:
            labels[pop] = _segment(image, job, pop)
    own = [pop for pop in job["populations"] if pop not in given and pop not in notes["blank"]]
    unmixed: dict[str, tuple[str, float, float]] = {}
    if job.get("unmix") and len(job["populations"]) == 2 and own:
        # each population's channel may show the other's cells (crosstalk, bleed-through):
        # estimated in this frame from where the other's cells are, subtracted, and the
        # frame segmented again when it is there
        a, b = job["populations"]
        mask = {pop: labels[pop] > 0 for pop in (a, b)}
        for pop, other in ((a, b), (b, a)):
            ratio = crosstalk_ratio(images[pop], images[other], mask[other], mask[pop])
            if ratio > 0 and pop in own:
                bg = float(np.nanmedian(images[other][~mask[a] & ~mask[b]]))
                unmixed[pop] = (other, ratio, bg)
        for pop, (other, ratio, bg) in unmixed.items():
            images[pop] = images[pop] - ratio * (images[other] - bg)
            labels[pop] = _segment(images[pop], job, pop)
    tables = {pop: _measure(labels[pop], frame, t, job, pop) for pop in job["populations"]}
    for pop, how in unmixed.items():
        tables[pop].attrs["unmix"] = how  # (other population, ratio, its background)
    if job.get("dye_spots") is not None:
        notes["dye_spots"] = _dye_spots(frame, tables[col.CELLS], job)
    return labels, tables, notes


def _dye_spots(frame: np.ndarray, cells: pd.DataFrame, job: dict) -> np.ndarray:
    """The frame's dye-positive spots (:func:`deathtrack.death.find_dye_spots`), against
    the backgrounds measured with the cells, and with the reporter's crosstalk into the dye
    taken out at the ratio the frame's cells show (as :func:`detect_deaths` does)."""
    from .death import find_dye_spots, reporter_crosstalk

    dye, rep = frame[job["roles"][col.ROLE_DYE]], frame[job["roles"][col.ROLE_CELLS]]
    if len(cells):
        dye_bg = float(cells[f"{col.ROLE_DYE}_bg"].iloc[0])
        rep_bg = float(cells[f"{col.ROLE_CELLS}_bg"].iloc[0])
        ratio = reporter_crosstalk(
            (cells[f"{col.ROLE_CELLS}_mean"] - rep_bg).to_numpy(float),
            (cells[f"{col.ROLE_DYE}_mean"] - dye_bg).to_numpy(float),
        )
    else:
        dye_bg, rep_bg, ratio = float(np.median(dye)), float(np.median(rep)), 0.0
    return find_dye_spots(
        dye,
        rep,
        pixel_size_um=job["px"],
        dye_bg=dye_bg,
        reporter_bg=rep_bg,
        crosstalk=ratio,
        min_sd=job["dye_spots"],
    )


def _pack(labels: np.ndarray) -> bytes:
    """A label image compressed losslessly (Zstandard, via numcodecs, which zarr needs
    anyway): 4 MB of int32 labels of a 1024² frame become ~30 KB."""
    from numcodecs import Zstd

    # (Zstd cannot decode what it made of no bytes)
    return Zstd(level=1).encode(np.ascontiguousarray(labels)) if labels.size else b""


def _unpack(data: bytes, shape: tuple[int, ...], dtype) -> np.ndarray:
    """The writable label image :func:`_pack` made ``data`` of."""
    from numcodecs import Zstd

    out = np.zeros(shape, dtype)
    if data:
        Zstd().decode(data, out=out)
    return out


class _PackedLabels:
    """A label image compressed (:func:`_pack`) to travel between processes. ``unpack()``
    gives the array back."""

    def __init__(self, labels: np.ndarray):
        self.shape, self.dtype = labels.shape, labels.dtype
        self.data = _pack(labels)

    def unpack(self) -> np.ndarray:
        return _unpack(self.data, self.shape, self.dtype)  # writable, as the worker's was


class _LabelStore:
    """A run's raw label images (T, Y, X), one file per frame in a folder, compressed by
    :func:`_pack`; a frame never written reads as background.

    Not zarr: zarr 3 reads and writes through its own event-loop thread, handing each
    chunk over and back, and beside threads busy in Python every hand-off waits for
    Python's lock (reading 120 1024² label frames took 6.0 s instead of 0.4 s beside one
    busy thread). Here a frame is one file read and one decode, both without the lock.
    Picklable (a folder, a shape and a dtype): helper processes read it too.
    """

    def __init__(self, path: str | Path, shape: tuple[int, ...], dtype=np.int32):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.path.mkdir(parents=True, exist_ok=True)

    def _file(self, t: int) -> Path:
        if not 0 <= int(t) < self.shape[0]:
            raise IndexError(f"frame {t} is outside 0..{self.shape[0] - 1}")
        return self.path / f"{int(t):06d}.zst"

    def __setitem__(self, t: int, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=self.dtype)
        if labels.shape != self.shape[1:]:
            raise ValueError(f"label frame {t} has shape {labels.shape}, not {self.shape[1:]}")
        self._file(t).write_bytes(_pack(labels))

    def __getitem__(self, t: int) -> np.ndarray:
        try:
            data = self._file(t).read_bytes()
        except FileNotFoundError:
            data = b""  # never written: background
        return _unpack(data, self.shape[1:], self.dtype)


def _unpacked(labels) -> np.ndarray:
    return labels.unpack() if isinstance(labels, _PackedLabels) else labels


def _segment_measure_frame_packed(frame, t, job, given):
    """:func:`_segment_measure_frame` for a worker process: its label images travel back
    to the main process compressed (:class:`_PackedLabels`), so the frames in flight and
    the results waiting to be collected hold ~60 KB of labels each instead of ~8 MB."""
    labels, tables, notes = _segment_measure_frame(frame, t, job, given)
    return {pop: _PackedLabels(lab) for pop, lab in labels.items()}, tables, notes


def _segment(image: np.ndarray, job: dict, pop: str) -> np.ndarray:
    from .segment import segment_frame

    return segment_frame(image, job["configs"][pop], pixel_size_um=job["px"])


def _measure(labels: np.ndarray, frame: np.ndarray, t: int, job: dict, pop: str) -> pd.DataFrame:
    """One population's objects in frame ``t`` (C, Y, X), every channel measured."""
    from .measure import measure_frame

    names = job["names"]
    intensities = {names[c]: frame[c] for c in range(frame.shape[0])}
    return measure_frame(labels, intensities, frame=t, pixel_size_um=job["px"], population=pop)


def _measure_changed(
    table: pd.DataFrame,
    before: np.ndarray,
    after: np.ndarray,
    frame: np.ndarray,
    t: int,
    job: dict,
    pop: str,
) -> pd.DataFrame:
    """:func:`_measure` of ``after`` from ``table``, the measures of ``before``."""
    from .measure import measure_changed

    names = job["names"]
    intensities = {names[c]: frame[c] for c in range(frame.shape[0])}
    return measure_changed(
        table.drop(columns="carried", errors="ignore"),
        before,
        after,
        intensities,
        frame=t,
        pixel_size_um=job["px"],
        population=pop,
    )


class _Refiner:
    """Mends each frame's labels with the frames before as frames arrive in order
    (:class:`deathtrack.refine.Mender`): merged neighbours split, faded cells carried. A
    changed frame is measured again; every row gains ``carried``."""

    def __init__(self, movie, job: dict, given):
        from .refine import Mender

        self.movie, self.job = movie, job
        self.menders = {
            pop: Mender(job["configs"][pop], pixel_size_um=job["px"])
            for pop in job["populations"]
            if pop not in given
            and (job["configs"][pop].split_merged or job["configs"][pop].carry_objects)
        }
        self.changed = {pop: 0 for pop in self.menders}

    def __call__(self, t: int, labels: dict, tables: dict, raw: np.ndarray | None = None) -> None:
        """``raw``: frame ``t`` (C, Y, X) as read for segmenting it, when still at hand
        (read again from the file otherwise)."""
        frame = None
        for pop in self.job["populations"]:
            tables[pop]["carried"] = False
        for pop, mend in self.menders.items():
            how = tables[pop].attrs.get("unmix")
            dye = None
            if pop == col.CELLS and col.ROLE_DYE in self.job["roles"]:
                # a vanished cell whose outline shows the dye is kept as its ghost
                dye = lambda raw=raw: self._channel(col.ROLE_DYE, t, raw)  # noqa: E731
            lab, carried = mend(
                labels[pop],
                lambda pop=pop, how=how, raw=raw: self._image(pop, t, how, raw),
                dye,
            )
            if lab is not labels[pop]:
                self.changed[pop] += 1
                if frame is None:
                    whole = raw if raw is not None else np.asarray(self.movie.frame(t))
                    frame = _sanitize_frame(whole)[0]
                # only the mended objects measured again (and the frame's background)
                attrs = tables[pop].attrs  # the crosstalk taken out, for the pass back
                tables[pop] = _measure_changed(
                    tables[pop], labels[pop], lab, frame, t, self.job, pop
                )
                tables[pop].attrs = attrs
                labels[pop] = lab
                tables[pop]["carried"] = tables[pop][col.LABEL].isin(list(carried))

    def _image(self, pop: str, t: int, how, raw: np.ndarray | None) -> np.ndarray:
        """The population's channel at ``t``, with the other's crosstalk taken out as it
        was for segmenting (``how``: from :func:`_segment_measure_frame`)."""

        image = self._channel(pop, t, raw)
        if how is not None:
            other, ratio, bg = how
            image = image - ratio * (self._channel(other, t, raw) - bg)
        return image

    def _channel(self, role: str, t: int, raw: np.ndarray | None) -> np.ndarray:
        c = self.job["roles"][role]
        return _finite(raw[c] if raw is not None else self.movie.read(c, t))

    def backward(self, stores: dict, tables: dict, progress: bool) -> None:
        """Mend every frame again with the frame after it, from the last back
        (:func:`deathtrack.refine.mends_later`): two cells seen apart later are split where
        they were merged before. ``stores``: each population's labels
        (:class:`_LabelStore`), ``tables``: its objects, one table per frame in order;
        both updated in place for the frames it changes."""
        from tqdm.auto import tqdm

        from .refine import Mender, mends_later

        n = self.movie.n_frames
        for pop in [p for p in self.menders if mends_later(self.job["configs"][p])]:
            back = Mender(self.job["configs"][pop], pixel_size_um=self.job["px"], seen_only=True)
            changed = 0
            for t in tqdm(
                range(n - 1, -1, -1), desc=f"mend {pop} back", unit="frame", disable=not progress
            ):
                labels, table = stores[pop][t], tables[pop][t]
                how = table.attrs.get("unmix")
                read = functools.cache(lambda t=t: np.asarray(self.movie.frame(t)))
                # the frame is read once, and only for a split (then measured again)
                lab, _ = back(
                    labels, lambda p=pop, t=t, how=how, read=read: self._image(p, t, how, read())
                )
                if lab is labels:
                    continue
                changed += 1
                frame = _sanitize_frame(read())[0]
                carried = set(table.loc[table["carried"], col.LABEL])
                new = _measure_changed(table, labels, lab, frame, t, self.job, pop)
                new["carried"] = new[col.LABEL].isin(list(carried))
                new.attrs = table.attrs
                tables[pop][t], stores[pop][t] = new, lab
            logger.info("%s: %d of %d frames mended from the last frame back", pop, changed, n)

    def log(self) -> None:
        for pop, n in self.changed.items():
            logger.info("%s: %d of %d frames mended over time", pop, n, self.movie.n_frames)


#: frames smaller than this (pixels) are always segmented in threads with
#: ``segment.parallel = "auto"`` (starting processes costs more than it saves on them);
#: larger ones too in most runs (see :func:`_auto_parallel`)
PROCESS_MIN_PIXELS = 512 * 512
#: ``segment.parallel = "auto"`` keeps large 2D frames in threads up to this many workers
AUTO_THREADS_MAX_WORKERS = 2


#: imported in the background while worker processes segment (the main process waits):
#: the later stages' libraries take ~2 s to import
WARM_IMPORTS = (
    "trackpy",
    "scipy.stats",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "deathtrack.track",
    "deathtrack.death",
    "deathtrack.recruit",
    "deathtrack.motility",
    "deathtrack.export",
    "deathtrack.report",
)


def _import_modules(names: Sequence[str]) -> None:
    """Import ``names`` in order (trackpy by :func:`deathtrack.track.import_trackpy`)."""
    import importlib

    for name in names:
        if name == "trackpy":
            from .track import import_trackpy

            import_trackpy()
        else:
            importlib.import_module(name)


def _warm_imports() -> None:
    import threading

    def run():
        try:
            _import_modules(WARM_IMPORTS)
        except Exception:  # pragma: no cover - the stage will raise it properly
            return

    # not a daemon: the interpreter waits for it on exit (a second or two at most), rather
    # than stopping it inside an extension module's C++ initialisation, which aborts
    threading.Thread(target=run, name="deathtrack-warm-imports").start()


def _may_start_processes() -> bool:
    """False inside a daemonic process (e.g. a Dask worker process), which may not start
    children."""
    import multiprocessing as mp

    return not mp.current_process().daemon


def _auto_parallel(frame_pixels: int, workers: int, volumes: bool) -> str:
    """ "threads" or "processes" for ``segment.parallel = "auto"``.

    Threads for small frames (a process's start costs more than it saves) and, in a run
    from this process's main thread (the command line, a script, a Dask worker), for 2D
    frames of any size with up to :data:`AUTO_THREADS_MAX_WORKERS` workers: about a fifth
    of a frame's work holds Python's lock, so two frame threads keep two cores busy; on
    the 1024² benchmark movie they segmented as fast as this process beside a helper
    process (60 frames: 19.8-23.5 s against 22.8-24.4 s; 120 frames: 41.2-49.8 s against
    53.1-55.0 s) in one process of ~530 MB instead of ~850 MB over four. Processes with
    more workers (more threads would wait on the lock), for z-stacks (not measured in
    threads), and for a run from another thread (napari's: frame threads would hold the
    lock against the viewer's)."""
    import threading

    if frame_pixels < PROCESS_MIN_PIXELS:
        return "threads"
    here = threading.current_thread() is threading.main_thread()
    if here and not volumes and workers <= AUTO_THREADS_MAX_WORKERS:
        return "threads"
    return "processes"


def _frame_backend(
    seg_cfg, frame_pixels: int, n_frames: int, *, volumes: bool = False
) -> tuple[str | None, int]:
    """("loky": helper processes, "threading": threads, or None for a plain loop; the
    number of workers) for the frames (z-stacks with ``volumes``; ``frame_pixels`` their
    voxels)."""
    workers = min(seg_cfg.workers, max(n_frames, 1))
    if workers <= 1:
        return None, 1
    mode = seg_cfg.parallel
    if mode == "auto":
        mode = _auto_parallel(frame_pixels, workers, volumes)
    if mode == "processes" and not _may_start_processes():
        logger.info("segmenting frames in threads: this process may not start processes")
        mode = "threads"
    # loky (joblib's process pool) reuses its workers across stacks, limits their BLAS
    # threads, and never re-runs the caller's script in them (no __main__ guard needed)
    return ("loky" if mode == "processes" else "threading"), workers


def _helper_count(workers: int) -> int:
    """Helper processes beside this one for ``workers`` processes at work: ``workers - 1``
    when this process works too, from its main thread (the command line, a script); all
    ``workers`` when called from another thread (napari's worker thread: frames
    segmented there would hold Python's lock against the viewer's own thread)."""
    import threading

    here = threading.current_thread() is threading.main_thread()
    return max(workers - 1, 0) if here else workers


def _one_blas_thread(beside_others: bool) -> Callable[[], None]:
    """Limit this process to one BLAS thread while it works ``beside_others``: helper
    processes (loky limits each of them so too) or frame threads of its own; returns the
    function that lifts the limit.

    OpenBLAS's threads wait for work by spinning: two of them in this process took ~13 s
    of CPU from the helper over a 60-frame 1024² run (109 s of CPU against 95 s). Frame
    threads each fit the background (NumPy's least squares, which holds Python's lock
    while OpenBLAS's threads spin on the cores the other frame needs): one BLAS thread cut
    the segmentation of a 273×320, 37-frame movie from 5.6 to 4.5-5.1 s and of the
    60-frame 1024² movie by ~5 %."""
    if not beside_others:
        return lambda: None
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas").restore_original_limits


def _helper_pool(helpers: int):
    """The pool of ``helpers`` helper processes: joblib's reusable loky pool, shared by
    the frames of 2D and 3D runs, the output writers and the report's gallery (one pool
    of one size, so loky never restarts or resizes it between them): BLAS threads
    limited; a helper left idle stops after 300 s (loky's default, 10 s, would restart
    it, imports and all, while it waits); arrays pickled, never memory-mapped read-only
    (``max_nbytes=None``)."""
    from joblib.executor import get_memmapping_executor

    return get_memmapping_executor(helpers, timeout=300, max_nbytes=None)


class _Task:
    """A function handed to a helper process, or run here when there is none or when
    its result is needed before a helper has started it (:meth:`steal`): this process
    never waits idle for a queue it could empty itself."""

    def __init__(self, pool, func: Callable, *args, **kwargs):
        self._call = (func, args, kwargs)
        self._future = pool.submit(func, *args, **kwargs) if pool is not None else None
        self._done = False
        self._value = self._error = None

    def _take_back(self) -> bool:
        """Whether it is this process's to run or drop: not done, and no helper has
        started it (its place in the helpers' queue is given up)."""
        if self._done or (self._future is not None and not self._future.cancel()):
            return False
        self._future = None
        return True

    def steal(self) -> bool:
        """Run the function here if no helper has started it; whether it ran here."""
        if not self._take_back():
            return False
        func, args, kwargs = self._call
        try:
            self._value = func(*args, **kwargs)
        except Exception as err:
            self._error = err
        self._done = True
        return True

    def cancel(self) -> bool:
        """Drop it if it has not started; whether it was dropped."""
        if not self._take_back():
            return False
        self._done, self._error = True, RuntimeError("cancelled")
        return True

    def result(self):
        """Its value (run here if no helper started it), or its error re-raised."""
        if not self._done and not self.steal():
            self._value, self._done = self._future.result(), True
        if self._error is not None:
            raise self._error
        return self._value


#: what the helpers import for the work after the frames (output writers, the gallery)
TAIL_IMPORTS = ("deathtrack.pipeline", "deathtrack.export", "deathtrack.report", "tifffile")


def _fresh_helpers(helpers: int) -> None:
    """Replace the helper processes that segmented the frames with new ones for the rest
    of the run (the output writers and the report's gallery, :func:`_submit`). A helper
    that segmented holds ~300 MB (numba's compiler and kernels, the segmentation's
    libraries, its heap); a new one 150-190 MB with what the writers and the gallery need
    (no numba: :func:`deathtrack.track.relabel_frame`), on the 1024² benchmark movie.
    They start now and import (:data:`TAIL_IMPORTS`) while this process links the
    tracks and calls the deaths, on the core the frames no longer use. The next movie's
    frames (a batch) import the rest again in them."""
    if not helpers or not _may_start_processes():
        return
    _helper_pool(helpers).shutdown(wait=True)
    pool = _helper_pool(helpers)  # loky makes a new one in place of the one shut down
    for _ in range(helpers):
        pool.submit(_import_modules, TAIL_IMPORTS)


_THREADS: dict[int, Any] = {}  # helper threads (:func:`_helper_threads`), by count


def _helper_threads(helpers: int):
    """A pool of ``helpers`` helper threads for the work after the frames of a run whose
    frames were segmented in threads (:func:`_aside`), kept for the next runs of this
    process: the run stays one process (no helper process's imports and heap, ~150-210
    MB on the 1024² benchmark movie, nor loky's two resource trackers, ~50 MB)."""
    from concurrent.futures import ThreadPoolExecutor

    if helpers not in _THREADS:
        _THREADS[helpers] = ThreadPoolExecutor(helpers, thread_name_prefix="deathtrack-aside")
    return _THREADS[helpers]


def frames_in(backend: str | None) -> str:
    """run.json's ``frames_in``: "processes", "threads" or "this thread" for a backend of
    :func:`_frame_backend` (the report's gallery is made the same way)."""
    return {"loky": "processes", "threading": "threads"}.get(backend, "this thread")


def _aside(backend: str | None, workers: int):
    """Where a run puts the work beside its own (:func:`_submit`): helper processes
    (their number) when its frames had them, helper threads (a pool) when its frames
    were in threads, 0 (nothing beside: this process does it all) with one worker."""
    helpers = _helper_count(workers) if backend else 0
    return _helper_threads(helpers) if backend == "threading" and helpers else helpers


def _submit(helpers, func: Callable, *args, **kwargs) -> _Task:
    """Hand ``func`` to one of ``helpers`` helper processes (an int: see
    :func:`_helper_pool`) or to a pool of helper threads (:func:`_helper_threads`), or keep
    it for this process when ``helpers`` is 0 or this process may not start others;
    ``.result()`` returns its value or re-raises its error either way."""
    if not isinstance(helpers, int):
        return _Task(helpers, func, *args, **kwargs)
    pool = _helper_pool(helpers) if helpers and _may_start_processes() else None
    return _Task(pool, func, *args, **kwargs)


def _gather(tasks: Sequence[_Task]) -> list:
    """The tasks' values in order; those no helper has started yet run here first, the
    last ones first (the helpers take the queue from its front)."""
    for task in reversed(tasks):
        task.steal()
    return [task.result() for task in tasks]


def _segment_movie(
    movie,
    cfg: PipelineConfig,
    work: Path,
    populations,
    progress: bool,
    on_progress=None,
    *,
    backend: str | None,
    workers: int,
):
    """Segment and measure every frame; raw labels go to a :class:`_LabelStore` in
    ``work``.

    Frames are processed by ``cfg.segment.workers`` threads or worker processes
    (:func:`_auto_parallel`); a few frames are in flight at a time, so memory does not
    grow with the number of frames. Results are the same whatever the workers.
    ``backend, workers``: from :func:`_frame_backend`.

    Returns (objects per population, label stores, notes per frame).
    """
    from tqdm.auto import tqdm

    from .segment import read_label_stack

    px = movie.calibration.pixel_size_um
    ny, nx = movie.shape[-2:]
    stores = {
        pop: _LabelStore(work / f"labels_{pop}", (movie.n_frames, ny, nx)) for pop in populations
    }
    job = {
        "names": _channel_keys(movie),
        "px": px,
        "populations": list(populations),
        "roles": dict(movie.roles),
        "configs": {pop: getattr(cfg.segment, pop) for pop in populations},
        "unmix": cfg.segment.unmix,
        # the dye's spots, for the deaths only the dye shows
        "dye_spots": (
            cfg.death.onset_min_sd
            if cfg.death.dye_onsets and col.ROLE_DYE in movie.roles and col.CELLS in populations
            else None
        ),
    }
    given = {}  # bring-your-own label stacks (Cellpose, StarDist, ...), read frame by frame
    for pop in populations:
        pop_cfg = getattr(cfg.segment, pop)
        if pop_cfg.method == "labels":
            given[pop] = read_label_stack(
                pop_cfg.labels_path, expect_shape=(movie.n_frames, ny, nx)
            )

    # frames read for the workers, kept until collected: mending and measuring again
    # need them too (a few frames, as many as are in flight; decoding one costs ~70 ms)
    at_hand: dict[int, np.ndarray] = {}

    def inputs(t: int):
        at_hand[t] = np.asarray(movie.frame(t))
        return at_hand[t], t, job, {pop: g[t] for pop, g in given.items()}

    tables: dict[str, list[pd.DataFrame]] = {pop: [] for pop in populations}
    frame_notes: list[dict] = []

    refine = _Refiner(movie, job, given)

    def collect(t: int, labels, tabs, notes) -> None:
        refine(t, labels, tabs, at_hand.pop(t, None))
        for pop in populations:
            stores[pop][t] = labels[pop]
            tables[pop].append(tabs[pop])
        frame_notes.append(notes)
        bar.update()
        if on_progress is not None:
            on_progress("segment", t + 1, movie.n_frames)

    n = movie.n_frames
    bar = tqdm(total=n, desc="segment", unit="frame", disable=not progress)
    threads = None
    pending: dict = {}  # a helper's or thread's frame (future) -> its frame index
    try:
        if backend is None:
            for t in range(n):
                collect(t, *_segment_measure_frame(*inputs(t)))
        elif backend == "loky":
            helpers = _helper_count(workers)
            _segment_with_helpers(n, inputs, collect, helpers, pending, here=helpers < workers)
        else:
            from concurrent.futures import ThreadPoolExecutor

            # joined when the interpreter exits, unlike joblib's threading backend's threads
            threads = ThreadPoolExecutor(workers, thread_name_prefix="deathtrack-frame")
            _segment_in_threads(n, inputs, collect, threads, workers, pending)
    finally:
        # on Ctrl-C or a GUI's Cancel, the frames not started are dropped and those started
        # are waited for: a frame thread still at work when the interpreter exits is stopped
        # inside numpy's C++ and aborts the process (SIGTERM, exit status -6 instead of 143)
        for future in pending:
            future.cancel()
        if pending:  # frames a helper or thread has started: a second or so
            from concurrent.futures import wait as wait_for

            wait_for(list(pending))
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        bar.close()
        for stack in given.values():
            stack.close()
    refine.log()
    refine.backward(stores, tables, progress)
    objects = {pop: pd.concat(dfs, ignore_index=True) for pop, dfs in tables.items()}
    return objects, stores, frame_notes


def _segment_in_threads(
    n: int, inputs: Callable, collect: Callable, threads, workers: int, pending: dict
) -> None:
    """Segment frames ``0 .. n - 1`` in ``threads`` (an executor of ``workers`` threads),
    two frames in hand per thread (threads share memory: frames are read as threads free
    up), handing each result to ``collect`` in frame order. ``pending`` as in
    :func:`_segment_with_helpers` (frames are submitted, and so listed, in order)."""
    next_t = 0
    for t in range(n):
        while next_t < n and len(pending) < 2 * workers:
            pending[threads.submit(_segment_measure_frame, *inputs(next_t))] = next_t
            next_t += 1
        oldest = next(iter(pending))
        result = oldest.result()
        del pending[oldest]
        collect(t, *result)


def _segment_with_helpers(
    n: int, inputs: Callable, collect: Callable, helpers: int, pending: dict, *, here: bool
) -> None:
    """Segment frames ``0 .. n - 1`` in ``helpers`` helper processes and, with ``here``,
    in this process too, handing each result to ``collect`` in frame order (mending over
    time needs them so).

    Each helper has three frames at a time (the one it works on and two more, so it never
    waits while this process segments, mends and measures; with two, the segmentation of
    the 60-frame 1024² movie took ~2 s longer); this process takes the next frame
    itself. One process fewer than a coordinator beside its workers: ~300 MB of imports
    and buffers less.
    ``pending`` (empty, filled here): the helpers' frames in flight (future -> frame), for
    the caller to cancel when this is interrupted."""
    from concurrent.futures import FIRST_COMPLETED
    from concurrent.futures import wait as wait_for

    pool = _helper_pool(helpers)
    # the later stages' imports, in a thread, while the frames are segmented (after
    # joblib's own imports, so two threads never import the same module at once)
    _warm_imports()
    done: dict[int, tuple] = {}
    next_t = next_collect = 0
    while next_collect < n:
        while len(pending) < 3 * helpers and next_t < n:
            pending[pool.submit(_segment_measure_frame_packed, *inputs(next_t))] = next_t
            next_t += 1
        if here and next_t < n:  # this process takes the next frame itself
            t, next_t = next_t, next_t + 1
            done[t] = _segment_measure_frame(*inputs(t))
            ready = [f for f in pending if f.done()]
        else:  # no frame left for this process: wait for a helper
            ready = wait_for(list(pending), return_when=FIRST_COMPLETED).done
        for future in ready:
            labels, tabs, notes = future.result()
            labels = {pop: _unpacked(lab) for pop, lab in labels.items()}
            done[pending.pop(future)] = (labels, tabs, notes)
        while next_collect in done:
            collect(next_collect, *done.pop(next_collect))
            next_collect += 1


def _channel_keys(movie) -> list[str]:
    """Column prefix of each channel's intensities: its role, else its name."""
    by_index = {idx: role for role, idx in movie.roles.items()}
    keys = []
    for c, name in enumerate(movie.channel_names):
        key = by_index.get(c) or "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        keys.append(key if key not in keys else f"{key}_{c}")
    return keys


#: tables of a stack folder written by a run (``.csv``, or ``.parquet`` with
#: ``output.table_format = "parquet"``), and its other files
OUTPUT_TABLES = ("tracks", "events", "recruitment", "recruitment_stats", "lineage", "motility")
OUTPUT_FILES = ("labels_cells.tif", "labels_immune.tif", "tracks.xml", "report.html")
#: written by a run, but also by a person's review afterwards: never checksummed, never
#: removed (it holds reviewed labels that found no event)
REVIEWS_UNMATCHED = "reviews_unmatched.csv"

#: the largest frame, in pixels, a stage may allocate once padded by the largest
#: neighbourhood a parameter sets (a background radius, a smoothing, a dilation): 2**28
#: pixels are 1 GiB as float32
MAX_FRAME_PIXELS = 2**28


def new_run_id() -> str:
    """An id for one run: UTC time, host and process id (``20260105T101530Z-host-1234``)."""
    import os
    import socket

    when = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{when}-{socket.gethostname()}-{os.getpid()}"


def _input_stat(path: Path) -> tuple:
    """Sizes and modification times of a stack's files: to see it change during a run."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def file_record(path: Path) -> dict[str, Any]:
    """Size and SHA-256 of a file (``run.json["outputs"]``)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def events_key(path: Path) -> str | None:
    """SHA-256 of the automatic part of an events table: every column but the review
    columns, every row but the deaths a person added (no ``track_id``), as text.

    A review in napari rewrites ``events.csv`` (new columns, added rows) but leaves this
    part unchanged, so a reviewed folder still counts as complete.
    """
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path).astype(str)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    df = df[[c for c in df.columns if c not in col.REVIEW_COLUMNS]]
    if col.TRACK_ID in df.columns:
        df = df[~df[col.TRACK_ID].isin(["", "nan", "NaN", "<NA>", "None"])]
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def _known_outputs() -> list[str]:
    return [f"{t}{sfx}" for t in OUTPUT_TABLES for sfx in (".csv", ".parquet")] + list(OUTPUT_FILES)


def _commit(staged: Path, folder: Path, run_info: dict) -> None:
    """Move a finished run's files from ``staged`` into ``folder``, then write run.json.

    ``run.json`` is removed first and written last, with the size and SHA-256 of
    every file: whatever moment a run is killed at, the folder either is complete
    for one input and one config, or has no run.json (and is redone).
    """
    import os

    names = sorted(p.name for p in staged.iterdir() if p.is_file())
    outputs = {}
    for name in names:
        if name == REVIEWS_UNMATCHED:
            continue
        outputs[name] = file_record(staged / name)
        if name.startswith("events."):
            outputs[name]["events_key"] = events_key(staged / name)
    run_info["outputs"] = outputs
    # from here until run.json is back, the folder is incomplete
    (folder / "run.json").unlink(missing_ok=True)
    for name in _known_outputs():  # an earlier run's files this run does not write
        if name not in outputs:
            (folder / name).unlink(missing_ok=True)
    for name in names:
        os.replace(staged / name, folder / name)
    write_json_atomic(run_info, folder / "run.json")


def outputs_intact(folder: str | Path, run_info: dict, *, verify: str = "sha256") -> bool:
    """Whether the files ``run_info["outputs"]`` lists are in ``folder`` as written.

    ``verify``: ``"sha256"`` (size and checksum of every file) or ``"size"`` (sizes
    only: quick). ``events`` may differ by a review (see :func:`events_key`).
    """
    folder = Path(folder)
    outputs = run_info.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False  # written by an older deathtrack, or not by a run at all
    for name, rec in outputs.items():
        path = folder / name
        if not isinstance(rec, dict) or not path.is_file():
            return False
        same = path.stat().st_size == rec.get("bytes")
        if same and verify == "sha256":
            same = file_record(path)["sha256"] == rec.get("sha256")
        if not same:
            if not (name.startswith("events.") and rec.get("events_key")):
                return False
            if events_key(path) != rec["events_key"]:
                return False
    return True


def _work_folder(out_dir: Path) -> Path:
    """A new name for a run's work folder in ``out_dir`` (``.work-*``), to create once the
    caller holds the name: a signal between the folder's creation and its name being
    set would leave it behind."""
    from .io import WORK_PREFIX

    return out_dir / f"{WORK_PREFIX}{secrets.token_hex(6)}"


def _settle_zarr_writes(timeout_s: float = 10.0) -> None:
    """Wait for the writes still running in zarr's I/O thread.

    zarr 3 writes in a thread of its own while the caller waits; when Ctrl-C or SIGTERM
    interrupts the wait, the write goes on, and can put a file back (``zarr.json``, a
    chunk) into a work folder just removed (seen once in ~40 runs SIGTERMed on a busy
    machine). zarr's loop is internal API: if it is not where it was, nothing is waited
    for (the next run into the folder removes what is left: ``remove_stale_work``)."""
    import asyncio

    try:
        from zarr.core import sync as zarr_sync

        loop = zarr_sync.loop[0]
    except (ImportError, AttributeError, IndexError, TypeError):
        return
    if loop is None or not loop.is_running():
        return

    async def others_done():
        me = asyncio.current_task()
        rest = [task for task in asyncio.all_tasks() if task is not me]
        if rest:
            await asyncio.wait(rest)

    try:
        asyncio.run_coroutine_threadsafe(others_done(), loop).result(timeout_s)
    except Exception:  # a timeout, a loop closing: remove what can be removed
        pass


def _remove_tree(path: Path) -> None:
    """Remove a work folder, even when Ctrl-C or SIGTERM lands while it is being removed,
    and after the label stores' writes still under way (:func:`_settle_zarr_writes`)."""
    import shutil

    try:
        _settle_zarr_writes()
        shutil.rmtree(path, ignore_errors=True)
    except KeyboardInterrupt:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _check_allocation(movie, cfg: PipelineConfig, populations) -> None:
    """Refuse a pixel size and parameters that would make a stage allocate a padded frame
    larger than :data:`MAX_FRAME_PIXELS`."""
    from .errors import CalibrationError

    px = movie.calibration.pixel_size_um
    ny, nx = movie.shape[-2:]
    # (what, µm, how many times that a stage pads or filters the frame by)
    sizes: list[tuple[str, float, float]] = []
    for pop in populations:
        seg = getattr(cfg.segment, pop)
        if seg.method != "threshold":
            continue
        key = f"segment.{pop}"
        sizes += [
            (f"{key}.background_radius_um", seg.background_radius_um, 1.0),
            (f"{key}.smooth_sigma_um", seg.smooth_sigma_um, 4.0),
            (f"{key}.dim_smooth_sigma_um", seg.dim_smooth_sigma_um, 4.0),
            (f"{key}.fragment_gap_um", seg.fragment_gap_um, 1.0),
            # ('auto' follows the objects, at most 20 µm: below the background's reach)
            (
                f"{key}.min_distance_um",
                0.0 if seg.min_distance_um == "auto" else seg.min_distance_um,
                2.0,
            ),
            (f"{key}.carry_reach_um", seg.carry_reach_um + 15.0, 1.0),
            ("the smoothing that weighs the seeds", 1.0, 4.0),
        ]
    sizes.append(("recruit.contact_tolerance_um", cfg.recruit.contact_tolerance_um, 1.0))
    what, um, factor = max(sizes, key=lambda s: s[1] * s[2])
    pad = um * factor / px
    n = (ny + 2 * pad) * (nx + 2 * pad)
    if n > MAX_FRAME_PIXELS:
        lower = f" or lower {what}" if what.endswith("_um") else ""
        raise CalibrationError(
            f"{movie.path}: at a pixel size of {px:g} µm, {what} ({um:g} µm) spans "
            f"{um / px:.3g} pixels: a {ny} x {nx} frame padded for it would hold {n:.3g} "
            f"pixels, above deathtrack's bound of {MAX_FRAME_PIXELS:,} pixels; check the pixel "
            f"size (--pixel-size UM){lower}"
        )


def _preflight(movie, cfg: PipelineConfig, export_ctc) -> tuple[list[str], list[str]]:
    """Everything that can be checked before any pixel is analysed: (populations, warnings)."""
    movie.require_calibration(
        "pixel_size_um",
        "interval_s",
        reason="sizes are in µm and speeds in µm/min (segmentation and tracking)",
    )
    warns = list(movie.warnings) + movie.check_calibration(force=cfg.input.force_calibration)
    if movie.is_3d:  # z-stacks: deathtrack.pipeline3d (issue 17)
        from .pipeline3d import check_z_step

        check_z_step(movie)
    populations = [p for p in (col.CELLS, col.IMMUNE) if p in movie.roles]
    _check_allocation(movie, cfg, populations)
    if cfg.death.classifier:
        from .classify import load_model

        load_model(cfg.death.classifier)  # a bad model file fails now, not after segmenting
    if export_ctc is not None:
        from .io import ensure_folder

        ensure_folder(export_ctc, "--export-ctc folder")
    return populations, warns


def _channel_text(movie, pop: str) -> str:
    c = movie.roles[pop]
    return f"channel {c} ({movie.channel_names[c]!r})"


def _frames_text(frames: list[int]) -> str:
    shown = ", ".join(map(str, frames[:10]))
    return shown + (f", ... ({len(frames)} frames)" if len(frames) > 10 else "")


def _dye_spots_of(frame_notes: list[dict]) -> list[np.ndarray] | None:
    """Every frame's dye spots, when they were looked for (None otherwise)."""
    spots = [f.get("dye_spots") for f in frame_notes]
    return None if not spots or any(s is None for s in spots) else spots


def _check_signal(movie, cfg, objects, frame_notes, populations, result) -> None:
    """Named failures for a stack without signal or without cells; warnings for frames
    without signal, replaced non-finite pixels and an empty immune channel."""
    from .errors import NoCellsError, NoSignalError

    n = movie.n_frames
    n_bad = sum(f["nonfinite"] for f in frame_notes)
    if n_bad:
        frames = [t for t, f in enumerate(frame_notes) if f["nonfinite"]]
        result.warnings.append(
            f"{n_bad} non-finite pixel value(s) (NaN, ±inf) in frame(s) {_frames_text(frames)} "
            "were replaced by the median of their channel's frame"
        )
    for pop in populations:
        if getattr(cfg.segment, pop).method == "labels":
            continue
        blank = [t for t, f in enumerate(frame_notes) if pop in f["blank"]]
        where = _channel_text(movie, pop)
        if n and len(blank) == n and pop == col.CELLS:
            c = movie.roles[pop]
            if all(c in f["no_finite"] for f in frame_notes):
                what = "has no finite value (all NaN or ±inf)"
            else:
                values = {f["blank"][pop] for f in frame_notes}
                what = (
                    "is all zero"
                    if values == {0.0}
                    else f"is constant ({', '.join(f'{v:g}' for v in sorted(values)[:3])})"
                )
            raise NoSignalError(
                f"{movie.path}: no signal: {where}, the target cells' channel, {what} in every "
                f"frame; check the file, and that --channel cells=INDEX|NAME names the "
                "target-cell marker"
            )
        if blank:
            result.warnings.append(
                f"no signal in {where} ({pop}) in frame(s) {_frames_text(blank)}: the channel "
                "is constant there, nothing was segmented"
            )
    if col.CELLS in objects and objects[col.CELLS].empty:
        seg = cfg.segment.cells
        hint = (
            f"or lower segment.cells.noise_k (now {seg.noise_k:g}) for a faint marker"
            if seg.method == "threshold" and seg.threshold == "noise"
            else "or check the segmentation settings (segment.cells)"
        )
        raise NoCellsError(
            f"{movie.path}: no cells: segmentation found no target cell in any of the {n} "
            f"frame(s) of {_channel_text(movie, col.CELLS)}; check that --channel "
            f"cells=INDEX|NAME names the target-cell marker, {hint}"
        )
    if col.IMMUNE in objects and objects[col.IMMUNE].empty:
        result.warnings.append(
            f"no immune cells found in {_channel_text(movie, col.IMMUNE)}: recruitment is empty"
        )


def _link(objects, pop: str, cfg: PipelineConfig, movie) -> pd.DataFrame:
    """:func:`deathtrack.track.link_objects`, with trackpy giving up made a clear error."""
    from .errors import StackDataError
    from .track import link_objects, search_range_um

    track_cfg = getattr(cfg.track, pop)
    interval = movie.calibration.interval_s
    try:
        return link_objects(objects[pop], track_cfg, interval_s=interval)
    except Exception as err:
        if type(err).__name__ != "SubnetOversizeException":
            raise
        search = search_range_um(track_cfg, interval)
        raise StackDataError(
            f"{movie.path}: tracking the {pop} failed: a search range of {search:.3g} µm "
            f"(track.{pop}.max_speed_um_per_min = {track_cfg.max_speed_um_per_min:g} µm/min "
            f"over the {interval:g} s between frames) is too large for these data (trackpy: "
            f"{err}); check --interval, or lower track.{pop}.max_speed_um_per_min"
        ) from None


def run_stack(
    stack: str | Path,
    config: PipelineConfig | None = None,
    out_dir: str | Path = "results",
    *,
    progress: bool = True,
    export_ctc: str | Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    lock: bool = True,
    run_id: str | None = None,
) -> RunResult:
    """Analyse one stack and write ``out_dir/<stem>/``.

    Stages: segment and measure each population (``cells``, and ``immune``
    when that role exists), link tracks, find divisions, detect and classify
    deaths, measure recruitment; write the tables, ``labels_cells.tif``,
    ``labels_immune.tif``, ``tracks.xml`` and ``run.json``.

    Everything that can be checked before analysis is checked first
    (calibration, square pixels, sizes in pixels, the classifier file). Outputs
    are written into a work folder and moved into ``out_dir/<stem>/`` at the
    end, ``run.json`` (with the size and SHA-256 of every file) last: the folder
    of a failed or interrupted run keeps its earlier complete results, or has no
    ``run.json``.

    Parameters
    ----------
    stack
        Path of the stack (OME-TIFF, TIFF, folder of TIFFs, OME-Zarr).
    config
        Pipeline parameters; defaults to :class:`PipelineConfig()`.
    out_dir
        Results folder; this stack's outputs go to ``out_dir/<stem>/``.
    progress
        Show progress bars.
    export_ctc
        Also write the target-cell tracks in Cell Tracking Challenge format to
        ``export_ctc/<stem>_RES/`` (``maskTTT.tif``, ``res_track.txt``) for
        traccuracy, py-ctcmetrics and the CTC evaluation tools.
    on_progress
        Called as ``on_progress(stage, done, total)`` after each frame is
        segmented and once as each later stage starts (``done`` = 0). An
        exception raised inside it (e.g. a GUI's Cancel) stops the run;
        finished output files are kept, nothing half-written is left.
    lock
        Hold the lock of ``out_dir`` (:func:`deathtrack.io.results_lock`) while
        writing; ``False`` when the caller holds it (a batch run).
    run_id
        Recorded in ``run.json``; a new one by default (:func:`new_run_id`).

    Returns
    -------
    RunResult

    Raises
    ------
    DeathtrackError
        A problem with the input, its calibration, its pixels (no signal, no
        cells), the config or the results folder: the message says what to do.
    """
    import contextlib

    from .death import detect_deaths
    from .errors import StackChangedError
    from .io import (
        ensure_folder,
        open_input,
        remove_stale_work,
        results_lock,
        stack_stem,
    )
    from .track import find_divisions, relabel_frames

    cfg = config or PipelineConfig()
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = RunResult(stack=Path(stack), out_dir=Path(out_dir) / stack_stem(stack))
    fmt = cfg.output.table_format

    t0 = time.perf_counter()
    with open_input(stack, cfg.input) as movie:
        info = movie.info()
        result.timings_s["open"] = time.perf_counter() - t0
        populations, pre_warnings = _preflight(movie, cfg, export_ctc)
        result.warnings.extend(pre_warnings)
        if col.IMMUNE not in populations:
            result.warnings.append(
                "no immune channel: immune cells are not segmented; recruitment needs "
                "--channel immune=INDEX|NAME"
            )
        result.counts.update(n_frames=movie.n_frames, n_channels=movie.n_channels)
        if movie.is_3d:  # z-stacks: the 3D stages of deathtrack.pipeline3d (issue 17)
            from .pipeline3d import run_movie_3d

            return run_movie_3d(
                movie,
                stack,
                cfg,
                out_dir,
                result,
                info=info,
                populations=populations,
                progress=progress,
                export_ctc=export_ctc,
                on_progress=on_progress,
                lock=lock,
                run_id=run_id,
                t_start=t_start,
                started=started,
            )
        stat_before = _input_stat(Path(stack))
        held = results_lock(out_dir) if lock else contextlib.nullcontext()
        with held:
            ensure_folder(result.out_dir, "results folder")
            for p in remove_stale_work(result.out_dir):
                logger.info("%s: removed %s, left by a run that was killed", stack, p.name)
            pending: list = []  # output files being written by helper processes or threads
            work = None
            lift_blas_limit = _one_blas_thread(False)
            try:
                work = _work_folder(result.out_dir)
                work.mkdir()
                staged = work / "out"  # the outputs, moved into the folder when all are done
                staged.mkdir()
                t0 = time.perf_counter()
                # frames in threads or worker processes (_auto_parallel); later work that
                # may run beside this one goes to the same kind of helpers (_aside)
                backend, workers = _frame_backend(
                    cfg.segment, int(np.prod(movie.shape[-2:])), movie.n_frames
                )
                logger.info(
                    "%s: frames segmented in %s (segment.parallel = %r, workers = %d)",
                    stack,
                    frames_in(backend),
                    cfg.segment.parallel,
                    workers,
                )
                # frames segmented beside helper processes or in threads: one BLAS thread
                lift_blas_limit = _one_blas_thread(
                    backend == "threading"
                    or (backend == "loky" and _helper_count(workers) < workers)
                )
                objects, stores, frame_notes = _segment_movie(
                    movie,
                    cfg,
                    work,
                    populations,
                    progress,
                    on_progress,
                    backend=backend,
                    workers=workers,
                )
                if backend == "loky":
                    _fresh_helpers(_helper_count(workers))
                _check_signal(movie, cfg, objects, frame_notes, populations, result)
                result.timings_s["segment_measure"] = time.perf_counter() - t0
                result.stages.append("segment")
                result.stages.append("measure")

                _notify(on_progress, "track")
                t0 = time.perf_counter()
                tracks = []
                lineage = pd.DataFrame(columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME])
                for pop in populations:
                    linked = _link(objects, pop, cfg, movie)
                    del objects[pop]  # the tracks hold the same rows: one copy fewer
                    if pop == col.CELLS:
                        linked, lineage = find_divisions(linked, cfg.track.divisions)
                    tracks.append(linked)
                    result.counts[f"n_tracks_{pop}"] = int(linked[col.TRACK_ID].nunique())
                    result.counts[f"n_objects_{pop}"] = len(linked)
                result.counts["n_divisions"] = (
                    int(lineage[col.PARENT_ID].nunique()) if len(lineage) else 0
                )
                result.timings_s["track"] = time.perf_counter() - t0
                result.stages.append("track")

                t0 = time.perf_counter()
                shape = (movie.n_frames, *movie.shape[-2:])
                # the output files that nothing later needs are written by the helper
                # processes (or threads) the frames had, beside the deaths and recruitment
                # stages here; those no helper has started by then are written here, and
                # all are waited for before the outputs are moved in
                aside = _aside(backend, workers)
                for pop, linked in zip(populations, tracks):
                    if cfg.output.write_labels:
                        pending.append(
                            _submit(
                                aside,
                                _write_label_stack,
                                stores[pop],
                                linked[[col.FRAME, col.LABEL, col.TRACK_ID]],
                                staged / f"labels_{pop}.tif",
                                shape,
                            )
                        )
                if export_ctc is not None and col.CELLS in populations:
                    from .track import export_ctc as write_ctc

                    cells = tracks[populations.index(col.CELLS)]
                    store = stores[col.CELLS]
                    frames = relabel_frames((store[t] for t in range(movie.n_frames)), cells)
                    ctc_dir = write_ctc(
                        frames,
                        cells,
                        lineage,
                        Path(export_ctc) / f"{result.out_dir.name}_RES",
                        n_frames=movie.n_frames,
                    )
                    result.counts["ctc_export"] = str(ctc_dir)
                all_tracks = _tracks_table(tracks, movie.calibration.interval_s)
                pending.append(_submit(aside, write_table, all_tracks, staged / "tracks.csv", fmt))
                if cfg.output.write_trackmate:
                    from .export import export_trackmate

                    pending.append(
                        _submit(
                            aside,
                            export_trackmate,
                            all_tracks,
                            lineage,
                            staged / "tracks.xml",
                            pixel_size_um=movie.calibration.pixel_size_um,
                            interval_s=movie.calibration.interval_s,
                            image_path=str(Path(stack).resolve()),
                            shape_tyx=(movie.n_frames, *movie.shape[-2:]),
                        )
                    )
                # the stack's checksum too (reading and hashing release Python's lock); a
                # change to the file from here on still shows in its stat, checked after
                hashing = _submit(aside, input_checksum, stack)
                result.timings_s["write"] = time.perf_counter() - t0

                _notify(on_progress, "death")
                t0 = time.perf_counter()
                cells = tracks[populations.index(col.CELLS)]
                events = detect_deaths(
                    _with_time(cells, movie.calibration.interval_s),
                    lineage,
                    cfg.death,
                    interval_s=movie.calibration.interval_s,
                    image_shape=tuple(movie.shape[-2:]),
                    dye_spots=_dye_spots_of(frame_notes),
                    pixel_size_um=movie.calibration.pixel_size_um,
                )
                result.counts["n_events"] = len(events)
                for mode in (col.APOPTOTIC, col.NECROPTOTIC, col.UNCERTAIN):
                    result.counts[f"n_{mode}"] = int((events[col.MODE] == mode).sum())
                result.timings_s["death"] = time.perf_counter() - t0
                result.stages.append("death")

                _notify(on_progress, "recruit")
                t0 = time.perf_counter()
                immune = (
                    tracks[populations.index(col.IMMUNE)] if col.IMMUNE in populations else None
                )
                events = _recruit(events, cells, immune, stores, movie, cfg, result, fmt, staged)
                result.timings_s["recruit"] = time.perf_counter() - t0
                events = _keep_reviews(events, result, fmt, staged)
                write_table(events, staged / "events.csv", fmt)
                t0 = time.perf_counter()
                write_table(lineage, staged / "lineage.csv", fmt)
                _gather(pending)  # re-raises a writer's error, if any
                pending = []
                result.timings_s["write"] += time.perf_counter() - t0

                t0 = time.perf_counter()
                checksum = hashing.result()
                if _input_stat(Path(stack)) != stat_before:
                    raise StackChangedError(
                        f"{stack}: the stack's file(s) changed while it was analysed; its "
                        "results are not kept: run it again once the file is complete"
                    )
                result.timings_s["checksum"] = time.perf_counter() - t0
                result.timings_s["total"] = time.perf_counter() - t_start
                run_info = {
                    "deathtrack_run_version": 2,
                    "run_id": run_id or new_run_id(),
                    "stack": str(Path(stack).resolve()),
                    "stem": result.out_dir.name,
                    "input_checksum": checksum,
                    "started": started,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "status": "ok",
                    "stages": result.stages,
                    "input": info,
                    "config": config_to_dict(cfg),
                    "versions": _versions(),
                    "timings_s": {k: round(v, 4) for k, v in result.timings_s.items()},
                    # how the frames were segmented: the report's gallery works the same way
                    "frames_in": frames_in(backend),
                    "counts": result.counts,
                    "warnings": result.warnings,
                }
                _commit(staged, result.out_dir, run_info)
            finally:
                try:
                    for task in pending:  # this run failed: let the writers started finish
                        if not task.cancel():
                            try:
                                task.result()
                            except Exception:
                                pass
                finally:
                    lift_blas_limit()
                    if work is not None:
                        _remove_tree(work)

    for w in result.warnings:
        logger.warning("%s: %s", stack, w)
    return result


def _write_label_stack(store: _LabelStore, tracks: pd.DataFrame, path: Path, shape) -> Path:
    """``labels_<pop>.tif`` from the raw label store: values become ``track_id``."""
    from .io import label_dtype, write_labels
    from .track import relabel_frames

    dtype = label_dtype(tracks[col.TRACK_ID].max() if len(tracks) else 0)
    frames = relabel_frames((store[t] for t in range(shape[0])), tracks, dtype)
    return write_labels(path, frames, shape=shape, dtype=dtype)


def _labels_at(store, tracks: pd.DataFrame):
    """``f(t)``: frame ``t`` of a raw label store relabelled so values are ``track_id``."""
    from .track import relabel_frame

    groups = {int(f): g for f, g in tracks.groupby(col.FRAME)}
    return lambda t: relabel_frame(store[t], groups.get(int(t)))


def _recruit(events, cells, immune, stores, movie, cfg, result, fmt, out: Path) -> pd.DataFrame:
    """Recruitment curves, per-event measures and the mode comparison (tables written to
    ``out``); returns the events."""
    from .recruit import CURVE_COLUMNS, compare_modes, recruitment_curves, summarize_events

    if immune is None:
        write_table(pd.DataFrame(columns=CURVE_COLUMNS), out / "recruitment.csv", fmt)
        return events
    cal = movie.calibration
    geometry = dict(
        interval_s=cal.interval_s, pixel_size_um=cal.pixel_size_um, shape_yx=movie.shape[-2:]
    )
    curves, contacts = recruitment_curves(
        events,
        immune,
        cells,
        cfg.recruit,
        n_frames=movie.n_frames,
        cell_labels=_labels_at(stores[col.CELLS], cells),
        immune_labels=_labels_at(stores[col.IMMUNE], immune),
        **geometry,
    )
    summary = summarize_events(events, curves, contacts, immune, cfg.recruit, **geometry)
    events = events.merge(summary, on=col.EVENT_ID, how="left")
    stats = compare_modes(
        events,
        n_bootstrap=cfg.recruit.n_bootstrap,
        n_permutations=cfg.recruit.n_permutations,
        seed=cfg.recruit.seed,
        stack_col=None,
    )
    write_table(curves, out / "recruitment.csv", fmt)
    write_table(stats, out / "recruitment_stats.csv", fmt)
    result.stages.append("recruit")
    # motility of every immune track (celltrackR definitions; units µm, s, µm/s, radians)
    from .motility import arrest_coefficient, track_metrics

    timed = _with_time(immune, cal.interval_s)
    motility = track_metrics(timed, coord_cols=(col.Y_UM, col.X_UM))
    arrest = {
        int(k): arrest_coefficient(
            g[[col.T_S, col.Y_UM, col.X_UM]].to_numpy(float),
            threshold_um_per_min=cfg.recruit.arrest_speed_um_per_min,
        )
        for k, g in timed.sort_values(col.FRAME).groupby(col.TRACK_ID)
    }
    motility["arrest_coefficient"] = motility[col.TRACK_ID].map(arrest)
    write_table(motility, out / "motility.csv", fmt)
    return events


def _keep_reviews(events: pd.DataFrame, result: RunResult, fmt: str, out: Path) -> pd.DataFrame:
    """Carry the reviewed labels of an earlier run in the same folder over to the new events
    (labels that find no event are written to ``out/reviews_unmatched.csv``)."""
    from .review import carry_over_reviews, reviewed_events

    path = table_path(result.out_dir, "events")
    if path is None:
        return events
    try:
        old = read_table(result.out_dir, "events")
    except (OSError, ValueError) as err:
        result.warnings.append(f"{path}: could not read the earlier events ({err})")
        return events
    if reviewed_events(old).empty:
        return events
    events, unmatched = carry_over_reviews(events, old)
    n = len(reviewed_events(old))
    msg = f"kept {n - len(unmatched)} of {n} reviewed labels from the earlier run"
    if len(unmatched):
        write_table(unmatched, out / REVIEWS_UNMATCHED, fmt)
        msg += f"; {len(unmatched)} found no event: see reviews_unmatched.csv"
    result.warnings.append(msg)
    return events


def _notify(on_progress, stage: str) -> None:
    if on_progress is not None:
        on_progress(stage, 0, 1)


def _with_time(df: pd.DataFrame, interval_s: float) -> pd.DataFrame:
    return df.assign(**{col.T_S: df[col.FRAME] * interval_s})


def _tracks_table(tracks: list[pd.DataFrame], interval_s: float) -> pd.DataFrame:
    """One table for all populations, key columns first (the outputs contract)."""
    if not tracks:
        return pd.DataFrame(columns=TRACK_KEY_COLUMNS)
    df = pd.concat(tracks, ignore_index=True)
    df[col.T_S] = df[col.FRAME] * interval_s
    first = [c for c in TRACK_KEY_COLUMNS if c in df.columns]
    rest = [c for c in df.columns if c not in first]
    df = df[first + rest]
    return df.sort_values([col.POPULATION, col.FRAME, col.TRACK_ID], kind="stable").reset_index(
        drop=True
    )
