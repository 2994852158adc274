"""Motility measures (celltrackR definitions), track reading, approach to a target."""

from __future__ import annotations

import gzip
import math
import re

import numpy as np
import pandas as pd
import pytest

from deathtrack import motility as m
from deathtrack.errors import CalibrationError, StackNotFoundError, StackReadError

NAN = math.nan
EMPTY = np.empty((0, 3))
ONE = np.array([[5.0, 1.0, 2.0]])
STILL = np.array([[0.0, 1.0, 2.0], [30.0, 1.0, 2.0], [60.0, 1.0, 2.0]])

# 2D: steps (3, 4), (0, 6), (0, -1) of 60 s each; the last is slow (1 µm/min)
TRACK_2D = np.array([[0, 0, 0], [60, 3, 4], [120, 3, 10], [180, 3, 9]], float)
EXPECTED_2D = {
    "duration": 180.0,
    "track_length": 12.0,
    "displacement": math.sqrt(90),
    "square_displacement": 90.0,
    "max_displacement": math.sqrt(109),
    "speed": 12 / 180,
    "straightness": math.sqrt(90) / 12,
    "displacement_ratio": math.sqrt(90 / 109),
    "outreach_ratio": math.sqrt(109) / 12,
    "mean_turning_angle": (math.acos(0.8) + math.pi) / 2,
    "overall_angle": math.acos(-0.8),
    "overall_dot": -4.0,
    "arrest_coefficient": 1 / 3,
}
# 3D: steps (1, 2, 2) and (0, 0, 3) of 30 s each
TRACK_3D = np.array([[0, 0, 0, 0], [30, 1, 2, 2], [60, 1, 2, 5]], float)
EXPECTED_3D = {
    "duration": 60.0,
    "track_length": 6.0,
    "displacement": math.sqrt(30),
    "square_displacement": 30.0,
    "max_displacement": math.sqrt(30),
    "speed": 0.1,
    "straightness": math.sqrt(30) / 6,
    "displacement_ratio": 1.0,
    "outreach_ratio": math.sqrt(30) / 6,
    "mean_turning_angle": math.acos(2 / 3),
    "overall_angle": math.acos(2 / 3),
    "overall_dot": 6.0,
    "arrest_coefficient": 0.0,
}

# value on (empty, one point, never moves); the module docstring explains why
EDGE = {
    "duration": (NAN, 0.0, 60.0),
    "track_length": (NAN, 0.0, 0.0),
    "displacement": (NAN, 0.0, 0.0),
    "square_displacement": (NAN, 0.0, 0.0),
    "max_displacement": (NAN, 0.0, 0.0),
    "speed": (NAN, NAN, 0.0),
    "straightness": (NAN, NAN, NAN),
    "displacement_ratio": (NAN, NAN, NAN),
    "outreach_ratio": (NAN, NAN, NAN),
    "mean_turning_angle": (NAN, NAN, NAN),
    "overall_angle": (NAN, NAN, NAN),
    "overall_dot": (NAN, NAN, 0.0),
    "asphericity": (NAN, NAN, NAN),
    "arrest_coefficient": (NAN, NAN, 1.0),
}


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


def _table(tracks: dict) -> pd.DataFrame:
    """Tracks {id: (N, 1 + D) array} as a table with t_s, x_um, y_um[, z_um]."""
    rows = []
    for k, a in tracks.items():
        names = ["t_s", "x_um", "y_um", "z_um"][: a.shape[1]]
        rows.append(pd.DataFrame(a, columns=names).assign(track_id=k))
    return pd.concat(rows, ignore_index=True)


# -- every measure on the edge cases and on hand-computed tracks -------------------


def test_registry_lists_every_measure():
    assert list(m.METRICS) == list(EDGE)
    assert set(EXPECTED_2D) | {"asphericity"} == set(m.METRICS)
    for name, fn in m.METRICS.items():
        assert callable(fn) and fn.__doc__, name


@pytest.mark.parametrize("name", list(EDGE))
def test_measure_on_empty_one_point_and_still_tracks(name):
    fn = m.METRICS[name]
    for track, expected in zip((EMPTY, ONE, STILL), EDGE[name]):
        got = fn(track)
        assert isinstance(got, float)
        assert _same(got, expected), (name, track.shape, got, expected)


@pytest.mark.parametrize("name", list(EXPECTED_2D))
def test_measure_on_hand_computed_2d_track(name):
    assert m.METRICS[name](TRACK_2D) == pytest.approx(EXPECTED_2D[name], rel=1e-12)


