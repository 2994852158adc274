"""Run the pipeline on one z-stack movie (T, C, Z, Y, X): the 3D branch of ``run_stack``.

:func:`deathtrack.pipeline.run_stack` hands a 3D movie to :func:`run_movie_3d`
after its checks (calibration, including the z step). The stages are the 2D
ones wherever they do not look at pixels, and their 3D counterparts where they
do:

- frames (C, Z, Y, X) are segmented (:func:`deathtrack.segment3d.segment_volume`)
  and measured (:func:`deathtrack.measure3d.measure_volume`) ``segment.workers`` at
  a time, one in this process and one in each helper process
  (:func:`segment_movie_3d`); each frame's label volume goes to a zarr store on
  disk, so memory holds a frame per worker, never the movie;
- linking (trackpy) in 3D µm coordinates (``z_um, y_um, x_um``); divisions as
  in 2D; deaths and modes from :func:`deathtrack.death.detect_deaths` on the
  equivalent area (a function of the volume: see :mod:`deathtrack.measure3d`),
  sphericity (as ``circularity``), 3D solidity and fragments;
- recruitment within a ball of R µm, contacts in 3D, motility in 3D;
- the outputs contract of 2D plus ``z, z_um`` (``tracks.csv``, ``events.csv``)
  and ``labels_*.tif`` as (T, Z, Y, X), written frame by frame; ``tracks.xml``
  (TrackMate) in 3D, and ``--export-ctc`` masks as (Z, Y, X) volumes.

Not done in 3D (said in ``run.json``'s warnings): the 2D mending over time
(``split_merged``, ``carry_objects``), crosstalk unmixing, and bring-your-own
label stacks (``method = "labels"``).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as col
from .config import PipelineConfig, config_to_dict

logger = logging.getLogger(__name__)

__all__ = ["check_z_step", "run_movie_3d", "segment_movie_3d"]

#: a plausible z step (µm): outside it, a unit or metadata mistake
Z_STEP_RANGE_UM = (0.05, 50.0)

#: what a 3D run adds to the key columns of tracks.csv, right after them
Z_COLUMNS = [col.Z, col.Z_UM]


def check_z_step(movie) -> None:
    """Refuse a 3D movie whose z step is unknown or implausible: a
    :class:`~deathtrack.errors.CalibrationError` that names ``--z-step``."""
    from .errors import CalibrationError

    movie.require_calibration(
        "z_step_um",
        reason=f"the stack has {movie.shape[2]} z slices (axes {movie.axes}) and 3D "
        "volumes, distances and speeds are in µm",
    )
    dz = movie.calibration.z_step_um
    lo, hi = Z_STEP_RANGE_UM
    if not lo <= dz <= hi:
        where = movie.calibration.source.get("z_step_um", "file")
        raise CalibrationError(
            f"{movie.path}: z step {dz:g} µm (from the {where} metadata) is outside the "
            f"plausible range {lo:g}-{hi:g} µm (a unit or metadata mistake?); pass --z-step UM"
        )


def _segment_measure_volume(frame: np.ndarray, t: int, job: dict):
    """Segment and measure one frame (C, Z, Y, X): labels, tables and notes per population
    (the 3D :func:`deathtrack.pipeline._segment_measure_frame`)."""
    from .measure3d import measure_volume
    from .pipeline import _sanitize_frame
    from .segment3d import segment_volume

    frame, n_bad, no_finite = _sanitize_frame(np.asarray(frame))
    notes = {"nonfinite": n_bad, "no_finite": no_finite, "blank": {}}
    names = job["names"]
    intensities = {names[c]: frame[c] for c in range(frame.shape[0])}
    labels, tables = {}, {}
    for pop in job["populations"]:
        image = frame[job["roles"][pop]].astype(np.float32)
        lo, hi = float(image.min()), float(image.max())
        if lo == hi:
            notes["blank"][pop] = lo
            labels[pop] = np.zeros(image.shape, np.int32)
        else:
            labels[pop] = segment_volume(
                image,
                job["configs"][pop],
                pixel_size_um=job["px"],
                z_step_um=job["dz"],
                overwrite_input=True,  # a copy of the channel made here
            )
        del image
        tables[pop] = measure_volume(
            labels[pop],
            intensities,
            frame=t,
            pixel_size_um=job["px"],
            z_step_um=job["dz"],
            population=pop,
        )
        tables[pop]["carried"] = False
    return labels, tables, notes


def _segment_store_volume(frame: np.ndarray, t: int, job: dict, stores: dict):
    """A helper's frame: segmented and measured, its label volumes written straight to
    the zarr stores (one chunk per frame: helpers never write the same chunk), only the
    tables and notes sent back."""
    import zarr

    labels, tables, notes = _segment_measure_volume(frame, t, job)
    del frame
    for pop, path in stores.items():
        zarr.open_array(path, mode="r+")[t] = labels[pop]
    return tables, notes


def _helpers(seg_cfg, n_voxels: int, n_frames: int):
    """(executor of the helpers or None, how many, whether it is this run's own to shut
    down): ``segment.workers - 1`` helper processes (threads with ``segment.parallel =
    "threads"``, or inside a process that may not start others), beside this process,
    which segments frames too."""
    from .pipeline import _frame_backend

    backend, workers = _frame_backend(seg_cfg, n_voxels, n_frames, volumes=True)
    if backend is None or workers < 2:
        return None, 0, False
    if backend == "loky":
        from .pipeline import _helper_count, _helper_pool

        helpers = _helper_count(workers)
        return _helper_pool(helpers), helpers, False
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="deathtrack-3d")
    return pool, workers - 1, True


def segment_movie_3d(
    movie,
    cfg: PipelineConfig,
    work: Path,
    populations,
    *,
    progress=False,
    on_progress=None,
    workers: int | None = None,
):
    """Segment and measure every frame of a 3D movie.

    Returns (objects per population, label stores (T, Z, Y, X) zarr arrays in
    ``work``, notes per frame). ``workers`` (default ``cfg.segment.workers``) frames are
    segmented at a time: one in this process and one in each of ``workers - 1`` helper
    processes (``segment.parallel``; "auto" keeps z-stacks of 512² voxels and more in
    processes, unlike 2D frames: :func:`deathtrack.pipeline._auto_parallel`), each frame
    read when one of them is free for it and its labels written to the stores at once.
    Memory holds one volume and its intermediates per worker, never the movie; this process
    working too saves one process's imports (~240 MB) against a coordinator beside its
    workers (2D does the same: :func:`deathtrack.pipeline._segment_with_helpers`). Results
    are the same whatever the workers.
    """
    from concurrent.futures import FIRST_COMPLETED
    from concurrent.futures import wait as wait_for

    import zarr
    from tqdm.auto import tqdm

    from .pipeline import _channel_keys, _frame_backend, _one_blas_thread

    nz, ny, nx = movie.shape[-3:]
    n = movie.n_frames
    paths = {pop: str(work / f"labels_{pop}.zarr") for pop in populations}
    stores = {
        pop: zarr.open_array(
            paths[pop], mode="w", shape=(n, nz, ny, nx), chunks=(1, nz, ny, nx), dtype=np.int32
        )
        for pop in populations
    }
    job = {
        "names": _channel_keys(movie),
        "px": movie.calibration.pixel_size_um,
        "dz": movie.calibration.z_step_um,
        "populations": list(populations),
        "roles": dict(movie.roles),
        "configs": {pop: getattr(cfg.segment, pop) for pop in populations},
    }
    seg_cfg = cfg.segment
    if workers is not None:
        seg_cfg = seg_cfg.model_copy(update={"workers": int(workers)})
    executor, n_helpers, own = _helpers(seg_cfg, nz * ny * nx, n)
    # this process segments frames too unless the helpers are all the workers (a run
    # from another thread than the main one: see pipeline._helper_count)
    frame_workers = _frame_backend(seg_cfg, nz * ny * nx, n, volumes=True)[1]
    here = executor is None or n_helpers < frame_workers
    done: dict[int, tuple] = {}  # frame -> (tables, notes)
    bar = tqdm(total=n, desc="segment 3D", unit="frame", disable=not progress)

    def finished(t: int, tables, notes) -> None:
        done[t] = (tables, notes)
        bar.update()
        if on_progress is not None:
            on_progress("segment", len(done), n)

    # future -> frame: two per helper, the one it works on and the next, so that a helper
    # never waits for this process to finish its own frame before it gets another
    pending: dict = {}
    next_t = 0
    # frames segmented in threads, or here beside helper processes: one BLAS thread
    lift_blas_limit = _one_blas_thread(executor is not None and (own or here))
    try:
        while len(done) < n:
            while executor is not None and len(pending) < 2 * n_helpers and next_t < n:
                frame = movie.frame(next_t)
                pending[executor.submit(_segment_store_volume, frame, next_t, job, paths)] = next_t
                next_t += 1
                del frame
            if next_t < n and here:  # this process takes the next frame itself
                t, next_t = next_t, next_t + 1
                labels, tables, notes = _segment_measure_volume(movie.frame(t), t, job)
                for pop in populations:
                    stores[pop][t] = labels[pop]
                del labels
                finished(t, tables, notes)
                ready = [f for f in pending if f.done()]
            else:  # no frame left for this process: wait for a helper
                ready = wait_for(list(pending), return_when=FIRST_COMPLETED).done
            for future in ready:
                finished(pending.pop(future), *future.result())
    finally:
        bar.close()
        for future in pending:
            future.cancel()
        # frames already started finish (a few seconds): they write into `work`, which
        # the caller removes after an error or a Cancel
        wait_for(list(pending))
        lift_blas_limit()
        if own:
            executor.shutdown(wait=True)  # a thread pool of this call (loky's is reused)
    tables_by_pop: dict[str, list[pd.DataFrame]] = {pop: [] for pop in populations}
    frame_notes = []
    for t in range(n):
        tables, notes = done[t]
        for pop in populations:
            tables_by_pop[pop].append(tables[pop])
        frame_notes.append(notes)
    objects = {pop: pd.concat(dfs, ignore_index=True) for pop, dfs in tables_by_pop.items()}
    return objects, stores, frame_notes


def _write_label_stack_3d(store, tracks: pd.DataFrame, path: Path, shape) -> Path:
    """``labels_<pop>.tif`` (T, Z, Y, X) from the raw label store: values become
    ``track_id``; written frame by frame."""
    from .io import label_dtype, write_labels
    from .track import relabel_frames

    dtype = label_dtype(tracks[col.TRACK_ID].max() if len(tracks) else 0)
    frames = relabel_frames((store[t] for t in range(shape[0])), tracks, dtype)
    return write_labels(path, frames, shape=shape, dtype=dtype)


def _with_z(events: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """``z, z_um`` of each event: its cell's centroid at the death frame, inserted after
    ``x_um``."""
    pos = cells[[col.TRACK_ID, col.FRAME, *Z_COLUMNS]].drop_duplicates([col.TRACK_ID, col.FRAME])
    out = events.merge(pos, on=[col.TRACK_ID, col.FRAME], how="left")
    order = list(events.columns)
    at = order.index(col.X_UM) + 1
    order[at:at] = Z_COLUMNS
    return out[order]


def _tracks_table_3d(tracks: list[pd.DataFrame], interval_s: float) -> pd.DataFrame:
    from .pipeline import TRACK_KEY_COLUMNS, _tracks_table

    df = _tracks_table(tracks, interval_s)
    first = [c for c in TRACK_KEY_COLUMNS if c in df.columns] + Z_COLUMNS
    return df[first + [c for c in df.columns if c not in first]]


def run_movie_3d(
    movie,
    stack,
    cfg: PipelineConfig,
    out_dir,
    result,
    *,
    info: dict,
    populations: list[str],
    progress: bool,
    export_ctc,
    on_progress,
    lock: bool,
    run_id: str | None,
    t_start: float,
    started: str,
) -> object:
    """The stages of :func:`deathtrack.pipeline.run_stack` for a 3D movie (see the module
    docstring); writes ``out_dir/<stem>/`` as a 2D run does and returns its RunResult."""
    import contextlib

    from .death import detect_deaths
    from .errors import ConfigError, StackChangedError
    from .io import ensure_folder, remove_stale_work, results_lock
    from .pipeline import (
        _check_signal,
        _commit,
        _frame_backend,
        _input_stat,
        _keep_reviews,
        _link,
        _notify,
        _remove_tree,
        _versions,
        _with_time,
        _work_folder,
        frames_in,
        input_checksum,
        new_run_id,
        write_table,
    )
    from .track import find_divisions, relabel_frames

    for pop in populations:
        if getattr(cfg.segment, pop).method == "labels":
            raise ConfigError(
                f"{movie.path}: segment.{pop}.method = 'labels' is not supported for 3D stacks "
                "yet; use method = 'threshold'"
            )
    result.warnings.append(
        f"3D stack (z step {movie.calibration.z_step_um:g} µm): area_um2 is the equivalent "
        "area of each object's volume (pi r² of the ball of that volume; volume_um3 holds "
        "the volume); crosstalk unmixing and the 2D mending over time (split_merged, "
        "carry_objects) are not done in 3D"
    )
    fmt = cfg.output.table_format
    cal = movie.calibration
    stat_before = _input_stat(Path(stack))
    held = results_lock(out_dir) if lock else contextlib.nullcontext()
    with held:
        ensure_folder(result.out_dir, "results folder")
        for p in remove_stale_work(result.out_dir):
            logger.info("%s: removed %s, left by a run that was killed", stack, p.name)
        work = None
        try:
            work = _work_folder(result.out_dir)
            work.mkdir()
            staged = work / "out"
            staged.mkdir()
            t0 = time.perf_counter()
            objects, stores, frame_notes = segment_movie_3d(
                movie, cfg, work, populations, progress=progress, on_progress=on_progress
            )
            _check_signal(movie, cfg, objects, frame_notes, populations, result)
            result.timings_s["segment_measure"] = time.perf_counter() - t0
            result.stages += ["segment", "measure"]

            _notify(on_progress, "track")
            t0 = time.perf_counter()
            tracks = []
            lineage = pd.DataFrame(columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME])
            for pop in populations:
                linked = _link(objects, pop, cfg, movie)
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
            shape = (movie.n_frames, *movie.shape[-3:])
            if cfg.output.write_labels:
                for pop, linked in zip(populations, tracks):
                    _write_label_stack_3d(
                        stores[pop],
                        linked[[col.FRAME, col.LABEL, col.TRACK_ID]],
                        staged / f"labels_{pop}.tif",
                        shape,
                    )
            cells = tracks[populations.index(col.CELLS)]
            if export_ctc is not None:
                from .track import export_ctc as write_ctc

                frames = relabel_frames((stores[col.CELLS][t] for t in range(shape[0])), cells)
                ctc_dir = write_ctc(
                    frames,
                    cells,
                    lineage,
                    Path(export_ctc) / f"{result.out_dir.name}_RES",
                    n_frames=movie.n_frames,
                )
                result.counts["ctc_export"] = str(ctc_dir)
            all_tracks = _tracks_table_3d(tracks, cal.interval_s)
            write_table(all_tracks, staged / "tracks.csv", fmt)
            if cfg.output.write_trackmate:
                from .export import export_trackmate

                export_trackmate(  # in 3D: POSITION_Z = z_um, the stack's slices and z step
                    all_tracks,
                    lineage,
                    staged / "tracks.xml",
                    pixel_size_um=cal.pixel_size_um,
                    interval_s=cal.interval_s,
                    image_path=str(Path(stack).resolve()),
                    shape_tyx=(movie.n_frames, *movie.shape[-2:]),
                    z_step_um=cal.z_step_um,
                    n_slices=int(movie.shape[-3]),
                )
            result.timings_s["write"] = time.perf_counter() - t0

            _notify(on_progress, "death")
            t0 = time.perf_counter()
            events = detect_deaths(
                _with_time(cells, cal.interval_s),
                lineage,
                cfg.death,
                interval_s=cal.interval_s,
                image_shape=tuple(movie.shape[-2:]),
            )
            events = _with_z(events, cells)
            result.counts["n_events"] = len(events)
            for mode in col.MODES:
                result.counts[f"n_{mode}"] = int((events[col.MODE] == mode).sum())
            result.timings_s["death"] = time.perf_counter() - t0
            result.stages.append("death")

            _notify(on_progress, "recruit")
            t0 = time.perf_counter()
            immune = tracks[populations.index(col.IMMUNE)] if col.IMMUNE in populations else None
            events = _recruit_3d(events, cells, immune, stores, movie, cfg, result, staged)
            result.timings_s["recruit"] = time.perf_counter() - t0
            events = _keep_reviews(events, result, fmt, staged)
            write_table(events, staged / "events.csv", fmt)
            write_table(lineage, staged / "lineage.csv", fmt)

            checksum = input_checksum(stack)
            if _input_stat(Path(stack)) != stat_before:
                raise StackChangedError(
                    f"{stack}: the stack's file(s) changed while it was analysed; its "
                    "results are not kept: run it again once the file is complete"
                )
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
                "frames_in": frames_in(
                    _frame_backend(
                        cfg.segment,
                        int(np.prod(movie.shape[-3:])),
                        movie.n_frames,
                        volumes=True,
                    )[0]
                ),
                "counts": result.counts,
                "warnings": result.warnings,
            }
            _commit(staged, result.out_dir, run_info)
        finally:
            if work is not None:
                _remove_tree(work)
    for w in result.warnings:
        logger.warning("%s: %s", stack, w)
    return result


def _recruit_3d(events, cells, immune, stores, movie, cfg, result, out: Path) -> pd.DataFrame:
    """Recruitment in 3D (a ball of R µm, contacts in 3D), the mode comparison, and the
    immune cells' motility in 3D; tables written to ``out``."""
    from .motility import arrest_coefficient, track_metrics
    from .pipeline import _labels_at, _with_time, write_table
    from .recruit import CURVE_COLUMNS, compare_modes, recruitment_curves, summarize_events

    fmt = cfg.output.table_format
    if immune is None:
        write_table(pd.DataFrame(columns=CURVE_COLUMNS), out / "recruitment.csv", fmt)
        return events
    cal = movie.calibration
    geometry = dict(
        interval_s=cal.interval_s,
        pixel_size_um=cal.pixel_size_um,
        shape_yx=tuple(movie.shape[-2:]),
        n_slices=int(movie.shape[-3]),
        z_step_um=cal.z_step_um,
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
    coords = (col.Z_UM, col.Y_UM, col.X_UM)
    timed = _with_time(immune, cal.interval_s)
    motility = track_metrics(timed, coord_cols=coords)
    arrest = {
        int(k): arrest_coefficient(
            g[[col.T_S, *coords]].to_numpy(float),
            threshold_um_per_min=cfg.recruit.arrest_speed_um_per_min,
        )
        for k, g in timed.sort_values(col.FRAME).groupby(col.TRACK_ID)
    }
    motility["arrest_coefficient"] = motility[col.TRACK_ID].map(arrest)
    write_table(motility, out / "motility.csv", fmt)
    return events
