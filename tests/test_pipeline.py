"""run_stack: progress callback and cancelling a run."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deathtrack.config import PipelineConfig
from deathtrack.pipeline import run_stack


class Cancelled(Exception):
    pass


def test_progress_callback_reports_every_frame_and_stage(tmp_path, small_movie):
    calls = []
    run_stack(
        small_movie["movie"],
        PipelineConfig(),
        tmp_path,
        progress=False,
        on_progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    seg = [c for c in calls if c[0] == "segment"]
    assert [c[1] for c in seg] == list(range(1, 41))
    assert all(c[2] == 40 for c in seg)
    assert [c[0] for c in calls if c[0] != "segment"][:2] == ["track", "death"]


def test_exception_in_callback_cancels_and_leaves_no_half_written_outputs(tmp_path, small_movie):
    seen = []

    def cancel_at_5(stage, done, total):
        seen.append(done)
        if done == 5:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_stack(
            small_movie["movie"],
            PipelineConfig(),
            tmp_path,
            progress=False,
            on_progress=cancel_at_5,
        )
    assert max(seen) == 5
    out = tmp_path / "small"
    # no tables, no run.json, no temporary work folder left behind
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_failing_output_writer_fails_the_run_and_leaves_it_incomplete(
    tmp_path, small_movie, monkeypatch
):
    """Label stacks, tracks.csv and tracks.xml are written beside the later stages (in
    worker processes for large movies); a writer's error still fails the run: no
    run.json (so a re-run redoes the stack) and no work folder left behind."""
    import deathtrack.pipeline as pipeline

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "_write_label_stack", broken)
    with pytest.raises(OSError, match="disk full"):
        run_stack(small_movie["movie"], PipelineConfig(), tmp_path, progress=False)
    names = sorted(p.name for p in (tmp_path / "small").iterdir())
    assert "run.json" not in names and "labels_cells.tif" not in names
    assert not [n for n in names if n.startswith(".work")]


def test_rerun_keeps_reviewed_labels(tmp_path, small_movie):
    """A person's review survives a re-run with other parameters (no decision is lost)."""
    import pandas as pd

    from deathtrack.config import apply_overrides

    run_stack(small_movie["movie"], PipelineConfig(), tmp_path, progress=False)
    path = tmp_path / "small" / "events.csv"
    ev = pd.read_csv(path)
    assert len(ev) >= 3
    ev["reviewed_mode"] = None
    ev["reviewer"] = None
    ev["reviewed_at"] = None
    ev.loc[0, ["reviewed_mode", "reviewer", "reviewed_at"]] = ["necroptotic", "ana", "2026-11-23"]
    ev.loc[1, ["reviewed_mode", "reviewer"]] = ["not_death", "ana"]
    missed = {
        "event_id": 99,
        "frame": 5,
        "y": 10.0,
        "x": 10.0,
        "y_um": 6.5,
        "x_um": 6.5,
        "reviewed_mode": "apoptotic",
        "reviewer": "ana",
    }
    ghost = {
        "event_id": 98,
        "track_id": 999,
        "frame": 30,
        "y": 180.0,
        "x": 5.0,
        "y_um": 117.0,
        "x_um": 3.25,
        "reviewed_mode": "apoptotic",
        "reviewer": "ana",
    }
    pd.concat([ev, pd.DataFrame([missed, ghost])]).to_csv(path, index=False)
    first = ev.iloc[:2][["track_id", "frame", "mode", "p_necroptotic"]]

    cfg = apply_overrides(PipelineConfig(), ["recruit.radius_um=20"])
    result = run_stack(small_movie["movie"], cfg, tmp_path, progress=False)
    new = pd.read_csv(path)
    for row, label in zip(first.itertuples(), ["necroptotic", "not_death"]):
        hit = new[(new.track_id == row.track_id) & (new.frame == row.frame)].iloc[0]
        assert hit.reviewed_mode == label and hit.reviewer == "ana"
        assert hit["mode"] == row.mode  # the automatic call is untouched
        assert hit.p_necroptotic == pytest.approx(row.p_necroptotic)
    added = new[new.track_id.isna()]
    assert added.reviewed_mode.tolist() == ["apoptotic"] and added.frame.tolist() == [5]
    assert added.event_id.iloc[0] == new.event_id.max()
    lost = pd.read_csv(tmp_path / "small" / "reviews_unmatched.csv")
    assert lost.track_id.tolist() == [999]
    assert any("kept 3 of 4 reviewed labels" in w for w in result.warnings)


# --- frames in parallel ---------------------------------------------------------------------


