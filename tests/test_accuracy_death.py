"""Death detection and the apoptotic / necroptotic call against simulator truth.

The thresholds of issue 4, on small movies (seeds never used by the
benchmark): with a dye channel F1 >= 0.9 and mode balanced accuracy >= 0.9;
from morphology alone (no dye) both >= 0.85; median death-frame error <= 1
frame; on dividing cells without deaths at most 1 false event per 100 tracks.
"""

from __future__ import annotations

import pandas as pd
import pytest

from deathtrack.config import PipelineConfig
from deathtrack.evaluate import death_scores
from deathtrack.pipeline import run_stack
from deathtrack.simulate import preset, simulate, write_simulation

pytestmark = pytest.mark.slow

SMALL = dict(shape_yx=(224, 224), n_frames=40, n_cells=16)


def _run(tmp_path_factory, scenario: str, seed: int, **extra):
    kw = {**SMALL, **extra}
    if scenario in ("default", "no_dye"):
        kw.update(p_apoptotic=0.35, p_necroptotic=0.35, p_divide=0.1)
    sim = simulate(preset(scenario, seed=seed, **kw))
    work = tmp_path_factory.mktemp(f"{scenario}{seed}")
    paths = write_simulation(sim, work, name="movie")
    res = run_stack(paths["movie"], PipelineConfig(), work / "out", progress=False)
    pred = pd.read_csv(res.out_dir / "events.csv")
    tracks = pd.read_csv(res.out_dir / "tracks.csv")
    n_tracks = tracks.loc[tracks.population == "cells", "track_id"].nunique()
    return pred, sim.truth()["events"], n_tracks


@pytest.mark.parametrize(
    ("scenario", "seed", "min_f1", "min_ba"),
    [("default", 41, 0.9, 0.9), ("default", 42, 0.9, 0.9), ("no_dye", 43, 0.85, 0.85)],
)
def test_deaths_found_and_called(tmp_path_factory, scenario, seed, min_f1, min_ba):
    pred, truth, _ = _run(tmp_path_factory, scenario, seed)
    assert len(truth) >= 6, "the movie must hold deaths of both modes to test anything"
    assert set(truth["mode"]) == {"apoptotic", "necroptotic"}
    s = death_scores(pred, truth)
    assert s["f1"] >= min_f1, s
    assert s["balanced_accuracy"] >= min_ba, s
    assert s["median_frame_error"] <= 1, s


def test_dividing_cells_are_not_deaths(tmp_path_factory):
    pred, truth, n_tracks = _run(tmp_path_factory, "divisions", 44)
    assert truth.empty
    assert len(pred) <= max(0, n_tracks // 100), pred[["event_id", "track_id", "frame", "mode"]]


def test_death_scores_by_hand():
    truth = pd.DataFrame(
        {
            "event_id": [1, 2, 3],
            "frame": [10, 20, 30],
            "y_um": [10.0, 50.0, 90.0],
            "x_um": [10.0, 50.0, 90.0],
            "mode": ["apoptotic", "necroptotic", "necroptotic"],
        }
    )
    pred = pd.DataFrame(
        {
            "event_id": [1, 2, 3],
            "frame": [11, 20, 5],
            "y_um": [12.0, 50.0, 200.0],
            "x_um": [10.0, 49.0, 200.0],
            "mode": ["apoptotic", "uncertain", "apoptotic"],
            "p_necroptotic": [0.1, 0.5, 0.2],
        }
    )
    s = death_scores(pred, truth)
    assert (s["tp"], s["false"]) == (2, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["median_frame_error"] == 0.5
    assert s["balanced_accuracy"] == pytest.approx(0.5)  # apoptotic right, necroptotic uncertain
