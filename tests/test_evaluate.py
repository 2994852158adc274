"""The scoring harness against ground truth with known answers (issue 13).

Truth scored against itself must be perfect; a prediction corrupted in a known
way must lose exactly what was taken from it.
"""

from __future__ import annotations

import itertools
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from deathtrack.evaluate import (
    composite_score,
    leave_one_family_out,
    match_events,
    recruitment_errors,
    score_run,
)
from deathtrack.simulate import SimulationConfig, simulate, write_simulation


@pytest.fixture(scope="module")
def truth_folder(tmp_path_factory):
    """A tiny simulated movie with deaths of both modes and immune cells."""
    sim = simulate(
        SimulationConfig(
            seed=12,
            shape_yx=(128, 128),
            n_frames=24,
            n_cells=8,
            n_immune=5,
            p_apoptotic=0.4,
            p_necroptotic=0.4,
            p_divide=0.0,
            post_death_min=12.0,
        )
    )
    paths = write_simulation(sim, tmp_path_factory.mktemp("truth"), name="movie")
    events = pd.read_csv(paths["events"])
    assert len(events) >= 3 and events["mode"].nunique() == 2
    return paths["events"].parent


def _perfect_run(truth, out):
    """A results folder that says exactly what the truth says."""
    out.mkdir()
    for pop in ("cells", "immune"):
        shutil.copy(truth / f"labels_{pop}.tif", out / f"labels_{pop}.tif")
    ev = pd.read_csv(truth / "events.csv")
    ev["p_necroptotic"] = (ev["mode"] == "necroptotic").astype(float)
    ev.to_csv(out / "events.csv", index=False)
    shutil.copy(truth / "recruitment.csv", out / "recruitment.csv")
    return out


def test_truth_scored_against_itself_is_perfect(truth_folder, tmp_path):
    s = score_run(_perfect_run(truth_folder, tmp_path / "run"), truth_folder)
    for key in ("cells_f1", "cells_link_recall", "cells_link_precision", "immune_f1"):
        assert s[key] == 1.0, key
    assert s["deaths_f1"] == 1.0 and s["deaths_false"] == 0
    assert s["false_per_100_tracks"] == 0.0 and s["death_frame_error"] == 0.0
    assert s["mode_balanced_accuracy"] == 1.0
    assert s["recruit_mae"] == 0.0 and s["recruit_bias"] == 0.0 and s["recruit_n"] > 0
    assert composite_score(s) == 1.0


def test_a_missing_object_costs_one_detection_and_two_links(truth_folder, tmp_path):
    run = _perfect_run(truth_folder, tmp_path / "run")
    labels = tifffile.imread(run / "labels_cells.tif")
    t = 10
    gone = int(np.unique(labels[t][labels[t] > 0])[0])
    assert gone in labels[t - 1] and gone in labels[t + 1]
    labels[t][labels[t] == gone] = 0
    tifffile.imwrite(run / "labels_cells.tif", labels)
    truth = tifffile.imread(truth_folder / "labels_cells.tif")
    n_true = sum(len(np.unique(f)) - 1 for f in truth)
    n_links = sum(
        len(set(np.unique(a)) & set(np.unique(b)) - {0}) for a, b in itertools.pairwise(truth)
    )
    s = score_run(run, truth_folder)
    tp = n_true - 1
    assert s["cells_n_true"] == n_true and s["cells_n_pred"] == tp
    assert s["cells_f1"] == pytest.approx(2 * tp / (2 * tp + 1))
    assert s["cells_link_recall"] == pytest.approx((n_links - 2) / n_links)
    assert s["immune_f1"] == 1.0


