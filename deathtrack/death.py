"""Find the deaths among target-cell tracks and call them apoptotic or necroptotic.

Per track, from the measured time series (``DESIGN.md``):

- necroptosis: the cell swells and rounds up, then the cytoplasmic reporter is
  lost abruptly at rupture (a faint ghost stays) and the dead-cell dye comes
  at once. Death frame: the first frame by which half of the reporter's drop
  has happened.
- apoptosis: the cell shrinks (area >= 15 % below its own baseline, and stays
  there), its reporter concentrates, it blebs and fragments; the dye comes
  late. Death frame: the first frame of sustained shrinkage. Shrinkage with
  none of the other signs (reporter as concentrated as before, one piece, no
  dye) is a live cell whose outline the segmentation trimmed, not a death.

Faults of the segmentation that a track carries, seen on the dense development
movies: a cell that gets a new track a frame or two before it ruptures (a merged
pair came apart, a swollen cell segmented whole again) is called when the dye
comes at the rupture, against the frames before it; a shrinkage found not to be a
death (at the field's edge, or an outline trimmed) does not hide a later rupture
with the dye; a dying cell split in two is one death, not two calls. With a dead-cell
dye, a death that no track shows (the swelling cell merged into a neighbour or cut into
pieces before it ruptured) is found where a spot of the dye the size of a nucleus or
more appears and stays (:func:`find_dye_spots`, ``dye_spots`` of :func:`detect_deaths`).

The reporter is normalised by the median reporter of all cells in the same
frame, so photobleaching is not a death. Parents of divisions (which round
up and split), tracks that leave the field and short tracks are not called.
Each event carries the features that drove its call and ``p_necroptotic``
from an interpretable score; calls with ``p`` near 0.5 are ``uncertain``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import columns as col
from .classify import mode_from_p
from .config import DeathConfig, frames_for

logger = logging.getLogger(__name__)

__all__ = ["EVENT_COLUMNS", "detect_deaths"]

EVENT_COLUMNS = [
    col.EVENT_ID,
    col.TRACK_ID,
    col.FRAME,
    col.T_S,
    col.Y,
    col.X,
    col.Y_UM,
    col.X_UM,
    col.MODE,
    col.P_NECROPTOTIC,
    col.ONSET_FRAME,
    col.DYE_FRAME,
    "area_ratio_before",
    "area_ratio_min",
    "reporter_drop",
    "reporter_ratio_before",
    "circularity_change",
    "solidity_min_after",
    "fragments_max_after",
    "dye_lag_min",
]


def _bleaching_trend(frame_median: pd.Series) -> pd.Series:
    """Smooth exponential fit (Theil-Sen on the log) of the per-frame median signal.

    Falls back to the per-frame medians with fewer than 5 usable frames.
    """
    from scipy.stats import theilslopes

    ok = frame_median[frame_median > 0]
    if len(ok) < 5:
        return frame_median
    t = ok.index.to_numpy(float)
    slope, intercept, _, _ = theilslopes(np.log(ok.to_numpy(float)), t)
    return pd.Series(
        np.exp(intercept + slope * frame_median.index.to_numpy(float)), index=frame_median.index
    )


def _rolling_median(x: np.ndarray, k: int = 3) -> np.ndarray:
    if len(x) < k:
        return x.copy()
    pad = np.pad(x, k // 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)


def _first_sustained(mask: np.ndarray, start: int, run: int) -> int:
    """First index >= start where ``mask`` holds for ``run`` consecutive values (or to the end)."""
    n = len(mask)
    for i in range(start, n):
        if mask[i : min(i + run, n)].all():
            return i
    return -1


def _splits_in_two(g: pd.DataFrame, area: np.ndarray, i: int, cfg: DeathConfig) -> int:
    """The index at which the area drop around index ``i`` turns out a division the
    tracker did not see, or 0 when it is none.

    The track then follows one daughter: within one frame the area falls to at most
    ``division_area_ratio`` of the frame before and the centroid jumps by more than
    ``division_jump_fraction`` of the cell's radius. Apoptotic shrinkage is progressive
    and the cell stays where it is.
    """
    if not {col.Y_UM, col.X_UM} <= set(g.columns):
        return 0
    yx = g[[col.Y_UM, col.X_UM]].to_numpy(float)
    # a dividing cell rounds up (shrinking a little) for a few frames before it splits
    for j in range(max(1, i - 2), min(len(area), i + 4)):
        if area[j - 1] <= 0 or area[j] > cfg.division_area_ratio * area[j - 1]:
            continue
        jump = float(np.hypot(*(yx[j] - yx[j - 1])))
        if jump > cfg.division_jump_fraction * np.sqrt(area[j - 1] / np.pi):
            return j
    return 0


def _shrink_start(
    area: np.ndarray,
    a_rel: np.ndarray,
    shrink: int,
    k0: int,
    base_area: float,
    sustain: int,
    cfg: DeathConfig,
) -> int:
    """When the shrinkage found at index ``shrink`` began, or -1 when there was none.

    Two faults of the segmentation make it seem to begin early: a track's first frames
    drawn larger than the cell (a piece of a neighbour in its outline), so that its
    baseline is high; and a seam drawn through the cell for a few frames, from which its
    outline recovers. Against the level of every frame before it, when that is lower than
    the baseline by half ``1 - shrink_fraction`` or more, the shrinkage must still be one;
    and a dying cell does not grow back, so a dip the outline recovers from (back
    within half ``1 - shrink_fraction`` of the baseline for ``sustain`` frames) gives way
    to the next shrinkage after it, when there is one."""
    back_at = 1 - 0.5 * (1 - cfg.shrink_fraction)  # 0.925: half-way back to the baseline
    level = float(np.median(area[:shrink]))
    if 0 < level < back_at * base_area:
        a_rel = _rolling_median(area / level)
        shrink = _first_sustained(a_rel <= cfg.shrink_fraction, k0, sustain)
    while shrink >= 0:
        back = _first_sustained(a_rel >= back_at, shrink, sustain)
        later = _first_sustained(a_rel <= cfg.shrink_fraction, back, sustain) if back >= 0 else -1
        if later < 0:
            break
        shrink = later
    return shrink


def _concentration_before(
    r_rel: np.ndarray, i: int, win: dict[str, int], until: int | None = None
) -> float:
    """The reporter's highest level, relative to the baseline, from the ``before`` window
    ahead of index ``i`` up to and including ``i`` (it concentrates as an apoptotic cell
    shrinks), or up to ``until`` (excluded) when that is later."""
    stop = i + 1 if until is None else max(until, i + 1)
    return float(np.max(r_rel[max(0, i - win["before"]) : stop]))


def _windows(cfg: DeathConfig, interval_s: float) -> dict[str, int]:
    """The config's durations (minutes) in frames at this frame interval."""
    return {
        "min_track": frames_for(cfg.min_track_min, interval_s, at_least=4),
        "baseline": frames_for(cfg.baseline_min, interval_s, at_least=2),
        "sustain": frames_for(cfg.sustain_min, interval_s, at_least=2),
        "rupture": frames_for(cfg.rupture_window_min, interval_s, at_least=1),
        # the features before and after the death: 8 and 12 minutes (2 frames at least)
        "before": frames_for(8.0, interval_s, at_least=2),
        "after": frames_for(12.0, interval_s, at_least=2),
        "guard": frames_for(cfg.division_guard_min, interval_s, at_least=1),
    }


