"""Real 3D tracks in 3D µm: motility against celltrackR, recruitment against the z-flattened run.

Usage: python benchmarks/real_tracks_3d.py [--data ../shared/data] [--record]

(a) celltrackR's ``*Raw`` tracks (``celltrackR_tracks/``: intravital two-photon
    T cells, B cells, neutrophils; x, y, z in µm, 24 s frames). Three checks:
    - 3D: deathtrack's measures on the 3D tracks against the 3D per-track values
      celltrackR 1.2.2 itself computed (``reference_stats_celltrackR/*Raw_3D_per_track.csv``:
      ``speed``, ``straightness``, ``displacement``, ``meanTurningAngle``, ``n_points``; the
      only 3D values the data folder records);
    - z-flattened: the same 3D tracks with z dropped against celltrackR's 2D per-track
      values (``*_per_track.csv``, 13 measures), on the tracks whose 2D version (``TCells.csv``
      etc., the package's processed 2D data) holds exactly the 3D track's rows and x, y;
    - identity: the 3D code on tracks whose z is one constant gives bit for bit the 2D
      code's values, for every per-track measure and every subtrack aggregate except
      asphericity (a flat track is not round in 3D: its third axis is 0) and Hotelling's
      test (no variance along z); then 3D against flattened side by side.
(b) ``ctl_swarming_tracks_galeano2020``: 3D CTL tracks (Imaris, 20 s frames) alone in
    collagen ("no_attraction") or swarming ("positive_attraction"). No reference values
    (condition label only): motility 3D vs flattened side by side, and recruitment of CTLs
    to CTLs that arrest (the swarming question of Galeano Niño et al. 2020: do other CTLs
    come to a CTL that stopped, e.g. on a target?). An arrest is the first position of a
    track whose mean speed over the next 3 steps (1 min) is below 2 µm/min (the recruit
    config's arrest speed) after 3 steps at >= 4 µm/min. ``recruitment_curves`` counts CTL
    tracks within R = 30 µm of the arrest point from -5 to +10 min, in 3D (the field as a
    volume: the tracks' bounding box, 1 µm voxels) and z-flattened (z dropped: a 2D field);
    the arresting CTL itself is taken out of its own count. Chance level: 20 random places
    at the event's depth per event (3D) or in the field (2D), and the uniform level. The
    identity (z set to one value, no volume = 2D exactly) is checked on every table.

``--record`` writes ``benchmarks/results/real_tracks_3d.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from deathtrack import motility as m
from deathtrack.config import RecruitConfig
from deathtrack.recruit import recruitment_curves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from motility_celltrackr import rel_error
from real_recruitment import compare_groups

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("TCells", "BCells", "Neutrophils")
RAW_3D = {
    "n_points": "n_points",
    "speed": "speed",
    "straightness": "straightness",
    "displacement": "displacement",
    "mean_turning_angle": "meanTurningAngle",
}
GROUPS = {
    "no_attraction": "no attraction (CTLs alone)",
    "positive_attraction": "attraction (swarming)",
}
XYZ = ["x_um", "y_um", "z_um"]
ARREST_UM_PER_MIN = 2.0
MOVING_UM_PER_MIN = 4.0
ARREST_STEPS = 3
RADIUS_UM = 30.0
#: not flattening-invariant by definition (see the module docstring)
NOT_INVARIANT = {"asphericity"}


# -- (a) celltrackR ---------------------------------------------------------------------


def identical_tracks(flat: pd.DataFrame, two_d: pd.DataFrame) -> list[str]:
    """Track ids whose 2D rows are exactly the 3D track's rows with z dropped."""
    a = two_d.assign(track_id=two_d.track_id.astype(str))
    b = flat.assign(track_id=flat.track_id.astype(str))
    both = a.merge(b, on=["track_id", "t_s"], how="left", suffixes=("", "_3d"))
    same_rows = (both.x_um == both.x_um_3d) & (both.y_um == both.y_um_3d)
    n2, n3 = a.groupby("track_id").size(), b.groupby("track_id").size()
    ok = same_rows.groupby(both.track_id).all()
    return [k for k in ok.index[ok] if k in n3.index and n2[k] == n3[k]]


