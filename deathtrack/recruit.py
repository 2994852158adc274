"""Immune-cell recruitment to each death, and whether it is more than chance.

For every death event (``events.csv``) and every frame from ``-pre`` to
``+post`` frames around its death frame:

- ``n_within_r``: immune *tracks* whose centroid lies within R µm of the
  event's position (its centroid at the death frame), so one cell sitting
  there is one cell however long it stays;
- ``n_contact``: immune tracks whose mask touches the dying cell's mask
  dilated by a tolerance (the cell's mask at that frame, or at the nearest
  frame its track has when it was not segmented then);
- ``expected_within_r``: the same count around matched controls at the same
  frames — live target cells far from every event (random places in the
  field when there are too few), each corrected for the part of its disc
  that lies inside the image, then scaled to the event's own disc;
- ``uniform_within_r``: the count expected if that frame's immune cells
  were spread uniformly over the field (their number × the event's disc
  area inside the image / the field's area) — the chance level with no
  spatial preference at all, which recruited cells also raise.

Per event (:func:`summarize_events`): first contact after death, mean and
maximum count after death, the recruitment index (observed / expected after
death), distinct immune cells that came, total and median contact duration,
the part of the disc inside the image, and how the immune cells that made
contact approached (speed, chemotactic index, forward migration index, and
whether they arrested on arrival).

:func:`compare_modes` compares apoptotic with necroptotic events: difference
of means with a bootstrap 95 % CI, Cliff's delta (an effect size) with its
CI, a two-sided Mann–Whitney U p-value and a permutation p-value. With a
``stack`` column, resampling and permutations stay within each stack, so
pooling stacks never mixes one movie's immune density into another's.

**3D.** When the tables carry ``z_um`` (events, immune cells and target
cells alike), every distance is 3D in µm: R is a ball, controls keep
``control_min_distance_um`` from every event in 3D, random controls lie at
the event's own depth (like live controls, which share its frame: the chance
level then sees the same depth-dependent detection), and the approach
measures use 3D paths. Give the volume (``n_slices``, ``z_step_um``) and the
chance levels are those of the ball inside the imaged volume
(:func:`ball_fraction_inside`, ball volume / field volume), and contacts come
from (Z, Y, X) label stacks, the dying cell's mask dilated by the tolerance in
µm along every axis (anisotropic voxels). Without ``z_um`` everything is 2D,
exactly as before; a table whose ``z_um`` is one constant, without a volume
(or with a one-slice volume), gives exactly the 2D numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import pandas as pd

from . import columns as col
from .config import RecruitConfig, frames_for
from .errors import CalibrationError

logger = logging.getLogger(__name__)

__all__ = [
    "CURVE_COLUMNS",
    "STAT_COLUMNS",
    "SUMMARY_COLUMNS",
    "ball_fraction_inside",
    "compare_modes",
    "disc_fraction_inside",
    "recruitment_curves",
    "summarize_events",
]

EXPECTED_WITHIN_R = "expected_within_r"
UNIFORM_WITHIN_R = "uniform_within_r"
#: columns of ``recruitment.csv``
CURVE_COLUMNS = [
    col.EVENT_ID,
    col.DT,
    col.T_REL_S,
    col.FRAME,
    col.N_WITHIN_R,
    col.N_CONTACT,
    EXPECTED_WITHIN_R,
    UNIFORM_WITHIN_R,
]
#: per-event recruitment columns added to ``events.csv``
SUMMARY_COLUMNS = [
    "first_contact_s",
    "mean_within_r_pre",
    "mean_within_r_post",
    "max_within_r_post",
    "expected_within_r_post",
    "recruitment_index",
    "n_immune_distinct",
    "n_immune_contact",
    "contact_total_s",
    "contact_median_s",
    "disc_fraction",
    "approach_speed_um_per_min",
    "approach_chemotactic_index",
    "approach_fmi",
    "arrest_on_arrival",
]
#: columns of ``recruitment_stats.csv``
STAT_COLUMNS = [
    "metric",
    "n_apoptotic",
    "n_necroptotic",
    "mean_apoptotic",
    "mean_necroptotic",
    "difference",
    "ci_low",
    "ci_high",
    "effect_size",
    "effect_size_ci_low",
    "effect_size_ci_high",
    "effect_size_name",
    "p_value",
    "test",
    "p_permutation",
]
#: metrics compared between modes by default; the first is the primary one
DEFAULT_METRICS = (
    "mean_within_r_post",
    "recruitment_index",
    "max_within_r_post",
    "n_immune_distinct",
    "contact_total_s",
    "first_contact_s",
)

LabelsAt = Callable[[int], np.ndarray]


def disc_fraction_inside(
    y: float, x: float, radius: float, shape_yx: tuple[int, int], *, n: int = 64
) -> float:
    """Fraction of the disc of ``radius`` (pixels) around ``(y, x)`` inside the image.

    Integrated on an ``n`` × ``n`` grid of points over the disc's bounding
    square (error well below 1 % for ``n = 64``).
    """
    if radius <= 0:
        return 1.0
    g = (np.arange(n) + 0.5) / n * 2 - 1
    gy, gx = np.meshgrid(g, g, indexing="ij")
    inside_disc = gy**2 + gx**2 <= 1
    py, px = y + gy * radius, x + gx * radius
    h, w = shape_yx
    inside = inside_disc & (py >= -0.5) & (py <= h - 0.5) & (px >= -0.5) & (px <= w - 0.5)
    return float(inside.sum() / inside_disc.sum())


def ball_fraction_inside(
    center_zyx: np.ndarray,
    radius_um: float,
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    *,
    n: int = 64,
) -> np.ndarray | float:
    """Fraction of the ball of ``radius_um`` around each centre inside the (Z, Y, X) volume.

    The ball is cut into columns along z on an ``n`` × ``n`` grid of points
    over its (Y, X) bounding square; each column inside the field counts with
    the exact length of its chord inside the volume's depth. A ball cut by the
    top or bottom of the volume (the usual case: stacks are thin) is within
    ~0.1 % of the exact cap formula, one cut by the field's sides within ~1 %
    (as :func:`disc_fraction_inside`); tested.

    Parameters
    ----------
    center_zyx
        One centre ``(3,)`` or ``k`` centres ``(k, 3)``, in voxels ``(z, y, x)``.
    radius_um
        The ball's radius in µm.
    shape_zyx, spacing_zyx
        The volume in voxels and the voxel size in µm (z step, pixel size, pixel
        size): the ball is round in µm, an ellipsoid in voxels.
    n
        Grid points per axis over the ball's (Y, X) bounding square.

    Returns
    -------
    float or ndarray
        One fraction per centre (a float for one centre); exactly 1 for balls
        wholly inside.
    """
    c = np.asarray(center_zyx, float)
    one = c.ndim == 1
    spacing = np.asarray(spacing_zyx, float)
    c = c.reshape(-1, 3) * spacing  # µm
    out = np.ones(len(c))
    if radius_um > 0 and len(c):
        lo = -0.5 * spacing
        hi = (np.asarray(shape_zyx, float) - 0.5) * spacing
        cut = ((c - radius_um < lo) | (c + radius_um > hi)).any(axis=1)
        if cut.any():
            g = (np.arange(n) + 0.5) / n * 2 - 1
            gy, gx = np.meshgrid(g, g, indexing="ij")
            disc = gy**2 + gx**2 < 1
            dy, dx = gy[disc] * radius_um, gx[disc] * radius_um
            half = radius_um * np.sqrt(1 - gy[disc] ** 2 - gx[disc] ** 2)  # half chords
            for i in np.flatnonzero(cut):
                zc, yc, xc = c[i]
                chord = np.minimum(zc + half, hi[0]) - np.maximum(zc - half, lo[0])
                y, x = yc + dy, xc + dx
                side = (y >= lo[1]) & (y <= hi[1]) & (x >= lo[2]) & (x <= hi[2])
                out[i] = np.clip(chord, 0, None)[side].sum() / (2 * half.sum())
    return float(out[0]) if one else out


def _z_values(table: pd.DataFrame | None, name: str) -> bool:
    """Whether ``table`` carries ``z_um`` (a column with values; all-NaN counts as none)."""
    if table is None or col.Z_UM not in table.columns:
        return False
    z = pd.to_numeric(table[col.Z_UM], errors="coerce")
    if z.isna().all():
        return False
    if z.isna().any():
        i = int(np.flatnonzero(z.isna().to_numpy())[0])
        label, value = table.index[i], table[col.Z_UM].iloc[i]
        label = label.item() if isinstance(label, np.generic) else label
        value = value.item() if isinstance(value, np.generic) else value
        raise ValueError(
            f"`{name}` has `{col.Z_UM}` but its row {i} (index {label!r}) has none "
            f"({value!r}); give every row a depth in µm, or drop the column for a 2D analysis"
        )
    return True


def _dims(
    events: pd.DataFrame,
    immune: pd.DataFrame | None,
    cells: pd.DataFrame | None,
    n_slices: int | None,
    z_step_um: float | None,
) -> tuple[bool, bool]:
    """(3D distances, a volume for the chance levels), checked for consistency.

    Distances are 3D when the events carry ``z_um``; then every non-empty table
    must (and none may without it). The chance levels and contacts use a volume
    when ``n_slices`` > 1 and ``z_step_um`` are given.
    """
    is_3d = _z_values(events, "events")
    for name, table in (("immune", immune), ("cells", cells)):
        if table is None or table.empty:
            continue
        if _z_values(table, name) != is_3d:
            have, lack = ("events", name) if is_3d else (name, "events")
            raise ValueError(
                f"`{have}` has `{col.Z_UM}` but `{lack}` has not (columns "
                f"{list((events if lack == 'events' else table).columns)}): give every table "
                f"a depth for a 3D analysis, or drop `{col.Z_UM}` everywhere for a 2D one"
            )
    if (n_slices is None) != (z_step_um is None):
        given, missing = (
            ("n_slices", "z_step_um") if z_step_um is None else ("z_step_um", "n_slices")
        )
        raise CalibrationError(
            f"`{given}` is given but `{missing}` is not: a volume needs both its number of "
            f"z slices and its z step in µm (or neither, for a 2D field)"
        )
    if n_slices is not None and (int(n_slices) < 1 or not (z_step_um > 0)):
        raise CalibrationError(
            f"the volume must have n_slices >= 1 and z_step_um > 0, got n_slices={n_slices!r}, "
            f"z_step_um={z_step_um!r}"
        )
    volume = n_slices is not None and int(n_slices) > 1
    if volume and not is_3d:
        raise ValueError(
            f"a volume of {n_slices} z slices is given but `events` has no `{col.Z_UM}`: "
            f"3D recruitment needs the depth of every event and cell (or no volume, for 2D)"
        )
    return is_3d, volume


def _positions(table: pd.DataFrame, is_3d: bool) -> np.ndarray:
    """(n, 2) ``y_um, x_um`` or (n, 3) ``y_um, x_um, z_um`` positions."""
    cols = [col.Y_UM, col.X_UM, col.Z_UM] if is_3d else [col.Y_UM, col.X_UM]
    return table[cols].to_numpy(float)


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between positions (last axis ``y, x[, z]``), broadcast.

    In 3D ``hypot(hypot(dy, dx), dz)``: with ``dz = 0`` exactly the 2D distance.
    """
    d = np.hypot(a[..., 0] - b[..., 0], a[..., 1] - b[..., 1])
    if a.shape[-1] == 3:
        d = np.hypot(d, a[..., 2] - b[..., 2])
    return d