def _ruptures_at(tot: np.ndarray, rep: np.ndarray, i: int, w: int, cfg: DeathConfig) -> bool:
    """Whether the cell's whole reporter (``tot``, reporter x area, any scale) falls at index
    ``i`` by ``rupture_drop`` of its highest level in the ``w`` frames before, stays down as
    long after, and what is left is dim (the mean reporter ``rep`` falls too: a division
    the tracker missed, or a merged pair coming apart, also loses half the whole, but keeps
    its concentration)."""
    n = len(tot)
    pre = float(np.max(tot[max(0, i - w) : i]))
    post = tot[i : min(i + max(w, 2), n)]
    if not (pre > 0 and np.max(post) <= (1 - cfg.rupture_drop) * pre):
        return False
    if len(post) < min(2, n - i):
        return False
    last = float(np.max(rep[max(0, i - 2) : i]))
    return bool(np.median(rep[i : i + len(post)]) <= (1 - 0.75 * cfg.rupture_drop) * last)


def _rupture_candidates(tot: np.ndarray, w: int, cfg: DeathConfig) -> np.ndarray:
    """The indices ``i >= 1`` that pass :func:`_ruptures_at`'s first test (the whole falls by
    ``rupture_drop`` of its highest level in the ``w`` frames before and stays down as long
    after), for every ``i`` at once: the same maxima, NaN where a window holds one (which
    fails the test, as it does there). A track's few candidates are then tested in full."""
    n = len(tot)
    if n < 2 or w < 1:
        return np.zeros(0, int)
    m = max(w, 2)
    pad_pre = np.concatenate([np.full(w, -np.inf), tot])
    pre = np.max(np.lib.stride_tricks.sliding_window_view(pad_pre, w), axis=1)[1:n]
    pad_post = np.concatenate([tot, np.full(m - 1, -np.inf)])
    post = np.max(np.lib.stride_tricks.sliding_window_view(pad_post, m), axis=1)[1:n]
    with np.errstate(invalid="ignore"):
        ok = (pre > 0) & (post <= (1 - cfg.rupture_drop) * pre)
    return np.flatnonzero(ok) + 1


def _early_rupture(
    area: np.ndarray, rep: np.ndarray, dye: np.ndarray, k0: int, w: int, cfg: DeathConfig
) -> int:
    """Index ``i`` in ``1 .. k0 - 1`` where a track ruptures before its baseline is complete,
    or -1: a cell that got its track just before it died (a merged pair that came apart, a
    swollen cell segmented whole again). Only with the dye coming at the same frame, above
    every frame before it by ``dye_min_rise_sd`` and staying so, which no segmentation fault
    gives."""
    tot = rep * area
    candidates = _rupture_candidates(tot, w, cfg)
    for i in candidates[candidates < min(k0, len(area))].tolist():
        if not _ruptures_at(tot, rep, i, w, cfg):
            continue
        after = dye[i : min(i + max(w, 2), len(dye))]
        if np.min(after) - np.max(dye[:i]) > cfg.dye_min_rise_sd:
            return i
    return -1


#: columns of :func:`find_dye_spots`' array: centroid (pixels), area (µm²), peak (noise SDs)
#: and the reporter's mean over the spot above the frame's background
SPOT_COLUMNS = ("y", "x", "area_um2", "peak_sd", "reporter")