def _tables(folder):
    import pandas as pd

    return {
        name: pd.read_csv(folder / f"{name}.csv")
        for name in ("tracks", "events", "lineage", "recruitment")
    }


@pytest.mark.parametrize("parallel", ["processes", "threads", "processes from a thread"])
def test_frames_in_parallel_give_the_serial_results(tmp_path, small_movie, parallel):
    """Helper processes (loky) beside this one, or threads, or only helper processes (a
    run from another thread, as napari's): the same tables and label stacks as one
    worker."""
    import threading

    import numpy as np
    import pandas as pd
    import tifffile

    serial = PipelineConfig()
    serial.segment.workers = 1
    par = PipelineConfig()
    par.segment.workers = 2
    par.segment.parallel = parallel.split()[0]
    a = run_stack(small_movie["movie"], serial, tmp_path / "serial", progress=False).out_dir
    out = {}

    def run():
        out["b"] = run_stack(small_movie["movie"], par, tmp_path / "par", progress=False).out_dir

    if parallel.endswith("thread"):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    else:
        run()
    b = out["b"]
    for name, table in _tables(a).items():
        pd.testing.assert_frame_equal(table, _tables(b)[name], obj=name)
    for pop in ("cells", "immune"):
        assert np.array_equal(
            tifffile.imread(a / f"labels_{pop}.tif"), tifffile.imread(b / f"labels_{pop}.tif")
        )
    assert (b / "tracks.xml").read_bytes() == (a / "tracks.xml").read_bytes()


def test_packed_labels_round_trip():
    """Labels sent back by worker processes compressed come back equal, writable and small."""
    import pickle

    import numpy as np

    from deathtrack.pipeline import _PackedLabels, _unpacked

    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, 300, (64, 64)), 16, 0), 16, 1).astype(np.int32)
    for lab in (labels, labels[::2, 3:], np.zeros((0, 5), np.int32), np.zeros((7, 9), np.uint16)):
        packed = pickle.loads(pickle.dumps(_PackedLabels(lab)))  # as through loky's pipe
        back = _unpacked(packed)
        assert back.dtype == lab.dtype and back.shape == lab.shape
        assert np.array_equal(back, lab)
        back[...] = 1  # writable, as the worker's array was
    assert len(_PackedLabels(labels).data) < labels.nbytes / 20
    assert _unpacked(labels) is labels  # threads: nothing to unpack


def test_frame_backend_choice(monkeypatch):
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    from deathtrack.pipeline import PROCESS_MIN_PIXELS, _frame_backend

    cfg = PipelineConfig().segment
    assert _frame_backend(cfg, 256 * 256, 40) == ("threading", 2)
    # large frames: threads with two workers (one process), processes with more
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 40) == ("threading", 2)
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 1) == (None, 1)  # one frame: no pool
    cfg.workers = 3
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 40) == ("loky", 3)
    assert _frame_backend(cfg, 256 * 256, 40) == ("threading", 3)
    cfg.workers = 2
    # large z-stacks in processes; small ones in threads
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 40, volumes=True) == ("loky", 2)
    assert _frame_backend(cfg, 64 * 64 * 10, 40, volumes=True) == ("threading", 2)
    # from another thread (napari's): large frames in processes, away from its lock
    with ThreadPoolExecutor(1) as other:
        got = other.submit(_frame_backend, cfg, PROCESS_MIN_PIXELS, 40).result()
    assert got == ("loky", 2)
    cfg.parallel = "processes"
    assert _frame_backend(cfg, 64 * 64, 40) == ("loky", 2)
    # a daemonic process (a Dask worker) may not start children: threads instead
    monkeypatch.setattr(mp.current_process(), "daemon", True, raising=False)
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 40) == ("threading", 2)
    cfg.workers = 1
    assert _frame_backend(cfg, PROCESS_MIN_PIXELS, 40) == (None, 1)


def _fail(message):
    raise ValueError(message)


def test_helpers_beside_this_process_unless_called_from_another_thread():
    """From the main thread this process works too (workers - 1 helpers); from another
    (napari's worker thread) the helpers do all the work, so the viewer keeps Python's lock."""
    import threading

    from deathtrack.pipeline import _helper_count

    assert [_helper_count(w) for w in (1, 2, 4)] == [0, 1, 3]
    got = []
    thread = threading.Thread(target=lambda: got.extend(_helper_count(w) for w in (1, 2, 4)))
    thread.start()
    thread.join()
    assert got == [1, 2, 4]