def bitwise_identity(tracks3d: pd.DataFrame) -> dict:
    """3D code on z = constant vs the 2D code on z dropped: which values are bit for bit equal."""
    flat = tracks3d.assign(z_um=float(tracks3d.z_um.iloc[0]))
    two = tracks3d.drop(columns="z_um")
    a, b = m.track_metrics(flat), m.track_metrics(two)
    equal, differ = [], {}
    for c in a.columns.drop("track_id"):
        x, y = a[c].to_numpy(float), b[c].to_numpy(float)
        if np.array_equal(x, y, equal_nan=True):
            equal.append(c)
        else:
            differ[c] = float(np.nanmax(np.abs(x - y)))
    agg_equal = [
        s
        for s in m.SUBTRACK_MEASURES
        if m.aggregate_subtracks(flat, s).equals(m.aggregate_subtracks(two, s))
    ]
    hot = m.hotellings_test(flat)["T2"], m.hotellings_test(two)["T2"]
    return {
        "equal": equal,
        "differ": differ,
        "agg_equal": agg_equal,
        "n_agg": len(m.SUBTRACK_MEASURES),
        "hotelling": hot,
    }


def side_by_side(tracks3d: pd.DataFrame, lags=(1, 5, 10)) -> dict:
    """Median per-track measures and the MSD in 3D and z-flattened."""
    out = {}
    for name, d in (("3D", tracks3d), ("2D", tracks3d.drop(columns="z_um"))):
        t = m.track_metrics(d, metrics=["speed", "straightness", "mean_turning_angle"])
        msd = m.msd(d, lags=lags).set_index("lag")["mean"]
        out[name] = {
            "median speed (µm/min)": float(t.speed.median() * 60),
            "median straightness": float(t.straightness.median()),
            "mean turning angle (°)": float(np.degrees(t.mean_turning_angle.mean())),
            **{f"MSD lag {i} (µm²)": float(msd[i]) for i in lags},
        }
    return out


def celltrackr(folder: Path) -> dict:
    ref_dir = folder / "reference_stats_celltrackR"
    res = {}
    for name in DATASETS:
        t0 = time.perf_counter()
        raw = m.read_tracks_csv(folder / f"{name}Raw.csv")
        two_d = m.read_tracks_csv(folder / f"{name}.csv")
        ours3 = m.track_metrics(raw).assign(track_id=lambda d: d.track_id.astype(str))
        ref3 = pd.read_csv(ref_dir / f"{name}Raw_3D_per_track.csv", dtype={"track_id": str})
        both3 = ref3.add_prefix("ref_").merge(ours3, left_on="ref_track_id", right_on="track_id")
        rows3 = []
        for ours_name, r_name in RAW_3D.items():
            err, n, nan = rel_error(both3[ours_name], both3[f"ref_{r_name}"])
            rows3.append((ours_name, r_name, err, n, nan))

        same = identical_tracks(raw, two_d)
        flat = raw.drop(columns="z_um")
        flat = flat[flat.track_id.astype(str).isin(same)]
        ours2 = m.track_metrics(flat).assign(track_id=lambda d: d.track_id.astype(str))
        ref2 = pd.read_csv(ref_dir / f"{name}_per_track.csv", dtype={"track_id": str})
        both2 = ref2.add_prefix("ref_").merge(ours2, left_on="ref_track_id", right_on="track_id")
        rows2 = []
        for ours_name, r_name in m.CELLTRACKR_NAMES.items():
            r_col = "ref_n_points" if r_name == "nrow" else f"ref_{r_name}"
            err, n, nan = rel_error(both2[ours_name], both2[r_col])
            rows2.append((ours_name, r_name, err, n, nan))
        res[name] = {
            "n_3d": len(ref3),
            "matched_3d": len(both3),
            "n_2d": two_d.track_id.nunique(),
            "identical": len(same),
            "matched_flat": len(both2),
            "rows3": pd.DataFrame(rows3, columns=["measure", "celltrackR", "err", "n", "nan"]),
            "rows2": pd.DataFrame(rows2, columns=["measure", "celltrackR", "err", "n", "nan"]),
            "identity": bitwise_identity(raw),
            "side": side_by_side(raw),
            "seconds": time.perf_counter() - t0,
        }
    return res