def _choose_controls(
    events: pd.DataFrame,
    cells: pd.DataFrame,
    cfg: RecruitConfig,
    shape_yx: tuple[int, int],
    pixel_size_um: float,
    is_3d: bool = False,
) -> dict[int, np.ndarray]:
    """event_id -> (k, 2 or 3) control positions in µm (live cells first, random places after).

    A control is a live target cell (a track that is not an event's) present
    at the event's death frame, at least ``control_min_distance_um`` from
    every event; when fewer than ``n_controls`` qualify, random places in the
    field as far from every event fill the rest. Seeded per event. In 3D the
    distances are 3D and a random place lies at the event's own depth; its
    ``y, x`` are drawn exactly as in 2D, so a constant depth gives the 2D
    controls.
    """
    ev_pos = _positions(events, is_3d)
    dead_tracks = set(events[col.TRACK_ID].tolist())
    h_um, w_um = shape_yx[0] * pixel_size_um, shape_yx[1] * pixel_size_um
    dim = ev_pos.shape[1]
    # live cells (tracks that are no event's) by frame, in the table's order within a frame
    alive = cells[~cells[col.TRACK_ID].isin(dead_tracks)] if len(cells) else cells
    frames = alive[col.FRAME].to_numpy(int) if len(alive) else np.empty(0, int)
    order = np.argsort(frames, kind="stable")
    frames = frames[order]
    alive_pos = _positions(alive, is_3d)[order] if len(alive) else np.empty((0, dim))

    def at_depth(p: np.ndarray, ev) -> np.ndarray:
        return np.column_stack([p, np.full(len(p), float(ev.z_um))]) if is_3d else p

    out = {}
    for ev in events.itertuples(index=False):
        rng = np.random.default_rng([cfg.seed, int(ev.event_id)])
        a, b = np.searchsorted(frames, [int(ev.frame), int(ev.frame) + 1])
        cand = alive_pos[a:b]
        if len(cand):
            d = _distance(cand[:, None, :], ev_pos[None, :, :])
            cand = cand[d.min(axis=1) >= cfg.control_min_distance_um]
        if len(cand) > cfg.n_controls:
            cand = cand[np.sort(rng.choice(len(cand), cfg.n_controls, replace=False))]
        need = cfg.n_controls - len(cand)
        extra = []
        tries = 0
        while need > 0 and tries < 200:
            tries += 1
            p = at_depth(rng.uniform([0, 0], [h_um, w_um], size=(4 * need, 2)), ev)
            d = _distance(p[:, None, :], ev_pos[None, :, :])
            p = p[d.min(axis=1) >= cfg.control_min_distance_um][:need]
            extra.append(p)
            need -= len(p)
        if need > 0:  # the events cover the field: controls anywhere, said in the log
            logger.info(
                "event %s: no room %.0f µm from every event; %d control(s) placed anywhere",
                ev.event_id,
                cfg.control_min_distance_um,
                need,
            )
            extra.append(at_depth(rng.uniform([0, 0], [h_um, w_um], size=(need, 2)), ev))
        out[int(ev.event_id)] = np.vstack([cand, *extra]) if extra else cand
    return out


