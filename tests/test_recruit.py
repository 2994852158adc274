"""Recruitment of immune cells to deaths: curves, per-event measures, statistics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deathtrack.config import PipelineConfig, RecruitConfig
from deathtrack.recruit import (
    CURVE_COLUMNS,
    STAT_COLUMNS,
    compare_modes,
    disc_fraction_inside,
    recruitment_curves,
    summarize_events,
)

PX = 1.0  # µm per pixel in the synthetic tables
SHAPE = (200, 200)
GEOM = dict(interval_s=60.0, pixel_size_um=PX, shape_yx=SHAPE)


def _events(*rows):
    """rows of (event_id, track_id, frame, y_um, x_um, mode)"""
    return pd.DataFrame(rows, columns=["event_id", "track_id", "frame", "y_um", "x_um", "mode"])


def _immune(rows):
    """rows of (frame, track_id, y_um, x_um)"""
    df = pd.DataFrame(rows, columns=["frame", "track_id", "y_um", "x_um"])
    return df.assign(y=df.y_um / PX, x=df.x_um / PX)


def _cfg(**kw):
    # GEOM has a 60 s interval: minutes are frames here
    return RecruitConfig(**{"pre_min": 2, "post_min": 3, "n_controls": 4, **kw})


def _with_labels(ev, imm, cell_tracks, cells, immune, **cfg):
    """:func:`recruitment_curves` with label image stacks for the contacts."""
    return recruitment_curves(
        ev,
        imm,
        cell_tracks,
        _cfg(**cfg),
        n_frames=len(cells),
        cell_labels=lambda t: cells[t],
        immune_labels=lambda t: immune[t],
        **GEOM,
    )


def test_disc_fraction_inside_center_edge_corner():
    assert disc_fraction_inside(100, 100, 30, SHAPE) == 1.0
    assert disc_fraction_inside(-0.5, 100, 30, SHAPE) == pytest.approx(0.5, abs=0.02)
    assert disc_fraction_inside(-0.5, -0.5, 30, SHAPE) == pytest.approx(0.25, abs=0.02)


def test_counts_are_by_track_within_radius_and_window_is_clipped_to_the_movie():
    ev = _events((1, 7, 1, 100.0, 100.0, "necroptotic"))
    rows = []
    for t in range(6):
        rows.append((t, 11, 100.0, 120.0))  # 20 µm away: inside R = 30
        rows.append((t, 12, 100.0, 135.0))  # 35 µm away: outside
    rows.append((3, 13, 100.0, 101.0))  # arrives at frame 3 only
    curves, _ = recruitment_curves(ev, _immune(rows), None, _cfg(), n_frames=6, **GEOM)
    assert list(curves.columns) == CURVE_COLUMNS
    # frame 1 - 2 < 0 is outside the movie: the window starts at dt = -1
    assert curves["dt"].tolist() == [-1, 0, 1, 2, 3]
    assert curves["frame"].tolist() == [0, 1, 2, 3, 4]
    assert curves["t_rel_s"].tolist() == [-60.0, 0.0, 60.0, 120.0, 180.0]
    assert curves["n_within_r"].tolist() == [1, 1, 1, 2, 1]
    assert curves["n_contact"].isna().all()  # no label images given


def test_one_cell_sitting_there_counts_once_even_if_split_in_two_objects():
    ev = _events((1, 7, 2, 100.0, 100.0, "apoptotic"))
    rows = [(t, 11, 100.0, 110.0) for t in range(5)] + [(2, 11, 100.0, 112.0)]
    curves, _ = recruitment_curves(ev, _immune(rows), None, _cfg(), n_frames=5, **GEOM)
    assert curves.set_index("dt").loc[0, "n_within_r"] == 1


def test_contacts_from_label_images_and_the_cells_last_mask_after_its_track_ends():
    T = 6
    cells = np.zeros((T, *SHAPE), np.int32)
    immune = np.zeros((T, *SHAPE), np.int32)
    for t in range(3):  # the dying cell (track 7) is segmented until frame 2 only
        cells[t, 90:110, 90:110] = 7
    for t in range(T):
        immune[t, 95:105, 110:117] = 21  # edge to edge: overlaps the mask dilated by 1 µm
        immune[t, 10:20, 10:20] = 22  # far away
    ev = _events((1, 7, 2, 100.0, 100.0, "necroptotic"))
    imm = _immune(
        [(t, 21, 100.0, 114.5) for t in range(T)] + [(t, 22, 15.0, 15.0) for t in range(T)]
    )
    cell_tracks = pd.DataFrame({"frame": range(3), "track_id": 7, "y_um": 100.0, "x_um": 100.0})
    curves, contacts = _with_labels(ev, imm, cell_tracks, cells, immune)
    assert curves["n_contact"].tolist() == [1, 1, 1, 1, 1, 1]  # frames 3-5 use frame 2's mask
    assert set(contacts["immune_track_id"]) == {21}
    no_tol, _ = _with_labels(ev, imm, cell_tracks, cells, immune, contact_tolerance_um=0)
    assert no_tol["n_contact"].tolist() == [0] * 6


def test_a_death_with_no_track_is_counted_around_its_place_and_its_contacts_are_unknown():
    """A death only the dye showed has an empty ``track_id``: immune cells are counted
    around it like any other; with no mask of its own its contacts are NaN, while the
    death beside it on track 7 has its own."""
    T = 4
    cells = np.zeros((T, *SHAPE), np.int32)
    immune = np.zeros((T, *SHAPE), np.int32)
    cells[:, 90:110, 90:110] = 7
    immune[:, 95:105, 110:117] = 21
    ev = _events(
        (1, 7, 1, 100.0, 100.0, "necroptotic"), (2, None, 1, 40.0, 40.0, "necroptotic")
    ).astype({"track_id": "Int64"})
    imm = _immune(
        [(t, 21, 100.0, 114.5) for t in range(T)] + [(t, 22, 50.0, 40.0) for t in range(T)]
    )
    cell_tracks = pd.DataFrame({"frame": range(T), "track_id": 7, "y_um": 100.0, "x_um": 100.0})
    curves, contacts = _with_labels(ev, imm, cell_tracks, cells, immune)
    by = dict(tuple(curves.groupby("event_id")))
    assert by[2]["n_within_r"].tolist() == [1, 1, 1, 1]  # track 22, 10 µm away
    assert by[2]["n_contact"].isna().all()
    assert by[1]["n_contact"].tolist() == [1, 1, 1, 1]
    assert set(contacts["event_id"]) == {1}


def test_summary_measures_by_hand():
    ev = _events((1, 7, 2, 100.0, 100.0, "necroptotic"))
    rows = []
    for t in range(8):  # cell 31 walks straight in from x=140 to x=110 over frames 0..3, stays
        rows.append((t, 31, 100.0, max(140.0 - 10 * t, 110.0)))
    rows += [(t, 32, 100.0, 190.0) for t in range(8)]  # never comes
    imm = _immune(rows)
    contacts = pd.DataFrame(
        {"event_id": 1, "dt": [1, 2, 3, 4, 5], "immune_track_id": 31}
    )  # touching from frame 3 on
    cfg = _cfg(post_min=5, approach_min=4)
    curves, _ = recruitment_curves(ev, imm, None, cfg, n_frames=8, **GEOM)
    curves["n_contact"] = [0, 0, 0, 1, 1, 1, 1, 1]
    s = summarize_events(ev, curves, contacts, imm, cfg, **GEOM).iloc[0]
    assert s["first_contact_s"] == 60.0
    assert s["n_immune_distinct"] == 1
    assert s["n_immune_contact"] == 1
    assert s["contact_total_s"] == 5 * 60.0
    assert s["contact_median_s"] == 5 * 60.0
    assert s["mean_within_r_pre"] == 0.5  # frames 0 (40 µm: outside) and 1 (30 µm: inside)
    assert s["mean_within_r_post"] == 1.0
    assert s["disc_fraction"] == 1.0
    # approach over frames 0..3 before first contact at frame 3: 140 -> 110, 30 µm in 3 min
    assert s["approach_speed_um_per_min"] == pytest.approx(10.0)
    # straight toward the event: CI = (40 - 10) / 30 = 1
    assert s["approach_chemotactic_index"] == pytest.approx(1.0)
    assert s["approach_fmi"] == pytest.approx(1.0)
    assert s["arrest_on_arrival"] == 1.0


def test_border_event_chance_level_is_scaled_to_its_disc():
    # immune cells spread evenly; an event on the top edge sees half the disc
    yy, xx = np.meshgrid(np.arange(5, 200, 10.0), np.arange(5, 200, 10.0), indexing="ij")
    imm = _immune(
        [(t, i, y, x) for t in range(3) for i, (y, x) in enumerate(zip(yy.ravel(), xx.ravel()))]
    )
    ev = _events((1, 7, 1, 0.0, 100.0, "apoptotic"), (2, 8, 1, 100.0, 100.0, "apoptotic"))
    curves, _ = recruitment_curves(
        ev, imm, None, _cfg(n_controls=30, control_min_distance_um=0), n_frames=3, **GEOM
    )
    s = summarize_events(ev, curves, pd.DataFrame(), imm, _cfg(), **GEOM).set_index("event_id")
    assert s.loc[1, "disc_fraction"] == pytest.approx(0.5, abs=0.03)
    # the border event sees about half the cells, and its chance level is half too
    ratio = s.loc[1, "mean_within_r_post"] / s.loc[2, "mean_within_r_post"]
    assert ratio == pytest.approx(0.5, abs=0.1)
    assert s.loc[1, "recruitment_index"] == pytest.approx(1.0, abs=0.25)
    assert s.loc[2, "recruitment_index"] == pytest.approx(1.0, abs=0.25)
    uni = curves.groupby("event_id")["uniform_within_r"].first()
    assert uni[1] / uni[2] == pytest.approx(0.5, abs=0.03)


def test_no_events_or_no_immune_cells():
    curves, contacts = recruitment_curves(_events(), _immune([]), None, _cfg(), n_frames=5, **GEOM)
    assert curves.empty and list(curves.columns) == CURVE_COLUMNS
    assert contacts.empty
    ev = _events((1, 7, 2, 100.0, 100.0, "apoptotic"))
    curves, _ = recruitment_curves(ev, _immune([]), None, _cfg(), n_frames=5, **GEOM)
    assert curves["n_within_r"].tolist() == [0] * 5
    s = summarize_events(ev, curves, pd.DataFrame(), _immune([]), _cfg(), **GEOM).iloc[0]
    assert s["n_immune_distinct"] == 0
    assert math.isnan(s["recruitment_index"])  # nothing expected: no ratio


def _mode_table(apo, nec, **extra):
    df = pd.DataFrame(
        {
            "mode": ["apoptotic"] * len(apo) + ["necroptotic"] * len(nec),
            "mean_within_r_post": np.r_[apo, nec].astype(float),
        }
    )
    return df.assign(**extra)


def test_compare_modes_finds_a_clear_difference():
    stats = compare_modes(
        _mode_table([0, 1, 0, 1, 2, 0, 1], [5, 6, 4, 7, 5, 6]),
        ["mean_within_r_post"],
        n_bootstrap=500,
        n_permutations=500,
    )
    assert list(stats.columns) == STAT_COLUMNS
    r = stats.iloc[0]
    assert (r.n_apoptotic, r.n_necroptotic) == (7, 6)
    assert r.difference == pytest.approx(5.5 - 5 / 7)
    assert r.ci_low > 3 and r.ci_high < 7
    assert r.effect_size == 1.0
    assert r.p_value < 0.01 and r.p_permutation < 0.01


def test_compare_modes_no_difference_and_left_out_events():
    rng = np.random.default_rng(0)
    df = _mode_table(rng.poisson(2, 30), rng.poisson(2, 30))
    df.loc[0, "mode"] = "uncertain"
    df["reviewed_mode"] = ""
    df.loc[1, "reviewed_mode"] = "not a death"  # reviewed as no death: left out
    df.loc[2, "reviewed_mode"] = "necroptotic"  # reviewed: counts as necroptotic
    r = compare_modes(df, ["mean_within_r_post"], n_bootstrap=300, n_permutations=300).iloc[0]
    assert (r.n_apoptotic, r.n_necroptotic) == (27, 31)
    assert r.p_value > 0.05 and r.ci_low < 0 < r.ci_high
    assert -0.3 < r.effect_size < 0.3


def test_compare_modes_pools_stacks_without_mixing_them():
    # stack b has ten times the immune density; within each stack nec > apo by exactly 1,
    # so resampling within stacks always gives 1; mixing stacks would not
    a = _mode_table([1] * 4, [2] * 4, stack="a")
    b = _mode_table([10] * 4, [11] * 4, stack="b")
    r = compare_modes(
        pd.concat([a, b]), ["mean_within_r_post"], n_bootstrap=300, n_permutations=2000
    ).iloc[0]
    assert r.difference == pytest.approx(1.0)
    assert r.ci_low == pytest.approx(1.0) and r.ci_high == pytest.approx(1.0)
    assert r.p_permutation < 0.05


def test_compare_modes_with_one_mode_only_gives_nan_not_an_error():
    r = compare_modes(_mode_table([1, 2, 3], []), ["mean_within_r_post"]).iloc[0]
    assert r.n_necroptotic == 0 and math.isnan(r.p_value) and math.isnan(r.difference)
    assert compare_modes(pd.DataFrame()).empty


def test_pipeline_recruitment_matches_simulator_truth(tmp_path, small_movie):
    """n_within_r against the simulator's truth, on the events found (MAE <= 0.3)."""
    from deathtrack.pipeline import run_stack

    result = run_stack(small_movie["movie"], PipelineConfig(), tmp_path, progress=False)
    ev = pd.read_csv(result.out_dir / "events.csv")
    rec = pd.read_csv(result.out_dir / "recruitment.csv")
    truth_dir = small_movie["events"].parent
    tev = pd.read_csv(truth_dir / "events.csv")
    trec = pd.read_csv(truth_dir / "recruitment.csv")
    errors, pairs = [], []
    for e in ev.itertuples():
        d = np.hypot(tev.y_um - e.y_um, tev.x_um - e.x_um)
        j = int(np.argmin(d))
        if d[j] > 10 or abs(tev.frame[j] - e.frame) > 4:
            continue
        ours = rec[rec.event_id == e.event_id].set_index("frame")["n_within_r"]
        t = trec[trec.event_id == tev.event_id[j]]
        truth = pd.Series(t.n_within_r.to_numpy(), index=t.dt + tev.frame[j])
        common = ours.index.intersection(truth.index)
        errors.extend(np.abs(ours[common] - truth[common]))
        true_post = t.loc[t.dt >= 0, "n_within_r"].mean()
        pairs.append((tev["mode"][j], e.mean_within_r_post, true_post))
    assert len(pairs) >= 0.8 * len(tev)
    assert np.mean(errors) <= 0.3
    # per death, the mean count after death is the truth's; so is the necroptotic -
    # apoptotic difference over the same deaths (the quantity users compare)
    p = pd.DataFrame(pairs, columns=["mode", "ours", "truth"])
    assert (p.ours - p.truth).abs().mean() <= 0.3, p
    by_mode = p.groupby("mode")[["ours", "truth"]].mean()
    diff = by_mode.loc["necroptotic"] - by_mode.loc["apoptotic"]
    assert abs(diff.ours - diff.truth) <= 0.3, by_mode
    stats = pd.read_csv(result.out_dir / "recruitment_stats.csv")
    assert stats.iloc[0]["metric"] == "mean_within_r_post"
    ours_diff = ev.groupby("mode")["mean_within_r_post"].mean()
    assert stats.iloc[0]["difference"] == pytest.approx(
        ours_diff["necroptotic"] - ours_diff["apoptotic"]
    )


