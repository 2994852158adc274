"""Linking, division detection, relabelling and CTC export on tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from deathtrack.config import DivisionConfig, PopulationTrackConfig
from deathtrack.errors import CalibrationError
from deathtrack.track import export_ctc, find_divisions, link_objects, relabel_frames


def _objs(rows):
    return pd.DataFrame(rows, columns=["frame", "label", "y_um", "x_um", "area_um2"])


def test_two_cells_moving_in_parallel_keep_their_ids():
    rows = []
    for t in range(6):
        rows.append((t, 1, 10.0 + t, 10.0, 200.0))
        rows.append((t, 2, 10.0 + t, 60.0, 200.0))
    tracks = link_objects(_objs(rows), PopulationTrackConfig(), interval_s=60)
    assert tracks.groupby("track_id")["x_um"].nunique().tolist() == [1, 1]
    assert sorted(tracks["track_id"].unique()) == [1, 2]
    assert tracks.loc[tracks.x_um == 10, "track_id"].iloc[0] == 1  # first appearance first


def test_gap_bridged_by_memory_and_cut_without():
    rows = [(t, 1, 5.0 + 0.5 * t, 5.0, 100.0) for t in (0, 1, 2, 4, 5)]
    with_memory = link_objects(_objs(rows), PopulationTrackConfig(max_gap_min=2), interval_s=60)
    no_memory = link_objects(_objs(rows), PopulationTrackConfig(max_gap_min=0), interval_s=60)
    assert with_memory["track_id"].nunique() == 1
    assert no_memory["track_id"].nunique() == 2


def test_speed_limit_from_interval():
    rows = [(0, 1, 0.0, 0.0, 100.0), (1, 1, 0.0, 10.0, 100.0)]  # 10 µm in one frame
    slow = PopulationTrackConfig(max_speed_um_per_min=3.0, min_search_um=1.0)
    assert link_objects(_objs(rows), slow, interval_s=60)["track_id"].nunique() == 2
    assert link_objects(_objs(rows), slow, interval_s=240)["track_id"].nunique() == 1
    with pytest.raises(
        CalibrationError, match="tracking needs the frame interval .* pass --interval S"
    ):
        link_objects(_objs(rows), slow, interval_s=None)


def test_min_length_and_empty_input():
    rows = [(0, 1, 0.0, 0.0, 1.0), (0, 2, 50.0, 50.0, 1.0), (1, 1, 0.5, 0.0, 1.0)]
    tracks = link_objects(_objs(rows), PopulationTrackConfig(min_duration_min=2), interval_s=60)
    assert tracks["track_id"].tolist() == [1, 1]
    empty = link_objects(_objs([]), interval_s=60)
    assert empty.empty and "track_id" in empty.columns
    assert link_objects(_objs(rows[:1]), interval_s=60)["track_id"].tolist() == [1]


def test_input_table_is_not_modified():
    objs = _objs([(0, 1, 0.0, 0.0, 1.0), (1, 1, 0.5, 0.0, 1.0)])
    before = objs.copy()
    link_objects(objs, interval_s=60)
    pd.testing.assert_frame_equal(objs, before)


def _division_rows(keep_parent_id: bool):
    """Parent at (50, 50) for frames 0-4; daughters at (44, 50) and (56, 50) from frame 5."""
    rows = [(t, 1, 50.0, 50.0, 300.0) for t in range(5)]
    for t in range(5, 9):
        d = 6.0 + (t - 5)
        rows.append((t, 1, 50.0 - d, 50.0, 150.0))
        rows.append((t, 2, 50.0 + d, 50.0, 150.0))
    rows.append((6, 3, 10.0, 90.0, 150.0))  # an unrelated cell appearing far away
    rows.append((7, 3, 10.0, 90.0, 150.0))
    return _objs(rows)


def test_division_where_one_daughter_keeps_the_parent_id():
    tracks = link_objects(_division_rows(True), interval_s=60)
    out, lineage = find_divisions(tracks, DivisionConfig(max_distance_um=15))
    assert len(lineage) == 2 and set(lineage["frame"]) == {5}
    parent = lineage["parent_id"].iloc[0]
    assert out[out.track_id == parent]["frame"].max() == 4
    for child in lineage["child_id"]:
        assert out[out.track_id == child]["frame"].min() == 5
    assert out["track_id"].nunique() == 4  # parent, two daughters, the unrelated cell


def test_division_where_both_daughters_are_new_tracks():
    rows = [(t, 1, 50.0, 50.0, 300.0) for t in range(5)]
    rows += [(t, 2, 40.0, 50.0, 140.0) for t in range(5, 8)]
    rows += [(t, 3, 60.0, 50.0, 150.0) for t in range(5, 8)]
    tracks = link_objects(
        _objs(rows), PopulationTrackConfig(max_speed_um_per_min=1, min_search_um=2), interval_s=60
    )
    assert tracks["track_id"].nunique() == 3
    _, lineage = find_divisions(tracks, DivisionConfig(max_distance_um=15))
    assert lineage.values.tolist() == [[1, 2, 5], [1, 3, 5]]


def test_no_division_for_a_lone_new_track_or_wrong_sizes():
    rows = [(t, 1, 50.0, 50.0, 300.0) for t in range(8)]
    rows += [(t, 2, 58.0, 50.0, 290.0) for t in range(4, 8)]  # a neighbour arriving, same size
    tracks = link_objects(_objs(rows), interval_s=60)
    _, lineage = find_divisions(tracks)
    assert lineage.empty
    _, lineage = find_divisions(
        link_objects(_division_rows(True), interval_s=60), DivisionConfig(enabled=False)
    )
    assert lineage.empty


def test_relabel_frames_puts_track_ids_in_the_labels():
    frames = [np.array([[0, 1], [2, 2]]), np.array([[1, 0], [0, 3]])]
    tracks = pd.DataFrame({"frame": [0, 0, 1, 1], "label": [1, 2, 1, 3], "track_id": [7, 4, 4, 9]})
    out = list(relabel_frames(frames, tracks))
    assert out[0].tolist() == [[0, 7], [4, 4]]
    assert out[1].tolist() == [[4, 0], [0, 9]]


def test_export_ctc_splits_gaps_and_links_parents(tmp_path):
    tracks = pd.DataFrame(
        {
            "frame": [0, 1, 3, 4, 2, 3, 4],
            "track_id": [1, 1, 1, 1, 2, 2, 3],
            "label": [1, 1, 1, 1, 2, 2, 3],
        }
    )
    lineage = pd.DataFrame({"parent_id": [2], "child_id": [3], "frame": [4]})
    frames = []
    for t in range(5):
        img = np.zeros((4, 4), np.int32)
        for tid in tracks[tracks.frame == t].track_id:
            img[tid, tid] = tid
        frames.append(img)
    out = export_ctc(frames, tracks, lineage, tmp_path / "ctc", n_frames=5)
    lines = sorted((out / "res_track.txt").read_text().split("\n")[:-1])
    # track 1 has a gap at frame 2: frames 0-1 keep label 1, frames 3-4 become label 4, parent 1
    assert lines == ["1 0 1 0", "2 2 3 0", "3 4 4 2", "4 3 4 1"]
    assert tifffile.imread(out / "mask003.tif")[1, 1] == 4
    assert tifffile.imread(out / "mask000.tif").dtype == np.uint16


@pytest.mark.parametrize(
    ("daughter", "is_division"),
    [
        ({"area_um2": 150.0, "solidity": 0.97, "n_fragments": 1}, True),
        ({"area_um2": 30.0, "solidity": 0.97, "n_fragments": 1}, False),  # too small: bodies
        ({"area_um2": 150.0, "solidity": 0.70, "n_fragments": 1}, False),  # ragged group
        ({"area_um2": 150.0, "solidity": 0.97, "n_fragments": 3}, False),  # several pieces
    ],
)
def test_apoptotic_bodies_splitting_are_not_a_division(daughter, is_division):
    rows = [
        dict(frame=t, label=1, y_um=50.0, x_um=50.0, area_um2=300.0, solidity=0.95, n_fragments=1)
        for t in range(5)
    ]
    for t in range(5, 8):
        rows.append(dict(frame=t, label=2, y_um=40.0, x_um=50.0, **daughter))
        rows.append(dict(frame=t, label=3, y_um=60.0, x_um=50.0, **daughter))
    tracks = link_objects(
        pd.DataFrame(rows),
        PopulationTrackConfig(max_speed_um_per_min=1, min_search_um=2),
        interval_s=60,
    )
    _, lineage = find_divisions(tracks, DivisionConfig(max_distance_um=15, area_ratio=(0.05, 0.8)))
    assert (len(lineage) == 2) is is_division


def test_the_pieces_of_a_ruptured_ghost_are_not_a_division():
    """Daughters keep the reporter; a ruptured cell's ghost split in two has lost it."""
    rows = [(t, 1, 50.0, 50.0, 300.0) for t in range(5)]
    rows += [(t, 2, 40.0, 50.0, 140.0) for t in range(5, 8)]
    rows += [(t, 3, 60.0, 50.0, 150.0) for t in range(5, 8)]
    objs = _objs(rows)
    objs["cells_bg"] = 180.0
    tracks_cfg = PopulationTrackConfig(max_speed_um_per_min=1, min_search_um=2)
    for after, is_division in ((560.0, True), (260.0, False)):  # parent: 580 (400 above bg)
        objs["cells_mean"] = np.where(objs["frame"] < 5, 580.0, after)
        tracks = link_objects(objs, tracks_cfg, interval_s=60)
        _, lineage = find_divisions(tracks, DivisionConfig(max_distance_um=15))
        assert (len(lineage) == 2) is is_division, (after, lineage)