@pytest.mark.parametrize("name", list(EXPECTED_3D))
def test_measure_on_hand_computed_3d_track(name):
    assert m.METRICS[name](TRACK_3D) == pytest.approx(EXPECTED_3D[name], rel=1e-12)


def test_asphericity_by_shape():
    line = np.array([[0, 0, 0], [1, 1, 1], [2, 3, 3]], float)
    square = np.array([[0, 0, 0], [1, 1, 0], [2, 1, 1], [3, 0, 1]], float)
    assert m.asphericity(line) == pytest.approx(1.0)
    assert m.asphericity(square) == pytest.approx(0.0, abs=1e-15)
    # 2D: (λ1 - λ2)² / (λ1 + λ2)² from the covariance [[a, b], [b, c]]
    (a, b), (_, c) = np.cov(TRACK_2D[:, 1:].T)
    assert m.asphericity(TRACK_2D) == pytest.approx(((a - c) ** 2 + 4 * b * b) / (a + c) ** 2)
    # 3D: equilateral triangle (λ, λ, 0) -> 1/4; regular tetrahedron -> 0
    tri = np.array([[0, 1, 0, 0], [1, -0.5, math.sqrt(3) / 2, 0], [2, -0.5, -math.sqrt(3) / 2, 0]])
    tet = np.array([[0, 1, 1, 1], [1, 1, -1, -1], [2, -1, 1, -1], [3, -1, -1, 1]], float)
    assert m.asphericity(tri) == pytest.approx(0.25)
    assert m.asphericity(tet) == pytest.approx(0.0, abs=1e-15)


def test_z_flattened_table_gives_the_2d_values_bit_for_bit():
    """z one constant = no z, for every measure but asphericity (3D counts the flat axis)."""
    rng = np.random.default_rng(4)
    n, k = 30, 6
    df = pd.DataFrame(
        {
            "track_id": np.repeat(np.arange(k), n),
            "t_s": np.tile(np.arange(n) * 20.0, k),
            "y_um": rng.normal(0, 3, n * k).cumsum(),
            "x_um": rng.normal(0, 3, n * k).cumsum(),
            "z_um": rng.normal(0, 3, n * k).cumsum(),
        }
    )
    flat, two = df.assign(z_um=-12.3), df.drop(columns="z_um")
    a, b = m.track_metrics(flat), m.track_metrics(two)
    for name in m.METRICS:
        same = np.array_equal(a[name].to_numpy(), b[name].to_numpy(), equal_nan=True)
        assert same == (name != "asphericity"), name
    for measure in m.SUBTRACK_MEASURES:
        pd.testing.assert_frame_equal(
            m.aggregate_subtracks(flat, measure),
            m.aggregate_subtracks(two, measure),
            check_exact=True,
        )
    cols3, cols2 = ("y_um", "x_um", "z_um"), ("y_um", "x_um")
    pd.testing.assert_frame_equal(
        m.approach_table(flat, (5.0, 5.0, -12.3), coord_cols=cols3),
        m.approach_table(two, (5.0, 5.0), coord_cols=cols2),
        check_exact=True,
    )
    # the 3D path is longer than its projection: 3D speeds are never lower
    s3 = m.track_metrics(df, metrics=["speed"])["speed"]
    assert (s3 > b["speed"]).all()
    assert math.isnan(m.hotellings_test(flat)["T2"]) and np.isfinite(m.hotellings_test(two)["T2"])


def test_special_cases_of_angles_and_arrest():
    one_step = np.array([[0, 0, 0], [1, 3, 4]], float)
    assert m.overall_angle(one_step) == 0.0  # a step with itself: exactly 0
    assert m.overall_dot(one_step) == 25.0
    assert math.isnan(m.mean_turning_angle(one_step))
    paused = np.array([[0, 0, 0], [1, 1, 0], [2, 1, 0], [3, 1, 1]], float)
    # the angles next to the zero-length step are undefined and left out
    assert math.isnan(m.mean_turning_angle(paused))
    turn = np.array([[0, 0, 0], [1, 1, 0], [2, 1, 1], [3, 1, 1], [4, 2, 1]], float)
    assert m.mean_turning_angle(turn) == pytest.approx(math.pi / 2)
    # 2 µm/min is 1/30 µm/s: a step of 1 µm in 60 s is slower, 3 µm is not
    arrest = np.array([[0, 0, 0], [60, 1, 0], [120, 4, 0]], float)
    assert m.arrest_coefficient(arrest) == 0.5
    assert m.arrest_coefficient(arrest, threshold_um_per_min=5.0) == 1.0


