"""Defaults on randomised movies they were never tuned on (issue 13).

Small movies (256 px side, 60 frames) of the simulator's families
(:data:`deathtrack.simulate.FAMILIES`) on scoring seeds (>= 1000; the defaults
were tuned on development seeds 0-99 only), scored against their truth with
the issue's thresholds. The long version, every family on larger movies with
the bare scikit-image + trackpy script beside it, is
``benchmarks/generalization.py`` (results in ``benchmarks/results/``).

Also: the number of deaths found does not depend on the sampling. Binning the
same movie 2 x 2 (pixel size x 2) or dropping every other frame (interval
x 2) changes it by at most 10 %.

Seed 1100 of ``uneven_light`` and ``dense`` was looked at after it failed
(a crash in immune tracking, fixed; confluent cells merged, improved by the
confluent-field rule, which was chosen on development seeds 1-5 of ``dense``):
the two shortfalls that remain are marked ``xfail(strict=True)`` with the
measured value, so a fix shows as an unexpected pass.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import tifffile

from deathtrack.config import PipelineConfig
from deathtrack.evaluate import score_run
from deathtrack.pipeline import run_stack
from deathtrack.simulate import random_config, simulate, write_simulation

pytestmark = pytest.mark.slow

SIDE, FRAMES = 256, 60


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """Simulated movies by (family, seed), written once for the module."""
    cache: dict[tuple[str, int], dict] = {}

    def get(family: str, seed: int) -> dict:
        if (family, seed) not in cache:
            cfg = random_config(family, seed, max_frames=FRAMES, max_side_px=SIDE)
            work = tmp_path_factory.mktemp(f"{family}{seed}")
            paths = write_simulation(simulate(cfg), work, name="movie")
            cache[family, seed] = {"work": work, "paths": paths, "config": cfg}
        return cache[family, seed]

    return get


def _run(movie: dict, stack=None, name: str = "out"):
    res = run_stack(
        stack or movie["paths"]["movie"], PipelineConfig(), movie["work"] / name, progress=False
    )
    return res.out_dir


def _score(movie: dict) -> dict:
    out = _run(movie)
    return score_run(out, movie["paths"]["movie"].parent / "movie_truth")


@pytest.mark.parametrize(
    "family, seed",
    [
        ("baseline", 1100),
        pytest.param(
            "uneven_light",
            1100,
            marks=pytest.mark.xfail(
                strict=True,
                reason="known shortfall (issue 13): cells F1 0.868, links kept 0.859 < 0.95 on "
                "this movie: dim ghosts on the cells channel's bright textured side are missed "
                "(its immune channel, which got ~300-400 objects a frame for 9 immune cells, "
                "now gets 8: immune F1 0.993, recruit MAE 0.17; death F1 0.944)",
            ),
        ),
    ],
)
def test_sparse_families_meet_the_targets(movies, family, seed):
    s = _score(movies(family, seed))
    assert s["cells_f1"] >= 0.95, s
    assert s["cells_link_recall"] >= 0.95, s
    assert s["deaths_f1"] >= 0.92, s
    assert s["death_frame_error"] <= 1, s
    assert s["mode_balanced_accuracy"] >= 0.95, s
    assert s["recruit_mae"] <= 0.3 and abs(s["recruit_bias"]) <= 0.15, s


def test_without_dye_deaths_from_morphology(movies):
    s = _score(movies("no_dye", 1100))
    assert s["deaths_f1"] >= 0.88, s
    assert s["mode_balanced_accuracy"] >= 0.95, s


@pytest.mark.xfail(
    strict=True,
    reason="known shortfall (issue 13): at 85 % cover and more, cells F1 0.673 on this movie "
    "(target 0.90; links kept 0.530 against 0.85 before the pass from the last frame back, "
    "segment.cells.split_merged_seen_later, which raised F1 from 0.656; 0.624 / 0.488 before "
    "cells seen apart were "
    "kept apart, segment.cells.split_merged_seen; F1 0.47 before the background level of frames "
    "all but covered, 0.36 before the confluent bodies grew back and pressed cells were split "
    "by size; 0.806 / 0.704 with the seams found as lines, segment.cells.packed_fraction "
    "0.84, off by default): cells whose seams are barely dimmer than their bodies merge",
)
def test_confluent_clumps(movies):
    s = _score(movies("dense", 1100))
    assert s["cells_f1"] >= 0.90, s
    assert s["cells_link_recall"] >= 0.85, s


def test_divisions_without_deaths_are_not_deaths(movies):
    movie = movies("mitosis_no_deaths", 1100)
    s = _score(movie)
    assert s["deaths_n_true"] == 0
    # at most 1 false call per 100 tracks: none when the movie has fewer than 100 tracks
    tracks = pd.read_csv(movie["work"] / "out" / "movie" / "tracks.csv")
    n_tracks = tracks.loc[tracks.population == "cells", "track_id"].nunique()
    assert n_tracks >= 20
    assert s["deaths_false"] <= math.floor(n_tracks / 100), s


def _write_like(path, arr, channels, px, interval_s):
    tifffile.imwrite(
        path,
        arr,
        ome=True,
        metadata={
            "axes": "TCYX",
            "PhysicalSizeX": px,
            "PhysicalSizeY": px,
            "TimeIncrement": interval_s,
            "TimeIncrementUnit": "s",
            "Channel": {"Name": channels},
        },
    )


def test_deaths_found_do_not_depend_on_pixel_size_or_interval(movies):
    movie = movies("baseline", 1101)
    cfg = movie["config"]
    stack = tifffile.imread(movie["paths"]["movie"])
    channels = ["cells", "immune", "dye"]
    assert stack.ndim == 4 and stack.shape[1] == len(channels)
    t, c, y, x = stack.shape
    # a camera binning 2 x 2: pixel size x 2
    binned = stack[:, :, : y // 2 * 2, : x // 2 * 2].reshape(t, c, y // 2, 2, x // 2, 2)
    binned = binned.mean(axis=(3, 5)).round().astype(stack.dtype)
    _write_like(
        movie["work"] / "binned.ome.tif", binned, channels, 2 * cfg.pixel_size_um, cfg.interval_s
    )
    # every other frame: interval x 2
    _write_like(
        movie["work"] / "half.ome.tif", stack[::2], channels, cfg.pixel_size_um, 2 * cfg.interval_s
    )
    n = {}
    for name in ("movie", "binned", "half"):
        stack_path = (
            movie["paths"]["movie"] if name == "movie" else movie["work"] / f"{name}.ome.tif"
        )
        out = _run(movie, stack_path, name=f"out_{name}")
        n[name] = len(pd.read_csv(out / "events.csv"))
    n_true = len(pd.read_csv(movie["paths"]["movie"].parent / "movie_truth" / "events.csv"))
    assert n_true >= 10
    # the reference run finds the deaths (so the comparison is not between two failures)
    assert abs(n["movie"] - n_true) <= 0.1 * n_true, (n, n_true)
    for name in ("binned", "half"):
        assert abs(n[name] - n["movie"]) <= 0.1 * n["movie"], (n, n_true)


def test_the_same_movie_in_another_camera_s_units_gives_the_same_deaths(movies):
    """The movie as float32 scaled to 0-1 (as Fiji's 32-bit or a normalising export writes
    it): the same deaths, and the same dye uptake found. No threshold is in raw intensity
    units (``death.dye_min_rise_sd`` is in units of the dye's pixel noise)."""
    movie = movies("baseline", 1101)
    cfg = movie["config"]
    stack = tifffile.imread(movie["paths"]["movie"])
    _write_like(
        movie["work"] / "scaled.ome.tif",
        (stack / 65535.0).astype("float32"),
        ["cells", "immune", "dye"],
        cfg.pixel_size_um,
        cfg.interval_s,
    )
    ref = movie["work"] / "out_movie" / "movie" / "events.csv"  # shared with the test above
    if not ref.is_file():
        _run(movie, movie["paths"]["movie"], name="out_movie")
    events = {
        "movie": pd.read_csv(ref),
        "scaled": pd.read_csv(
            _run(movie, movie["work"] / "scaled.ome.tif", "out_scaled") / "events.csv"
        ),
    }
    n = {k: len(e) for k, e in events.items()}
    dyed = {k: int(e.dye_frame.notna().sum()) for k, e in events.items()}
    assert n["movie"] >= 10 and dyed["movie"] >= 5, (n, dyed)
    assert abs(n["scaled"] - n["movie"]) <= 0.1 * n["movie"], n
    assert abs(dyed["scaled"] - dyed["movie"]) <= 0.1 * dyed["movie"], dyed
