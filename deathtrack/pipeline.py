"""Run the pipeline on one stack and write its outputs folder.

``run_stack`` is the one entry point the CLI, batch runs and the napari
plugin call. Each stage is a function of the previous stage's output and its
own config section; this module only wires them together, times them and
writes the outputs contract (see the README).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
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
    "RunResult",
    "input_checksum",
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
    from .io import atomic_write

    with atomic_write(path) as tmp:
        if table_format == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
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


def _segment_measure_frame(
    frame: np.ndarray, t: int, job: dict, given: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, pd.DataFrame]]:
    """Segment and measure one frame (C, Y, X): labels and object table per population.

    A pure function of its arguments, so it runs the same in a thread or in
    another process. ``given``: label images brought from another tool.
    """
    from .segment import crosstalk_ratio

    images = {pop: frame[job["roles"][pop]].astype(np.float32) for pop in job["populations"]}
    labels = {}
    for pop in job["populations"]:
        labels[pop] = given[pop] if pop in given else _segment(images[pop], job, pop)
    own = [pop for pop in job["populations"] if pop not in given]
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
    return labels, tables


def _segment(image: np.ndarray, job: dict, pop: str) -> np.ndarray:
    from .segment import segment_frame

    return segment_frame(image, job["configs"][pop], pixel_size_um=job["px"])


def _measure(labels: np.ndarray, frame: np.ndarray, t: int, job: dict, pop: str) -> pd.DataFrame:
    """One population's objects in frame ``t`` (C, Y, X), every channel measured."""
    from .measure import measure_frame

    names = job["names"]
    intensities = {names[c]: frame[c] for c in range(frame.shape[0])}
    return measure_frame(labels, intensities, frame=t, pixel_size_um=job["px"], population=pop)


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

    def __call__(self, t: int, labels: dict, tables: dict) -> None:
        frame = None
        for pop in self.job["populations"]:
            tables[pop]["carried"] = False
        for pop, mend in self.menders.items():
            how = tables[pop].attrs.get("unmix")
            lab, carried = mend(labels[pop], lambda pop=pop, how=how: self._image(pop, t, how))
            if lab is not labels[pop]:
                self.changed[pop] += 1
                if frame is None:
                    frame = np.asarray(self.movie.frame(t))
                labels[pop] = lab
                tables[pop] = _measure(lab, frame, t, self.job, pop)
                tables[pop]["carried"] = tables[pop][col.LABEL].isin(list(carried))

    def _image(self, pop: str, t: int, how) -> np.ndarray:
        """The population's channel at ``t``, with the other's crosstalk taken out as it
        was for segmenting (``how``: from :func:`_segment_measure_frame`)."""
        image = np.asarray(self.movie.read(self.job["roles"][pop], t), dtype=np.float32)
        if how is not None:
            other, ratio, bg = how
            other_image = np.asarray(self.movie.read(self.job["roles"][other], t), np.float32)
            image = image - ratio * (other_image - bg)
        return image

    def log(self) -> None:
        for pop, n in self.changed.items():
            logger.info("%s: %d of %d frames mended over time", pop, n, self.movie.n_frames)


#: frames at least this large (pixels) are segmented in worker processes with
#: ``segment.parallel = "auto"``; smaller ones in threads (starting processes costs
#: more than it saves on them)
PROCESS_MIN_PIXELS = 512 * 512


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


def _warm_imports() -> None:
    import importlib
    import threading

    def run():
        for name in WARM_IMPORTS:
            try:
                importlib.import_module(name)
            except Exception:  # pragma: no cover - the stage will raise it properly
                return

    threading.Thread(target=run, name="deathtrack-warm-imports", daemon=True).start()


def _may_start_processes() -> bool:
    """False inside a daemonic process (e.g. a Dask worker process), which may not start
    children."""
    import multiprocessing as mp

    return not mp.current_process().daemon