def test_pipeline_without_immune_channel_skips_recruitment_with_a_message(tmp_path):
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    sim = simulate(
        SimulationConfig(seed=5, shape_yx=(96, 96), n_frames=8, n_cells=3, with_immune=False)
    )
    paths = write_simulation(sim, tmp_path / "sim", name="noimm")
    result = run_stack(paths["movie"], PipelineConfig(), tmp_path / "out", progress=False)
    rec = pd.read_csv(result.out_dir / "recruitment.csv")
    assert rec.empty and list(rec.columns) == CURVE_COLUMNS
    assert any("no immune channel" in w for w in result.warnings)


def test_counts_within_radius_of_many_centres_at_once():
    """Per frame and centre: distinct tracks within R, counted by brute force."""
    from deathtrack.recruit import _ImmunePaths

    rng = np.random.default_rng(0)
    n = 120
    frames = rng.integers(2, 8, n)  # frames 2..7; 0, 1 and 8 have no immune cell
    pos = rng.uniform(0, 100, (n, 2))
    centres = rng.uniform(0, 100, (7, 2))
    for ids in (np.arange(n), rng.integers(0, 10, n)):  # one object per track, or shared
        table = pd.DataFrame(
            {"frame": frames, "track_id": ids, "y_um": pos[:, 0], "x_um": pos[:, 1]}
        )
        counts, n_all = _ImmunePaths(table, False).near_counts(0, 9, centres, 25.0)
        assert (
            counts.shape == (9, 7) and n_all.tolist() == np.bincount(frames, minlength=9).tolist()
        )
        for t in range(9):
            for j, c in enumerate(centres):
                near = (frames == t) & (np.hypot(*(pos - c).T) <= 25.0)
                assert counts[t, j] == len(set(ids[near].tolist())), (t, j)
    assert counts[[0, 1, 8]].sum() == 0
    empty = pd.DataFrame(columns=["frame", "track_id", "y_um", "x_um"])
    counts, n_all = _ImmunePaths(empty, False).near_counts(3, 6, centres, 25.0)
    assert counts.tolist() == [[0.0] * 7] * 3 and n_all.tolist() == [0, 0, 0]