class _Geometry:
    """Where the chance level is measured: the disc in the (Y, X) field, or the ball in the
    (Z, Y, X) volume."""

    def __init__(
        self,
        radius_um: float,
        pixel_size_um: float,
        shape_yx: tuple[int, int],
        n_slices: int | None,
        z_step_um: float | None,
        volume: bool,
    ):
        self.radius_um, self.px, self.shape_yx = radius_um, pixel_size_um, tuple(shape_yx)
        self.volume = volume
        self.r_px = radius_um / pixel_size_um
        if volume:
            self.dz = float(z_step_um)
            self.shape_zyx = (int(n_slices), *self.shape_yx)
            self.region = 4.0 / 3.0 * math.pi * radius_um**3
            self.field = (
                self.shape_zyx[0]
                * self.dz
                * self.shape_yx[0]
                * self.shape_yx[1]
                * (pixel_size_um**2)
            )
        else:  # in pixels, as before
            self.region = math.pi * self.r_px**2
            self.field = float(self.shape_yx[0] * self.shape_yx[1])

    def fraction(self, pos_um: np.ndarray) -> np.ndarray:
        """Part of the disc (ball) of radius R around each position inside the field (volume)."""
        pos_um = np.atleast_2d(np.asarray(pos_um, float))
        if self.volume:
            vox = np.column_stack([pos_um[:, 2] / self.dz, pos_um[:, :2] / self.px])
            spacing = (self.dz, self.px, self.px)
            return np.asarray(
                ball_fraction_inside(vox, self.radius_um, self.shape_zyx, spacing), float
            )
        y, x = pos_um[:, 0] / self.px, pos_um[:, 1] / self.px
        (h, w), r = self.shape_yx, self.r_px
        out = np.ones(len(pos_um))  # a disc wholly inside: every grid point counts, exactly 1
        cut = ~((y - r >= -0.5) & (y + r <= h - 0.5) & (x - r >= -0.5) & (x + r <= w - 0.5))
        for i in np.flatnonzero(cut):
            out[i] = disc_fraction_inside(y[i], x[i], r, self.shape_yx)
        return out