def test_late_wrong_and_false_calls_and_count_errors(truth_folder, tmp_path):
    run = _perfect_run(truth_folder, tmp_path / "run")
    truth = pd.read_csv(truth_folder / "events.csv")
    n_tracks = pd.read_csv(truth_folder / "cells.csv")["cell_id"].nunique()
    ev = pd.read_csv(run / "events.csv")
    ev.loc[0, "frame"] += 3  # found late (within 30 min at 2 min per frame)
    nec = ev.index[ev["mode"] == "necroptotic"][0]
    ev.loc[nec, "mode"] = "uncertain"  # one necroptotic death called uncertain
    false = ev.iloc[[0]].assign(event_id=99, y_um=500.0, x_um=500.0)  # nowhere near a death
    pd.concat([ev, false]).to_csv(run / "events.csv", index=False)
    rec = pd.read_csv(run / "recruitment.csv")
    first = rec["event_id"] == ev.loc[0, "event_id"]
    rec.loc[first, "n_within_r"] += 1  # one immune cell too many around the first death
    rec.to_csv(run / "recruitment.csv", index=False)

    s = score_run(run, truth_folder)
    n = len(truth)
    assert (s["deaths_tp"], s["deaths_false"], s["deaths_n_called"]) == (n, 1, n + 1)
    assert s["deaths_f1"] == pytest.approx(2 * n / (2 * n + 1))
    assert s["false_per_100_tracks"] == pytest.approx(100 / n_tracks)
    errors = [3] + [0] * (n - 1)
    assert s["death_frame_error"] == float(np.median(errors))
    n_nec = int((truth["mode"] == "necroptotic").sum())
    assert s["mode_balanced_accuracy"] == pytest.approx((1 + (n_nec - 1) / n_nec) / 2)
    assert s["recruit_n"] == len(rec)
    assert s["recruit_bias"] == pytest.approx(first.sum() / len(rec))
    assert s["recruit_mae"] == pytest.approx(first.sum() / len(rec))


def test_the_physical_time_tolerance_and_nearest_call():
    truth = pd.DataFrame(
        {"event_id": [1], "frame": [10], "y_um": [0.0], "x_um": [0.0], "mode": ["apoptotic"]}
    )
    pred = pd.DataFrame(
        {
            "event_id": [1, 2],
            "frame": [13, 10],
            "y_um": [1.0, 5.0],
            "x_um": [0.0, 0.0],
            "mode": ["apoptotic", "apoptotic"],
            "p_necroptotic": [0.1, 0.2],
        }
    )
    # by default: 4 frames, the first call listed
    assert match_events(pred, truth)["pred_id"].tolist() == [1]
    # physical: 30 min at 1 min per frame is 30 frames; the call nearest in time wins
    m = match_events(pred, truth, max_minutes=30, interval_s=60)
    assert m["pred_id"].tolist() == [2] and m["frame_error"].tolist() == [0]
    # at 10 min per frame, 30 min is 3 frames
    late = pred.iloc[[0]].assign(frame=14)
    assert match_events(late, truth, max_minutes=30, interval_s=600)["pred_id"].tolist() == [-1]
    assert match_events(late, truth, max_minutes=40, interval_s=600)["pred_id"].tolist() == [1]
    # never less than min_frames
    assert match_events(late, truth, max_minutes=1, interval_s=600, min_frames=4)[
        "pred_id"
    ].tolist() == [1]
    with pytest.raises(ValueError, match="`interval_s`"):
        match_events(pred, truth, max_minutes=30)


def test_recruitment_errors_align_on_dt():
    truth = pd.DataFrame({"event_id": [1, 1, 1], "dt": [-1, 0, 1], "n_within_r": [0, 2, 3]})
    pred = pd.DataFrame({"event_id": [7, 7], "dt": [0, 1], "n_within_r": [1, 3]})
    matches = pd.DataFrame({"true_id": [1], "pred_id": [7]})
    assert recruitment_errors(pred, truth, matches) == {"n": 2, "mae": 0.5, "bias": -0.5}
    missed = pd.DataFrame({"true_id": [1], "pred_id": [-1]})
    r = recruitment_errors(pred, truth, missed)
    assert r["n"] == 0 and math.isnan(r["mae"])


def test_composite_score_without_deaths_counts_false_calls():
    s = {"cells_f1": 0.9, "cells_link_recall": 0.8, "immune_f1": math.nan}
    assert composite_score({**s, "deaths_n_true": 0, "false_per_100_tracks": 5.0}) == (
        pytest.approx((0.9 + 0.8 + 0.5) / 3)
    )
    with_deaths = {**s, "deaths_n_true": 4, "deaths_f1": 0.6, "recruit_mae": 0.25}
    assert composite_score(with_deaths) == pytest.approx((0.9 + 0.8 + 0.6 + 0.75) / 4)


def test_leave_one_family_out_chooses_on_the_others_only():
    rows = []
    # point "b" is the best on families x and y but the worst on z
    scores = {"defaults": (0.7, 0.7, 0.8), "b": (0.9, 0.9, 0.2), "c": (0.8, 0.6, 0.9)}
    for point, per_family in scores.items():
        for fam, v in zip("xyz", per_family):
            rows += [{"family": fam, "seed": s, "point": point, "composite": v} for s in (0, 1)]
    lofo = leave_one_family_out(pd.DataFrame(rows), baseline="defaults").set_index("held_out")
    # held out z: chosen on x and y -> b, which then scores 0.2 on z
    assert lofo.loc["z", "chosen"] == "b" and lofo.loc["z", "score_held_out"] == 0.2
    assert lofo.loc["z", "baseline_held_out"] == 0.8
    # held out x: on y and z, b = 0.55, c = 0.75, defaults = 0.75 -> tie, the first listed
    assert lofo.loc["x", "chosen"] == "defaults"
    assert lofo.loc["x", "score_others"] == pytest.approx(0.75)
    assert lofo.loc["y", "chosen"] == "c"  # on x and z: c 0.85 beats defaults 0.75, b 0.55