def _frame_backend(seg_cfg, frame_pixels: int, n_frames: int) -> tuple[str | None, int]:
    """(joblib backend or None for a plain loop, number of workers) for the frames."""
    workers = min(seg_cfg.workers, max(n_frames, 1))
    if workers <= 1:
        return None, 1
    mode = seg_cfg.parallel
    if mode == "auto":
        mode = "processes" if frame_pixels >= PROCESS_MIN_PIXELS else "threads"
    if mode == "processes" and not _may_start_processes():
        logger.info("segmenting frames in threads: this process may not start processes")
        mode = "threads"
    # loky (joblib's process pool) reuses its workers across stacks, limits their BLAS
    # threads, and never re-runs the caller's script in them (no __main__ guard needed)
    return ("loky" if mode == "processes" else "threading"), workers


class _Done:
    """The outcome of a function run here and now, with a future's ``result()``."""

    def __init__(self, func: Callable, *args, **kwargs):
        self._value, self._error = None, None
        try:
            self._value = func(*args, **kwargs)
        except Exception as err:
            self._error = err

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


class _Background:
    """A function run in one of joblib's loky worker processes (the frames' own, reused:
    ``n_jobs`` should be the frames' worker count, or loky resizes its pool)."""

    def __init__(self, n_jobs: int, func: Callable, *args, **kwargs):
        from joblib import Parallel, delayed

        # joblib starts the task at once; the generator hands over its result
        self._gen = Parallel(n_jobs=max(n_jobs, 2), backend="loky", return_as="generator")(
            [delayed(func)(*args, **kwargs)]
        )

    def result(self):
        return next(self._gen)


def _submit(workers: int, func: Callable, *args, **kwargs):
    """Run ``func`` in one of ``workers`` worker processes, or here and now when
    ``workers`` is 0 or this process may not start others; ``.result()`` returns its
    value or re-raises its error either way."""
    if workers and _may_start_processes():
        return _Background(workers, func, *args, **kwargs)
    return _Done(func, *args, **kwargs)


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
    """Segment and measure every frame; raw labels go to a zarr store in ``work``.

    Frames are processed by ``cfg.segment.workers`` worker processes (large
    frames) or threads; a few frames are in flight at a time, so memory does not
    grow with the number of frames. Results are the same whatever the workers.
    ``backend, workers``: from :func:`_frame_backend`.
    """
    import zarr
    from tqdm.auto import tqdm

    from .segment import read_label_stack

    px = movie.calibration.pixel_size_um
    ny, nx = movie.shape[-2:]
    stores = {
        pop: zarr.open_array(
            str(work / f"labels_{pop}.zarr"),
            mode="w",
            shape=(movie.n_frames, ny, nx),
            chunks=(1, ny, nx),
            dtype=np.int32,
        )
        for pop in populations
    }
    job = {
        "names": _channel_keys(movie),
        "px": px,
        "populations": list(populations),
        "roles": dict(movie.roles),
        "configs": {pop: getattr(cfg.segment, pop) for pop in populations},
        "unmix": cfg.segment.unmix,
    }
    given = {}  # bring-your-own label stacks (Cellpose, StarDist, ...), read frame by frame
    for pop in populations:
        pop_cfg = getattr(cfg.segment, pop)
        if pop_cfg.method == "labels":
            given[pop] = read_label_stack(
                pop_cfg.labels_path, expect_shape=(movie.n_frames, ny, nx)
            )

    def inputs(t: int):
        return np.asarray(movie.frame(t)), t, job, {pop: g[t] for pop, g in given.items()}

    tables: dict[str, list[pd.DataFrame]] = {pop: [] for pop in populations}

    refine = _Refiner(movie, job, given)

    def collect(t: int, labels, tabs) -> None:
        refine(t, labels, tabs)
        for pop in populations:
            stores[pop][t] = labels[pop]
            tables[pop].append(tabs[pop])
        bar.update()
        if on_progress is not None:
            on_progress("segment", t + 1, movie.n_frames)

    n = movie.n_frames
    bar = tqdm(total=n, desc="segment", unit="frame", disable=not progress)
    results = None
    try:
        if backend is None:
            for t in range(n):
                collect(t, *_segment_measure_frame(*inputs(t)))
        else:
            from joblib import Parallel, delayed

            # results in frame order; frames are read as workers free up (a few in flight)
            results = Parallel(
                n_jobs=workers, backend=backend, return_as="generator", pre_dispatch="2*n_jobs"
            )(delayed(_segment_measure_frame)(*inputs(t)) for t in range(n))
            if backend == "loky":
                # only now: joblib's own imports are done in this thread, so the two
                # threads do not import the same modules at once
                _warm_imports()
            for t, (labels, tabs) in enumerate(results):
                collect(t, labels, tabs)
    finally:
        # on Ctrl-C or a GUI's Cancel, closing the generator drops the frames not started
        if results is not None:
            with warnings.catch_warnings():
                # joblib's note that the frames in flight were dropped: that is the point
                warnings.filterwarnings(
                    "ignore", ".*(tasks have been successfully executed|tasks which were still)"
                )
                results.close()
        bar.close()
        for stack in given.values():
            stack.close()
    refine.log()
    return {pop: pd.concat(dfs, ignore_index=True) for pop, dfs in tables.items()}, stores


