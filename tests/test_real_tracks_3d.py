"""Real 3D tracks (``../shared/data``): motility and recruitment in 3D µm.

celltrackR's 3D values, the z-flattened tracks against celltrackR's 2D values, and the
identity "the 3D code on a z-flattened table is the 2D code". The full comparison, with the
numbers, is ``benchmarks/real_tracks_3d.py`` (``benchmarks/results/real_tracks_3d.md``).

Tolerances: celltrackR's reference values are written with 15 significant digits, and every
length, speed and ratio agrees to <= 5e-14 relative (rtol 1e-12 here). Angles are looser: an
angle whose cosine is within rounding of ±1 is ill-conditioned in ``acos`` (d angle = -d cos /
sin angle), and TCellsRaw track 128 has two exactly opposite steps, where celltrackR's rounding
gives pi - 3e-8 and deathtrack the exact pi: 5.4e-10 relative on that track's mean turning angle
(``motility_celltrackr.md``); rtol 1e-9 for angles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deathtrack import motility as m
from deathtrack.config import RecruitConfig
from deathtrack.recruit import recruitment_curves

ANGLES = {"mean_turning_angle", "overall_angle"}


def _rtol(name: str) -> float:
    return 1e-9 if name in ANGLES else 1e-12


def _merge(ours: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    ours = ours.assign(track_id=ours["track_id"].astype(str))
    return ref.add_prefix("ref_").merge(ours, left_on="ref_track_id", right_on="track_id")


@pytest.mark.parametrize("name", ["TCells", "BCells"])
def test_3d_motility_matches_celltrackr_3d_values(shared_data, name):
    folder = shared_data / "celltrackR_tracks"
    raw = m.read_tracks_csv(folder / f"{name}Raw.csv")
    assert "z_um" in raw
    ref = pd.read_csv(
        folder / "reference_stats_celltrackR" / f"{name}Raw_3D_per_track.csv",
        dtype={"track_id": str},
    )
    both = _merge(m.track_metrics(raw), ref)
    assert len(both) == len(ref) == raw["track_id"].nunique()
    assert (both["n_points"] == both["ref_n_points"]).all()
    for ours, theirs in [
        ("speed", "speed"),
        ("straightness", "straightness"),
        ("displacement", "displacement"),
        ("mean_turning_angle", "meanTurningAngle"),
    ]:
        np.testing.assert_allclose(both[ours], both[f"ref_{theirs}"], rtol=_rtol(ours))


def test_z_flattened_3d_tracks_give_celltrackr_2d_values_and_the_2d_code_bit_for_bit(shared_data):
    folder = shared_data / "celltrackR_tracks"
    raw = m.read_tracks_csv(folder / "TCellsRaw.csv")
    raw = raw.assign(track_id=raw["track_id"].astype(str))
    two_d = m.read_tracks_csv(folder / "TCells.csv")  # ids are text: split tracks are "210_1"
    # the 3D tracks whose rows, z dropped, are exactly the 2D data set's track
    rows = two_d.merge(raw, on=["track_id", "t_s"], suffixes=("", "_3d"), how="left")
    same_xy = ((rows.x_um == rows.x_um_3d) & (rows.y_um == rows.y_um_3d)).groupby(rows.track_id)
    n_2d = two_d.groupby("track_id").size()
    keep = same_xy.all() & (n_2d == raw.groupby("track_id").size().reindex(n_2d.index))
    assert keep.sum() == 191  # of 199 2D tracks; the others were cut by celltrackR's processing
    flat = raw[raw.track_id.isin(keep.index[keep])]
    ref = pd.read_csv(
        folder / "reference_stats_celltrackR" / "TCells_per_track.csv", dtype={"track_id": str}
    )
    both = _merge(m.track_metrics(flat.drop(columns="z_um")), ref)
    assert len(both) == 191
    for ours, theirs in m.CELLTRACKR_NAMES.items():
        r = "ref_n_points" if theirs == "nrow" else f"ref_{theirs}"
        np.testing.assert_allclose(both[ours], both[r], rtol=_rtol(ours), err_msg=ours)

    # the 3D code on z = one constant is the 2D code, bit for bit (asphericity excepted:
    # a flat track's third eigenvalue is 0, which 3D asphericity counts by definition)
    a = m.track_metrics(raw.assign(z_um=-6416.8))
    b = m.track_metrics(raw.drop(columns="z_um"))
    for c in a.columns.drop(["track_id", "asphericity"]):
        assert np.array_equal(a[c].to_numpy(float), b[c].to_numpy(float), equal_nan=True), c
    assert not np.allclose(a["asphericity"], b["asphericity"], equal_nan=True)
    for measure in ("square_displacement", "overall_angle", "overall_dot"):
        pd.testing.assert_frame_equal(
            m.aggregate_subtracks(raw.assign(z_um=0.0), measure, lags=range(1, 11)),
            m.aggregate_subtracks(raw.drop(columns="z_um"), measure, lags=range(1, 11)),
            check_exact=True,
        )
    # and the projection shortens the path: 3D speeds are never lower
    s3 = m.track_metrics(raw, metrics=["speed"])["speed"]
    assert (s3.to_numpy() >= b["speed"].to_numpy()).all()


def test_galeano_recruitment_in_3d_and_z_flattened(shared_data):
    """CTL tracks (~65 µm deep): 3D counts never exceed the projection's, and z set to one
    value without a volume is the 2D analysis bit for bit."""
    d = m.read_tracks_csv(
        shared_data / "ctl_swarming_tracks_galeano2020" / "positive_attraction_Position.csv.gz",
        time_unit_s=20.0,
    )
    d = d[d.frame <= 40].assign(frame=lambda x: x.frame.astype(int) - 1)
    cols = ["frame", "track_id", "y_um", "x_um", "z_um"]
    at = d[d.frame == 20]
    ev = at.iloc[np.random.default_rng(0).choice(len(at), 12, replace=False)][cols[1:]]
    ev = ev.assign(frame=20, event_id=np.arange(1, 13))
    cfg = RecruitConfig(pre_min=3, post_min=3, n_controls=10, control_min_distance_um=0)
    geom = dict(interval_s=20.0, pixel_size_um=1.0, shape_yx=(389, 389), n_frames=40)
    c3, _ = recruitment_curves(ev, d[cols], None, cfg, n_slices=66, z_step_um=1.0, **geom)
    flat = [t.drop(columns="z_um") for t in (ev, d[cols])]
    c2, _ = recruitment_curves(*flat, None, cfg, **geom)
    assert len(c3) == len(c2) == 12 * 19
    assert (c3.n_within_r <= c2.n_within_r).all()
    # the benchmark measures ~2× more cells within R in the projection of these fields
    assert c3.n_within_r.sum() < 0.75 * c2.n_within_r.sum()
    assert c3.uniform_within_r.mean() < 0.75 * c2.uniform_within_r.mean()
    cz, _ = recruitment_curves(ev.assign(z_um=12.5), d[cols].assign(z_um=12.5), None, cfg, **geom)
    pd.testing.assert_frame_equal(cz, c2, check_exact=True)
