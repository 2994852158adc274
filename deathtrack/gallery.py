"""Event galleries: crops over time around each death, as a person reviews them.

The crops of a death are boxes of a fixed size centred on the dying cell, the
same in every view that shows them (this module's PNG gallery, the gallery of
``report.html``, the napari review panel's crop strip): :func:`crop_image` and
:func:`crop_labels` make them.

In a z-stack, a crop is the **maximum projection of the dying cell's own
z-range**, not of the whole stack (where a cell above or below the dying one
would show through): the slices whose centres lie within ``r`` of the cell's
centre, ``r`` being the cell's equivalent radius (the radius of the ball of its
volume, ``sqrt(area_um2 / pi)`` of ``tracks.csv``), its median over its track's
frames up to the death frame (its size alive, before it shrank or swelled); at
least the slice nearest its centre (:func:`cell_z_range`, :func:`event_z_ranges`).
The centre is the event's ``z`` (``events.csv``; ``z_um`` over the z step when
``z`` is missing). A death without a track of its own (added by hand in napari)
takes the median size of the target cells; one without a z (or any size) is
projected over every slice, and says so. Every crop of a death uses the same
z-range, as it uses the same (y, x) box. Label crops are projected the same
way: each (y, x) column shows the object of the range's slice nearest the
cell's centre, so the dying cell's outline is its own and a neighbour above or
below shows only where the dying cell is not.

Examples
--------
>>> from deathtrack.io import open_stack
>>> import pandas as pd
>>> with open_stack("sample_data/demo.ome.tif") as movie:  # doctest: +SKIP
...     events = pd.read_csv("sample_data/demo_truth/events.csv")
...     event_gallery(movie, events, "gallery.png")
>>> cell_z_range(10.0, 5.0, z_step_um=2.0, n_z=30)  # slices 8..12 (centres <= 5 µm away)
(8, 13)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as col

__all__ = [
    "cell_z_range",
    "crop_image",
    "crop_labels",
    "crop_xz",
    "event_gallery",
    "event_radii_um",
    "event_z",
    "event_z_ranges",
    "z_range_text",
]


def cell_z_range(
    z: float | None, radius_um: float | None, *, z_step_um: float | None, n_z: int
) -> tuple[int, int]:
    """The slices ``lo .. hi - 1`` of a cell's own z-range (a half-open range).

    Parameters
    ----------
    z
        The cell's centre, in slices (``z`` of ``events.csv``).
    radius_um
        The cell's equivalent radius, µm.
    z_step_um
        The distance between slices, µm.
    n_z
        The number of slices.

    Returns
    -------
    (lo, hi)
        The slices whose centres lie within ``radius_um`` of ``z``, at least the
        slice nearest ``z``, within ``0 .. n_z - 1``; every slice ``(0, n_z)`` when
        ``z``, ``radius_um`` or ``z_step_um`` is missing or not finite.
    """
    n_z = int(n_z)
    if n_z < 1:
        raise ValueError(f"`n_z` must be >= 1, got {n_z}")
    values = (z, radius_um, z_step_um)
    if any(v is None or not np.isfinite(float(v)) for v in values) or float(z_step_um) <= 0:
        return 0, n_z
    half = max(float(radius_um), 0.0) / float(z_step_um)
    lo, hi = math.ceil(float(z) - half - 1e-9), math.floor(float(z) + half + 1e-9)
    lo, hi = max(lo, 0), min(hi, n_z - 1)
    if hi < lo:  # thinner than a slice, or its centre outside the stack
        lo = hi = min(max(int(round(float(z))), 0), n_z - 1)
    return lo, hi + 1


def event_radii_um(events: pd.DataFrame, tracks: pd.DataFrame | None) -> np.ndarray:
    """Each event's cell size, as an equivalent radius in µm (NaN when unknown).

    The median of ``sqrt(area_um2 / pi)`` over the rows of ``tracks`` (target cells) of
    the event's ``track_id`` at or before its ``frame`` (its size alive), or over every
    target cell's rows when the event has no such track (a death added by hand).
    ``tracks`` needs ``frame, track_id, area_um2`` (and ``population`` when it holds
    immune cells too). In a z-stack ``area_um2`` is the equivalent area, so this is the
    radius of the ball of the cell's volume.
    """
    n = len(events)
    radii = np.full(n, np.nan)
    if (
        tracks is None
        or not len(tracks)
        or not n
        or not {col.FRAME, col.TRACK_ID, col.AREA_UM2} <= set(tracks.columns)
    ):
        return radii
    cells = tracks
    if col.POPULATION in cells.columns:
        cells = cells[cells[col.POPULATION].astype(str) == col.CELLS]
    area = pd.to_numeric(cells[col.AREA_UM2], errors="coerce").to_numpy(float)
    r = pd.DataFrame(
        {
            col.TRACK_ID: cells[col.TRACK_ID].to_numpy(),
            col.FRAME: cells[col.FRAME].to_numpy(),
            "r": np.sqrt(np.clip(area, 0, None) / np.pi),
        }
    )
    by_track = dict(tuple(r.groupby(col.TRACK_ID)))
    typical = float(r["r"].median()) if r["r"].notna().any() else np.nan
    tids = (
        pd.to_numeric(events[col.TRACK_ID], errors="coerce").to_numpy(float)
        if col.TRACK_ID in events.columns
        else np.full(n, np.nan)
    )
    frames = pd.to_numeric(events[col.FRAME], errors="coerce").to_numpy(float)
    for i, (tid, f) in enumerate(zip(tids, frames)):
        g = by_track.get(int(tid)) if np.isfinite(tid) else None
        alive = g["r"][g[col.FRAME].to_numpy() <= f].dropna() if g is not None else []
        radii[i] = float(alive.median()) if len(alive) else typical
    return radii


def event_z_ranges(
    events: pd.DataFrame,
    tracks: pd.DataFrame | None,
    *,
    z_step_um: float | None,
    n_z: int,
) -> list[tuple[int, int]]:
    """Each event's own z-range (:func:`cell_z_range`), in the order of ``events``.

    The centre is the event's ``z`` (or ``z_um / z_step_um``); the radius its cell's
    size (:func:`event_radii_um`).
    """
    n = len(events)
    if z_step_um is None or not n:
        return [(0, int(n_z))] * n
    zs = event_z(events, z_step_um)
    radii = event_radii_um(events, tracks)
    return [cell_z_range(z, r, z_step_um=z_step_um, n_z=n_z) for z, r in zip(zs.tolist(), radii)]


def event_z(events: pd.DataFrame, z_step_um: float | None) -> np.ndarray:
    """Each event's centre in slices: ``z``, else ``z_um / z_step_um``; NaN when unknown."""
    if col.Z in events.columns:
        return pd.to_numeric(events[col.Z], errors="coerce").to_numpy(float)
    if col.Z_UM in events.columns and z_step_um:
        return pd.to_numeric(events[col.Z_UM], errors="coerce").to_numpy(float) / z_step_um
    return np.full(len(events), np.nan)