def test_single_track_functions_take_dataframes_in_any_row_order():
    df = pd.DataFrame(TRACK_2D, columns=["t_s", "x_um", "y_um"]).iloc[[2, 0, 3, 1]]
    plain = pd.DataFrame(TRACK_3D, columns=["t", "x", "y", "z"])
    assert m.speed(df) == pytest.approx(EXPECTED_2D["speed"])
    assert m.track_length(plain) == pytest.approx(6.0)
    with pytest.raises(
        ValueError, match=r"a track DataFrame needs a time column .* it has \['a', 'b'\]"
    ):
        m.speed(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        m.speed(np.array([1.0, 2.0, 3.0]))


def test_track_with_two_positions_at_one_time_is_refused():
    df = _table({7: np.array([[0, 0, 0], [0, 1, 1], [1, 2, 2]], float)})
    with pytest.raises(
        ValueError, match=r"track 7 has two positions at t = 0; a track must be one path"
    ):
        m.track_metrics(df)


# -- the table of all measures ---------------------------------------------------


def test_track_metrics_matches_the_single_track_functions():
    tracks = {"b": TRACK_2D, "a": ONE, "c": STILL}
    df = _table(tracks).sample(frac=1.0, random_state=0)  # shuffled rows
    before = df.copy()
    out = m.track_metrics(df, coord_cols=["x_um", "y_um"])
    pd.testing.assert_frame_equal(df, before)  # the caller's table is untouched
    assert list(out.columns) == ["track_id", "n_points", *m.METRICS]
    assert sorted(out["track_id"]) == ["a", "b", "c"]
    for row in out.itertuples(index=False):
        track = tracks[row.track_id]
        assert row.n_points == len(track)
        for name, fn in m.METRICS.items():
            assert _same(getattr(row, name), fn(track)), (row.track_id, name)


def test_track_metrics_3d_default_columns_and_order():
    df = _table({3: TRACK_3D, 1: TRACK_3D[:2]})
    out = m.track_metrics(df, metrics=["speed", "straightness"])
    assert list(out.columns) == ["track_id", "n_points", "speed", "straightness"]
    assert out["track_id"].tolist() == [3, 1]  # order of first appearance
    assert out["speed"].tolist() == pytest.approx([0.1, 0.1])


def test_track_metrics_runs_a_measure_added_to_the_registry(monkeypatch):
    # a caller's measure gets each track as an array: time, then coord_cols in order
    monkeypatch.setitem(m.METRICS, "net_z", lambda track: float(track[-1, 1] - track[0, 1]))
    out = m.track_metrics(_table({1: TRACK_3D, 2: 2 * TRACK_3D}), metrics=["net_z", "duration"])
    assert out["net_z"].tolist() == [5.0, 10.0]
    assert out["duration"].tolist() == [60.0, 120.0]


def test_track_metrics_errors_name_the_problem():
    df = _table({1: TRACK_2D})
    with pytest.raises(
        ValueError, match=r"unknown metric\(s\) \['sped'\]; known metrics are \['duration'"
    ):
        m.track_metrics(df, metrics=["sped"])
    with pytest.raises(ValueError, match=r"id_col='cell' is not a column of the tracks table"):
        m.track_metrics(df, id_col="cell")
    with pytest.raises(
        ValueError, match=r"the tracks table has no 'y_um', 'x_um' columns .* pass coord_cols="
    ):
        m.track_metrics(df.rename(columns={"x_um": "x", "y_um": "y"}))
    with pytest.raises(
        ValueError, match=r"position column 'x_um' must be numeric; row 0 holds 'left'"
    ):
        m.track_metrics(df.astype({"x_um": object}).assign(x_um=["left", 1, 2, 3]))


# -- steps, subtracks, MSD -------------------------------------------------------


def test_step_speeds():
    out = m.step_speeds(_table({9: TRACK_2D}), coord_cols=["x_um", "y_um"])
    assert out.columns.tolist() == ["track_id", "step", "t_s", "duration", "track_length", "speed"]
    assert out["step"].tolist() == [1, 2, 3]
    assert out["speed"].tolist() == pytest.approx([5 / 60, 6 / 60, 1 / 60])


def test_msd_pools_every_subtrack_with_mean_and_standard_error():
    # track 1 on a line: x = 0, 1, 3; track 2: x = 0, 2
    df = _table(
        {1: np.array([[0, 0, 0], [1, 1, 0], [2, 3, 0]], float), 2: np.array([[0, 0, 0], [1, 2, 0]])}
    )
    out = m.msd(df, coord_cols=["x_um", "y_um"])
    lag1 = np.array([1.0, 4.0, 4.0])  # squared steps 1, 2², 2²
    assert out["lag"].tolist() == [1, 2]
    assert out["n"].tolist() == [3, 1]
    assert out["mean"].tolist() == pytest.approx([lag1.mean(), 9.0])
    se = lag1.std(ddof=1) / math.sqrt(3)
    assert out["se"].iloc[0] == pytest.approx(se)
    assert out["lower"].iloc[0] == pytest.approx(3 - se)
    assert out["upper"].iloc[0] == pytest.approx(3 + se)
    assert math.isnan(out["se"].iloc[1])  # one subtrack: no standard error
    assert out["lag_s"].tolist() == [1.0, 2.0]


def test_aggregate_subtracks_angles_and_errors():
    df = _table({1: TRACK_2D})
    ang = m.aggregate_subtracks(df, "overall_angle", coord_cols=["x_um", "y_um"])
    assert ang["mean"].tolist() == pytest.approx(
        [0.0, (math.acos(0.8) + math.pi) / 2, 2.498091544796509]
    )
    assert ang["mean"].iloc[0] == 0.0
    speeds = m.aggregate_subtracks(df, "speed", coord_cols=["x_um", "y_um"], lags=[3])
    assert speeds["mean"].tolist() == pytest.approx([12 / 180])
    with pytest.raises(ValueError, match=r"measure='msd' is not one of \['square_displacement'"):
        m.aggregate_subtracks(df, "msd")
    with pytest.raises(ValueError, match=r"lags must be positive numbers of steps, got \[0, 1\]"):
        m.msd(df, lags=[0, 1])


def test_hotellings_test_sees_drift():
    rng = np.random.default_rng(1)
    t = np.arange(50.0)
    tracks = {}
    for k in range(20):
        steps = rng.normal(size=(49, 2)) + np.array([0.5, 0.0])
        pos = np.vstack([[0, 0], np.cumsum(steps, axis=0)])
        tracks[k] = np.column_stack([t, pos])
    res = m.hotellings_test(_table(tracks), coord_cols=["x_um", "y_um"], step_spacing=3)
    assert res["n_steps"] == 20 * 13  # steps 1, 5, 9, ..., 49 of each track
    assert (res["df1"], res["df2"]) == (2, 258)
    assert res["p_value"] < 1e-10
    assert res["F"] == pytest.approx(res["T2"] * 258 / (2 * 259))
    line = _table({1: np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 4, 4]], float)})
    flat = m.hotellings_test(line, coord_cols=["x_um", "y_um"])
    assert flat["n_steps"] == 3 and math.isnan(flat["T2"]) and math.isnan(flat["p_value"])