@pytest.mark.slow
def test_a_family_movie_through_the_pipeline_is_scored(tmp_path):
    """The benchmark's path on a tiny movie: simulate a family, run with defaults, score."""
    from deathtrack.config import InputConfig, PipelineConfig
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate import random_config

    cfg = random_config("baseline", 3, max_frames=12, max_side_px=128)
    paths = write_simulation(simulate(cfg), tmp_path, name="movie")
    roles = {r: i for i, r in enumerate(cfg.channel_names)}
    pc = PipelineConfig(
        input=InputConfig(
            pixel_size_um=cfg.pixel_size_um, interval_s=cfg.interval_s, channels=roles
        )
    )
    res = run_stack(paths["movie"], pc, tmp_path / "out", progress=False)
    s = score_run(res.out_dir, paths["events"].parent)
    truth = tifffile.imread(paths["labels_cells"])
    assert s["cells_n_true"] == sum(len(np.unique(f)) - 1 for f in truth)
    pred = tifffile.imread(res.out_dir / "labels_cells.tif")
    assert s["cells_n_pred"] == sum(len(np.unique(f)) - 1 for f in pred)
    assert 0 <= s["cells_f1"] <= 1 and 0 <= s["immune_f1"] <= 1
    assert s["deaths_n_called"] == len(pd.read_csv(res.out_dir / "events.csv"))


def _disc_labels(shape, discs):
    """Label image of discs (label, cy, cx, r); later discs overwrite earlier ones."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for lab, cy, cx, r in discs:
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = lab
    return out


def test_detection_errors_names_each_kind_of_fault():
    """One true object per kind of fault, each drawn the way that fault looks."""
    from deathtrack.evaluate import detection_errors

    shape = (80, 200)
    truth = _disc_labels(
        shape,
        [
            (1, 20, 20, 10),
            (2, 20, 60, 10),
            (3, 20, 100, 10),
            (4, 20, 121, 10),
            (5, 60, 20, 10),
            (6, 60, 60, 10),
            (7, 60, 100, 10),
        ],
    )
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    pred = np.zeros(shape, np.int32)
    pred[truth == 1] = 11  # found: ok
    # 2: nothing drawn on it: missed
    pred[(truth == 3) | (truth == 4)] = 13  # 3 and 4 drawn as one: merged (both)
    pred[truth == 5] = 15  # 5 in three pieces, none half of it: split
    pred[(truth == 5) & (xx >= 17)] = 16
    pred[(truth == 5) & (xx >= 23)] = 20
    pred[(yy - 60) ** 2 + (xx - 60) ** 2 < 5**2] = 17  # 6 outlined too tight: small
    pred[(yy - 60) ** 2 + (xx - 100) ** 2 < 16**2] = 18  # 7 outlined too loose: large
    pred[(yy - 60) ** 2 + (xx - 170) ** 2 < 6**2] = 19  # in the background: false
    err = detection_errors(truth, pred)
    kinds = dict(zip(err.true_label, err.kind))
    assert kinds == {
        1: "ok",
        2: "missed",
        3: "merged",
        4: "merged",
        5: "split",
        6: "small",
        7: "large",
        0: "false",
    }
    assert err.loc[err.kind == "false", "pred_label"].tolist() == [19]
    assert err.loc[err.true_label == 2, "pred_label"].item() == 0
    assert err.loc[err.true_label == 1, "iou"].item() == pytest.approx(1.0)
    # the ok objects are exactly match_labels' matches
    from deathtrack.evaluate import match_labels

    assert set(err.true_label[err.kind == "ok"]) == set(match_labels(truth, pred).true_label)


def test_detection_errors_over_frames_and_edge_cases():
    from deathtrack.evaluate import detection_errors

    truth = _disc_labels((40, 40), [(1000, 20, 20, 8)])  # a large track id
    stack_t = np.stack([truth, truth, np.zeros_like(truth)])
    stack_p = np.stack([truth, np.zeros_like(truth), truth])
    err = detection_errors(stack_t, stack_p)
    assert err[["frame", "true_label", "kind"]].values.tolist() == [
        [0, 1000, "ok"],
        [1, 1000, "missed"],
        [2, 0, "false"],
    ]
    empty = detection_errors(np.zeros((0, 8, 8), int), np.zeros((0, 8, 8), int))
    assert empty.empty and list(empty.columns) == [
        "frame",
        "true_label",
        "kind",
        "pred_label",
        "iou",
    ]
    assert detection_errors(np.zeros((8, 8), int), np.zeros((8, 8), int)).empty
    with pytest.raises(ValueError, match="same shape"):
        detection_errors(np.zeros((8, 8), int), np.zeros((9, 8), int))
    with pytest.raises(ValueError, match=r"\(Y, X\) or \(T, Y, X\)"):
        detection_errors(np.zeros(8, int), np.zeros(8, int))


def _segmentation_errors(*args, check: bool = True):
    """Run ``benchmarks/segmentation_errors.py`` with ``args`` as a user would."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "segmentation_errors.py"
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, check=check
    )