@pytest.mark.parametrize("helpers", [1, 0])
def test_background_task_returns_its_value_or_reraises(helpers):
    from deathtrack.pipeline import _submit

    assert _submit(helpers, max, 3, 7).result() == 7
    with pytest.raises(ValueError, match="export failed"):
        _submit(helpers, _fail, "export failed").result()


def _environ(name):
    import os

    return os.getpid(), os.environ.get(name)


def test_the_frames_helpers_are_replaced_by_fresh_ones_for_the_rest_of_the_run():
    """A helper that segmented frames holds numba's compiler and the segmentation's heap
    (~300 MB at 1024²); the writers and the gallery get a new one (~150 MB), started with
    what they import."""
    import os

    from deathtrack.pipeline import _fresh_helpers, _helper_pool

    before, _ = _helper_pool(1).submit(_environ, "HOME").result()
    _fresh_helpers(1)
    after, _ = _helper_pool(1).submit(_environ, "HOME").result()
    assert before != after and os.getpid() not in (before, after)
    loaded = _helper_pool(1).submit(_loaded, "deathtrack.export", "numba").result()
    assert loaded == [True, False]
    _fresh_helpers(0)  # no helpers: nothing to replace
    assert _helper_pool(1).submit(_environ, "HOME").result()[0] == after


def _loaded(*names):
    import sys

    return [name in sys.modules for name in names]


def _pid_after(seconds, started=None):
    import os
    import time
    from pathlib import Path

    if started is not None:
        Path(started).touch()
    time.sleep(seconds)
    return os.getpid()


def test_tasks_no_helper_has_started_run_here(tmp_path):
    """Work stealing: gathering runs here the tasks still queued (the last first), so this
    process never waits idle behind a queue it could empty; the values come in order."""
    import os
    import time

    from deathtrack.pipeline import _gather, _submit

    started = tmp_path / "started"
    # loky hands its helpers a few tasks at once (the ones they run and some queued): of
    # twelve, the last ones are still queued when they are gathered
    tasks = [
        _submit(1, _pid_after, 1.5, started),
        *(_submit(1, _pid_after, 0.0) for _ in range(11)),
    ]
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:  # a helper has the first
        time.sleep(0.01)
    pids = _gather(tasks)
    assert pids[0] != os.getpid()  # the helper's, started at once
    assert pids[-1] == os.getpid()  # still queued behind it: run here
    assert pids.count(os.getpid()) >= 5
    # with no helper, every task runs here, in order, when its value is needed
    assert _gather([_submit(0, _pid_after, 0.0) for _ in range(3)]) == [os.getpid()] * 3
    with pytest.raises(ValueError, match="writer failed"):
        _gather([_submit(1, max, 1, 2), _submit(1, _fail, "writer failed")])


def _touch(path):
    from pathlib import Path

    Path(path).touch()


def test_a_cancelled_task_never_runs(tmp_path):
    """A failed run drops the writers no helper has started (it waits for the others)."""
    import time

    from deathtrack.pipeline import _submit

    _submit(1, _pid_after, 0.0).result()  # the helper is up
    busy = [_submit(1, _pid_after, s) for s in (1.5, *[0.0] * 5)]  # loky holds a few
    queued = _submit(1, _touch, tmp_path / "written")
    assert queued.cancel()
    here = _submit(0, _touch, tmp_path / "written_here")
    assert here.cancel()
    for task in busy:
        task.result()
    time.sleep(0.2)
    assert not (tmp_path / "written").exists() and not (tmp_path / "written_here").exists()
    with pytest.raises(RuntimeError, match="cancelled"):
        queued.result()


def test_unknown_parallel_mode_is_a_config_error():
    from deathtrack.config import config_from_dict
    from deathtrack.errors import ConfigError

    with pytest.raises(ConfigError, match="parallel"):
        config_from_dict({"segment": {"parallel": "gpu"}})


def test_cancel_with_worker_processes_leaves_no_half_written_outputs(tmp_path, small_movie):
    cfg = PipelineConfig()
    cfg.segment.parallel = "processes"

    def cancel_at_3(stage, done, total):
        if done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        run_stack(small_movie["movie"], cfg, tmp_path, progress=False, on_progress=cancel_at_3)
    assert sorted(p.name for p in (tmp_path / "small").iterdir()) == []


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_one_blas_thread_only_beside_others():
    """This process keeps one BLAS thread while it works beside others (helper processes
    or frame threads) and gets its threads back after; otherwise it is not limited."""
    from deathtrack.pipeline import _one_blas_thread

    before = _blas_threads()
    if not before or max(before) < 2:
        pytest.skip("this machine's BLAS has one thread: nothing to limit")
    lift = _one_blas_thread(False)
    assert _blas_threads() == before
    lift()
    lift = _one_blas_thread(True)
    assert set(_blas_threads()) == {1}
    lift()
    assert _blas_threads() == before


