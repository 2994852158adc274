"""Motility measures of cell tracks, defined as celltrackR defines them.

Every measure is one small function, track in, number out, composed from the
others as in celltrackR (Wortel et al. 2021): ``speed = track_length /
duration``, ``straightness = displacement / track_length`` and so on. The
same definitions run vectorised over a whole table of tracks in
:func:`track_metrics`, and over all subtracks of each length in
:func:`aggregate_subtracks` (mean square displacement, turning angle and
autocovariance against lag). They reproduce celltrackR 1.2.2 on its own
T cell, B cell and neutrophil data to ~1e-14 relative, angles whose cosine
is within rounding of ±1 to 1e-9 (``benchmarks/motility_celltrackr.py``).

A *track* is a ``(N, 1 + D)`` array whose first column is time and whose
other ``D`` columns (2 or 3) are positions, or a DataFrame with ``t_s`` (or
``t``) and ``x_um, y_um[, z_um]`` (or ``x, y[, z]``) columns. A table of
tracks (``tracks_df``) has one row per position and a track id column.

**3D.** Every measure is defined for 2 or 3 coordinates and used with all
of them: a table with ``z_um`` is measured in 3D µm (celltrackR's 3D values
reproduced on its ``*Raw`` tracks, ``benchmarks/real_tracks_3d.py``). A
z-flattened table (``z_um`` one constant) gives bit for bit the values of the
same table without ``z_um``, except two that are not flattening-invariant by
definition: :func:`asphericity` (a flat, round track has 0 in 2D and 0.25 in
3D, where its third eigenvalue is 0) and :func:`hotellings_test` (no
variance along z: NaN). A projection shortens steps: expect lower speeds,
MSDs and turning angles from a z-projection of 3D motion (π/4 of the speed,
2/3 of the MSD for isotropic motion).

Units: positions in µm and times in s, so lengths are in µm, durations in s,
speeds in µm/s (celltrackR's units for these data), angles in **radians**
(celltrackR's default, ``degrees=FALSE``). Thresholds given per minute (the
arrest speed, 2 µm/min) are divided by 60 internally.

Edge cases, for every measure (tested): an empty track gives NaN; a
one-point track has duration, length, displacement and maximum displacement
0 (nothing happened) and NaN for every ratio, angle and speed (undefined); a
track that never moves (all positions equal, ``N >= 2``) has speed 0, arrest
coefficient 1, and NaN straightness, outreach ratio, displacement ratio,
turning angles and asphericity -- celltrackR's documentation: "If the track
has trackLength 0, then NaN is returned". An angle with a zero-length step on
either side is undefined (NaN); :func:`mean_turning_angle` and
:func:`aggregate_subtracks` average the defined ones (celltrackR's real data
have no zero-length step, so this choice is not covered by its reference).

Subtracks are counted in *steps* (rows), as in celltrackR: with a missing
frame a "lag 1" subtrack spans two frame intervals. Check the time steps
(``step_speeds(...)["duration"]``) before reading lags as times.

Also here: :func:`read_tracks_csv` reads tracks made by other tools
(TrackMate, Imaris, celltrackR, trackpy), and :func:`approach_metrics` /
:func:`approach_table` measure how cells approach a point (a dying cell, a
wound) or move along a direction (a gradient).

Examples
--------
>>> import numpy as np
>>> track = np.array([[0.0, 0.0, 0.0], [60.0, 3.0, 4.0], [120.0, 3.0, 10.0]])
>>> track_length(track), displacement(track)
(11.0, 10.44030650891055)
>>> round(speed(track), 6), round(straightness(track), 6)
(0.091667, 0.949119)
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from . import columns as col
from .errors import CalibrationError, StackNotFoundError, StackReadError

logger = logging.getLogger(__name__)

#: One track: an (N, 1 + D) array of time and positions, or a DataFrame.
TrackLike = ArrayLike | pd.DataFrame

__all__ = [
    "APPROACH_COLUMNS",
    "CELLTRACKR_NAMES",
    "METRICS",
    "SUBTRACK_MEASURES",
    "TrackLike",
    "aggregate_subtracks",
    "approach_metrics",
    "approach_table",
    "arrest_coefficient",
    "asphericity",
    "displacement",
    "displacement_ratio",
    "duration",
    "hotellings_test",
    "max_displacement",
    "mean_turning_angle",
    "msd",
    "n_points",
    "outreach_ratio",
    "overall_angle",
    "overall_dot",
    "read_tracks_csv",
    "speed",
    "square_displacement",
    "step_speeds",
    "straightness",
    "track_length",
    "track_metrics",
]

#: Default speed below which a cell counts as arrested (µm/min).
ARREST_SPEED_UM_PER_MIN = 2.0

#: Our measure names -> celltrackR 1.2.2 function names.
CELLTRACKR_NAMES = {
    "n_points": "nrow",
    "duration": "duration",
    "track_length": "trackLength",
    "displacement": "displacement",
    "square_displacement": "squareDisplacement",
    "max_displacement": "maxDisplacement",
    "speed": "speed",
    "straightness": "straightness",
    "displacement_ratio": "displacementRatio",
    "outreach_ratio": "outreachRatio",
    "mean_turning_angle": "meanTurningAngle",
    "overall_angle": "overallAngle",
    "overall_dot": "overallDot",
    "asphericity": "asphericity",
}

# =============================================================================
# tracks packed into flat arrays


class _Tracks:
    """K tracks packed into flat arrays, rows sorted by track then time.

    ``owner[i]`` is the track (0..K-1) of row ``i``; track ``k`` occupies rows
    ``start[k] : start[k] + n[k]``. Step ``s`` goes from row ``step_row[s]`` to
    the next row of the same track. Measures computed once are cached.
    """

    def __init__(self, t: np.ndarray, xyz: np.ndarray, owner: np.ndarray, k: int):
        self.t = t
        self.xyz = xyz
        self.owner = owner
        self.k = k
        self.n = np.bincount(owner, minlength=k)
        self.start = np.concatenate(([0], np.cumsum(self.n)[:-1])).astype(np.intp)
        self.has = self.n > 0
        self.last = np.where(self.has, self.start + self.n - 1, 0)
        same = owner[1:] == owner[:-1]
        self.step_row = np.flatnonzero(same)
        self.step_owner = owner[self.step_row]
        self.dx = xyz[self.step_row + 1] - xyz[self.step_row]
        self.dt = t[self.step_row + 1] - t[self.step_row]
        self.step_length = np.sqrt(np.einsum("ij,ij->i", self.dx, self.dx))
        self.n_steps = np.bincount(self.step_owner, minlength=k)
        self.first_step = np.concatenate(([0], np.cumsum(self.n_steps)[:-1])).astype(np.intp)
        self.last_step = np.where(self.n_steps > 0, self.first_step + self.n_steps - 1, 0)
        self.cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.xyz.shape[1]

    def per_track(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``values`` (one per track) where ``valid``, NaN elsewhere."""
        out = np.full(self.k, np.nan)
        out[valid] = values[valid]
        return out