def z_range_text(z_range: tuple[int, int], *, n_z: int, z_step_um: float | None = None) -> str:
    """How a crop was projected, for its label: ``"z 8-12 of 30 (max, 13 µm)"`` (the slices,
    0-based, and the depth they span), ``"z 8 of 30"``, or ``"all 30 z (max)"``."""
    lo, hi = int(z_range[0]), int(z_range[1])
    if (lo, hi) == (0, int(n_z)):
        return f"all {n_z} z (max)"
    if hi - lo == 1:
        return f"z {lo} of {n_z}"
    depth = f", {(hi - lo) * z_step_um:.3g} µm" if z_step_um else ""
    return f"z {lo}-{hi - 1} of {n_z} (max{depth})"


def _box(shape_yx, cy: float, cx: float, half: int):
    """The (y, x) slices of the image and of the crop of a (2 half + 1)² box at (cy, cx)."""
    size = 2 * half + 1
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, shape_yx[0]), min(x0 + size, shape_yx[1])
    if ye <= ys or xe <= xs:
        return None
    return (slice(ys, ye), slice(xs, xe)), (slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))


def crop_image(
    image: np.ndarray,
    cy: float,
    cx: float,
    half: int,
    *,
    fill: float = np.nan,
    z_range: tuple[int, int] | None = None,
) -> np.ndarray:
    """A (2 half + 1)² float32 crop of ``image`` centred on pixel (cy, cx); ``fill``
    outside the image.

    ``image`` is (Y, X), or (Z, Y, X): then the crop is the maximum over the slices of
    ``z_range`` (``lo, hi``, half-open; every slice when None).
    """
    size = 2 * half + 1
    out = np.full((size, size), fill, np.float32)
    image = np.asarray(image)
    box = _box(image.shape[-2:], cy, cx, half)
    if box is None:
        return out
    src, dst = box
    if image.ndim == 3:
        lo, hi = z_range if z_range is not None else (0, image.shape[0])
        out[dst] = image[(slice(lo, hi), *src)].max(axis=0)
    else:
        out[dst] = image[src]
    return out