def _channel_keys(movie) -> list[str]:
    """Column prefix of each channel's intensities: its role, else its name."""
    by_index = {idx: role for role, idx in movie.roles.items()}
    keys = []
    for c, name in enumerate(movie.channel_names):
        key = by_index.get(c) or "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        keys.append(key if key not in keys else f"{key}_{c}")
    return keys


def run_stack(
    stack: str | Path,
    config: PipelineConfig | None = None,
    out_dir: str | Path = "results",
    *,
    progress: bool = True,
    export_ctc: str | Path | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> RunResult:
    """Analyse one stack and write ``out_dir/<stem>/``.

    Stages: segment and measure each population (``cells``, and ``immune``
    when that role exists), link tracks, find divisions, write
    ``tracks.csv``, ``lineage.csv``, ``labels_cells.tif``,
    ``labels_immune.tif`` and ``run.json``.

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

    Returns
    -------
    RunResult
    """
    import shutil

    from .death import detect_deaths
    from .io import open_input, stack_stem
    from .track import find_divisions, link_objects, relabel_frames

    cfg = config or PipelineConfig()
    t_start = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = RunResult(stack=Path(stack), out_dir=Path(out_dir) / stack_stem(stack))
    fmt = cfg.output.table_format

    t0 = time.perf_counter()
    with open_input(stack, cfg.input) as movie:
        info = movie.info()
        result.timings_s["open"] = time.perf_counter() - t0
        movie.require_calibration(
            "pixel_size_um",
            "interval_s",
            reason="sizes are in µm and speeds in µm/min (segmentation and tracking)",
        )
        if movie.is_3d:
            from .errors import AxesError

            raise AxesError(
                f"{stack}: 3D stacks (axes {movie.axes}) are not analysed yet; "
                "pass a maximum projection (T, C, Y, X)"
            )
        populations = [p for p in (col.CELLS, col.IMMUNE) if p in movie.roles]
        if col.IMMUNE not in populations:
            result.warnings.append(
                "no immune channel: immune cells are not segmented; recruitment needs "
                "--channel immune=INDEX|NAME"
            )
        result.counts.update(n_frames=movie.n_frames, n_channels=movie.n_channels)
        result.out_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=result.out_dir))
        pending: list = []  # output files being written in worker processes
        try:
            t0 = time.perf_counter()
            # frames in worker processes (large movies) or threads; later work that may run
            # beside the main process goes to the same workers
            backend, workers = _frame_backend(
                cfg.segment, int(np.prod(movie.shape[-2:])), movie.n_frames
            )
            objects, stores = _segment_movie(
                movie,
                cfg,
                work,
                populations,
                progress,
                on_progress,
                backend=backend,
                workers=workers,
            )
            result.timings_s["segment_measure"] = time.perf_counter() - t0
            result.stages.append("segment")
            result.stages.append("measure")

            _notify(on_progress, "track")
            t0 = time.perf_counter()
            tracks, lineage = [], pd.DataFrame(columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME])
            for pop in populations:
                linked = link_objects(
                    objects[pop], getattr(cfg.track, pop), interval_s=movie.calibration.interval_s
                )
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
            # the output files that nothing later needs are written in worker processes
            # when the frames had them (large movies), beside the deaths and recruitment
            # stages here; all are waited for before run.json marks the results complete
            aside = workers if backend == "loky" else 0
            for pop, linked in zip(populations, tracks):
                if cfg.output.write_labels:
                    pending.append(
                        _submit(
                            aside,
                            _write_label_stack,
                            str(work / f"labels_{pop}.zarr"),
                            linked[[col.FRAME, col.LABEL, col.TRACK_ID]],
                            result.out_dir / f"labels_{pop}.tif",
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
            pending.append(
                _submit(aside, write_table, all_tracks, result.out_dir / "tracks.csv", fmt)
            )
            if cfg.output.write_trackmate:
                from .export import export_trackmate

                pending.append(
                    _submit(
                        aside,
                        export_trackmate,
                        all_tracks,
                        lineage,
                        result.out_dir / "tracks.xml",
                        pixel_size_um=movie.calibration.pixel_size_um,
                        interval_s=movie.calibration.interval_s,
                        image_path=str(Path(stack).resolve()),
                        shape_tyx=(movie.n_frames, *movie.shape[-2:]),
                    )
                )
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
            )
            result.counts["n_events"] = len(events)
            for mode in (col.APOPTOTIC, col.NECROPTOTIC, col.UNCERTAIN):
                result.counts[f"n_{mode}"] = int((events[col.MODE] == mode).sum())
            result.timings_s["death"] = time.perf_counter() - t0
            result.stages.append("death")

            _notify(on_progress, "recruit")
            t0 = time.perf_counter()
            immune = tracks[populations.index(col.IMMUNE)] if col.IMMUNE in populations else None
            events = _recruit(events, cells, immune, stores, movie, cfg, result, fmt)
            result.timings_s["recruit"] = time.perf_counter() - t0
            events = _keep_reviews(events, result, fmt)
            write_table(events, result.out_dir / "events.csv", fmt)
            t0 = time.perf_counter()
            write_table(lineage, result.out_dir / "lineage.csv", fmt)
            while pending:
                pending.pop(0).result()  # re-raises a writer's error, if any
            result.timings_s["write"] += time.perf_counter() - t0
        finally:
            try:
                for task in pending:  # this run failed: let the writers finish first
                    try:
                        task.result()
                    except Exception:
                        pass
            finally:
                shutil.rmtree(work, ignore_errors=True)

    t0 = time.perf_counter()
    checksum = input_checksum(stack)
    result.timings_s["checksum"] = time.perf_counter() - t0
    result.timings_s["total"] = time.perf_counter() - t_start
    run_info = {
        "deathtrack_run_version": 1,
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
        "counts": result.counts,
        "warnings": result.warnings,
    }
    write_json_atomic(run_info, result.out_dir / "run.json")
    for w in result.warnings:
        logger.warning("%s: %s", stack, w)
    return result


def _write_label_stack(store_path: str, tracks: pd.DataFrame, path: Path, shape) -> Path:
    """``labels_<pop>.tif`` from the raw label store: values become ``track_id``."""
    import zarr

    from .io import write_labels
    from .track import relabel_frames

    store = zarr.open_array(store_path, mode="r")
    frames = relabel_frames((store[t] for t in range(shape[0])), tracks)
    return write_labels(path, frames, shape=shape, dtype=np.int32)


def _labels_at(store, tracks: pd.DataFrame):
    """``f(t)``: frame ``t`` of a raw label store relabelled so values are ``track_id``."""
    from .track import relabel_frame

    groups = {int(f): g for f, g in tracks.groupby(col.FRAME)}
    return lambda t: relabel_frame(store[t], groups.get(int(t)))


def _recruit(events, cells, immune, stores, movie, cfg, result, fmt) -> pd.DataFrame:
    """Recruitment curves, per-event measures and the mode comparison; returns the events."""
    from .recruit import CURVE_COLUMNS, compare_modes, recruitment_curves, summarize_events

    out = result.out_dir
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


def _keep_reviews(events: pd.DataFrame, result: RunResult, fmt: str) -> pd.DataFrame:
    """Carry the reviewed labels of an earlier run in the same folder over to the new events."""
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
        write_table(unmatched, result.out_dir / "reviews_unmatched.csv", fmt)
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