def _cached(fn: Callable[[_Tracks], np.ndarray]) -> Callable[[_Tracks], np.ndarray]:
    @functools.wraps(fn)
    def wrapper(tr: _Tracks) -> np.ndarray:
        if fn.__name__ not in tr.cache:
            tr.cache[fn.__name__] = fn(tr)
        return tr.cache[fn.__name__]

    return wrapper


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b``, NaN where ``b`` is 0 or either is NaN, without warnings."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=(b != 0) & np.isfinite(b) & np.isfinite(a))
    return out


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) between the rows of ``a`` and ``b``; NaN if either has length 0.

    ``cos = a·b / sqrt(|a|² |b|²)``: a vector with itself gives exactly 0.
    """
    dot = np.einsum("ij,ij->i", a, b)
    norm = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    c = _div(dot, norm)
    ok = np.isfinite(c)
    out = np.full(c.shape, np.nan)
    out[ok] = np.arccos(np.clip(c[ok], -1.0, 1.0))
    return out


def _group_mean(values: np.ndarray, owner: np.ndarray, k: int) -> np.ndarray:
    """Mean of the finite ``values`` of each group; NaN for groups without any."""
    ok = np.isfinite(values)
    s = np.bincount(owner[ok], weights=values[ok], minlength=k)
    c = np.bincount(owner[ok], minlength=k)
    return _div(s, c)


# =============================================================================
# building packed tracks from arrays and tables


def _numeric(df: pd.DataFrame, name: str, what: str) -> np.ndarray:
    s = df[name]
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
        converted = pd.to_numeric(s, errors="coerce")
        bad = converted.isna() & s.notna()
        if bad.any():
            raise ValueError(
                f"{what} column {name!r} must be numeric; row {_plain(s.index[bad][0])!r} holds "
                f"{s[bad].iloc[0]!r}"
            )
        s = converted
    return s.to_numpy(dtype=float, na_value=np.nan)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _pack(
    t: np.ndarray, xyz: np.ndarray, codes: np.ndarray, k: int, ids: Sequence[Any] | None
) -> _Tracks:
    order = np.lexsort((t, codes))
    t, xyz, codes = t[order], xyz[order], codes[order]
    dup = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        which = f"track {_plain(ids[codes[i]])!r}" if ids is not None else "the track"
        raise ValueError(
            f"{which} has two positions at t = {t[i]:g}; a track must be one path "
            "(split tracks with branches, merges or duplicated spots first)"
        )
    return _Tracks(t, xyz, codes, k)


def _one_track(track: TrackLike) -> _Tracks:
    """Pack one track given as an ``(N, 1 + D)`` array or a DataFrame."""
    if isinstance(track, pd.DataFrame):
        t_name = next((c for c in (col.T_S, "t") if c in track.columns), None)
        coords = [c for c in (col.X_UM, col.Y_UM, col.Z_UM) if c in track.columns]
        if len(coords) < 2:
            coords = [c for c in ("x", "y", "z") if c in track.columns]
        if t_name is None or len(coords) < 2:
            raise ValueError(
                f"a track DataFrame needs a time column ('{col.T_S}' or 't') and x, y[, z] "
                f"columns ('x_um', 'y_um'[, 'z_um'] or 'x', 'y'[, 'z']); it has "
                f"{list(track.columns)}. Pass df[[TIME, X, Y]].to_numpy() instead"
            )
        arr = np.column_stack(
            [_numeric(track, t_name, "time")] + [_numeric(track, c, "position") for c in coords]
        )
    else:
        arr = np.asarray(track, dtype=float)
        if arr.size == 0 and arr.ndim < 2:
            arr = arr.reshape(0, 3)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise ValueError(
                f"a track must be an (N, 1 + D) array of time and D coordinates, "
                f"got shape {arr.shape}"
            )
    n = arr.shape[0]
    return _pack(arr[:, 0], arr[:, 1:], np.zeros(n, dtype=np.intp), 1, None)


def _coord_cols(df: pd.DataFrame, coord_cols: Sequence[str] | None) -> list[str]:
    if coord_cols is not None:
        cols = [coord_cols] if isinstance(coord_cols, str) else list(coord_cols)
        missing = [c for c in cols if c not in df.columns]
        if missing or not cols:
            raise ValueError(
                f"coord_cols {cols} not in the table (missing {missing}); "
                f"columns are {list(df.columns)}"
            )
        return cols
    cols = [c for c in (col.Z_UM, col.Y_UM, col.X_UM) if c in df.columns]
    if col.Y_UM not in cols or col.X_UM not in cols:
        raise ValueError(
            f"the tracks table has no '{col.Y_UM}', '{col.X_UM}' columns (columns are "
            f"{list(df.columns)}); pass coord_cols=('x', 'y'[, 'z']) naming the positions in µm"
        )
    return cols


def _table(
    tracks_df: pd.DataFrame, id_col: str, t_col: str, coord_cols: Sequence[str] | None
) -> tuple[_Tracks, pd.Index, list[str]]:
    """Pack a table of tracks; returns the packed tracks, the ids and the coordinate columns."""
    if not isinstance(tracks_df, pd.DataFrame):
        raise TypeError(f"tracks_df must be a pandas DataFrame, got {type(tracks_df).__name__}")
    for name, what in ((id_col, "id_col"), (t_col, "t_col")):
        if name not in tracks_df.columns:
            raise ValueError(
                f"{what}={name!r} is not a column of the tracks table; columns are "
                f"{list(tracks_df.columns)}"
            )
    cols = _coord_cols(tracks_df, coord_cols)
    codes, ids = pd.factorize(tracks_df[id_col], sort=False)
    if (codes < 0).any():
        row = tracks_df.index[codes < 0][0]
        raise ValueError(
            f"id_col={id_col!r} is missing in row {_plain(row)!r}; every row needs a track id"
        )
    t = _numeric(tracks_df, t_col, "time")
    xyz = np.column_stack([_numeric(tracks_df, c, "position") for c in cols])
    return _pack(t, xyz, codes.astype(np.intp), len(ids), ids), pd.Index(ids), cols


# =============================================================================
# per-track measures, vectorised over packed tracks


@_cached
def _n_points(tr: _Tracks) -> np.ndarray:
    return tr.n.astype(float)


@_cached
def _duration(tr: _Tracks) -> np.ndarray:
    out = np.full(tr.k, np.nan)
    out[tr.has] = tr.t[tr.last[tr.has]] - tr.t[tr.start[tr.has]]
    return out


@_cached
def _track_length(tr: _Tracks) -> np.ndarray:
    s = np.bincount(tr.step_owner, weights=tr.step_length, minlength=tr.k)
    return tr.per_track(s, tr.has)


@_cached
def _displacement_vector(tr: _Tracks) -> np.ndarray:
    out = np.full((tr.k, tr.dim), np.nan)
    out[tr.has] = tr.xyz[tr.last[tr.has]] - tr.xyz[tr.start[tr.has]]
    return out


@_cached
def _square_displacement(tr: _Tracks) -> np.ndarray:
    v = _displacement_vector(tr)
    return np.einsum("ij,ij->i", v, v)


@_cached
def _displacement(tr: _Tracks) -> np.ndarray:
    return np.sqrt(_square_displacement(tr))


@_cached
def _max_displacement(tr: _Tracks) -> np.ndarray:
    if not tr.has.any():
        return np.full(tr.k, np.nan)
    rel = tr.xyz - tr.xyz[tr.start[tr.owner]]
    dist = np.sqrt(np.einsum("ij,ij->i", rel, rel))
    out = np.full(tr.k, np.nan)
    out[tr.has] = np.maximum.reduceat(dist, tr.start[tr.has])
    return out


@_cached
def _speed(tr: _Tracks) -> np.ndarray:
    return _div(_track_length(tr), _duration(tr))


@_cached
def _straightness(tr: _Tracks) -> np.ndarray:
    return _div(_displacement(tr), _track_length(tr))


@_cached
def _displacement_ratio(tr: _Tracks) -> np.ndarray:
    return _div(_displacement(tr), _max_displacement(tr))


@_cached
def _outreach_ratio(tr: _Tracks) -> np.ndarray:
    return _div(_max_displacement(tr), _track_length(tr))


@_cached
def _mean_turning_angle(tr: _Tracks) -> np.ndarray:
    pair = np.flatnonzero(tr.step_owner[1:] == tr.step_owner[:-1])
    angles = _angle(tr.dx[pair], tr.dx[pair + 1])
    return _group_mean(angles, tr.step_owner[pair], tr.k)


@_cached
def _overall_angle(tr: _Tracks) -> np.ndarray:
    ok = tr.n_steps > 0
    a = _angle(tr.dx[tr.first_step[ok]], tr.dx[tr.last_step[ok]]) if ok.any() else []
    out = np.full(tr.k, np.nan)
    out[ok] = a
    return out


@_cached
def _overall_dot(tr: _Tracks) -> np.ndarray:
    ok = tr.n_steps > 0
    out = np.full(tr.k, np.nan)
    if ok.any():
        out[ok] = np.einsum("ij,ij->i", tr.dx[tr.first_step[ok]], tr.dx[tr.last_step[ok]])
    return out


@_cached
def _asphericity(tr: _Tracks) -> np.ndarray:
    ok = tr.n >= 2
    out = np.full(tr.k, np.nan)
    if not ok.any():
        return out
    d, o, k = tr.dim, tr.owner, tr.k
    n = np.maximum(tr.n, 1).astype(float)
    mean = np.column_stack([np.bincount(o, weights=tr.xyz[:, j], minlength=k) for j in range(d)])
    mean /= n[:, None]
    c = tr.xyz - mean[o]
    cov = np.empty((k, d, d))
    for i in range(d):
        for j in range(i, d):
            cov[:, i, j] = cov[:, j, i] = np.bincount(o, weights=c[:, i] * c[:, j], minlength=k)
    cov /= n[:, None, None]
    ok &= np.isfinite(cov).all(axis=(1, 2))
    if not ok.any():
        return out
    ev = np.linalg.eigvalsh(cov[ok])
    diff2 = sum((ev[:, i] - ev[:, j]) ** 2 for i in range(d) for j in range(i + 1, d))
    out[ok] = _div(diff2, (d - 1) * ev.sum(axis=1) ** 2) if d > 1 else np.nan
    return out


def _arrest_coefficient(
    tr: _Tracks, threshold_um_per_min: float = ARREST_SPEED_UM_PER_MIN
) -> np.ndarray:
    v = _div(tr.step_length, tr.dt)
    slow = np.where(np.isfinite(v), (v < threshold_um_per_min / 60.0).astype(float), np.nan)
    return _group_mean(slow, tr.step_owner, tr.k)


# =============================================================================
# the public one-track functions: track in, number out


def _scalar(batch: Callable[[_Tracks], np.ndarray], track: TrackLike) -> float:
    return float(batch(_one_track(track))[0])


def n_points(track: TrackLike) -> float:
    """Number of positions of the track (celltrackR: ``nrow``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        ``N`` (0 for an empty track).
    """
    return _scalar(_n_points, track)


def duration(track: TrackLike) -> float:
    """Time between the first and the last position (celltrackR ``duration``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Duration in s; 0 for a one-point track, NaN for an empty one.
    """
    return _scalar(_duration, track)


def track_length(track: TrackLike) -> float:
    """Path length: the sum of the step lengths (celltrackR ``trackLength``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Length in µm; 0 for a one-point track, NaN for an empty one.

    Examples
    --------
    >>> track_length([[0, 0, 0], [1, 3, 4], [2, 3, 4]])
    5.0
    """
    return _scalar(_track_length, track)


def displacement(track: TrackLike) -> float:
    """Straight-line distance from the first to the last position (``displacement``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Distance in µm; 0 for a one-point track, NaN for an empty one.
    """
    return _scalar(_displacement, track)


def square_displacement(track: TrackLike) -> float:
    """Squared displacement (celltrackR ``squareDisplacement``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        In µm²; 0 for a one-point track, NaN for an empty one.
    """
    return _scalar(_square_displacement, track)


def max_displacement(track: TrackLike) -> float:
    """Largest distance of any position from the first (celltrackR ``maxDisplacement``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Distance in µm; 0 for a one-point track, NaN for an empty one.
    """
    return _scalar(_max_displacement, track)


def speed(track: TrackLike) -> float:
    """Mean speed ``track_length / duration`` (celltrackR ``speed``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Speed in µm/s (× 60 for µm/min); 0 for a track that never moves,
        NaN when the duration is 0 (one-point and empty tracks).
    """
    return _scalar(_speed, track)


def straightness(track: TrackLike) -> float:
    """``displacement / track_length`` (celltrackR ``straightness``, the confinement ratio).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Between 0 and 1, 1 for a straight track; NaN when the track length
        is 0 (one-point tracks, tracks that never move), as celltrackR
        documents.
    """
    return _scalar(_straightness, track)


def displacement_ratio(track: TrackLike) -> float:
    """``displacement / max_displacement`` (celltrackR ``displacementRatio``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Between 0 and 1, 1 when the track ends at its farthest point; NaN
        when the maximum displacement is 0.
    """
    return _scalar(_displacement_ratio, track)


def outreach_ratio(track: TrackLike) -> float:
    """``max_displacement / track_length`` (celltrackR ``outreachRatio``, Mokhtari 2013).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        Between 0 and 1, 1 for a straight track; NaN when the track length is 0.
    """
    return _scalar(_outreach_ratio, track)


def mean_turning_angle(track: TrackLike) -> float:
    """Mean angle between consecutive steps (celltrackR ``meanTurningAngle``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        In **radians** (celltrackR's default): 0 for a straight track, π for
        one that reverses at every step. NaN with fewer than two steps; an
        angle next to a zero-length step is undefined and left out of the mean.
    """
    return _scalar(_mean_turning_angle, track)


def overall_angle(track: TrackLike) -> float:
    """Angle between the first and the last step (celltrackR ``overallAngle``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        In radians; 0 for a one-step track (the step with itself); NaN with
        no step or when the first or last step has length 0.
    """
    return _scalar(_overall_angle, track)


def overall_dot(track: TrackLike) -> float:
    """Dot product of the first and the last step (celltrackR ``overallDot``).

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        In µm²; the squared step length for a one-step track; NaN with no step.
    """
    return _scalar(_overall_dot, track)


def asphericity(track: TrackLike) -> float:
    """Asphericity of the cloud of positions (celltrackR ``asphericity``, Mokhtari 2013).

    With ``λ`` the eigenvalues of the covariance matrix of the positions in
    ``D`` dimensions: ``sum_{i<j} (λi - λj)² / ((D - 1) (sum λ)²)``.

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.

    Returns
    -------
    float
        0 for a round cloud, 1 for positions on a line; NaN with fewer than
        two positions or when all positions are equal. Matches celltrackR to
        1e-14 in 2D; in 3D the same expression (celltrackR's reference files
        hold no 3D asphericity to check it against).
    """
    return _scalar(_asphericity, track)


def arrest_coefficient(
    track: TrackLike, *, threshold_um_per_min: float = ARREST_SPEED_UM_PER_MIN
) -> float:
    """Fraction of steps slower than a threshold: the arrest coefficient.

    Not a celltrackR measure; the usual one of two-photon immunology. Step
    speed = step length / step duration (µm/s with times in s), compared
    with ``threshold_um_per_min / 60``.

    Parameters
    ----------
    track : (N, 1 + D) array or DataFrame
        Time (s) in the first column, positions (µm) in the others.
    threshold_um_per_min : float
        Arrest speed in µm/min (default 2).

    Returns
    -------
    float
        Between 0 and 1 (1 for a track that never moves); steps of zero
        duration are left out; NaN with no step.
    """
    return float(_arrest_coefficient(_one_track(track), threshold_um_per_min)[0])


#: Registry of per-track measures, name -> function (track in, number out).
#: :func:`track_metrics` computes the built-in ones vectorised; a function
#: added here by a caller is applied track by track.
METRICS: dict[str, Callable[[TrackLike], float]] = {
    "duration": duration,
    "track_length": track_length,
    "displacement": displacement,
    "square_displacement": square_displacement,
    "max_displacement": max_displacement,
    "speed": speed,
    "straightness": straightness,
    "displacement_ratio": displacement_ratio,
    "outreach_ratio": outreach_ratio,
    "mean_turning_angle": mean_turning_angle,
    "overall_angle": overall_angle,
    "overall_dot": overall_dot,
    "asphericity": asphericity,
    "arrest_coefficient": arrest_coefficient,
}

_BATCH: dict[Callable[[TrackLike], float], Callable[[_Tracks], np.ndarray]] = {
    n_points: _n_points,
    duration: _duration,
    track_length: _track_length,
    displacement: _displacement,
    square_displacement: _square_displacement,
    max_displacement: _max_displacement,
    speed: _speed,
    straightness: _straightness,
    displacement_ratio: _displacement_ratio,
    outreach_ratio: _outreach_ratio,
    mean_turning_angle: _mean_turning_angle,
    overall_angle: _overall_angle,
    overall_dot: _overall_dot,
    asphericity: _asphericity,
    arrest_coefficient: _arrest_coefficient,
}


def track_metrics(
    tracks_df: pd.DataFrame,
    *,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every motility measure of every track, one row per track.

    Parameters
    ----------
    tracks_df : DataFrame
        One row per position: a track id, a time (s) and 2 or 3 positions (µm).
        Rows may come in any order; they are sorted by time within each track.
        The table is not modified.
    id_col, t_col : str
        Track id and time (s) columns.
    coord_cols : sequence of str, optional
        Position columns (µm); default ``z_um`` (if present), ``y_um``, ``x_um``.
    metrics : sequence of str, optional
        Names from :data:`METRICS`; default all of them, in registry order.

    Returns
    -------
    DataFrame
        ``id_col``, ``n_points`` and one column per measure, tracks in the
        order they first appear in ``tracks_df``. Units as in the module
        docstring (µm, s, µm/s, radians).

    Raises
    ------
    ValueError
        An unknown metric name, a missing column, a non-numeric value, or a
        track with two positions at the same time.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"track_id": [1, 1, 1], "t_s": [0.0, 30.0, 60.0],
    ...                    "y_um": [0.0, 0.0, 0.0], "x_um": [0.0, 1.0, 2.0]})
    >>> track_metrics(df, metrics=["speed", "straightness"])
       track_id  n_points     speed  straightness
    0         1         3  0.033333           1.0
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known metrics are {list(METRICS)}")
    tr, ids, _ = _table(tracks_df, id_col, t_col, coord_cols)
    out: dict[str, Any] = {id_col: ids, "n_points": tr.n}
    loop_groups = None
    for name in names:
        fn = METRICS[name]
        batch = _BATCH.get(fn)
        if batch is not None:
            out[name] = batch(tr)
            continue
        if loop_groups is None:  # a caller's measure: one track at a time
            bounds = np.concatenate((tr.start, [len(tr.t)]))
            loop_groups = [
                np.column_stack((tr.t[a:b], tr.xyz[a:b])) for a, b in itertools.pairwise(bounds)
            ]
        out[name] = np.array([float(fn(g)) for g in loop_groups], dtype=float)
    return pd.DataFrame(out)


# =============================================================================
# steps and subtracks


def step_speeds(
    tracks_df: pd.DataFrame,
    *,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every step of every track: its length, duration and speed.

    celltrackR's ``sapply(subtracks(X, 1), speed)``.

    Returns
    -------
    DataFrame
        ``id_col``, ``step`` (1, 2, ... within each track), ``t_col`` (time
        at the step's start, s), ``duration`` (s), ``track_length`` (µm) and
        ``speed`` (µm/s; NaN for a step of zero duration).
    """
    tr, ids, _ = _table(tracks_df, id_col, t_col, coord_cols)
    k_of_step = tr.step_owner
    return pd.DataFrame(
        {
            id_col: ids.take(k_of_step),
            "step": np.arange(len(k_of_step)) - tr.first_step[k_of_step] + 1,
            t_col: tr.t[tr.step_row],
            "duration": tr.dt,
            "track_length": tr.step_length,
            "speed": _div(tr.step_length, tr.dt),
        }
    )


def _subtrack_values(tr: _Tracks, measure: str, i: int, cum: np.ndarray) -> np.ndarray:
    """``measure`` of every subtrack of ``i`` steps (rows j .. j + i of one track)."""
    pos = np.arange(len(tr.t)) - tr.start[tr.owner]
    j = np.flatnonzero(pos + i <= tr.n[tr.owner] - 1)
    e = j + i
    if measure in ("square_displacement", "displacement"):
        v = tr.xyz[e] - tr.xyz[j]
        sq = np.einsum("ij,ij->i", v, v)
        return sq if measure == "square_displacement" else np.sqrt(sq)
    if measure in ("overall_angle", "overall_dot"):
        a, b = tr.xyz[j + 1] - tr.xyz[j], tr.xyz[e] - tr.xyz[e - 1]
        return _angle(a, b) if measure == "overall_angle" else np.einsum("ij,ij->i", a, b)
    length, dur = cum[e] - cum[j], tr.t[e] - tr.t[j]
    if measure == "track_length":
        return length
    if measure == "duration":
        return dur
    if measure == "speed":
        return _div(length, dur)
    v = tr.xyz[e] - tr.xyz[j]
    return _div(np.sqrt(np.einsum("ij,ij->i", v, v)), length)  # straightness


#: Measures :func:`aggregate_subtracks` computes on subtracks.
SUBTRACK_MEASURES = (
    "square_displacement",
    "displacement",
    "track_length",
    "duration",
    "speed",
    "straightness",
    "overall_angle",
    "overall_dot",
)


def aggregate_subtracks(
    tracks_df: pd.DataFrame,
    measure: str = "square_displacement",
    *,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] | None = None,
    lags: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Mean and standard error of a measure over all subtracks of each length.

    celltrackR's ``aggregate(X, measure, subtrack.length = lags, FUN = "mean.se")``
    with its defaults: for a lag of ``i`` steps every run of ``i + 1``
    consecutive rows of every track is one subtrack (overlapping subtracks
    all count), the values of all tracks are pooled, and ``se = sd / sqrt(n)``
    (``sd`` with ``n - 1``); ``lower, upper = mean ∓ se``. With
    ``square_displacement`` this is the mean square displacement; with
    ``overall_angle`` the turning angle against lag (radians); with
    ``overall_dot`` the autocovariance of the step vectors.

    Parameters
    ----------
    tracks_df : DataFrame
        Tracks table (see :func:`track_metrics`); not modified.
    measure : str
        One of :data:`SUBTRACK_MEASURES`.
    id_col, t_col, coord_cols
        As in :func:`track_metrics`.
    lags : sequence of int, optional
        Subtrack lengths in steps; default 1 .. (longest track's positions - 1).

    Returns
    -------
    DataFrame
        ``lag`` (steps), ``lag_s`` (lag × the median time step, s), ``n``
        (subtracks with a defined value), ``mean``, ``se``, ``lower``,
        ``upper``. ``se`` is NaN with fewer than two values. Lags are counted
        in rows: a missing frame makes one "step" span two intervals.
    """
    if measure not in SUBTRACK_MEASURES:
        raise ValueError(f"measure={measure!r} is not one of {list(SUBTRACK_MEASURES)}")
    tr, _, _ = _table(tracks_df, id_col, t_col, coord_cols)
    if lags is None:
        lags = range(1, int(tr.n.max(initial=0)))
    lags = [int(i) for i in lags]
    if any(i < 1 for i in lags):
        raise ValueError(f"lags must be positive numbers of steps, got {lags}")
    cum = np.zeros(len(tr.t))
    if len(tr.t):
        inc = np.zeros(len(tr.t))
        inc[tr.step_row + 1] = tr.step_length
        cum = np.cumsum(inc)
    dt_median = float(np.median(tr.dt)) if len(tr.dt) else math.nan
    rows = []
    for i in lags:
        v = _subtrack_values(tr, measure, i, cum)
        v = v[np.isfinite(v)]
        n = len(v)
        mean = float(v.mean()) if n else math.nan
        se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        rows.append((i, i * dt_median, n, mean, se, mean - se, mean + se))
    return pd.DataFrame(rows, columns=["lag", "lag_s", "n", "mean", "se", "lower", "upper"])


def msd(
    tracks_df: pd.DataFrame,
    *,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] | None = None,
    lags: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Mean square displacement (µm²) against lag, pooled over all tracks.

    :func:`aggregate_subtracks` with ``square_displacement``: celltrackR's
    ``aggregate(X, squareDisplacement, FUN = "mean.se")``.
    """
    return aggregate_subtracks(
        tracks_df,
        "square_displacement",
        id_col=id_col,
        t_col=t_col,
        coord_cols=coord_cols,
        lags=lags,
    )


def hotellings_test(
    tracks_df: pd.DataFrame,
    *,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] | None = None,
    step_spacing: int = 0,
) -> dict[str, Any]:
    """Hotelling's one-sample T² test: is the mean step vector zero (no drift / bias)?

    celltrackR's ``hotellingsTest(X, step.spacing = step_spacing)``: the
    steps of every track, keeping one and then leaving out ``step_spacing``
    (to make them closer to independent), starting with each track's first
    step; then ``T² = n m' S⁻¹ m`` (``m`` the mean step, ``S`` its sample
    covariance), ``F = (n - p) / (p (n - 1)) T²`` on ``(p, n - p)`` degrees
    of freedom. ``coord_cols`` default as in :func:`track_metrics` (all
    positions); celltrackR's default is x and y only.

    Returns
    -------
    dict
        ``T2``, ``F``, ``df1``, ``df2``, ``p_value``, ``n_steps`` and
        ``mean_step`` (µm, in the order of ``coord_cols``); the statistics
        are NaN with too few steps or when all steps lie on one line.
    """
    from scipy import stats

    if step_spacing < 0:
        raise ValueError(f"step_spacing must be >= 0, got {step_spacing}")
    tr, _, _ = _table(tracks_df, id_col, t_col, coord_cols)
    within = np.arange(len(tr.step_owner)) - tr.first_step[tr.step_owner]
    s = tr.dx[within % (step_spacing + 1) == 0]
    n, p = s.shape
    mean = s.mean(axis=0) if n else np.full(p, np.nan)
    out: dict[str, Any] = {"n_steps": n, "df1": p, "df2": n - p, "mean_step": mean}
    if n <= p:
        return out | {"T2": math.nan, "F": math.nan, "p_value": math.nan}
    m = out["mean_step"]
    try:
        t2 = float(n * m @ np.linalg.solve(np.cov(s.T).reshape(p, p), m))
    except np.linalg.LinAlgError:  # all steps on one line: no covariance to invert
        return out | {"T2": math.nan, "F": math.nan, "p_value": math.nan}
    f = (n - p) / (p * (n - 1)) * t2
    return out | {"T2": t2, "F": f, "p_value": float(stats.f.sf(f, p, n - p))}


# =============================================================================
# approach to a point, or along a direction

#: Columns of :func:`approach_table` (keys of :func:`approach_metrics`).
APPROACH_COLUMNS = [
    "n_points",
    "speed_um_per_min",
    "chemotactic_index",
    "forward_migration_index",
    "closing_speed_um_per_min",
    "start_distance_um",
    "end_distance_um",
    "arrived",
    "arrival_t_s",
    "arrested_on_arrival",
]


def _target_rows(
    target: Any,
    tracks_df: pd.DataFrame,
    id_col: str | None,
    t_col: str,
    cols: list[str],
) -> np.ndarray:
    """The target position for every row of ``tracks_df``, shape (N, D)."""
    d = len(cols)
    if isinstance(target, pd.DataFrame):
        missing = [c for c in cols if c not in target.columns]
        keys = [c for c in (id_col, t_col) if c is not None and c in target.columns]
        if missing or not keys:
            raise ValueError(
                f"a target table needs the position columns {cols} and {t_col!r} (a target "
                f"per frame) and/or {id_col!r} (a target per track); it has "
                f"{list(target.columns)}"
            )
        if target.duplicated(keys).any():
            raise ValueError(f"the target table has more than one position per {keys}")
        left = tracks_df[keys].reset_index(drop=True)
        right = target[keys + cols].rename(columns={c: f"__target_{c}" for c in cols})
        merged = left.merge(right, on=keys, how="left", validate="many_to_one")
        pos = merged[[f"__target_{c}" for c in cols]].to_numpy(float)
        lost = np.isnan(pos).any(axis=1)
        if lost.any():
            row = tracks_df[keys].iloc[int(np.flatnonzero(lost)[0])].to_dict()
            raise ValueError(f"the target table has no position for {row}")
        return pos
    arr = np.asarray(target, dtype=float)
    if arr.shape == (d,):
        return np.broadcast_to(arr, (len(tracks_df), d))
    if arr.shape == (len(tracks_df), d):
        return arr
    raise ValueError(
        f"target_yx_um must hold {d} coordinates in the order of coord_cols {cols} "
        f"(shape ({d},)), one per row (shape ({len(tracks_df)}, {d})) or be a DataFrame; "
        f"got shape {arr.shape}"
    )


def approach_table(
    tracks_df: pd.DataFrame,
    target_yx_um: Any = None,
    *,
    direction: Sequence[float] | None = None,
    id_col: str = col.TRACK_ID,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] = (col.Y_UM, col.X_UM),
    arrival_radius_um: float = 20.0,
    arrest_speed_um_per_min: float = ARREST_SPEED_UM_PER_MIN,
    arrest_steps: int = 3,
) -> pd.DataFrame:
    """How each track approaches a target point (or moves along a direction).

    Give exactly one of ``target_yx_um`` and ``direction``. With ``L`` the
    path length, ``p_0 .. p_end`` the positions and ``q_k`` the target at
    the time of ``p_k``:

    - ``speed_um_per_min``: ``L / duration`` × 60.
    - ``chemotactic_index``: distance gained toward the target per path
      length, ``(|q_0 - p_0| - |q_end - p_end|) / L``; 1 for a straight run
      at a fixed target, 0 on average for random motion, negative when moving
      away.
    - ``forward_migration_index``: the FMI of ibidi's chemotaxis tool and of
      celltrackR-style analyses, the net displacement projected on the unit
      vector ``u`` from the start toward the target, ``(p_end - p_0) · u / L``
      with ``u = (q_0 - p_0) / |q_0 - p_0|`` fixed at the first position. It
      differs from the chemotactic index when the path bends around the
      target or the target moves. With ``direction``, ``u`` is that direction
      (a gradient) and both indices equal the FMI along it.
    - ``closing_speed_um_per_min``: distance gained toward the target per
      minute (along ``u`` with ``direction``).
    - ``start_distance_um`` / ``end_distance_um``: ``|q_0 - p_0|``, ``|q_end - p_end|``.
    - ``arrived``: 1 if the track comes within ``arrival_radius_um`` of the
      target, else 0; ``arrival_t_s`` the first such time.
    - ``arrested_on_arrival``: 1 if the mean speed over the ``arrest_steps``
      steps from arrival (fewer if the track ends sooner) is below
      ``arrest_speed_um_per_min``, 0 if not, NaN if the track never arrives
      or ends there.

    Ratios are NaN when undefined (no path, zero duration; the FMI also when
    the track starts on the target); with ``direction`` the distance and
    arrival columns are NaN.

    Parameters
    ----------
    tracks_df : DataFrame
        Tracks table (see :func:`track_metrics`); not modified.
    target_yx_um : array-like or DataFrame, optional
        The target in the order of ``coord_cols`` (y, x by default; z, y, x
        in 3D): one fixed point ``(D,)``, one point per row of ``tracks_df``
        ``(N, D)``, or a DataFrame with the ``coord_cols`` and ``t_col`` (a
        target per time point, e.g. a dying cell's centroid per frame) and/or
        ``id_col`` (a target per track).
    direction : array-like, optional
        A direction ``(D,)`` in the order of ``coord_cols`` instead of a
        target point; need not be normalised.
    id_col, t_col, coord_cols : str
        Columns of ``tracks_df``: track id, time (s) and positions (µm).
    arrival_radius_um : float
        Arrival means coming this close to the target (µm).
    arrest_speed_um_per_min : float
        Slower than this (µm/min) after arrival counts as arrested.
    arrest_steps : int
        Steps after arrival over which the arrest speed is measured.

    Returns
    -------
    DataFrame
        ``id_col`` and :data:`APPROACH_COLUMNS`, one row per track.
    """
    if (target_yx_um is None) == (direction is None):
        raise ValueError("give exactly one of target_yx_um (a point) and direction (a vector)")
    if arrest_steps < 1:
        raise ValueError(f"arrest_steps must be >= 1, got {arrest_steps}")
    cols = [coord_cols] if isinstance(coord_cols, str) else list(coord_cols)
    tr, ids, cols = _table(tracks_df, id_col, t_col, cols)
    length, dur = _track_length(tr), _duration(tr)
    disp = _displacement_vector(tr)
    k, has = tr.k, tr.has
    nan = np.full(k, np.nan)
    out: dict[str, Any] = {id_col: ids, "n_points": tr.n}
    out["speed_um_per_min"] = _div(length, dur) * 60.0
    if direction is not None:
        u = np.asarray(direction, dtype=float)
        if u.shape != (len(cols),) or not np.isfinite(u).all() or not np.any(u):
            raise ValueError(
                f"direction must be a non-zero vector of {len(cols)} numbers in the order "
                f"of coord_cols {cols}, got {direction!r}"
            )
        gain = disp @ (u / np.linalg.norm(u))
        out |= {
            "chemotactic_index": _div(gain, length),
            "forward_migration_index": _div(gain, length),
            "closing_speed_um_per_min": _div(gain, dur) * 60.0,
            "start_distance_um": nan,
            "end_distance_um": nan,
            "arrived": nan,
            "arrival_t_s": nan,
            "arrested_on_arrival": nan,
        }
        return pd.DataFrame(out, columns=[id_col, *APPROACH_COLUMNS])

    # the target at every (sorted) row: sort the caller's rows the same way as _table
    order = np.lexsort(
        (
            _numeric(tracks_df, t_col, "time"),
            pd.factorize(tracks_df[id_col], sort=False)[0],
        )
    )
    q = np.asarray(_target_rows(target_yx_um, tracks_df, id_col, t_col, cols), float)[order]
    rel = q - tr.xyz
    dist = np.sqrt(np.einsum("ij,ij->i", rel, rel))
    d0, d1 = nan.copy(), nan.copy()
    d0[has], d1[has] = dist[tr.start[has]], dist[tr.last[has]]
    u = np.full((k, len(cols)), np.nan)
    u[has] = rel[tr.start[has]] / np.where(d0[has] > 0, d0[has], np.nan)[:, None]
    fmi_gain = np.einsum("ij,ij->i", disp, u)
    out |= {
        "chemotactic_index": _div(d0 - d1, length),
        "forward_migration_index": _div(fmi_gain, length),
        "closing_speed_um_per_min": _div(d0 - d1, dur) * 60.0,
        "start_distance_um": d0,
        "end_distance_um": d1,
    }
    # arrival: first row within the radius; arrest: mean speed over the next steps
    big = np.iinfo(np.intp).max
    near_row = np.where(dist <= arrival_radius_um, np.arange(len(dist)), big)
    first = np.full(k, big)
    if has.any():
        first[has] = np.minimum.reduceat(near_row, tr.start[has])
    arrived = first != big
    out["arrived"] = np.where(has, arrived.astype(float), np.nan)
    a = np.where(arrived, first, 0)
    out["arrival_t_s"] = tr.per_track(tr.t[a], arrived)
    inc = np.zeros(len(tr.t))
    inc[tr.step_row + 1] = tr.step_length
    cum = np.cumsum(inc)
    e = np.minimum(a + arrest_steps, tr.last)
    moving = arrived & (e > a)
    v = _div(cum[e] - cum[a], tr.t[e] - tr.t[a]) * 60.0
    slow = np.where(np.isfinite(v), (v < arrest_speed_um_per_min).astype(float), np.nan)
    out["arrested_on_arrival"] = tr.per_track(slow, moving)
    return pd.DataFrame(out, columns=[id_col, *APPROACH_COLUMNS])


def approach_metrics(
    track_df: TrackLike,
    target_yx_um: Any = None,
    *,
    direction: Sequence[float] | None = None,
    t_col: str = col.T_S,
    coord_cols: Sequence[str] = (col.Y_UM, col.X_UM),
    arrival_radius_um: float = 20.0,
    arrest_speed_um_per_min: float = ARREST_SPEED_UM_PER_MIN,
    arrest_steps: int = 3,
) -> dict[str, float]:
    """How one track approaches a target point (or moves along a direction).

    The one-track form of :func:`approach_table`, which defines every value.

    Parameters
    ----------
    track_df : DataFrame or (N, 1 + D) array
        One track: ``t_col`` (s) and ``coord_cols`` (µm), or an array of
        time and positions in the order of ``coord_cols``. Not modified.
    target_yx_um : array-like or DataFrame, optional
        Target in the order of ``coord_cols``: fixed ``(D,)``, per row
        ``(N, D)``, or a DataFrame with ``t_col`` and ``coord_cols`` (a target
        per time point).
    direction, t_col, coord_cols, arrival_radius_um, arrest_speed_um_per_min, arrest_steps
        As in :func:`approach_table`.

    Returns
    -------
    dict
        The :data:`APPROACH_COLUMNS`, as floats (``arrived`` and
        ``arrested_on_arrival`` are 1.0, 0.0 or NaN).

    Examples
    --------
    >>> import pandas as pd
    >>> cell = pd.DataFrame({"t_s": [0.0, 60.0, 120.0, 180.0],
    ...                      "y_um": [0.0, 0.0, 0.0, 0.0], "x_um": [0.0, 10.0, 20.0, 21.0]})
    >>> m = approach_metrics(cell, (0.0, 30.0), arrival_radius_um=12.0)
    >>> m["chemotactic_index"], m["arrived"], m["arrested_on_arrival"]
    (1.0, 1.0, 1.0)
    """
    cols = [coord_cols] if isinstance(coord_cols, str) else list(coord_cols)
    if isinstance(track_df, pd.DataFrame):
        df = track_df
    else:
        arr = np.asarray(track_df, dtype=float)
        if arr.size == 0 and arr.ndim < 2:
            arr = arr.reshape(0, 1 + len(cols))
        if arr.ndim != 2 or arr.shape[1] != 1 + len(cols):
            raise ValueError(
                f"a track array must have shape (N, {1 + len(cols)}): time and {cols}; "
                f"got {arr.shape}"
            )
        df = pd.DataFrame(arr, columns=[t_col, *cols])
    key = "__track"
    while key in df.columns:
        key += "_"
    df = df.assign(**{key: 0})
    table = approach_table(
        df,
        target_yx_um,
        direction=direction,
        id_col=key,
        t_col=t_col,
        coord_cols=cols,
        arrival_radius_um=arrival_radius_um,
        arrest_speed_um_per_min=arrest_speed_um_per_min,
        arrest_steps=arrest_steps,
    )
    if table.empty:  # an empty track
        return {c: (0.0 if c == "n_points" else math.nan) for c in APPROACH_COLUMNS}
    return {c: float(table[c].iloc[0]) for c in APPROACH_COLUMNS}


# =============================================================================
# reading tracks made by other tools

# normalised header names (lower case, units in brackets removed, only a-z0-9)
_ID_NAMES = (
    "trackid",
    "track",
    "trackno",
    "tracknumber",
    "trackindex",
    "particle",
    "cellid",
    "id",
)
# time columns in physical units: name -> seconds per unit (None: from the header/units row)
_T_NAMES: dict[str, float | None] = {
    "ts": 1.0,
    "tsec": 1.0,
    "times": 1.0,
    "timesec": 1.0,
    "timeseconds": 1.0,
    "tmin": 60.0,
    "timemin": 60.0,
    "timeminutes": 60.0,
    "positiont": None,
    "t": None,
    "time": None,
}
# time columns that count frames
_FRAME_NAMES = ("frame", "frames", "timepointid", "timepoint", "timeindex", "frameindex")
_COORD_NAMES = {
    axis: (f"{axis}um", axis, f"position{axis}", f"pos{axis}", f"{axis}position", f"centroid{axis}")
    for axis in "xyz"
}
_TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_LENGTH_UNITS = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
}
_UNIT_RE = re.compile(r"[\(\[]([^\)\]]*)[\)\]]")


def _norm(name: str) -> tuple[str, str | None]:
    """Normalised column name and the unit written in brackets, if any."""
    m = _UNIT_RE.search(name)
    unit = m.group(1).strip().lower() if m else None
    base = _UNIT_RE.sub("", name).lower().replace("µ", "u").replace("μ", "u")
    return re.sub(r"[^a-z0-9]", "", base), unit


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _split(line: str) -> tuple[list[str], str]:
    counts = {d: line.count(d) for d in (",", "\t", ";")}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0:
        return line.split(), r"\s+"
    return [f.strip().strip('"').strip() for f in next(csv.reader([line], delimiter=sep))], sep


def _find(cands: Sequence[str], normed: Mapping[str, str]) -> str | None:
    return next((normed[c] for c in cands if c in normed), None)


def read_tracks_csv(
    path: str | Path,
    *,
    id_col: str | None = None,
    t_col: str | None = None,
    coord_cols: Sequence[str] | None = None,
    time_unit_s: float | None = None,
    length_unit_um: float | None = None,
) -> pd.DataFrame:
    """Read tracks made by another tool (TrackMate, Imaris, celltrackR, trackpy).

    The header row may follow title lines (Imaris) and be followed by
    TrackMate's three rows of feature names, short names and units; the file
    may be gzipped and comma-, tab-, semicolon- or space-separated. Column
    names are matched ignoring case, spaces, underscores and units in
    brackets:

    - track id: ``TRACK_ID`` (TrackMate), ``TrackID`` (Imaris), ``track_id``,
      ``track``, ``particle`` (trackpy), ``id`` -- a spot ``ID`` is used only
      when nothing else names the track;
    - time: ``t_s``, ``t``, ``time``, ``POSITION_T`` (TrackMate), ``Time [min]``
      ...; or frames: ``frame``, ``FRAME``, ``TimePointID`` / ``Time`` (Imaris,
      where it counts time points), which need ``time_unit_s``;
    - positions: ``x_um``, ``x``, ``POSITION_X``, ``Position X``, ``Position_X``
      ... and the same for y and z (z optional).

    Parameters
    ----------
    path : str or Path
        The CSV (or ``.csv.gz``) file.
    id_col, t_col : str, optional
        Column names to use instead of the detected ones.
    coord_cols : sequence of str, optional
        Position columns, in the order x, y[, z].
    time_unit_s : float, optional
        Seconds per unit of the time column: the frame interval when time
        counts frames, 60 for minutes. Default: the unit in the header or in
        TrackMate's units row, else seconds.
    length_unit_um : float, optional
        µm per unit of the positions (the pixel size for pixel positions).
        Default: the unit in the header or TrackMate's units row, else µm --
        so pass it for positions in pixels without a stated unit (trackpy's
        ``x``, ``y``).

    Returns
    -------
    DataFrame
        ``track_id``, ``t_s``, ``x_um``, ``y_um``[, ``z_um``] (and ``frame``
        when the file has one), sorted by track (in order of first
        appearance) and time. Rows without a track id (TrackMate's spots not
        in any track) are dropped and counted in the log.

    Raises
    ------
    StackNotFoundError
        The file does not exist.
    StackReadError
        The file is not a readable table, lacks a needed column (the message
        lists the columns found and the argument to pass) or holds a
        non-numeric time or position.
    CalibrationError
        Time counts frames but ``time_unit_s`` is not given, or positions
        are in pixels but ``length_unit_um`` is not given.
    """
    path = Path(path)
    if not path.exists():
        raise StackNotFoundError(f"{path}: no such tracks file")
    if path.is_dir():
        raise StackReadError(f"{path}: is a folder; give the tracks CSV file inside it")
    for value, name in ((time_unit_s, "time_unit_s"), (length_unit_um, "length_unit_um")):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CalibrationError(f"{name} must be a positive number, got {value}")
    try:
        with _open_text(path) as fh:
            head = [fh.readline() for _ in range(60)]
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise StackReadError(f"{path}: cannot read this file as text ({err})") from None
    if any("\x00" in line for line in head):
        raise StackReadError(f"{path}: is a binary file, not a CSV table of tracks")
    head = [line.rstrip("\r\n") for line in head]
    if not any(line.strip() for line in head):
        raise StackReadError(f"{path}: is empty; expected a header row and one row per position")

    wanted = [c for c in (id_col, t_col, *(coord_cols or ())) if c is not None]

    def score(fields: list[str]) -> int:
        normed = {_norm(f)[0] for f in fields}
        s = sum(c in fields for c in wanted)
        s += any(c in normed for c in _ID_NAMES)
        s += any(c in normed for c in (*_T_NAMES, *_FRAME_NAMES))
        s += sum(any(c in normed for c in _COORD_NAMES[a]) for a in "xy")
        return s

    header_idx, best = 0, -1
    for i, line in enumerate(head):
        if line.strip():
            s = score(_split(line)[0])
            if s > best:
                header_idx, best = i, s
            if s >= 4 + len(wanted):
                break
    sep = _split(head[header_idx])[1]
    try:
        raw = pd.read_csv(
            path,
            sep=sep,
            skiprows=header_idx,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            engine="python" if sep == r"\s+" else "c",
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise StackReadError(f"{path}: cannot parse the table ({err})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    found = list(raw.columns)
    normed: dict[str, str] = {}
    units: dict[str, str | None] = {}
    for c in found:
        key, unit = _norm(c)
        normed.setdefault(key, c)
        units[c] = unit

    def pick(given: str | None, what: str) -> str | None:
        if given is None:
            return None
        if given in raw.columns:
            return given
        alt = normed.get(_norm(given)[0])
        if alt is None:
            raise StackReadError(
                f"{path}: {what}={given!r} is not a column; the columns are {found}"
            )
        return alt

    imaris = "category" in normed and "collection" in normed
    # track id
    id_name = pick(id_col, "id_col") or _find(_ID_NAMES, normed)
    if id_name is None:
        raise StackReadError(
            f"{path}: no track id column found; the columns are {found}; pass id_col=NAME"
        )
    # time
    frame_name = _find(_FRAME_NAMES, normed)
    if imaris and frame_name is None and "time" in normed:
        frame_name = normed["time"]
    t_name = pick(t_col, "t_col")
    t_scale: float | None = None
    counts_frames = False
    if t_name is None:
        t_names = dict(_T_NAMES)
        if imaris:
            t_names.pop("time")
        key = next((c for c in t_names if c in normed), None)
        if key is not None:
            t_name, t_scale = normed[key], t_names[key]
        elif frame_name is not None:
            t_name, counts_frames = frame_name, True
    else:
        key = _norm(t_name)[0]
        counts_frames = t_name == frame_name or key in _FRAME_NAMES
        t_scale = _T_NAMES.get(key)
    if t_name is None:
        raise StackReadError(
            f"{path}: no time column found; the columns are {found}; pass t_col=NAME "
            "(and time_unit_s= if it is not in seconds)"
        )
    # positions
    if coord_cols is not None:
        if len(coord_cols) not in (2, 3):
            raise StackReadError(
                f"{path}: coord_cols must name 2 or 3 columns (x, y[, z]), got {list(coord_cols)}"
            )
        pos_names = [pick(c, "coord_cols") for c in coord_cols]
    else:
        pos_names = [_find(_COORD_NAMES[a], normed) for a in "xyz"]
        missing = [a for a, c in zip("xy", pos_names) if c is None]
        if missing:
            raise StackReadError(
                f"{path}: no {' and no '.join(missing)} position column found; the columns are "
                f"{found}; pass coord_cols=(X, Y[, Z])"
            )
        pos_names = [c for c in pos_names if c is not None]

    # TrackMate: up to three rows of names / short names / units under the header
    data = raw
    unit_row: pd.Series | None = None
    n_extra = 0
    for i in range(min(3, len(raw))):
        row = raw.iloc[i]
        if pd.to_numeric(pd.Series([row[t_name], row[pos_names[0]]]), errors="coerce").isna().all():
            n_extra = i + 1
            if any(_UNIT_RE.fullmatch(str(row[c]).strip()) for c in (t_name, *pos_names)):
                unit_row = row
        else:
            break
    if n_extra:
        data = raw.iloc[n_extra:]

    def unit_of(c: str) -> str | None:
        if unit_row is not None:
            m = _UNIT_RE.fullmatch(str(unit_row[c]).strip())
            if m and m.group(1).strip():
                return m.group(1).strip().lower()
        return units.get(c)

    # numbers
    def numbers(c: str, what: str) -> np.ndarray:
        s = data[c].str.strip()
        v = pd.to_numeric(s, errors="coerce")
        bad = v.isna() & (s != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise StackReadError(
                f"{path}: line {header_idx + 2 + int(data.index[i])}: {what} column {c!r} "
                f"holds {s.iloc[i]!r}, not a number"
            )
        return v.to_numpy(float)

    ids_raw = data[id_name].str.strip()
    no_id = ids_raw.isin(["", "None", "none", "NaN", "nan", "NA"]).to_numpy()
    if no_id.any():
        logger.info("%s: %d rows without a track id dropped", path, int(no_id.sum()))
        data, ids_raw = data[~no_id], ids_raw[~no_id]
    if data.empty:
        raise StackReadError(f"{path}: has no rows with a track id in column {id_name!r}")
    t = numbers(t_name, "time")
    xyz = [numbers(c, "position") for c in pos_names]
    blank = np.isnan(t) | np.any([np.isnan(v) for v in xyz], axis=0)
    if blank.any():
        i = int(np.flatnonzero(blank)[0])
        raise StackReadError(
            f"{path}: line {header_idx + 2 + int(data.index[i])}: a time or position is empty"
        )

    # units
    if time_unit_s is None:
        unit = unit_of(t_name)
        if counts_frames or unit in ("frame", "frames"):
            raise CalibrationError(
                f"{path}: time column {t_name!r} counts frames; pass time_unit_s=SECONDS "
                "(the frame interval)"
            )
        if t_scale is None:
            t_scale = 1.0 if unit is None else _TIME_UNITS.get(unit)
            if t_scale is None:
                raise CalibrationError(
                    f"{path}: time column {t_name!r} is in unknown unit {unit!r}; pass "
                    "time_unit_s=SECONDS per unit"
                )
        time_unit_s = t_scale
    if length_unit_um is None:
        unit = unit_of(pos_names[0])
        if unit is not None and unit.startswith("pixel"):
            raise CalibrationError(
                f"{path}: positions are in pixels; pass length_unit_um=PIXEL_SIZE_UM"
            )
        length_unit_um = 1.0 if unit is None else _LENGTH_UNITS.get(unit)
        if length_unit_um is None:
            raise CalibrationError(
                f"{path}: positions are in unknown unit {unit!r}; pass length_unit_um=µm per unit"
            )

    ids = pd.to_numeric(ids_raw, errors="coerce")
    if ids.notna().all() and np.all(np.mod(ids.to_numpy(float), 1) == 0):
        ids = ids.astype(np.int64)
    else:
        ids = ids_raw
    out = pd.DataFrame({col.TRACK_ID: ids.to_numpy(), col.T_S: t * time_unit_s})
    for name, v in zip((col.X_UM, col.Y_UM, col.Z_UM), xyz):
        out[name] = v * length_unit_um
    if counts_frames:
        frame_name = t_name
    if frame_name is not None:
        f = numbers(frame_name, "frame")
        if np.all(np.isfinite(f)) and np.all(np.mod(f, 1) == 0):
            out[col.FRAME] = f.astype(np.int64)
    codes = pd.factorize(out[col.TRACK_ID], sort=False)[0]
    order = np.lexsort((out[col.T_S].to_numpy(), codes))
    return out.iloc[order].reset_index(drop=True)