_IMPORT_CHECK = """
import sys
from deathtrack._memory import claim_process
from deathtrack.track import import_trackpy

if sys.argv[1] == "own":
    claim_process()
trackpy = import_trackpy()
print(sorted(m for m in ("IPython", "sklearn") if m in sys.modules))
import sklearn  # later imports of the modules trackpy went without work
print(hasattr(trackpy, "link"), sklearn.__name__)
"""


def test_the_command_line_imports_trackpy_without_ipython_or_sklearn():
    """In deathtrack's own process trackpy comes without IPython and scikit-learn (~30 MB
    resident it never uses for deathtrack), and both import normally afterwards; in
    anyone else's process (a notebook, napari) trackpy is imported as it is."""
    import subprocess
    import sys

    pytest.importorskip("sklearn")

    def run(mode):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_CHECK, mode], capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    assert run("own") == ["[]", "True sklearn"]
    assert "sklearn" in run("lib")[0]


_CACHE_CHECK = """
import numpy as np, pandas as pd
from deathtrack.track import link_objects
from deathtrack.config import PopulationTrackConfig

rng = np.random.default_rng(1)
n = 60  # crowded cells: subnetworks, which trackpy's compiled solver takes
objects = pd.DataFrame({"frame": np.repeat(np.arange(4), n), "label": np.tile(np.arange(1, n + 1), 4),
                        "y_um": rng.uniform(0, 60, 4 * n), "x_um": rng.uniform(0, 60, 4 * n)})
cfg = PopulationTrackConfig(max_speed_um_per_min=4.0, min_search_um=1.0, min_duration_min=0)
tracks = link_objects(objects, cfg, interval_s=120)
import trackpy.linking.subnetlinker as subnets
stats = subnets._numba_subnet_norecur.stats
print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()), tracks["track_id"].nunique() < len(objects))
"""