# -- 3D: distances in µm along z too ---------------------------------------------


def _scene(seed=0, n_frames=12, z=None):
    """Events, immune and target-cell tracks with label images; ``z(rng, n)`` gives depths.

    Random walkers in a 120 × 120 µm field (1 µm pixels): 3 dying cells, 6 live
    target cells (too few for 20 controls: random places fill in), 10 immune
    cells, each painted as a 7 × 7 square into (Y, X) label images.
    """
    rng = np.random.default_rng(seed)
    shape = (120, 120)

    def walk(n, start):
        steps = rng.normal(0, 3, (n_frames, n, 2))
        return np.clip(start + np.cumsum(steps, axis=0), 4, 115)

    cells_pos = walk(9, rng.uniform(20, 100, (9, 2)))
    immune_pos = walk(10, rng.uniform(10, 110, (10, 2)))
    # six immune cells home in on the three dying cells, from 30 µm away to touching
    offset = rng.normal(0, 1, (6, 2))
    offset *= 30 / np.linalg.norm(offset, axis=1, keepdims=True)
    shrink = np.clip(1 - np.arange(n_frames) / 6, 0.2, 1)[:, None, None]
    immune_pos[:, :6] = np.clip(cells_pos[:, [0, 1, 2, 0, 1, 2]] + shrink * offset, 4, 115)
    cz = z(rng, 9) if z else None
    iz = z(rng, 10) if z else None
    cells_lab = np.zeros((n_frames, *shape), np.int32)
    immune_lab = np.zeros((n_frames, *shape), np.int32)
    crow, irow = [], []
    for t in range(n_frames):
        for k in range(9):
            if k < 3 and t > 8:  # the dying cells' tracks end after frame 8
                continue
            y, x = cells_pos[t, k]
            cells_lab[t, int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = k + 1
            crow.append((t, k + 1, y, x) + ((cz[k],) if z else ()))
        for k in range(10):
            y, x = immune_pos[t, k]
            immune_lab[t, int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = k + 1
            irow.append((t, k + 1, y, x) + ((iz[k],) if z else ()))
    names = ["frame", "track_id", "y_um", "x_um"] + (["z_um"] if z else [])
    cells = pd.DataFrame(crow, columns=names)
    immune = pd.DataFrame(irow, columns=names)
    ev = cells[(cells.track_id <= 3) & (cells.frame == 6)].copy()
    ev.insert(0, "event_id", [1, 2, 3])
    ev["mode"] = ["apoptotic", "necroptotic", "necroptotic"]
    geom = dict(interval_s=60.0, pixel_size_um=1.0, shape_yx=shape, n_frames=n_frames)
    labels = dict(cell_labels=lambda t: cells_lab[t], immune_labels=lambda t: immune_lab[t])
    return ev, immune, cells, geom, labels


def _recruit_all(ev, immune, cells, geom, labels, **volume):
    cfg = _cfg(radius_um=25.0, control_min_distance_um=20.0, approach_min=3, contact_tolerance_um=2)
    curves, contacts = recruitment_curves(ev, immune, cells, cfg, **geom, **labels, **volume)
    g = {k: geom[k] for k in ("interval_s", "pixel_size_um", "shape_yx")}
    summary = summarize_events(ev, curves, contacts, immune, cfg, **g, **volume)
    return curves, contacts, summary


@pytest.mark.parametrize("depth", [0.0, 7.25, -6416.8])
def test_constant_depth_gives_exactly_the_2d_results(depth):
    """A z-flattened table (every z the same) reproduces the 2D tables bit for bit."""
    ev, immune, cells, geom, labels = _scene()
    flat = [t.assign(z_um=depth) for t in (ev, immune, cells)]
    ref = _recruit_all(ev, immune, cells, geom, labels)
    assert ref[0]["n_within_r"].sum() > 0 and ref[0]["n_contact"].sum() > 0
    assert ref[2]["approach_chemotactic_index"].notna().any()  # approach paths compared too
    for volume in ({}, {"n_slices": 1, "z_step_um": 2.0}):  # one slice is a plane
        got = _recruit_all(*flat, geom, labels, **volume)
        for a, b in zip(ref, got):
            pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_3d_distances_count_fewer_than_the_projection_and_flattening_restores_2d():
    def depths(rng, n):
        return rng.uniform(0, 60, n)

    ev, immune, cells, geom, _ = _scene(seed=1, z=depths)
    ev2, imm2, cells2 = (t.drop(columns="z_um") for t in (ev, immune, cells))
    no_labels = {}
    c3, _, s3 = _recruit_all(ev, immune, cells, geom, no_labels)
    c2, _, s2 = _recruit_all(ev2, imm2, cells2, geom, no_labels)
    # the same events and frames; a 3D distance is never shorter than its projection
    assert (c3[["event_id", "frame"]].to_numpy() == c2[["event_id", "frame"]].to_numpy()).all()
    assert (c3["n_within_r"] <= c2["n_within_r"]).all()
    assert c3["n_within_r"].sum() < c2["n_within_r"].sum()
    assert (s3["n_immune_distinct"] <= s2["n_immune_distinct"]).all()
    # flattening the 3D tables (z := one value) gives the 2D tables exactly
    flat = [t.assign(z_um=30.0) for t in (ev, immune, cells)]
    cf, _, sf = _recruit_all(*flat, geom, no_labels)
    pd.testing.assert_frame_equal(cf, c2, check_exact=True)
    pd.testing.assert_frame_equal(sf, s2, check_exact=True)


def test_3d_by_hand_immune_cells_far_away_in_z_do_not_count():
    """Over the event in (y, x) but 50 µm deeper: the projection counts it, 3D does not."""
    ev = _events((1, 7, 1, 100.0, 100.0, "necroptotic")).assign(z_um=20.0)
    rows = []
    for t in range(3):
        rows.append((t, 11, 100.0, 110.0, 20.0))  # 10 µm away in the same plane: inside
        rows.append((t, 12, 100.0, 100.0, 70.0))  # straight below, 50 µm deeper: outside
        rows.append((t, 13, 100.0, 115.0, 45.0))  # sqrt(15² + 25²) = 29.2 µm: inside
        rows.append((t, 14, 100.0, 115.0, 48.0))  # sqrt(15² + 28²) = 31.8 µm: outside
    imm = pd.DataFrame(rows, columns=["frame", "track_id", "y_um", "x_um", "z_um"])
    vol = dict(n_slices=40, z_step_um=2.0)  # 80 µm deep
    c3, _ = recruitment_curves(ev, imm, None, _cfg(), n_frames=3, **GEOM, **vol)
    c2, _ = recruitment_curves(
        ev.drop(columns="z_um"), imm.drop(columns="z_um"), None, _cfg(), n_frames=3, **GEOM
    )
    assert c3["n_within_r"].tolist() == [2, 2, 2]
    assert c2["n_within_r"].tolist() == [4, 4, 4]
    s = summarize_events(ev, c3, pd.DataFrame(), imm, _cfg(), **GEOM, **vol).iloc[0]
    assert s["n_immune_distinct"] == 2
    # the ball of R = 30 around z = 20 µm pokes 9 µm out of the volume's top (z = -1 µm)
    cap = math.pi * 9**2 * (3 * 30 - 9) / 3 / (4 / 3 * math.pi * 30**3)
    assert s["disc_fraction"] == pytest.approx(1 - cap, abs=2e-3)


def test_ball_fraction_inside_matches_the_cap_formula_and_corners():
    from deathtrack.recruit import ball_fraction_inside

    shape, spacing, r = (30, 200, 200), (2.0, 1.0, 1.0), 30.0  # 60 µm deep, z from -1 µm
    for zc in np.linspace(-1.0, 59.0, 25):
        exact = 1.0
        for h in (zc + 1.0, 59.0 - zc):  # distance to the bottom and to the top
            cap = max(r - h, 0.0)
            exact -= math.pi * cap**2 * (3 * r - cap) / 3 / (4 / 3 * math.pi * r**3)
        got = ball_fraction_inside(np.array([zc / 2.0, 100.0, 100.0]), r, shape, spacing)
        assert got == pytest.approx(exact, abs=1e-3)
    centres = np.array([[15.0, 100.0, 100.0], [15.0, -0.5, 100.0], [-0.5, -0.5, -0.5]])
    small = ball_fraction_inside(centres, 10.0, shape, spacing)
    assert small[0] == 1.0  # wholly inside: exactly 1
    assert small[1] == pytest.approx(0.5, abs=0.01)
    assert small[2] == pytest.approx(0.125, abs=0.01)


def test_uniform_3d_immune_cells_give_chance_level_one_and_a_half_ball_at_the_top():
    # a lattice of immune cells every 10 µm through a 200 × 200 × 70 µm volume
    g = np.arange(5, 200, 10.0)
    zz, yy, xx = np.meshgrid(np.arange(5, 70, 10.0), g, g, indexing="ij")
    pos = np.column_stack([yy.ravel(), xx.ravel(), zz.ravel()])
    imm = pd.DataFrame(
        [(t, i, *p) for t in range(3) for i, p in enumerate(pos)],
        columns=["frame", "track_id", "y_um", "x_um", "z_um"],
    )
    ev = _events((1, 7, 1, 100.0, 100.0, "apoptotic"), (2, 8, 1, 100.0, 100.0, "apoptotic"))
    ev["z_um"] = [35.0, -0.5]  # mid-depth, and on the top surface
    vol = dict(n_slices=70, z_step_um=1.0)
    cfg = _cfg(n_controls=30, control_min_distance_um=0)
    curves, _ = recruitment_curves(ev, imm, None, cfg, n_frames=3, **GEOM, **vol)
    s = summarize_events(ev, curves, pd.DataFrame(), imm, cfg, **GEOM, **vol).set_index("event_id")
    assert s.loc[1, "disc_fraction"] == 1.0
    assert s.loc[2, "disc_fraction"] == pytest.approx(0.5, abs=0.01)
    for e in (1, 2):
        assert s.loc[e, "recruitment_index"] == pytest.approx(1.0, abs=0.2)
        c = curves[curves.event_id == e]
        assert (c["uniform_within_r"] / c["n_within_r"]).mean() == pytest.approx(1.0, abs=0.15)


def test_3d_contacts_from_label_stacks_use_the_tolerance_in_um_along_z():
    """Voxels 2 µm deep, 0.5 µm wide: one slice above is 2 µm away, one pixel aside 0.5 µm."""
    T, shape = 2, (12, 40, 40)
    cells = np.zeros((T, *shape), np.int32)
    immune = np.zeros((T, *shape), np.int32)
    cells[:, 4:6, 15:25, 15:25] = 7
    immune[:, 6:8, 15:25, 15:25] = 21  # the next slice up: 2 µm from the cell's mask
    immune[:, 4:6, 26:30, 15:25] = 22  # one pixel gap in y: 1 µm
    immune[:, 9:11, 15:25, 15:25] = 23  # 4 slices up: 8 µm, on top of it in the projection
    px, dz = 0.5, 2.0

    def table(rows):
        return pd.DataFrame(rows, columns=["frame", "track_id", "y_um", "x_um", "z_um"])

    ev = _events((1, 7, 0, 10.0, 10.0, "necroptotic")).assign(z_um=10.0)
    imm = table([(t, k, 10.0, 10.0, 10.0) for t in range(T) for k in (21, 22, 23)])
    cell_tracks = table([(t, 7, 10.0, 10.0, 10.0) for t in range(T)])
    geom = dict(interval_s=60.0, pixel_size_um=px, shape_yx=shape[1:], n_frames=T)
    labels = dict(cell_labels=lambda t: cells[t], immune_labels=lambda t: immune[t])

    def touching(tol):
        _, contacts = recruitment_curves(
            ev,
            imm,
            cell_tracks,
            _cfg(contact_tolerance_um=tol),
            n_slices=shape[0],
            z_step_um=dz,
            **geom,
            **labels,
        )
        return set(contacts.loc[contacts.dt == 0, "immune_track_id"])

    assert touching(0.0) == set()
    assert touching(1.0) == {22}
    assert touching(2.0) == {21, 22}
    assert touching(8.0) == {21, 22, 23}


def test_3d_inputs_that_do_not_fit_are_refused_with_what_to_do():
    from deathtrack.errors import CalibrationError

    ev = _events((1, 7, 1, 100.0, 100.0, "apoptotic"))
    imm = _immune([(0, 11, 100.0, 110.0)])
    kw = dict(n_frames=3, **GEOM)
    with pytest.raises(ValueError, match="`immune` has `z_um` but `events` has not"):
        recruitment_curves(ev, imm.assign(z_um=1.0), None, _cfg(), **kw)
    with pytest.raises(ValueError, match="`events` has `z_um` but `cells` has not"):
        cells = pd.DataFrame({"frame": [1], "track_id": [3], "y_um": [5.0], "x_um": [5.0]})
        recruitment_curves(ev.assign(z_um=1.0), imm.assign(z_um=1.0), cells, _cfg(), **kw)
    with pytest.raises(
        ValueError, match=r"`immune` has `z_um` but its row 1 \(index 0\) has none \(nan\)"
    ):
        bad = imm.assign(z_um=[np.nan])
        recruitment_curves(ev.assign(z_um=1.0), pd.concat([imm.assign(z_um=2.0), bad]), **kw)
    with pytest.raises(CalibrationError, match="`n_slices` is given but `z_step_um` is not"):
        recruitment_curves(ev, imm, None, _cfg(), n_slices=10, **kw)
    with pytest.raises(ValueError, match="a volume of 10 z slices is given but `events` has no"):
        recruitment_curves(ev, imm, None, _cfg(), n_slices=10, z_step_um=2.0, **kw)
    with pytest.raises(
        ValueError, match=r"`immune_labels\(0\)` has shape \(200, 200\); .*\(Z, Y, X\) stacks"
    ):
        recruitment_curves(
            ev.assign(z_um=1.0),
            imm.assign(z_um=1.0),
            None,
            _cfg(),
            n_slices=10,
            z_step_um=2.0,
            cell_labels=lambda t: np.zeros(SHAPE, np.int32),
            immune_labels=lambda t: np.zeros(SHAPE, np.int32),
            **kw,
        )
    # a z_um column without values is no depth: 2D, as before
    c, _ = recruitment_curves(ev.assign(z_um=np.nan), imm, None, _cfg(), **kw)
    assert c["n_within_r"].tolist() == [1, 0, 0]