def test_segmentation_errors_script_tables_faults_by_cell_state(truth_folder, tmp_path):
    """benchmarks/segmentation_errors.py: a dead cell erased from one frame of a perfect
    run is counted as missed in its state and mode's row; everything else is found."""
    run = _perfect_run(truth_folder, tmp_path / "run")
    labels = tifffile.imread(run / "labels_cells.tif")
    cells = pd.read_csv(truth_folder / "cells.csv")
    events = pd.read_csv(truth_folder / "events.csv")
    dead = cells[(cells.state == "dead") & cells.cell_id.isin(events.cell_id)].iloc[0]
    mode = events.set_index("cell_id").loc[dead.cell_id, "mode"]
    labels[dead.frame][labels[dead.frame] == dead.cell_id] = 0
    tifffile.imwrite(run / "labels_cells.tif", labels)
    out = _segmentation_errors(run, truth_folder, "--csv", tmp_path / "e.csv").stdout
    err = pd.read_csv(tmp_path / "e.csv")
    assert err.loc[err.kind != "ok", ["frame", "true_label", "kind", "state"]].values.tolist() == [
        [dead.frame, dead.cell_id, "missed", f"dead {mode}"]
    ]
    truth_labels = tifffile.imread(truth_folder / "labels_cells.tif")
    n = sum(len(np.unique(f)) - 1 for f in truth_labels)
    assert f"{n} true cell-frames; {n - 1} found" in out
    # a user's mistake is a message, not a traceback
    bad = _segmentation_errors(tmp_path / "nowhere", truth_folder, check=False)
    assert bad.returncode == 1
    assert "no results file" in bad.stderr and "Traceback" not in bad.stderr


def test_segmentation_errors_script_measures_each_true_cell_s_contrast(truth_folder, tmp_path):
    """``--contrast``: each true cell's mean above the background in noise SDs, and the
    share found by band of it; a cell painted over with the background reads about 0."""
    import shutil

    run = _perfect_run(truth_folder, tmp_path / "run")
    # a copy of the movie and its truth, one live cell painted over in one frame
    truth = tmp_path / "movie_truth"
    shutil.copytree(truth_folder, truth)
    movie = tifffile.imread(truth_folder.parent / "movie.ome.tif")
    labels = tifffile.imread(truth / "labels_cells.tif")
    cells = pd.read_csv(truth / "cells.csv")
    live = cells[(cells.state == "alive") & (cells.frame == 5)].iloc[0]
    c = 0  # the simulator's cells channel
    inside = labels[5] == live.cell_id
    movie[5, c][inside] = np.median(movie[5, c][labels[5] == 0])
    tifffile.imwrite(tmp_path / "movie.ome.tif", movie)
    out = _segmentation_errors(run, truth, "--contrast", "--csv", tmp_path / "e.csv").stdout
    assert "share found, by contrast" in out
    err = pd.read_csv(tmp_path / "e.csv")
    true = err[err.true_label > 0]
    assert true["contrast_sd"].notna().all()
    painted = true[(true.frame == 5) & (true.true_label == live.cell_id)]["contrast_sd"].item()
    assert abs(painted) < 1.0, painted
    others = true[
        (true.state == "alive") & ~((true.frame == 5) & (true.true_label == live.cell_id))
    ]
    assert others["contrast_sd"].median() > 3.0
    # no movie beside the truth: a message naming the file, not a traceback
    (tmp_path / "movie.ome.tif").unlink()
    bad = _segmentation_errors(run, truth, "--contrast", check=False)
    assert bad.returncode == 1
    assert "no movie file" in bad.stderr and "Traceback" not in bad.stderr