@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_frames_in_parallel_have_one_blas_thread(small_movie, tmp_path, monkeypatch, parallel):
    """While frames are segmented in threads (or here beside a helper process), this
    process has one BLAS thread: the threads' background fits (NumPy's least squares,
    which holds Python's lock) otherwise wait on OpenBLAS's spinning threads; the limit
    is lifted when the run ends. With one worker, nothing is limited."""
    import deathtrack.pipeline as pl

    before = _blas_threads()
    if not before or max(before) < 2:
        pytest.skip("this machine's BLAS has one thread: nothing to limit")
    seen = []
    segment_one = pl._segment_measure_frame

    def spy(*args):
        seen.append(max(_blas_threads()))
        return segment_one(*args)

    monkeypatch.setattr(pl, "_segment_measure_frame", spy)
    for workers, expect in ((2, {1}), (1, {max(before)})):
        seen.clear()
        cfg = PipelineConfig()
        cfg.segment.workers = workers
        cfg.segment.parallel = parallel
        pl.run_stack(small_movie["movie"], cfg, tmp_path / f"{parallel}{workers}", progress=False)
        # with helper processes, this process segments some of the frames itself
        assert seen and set(seen) == expect
        assert _blas_threads() == before


def test_run_in_threads_stays_one_process(small_movie, tmp_path, threads_only, caplog):
    """Frames segmented in threads: the output files are written by helper threads (or
    here), never by a helper process; run.json says how the frames were segmented, and
    the outputs are those of a run in one thread."""

    import tifffile

    import deathtrack.pipeline as pl

    serial_cfg = PipelineConfig()
    serial_cfg.segment.workers = 1
    serial = pl.run_stack(small_movie["movie"], serial_cfg, tmp_path / "serial", progress=False)

    used = threads_only(pl, "_write_label_stack")
    cfg = PipelineConfig()
    cfg.segment.workers = 2
    cfg.segment.parallel = "threads"
    caplog.set_level(logging.INFO, logger="deathtrack.pipeline")
    res = pl.run_stack(small_movie["movie"], cfg, tmp_path / "threads", progress=False)
    assert len(used) == 2 and set(used) <= {"MainThread", "deathtrack-aside_0"}
    run = json.loads((res.out_dir / "run.json").read_text())
    assert run["frames_in"] == "threads"
    assert "frames segmented in threads (segment.parallel = 'threads', workers = 2)" in caplog.text
    assert json.loads((serial.out_dir / "run.json").read_text())["frames_in"] == "this thread"
    for name in ("labels_cells.tif", "labels_immune.tif"):
        assert np.array_equal(
            tifffile.imread(res.out_dir / name), tifffile.imread(serial.out_dir / name)
        )
    for name in ("tracks.csv", "events.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(res.out_dir / name), pd.read_csv(serial.out_dir / name)
        )


def _swelling_cell_lost_before_it_ruptures(path, nucleus=4, at=(64, 64), cell=True):
    """Two channels (cells, dye), 16 frames of 128² px at 0.65 µm, 5 min apart: four
    steady cells and one that swells from frame 6 (area x2 by frame 9, its reporter
    diluting) and ruptures at frame 10: from then on nothing of it in the cells channel
    (the ghost at background level, as in confluent fields), its nucleus in the dye (a
    disc of ``nucleus`` px at ``at``; ``cell=False``: no swelling cell was ever seen)."""
    import numpy as np
    import tifffile
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:128, :128]

    def disc(cy, cx, r):
        return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2

    def image(objects, bg):
        a = np.full((128, 128), float(bg))
        for mask, level in objects:
            a = a + mask * level
        return rng.poisson(ndi.gaussian_filter(a, 1.2)).astype(np.uint16)

    rng = np.random.default_rng(0)
    radii = [12] * 6 + [14, 15, 16, 17]
    frames = []
    for t in range(16):
        cells = [(disc(y, x, 11), 500) for y, x in ((30, 30), (30, 98), (98, 30), (98, 98))]
        dye = []
        if t < len(radii):
            if cell:
                cells.append((disc(*at, radii[t]), 500 * (12 / radii[t]) ** 2))
        else:
            dye.append((disc(*at, nucleus), 400))
        frames.append(np.stack([image(cells, 100), image(dye, 60)]))
    tifffile.imwrite(
        path,
        np.stack(frames),
        ome=True,
        metadata={
            "axes": "TCYX",
            "PhysicalSizeX": 0.65,
            "PhysicalSizeY": 0.65,
            "TimeIncrement": 300,
            "TimeIncrementUnit": "s",
            "Channel": {"Name": ["cells", "dye"]},
        },
    )
    return path