def crop_labels(
    labels: np.ndarray,
    cy: float,
    cx: float,
    half: int,
    *,
    z_range: tuple[int, int] | None = None,
    z: float | None = None,
) -> np.ndarray:
    """An int32 label crop with the geometry of :func:`crop_image`; -1 outside the image.

    ``labels`` is (Y, X), or (Z, Y, X): then each (y, x) of the crop holds the object of
    the slice of ``z_range`` nearest ``z`` (the cell's centre; the range's middle when
    None) that has one, so the centre cell's footprint is its own.
    """
    size = 2 * half + 1
    out = np.full((size, size), -1, np.int32)  # track ids (label stacks: uint16 or int32)
    labels = np.asarray(labels)
    box = _box(labels.shape[-2:], cy, cx, half)
    if box is None:
        return out
    src, dst = box
    if labels.ndim == 2:
        out[dst] = labels[src]
        return out
    lo, hi = z_range if z_range is not None else (0, labels.shape[0])
    centre = (lo + hi - 1) / 2 if z is None or not np.isfinite(z) else float(z)
    proj = np.zeros(out[dst].shape, np.int32)
    for k in sorted(range(lo, hi), key=lambda k: (abs(k - centre), k)):
        sl = labels[(k, *src)]
        empty = proj == 0
        proj[empty] = sl[empty]
    out[dst] = proj
    return out


def crop_xz(
    volume: np.ndarray,
    cy: float,
    cx: float,
    half: int,
    *,
    z: float | None,
    y_half_px: float,
    z_step_um: float,
    pixel_size_um: float,
    fill: float = np.nan,
) -> np.ndarray:
    """An orthogonal view (depth down, X across) of a (Z, Y, X) volume around a cell: a
    (2 half + 1)² float32 crop in square µm, the maximum over the rows ``cy ±
    y_half_px`` (the cell's own y-range). Row ``r`` shows the slice nearest the depth
    ``z`` (slices; the stack's middle when None) + ``(r - half) * pixel_size_um`` µm,
    so the view spans the crop's width in depth too; ``fill`` beyond the stack."""
    size = 2 * half + 1
    out = np.full((size, size), fill, np.float32)
    volume = np.asarray(volume)
    nz, ny, nx = volume.shape
    x0 = int(round(cx)) - half
    xs, xe = max(x0, 0), min(x0 + size, nx)
    h = max(float(y_half_px), 0.0)
    ys, ye = max(math.ceil(cy - h - 1e-9), 0), min(math.floor(cy + h + 1e-9), ny - 1) + 1
    if xe <= xs or ye <= ys:
        return out
    section = volume[:, ys:ye, xs:xe].max(axis=1)  # (Z, width)
    centre = (nz - 1) / 2 if z is None or not np.isfinite(z) else float(z)
    depth = centre + (np.arange(size) - half) * (pixel_size_um / z_step_um)
    k = np.round(depth).astype(int)
    inside = (k >= 0) & (k < nz)
    out[np.flatnonzero(inside), xs - x0 : xe - x0] = section[k[inside]]
    return out


