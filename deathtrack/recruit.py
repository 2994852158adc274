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

In 3D (tables with ``z_um``, and ``z_step_um`` given), every distance is a
3D distance in µm: R is a ball's radius, the chance level's disc is a ball
(its part inside the imaged volume), contacts dilate the dying cell's mask
by the tolerance in µm along each axis (an ellipsoid in voxels), and the
approach of the immune cells is measured in 3D.
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
    center_um, radius_um: float, shape_zyx: tuple[int, int, int], spacing_um, *, n: int = 24
) -> float:
    """Fraction of the ball of ``radius_um`` around ``center_um`` (z, y, x µm) inside a
    volume of ``shape_zyx`` voxels of ``spacing_um`` (z, y, x) µm (voxel centres at
    ``index x spacing``); the 3D :func:`disc_fraction_inside`, on an ``n``³ grid."""
    if radius_um <= 0:
        return 1.0
    g = (np.arange(n) + 0.5) / n * 2 - 1
    gz, gy, gx = np.meshgrid(g, g, g, indexing="ij")
    in_ball = gz**2 + gy**2 + gx**2 <= 1
    inside = in_ball.copy()
    for k, u in enumerate((gz, gy, gx)):
        p = center_um[k] + u * radius_um
        s = spacing_um[k]
        inside &= (p >= -0.5 * s) & (p <= (shape_zyx[k] - 0.5) * s)
    return float(inside.sum() / in_ball.sum())


def _position_columns(df: pd.DataFrame | None) -> list[str]:
    """``z_um, y_um, x_um`` for a 3D table (it has ``z_um``), else ``y_um, x_um``."""
    return (
        [col.Z_UM, col.Y_UM, col.X_UM]
        if df is not None and col.Z_UM in df
        else [
            col.Y_UM,
            col.X_UM,
        ]
    )