def test_a_swelling_cell_lost_before_it_ruptures_is_one_necroptotic_death(tmp_path):
    """Its track ends a frame before the rupture unless its outline is kept while the dye
    stains it (segment.cells.carry_dye_k): the death, at frame 10, is found only so."""
    import pandas as pd

    from deathtrack.config import apply_overrides

    movie = _swelling_cell_lost_before_it_ruptures(tmp_path / "swell.ome.tif")
    found = {}
    for k in (3.0, 0.0):
        cfg = apply_overrides(PipelineConfig(), [f"segment.cells.carry_dye_k={k}"])
        res = run_stack(movie, cfg, tmp_path / f"k{k}", progress=False)
        found[k] = pd.read_csv(res.out_dir / "events.csv")
    ev = found[3.0]
    assert len(ev) == 1, ev
    assert ev["mode"].iloc[0] == "necroptotic"
    assert abs(ev["frame"].iloc[0] - 10) <= 1
    assert abs(ev["y_um"].iloc[0] - 64 * 0.65) < 3 and abs(ev["x_um"].iloc[0] - 64 * 0.65) < 3
    assert found[0.0].empty  # without it the track ends at frame 9: no death


def test_a_cell_lost_before_it_ruptures_is_found_by_the_dye_filling_its_nucleus(tmp_path):
    """As above with the swelling cell's outline not kept (carry_dye_k=0), and a nucleus
    of 8 px (half a cell's area) taking up the dye at frame 10: one necroptotic death
    there, on the track that ended at frame 9 (the tracks alone show none: the test
    above). The same dye where no cell was ever seen: one death with no track_id, in the
    written tables and the report."""
    from deathtrack.config import apply_overrides
    from deathtrack.report import write_report

    cfg = apply_overrides(PipelineConfig(), ["segment.cells.carry_dye_k=0"])
    movie = _swelling_cell_lost_before_it_ruptures(tmp_path / "lost.ome.tif", nucleus=8)
    res = run_stack(movie, cfg, tmp_path / "lost", progress=False)
    ev = pd.read_csv(res.out_dir / "events.csv")
    tracks = pd.read_csv(res.out_dir / "tracks.csv")
    centre = tracks[(tracks["frame"] == 9) & (np.hypot(tracks["y"] - 64, tracks["x"] - 64) < 5)]
    assert len(ev) == 1 and len(centre) == 1, (ev, centre)
    assert ev[["frame", "mode", "track_id"]].values.tolist() == [
        [10, "necroptotic", centre["track_id"].iloc[0]]
    ]
    assert abs(ev["y_um"].iloc[0] - 64 * 0.65) < 2 and abs(ev["x_um"].iloc[0] - 64 * 0.65) < 2

    movie = _swelling_cell_lost_before_it_ruptures(
        tmp_path / "unseen.ome.tif", nucleus=8, at=(64, 112), cell=False
    )
    res = run_stack(movie, cfg, tmp_path / "unseen", progress=False)
    ev = pd.read_csv(res.out_dir / "events.csv")
    assert ev[["frame", "mode"]].values.tolist() == [[10, "necroptotic"]]
    assert ev["track_id"].isna().all()
    report = write_report(res.out_dir)
    assert "necroptotic" in Path(report).read_text()


def test_label_store_keeps_each_frame_exactly(tmp_path):
    """The run's raw label store: what goes in comes out (any int32 value), frames never
    written are background, frames are writable copies, and helper processes can take
    the store (it pickles as a folder, a shape and a dtype)."""
    import pickle

    from deathtrack.pipeline import _LabelStore

    rng = np.random.default_rng(0)
    store = _LabelStore(tmp_path / "labels_cells", (3, 40, 50))
    frame = rng.integers(0, 2**31 - 1, (40, 50)).astype(np.int32)
    frame[:10] = 0
    store[1] = frame
    store[2] = np.zeros((40, 50), np.int32)
    again = pickle.loads(pickle.dumps(store))
    for s in (store, again):
        np.testing.assert_array_equal(s[1], frame)
        assert s[0].dtype == np.int32 and not s[0].any()  # never written
        assert not s[2].any()
    out = store[1]
    out[0, 0] = 7  # a copy: the store is unchanged
    assert store[1][0, 0] == frame[0, 0]
    with pytest.raises(ValueError, match="shape"):
        store[0] = np.zeros((40, 49), np.int32)
    with pytest.raises(IndexError):
        store[3]