def _fmt(name: str, value) -> str:
    if name == col.MODE:
        return str(value)
    if isinstance(value, float):
        return f"{name} {value:.2f}" if not value.is_integer() else f"{name} {int(value)}"
    return f"{name} {value}"


def event_gallery(
    movie,
    events: pd.DataFrame,
    out_path: str | Path,
    *,
    channels: Sequence[str] = (col.ROLE_CELLS, col.ROLE_DYE),
    frames_rel: Sequence[int] = (-6, -3, -1, 0, 1, 3, 8),
    half_size_px: int = 28,
    title_columns: Sequence[str] = (col.MODE,),
    max_events: int = 40,
    tracks: pd.DataFrame | None = None,
) -> Path:
    """Save a PNG with one row per event and one column per (channel, relative frame).

    Parameters
    ----------
    movie
        An open :class:`deathtrack.io.Movie`.
    events
        ``event_id, frame, y, x`` and the ``title_columns`` (e.g. ``mode``,
        ``p_necroptotic``) shown in each row's title.
    out_path
        PNG path.
    channels
        Roles (or names) to show; roles the movie lacks are skipped.
    frames_rel
        Frames relative to each event's ``frame``; frames outside the movie are blank.
    half_size_px
        Half the crop size in pixels.
    tracks
        The target cells' ``frame, track_id, area_um2`` (``tracks.csv``): in a z-stack,
        each event's crops are the maximum projection of its own z-range (see the module
        docstring); without them, of every slice.

    Returns
    -------
    Path of the PNG.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in channels if c in movie.roles or c in movie.channel_names]
    ev = events.head(max_events).reset_index(drop=True)
    n_rows = max(len(ev), 1)
    n_cols = len(shown) * len(frames_rel)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.45 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if ev.empty:
        axes[0, 0].set_title("no events")
    n_z = int(movie.shape[2]) if movie.is_3d else 1
    z_ranges = event_z_ranges(ev, tracks, z_step_um=movie.calibration.z_step_um, n_z=n_z)
    for i, e in ev.iterrows():
        for k, ch in enumerate(shown):
            crops = []
            for dt in frames_rel:
                t = int(e[col.FRAME]) + dt
                if 0 <= t < movie.n_frames:
                    crops.append(
                        crop_image(
                            movie.read(ch, t), e[col.Y], e[col.X], half_size_px, z_range=z_ranges[i]
                        )
                    )
                else:
                    crops.append(np.full((2 * half_size_px + 1,) * 2, np.nan, np.float32))
            stack = np.stack(crops)
            finite = stack[np.isfinite(stack)]
            lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0, 1)
            for j, (dt, crop) in enumerate(zip(frames_rel, crops)):
                ax = axes[i, k * len(frames_rel) + j]
                # outside the image (or NaN): blue, not black
                cmap = plt.get_cmap("magma" if ch == col.ROLE_DYE else "gray").with_extremes(
                    bad="#3a6ea5"
                )
                ax.imshow(np.ma.masked_invalid(crop), cmap=cmap, vmin=lo, vmax=max(hi, lo + 1e-6))
                if i == 0:
                    ax.set_title(f"{ch} {dt:+d}", fontsize=7)
        label = "\n".join(_fmt(c, e[c]) for c in title_columns if c in e)
        if movie.is_3d:
            label += "\n" + z_range_text(z_ranges[i], n_z=n_z)
        text = f"#{e.get(col.EVENT_ID, i + 1)} {label}\nframe {int(e[col.FRAME])}"
        # lines short enough for the row's height (a long mode, "no death -> necroptotic",
        # ran into the next row's label)
        lines = [w for line in text.split("\n") for w in textwrap.wrap(line, 18) or [""]]
        axes[i, 0].set_ylabel("\n".join(lines), fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