def test_empty_table_gives_empty_results():
    empty = pd.DataFrame({"track_id": [], "t_s": [], "y_um": [], "x_um": []})
    assert m.track_metrics(empty).columns.tolist() == ["track_id", "n_points", *m.METRICS]
    assert len(m.track_metrics(empty)) == len(m.msd(empty)) == len(m.step_speeds(empty)) == 0
    assert m.approach_table(empty, (0.0, 0.0)).empty


# -- approach to a target --------------------------------------------------------


def _cell(ts, ys, xs) -> pd.DataFrame:
    return pd.DataFrame({"t_s": ts, "y_um": ys, "x_um": xs}, dtype=float)


def test_approach_straight_at_a_fixed_target_and_arrest_on_arrival():
    cell = _cell([0, 60, 120, 180, 240], [0] * 5, [0, 10, 20, 21, 21.5])
    res = m.approach_metrics(cell, (0.0, 30.0), arrival_radius_um=12.0)
    assert res["chemotactic_index"] == pytest.approx(1.0)
    assert res["forward_migration_index"] == pytest.approx(1.0)
    assert res["speed_um_per_min"] == pytest.approx(21.5 / 4)
    assert res["closing_speed_um_per_min"] == pytest.approx(21.5 / 4)
    assert (res["start_distance_um"], res["end_distance_um"]) == (30.0, 8.5)
    assert (res["arrived"], res["arrival_t_s"]) == (1.0, 120.0)
    assert res["arrested_on_arrival"] == 1.0  # 1.5 µm in 2 min after arrival
    fast = m.approach_metrics(cell, (0.0, 30.0), arrival_radius_um=25.0)
    assert (fast["arrival_t_s"], fast["arrested_on_arrival"]) == (60.0, 0.0)
    never = m.approach_metrics(cell, (0.0, 30.0), arrival_radius_um=5.0)
    assert never["arrived"] == 0.0 and math.isnan(never["arrested_on_arrival"])


