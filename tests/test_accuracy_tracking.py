"""Segmentation and tracking accuracy against simulator truth (issue thresholds).

Each scenario is simulated, written to disk, run through ``run_stack`` (the
same path as ``deathtrack run``) and scored on the written label stacks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from deathtrack.evaluate import death_scores, score_tracking
from deathtrack.pipeline import run_stack
from deathtrack.simulate import preset, simulate, write_simulation

pytestmark = pytest.mark.slow

SEEDS = {"default": 101, "low_snr": 102, "divisions": 103, "dense": 104}
EXTRA = {"dense": {"n_cells": 30}, "divisions": {"n_cells": 20, "p_divide": 0.5}}


@pytest.fixture(scope="module", params=sorted(SEEDS))
def scored(request, tmp_path_factory):
    name = request.param
    sim = simulate(
        preset(name, seed=SEEDS[name], n_frames=30, shape_yx=(192, 192), **EXTRA.get(name, {}))
    )
    tmp = tmp_path_factory.mktemp(name)
    paths = write_simulation(sim, tmp, name="movie")
    result = run_stack(paths["movie"], None, tmp / "out", progress=False)
    out = {"name": name, "sim": sim, "result": result}
    for pop in ("cells", "immune"):
        truth = tifffile.imread(paths[f"labels_{pop}"])
        pred = tifffile.imread(result.out_dir / f"labels_{pop}.tif")
        out[pop] = score_tracking(truth, pred)
        if pop == "cells":
            out["cells_loose"] = score_tracking(truth, pred, iou_threshold=0.3)
    return out


def test_target_cell_detection_f1(scored):
    s = scored["cells"][0]
    assert s["f1"] >= 0.95, s


def test_immune_cell_detection_f1(scored):
    s = scored["immune"][0]
    assert s["f1"] >= 0.9, s


def test_target_cell_links_recovered(scored):
    s = scored["cells"][0]
    assert s["link_recall"] >= 0.95, s
    assert s["link_precision"] >= 0.97, s


def test_dying_cells_stay_one_track_until_death(scored):
    events = scored["sim"].truth()["events"]
    _, matches = scored["cells_loose"]
    broken = []
    for e in events.itertuples():
        start = max(0, e.onset_frame - 5)
        window = matches[
            (matches.true_label == e.cell_id)
            & (matches.frame >= start)
            & (matches.frame <= e.frame)
        ]
        if window.pred_label.nunique() != 1 or len(window) != e.frame - start + 1:
            broken.append((e.cell_id, e.mode, sorted(window.pred_label.unique())))
    assert len(broken) <= 0.05 * max(len(events), 1), broken


@pytest.mark.parametrize("scored", ["divisions"], indirect=True)
def test_divisions_are_found(scored):
    lineage = scored["sim"].truth()["lineage"]
    cells = scored["sim"].truth()["cells"]
    # divisions at the image border (a daughter born outside the field) are not scored
    ny, nx = scored["sim"].config.shape_yx
    last = cells.sort_values("frame").groupby("cell_id").last()
    inside = [
        p
        for p in lineage.parent_id.unique()
        if 20 <= last.loc[p, "y"] <= ny - 20 and 20 <= last.loc[p, "x"] <= nx - 20
    ]
    truth = lineage[lineage.parent_id.isin(inside)]
    assert truth.parent_id.nunique() >= 2
    pred = pd.read_csv(scored["result"].out_dir / "lineage.csv")
    _, matches = scored["cells"]
    # map predicted daughters to true cells by their first frame's match
    to_true = dict(zip(zip(matches.frame, matches.pred_label), matches.true_label))
    found = 0
    for _, g in truth.groupby("parent_id"):
        frame = int(g.frame.iloc[0])
        hits = pred[(pred.frame - frame).abs() <= 1]
        kids = {to_true.get((int(r.frame), int(r.child_id))) for r in hits.itertuples()}
        found += set(g.child_id) <= kids
    assert found >= 0.8 * truth.parent_id.nunique(), (found, truth, pred)
    # and no division where there was none
    assert pred.parent_id.nunique() <= lineage.parent_id.nunique() + 1


def test_outputs_contract(scored):
    out = scored["result"].out_dir
    tracks = pd.read_csv(out / "tracks.csv")
    assert list(tracks.columns[:9]) == [
        "frame",
        "track_id",
        "population",
        "t_s",
        "y",
        "x",
        "y_um",
        "x_um",
        "area_um2",
    ]
    assert set(tracks.population) == {"cells", "immune"}
    labels = tifffile.imread(out / "labels_cells.tif")
    assert labels.dtype == np.uint16  # fewer than 65536 tracks: half the bytes of int32
    cells = tracks[tracks.population == "cells"]
    for t in (0, 15, 29):
        assert set(np.unique(labels[t])) - {0} == set(cells[cells.frame == t].track_id)


@pytest.mark.parametrize("scored", ["default"], indirect=True)
def test_deaths_found_and_called_with_dye(scored):
    truth = scored["sim"].truth()["events"]
    pred = pd.read_csv(scored["result"].out_dir / "events.csv")
    assert len(truth) >= 6
    assert set(truth["mode"]) == {"apoptotic", "necroptotic"}
    s = death_scores(pred, truth)  # greedy matching within 10 µm and 4 frames
    assert s["f1"] >= 0.9, (s, pred, truth)
    assert s["balanced_accuracy"] >= 0.9, s
    assert s["median_frame_error"] <= 1, s


@pytest.mark.parametrize("scored", ["divisions"], indirect=True)
def test_no_deaths_called_among_dividing_cells(scored):
    pred = pd.read_csv(scored["result"].out_dir / "events.csv")
    tracks = pd.read_csv(scored["result"].out_dir / "tracks.csv")
    n_tracks = tracks[tracks.population == "cells"].track_id.nunique()
    assert scored["sim"].truth()["events"].empty
    assert len(pred) <= n_tracks / 100, (len(pred), n_tracks, pred)  # at most 1 per 100 tracks