def _distance(pos: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Distances from ``center`` of ``pos`` (..., 2 or 3) (µm), broadcast."""
    if pos.shape[-1] == 2:  # as the 2D code always did (hypot), to the last bit
        return np.hypot(pos[..., 0] - center[..., 0], pos[..., 1] - center[..., 1])
    return np.sqrt(((pos - center) ** 2).sum(axis=-1))


def _spacing(pixel_size_um: float, z_step_um: float | None, ndim: int) -> tuple[float, ...]:
    """Voxel size (µm) along each axis of the positions: (y, x) or (z, y, x)."""
    if ndim == 3:
        if not z_step_um:
            raise ValueError("3D positions (z_um) need `z_step_um`")
        return (float(z_step_um), float(pixel_size_um), float(pixel_size_um))
    return (float(pixel_size_um), float(pixel_size_um))


class _Field:
    """The imaged field: a plane of ``shape`` (Y, X) pixels, or with ``z_step_um`` a
    volume of ``shape`` (Z, Y, X) voxels; where R's disc (or ball) lies inside it."""

    def __init__(self, shape, pixel_size_um: float, z_step_um: float | None, radius_um: float):
        self.three_d = z_step_um is not None
        if self.three_d and len(shape) != 3:
            raise ValueError(f"with `z_step_um`, `shape_yx` must be (Z, Y, X), got {shape}")
        self.shape = tuple(int(v) for v in shape)
        self.px = float(pixel_size_um)
        self.spacing = _spacing(pixel_size_um, z_step_um, 3 if self.three_d else 2)
        self.radius_um = float(radius_um)
        self.cols = [col.Z_UM, col.Y_UM, col.X_UM] if self.three_d else [col.Y_UM, col.X_UM]

    def center(self, ev) -> np.ndarray:
        return np.array([getattr(ev, c) for c in self.cols], float)

    def fraction(self, p) -> float:
        """Part of R's disc (ball) around ``p`` (µm) inside the field."""
        if self.three_d:
            return ball_fraction_inside(p, self.radius_um, self.shape, self.spacing)
        return disc_fraction_inside(
            p[0] / self.px, p[1] / self.px, self.radius_um / self.px, self.shape
        )

    def share(self) -> float:
        """R's disc (ball) over the whole field (areas or volumes)."""
        if self.three_d:
            r_um = self.radius_um
            return (4 / 3 * math.pi * r_um**3) / float(
                np.prod(np.multiply(self.shape, self.spacing))
            )
        r_px = self.radius_um / self.px
        return math.pi * r_px**2 / float(self.shape[0] * self.shape[1])


def _immune_by_frame(immune: pd.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """frame -> (track ids, (n, 2) or (n, 3) positions in µm) of the immune objects."""
    out = {}
    if immune is None or immune.empty:
        return out
    cols = _position_columns(immune)
    for t, g in immune.groupby(col.FRAME, sort=True):
        out[int(t)] = (g[col.TRACK_ID].to_numpy(), g[cols].to_numpy(float))
    return out


def _within(ids_pos, center_um: np.ndarray, radius_um: float) -> np.ndarray:
    """Distinct immune track ids within ``radius_um`` of ``center_um`` (one frame)."""
    if ids_pos is None:
        return np.empty(0, int)
    ids, pos = ids_pos
    d = _distance(pos, np.asarray(center_um, float))
    return np.unique(ids[d <= radius_um])


def _count_within(ids_pos, centers_um: np.ndarray, radius_um: float) -> np.ndarray:
    """:func:`_within`'s count for each of ``centers_um`` (k, 2 or 3), all at once."""
    if ids_pos is None:
        return np.zeros(len(np.atleast_2d(centers_um)))
    ids, pos = ids_pos
    centers_um = np.asarray(centers_um, float).reshape(-1, pos.shape[1])
    near = _distance(pos[None, :, :], centers_um[:, None, :]) <= radius_um
    if len(np.unique(ids)) == len(ids):  # one object per track in the frame (as linked)
        return near.sum(axis=1).astype(float)
    return np.array([len(np.unique(ids[row])) for row in near], float)


def _choose_controls(
    events: pd.DataFrame,
    cells: pd.DataFrame,
    cfg: RecruitConfig,
    shape_yx: tuple[int, int],
    pixel_size_um: float,
    z_step_um: float | None = None,
) -> dict[int, np.ndarray]:
    """event_id -> (k, 2) control positions in µm (live cells first, random places after);
    (k, 3) in 3D (``z_step_um`` given, ``shape_yx`` then (Z, Y, X)).

    A control is a live target cell (a track that is not an event's) present
    at the event's death frame, at least ``control_min_distance_um`` from
    every event; when fewer than ``n_controls`` qualify, random places in the
    field as far from every event fill the rest. Seeded per event.
    """
    cols = _position_columns(events) if z_step_um else [col.Y_UM, col.X_UM]
    ev_pos = events[cols].to_numpy(float)
    dead_tracks = set(events[col.TRACK_ID].tolist())
    spacing = _spacing(pixel_size_um, z_step_um, len(cols))
    extent = [n * s for n, s in zip(shape_yx, spacing)]
    by_frame = {int(t): g for t, g in cells.groupby(col.FRAME)} if len(cells) else {}
    out = {}
    for ev in events.itertuples(index=False):
        rng = np.random.default_rng([cfg.seed, int(ev.event_id)])
        g = by_frame.get(int(ev.frame))
        cand = np.empty((0, len(cols)))
        if g is not None:
            g = g[~g[col.TRACK_ID].isin(dead_tracks)]
            cand = g[cols].to_numpy(float)
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
            p = rng.uniform([0] * len(cols), extent, size=(4 * need, len(cols)))
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
            extra.append(rng.uniform([0] * len(cols), extent, size=(need, len(cols))))
        out[int(ev.event_id)] = np.vstack([cand, *extra]) if extra else cand
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
    z_step_um: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Immune counts and contacts around each event, frame by frame.

    Parameters
    ----------
    events
        ``event_id, track_id, frame, y_um, x_um`` (``events.csv``).
    immune
        Immune-cell tracks: ``frame, track_id, y_um, x_um``.
    cells
        Target-cell tracks (``frame, track_id, y_um, x_um``): live ones are
        the controls. Without it, controls are random places.
    config
        Radius, window, tolerance, controls (:class:`RecruitConfig`).
    interval_s, pixel_size_um
        Calibration.
    shape_yx, n_frames
        Image size in pixels and number of frames.
    cell_labels, immune_labels
        ``f(t) -> (Y, X)`` label images whose values are ``track_id``; both
        are needed for ``n_contact`` (NaN without them).
    z_step_um
        For a 3D movie: the z step (µm). ``shape_yx`` is then (Z, Y, X), the
        tables carry ``z_um``, the label images are (Z, Y, X), and R is a
        ball's radius.

    Returns
    -------
    curves : DataFrame
        :data:`CURVE_COLUMNS`, one row per event and frame of its window
        that lies inside the movie.
    contacts : DataFrame
        ``event_id, dt, immune_track_id`` for every contact (the input of
        contact durations in :func:`summarize_events`).
    """
    from scipy import ndimage as ndi

    cfg = config or RecruitConfig()
    empty = (
        pd.DataFrame(columns=CURVE_COLUMNS),
        pd.DataFrame(columns=[col.EVENT_ID, col.DT, "immune_track_id"]),
    )
    if events is None or events.empty:
        return empty
    cells = cells if cells is not None else pd.DataFrame(columns=[col.FRAME, col.TRACK_ID])
    immune_at = _immune_by_frame(immune)
    fld = _Field(shape_yx, pixel_size_um, z_step_um, cfg.radius_um)
    controls = _choose_controls(events, cells, cfg, shape_yx, pixel_size_um, z_step_um)
    frac_ctl = {eid: np.array([fld.fraction(p) for p in pos]) for eid, pos in controls.items()}
    share = fld.share()
    with_contacts = cell_labels is not None and immune_labels is not None
    tol_px = int(math.ceil(cfg.contact_tolerance_um / pixel_size_um))
    struct = ndi.generate_binary_structure(2, 1)
    if fld.three_d:
        from .simulate3d import ellipsoid_footprint

        # the tolerance in µm along each axis: an ellipsoid in voxels
        struct = ellipsoid_footprint(cfg.contact_tolerance_um, fld.spacing)
        grow = [h // 2 for h in struct.shape]
    else:
        grow = [tol_px, tol_px]

    track_frames = (
        {int(k): np.sort(g[col.FRAME].to_numpy()) for k, g in cells.groupby(col.TRACK_ID)}
        if len(cells)
        else {}
    )
    rows, jobs = [], []
    for ev in events.sort_values(col.EVENT_ID).itertuples(index=False):
        eid, f0, tid = int(ev.event_id), int(ev.frame), int(ev.track_id)
        center = fld.center(ev)
        frac_ev = fld.fraction(center)
        ctl, fctl = controls[eid], frac_ctl[eid]
        own = track_frames.get(tid, np.array([f0]))
        for dt in range(
            -frames_for(cfg.pre_min, interval_s, at_least=0),
            frames_for(cfg.post_min, interval_s, at_least=0) + 1,
        ):
            t = f0 + dt
            if not 0 <= t < n_frames:
                continue
            here = immune_at.get(t)
            n_within = len(_within(here, center, cfg.radius_um))
            counts = _count_within(here, ctl, cfg.radius_um)
            ok = fctl > 0
            expected = float(np.mean(counts[ok] / fctl[ok]) * frac_ev) if ok.any() else math.nan
            n_all = len(here[0]) if here is not None else 0
            uniform = n_all * frac_ev * share
            if with_contacts:
                # the cell's own mask at t, else at the nearest frame its track has
                tm = int(own[np.argmin(np.abs(own - t))]) if len(own) else t
                jobs.append((t, tm, tid, eid, dt, len(rows)))
            rows.append([eid, dt, dt * interval_s, t, n_within, math.nan, expected, uniform])

    # contacts frame by frame: each label image is read (and relabelled) once per frame,
    # and each dying cell's mask is cut out of it by its bounding box
    contact_rows = []
    if with_contacts:

        @lru_cache(maxsize=4)
        def boxes(tm: int):
            lab = np.asarray(cell_labels(tm))
            return lab, ndi.find_objects(lab)

        current_t, immune_lab = None, None
        for t, tm, tid, eid, dt, row in sorted(jobs):
            if t != current_t:
                current_t, immune_lab = t, np.asarray(immune_labels(t))
            lab, objs = boxes(tm)
            touching = np.empty(0, int)
            sl = objs[tid - 1] if 0 < tid <= len(objs) else None
            if sl is not None:
                sl = tuple(
                    slice(max(s.start - g, 0), min(s.stop + g, n))
                    for s, g, n in zip(sl, grow, lab.shape)
                )
                mask = lab[sl] == tid
                if fld.three_d:
                    if struct.size > 1:
                        mask = ndi.binary_dilation(mask, struct)
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
      near the border; counts are not rescaled, the chance level is).
    - approach of the immune cells that made contact, over
      ``approach_min`` minutes before their first contact (means over
      those cells): speed (µm/min), chemotactic index (distance gained
      toward the event / path length), forward migration index (displacement
      along the initial direction to the event / path length), and
      ``arrest_on_arrival``: the fraction whose speed over the next frames
      fell below ``arrest_speed_um_per_min``.

    With ``z_step_um`` (a 3D movie; ``shape_yx`` is then (Z, Y, X)), distances,
    the ball's part inside the volume (``disc_fraction``) and the approach are 3D.
    """
    cfg = config or RecruitConfig()
    if events is None or events.empty:
        return pd.DataFrame(columns=[col.EVENT_ID, *SUMMARY_COLUMNS])
    approach = frames_for(cfg.approach_min, interval_s, at_least=2)
    fld = _Field(shape_yx, pixel_size_um, z_step_um, cfg.radius_um)
    immune_tracks = (
        {int(k): g.sort_values(col.FRAME) for k, g in immune.groupby(col.TRACK_ID)}
        if immune is not None and len(immune)
        else {}
    )
    by_event = dict(tuple(curves.groupby(col.EVENT_ID))) if len(curves) else {}
    contacts_by_event = dict(tuple(contacts.groupby(col.EVENT_ID))) if len(contacts) else {}
    immune_at = _immune_by_frame(immune)
    out = []
    for ev in events.sort_values(col.EVENT_ID).itertuples(index=False):
        eid, f0 = int(ev.event_id), int(ev.frame)
        center = fld.center(ev)
        c = by_event.get(eid, pd.DataFrame(columns=CURVE_COLUMNS))
        pre, post = c[c[col.DT] < 0], c[c[col.DT] >= 0]
        obs = post[col.N_WITHIN_R].astype(float)
        exp = post[EXPECTED_WITHIN_R].astype(float)
        mean_post = float(obs.mean()) if len(obs) else math.nan
        exp_post = float(exp.mean()) if len(exp) else math.nan
        index = mean_post / exp_post if exp_post and exp_post > 0 else math.nan
        came = set()
        for t in post[col.FRAME].astype(int):
            came.update(_within(immune_at.get(int(t)), center, cfg.radius_um).tolist())
        k = contacts_by_event.get(eid)
        k_post = k[k[col.DT] >= 0] if k is not None else None
        if k_post is not None and len(k_post):
            per_cell = k_post.groupby("immune_track_id")[col.DT].nunique() * interval_s
            first_contact = float(k_post[col.DT].min() * interval_s)
            total, median, n_touch = float(per_cell.sum()), float(per_cell.median()), len(per_cell)
        else:
            has_labels = len(post) and not post[col.N_CONTACT].isna().all()
            first_contact = math.nan
            total = 0.0 if has_labels else math.nan
            median = math.nan
            n_touch = 0 if has_labels else math.nan
        # approach of the cells that made contact
        speeds, cis, fmis, arrests = [], [], [], []
        if k_post is not None and len(k_post):
            first = k_post.groupby("immune_track_id")[col.DT].min()
            for mid, dt in first.items():
                g = immune_tracks.get(int(mid))
                if g is None:
                    continue
                arrive = f0 + int(dt)
                before = g[(g[col.FRAME] >= arrive - approach) & (g[col.FRAME] <= arrive)]
                after = g[(g[col.FRAME] >= arrive) & (g[col.FRAME] <= arrive + 3)]
                m = _approach(
                    before,
                    center,
                    interval_s=interval_s,
                    after=after,
                    arrest_speed_um_per_min=cfg.arrest_speed_um_per_min,
                    cols=fld.cols,
                )
                speeds.append(m["speed_um_per_min"])
                cis.append(m["chemotactic_index"])
                fmis.append(m["forward_migration_index"])
                arrests.append(m["arrested_on_arrival"])
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
                "disc_fraction": fld.fraction(center),
                "approach_speed_um_per_min": _nanmean(speeds),
                "approach_chemotactic_index": _nanmean(cis),
                "approach_fmi": _nanmean(fmis),
                "arrest_on_arrival": _nanmean([float(a) for a in arrests]),
            }
        )
    return pd.DataFrame(out, columns=[col.EVENT_ID, *SUMMARY_COLUMNS])