def test_chemotactic_index_and_fmi_differ_on_a_bent_path():
    # 10 µm along x then 10 µm along y, target at (y, x) = (0, 20)
    cell = _cell([0, 1, 2], [0, 0, 10], [0, 10, 10])
    res = m.approach_metrics(cell, (0.0, 20.0))
    assert res["forward_migration_index"] == pytest.approx(10 / 20)
    assert res["chemotactic_index"] == pytest.approx((20 - math.sqrt(200)) / 20)
    away = m.approach_metrics(cell, (0.0, -20.0))
    assert away["forward_migration_index"] == pytest.approx(-0.5)
    side = m.approach_metrics(cell, direction=(1.0, 0.0))  # along +y
    assert side["forward_migration_index"] == side["chemotactic_index"] == pytest.approx(0.5)
    assert math.isnan(side["arrived"])


def test_approach_to_a_moving_target_and_array_input():
    cell = np.array([[0, 0, 0], [60, 0, 10], [120, 0, 20]], float)
    target = pd.DataFrame({"t_s": [120.0, 0.0, 60.0], "y_um": [0, 0, 0.0], "x_um": [25, 40, 30.0]})
    res = m.approach_metrics(cell, target, arrival_radius_um=6.0)
    assert res["chemotactic_index"] == pytest.approx((40 - 5) / 20)
    assert res["forward_migration_index"] == pytest.approx(1.0)
    assert res["arrival_t_s"] == 120.0
    per_row = m.approach_metrics(cell, np.array([[0, 40], [0, 30], [0, 25.0]]))
    assert per_row["chemotactic_index"] == pytest.approx(res["chemotactic_index"])
    with pytest.raises(ValueError, match=r"the target table has no position for \{'t_s': 60.0\}"):
        m.approach_metrics(cell, target.iloc[[0, 1]])


def test_approach_table_per_track_targets_and_3d_direction():
    df = _table({1: TRACK_3D, 2: TRACK_3D + np.array([0, 1, 0, 0])})
    out = m.approach_table(df, direction=(0, 0, 1), coord_cols=["x_um", "y_um", "z_um"])
    assert out.columns.tolist() == ["track_id", *m.APPROACH_COLUMNS]
    assert out["forward_migration_index"].tolist() == pytest.approx([5 / 6, 5 / 6])
    targets = pd.DataFrame({"track_id": [1, 2], "y_um": [0.0, 0.0], "x_um": [1.0, 2.0]})
    out = m.approach_table(df, targets, coord_cols=["y_um", "x_um"])
    assert out["start_distance_um"].tolist() == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("track", [EMPTY, ONE[:, :3], STILL])
def test_approach_on_degenerate_tracks_is_nan_not_an_error(track):
    res = m.approach_metrics(track, (0.0, 0.0))
    for key in ("chemotactic_index", "forward_migration_index"):
        assert math.isnan(res[key])
    assert res["n_points"] == len(track)


def test_approach_argument_errors():
    cell = _cell([0, 1], [0, 0], [0, 1])
    with pytest.raises(ValueError, match="give exactly one of target_yx_um"):
        m.approach_metrics(cell, (0, 0), direction=(1, 0))
    with pytest.raises(
        ValueError, match=r"target_yx_um must hold 2 coordinates .* got shape \(3,\)"
    ):
        m.approach_metrics(cell, (0, 0, 0))
    with pytest.raises(ValueError, match=r"direction must be a non-zero vector of 2 numbers"):
        m.approach_metrics(cell, direction=(0, 0))


# -- reading tracks made by other tools ------------------------------------------