def test_trackpys_compiled_linker_is_cached_on_disk(tmp_path):
    """trackpy compiles its subnetwork solver in every process; deathtrack has numba keep
    it on disk: the first process compiles and saves it, the next loads it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}  # this test's own cache

    def run():
        out = subprocess.run(
            [sys.executable, "-c", _CACHE_CHECK], capture_output=True, text=True, env=env
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert run() == ["1", "0", "True"]  # compiled, saved
    assert run() == ["0", "1", "True"]  # loaded from the cache


def test_trackpy_still_links_where_numba_cannot_cache(monkeypatch):
    """Nowhere to write numba's cache (read-only install, no home folder): numba refuses
    to cache, and trackpy compiles in each process as before instead of failing."""
    from trackpy.linking import subnetlinker

    from deathtrack.track import _cache_compiled_linker, import_trackpy

    class NullCache:  # what numba has before caching is turned on
        pass

    class Solver:
        _cache = NullCache()

        def enable_caching(self):
            raise RuntimeError("cannot cache function: no locator available for file")

    trackpy = import_trackpy()
    monkeypatch.setattr(subnetlinker, "_numba_subnet_norecur", Solver())
    assert _cache_compiled_linker(trackpy) is trackpy


def test_relabelling_is_the_same_with_or_without_the_compiled_kernels(monkeypatch):
    """Where deathtrack's compiled kernels are loaded (a process that segmented) labels
    become track ids in one compiled pass; elsewhere (a helper writing the label stacks,
    which would load numba for it) by NumPy's indexing: the same image."""
    import sys

    from deathtrack.track import relabel_frame

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 40, (64, 48)).astype(np.int32)
    objects = pd.DataFrame({"label": np.arange(1, 45), "track_id": np.arange(101, 145)})
    import deathtrack._kernels  # noqa: F401

    compiled = relabel_frame(labels, objects, np.uint16)
    monkeypatch.delitem(sys.modules, "deathtrack._kernels")
    plain = relabel_frame(labels, objects, np.uint16)
    assert plain.dtype == compiled.dtype == np.uint16
    np.testing.assert_array_equal(plain, compiled)
    assert plain[labels == 7].tolist() == [107] * int((labels == 7).sum())
    assert (plain[labels == 0] == 0).all()