def recruitment_curves(
    events: pd.DataFrame,
    immune: pd.DataFrame,
    cells: pd.DataFrame | None = None,
    config: RecruitConfig | None = None,
    *,
    interval_s: float,
    pixel_size_um: float,
    shape_yx: tuple[int, int],
    n_frames: int,
    cell_labels: LabelsAt | None = None,
    immune_labels: LabelsAt | None = None,
    n_slices: int | None = None,
    z_step_um: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Immune counts and contacts around each event, frame by frame.

    Parameters
    ----------
    events
        ``event_id, track_id, frame, y_um, x_um[, z_um]`` (``events.csv``).
    immune
        Immune-cell tracks: ``frame, track_id, y_um, x_um[, z_um]``.
    cells
        Target-cell tracks (``frame, track_id, y_um, x_um[, z_um]``): live
        ones are the controls. Without it, controls are random places.
    config
        Radius, window, tolerance, controls (:class:`RecruitConfig`).
    interval_s, pixel_size_um
        Calibration.
    shape_yx, n_frames
        Image size in pixels and number of frames.
    cell_labels, immune_labels
        ``f(t) -> (Y, X)`` label images (``(Z, Y, X)`` stacks for a volume)
        whose values are ``track_id``; both are needed for ``n_contact`` (NaN
        without them).
    n_slices, z_step_um
        The volume's number of z slices and z step (µm), both or neither. With
        more than one slice the chance levels are the ball's in the volume and
        the label images are stacks; the tables must then carry ``z_um``
        (z slice × ``z_step_um``, like ``y_um`` = y × ``pixel_size_um``).

    Distances are 3D whenever the tables carry ``z_um`` (see the module
    docstring); without it, and without a volume, everything is 2D.

    Returns
    -------
    curves : DataFrame
        :data:`CURVE_COLUMNS`, one row per event and frame of its window
        that lies inside the movie.
    contacts : DataFrame
        ``event_id, dt, immune_track_id`` for every contact (the input of
        contact durations in :func:`summarize_events`).

    Raises
    ------
    ValueError
        Some tables carry ``z_um`` and others do not, or a volume is given
        for tables without depth.
    CalibrationError
        Only one of ``n_slices`` and ``z_step_um``, or an invalid one.
    """
    from scipy import ndimage as ndi

    cfg = config or RecruitConfig()
    empty = (
        pd.DataFrame(columns=CURVE_COLUMNS),
        pd.DataFrame(columns=[col.EVENT_ID, col.DT, "immune_track_id"]),
    )
    if events is None or events.empty:
        return empty
    is_3d, volume = _dims(events, immune, cells, n_slices, z_step_um)
    cells = cells if cells is not None else pd.DataFrame(columns=[col.FRAME, col.TRACK_ID])
    paths = _ImmunePaths(immune, is_3d)
    controls = _choose_controls(events, cells, cfg, shape_yx, pixel_size_um, is_3d)
    geo = _Geometry(cfg.radius_um, pixel_size_um, shape_yx, n_slices, z_step_um, volume)
    with_contacts = cell_labels is not None and immune_labels is not None
    tol_px = int(math.ceil(cfg.contact_tolerance_um / pixel_size_um))
    struct = ndi.generate_binary_structure(2, 1)
    if volume:  # the tolerance in voxels along z, y, x
        tol_vox = (int(math.ceil(cfg.contact_tolerance_um / geo.dz)), tol_px, tol_px)
    else:
        tol_vox = (tol_px, tol_px)

    dying = cells[cells[col.TRACK_ID].isin(events[col.TRACK_ID])] if len(cells) else cells
    track_frames = {
        int(k): np.sort(g[col.FRAME].to_numpy()) for k, g in dying.groupby(col.TRACK_ID)
    }
    pre = frames_for(cfg.pre_min, interval_s, at_least=0)
    post = frames_for(cfg.post_min, interval_s, at_least=0)
    rows, jobs = [], []
    for ev in events.sort_values(col.EVENT_ID).itertuples(index=False):
        eid, f0 = int(ev.event_id), int(ev.frame)
        # a death only the dye showed may have no track (0 here): its contacts are unknown
        tid = int(ev.track_id) if pd.notna(ev.track_id) else 0
        center = np.array([ev.y_um, ev.x_um, ev.z_um] if is_3d else [ev.y_um, ev.x_um], float)
        frac_ev = float(geo.fraction(center)[0])
        ctl = controls[eid]
        fctl = geo.fraction(ctl)
        ok = fctl > 0
        own = track_frames.get(tid, np.array([f0]))
        # every frame of the window inside the movie at once: the event (column 0) and its
        # controls
        t0, t1 = max(f0 - pre, 0), min(f0 + post + 1, n_frames)
        counts, n_all = paths.near_counts(t0, t1, np.vstack([center, ctl]), cfg.radius_um)
        for t in range(t0, t1):
            dt = t - f0
            n_within = int(counts[t - t0, 0])
            c = counts[t - t0, 1:]
            expected = float(np.mean(c[ok] / fctl[ok]) * frac_ev) if ok.any() else math.nan
            uniform = int(n_all[t - t0]) * frac_ev * geo.region / geo.field
            if with_contacts and tid > 0:
                # the cell's own mask at t, else at the nearest frame its track has
                tm = int(own[np.argmin(np.abs(own - t))]) if len(own) else t
                jobs.append((t, tm, tid, eid, dt, len(rows)))
            rows.append([eid, dt, dt * interval_s, t, n_within, math.nan, expected, uniform])

    # contacts frame by frame: each label image is read (and relabelled) once per frame,
    # and each dying cell's mask is cut out of it by its bounding box
    contact_rows = []
    if with_contacts:
        ndim = len(tol_vox)

        def labels(f: LabelsAt, t: int, what: str) -> np.ndarray:
            lab = np.asarray(f(t))
            if lab.ndim != ndim:
                want = "(Z, Y, X) stacks for a volume" if volume else "(Y, X) images"
                raise ValueError(
                    f"`{what}({t})` has shape {lab.shape}; recruitment needs {want} "
                    f"(n_slices={n_slices})"
                )
            return lab

        @lru_cache(maxsize=4)
        def boxes(tm: int):
            lab = labels(cell_labels, tm, "cell_labels")
            return lab, ndi.find_objects(lab)

        current_t, immune_lab = None, None
        for t, tm, tid, eid, dt, row in sorted(jobs):
            if t != current_t:
                current_t, immune_lab = t, labels(immune_labels, t, "immune_labels")
            lab, objs = boxes(tm)
            touching = np.empty(0, int)
            sl = objs[tid - 1] if 0 < tid <= len(objs) else None
            if sl is not None:
                sl = tuple(
                    slice(max(s_.start - k, 0), min(s_.stop + k, n))
                    for s_, k, n in zip(sl, tol_vox, lab.shape)
                )
                mask = lab[sl] == tid
                if volume and cfg.contact_tolerance_um > 0:
                    # dilated by the tolerance in µm along every axis (anisotropic voxels)
                    dist = ndi.distance_transform_edt(~mask, sampling=(geo.dz, geo.px, geo.px))
                    mask = dist <= cfg.contact_tolerance_um
                elif tol_px:
                    mask = ndi.binary_dilation(mask, struct, iterations=tol_px)
                hit = immune_lab[sl][mask]
                touching = np.unique(hit[hit > 0])
            rows[row][5] = len(touching)
            contact_rows.extend((eid, dt, int(m)) for m in touching)
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    curves[col.N_CONTACT] = curves[col.N_CONTACT].astype("Int64" if with_contacts else float)
    contacts = pd.DataFrame(contact_rows, columns=[col.EVENT_ID, col.DT, "immune_track_id"])
    return curves, contacts


def summarize_events(
    events: pd.DataFrame,
    curves: pd.DataFrame,
    contacts: pd.DataFrame,
    immune: pd.DataFrame,
    config: RecruitConfig | None = None,
    *,
    interval_s: float,
    pixel_size_um: float,
    shape_yx: tuple[int, int],
    n_slices: int | None = None,
    z_step_um: float | None = None,
) -> pd.DataFrame:
    """Per-event recruitment measures (:data:`SUMMARY_COLUMNS`), one row per event.

    - ``first_contact_s``: time from death to the first contact at or after
      the death frame (NaN: no contact in the window).
    - ``mean_within_r_pre`` / ``_post``: mean ``n_within_r`` over the frames
      before / from the death frame; ``max_within_r_post`` its maximum.
    - ``expected_within_r_post``: mean chance level over the same frames;
      ``recruitment_index`` = observed / expected (NaN when nothing is
      expected).
    - ``n_immune_distinct``: immune tracks within R at any frame from death;
      ``n_immune_contact``: of those, how many touched the cell.
    - ``contact_total_s``: summed contact time of all immune cells from
      death; ``contact_median_s``: the median per contacting cell.
    - ``disc_fraction``: the part of the R-disc inside the image (below 1
      near the border; counts are not rescaled, the chance level is); with a
      volume (``n_slices``, ``z_step_um`` as in :func:`recruitment_curves`)
      the part of the R-ball inside the volume.
    - approach of the immune cells that made contact, over
      ``approach_min`` minutes before their first contact (means over
      those cells): speed (µm/min), chemotactic index (distance gained
      toward the event / path length), forward migration index (displacement
      along the initial direction to the event / path length), and
      ``arrest_on_arrival``: the fraction whose speed over the next frames
      fell below ``arrest_speed_um_per_min``.

    Distances and approach paths are 3D when the tables carry ``z_um``.
    """
    cfg = config or RecruitConfig()
    if events is None or events.empty:
        return pd.DataFrame(columns=[col.EVENT_ID, *SUMMARY_COLUMNS])
    is_3d, volume = _dims(events, immune, None, n_slices, z_step_um)
    geo = _Geometry(cfg.radius_um, pixel_size_um, shape_yx, n_slices, z_step_um, volume)
    approach = frames_for(cfg.approach_min, interval_s, at_least=2)
    by_event = dict(tuple(curves.groupby(col.EVENT_ID))) if len(curves) else {}
    contacts_by_event = dict(tuple(contacts.groupby(col.EVENT_ID))) if len(contacts) else {}
    paths = _ImmunePaths(immune, is_3d)
    out, arrivals = [], []
    for ev in events.sort_values(col.EVENT_ID).itertuples(index=False):
        eid, f0 = int(ev.event_id), int(ev.frame)
        center = np.array([ev.y_um, ev.x_um, ev.z_um] if is_3d else [ev.y_um, ev.x_um], float)
        c = by_event.get(eid, pd.DataFrame(columns=CURVE_COLUMNS))
        pre, post = c[c[col.DT] < 0], c[c[col.DT] >= 0]
        obs = post[col.N_WITHIN_R].astype(float)
        exp = post[EXPECTED_WITHIN_R].astype(float)
        mean_post = float(obs.mean()) if len(obs) else math.nan
        exp_post = float(exp.mean()) if len(exp) else math.nan
        index = mean_post / exp_post if exp_post and exp_post > 0 else math.nan
        came = paths.within(post[col.FRAME].to_numpy(int), center, cfg.radius_um)
        k = contacts_by_event.get(eid)
        k_post = k[k[col.DT] >= 0] if k is not None else None
        if k_post is not None and len(k_post):
            per_cell = k_post.groupby("immune_track_id")[col.DT].nunique() * interval_s
            first_contact = float(k_post[col.DT].min() * interval_s)
            total, median, n_touch = float(per_cell.sum()), float(per_cell.median()), len(per_cell)
            # the cells that made contact, each from its first contact on (by track id)
            first = k_post.groupby("immune_track_id")[col.DT].min()
            arrivals.extend((len(out), int(m), f0 + int(dt), center) for m, dt in first.items())
        else:
            has_labels = len(post) and not post[col.N_CONTACT].isna().all()
            first_contact = math.nan
            total = 0.0 if has_labels else math.nan
            median = math.nan
            n_touch = 0 if has_labels else math.nan
        out.append(
            {
                col.EVENT_ID: eid,
                "first_contact_s": first_contact,
                "mean_within_r_pre": float(pre[col.N_WITHIN_R].astype(float).mean())
                if len(pre)
                else math.nan,
                "mean_within_r_post": mean_post,
                "max_within_r_post": float(obs.max()) if len(obs) else math.nan,
                "expected_within_r_post": exp_post,
                "recruitment_index": index,
                "n_immune_distinct": len(came),
                "n_immune_contact": n_touch,
                "contact_total_s": total,
                "contact_median_s": median,
                "disc_fraction": float(geo.fraction(center)[0]),
            }
        )
    # approach of the cells that made contact: means over each event's cells
    approach_cols = {
        "approach_speed_um_per_min": "speed_um_per_min",
        "approach_chemotactic_index": "chemotactic_index",
        "approach_fmi": "forward_migration_index",
        "arrest_on_arrival": "arrested_on_arrival",
    }
    measures = paths.approach(
        arrivals,
        approach,
        interval_s=interval_s,
        arrest_speed_um_per_min=cfg.arrest_speed_um_per_min,
    )
    for i, row in enumerate(out):
        for name, key in approach_cols.items():
            row[name] = _nanmean(measures[key][measures["event"] == i])
    return pd.DataFrame(out, columns=[col.EVENT_ID, *SUMMARY_COLUMNS])


#: what :meth:`_ImmunePaths.approach` measures of each arriving immune cell
_APPROACH_KEYS = (
    "speed_um_per_min",
    "chemotactic_index",
    "forward_migration_index",
    "arrested_on_arrival",
)


class _ImmunePaths:
    """The immune objects as arrays, by frame (who is near a place at some frames) and by
    track (the paths of contacting cells around their arrival), for every event at once."""

    def __init__(self, immune: pd.DataFrame | None, is_3d: bool):
        self.dim = 3 if is_3d else 2
        if immune is None or not len(immune):
            frames, ids, pos = np.empty(0, int), np.empty(0, int), np.empty((0, self.dim))
        else:
            frames = immune[col.FRAME].to_numpy(int)
            ids, pos = immune[col.TRACK_ID].to_numpy(), _positions(immune, is_3d)
        order = np.argsort(frames, kind="stable")  # by frame
        self.frames, self.ids, self.pos = frames[order], ids[order], pos[order]
        order = np.lexsort((frames, ids))  # by track, then frame
        self.t_ids, self.t_frames, self.t_pos = ids[order], frames[order], pos[order]
        # frames where a track has more than one object (not as linked, but possible in a
        # table from elsewhere): there a track is counted once
        order = np.lexsort((ids, frames))
        twice = (np.diff(frames[order]) == 0) & (np.diff(ids[order]) == 0)
        self.twice = set(frames[order][1:][twice].tolist())

    def near_counts(
        self, t0: int, t1: int, centers_um: np.ndarray, radius_um: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distinct immune tracks within ``radius_um`` of each of ``centers_um`` (k, 2 or 3)
        at each frame ``t0 .. t1 - 1`` (``(t1 - t0, k)``), and the number of immune
        objects at each of those frames."""
        n = max(t1 - t0, 0)
        a, b = np.searchsorted(self.frames, [t0, max(t1, t0)])
        at = self.frames[a:b] - t0
        ids, pos = self.ids[a:b], self.pos[a:b]
        near = _distance(pos[:, None, :], np.asarray(centers_um, float)[None, :, :]) <= radius_um
        n_all = np.bincount(at, minlength=n)
        counts = np.zeros((n, near.shape[1]))
        some = n_all > 0  # rows come by frame: sums over each frame's run of rows
        if some.any():
            starts = np.searchsorted(at, np.flatnonzero(some))
            counts[some] = np.add.reduceat(near.astype(np.int64), starts, axis=0)
        for t in self.twice & set(range(t0, t1)):
            here = at == t - t0
            counts[t - t0] = [len(np.unique(ids[here][m])) for m in near[here].T]
        return counts, n_all

    def within(self, frames: np.ndarray, center_um: np.ndarray, radius_um: float) -> set:
        """Distinct immune track ids within ``radius_um`` of ``center_um`` at any of ``frames``."""
        sel = np.isin(self.frames, frames)
        d = _distance(self.pos[sel], np.asarray(center_um, float)[None, :])
        return set(np.unique(self.ids[sel][d <= radius_um]).tolist())

    def approach(
        self,
        arrivals: list[tuple[int, int, int, np.ndarray]],
        approach: int,
        *,
        interval_s: float,
        arrest_speed_um_per_min: float,
    ) -> dict[str, np.ndarray]:
        """Speed, chemotactic index and FMI of each arriving cell's path to the event, and
        whether it arrested.

        ``arrivals``: ``(event, immune track id, arrival frame, event position)``. The
        path is the track's positions over the ``approach`` frames up to the arrival
        (the measures are :func:`deathtrack.motility.approach_table`'s, celltrackR
        definitions); ``arrested_on_arrival`` is 1 when its mean speed over the frames
        from arrival to 3 frames later is below ``arrest_speed_um_per_min``, NaN with
        fewer than two such frames. One entry per arrival whose track exists, under
        ``event`` its event.
        """
        from .motility import approach_table, track_metrics

        coords = ["y", "x", "z"][: self.dim]
        paths = {"before": [], "after": []}
        events, targets = [], []
        for event, mid, arrive, center in arrivals:
            a = int(np.searchsorted(self.t_ids, mid, side="left"))
            b = int(np.searchsorted(self.t_ids, mid, side="right"))
            if a == b:  # no such track
                continue
            frames = self.t_frames[a:b]
            pair = len(events)
            events.append(event)
            for name, lo, hi in (
                ("before", arrive - approach, arrive),
                ("after", arrive, arrive + 3),
            ):
                keep = slice(
                    a + np.searchsorted(frames, lo), a + np.searchsorted(frames, hi, "right")
                )
                rows = self.t_frames[keep]
                paths[name].append((pair, rows.astype(float) * interval_s, self.t_pos[keep]))
            targets.append(center)
        n = len(events)
        out = {"event": np.asarray(events, int)}
        out |= {k: np.full(n, np.nan) for k in _APPROACH_KEYS}

        def table(name: str) -> tuple[pd.DataFrame, np.ndarray]:
            parts = paths[name]
            pair = np.repeat(np.array([p for p, _, _ in parts], int), [len(t) for _, t, _ in parts])
            xyz = np.concatenate([x for _, _, x in parts]).reshape(-1, self.dim)
            columns = {"pair": pair, "t": np.concatenate([t for _, t, _ in parts])}
            columns |= {c: xyz[:, i] for i, c in enumerate(coords)}
            return pd.DataFrame(columns), pair

        if n:
            before, pair = table("before")
            if len(before):
                m = approach_table(
                    before,
                    np.asarray(targets, float)[pair],
                    id_col="pair",
                    t_col="t",
                    coord_cols=coords,
                )
                at = m["pair"].to_numpy(int)
                for key in _APPROACH_KEYS[:3]:
                    out[key][at] = m[key].to_numpy(float)
            after, _ = table("after")
            if len(after):
                m = track_metrics(
                    after, id_col="pair", t_col="t", coord_cols=coords, metrics=["speed"]
                )
                v = m["speed"].to_numpy(float) * 60.0  # µm/s -> µm/min; NaN below two points
                ok = np.isfinite(v)
                arrested = np.full(len(v), np.nan)
                arrested[ok] = (v[ok] < arrest_speed_um_per_min).astype(float)
                out["arrested_on_arrival"][m["pair"].to_numpy(int)] = arrested
        return out


def _nanmean(values) -> float:
    a = np.asarray(values, float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


# -- statistics ---------------------------------------------------------------


def _cliffs_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(a > b) - P(a < b) over all pairs: -1..1, 0 = no difference."""
    if not len(a) or not len(b):
        return math.nan
    d = np.sign(a[:, None] - b[None, :])
    return float(d.mean())


def _strata(n: int, stack: np.ndarray | None) -> list[np.ndarray]:
    if stack is None:
        return [np.arange(n)]
    return [np.flatnonzero(stack == s) for s in pd.unique(stack)]


def _bootstrap(
    values: np.ndarray, is_nec: np.ndarray, stack, rng, n_boot: int, chunk: int = 250
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap differences of means (nec - apo) and Cliff's deltas, within strata.

    Resamples are drawn and scored ``chunk`` at a time (arrays, not a Python loop).
    """
    groups = []
    for idx in _strata(len(values), stack):
        groups.append((idx[~is_nec[idx]], idx[is_nec[idx]]))
    diffs, deltas = np.empty(n_boot), np.empty(n_boot)
    # at most ~2e7 pairwise comparisons in memory at a time (160 MB)
    n_pairs = max(1, int((~is_nec).sum()) * int(is_nec.sum()))
    chunk = max(1, min(chunk, 20_000_000 // n_pairs))
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        apo = np.concatenate(
            [a[rng.integers(0, len(a), (k, len(a)))] for a, _ in groups if len(a)], axis=1
        )
        nec = np.concatenate(
            [n[rng.integers(0, len(n), (k, len(n)))] for _, n in groups if len(n)], axis=1
        )
        va, vn = values[apo], values[nec]  # (k, n_apo), (k, n_nec)
        diffs[start : start + k] = vn.mean(axis=1) - va.mean(axis=1)
        # Cliff's delta of each resample: mean sign over all (nec, apo) pairs
        deltas[start : start + k] = np.sign(vn[:, :, None] - va[:, None, :]).mean(axis=(1, 2))
    return diffs, deltas


def _permutation_p(values, is_nec, stack, rng, n_perm: int, chunk: int = 500) -> float:
    """Two-sided permutation p-value of the difference of means, labels shuffled in strata."""
    strata = _strata(len(values), stack)
    n_nec = int(is_nec.sum())
    n_apo = len(values) - n_nec
    obs = abs(values[is_nec].mean() - values[~is_nec].mean())
    total = values.sum()
    hits = 0
    for start in range(0, n_perm, chunk):
        k = min(chunk, n_perm - start)
        lbl = np.empty((k, len(values)), bool)
        for idx in strata:
            # a random permutation of the stratum's labels, one per row
            order = np.argsort(rng.random((k, len(idx))), axis=1)
            lbl[:, idx] = is_nec[idx][order]
        s_nec = (lbl * values).sum(axis=1)
        stat = s_nec / n_nec - (total - s_nec) / n_apo
        hits += int((np.abs(stat) >= obs - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def compare_modes(
    events: pd.DataFrame,
    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
    *,
    n_bootstrap: int = 2000,
    n_permutations: int = 5000,
    seed: int = 0,
    stack_col: str | None = "stack",
) -> pd.DataFrame:
    """Compare recruitment between necroptotic and apoptotic events.

    The mode of an event is its ``reviewed_mode`` when a person reviewed it
    (events reviewed as not a death are left out), else its automatic
    ``mode``; ``uncertain`` events are left out. For each metric (rows of
    :data:`STAT_COLUMNS`): means per mode, ``difference`` = necroptotic −
    apoptotic with a bootstrap 95 % CI, Cliff's delta (P(nec > apo) −
    P(nec < apo)) with its bootstrap CI, the two-sided Mann–Whitney U
    p-value and a permutation p-value of the difference. With a
    ``stack_col`` column, bootstrap and permutations stay within stacks.

    Returns an empty table with :data:`STAT_COLUMNS` when either mode has no
    event with a value.
    """
    from scipy.stats import mannwhitneyu

    rows = []
    if events is None or events.empty:
        return pd.DataFrame(columns=STAT_COLUMNS)
    mode = events[col.MODE].astype(object)
    if "reviewed_mode" in events:
        rev = events["reviewed_mode"].astype(object)
        has = rev.notna() & (rev.astype(str).str.len() > 0)
        mode = mode.where(~has, rev)
    keep = mode.isin([col.APOPTOTIC, col.NECROPTOTIC]).to_numpy()
    for i, metric in enumerate(metrics):
        if metric not in events:
            continue
        v = pd.to_numeric(events[metric], errors="coerce").to_numpy(float)
        ok = keep & np.isfinite(v)
        values, is_nec = v[ok], (mode.to_numpy()[ok] == col.NECROPTOTIC)
        stack = events[stack_col].to_numpy()[ok] if stack_col and stack_col in events else None
        n_apo, n_nec = int((~is_nec).sum()), int(is_nec.sum())
        row = dict.fromkeys(STAT_COLUMNS, math.nan)
        row.update(metric=metric, n_apoptotic=n_apo, n_necroptotic=n_nec)
        row.update(effect_size_name="Cliff's delta", test="Mann-Whitney U, two-sided")
        if n_apo:
            row["mean_apoptotic"] = float(values[~is_nec].mean())
        if n_nec:
            row["mean_necroptotic"] = float(values[is_nec].mean())
        if n_apo and n_nec:
            rng = np.random.default_rng([seed, i])
            row["difference"] = row["mean_necroptotic"] - row["mean_apoptotic"]
            row["effect_size"] = _cliffs_delta(values[is_nec], values[~is_nec])
            diffs, deltas = _bootstrap(values, is_nec, stack, rng, n_bootstrap)
            row["ci_low"], row["ci_high"] = (float(q) for q in np.quantile(diffs, [0.025, 0.975]))
            row["effect_size_ci_low"], row["effect_size_ci_high"] = (
                float(q) for q in np.quantile(deltas, [0.025, 0.975])
            )
            if np.ptp(values) > 0:
                row["p_value"] = float(
                    mannwhitneyu(values[is_nec], values[~is_nec], alternative="two-sided").pvalue
                )
            else:
                row["p_value"] = 1.0
            row["p_permutation"] = _permutation_p(values, is_nec, stack, rng, n_permutations)
        rows.append(row)
    return pd.DataFrame(rows, columns=STAT_COLUMNS)