def reporter_crosstalk(reporter: np.ndarray, dye: np.ndarray) -> float:
    """The reporter's crosstalk into the dye channel: the median, over cells with reporter
    above background, of their dye over their reporter (both above background; most
    cells are alive, so this is what a live cell shows); 0 with fewer than 10 such cells or
    below 0.02 (none worth taking out)."""
    live = reporter > 0
    ratio = float(np.median(dye[live] / reporter[live])) if live.sum() >= 10 else 0.0
    return ratio if ratio > 0.02 else 0.0


def find_dye_spots(
    dye: np.ndarray,
    reporter: np.ndarray,
    *,
    pixel_size_um: float,
    dye_bg: float,
    reporter_bg: float,
    crosstalk: float = 0.0,
    min_sd: float = 8.0,
) -> np.ndarray:
    """The dye-positive spots of one frame: an array of :data:`SPOT_COLUMNS`, one row each.

    The dye channel, less its background ``dye_bg`` and the reporter's crosstalk into it
    (``crosstalk`` x the reporter above ``reporter_bg``), is averaged into pixels of about
    1 µm and smoothed over 1 µm; a spot is a connected region more than ``min_sd`` noise
    SDs above the frame's median (the SD from the median absolute deviation, so in any
    camera's units). Its area is that at half its height (at least 1 µm²): its size, not
    its brightness. :func:`detect_deaths` finds deaths among their onsets
    (``dye_spots``)."""
    from scipy import ndimage as ndi

    f = max(1, round(1.0 / pixel_size_um))  # pixels averaged along each axis
    ny, nx = (dye.shape[0] // f) * f, (dye.shape[1] // f) * f
    none = np.zeros((0, len(SPOT_COLUMNS)))
    if ny == 0 or nx == 0:
        return none

    def binned(image: np.ndarray) -> np.ndarray:
        a = np.asarray(image[:ny, :nx], np.float32)
        if f == 1:
            return a
        # the blocks' means from strided views (~10x faster than a reshaped mean)
        out = a[::f, ::f].copy()
        for i in range(f):
            for j in range(f):
                if i or j:
                    out += a[i::f, j::f]
        return out * np.float32(1.0 / (f * f))

    px = pixel_size_um * f  # of the binned image
    rep = binned(reporter) - np.float32(reporter_bg)
    d = binned(dye) - np.float32(dye_bg)
    if crosstalk > 0:
        d -= np.float32(crosstalk) * rep
    d = ndi.gaussian_filter(d, 1.0 / px, truncate=3.0)
    sample = d[:: max(1, d.shape[0] // 256), :: max(1, d.shape[1] // 256)]
    med = float(np.median(sample))
    sd = 1.4826 * float(np.median(np.abs(sample - med)))
    if not sd > 0:
        return none
    z = (d - med) / np.float32(sd)
    lab, n = ndi.label(z > min_sd)
    if n == 0:
        return none
    # statistics over the spots' pixels only (a few hundred in a frame of a million)
    idx = np.flatnonzero(lab)
    which = lab.ravel()[idx]
    zs = z.ravel()[idx]
    order = np.lexsort((zs, which))  # by spot, brightest last
    which, idx, zs = which[order], idx[order], zs[order]
    ends = np.r_[np.flatnonzero(np.diff(which)), len(which) - 1]
    peak = zs[ends].astype(float)
    count = np.bincount(which, minlength=n + 1)[1:].astype(float)
    cy = np.bincount(which, idx // d.shape[1], n + 1)[1:] / count
    cx = np.bincount(which, idx % d.shape[1], n + 1)[1:] / count
    rep_mean = np.bincount(which, rep.ravel()[idx], n + 1)[1:] / count
    # the area at half the spot's height: its size, whatever its brightness (at the
    # detection threshold, the blur around a bright spot would count too)
    half = zs >= (peak / 2)[which - 1]
    area = np.bincount(which[half], minlength=n + 1)[1:] * px**2
    out = np.column_stack([(cy + 0.5) * f - 0.5, (cx + 0.5) * f - 0.5, area, peak, rep_mean])
    return out[area >= 1.0]


def _dye_noise(df: pd.DataFrame, dye: pd.Series) -> float:
    """The dye channel's unit of intensity in a movie: the median, over all cell rows, of
    the dye's standard deviation within the cell (``dye_std``; most cells are alive, so
    this is the pixel noise of a live cell in the dye channel). Without that column, the
    median over frames of the spread of ``dye`` (above the frame's live level) across
    cells (interquartile range / 1.349). 1 when neither is positive (no noise to scale by:
    the raw units are kept)."""
    std = df.get(f"{col.ROLE_DYE}_std")
    if std is not None:
        s = float(np.nanmedian(std.to_numpy(float))) if len(std) else np.nan
        if s > 0:
            return s
    q = dye.groupby(df[col.FRAME]).quantile([0.25, 0.75]).unstack()
    s = float(np.nanmedian((q[0.75] - q[0.25]).to_numpy(float))) / 1.349 if len(q) else np.nan
    return s if s > 0 else 1.0


def _track_death(
    g: pd.DataFrame,
    cfg: DeathConfig,
    has_dye: bool,
    win: dict[str, int],
    interval_s: float,
    *,
    shrink_ok: bool = True,
) -> dict | None:
    """Death of one track (rows sorted by frame), or None. ``win``: :func:`_windows`.
    ``shrink_ok`` False: a rupture only (the shrinkage found before was not a death)."""
    frames = g[col.FRAME].to_numpy()
    area = g[col.AREA_UM2].to_numpy(float)
    rep = g["reporter_rel"].to_numpy(float)
    n = len(g)
    if n < win["min_track"]:
        return None
    k0 = max(2, min(win["baseline"], n // 3))
    if has_dye:
        # a rupture within the baseline's frames: the baseline is what came before it
        early = _early_rupture(area, rep, g["dye_rel"].to_numpy(float), k0, win["rupture"], cfg)
        if early > 0:
            k0 = early
    base_area = float(np.median(area[:k0]))
    base_rep = float(np.median(rep[:k0]))
    if not (base_area > 0 and base_rep > 0):
        return None
    a_rel = _rolling_median(area / base_area)
    r_rel = rep / base_rep
    # the cell's whole reporter (mean x area): a swelling cell dilutes its reporter but keeps
    # all of it; a ruptured one loses it. So a rupture is found on the whole, and dilution,
    # however fast at the frame rate, is not taken for one.
    tot = r_rel * area / base_area

    # necroptotic rupture: an abrupt, lasting loss of reporter
    rupture = -1
    w = win["rupture"]
    candidates = _rupture_candidates(tot, w, cfg)  # the rest fail the test's first part
    for i in candidates[candidates >= k0].tolist():
        if _ruptures_at(tot, r_rel, i, w, cfg):
            rupture = i
            break
    # apoptotic shrinkage: area clearly and lastingly below baseline, and no recovery later
    # (a dying cell does not grow back; a cell squeezed by a neighbour or half out of the
    # field does)
    shrink = _first_sustained(a_rel <= cfg.shrink_fraction, k0, win["sustain"]) if shrink_ok else -1
    if shrink >= 0 and np.median(a_rel[shrink:]) > cfg.shrink_fraction + 0.05:
        shrink = -1
    if shrink >= 0:
        shrink = _shrink_start(area, a_rel, shrink, k0, base_area, win["sustain"], cfg)
    # the dye's lasting rise, as an index (-1: none; not looked for in a track with no
    # change to call)
    dye_at = -1
    if has_dye and (rupture >= 0 or shrink >= 0):
        dye = g["dye_rel"].to_numpy(float)
        lo = float(np.median(dye[:k0]))
        hi = float(np.max(_rolling_median(dye)))
        if hi - lo > cfg.dye_min_rise_sd:
            hit = np.flatnonzero(dye >= lo + 0.5 * (hi - lo))
            hit = hit[hit >= k0 - 1]
            if hit.size:
                dye_at = int(hit[0])
    # a shrinkage that ends in a jump to a smaller object is a division the tracker did
    # not see, unless the cell concentrated its reporter as it shrank and takes up the
    # dead-cell dye afterwards: an apoptotic cell falling apart into bodies (a dividing
    # cell never takes up the dye; a live cell whose outline a neighbour's merge or split
    # trimmed keeps its concentration, even when the dye of a dying neighbour comes later)
    split = _splits_in_two(g, area, shrink, cfg) if shrink >= 0 else 0
    if split:
        # the concentration up to the jump (after it, the track follows a piece)
        level = _concentration_before(r_rel, shrink, win, until=split)
        if not (level >= cfg.shrink_min_concentration and dye_at >= shrink):
            shrink = -1

    if rupture < 0 and shrink < 0:
        return None
    if rupture >= 0 and (shrink < 0 or rupture <= shrink + 1):
        i = rupture
        pre = float(np.max(tot[max(0, i - w) : i]))
        post = float(np.median(tot[i : min(i + max(w, 2), n)]))
        half = pre - 0.5 * (pre - post)
        j = i - 1
        while j >= 0 and tot[j] <= half:  # half the drop may already be there a frame earlier
            j -= 1
        death = j + 1
        kind = "rupture"
    else:
        death = shrink
        kind = "shrink"
    # onset: walk back while the area is already changing
    onset = death
    while onset - 1 >= k0 and abs(a_rel[onset - 1] - 1) > cfg.onset_tolerance:
        onset -= 1
    pre_idx = max(0, death - 1)
    after = slice(death, min(n, death + win["after"]))
    feats = {
        "area_ratio_before": float(np.max(a_rel[max(0, onset - 1) : death + 1]))
        if kind == "rupture"
        else float(a_rel[pre_idx]),
        "area_ratio_min": float(np.min(a_rel[: death + 1])),
        # from its last level before the death (a swelling cell's reporter dilutes first)
        "reporter_drop": float(
            1 - np.median(r_rel[after]) / max(np.max(r_rel[max(0, death - 2) : death]), 1e-9)
        )
        if death > 0
        else 0.0,
        # up to and including the death frame: the reporter concentrates as the cell shrinks
        "reporter_ratio_before": _concentration_before(r_rel, death, win),
        "circularity_change": float(
            g["circularity"].iloc[pre_idx] - g["circularity"].iloc[:k0].median()
        )
        if "circularity" in g
        else 0.0,
        "solidity_min_after": float(g["solidity"].iloc[after].min()) if "solidity" in g else 1.0,
        "fragments_max_after": float(g["n_fragments"].iloc[death:].max())
        if "n_fragments" in g
        else 1.0,
    }
    # the reporter's concentration over the shrinkage as it goes on (it takes the
    # ``sustain`` frames after the death that a shrinkage must last to build up where the
    # frames are fast): whether the outline shrank with the cell, not only whether it did
    feats["concentration"] = _concentration_before(r_rel, death, win, until=death + win["sustain"])
    dye_frame = float(frames[dye_at]) if dye_at >= 0 else np.nan
    feats["dye_lag_min"] = (
        float(dye_frame - frames[death]) * interval_s / 60.0 if np.isfinite(dye_frame) else np.nan
    )
    return {"index": death, "onset_index": onset, "dye_frame": dye_frame, "kind": kind, **feats}


def _near_edge(g: pd.DataFrame, i: int, win: dict[str, int], shape: tuple[int, int]) -> bool:
    """Whether the cell's centre comes within its baseline radius (+1 px) of the image edge
    around row ``i`` of its track ``g``."""
    if not {col.Y, col.X, col.Y_UM} <= set(g.columns):
        return False
    rows = g.iloc[max(0, i - win["sustain"]) : i + win["sustain"] + 1]
    y, x = rows[col.Y].to_numpy(float), rows[col.X].to_numpy(float)
    ok = g[col.Y].to_numpy(float) > 0
    if not ok.any():
        return False
    px = float(np.median(g[col.Y_UM].to_numpy(float)[ok] / g[col.Y].to_numpy(float)[ok]))
    base = float(np.median(g[col.AREA_UM2].to_numpy(float)[: win["baseline"]]))
    r = np.sqrt(base / np.pi) / px + 1
    d = np.minimum.reduce([y, x, shape[0] - 1 - y, shape[1] - 1 - x])
    return bool((d < r).any())


def _p_necroptotic(f: dict, cfg: DeathConfig, interval_s: float) -> float:
    """Interpretable score: swelling, abrupt reporter loss and early dye push towards necroptosis;
    shrinkage, reporter concentration, fragments and late dye towards apoptosis."""
    z = 0.0
    z += 6.0 * (f["area_ratio_before"] - 1.0)  # swelling (+) or shrinkage (-)
    z += 4.0 * (f["reporter_drop"] - 0.3)  # abrupt loss at rupture
    z -= 3.0 * max(f["reporter_ratio_before"] - 1.1, 0)  # concentration before death
    z -= 0.8 * min(max(f["fragments_max_after"] - 1, 0), 4)  # apoptotic bodies (3-6)
    lag = f["dye_lag_min"]
    if np.isfinite(lag):
        early = max(cfg.dye_early_min, interval_s / 60.0)  # or in the next frame
        z += 1.5 if lag <= early else -1.5  # dye at once vs late
    return float(1 / (1 + np.exp(-z)))


def _dye_at_once(found: dict, cfg: DeathConfig, interval_s: float) -> bool:
    """Whether the dye came within ``dye_early_min`` (or the next frame) of the death."""
    lag = found["dye_lag_min"]
    return bool(np.isfinite(lag) and abs(lag) <= max(cfg.dye_early_min, interval_s / 60.0))


def _not_a_death(
    found: dict,
    g: pd.DataFrame,
    is_parent: bool,
    win: dict[str, int],
    cfg: DeathConfig,
    image_shape: tuple[int, int] | None,
) -> bool:
    """Whether the change :func:`_track_death` found in track ``g`` is something else than a
    death: a dividing cell rounding up, a cell moving out of the field, or an outline the
    segmentation trimmed."""
    i = found["index"]
    if is_parent and i >= len(g) - win["guard"]:
        return True  # rounding up before a division
    if "touches_border" in g and found["kind"] == "shrink":
        border = g["touches_border"].to_numpy(bool)
        if border[i] and not border[: win["baseline"]].any():
            return True  # moving out of the field shrinks the visible area
        near = border[max(0, i - win["sustain"]) : i + win["sustain"] + 1].any()
        if image_shape is not None:
            # or within its own (baseline) radius of the edge: the field's drift may
            # carry a cell out, and its outline at the edge comes and goes
            near = near or _near_edge(g, i, win, image_shape)
        if near and found["reporter_ratio_before"] < cfg.border_min_concentration:
            # at the edge, visible area comes and goes as the cell drifts; only a
            # shrinkage that also concentrates the reporter is apoptosis there
            return True
    # an outline that shrinks with the reporter as it was, whole or in two pieces, and no
    # dye: the segmentation trimmed a live cell (a neighbour pressing, the seam between
    # them drawn elsewhere, the outline cut in two); an apoptotic cell concentrates its
    # reporter as it shrinks, then falls into bodies (``shrink_min_fragments``), and takes
    # up the dye
    return bool(
        found["kind"] == "shrink"
        and found["concentration"] < cfg.shrink_min_concentration
        and found["fragments_max_after"] < cfg.shrink_min_fragments
        and not np.isfinite(found["dye_frame"])
    )


def _one_call_per_death(
    rows: list[dict],
    sizes: list[tuple[float, int, int]],
    w: int,
    t0: int,
    spot_keys: Sequence[tuple[int, int] | None] | None = None,
) -> list[int]:
    """Which calls to keep (indices into ``rows``) when one death was called on two tracks:
    the pieces of one dying cell that the segmentation split (each ruptures and takes up
    the dye at once), or a cell and, later, its ghost.

    ``sizes``: each call's area at the death, its track's length and first frame. Two
    calls within ``w`` frames (at least 1) are one death when their centres are closer
    than 0.75 x the sum of their radii (from their areas at the death; two whole cells
    side by side are a sum of radii apart), or closer than that sum when one of the two
    tracks began at most ``w + 1`` frames before its death, after the movie's first frame
    ``t0`` (a piece split off a dying cell). The call on the longer track is kept (more of
    the cell's history behind its features). A later call closer than 0.75 x the sum of
    the radii to an earlier one, on a track begun after that death and with no dye rise of
    its own, is the dead cell's ghost fading: dropped; so is a later call within the earlier
    death's radius on a track begun after it, with or without a dye rise (the dead cell's
    remains: an apoptotic cell's bodies take up the dye hours later).

    ``spot_keys``: each call's dye spot (:func:`_spot_keys`), or None; two calls within
    ``w`` frames on the same spot are one death whatever their distance (one nucleus took up
    the dye: a swollen cell cut in two, or a neighbour merged with it, ruptures once)."""
    keep = list(range(len(rows)))
    if len(rows) < 2:
        return keep
    frame = np.array([r[col.FRAME] for r in rows], float)
    yx = np.array([[r[col.Y_UM], r[col.X_UM]] for r in rows], float)
    radius = np.sqrt(np.array([a for a, _, _ in sizes]) / np.pi)
    length = np.array([n for _, n, _ in sizes])
    first = np.array([f for _, _, f in sizes], float)
    # (a track there from the movie's first frame was not split off anything)
    young = (frame - first <= w + 1) & (first > t0)

    def dist(j: int, k: int) -> float:
        return float(np.hypot(*(yx[j] - yx[k])))

    def ratio(j: int, k: int) -> float:
        return dist(j, k) / float(radius[j] + radius[k])

    def one_death(j: int, k: int) -> bool:
        if abs(frame[j] - frame[k]) > max(w, 1):
            return False
        if spot_keys is not None and spot_keys[j] is not None and spot_keys[j] == spot_keys[k]:
            return True
        r = ratio(j, k)
        return r < 0.75 or (r < 1.0 and bool(young[j] or young[k]))

    kept: list[int] = []
    for k in sorted(keep, key=lambda k: (-length[k], frame[k])):
        if not any(one_death(j, k) for j in kept):
            kept.append(k)
    # the remains of a cell whose death was called before, on a track begun after that
    # death: in its place, with no dye rise of their own (what they lose is the ghost
    # fading), or within the dead cell's own radius whatever the dye (an apoptotic cell's
    # bodies take up the dye later, and break up further); the earlier call is the death
    no_dye_rise = np.array([not np.isfinite(r[col.DYE_FRAME]) for r in rows])

    def remains(j: int, k: int) -> bool:
        if first[k] <= frame[j]:
            return False
        return dist(j, k) < radius[j] or (bool(no_dye_rise[k]) and ratio(j, k) < 0.75)

    deaths: list[int] = []
    for k in sorted(kept, key=lambda k: frame[k]):
        if not any(remains(j, k) for j in deaths):
            deaths.append(k)
    return sorted(deaths)


def _spot_keys(
    rows: list[dict],
    frames: Sequence[np.ndarray],
    typical_area: float,
    pixel_size_um: float,
    cfg: DeathConfig,
    interval_s: float,
) -> list[tuple[int, int] | None]:
    """Each call's dye spot, as (frame, index into that frame's spots): for a call whose
    dye came at once (a rupture; an apoptotic cell's dye comes late, in its bodies), the
    spot nearest its centre within a median cell's radius, at its death's frame or, with
    none there, the next; None for the other calls."""
    reach = np.sqrt(typical_area / np.pi) / pixel_size_um  # pixels
    keys: list[tuple[int, int] | None] = []
    for r in rows:
        key = None
        if _dye_at_once(r, cfg, interval_s):
            for t in (int(r[col.FRAME]), int(r[col.FRAME]) + 1):
                p = frames[t] if t < len(frames) else ()
                if len(p):
                    d = np.hypot(p[:, 0] - r[col.Y], p[:, 1] - r[col.X])
                    if d.min() < reach:
                        key = (t, int(np.argmin(d)))
                        break
        keys.append(key)
    return keys


def _dye_onsets(
    frames: Sequence[np.ndarray],
    typical: float,
    df: pd.DataFrame,
    trend: pd.Series,
    parents: set,
    called: set,
    win: dict[str, int],
    cfg: DeathConfig,
    interval_s: float,
    pixel_size_um: float,
    image_shape: tuple[int, int] | None,
) -> tuple[list[dict], list[tuple[float, int, int]]]:
    """Deaths seen in the dye channel: a spot at least ``onset_min_cell_fraction`` of the
    median cell's area where no spot was in the ``before`` window (8 minutes) and that
    stays for the ``sustain`` window. A necroptotic cell takes up the dye all over at
    once, whatever its outline: on dense development movies the swelling cell had been
    merged into a neighbour or cut into pieces for frames before it ruptured, so no track
    ended there. An apoptotic cell's bodies take up the dye later, each a small spot.
    Returns event rows and their sizes (as :func:`_one_call_per_death` takes them; a
    length of 0, so a call on a track wins over a dye onset of the same death). A track
    that ended near the spot shortly before gives its ``track_id``, unless it divided or
    already has a call (``parents``, ``called``). ``frames``: each frame's spots (an array
    of :data:`SPOT_COLUMNS`); ``typical``: the median cell's area (µm²)."""
    min_area = cfg.onset_min_cell_fraction * typical
    near = 0.75 * np.sqrt(typical / np.pi) / pixel_size_um  # pixels
    back, ahead = win["before"], win["sustain"]

    def any_near(t: int, y: float, x: float) -> bool:
        # every spot of at least 1 µm² counts as the dye having been (or stayed) there
        p = frames[t]
        return bool(len(p)) and bool((np.hypot(p[:, 0] - y, p[:, 1] - x) < near).any())

    last = df.groupby(col.TRACK_ID, sort=False).tail(1)
    last = last[~last[col.TRACK_ID].isin(parents | called)]
    rows, sizes = [], []
    for t in range(back, len(frames) - ahead):
        spots = frames[t]
        for y, x, a, _peak, rep in spots[spots[:, 2] >= min_area]:
            if (
                image_shape is not None
                and min(y, x, image_shape[0] - 1 - y, image_shape[1] - 1 - x) < near
            ):
                continue  # at the edge: a dead cell drifting in looks new
            if any(any_near(t - k, y, x) for k in range(1, back + 1)):
                continue
            if not all(any_near(t + k, y, x) for k in range(1, ahead + 1)):
                continue
            # the dying cell's own track, when one ended there shortly before (merged into
            # a neighbour, or lost as it swelled)
            cand = last[
                last[col.FRAME].between(t - 2 * back, t)
                & (
                    np.hypot(last[col.Y] - y, last[col.X] - x)
                    < near + np.sqrt(last[col.AREA_UM2] / np.pi) / pixel_size_um
                )
            ]
            tid = None
            if len(cand):
                d = np.hypot(cand[col.Y] - y, cand[col.X] - x).to_numpy()
                tid = int(cand[col.TRACK_ID].iloc[int(np.argmin(d))])
            level = float(trend.get(t, np.nan))
            drop = float(np.clip(1.0 - rep / level, 0.0, 1.0)) if level > 0 else np.nan
            # the built-in score's terms that a spot has: the reporter lost, dye at once
            z = 1.5 + (4.0 * (drop - 0.3) if np.isfinite(drop) else 0.0)
            p = float(1 / (1 + np.exp(-z)))
            rows.append(
                {
                    col.TRACK_ID: tid,
                    col.FRAME: t,
                    col.T_S: t * interval_s,
                    col.Y: y,
                    col.X: x,
                    col.Y_UM: y * pixel_size_um,
                    col.X_UM: x * pixel_size_um,
                    col.MODE: mode_from_p(p, cfg.uncertain_margin),
                    col.P_NECROPTOTIC: round(p, 4),
                    col.ONSET_FRAME: t,
                    col.DYE_FRAME: float(t),
                    **{k: np.nan for k in EVENT_COLUMNS[12:]},
                    "reporter_drop": drop,
                    "dye_lag_min": 0.0,
                }
            )
            sizes.append((float(a), 0, t))
    return rows, sizes


def detect_deaths(
    tracks: pd.DataFrame,
    lineage: pd.DataFrame | None = None,
    config: DeathConfig | None = None,
    *,
    interval_s: float,
    reporter: str = col.ROLE_CELLS,
    image_shape: tuple[int, int] | None = None,
    dye_spots: Sequence[np.ndarray] | None = None,
    pixel_size_um: float | None = None,
) -> pd.DataFrame:
    """One row per death among target-cell tracks, and among the dye's onsets.

    Parameters
    ----------
    tracks
        Target-cell rows of ``tracks.csv``: ``frame, track_id, y, x, y_um,
        x_um, area_um2, <reporter>_mean`` (and ``dye_mean``, ``circularity``,
        ``solidity``, ``n_fragments``, ``touches_border`` when present; ``dye_std``, the
        dye's spread within each cell, sets the unit of ``dye_min_rise_sd``).
    lineage
        ``parent_id, child_id, frame``: parents of divisions are not deaths.
    config
        Thresholds (:class:`deathtrack.config.DeathConfig`).
    interval_s
        Frame interval, for ``t_s``.
    reporter
        Prefix of the cytoplasmic reporter's intensity columns.
    image_shape
        (Y, X) of the frames: calls at the field's edge are judged with it.
    dye_spots, pixel_size_um
        The dye's spots in every frame of the movie (:func:`find_dye_spots`, one array per
        frame) and the pixel size: with ``config.dye_onsets``, a death that no track shows
        but the dye does (a spot of a cell's size appearing where there was none, see
        :func:`_dye_onsets`) is called too, with no ``track_id`` unless a track ended there
        shortly before, and its shape features empty. Two calls whose dye came at once
        and whose nearest spot is the same spot are one death (:func:`_spot_keys`).

    Returns
    -------
    DataFrame
        :data:`EVENT_COLUMNS`, sorted by frame then track.
    """
    cfg = config or DeathConfig()
    mean_col = f"{reporter}_mean"
    if tracks.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    missing = [c for c in (col.FRAME, col.TRACK_ID, col.AREA_UM2, mean_col) if c not in tracks]
    if missing:
        raise ValueError(f"`tracks` lacks column(s) {missing}; found {list(tracks.columns)}")
    df = tracks.sort_values([col.TRACK_ID, col.FRAME]).copy()
    # signal above the frame's background (camera offset and background light would
    # otherwise hide a rupture at low signal), divided by the photobleaching trend so that
    # bleaching is not a death. The trend is an exponential fitted to the frames' median
    # cell (robustly: Theil-Sen), not each frame's median itself: when a treatment kills
    # many cells in the same frames, their ruptures pull the frame median down and would
    # hide one another.
    signal = df[mean_col] - df.get(f"{reporter}_bg", 0.0)
    signal = signal.clip(lower=0)
    frame_median = signal.groupby(df[col.FRAME]).median()
    trend = _bleaching_trend(frame_median)
    norm = df[col.FRAME].map(trend)
    df["reporter_rel"] = signal / norm.where(norm > 0)
    has_dye = f"{col.ROLE_DYE}_mean" in df
    if has_dye:
        # dye above what live cells show in that frame (the lower quartile of all cells:
        # most cells are alive even when many die at once)
        d = df[f"{col.ROLE_DYE}_mean"] - df.get(f"{col.ROLE_DYE}_bg", 0.0)
        # the reporter's crosstalk into the dye channel: in proportion to each cell's own
        # reporter (so a rupture would lower the "dye"), taken out at the ratio most cells,
        # the live ones, show
        ratio = reporter_crosstalk(signal.to_numpy(float), d.to_numpy(float))
        if ratio > 0:
            d = d - ratio * signal
        d = d - d.groupby(df[col.FRAME]).transform(lambda x: x.quantile(0.25))
        # in units of the dye's pixel noise, so that ``dye_min_rise_sd`` means the same in
        # any camera's units (8-bit, 16-bit, float scaled to 0-1)
        df["dye_rel"] = d / _dye_noise(df, d)
    parents = set(lineage[col.PARENT_ID]) if lineage is not None and len(lineage) else set()
    win = _windows(cfg, interval_s)
    rows = []
    sizes: list[tuple[float, int, int]] = []  # area at the death; track length, first frame
    for tid, g in df.groupby(col.TRACK_ID, sort=True):
        g = g.reset_index(drop=True)
        found = _track_death(g, cfg, has_dye, win, interval_s)
        if found is None:
            continue
        if _not_a_death(found, g, tid in parents, win, cfg, image_shape):
            if found["kind"] != "shrink":
                continue
            # the shrinkage was not a death; a rupture later in the track may be, when the
            # dye comes with it (what made the outline shrink, a neighbour or the field's
            # edge, may also make the reporter seem to drop)
            found = _track_death(g, cfg, has_dye, win, interval_s, shrink_ok=False)
            if (
                found is None
                or not _dye_at_once(found, cfg, interval_s)
                or _not_a_death(found, g, tid in parents, win, cfg, image_shape)
            ):
                continue
        i = found["index"]
        r = g.iloc[i]
        p = _p_necroptotic(found, cfg, interval_s)
        mode = mode_from_p(p, cfg.uncertain_margin)
        rows.append(
            {
                col.TRACK_ID: int(tid),
                col.FRAME: int(r[col.FRAME]),
                col.T_S: float(r[col.FRAME]) * interval_s,
                col.Y: r[col.Y],
                col.X: r[col.X],
                col.Y_UM: r[col.Y_UM],
                col.X_UM: r[col.X_UM],
                col.MODE: mode,
                col.P_NECROPTOTIC: round(p, 4),
                col.ONSET_FRAME: int(g[col.FRAME].iloc[found["onset_index"]]),
                col.DYE_FRAME: found["dye_frame"],
                **{k: found[k] for k in EVENT_COLUMNS[12:]},
            }
        )
        sizes.append((float(r[col.AREA_UM2]), len(g), int(g[col.FRAME].iloc[0])))
    spot_frames, typical = None, np.nan  # each frame's dye spots; the median cell's area
    if has_dye and dye_spots is not None and pixel_size_um:
        area = df[col.AREA_UM2].to_numpy(float)
        typical = float(np.nanmedian(area)) if np.isfinite(area).any() else np.nan
        if typical > 0:
            spot_frames = [np.asarray(s, float).reshape(-1, len(SPOT_COLUMNS)) for s in dye_spots]
    if spot_frames is not None and cfg.dye_onsets:
        found, found_sizes = _dye_onsets(
            spot_frames,
            typical,
            df,
            trend,
            parents,
            {r[col.TRACK_ID] for r in rows},
            win,
            cfg,
            interval_s,
            pixel_size_um,
            image_shape,
        )
        rows += found
        sizes += found_sizes
    t0 = int(df[col.FRAME].min())
    keys = None
    if spot_frames is not None:
        keys = _spot_keys(rows, spot_frames, typical, pixel_size_um, cfg, interval_s)
    rows = [rows[k] for k in _one_call_per_death(rows, sizes, win["rupture"], t0, keys)]
    events = pd.DataFrame(rows, columns=[c for c in EVENT_COLUMNS if c != col.EVENT_ID])
    if events[col.TRACK_ID].isna().any():
        events[col.TRACK_ID] = events[col.TRACK_ID].astype("Int64")  # empty: no track
    if cfg.classifier and len(events):
        from .classify import load_model, predict_p_necroptotic

        p = predict_p_necroptotic(load_model(cfg.classifier), events)
        events[col.P_NECROPTOTIC] = np.round(p, 4)
        events[col.MODE] = mode_from_p(p, cfg.uncertain_margin)
    events = events.sort_values([col.FRAME, col.TRACK_ID], kind="stable").reset_index(drop=True)
    events.insert(0, col.EVENT_ID, np.arange(1, len(events) + 1))
    return events