# -- (b) Galeano 2020 -------------------------------------------------------------------


def read_galeano(folder: Path, group: str) -> pd.DataFrame:
    d = m.read_tracks_csv(folder / f"{group}_Position.csv.gz", time_unit_s=20.0)
    d["frame"] = d["frame"].astype(int) - 1  # TimePointID 1..180 -> frames 0..179
    return d.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)


def arrests(d: pd.DataFrame) -> pd.DataFrame:
    """The first arrest of each track: ``event_id, track_id, frame, y_um, x_um, z_um``."""
    steps = m.step_speeds(d, coord_cols=XYZ)  # rows in d's order: sorted by track and time
    v = steps["speed"].to_numpy() * 60.0
    k = ARREST_STEPS
    rows = []
    for tid, idx in steps.groupby("track_id", sort=False).indices.items():
        s = v[idx]
        if len(s) < 2 * k:
            continue
        before = np.convolve(s, np.ones(k) / k, "valid")  # before[j] = mean of s[j : j + k]
        i = np.arange(k, len(s) - k + 1)  # position i: k steps before it, k steps after it
        hit = i[(before[i - k] >= MOVING_UM_PER_MIN) & (before[i] < ARREST_UM_PER_MIN)]
        if len(hit):
            rows.append((tid, int(hit[0])))
    starts = d.groupby("track_id", sort=False).indices
    ev = pd.DataFrame(
        [d.iloc[starts[tid][i]][["track_id", "frame", "y_um", "x_um", "z_um"]] for tid, i in rows]
    ).reset_index(drop=True)
    ev["frame"] = ev["frame"].astype(int)
    ev.insert(0, "event_id", np.arange(1, len(ev) + 1))
    return ev


def others_curves(ev, d, volume: dict | None, cfg, geom) -> pd.DataFrame:
    """Recruitment curves with the arresting CTL taken out of its own count."""
    cols = ["frame", "track_id", "y_um", "x_um"] + (["z_um"] if volume is not None else [])
    evc = ev[["event_id", "track_id", "frame", "y_um", "x_um", *cols[4:]]]
    curves, _ = recruitment_curves(evc, d[cols], None, cfg, **geom, **(volume or {}))
    # the event's own track at each curve frame: within R of its arrest point?
    at_event = evc.rename(columns={c: f"{c}_ev" for c in evc.columns[2:]})
    own = (
        curves[["event_id", "frame"]]
        .merge(at_event, on="event_id", how="left")
        .merge(d[cols], on=["track_id", "frame"], how="left")
    )
    dist = np.hypot(own.y_um - own.y_um_ev, own.x_um - own.x_um_ev)
    if volume is not None:
        dist = np.hypot(dist, own.z_um - own.z_um_ev)
    curves["n_self"] = (dist <= cfg.radius_um).astype(int).to_numpy()
    curves["n_others"] = curves["n_within_r"] - curves["n_self"]
    return curves


def per_event(curves: pd.DataFrame) -> pd.DataFrame:
    g = curves.groupby("event_id")
    post = curves[curves.dt >= 0].groupby("event_id")
    pre = curves[curves.dt < 0].groupby("event_id")
    out = pd.DataFrame(
        {
            "others_pre": pre["n_others"].mean(),
            "others_post": post["n_others"].mean(),
            "expected_post": post["expected_within_r"].mean(),
            "uniform_post": post["uniform_within_r"].mean(),
            "frames": g.size(),
        }
    )
    out["index"] = out.others_post / out.expected_post
    return out