def _approach(
    before: pd.DataFrame,
    target_um: np.ndarray,
    *,
    interval_s: float,
    after: pd.DataFrame,
    arrest_speed_um_per_min: float,
    cols: list[str] | None = None,
) -> dict[str, float]:
    """Speed, chemotactic index and FMI of the path to ``target_um``, and arrest after it.

    The measures are :mod:`deathtrack.motility`'s (celltrackR definitions);
    ``arrested_on_arrival`` is 1 when the mean speed over ``after`` (the
    frames from first contact on) is below ``arrest_speed_um_per_min``.
    """
    from .motility import approach_metrics, speed

    cols = cols or [col.Y_UM, col.X_UM]

    def track(g: pd.DataFrame) -> np.ndarray:
        return np.column_stack([g[col.FRAME].to_numpy(float) * interval_s, g[cols].to_numpy(float)])

    m = approach_metrics(
        track(before),
        np.asarray(target_um, float),
        t_col="t",
        coord_cols=("z", "y", "x")[-len(cols) :],
    )
    v = speed(track(after)) * 60.0  # µm/s -> µm/min; NaN for fewer than two points
    return {
        "speed_um_per_min": m["speed_um_per_min"],
        "chemotactic_index": m["chemotactic_index"],
        "forward_migration_index": m["forward_migration_index"],
        "arrested_on_arrival": float(v < arrest_speed_um_per_min) if np.isfinite(v) else math.nan,
    }


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