TRACKMATE = """LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_Z,POSITION_T,FRAME,RADIUS
Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,Radius
Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame,R
,,,(quality),({xu}),({xu}),({xu}),({tu}),,({xu})
ID1,1,0,5.0,10.0,20.0,0.0,{t1},1,3.0
ID0,0,0,5.0,13.0,24.0,0.0,{t0},0,3.0
ID7,7,,5.0,50.0,50.0,0.0,0.0,0,3.0
ID2,2,1,5.0,1.0,1.0,0.0,{t0},0,3.0
ID3,3,1,5.0,1.0,2.0,0.0,{t1},1,3.0
"""


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_trackmate_spots_export(tmp_path):
    p = _write(tmp_path / "spots.csv", TRACKMATE.format(xu="micron", tu="sec", t0="0.0", t1="30.0"))
    df = m.read_tracks_csv(p)
    assert df.columns.tolist() == ["track_id", "t_s", "x_um", "y_um", "z_um", "frame"]
    assert df["track_id"].tolist() == [0, 0, 1, 1]  # the spot without a track is dropped
    assert df["t_s"].tolist() == [0.0, 30.0, 0.0, 30.0]  # sorted by time within each track
    assert df["x_um"].tolist() == [13.0, 10.0, 1.0, 1.0]
    assert df["frame"].tolist() == [0, 1, 0, 1]
    assert m.track_metrics(df)["track_length"].tolist() == pytest.approx([5.0, 1.0])
    minutes = _write(tmp_path / "min.csv", TRACKMATE.format(xu="nm", tu="min", t0="0", t1="0.5"))
    df = m.read_tracks_csv(minutes)
    assert df["t_s"].tolist() == [0.0, 30.0, 0.0, 30.0]
    assert df["x_um"].tolist() == pytest.approx([0.013, 0.010, 0.001, 0.001])


def test_read_trackmate_in_pixels_needs_the_pixel_size(tmp_path):
    p = _write(tmp_path / "px.csv", TRACKMATE.format(xu="pixel", tu="sec", t0="0", t1="30"))
    with pytest.raises(
        CalibrationError,
        match=re.escape(f"{p}: positions are in pixels; pass length_unit_um=PIXEL_SIZE_UM") + "$",
    ):
        m.read_tracks_csv(p)
    df = m.read_tracks_csv(p, length_unit_um=0.5)
    assert df["x_um"].tolist() == [6.5, 5.0, 0.5, 0.5]


def test_read_celltrackr_csv_and_gzip(tmp_path):
    text = "track_id,t,x,y\n84_1,48.0,1.0,2.0\n84_1,24.0,0.0,2.0\n7,24.0,5.0,5.0\n"
    p = _write(tmp_path / "cells.csv", text)
    df = m.read_tracks_csv(p)
    assert df.columns.tolist() == ["track_id", "t_s", "x_um", "y_um"]
    assert df["track_id"].tolist() == ["84_1", "84_1", "7"]
    assert df["t_s"].tolist() == [24.0, 48.0, 24.0]
    gz = tmp_path / "cells.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    pd.testing.assert_frame_equal(m.read_tracks_csv(gz), df)


def test_read_imaris_export_needs_the_frame_interval(tmp_path):
    text = (
        " \nPosition\n====================\n"
        "Position X,Position Y,Position Z,Unit,Category,Collection,Time,TrackID,ID,\n"
        "1.5,2.5,3.5,um,Spot,Position,1,1000000000,0,\n"
        "2.5,2.5,3.5,um,Spot,Position,2,1000000000,1,\n"
    )
    p = _write(tmp_path / "Position.csv", text)
    with pytest.raises(
        CalibrationError,
        match=re.escape(
            f"{p}: time column 'Time' counts frames; pass time_unit_s=SECONDS (the frame interval)"
        )
        + "$",
    ):
        m.read_tracks_csv(p)
    df = m.read_tracks_csv(p, time_unit_s=20)
    assert df["t_s"].tolist() == [20.0, 40.0]
    assert df["frame"].tolist() == [1, 2]
    assert df["track_id"].tolist() == [1000000000] * 2
    assert df["z_um"].tolist() == [3.5, 3.5]


def test_read_tracks_csv_overrides_and_space_separated(tmp_path):
    p = _write(tmp_path / "t.txt", "cell time_min px py\n3 0 0 0\n3 1 3 4\n")
    df = m.read_tracks_csv(p, id_col="cell", coord_cols=["px", "py"])
    assert df["t_s"].tolist() == [0.0, 60.0]  # "time_min": minutes
    df = m.read_tracks_csv(
        p, id_col="cell", t_col="time_min", coord_cols=["px", "py"], time_unit_s=2
    )
    assert df["t_s"].tolist() == [0.0, 2.0]