def galeano(folder: Path, n_boot: int) -> dict:
    cfg = RecruitConfig(radius_um=RADIUS_UM, pre_min=5, post_min=10, control_min_distance_um=0)
    res = {"motility": {}, "recruit": {}, "per_event": {}, "identity": {}}
    for group in GROUPS:
        d = read_galeano(folder, group)
        res["motility"][group] = side_by_side(d)
        res["identity"].setdefault("motility", {})[group] = bitwise_identity(d)
        ev = arrests(d)
        lo = d[["y_um", "x_um", "z_um"]].min()
        hi = d[["y_um", "x_um", "z_um"]].max()
        if (lo < -0.5).any():
            raise SystemExit(f"{group}: negative positions {lo.to_dict()}; shift the field")
        shape_yx = (int(math.ceil(hi.y_um + 0.5)), int(math.ceil(hi.x_um + 0.5)))
        volume = {"n_slices": int(math.ceil(hi.z_um + 0.5)), "z_step_um": 1.0}
        geom = dict(interval_s=20.0, pixel_size_um=1.0, shape_yx=shape_yx, n_frames=180)
        t0 = time.perf_counter()
        c3 = others_curves(ev, d, volume, cfg, geom)
        t3 = time.perf_counter() - t0
        t0 = time.perf_counter()
        c2 = others_curves(ev, d.drop(columns="z_um"), None, cfg, geom)
        t2 = time.perf_counter() - t0
        # identity: z set to one value, without a volume, is the 2D run bit for bit
        cf, _ = recruitment_curves(ev.assign(z_um=0.0), d.assign(z_um=0.0), None, cfg, **geom)
        same = cf.equals(c2.drop(columns=["n_self", "n_others"]))
        res["identity"].setdefault("recruit", {})[group] = same
        p3, p2 = per_event(c3), per_event(c2)
        res["per_event"][group] = {"3D": p3, "2D": p2}
        res["recruit"][group] = {
            "events": len(ev),
            "tracks": d.track_id.nunique(),
            "field": f"{shape_yx[1]} × {shape_yx[0]} × {volume['n_slices']} µm",
            "seconds": {"3D": t3, "2D": t2},
            "3D_le_2D": bool((c3.n_others.to_numpy() <= c2.n_others.to_numpy()).all()),
            "frac_event_frames_fewer": float((c3.n_others < c2.n_others).mean()),
        }
    rng = np.random.default_rng(0)
    res["compare"] = {
        dim: compare_groups(
            res["per_event"]["positive_attraction"][dim]["index"],
            res["per_event"]["no_attraction"][dim]["index"],
            n_boot=n_boot,
            rng=rng,
        )
        for dim in ("3D", "2D")
    }
    return res


# -- report -----------------------------------------------------------------------------


def machine() -> str:
    import scipy

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"scipy {scipy.__version__}; deathtrack at commit {commit}"
    )


def fmt_err(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}"