def test_read_tracks_csv_errors_name_file_columns_and_fix(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(
        StackNotFoundError, match=re.escape(f"{missing}: no such tracks file") + "$"
    ):
        m.read_tracks_csv(missing)
    p = _write(tmp_path / "noid.csv", "t,x,y\n0,1,2\n")
    with pytest.raises(
        StackReadError,
        match=re.escape(
            f"{p}: no track id column found; the columns are ['t', 'x', 'y']; pass id_col=NAME"
        )
        + "$",
    ):
        m.read_tracks_csv(p)
    p = _write(tmp_path / "noy.csv", "track,t,x,depth\n1,0,1,2\n")
    with pytest.raises(
        StackReadError,
        match=re.escape(
            f"{p}: no y position column found; the columns are ['track', 't', 'x', 'depth']; "
            "pass coord_cols=(X, Y[, Z])"
        )
        + "$",
    ):
        m.read_tracks_csv(p)
    p = _write(tmp_path / "not.csv", "track,when,x,y\n1,0,1,2\n")
    with pytest.raises(
        StackReadError,
        match=re.escape(
            f"{p}: no time column found; the columns are ['track', 'when', 'x', 'y']; "
            "pass t_col=NAME (and time_unit_s= if it is not in seconds)"
        )
        + "$",
    ):
        m.read_tracks_csv(p)
    with pytest.raises(
        StackReadError,
        match=re.escape(
            f"{p}: t_col='clock' is not a column; the columns are ['track', 'when', 'x', 'y']"
        )
        + "$",
    ):
        m.read_tracks_csv(p, t_col="clock")
    p = _write(tmp_path / "bad.csv", "track,t,x,y\n1,0,1,2\n1,1,one,2\n")
    with pytest.raises(
        StackReadError,
        match=re.escape(f"{p}: line 3: position column 'x' holds 'one', not a number") + "$",
    ):
        m.read_tracks_csv(p)
    p = tmp_path / "image.tif"
    p.write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(
        StackReadError, match=re.escape(f"{p}: is a binary file, not a CSV table of tracks") + "$"
    ):
        m.read_tracks_csv(p)
    p = _write(tmp_path / "empty.csv", "")
    with pytest.raises(StackReadError, match=re.escape(f"{p}: is empty;")):
        m.read_tracks_csv(p)


# -- real data: celltrackR's own reference values --------------------------------


def test_matches_celltrackr_reference_values(shared_data):
    folder = shared_data / "celltrackR_tracks"
    ref_dir = folder / "reference_stats_celltrackR"
    tracks = m.read_tracks_csv(folder / "TCells.csv")
    ours = m.track_metrics(tracks).assign(track_id=lambda d: d["track_id"].astype(str))
    ref = pd.read_csv(ref_dir / "TCells_per_track.csv", dtype={"track_id": str})
    both = ref.add_prefix("ref_").merge(ours, left_on="ref_track_id", right_on="track_id")
    assert len(both) == len(ref) == 199
    for name in ("track_length", "speed", "straightness", "asphericity", "mean_turning_angle"):
        np.testing.assert_allclose(both[name], both["ref_" + m.CELLTRACKR_NAMES[name]], rtol=1e-9)
    msd_ref = pd.read_csv(ref_dir / "TCells_MSD_aggregate_mean_se.csv")
    ours_msd = m.msd(tracks, lags=msd_ref["i"])
    for c in ("mean", "lower", "upper"):
        np.testing.assert_allclose(ours_msd[c], msd_ref[c], rtol=1e-9)
    summary = pd.read_csv(ref_dir / "TCells_summary.csv").set_index("stat")["value"]
    assert ours["speed"].mean() == pytest.approx(summary["mean_cell_speed"], rel=1e-9)
    assert m.step_speeds(tracks)["speed"].median() == pytest.approx(
        summary["median_step_speed"], rel=1e-9
    )
    neutrophils = m.read_tracks_csv(folder / "Neutrophils.csv")
    test = m.hotellings_test(neutrophils, coord_cols=["x_um", "y_um"], step_spacing=3)
    assert (round(test["T2"], 2), test["df1"], test["df2"]) == (240.06, 2, 1408)