def report(ctr: dict, gal: dict, args) -> str:
    # (a) agreement with celltrackR
    rows = []
    for name, r in ctr.items():
        e3, e2 = r["rows3"], r["rows2"]
        rows.append(
            {
                "data": f"{name}Raw",
                "3D tracks (matched)": f"{r['matched_3d']} / {r['n_3d']}",
                "3D vs celltrackR 3D: max rel. err": fmt_err(e3.err.max()),
                "values": int(e3.n.sum()),
                "NaN differ": int(e3.nan.sum()),
                "flattened tracks = 2D tracks": f"{r['identical']} of {r['n_2d']}",
                "flattened vs celltrackR 2D: max rel. err": fmt_err(e2.err.max()),
                "values ": int(e2.n.sum()),
                "NaN differ ": int(e2.nan.sum()),
            }
        )
    agree = pd.DataFrame(rows).to_markdown(index=False)
    per3 = pd.concat([r["rows3"].assign(data=f"{n}Raw") for n, r in ctr.items()], ignore_index=True)
    per3["err"] = per3["err"].map(fmt_err)
    per3 = per3.pivot(index=["measure", "celltrackR"], columns="data", values="err").reset_index()
    per2 = pd.concat(
        [r["rows2"].assign(data=f"{n}Raw, z dropped") for n, r in ctr.items()], ignore_index=True
    )
    per2["err"] = per2["err"].map(fmt_err)
    per2 = per2.pivot(index=["measure", "celltrackR"], columns="data", values="err").reset_index()

    ident_rows = []
    sets = {f"{n}Raw": r["identity"] for n, r in ctr.items()}
    sets |= {f"Galeano {g}": v for g, v in gal["identity"]["motility"].items()}
    for name, ident in sets.items():
        ident_rows.append(
            {
                "tracks": name,
                "per-track measures bit for bit equal": f"{len(ident['equal'])} of "
                f"{len(ident['equal']) + len(ident['differ'])}",
                "differ (max abs diff)": ", ".join(
                    f"{k} ({v:.3g})" for k, v in ident["differ"].items()
                )
                or "none",
                "subtrack aggregates equal": f"{len(ident['agg_equal'])} of {ident['n_agg']}",
                "Hotelling T² (z const / z dropped)": f"{ident['hotelling'][0]:.3g} / "
                f"{ident['hotelling'][1]:.3g}",
            }
        )
    ident_md = pd.DataFrame(ident_rows).to_markdown(index=False)

    def side_md(sides: dict) -> str:
        rows = []
        for name, s in sides.items():
            for q in s["3D"]:
                a, b = s["3D"][q], s["2D"][q]
                rows.append(
                    {"tracks": name, "measure": q, "3D": a, "z-flattened": b, "flat / 3D": b / a}
                )
        return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")

    side_ctr = side_md({f"{n}Raw": r["side"] for n, r in ctr.items()})
    side_gal = side_md({GROUPS[g]: s for g, s in gal["motility"].items()})

    # (b) recruitment
    rec_rows = []
    for g, label in GROUPS.items():
        info = gal["recruit"][g]
        for dim in ("3D", "2D"):
            p = gal["per_event"][g][dim]
            rec_rows.append(
                {
                    "group": label,
                    "analysis": "3D (ball, volume)" if dim == "3D" else "z-flattened (disc)",
                    "arrests": info["events"],
                    "other CTLs within R, before": p.others_pre.mean(),
                    "after": p.others_post.mean(),
                    "chance (random places)": p.expected_post.mean(),
                    "chance (uniform)": p.uniform_post.mean(),
                    "index (after / chance), median": p["index"].median(),
                    "time (s)": info["seconds"][dim],
                }
            )
    rec_md = pd.DataFrame(rec_rows).to_markdown(index=False, floatfmt=".3f")
    ratio_rows = []
    for g, label in GROUPS.items():
        p3, p2 = gal["per_event"][g]["3D"], gal["per_event"][g]["2D"]
        info = gal["recruit"][g]
        ratio_rows.append(
            {
                "group": label,
                "field (x × y × z)": info["field"],
                "flattened / 3D: others after": p2.others_post.mean() / p3.others_post.mean(),
                "chance": p2.expected_post.mean() / p3.expected_post.mean(),
                "share of event-frames where 3D counts fewer": info["frac_event_frames_fewer"],
                "3D <= flattened everywhere": info["3D_le_2D"],
                "z := 0 (no volume) = 2D, bit for bit": gal["identity"]["recruit"][g],
            }
        )
    ratio_md = pd.DataFrame(ratio_rows).to_markdown(index=False, floatfmt=".3f")
    cmp_rows = [
        {"analysis": dim, **{k: v for k, v in c.items()}} for dim, c in gal["compare"].items()
    ]
    cmp_md = pd.DataFrame(cmp_rows).to_markdown(index=False, floatfmt=".3f")

    depth = " and ".join(
        sorted({gal["recruit"][g]["field"].split(" × ")[2].split()[0] for g in GROUPS})
    )
    inflate = np.mean([r["flattened / 3D: others after"] for r in ratio_rows])
    chance = np.mean([r["chance"] for r in ratio_rows])
    idx3, idx2 = (
        " / ".join(f"{gal['per_event'][g][dim]['index'].median():.2f}" for g in GROUPS)
        for dim in ("3D", "2D")
    )
    tc = ctr["TCells"]["side"]
    speed_ratio = tc["2D"]["median speed (µm/min)"] / tc["3D"]["median speed (µm/min)"]
    return f"""# Real 3D tracks: motility and recruitment in 3D µm

Command: `.venv/bin/python benchmarks/real_tracks_3d.py --record` (bootstrap {args.n_boot}
resamples, seed 0).
Machine: {machine()}.

What is compared with what, and where the reference values come from:

- celltrackR's `*Raw` tracks (`../shared/data/celltrackR_tracks/`, intravital two-photon T cells,
  B cells and neutrophils, x, y, z in µm, 24 s frames; the 3D originals of the package's 2D
  `TCells`, `BCells`, `Neutrophils` data). **Reference values**: the numbers celltrackR 1.2.2
  itself computed on them, recorded by the data's curator in
  `reference_stats_celltrackR/`: `*Raw_3D_per_track.csv` (3D `speed`, `straightness`,
  `displacement`, `meanTurningAngle` and the number of points per track: the only 3D values the
  folder records; it has no 3D MSD, turning angle against lag or asphericity) and
  `*_per_track.csv` (13 per-track measures of the 2D tracks).
- `ctl_swarming_tracks_galeano2020`: 3D CTL tracks (Imaris, µm, 20 s frames). No reference
  values: only the condition label. Numbers here are 3D against z-flattened, side by side.

Relative error = |ours - celltrackR| / |celltrackR|; "NaN differ" = values NaN on one side only.

## (a) Motility against celltrackR, in 3D and z-flattened

{agree}

"flattened tracks = 2D tracks": the 3D tracks whose rows, with z dropped, are exactly the 2D
data set's track of the same id (same times, same x and y); the others were cut or cleaned by
celltrackR's processing and have no 2D reference. On those tracks the z-flattened 3D data give
celltrackR's 2D values, and the 3D data celltrackR's 3D values.

3D measures against `*Raw_3D_per_track.csv` (max relative error per measure):

{per3.to_markdown(index=False)}

z-flattened against the 2D `*_per_track.csv` (every measure celltrackR recorded):

{per2.to_markdown(index=False)}

The worst values (~1e-10) are the angles whose cosine is within rounding of ±1 (an acos that
is ill-conditioned there, explained in `motility_celltrackr.md`); all others agree to ~1e-14.

### The z-flattened identity (3D code, z one constant, against the 2D code)

{ident_md}

Bit for bit: every per-track measure but asphericity, and every subtrack aggregate (MSD,
displacement, track length, duration, speed, straightness, turning angle and autocovariance
against lag). Asphericity is not flattening-invariant by definition (celltrackR's formula over
the d eigenvalues of the positions' covariance: a flat, round track has asphericity 0 in 2D but
0.25 in 3D, where its third eigenvalue is 0); Hotelling's test needs variance along every axis
(NaN with z constant).

### 3D against z-flattened, side by side

{side_ctr}

A projection shortens every step: for isotropic motion the projected speed is π/4 = 0.785 of the
3D speed and the projected MSD 2/3 of it. Here T cells keep {speed_ratio:.3f} of their speed in
the projection.

## (b) Galeano 2020 CTL tracks

Motility, 3D against z-flattened (no reference values in the data folder):

{side_gal}

### Recruitment of CTLs to arrested CTLs, 3D against z-flattened

{rec_md}

{ratio_md}

Attraction against none, per-arrest recruitment index (two-sided Mann-Whitney U; Cliff's delta
with a percentile bootstrap 95 % CI):

{cmp_md}

Reading: in these {depth} µm-deep fields a z-flattened analysis counts
{inflate:.1f}× as many other CTLs within R of an arrest as the 3D analysis (cells above and
below the arrest point count in the projection), and its chance level rises by about as much
({chance:.1f}×). The counts are what a projection gets wrong; the index (observed over chance)
moves toward 1 in the projection (medians {idx3} in 3D, {idx2} flattened; no attraction /
attraction): unrelated cells at
other depths dilute whatever local depletion or excess there is. In 3D no count exceeds the
flattened one (a 3D distance is never shorter than its projection), and setting z to one value
without a volume reproduces the 2D tables exactly. On these tracks arrested CTLs do not gather
other CTLs within 10 min beyond chance in either analysis, with or without attraction. Caveats:
the arrests are our definition (speed dropping below 2 µm/min after moving at >= 4 µm/min), not
the authors'; the field is the tracks' bounding box, not the recorded image volume; tracks of one
movie are not independent, so the p-values are optimistic.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    ctr = celltrackr(args.data / "celltrackR_tracks")
    gal = galeano(args.data / "ctl_swarming_tracks_galeano2020", args.n_boot)
    text = report(ctr, gal, args)
    print(text)
    if args.record:
        out = REPO / "benchmarks" / "results" / "real_tracks_3d.md"
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
