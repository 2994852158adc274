"""Link objects into tracks (trackpy) and find divisions.

One table flows through: :func:`link_objects` takes the per-frame objects
table and returns a copy with ``track_id`` added; :func:`find_divisions`
splits tracks at divisions and returns the lineage in its own table
(``parent_id, child_id, frame``). A division must never look like a death
later, so the death stage reads the lineage.

Examples
--------
>>> import pandas as pd
>>> from deathtrack.config import PopulationTrackConfig
>>> objs = pd.DataFrame({"frame": [0, 1, 2], "label": [1, 1, 1], "y_um": [0.0, 1.0, 2.0],
...                      "x_um": [0.0, 0.0, 0.0], "area_um2": [100.0] * 3})
>>> link_objects(objs, PopulationTrackConfig(), interval_s=60)["track_id"].tolist()
[1, 1, 1]
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import columns as col
from .config import DivisionConfig, PopulationTrackConfig
from .errors import CalibrationError

logger = logging.getLogger(__name__)

__all__ = [
    "export_ctc",
    "find_divisions",
    "link_objects",
    "relabel_frames",
    "search_range_um",
]

LINEAGE_COLUMNS = [col.PARENT_ID, col.CHILD_ID, col.FRAME]

#: what trackpy imports only to offer what deathtrack never asks of it: IPython (a
#: notebook's display of its log) and scikit-learn (BallTree, for custom distances)
TRACKPY_OPTIONAL = ("IPython", "sklearn")


def import_trackpy():
    """trackpy; in deathtrack's own process (the command line's, see
    :func:`deathtrack._memory.claim_process`) without :data:`TRACKPY_OPTIONAL` when they
    are not loaded yet: ~30 MB less resident. Elsewhere (a notebook, napari) a plain
    import."""
    from ._memory import own_process

    if "trackpy" in sys.modules or not own_process():
        import trackpy

        return _cache_compiled_linker(trackpy)
    hidden = [name for name in TRACKPY_OPTIONAL if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # an import of it raises ImportError: trackpy goes without
    try:
        import trackpy
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return _cache_compiled_linker(trackpy)


def _cache_compiled_linker(trackpy):
    """``trackpy``, its numba-compiled subnetwork solver set to keep its machine code on
    disk as ``cache=True`` would (trackpy compiles it in every process: ~0.5 s of each
    run's linking, ~1 s beside the run's other threads; loaded from numba's cache: ~0.02
    s). numba keys the cache on the source file, so another trackpy compiles anew. Left
    as it is when the solver is not a numba function (numba missing, or disabled)."""
    try:
        from trackpy.linking import subnetlinker

        solver = subnetlinker._numba_subnet_norecur
        if hasattr(solver, "enable_caching") and type(solver._cache).__name__ == "NullCache":
            solver.enable_caching()
    except Exception:  # another trackpy, or numba finds nowhere to write (RuntimeError):
        pass  # it compiles in each process as it always did
    return trackpy


def search_range_um(config: PopulationTrackConfig, interval_s: float | None) -> float:
    """Largest distance (µm) an object may move between frames."""
    if interval_s is None:
        raise CalibrationError(
            "tracking needs the frame interval to turn the speed limit "
            f"({config.max_speed_um_per_min} µm/min) into a distance: pass --interval S "
            "(seconds) or set input.interval_s"
        )
    return max(config.min_search_um, config.max_speed_um_per_min * interval_s / 60.0)


def link_objects(
    objects: pd.DataFrame,
    config: PopulationTrackConfig | None = None,
    *,
    interval_s: float | None,
) -> pd.DataFrame:
    """Link objects over frames; return a copy with ``track_id`` (1..N).

    Parameters
    ----------
    objects : DataFrame
        One row per object per frame with ``frame, y_um, x_um`` (as from
        :func:`deathtrack.measure.measure_frame`); with ``z_um`` too (a 3D
        movie, :func:`deathtrack.measure3d.measure_volume`), objects are
        linked in 3D µm coordinates.
    config
        Speed limit, memory for gaps, minimum track length.
    interval_s
        Frame interval in seconds.

    Returns
    -------
    DataFrame
        A copy of ``objects`` sorted by ``frame, label`` with ``track_id``
        numbered in order of first appearance (deterministic). Tracks shorter
        than ``config.min_duration_min`` minutes are dropped.
    """
    trackpy = import_trackpy()

    cfg = config or PopulationTrackConfig()
    missing = [c for c in (col.FRAME, col.Y_UM, col.X_UM) if c not in objects.columns]
    if missing:
        raise ValueError(f"`objects` lacks column(s) {missing}; found {list(objects.columns)}")
    out = objects.sort_values(
        [col.FRAME, col.LABEL] if col.LABEL in objects else [col.FRAME], kind="stable"
    ).reset_index(drop=True)
    if out.empty:
        out[col.TRACK_ID] = pd.Series(dtype=np.int64)
        return out
    search = search_range_um(cfg, interval_s)
    pos = [col.Z_UM, col.Y_UM, col.X_UM] if col.Z_UM in out else [col.Y_UM, col.X_UM]
    trackpy.quiet()
    with warnings.catch_warnings():
        # trackpy 0.7 calls pandas APIs that pandas 3 deprecates; harmless, not ours to fix
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="trackpy")
        warnings.filterwarnings("ignore", category=FutureWarning, module="trackpy")
        linked = trackpy.link(
            out[[col.FRAME, *pos]].copy(),
            search,
            pos_columns=pos,
            t_column=col.FRAME,
            memory=int(cfg.max_gap_min * 60.0 // interval_s),
            # where many objects crowd (immune cells swarming a death), trackpy narrows the
            # search in that subnetwork only, down to 5 % of it, instead of giving up
            adaptive_stop=0.05 * search,
            adaptive_step=0.9,
        )
    particle = linked["particle"].reindex(out.index).to_numpy()
    # renumber in order of first appearance so ids do not depend on trackpy internals
    _, first = np.unique(particle, return_index=True)
    order = np.argsort(first, kind="stable")
    mapping = {particle[first[k]]: i + 1 for i, k in enumerate(order)}
    out[col.TRACK_ID] = np.array([mapping[p] for p in particle], dtype=np.int64)
    if cfg.min_duration_min > 0:
        frames = out.groupby(col.TRACK_ID)[col.FRAME]
        duration_min = (frames.transform("max") - frames.transform("min") + 1) * interval_s / 60
        out = out[duration_min >= cfg.min_duration_min].reset_index(drop=True)
        out[col.TRACK_ID] = _renumber(out[col.TRACK_ID].to_numpy())
    return out


def _renumber(ids: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
    return rank[inverse]


def find_divisions(
    tracks: pd.DataFrame, config: DivisionConfig | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split tracks at divisions and return the lineage.

    A division at frame ``f``: a track ``B`` starts at ``f`` next to a track
    ``A`` present at ``f - 1``, and either another track ``C`` also starts at
    ``f`` next to ``A`` while ``A`` ends at ``f - 1`` (both daughters got new
    ids), or ``A`` goes on at ``f`` with its area dropping to a daughter's
    size (one daughter kept ``A``'s id: it gets a new id from ``f`` on). In
    both cases each daughter's area is a fraction (``config.area_ratio``) of
    the parent's last area.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track_id, y_um, x_um, area_um2`` (from :func:`link_objects`).

    Returns
    -------
    tracks : DataFrame
        A copy, with daughters that kept the parent's id renumbered.
    lineage : DataFrame
        ``parent_id, child_id, frame`` (``frame`` = first frame of the child).
    """
    cfg = config or DivisionConfig()
    out = tracks.copy()
    lineage: list[tuple[int, int, int]] = []
    if out.empty or not cfg.enabled:
        return out, pd.DataFrame(lineage, columns=LINEAGE_COLUMNS, dtype=np.int64)
    lo, hi = cfg.area_ratio
    next_id = int(out[col.TRACK_ID].max()) + 1

    reporter = f"{col.ROLE_CELLS}_mean"
    background = f"{col.ROLE_CELLS}_bg"

    def signal(row) -> float:
        return float(row[reporter]) - float(row.get(background, 0.0))

    def cell_like(row, parent=None) -> bool:
        """A daughter is one piece of cell size, not a group of apoptotic bodies, and keeps
        the parent's reporter (the pieces of a ruptured necroptotic cell's ghost do not)."""
        if row[col.AREA_UM2] < cfg.min_daughter_area_um2:
            return False
        if parent is not None and reporter in row and signal(parent) > 0:
            if signal(row) < cfg.min_daughter_reporter * signal(parent):
                return False
        if float(row.get("solidity", 1.0)) < cfg.min_daughter_solidity:
            return False
        return int(row.get("n_fragments", 1)) == 1

    by_frame = {f: g for f, g in out.groupby(col.FRAME)}
    first = out.groupby(col.TRACK_ID)[col.FRAME].min().to_dict()
    last = out.groupby(col.TRACK_ID)[col.FRAME].max().to_dict()
    used_parents: set[int] = set()
    claimed: set[int] = set()
    t0 = out[col.FRAME].min()
    for f in sorted({v for v in first.values() if v > t0}):
        prev = by_frame.get(f - 1)
        cur = by_frame.get(f)
        if prev is None or cur is None:
            continue
        starts = cur[cur[col.TRACK_ID].map(first) == f]
        for _, b in starts.iterrows():
            bid = int(b[col.TRACK_ID])
            if bid in claimed:
                continue
            d = np.hypot(prev[col.Y_UM] - b[col.Y_UM], prev[col.X_UM] - b[col.X_UM])
            for idx in np.argsort(d.to_numpy(), kind="stable"):
                if d.iloc[idx] > cfg.max_distance_um:
                    break
                a = prev.iloc[idx]
                aid = int(a[col.TRACK_ID])
                if aid in used_parents:
                    continue
                a_area = float(a[col.AREA_UM2])
                if not lo <= b[col.AREA_UM2] / a_area <= hi or not cell_like(b, a):
                    continue
                if last[aid] == f - 1:
                    # parent ended: look for the sister among the other new tracks
                    others = starts[
                        (starts[col.TRACK_ID] != bid) & ~starts[col.TRACK_ID].isin(claimed)
                    ]
                    ds = np.hypot(others[col.Y_UM] - a[col.Y_UM], others[col.X_UM] - a[col.X_UM])
                    ok = others[
                        (ds <= cfg.max_distance_um)
                        & (others[col.AREA_UM2] / a_area).between(lo, hi)
                        & np.array([cell_like(r, a) for _, r in others.iterrows()], dtype=bool)
                    ]
                    if ok.empty:
                        continue
                    cid = int(ok.iloc[int(np.argmin(ds[ok.index].to_numpy()))][col.TRACK_ID])
                    lineage += [(aid, bid, f), (aid, cid, f)]
                    claimed.update((bid, cid))
                    used_parents.add(aid)
                    break
                # parent goes on: did its area drop to a daughter's size at f?
                a_now = cur[cur[col.TRACK_ID] == aid]
                if (
                    a_now.empty
                    or not lo <= float(a_now[col.AREA_UM2].iloc[0]) / a_area <= hi
                    or not cell_like(a_now.iloc[0], a)
                ):
                    continue
                new = next_id
                next_id += 1
                rows = (out[col.TRACK_ID] == aid) & (out[col.FRAME] >= f)
                out.loc[rows, col.TRACK_ID] = new
                for g, frame_rows in by_frame.items():
                    if g >= f:
                        sel = frame_rows[col.TRACK_ID] == aid
                        if sel.any():
                            frame_rows.loc[sel, col.TRACK_ID] = new
                lineage += [(aid, new, f), (aid, bid, f)]
                claimed.update((bid, new))
                used_parents.add(aid)
                first[new], last[new] = f, last[aid]
                last[aid] = f - 1
                break
    lin = pd.DataFrame(lineage, columns=LINEAGE_COLUMNS, dtype=np.int64)
    return out, lin.sort_values([col.FRAME, col.PARENT_ID, col.CHILD_ID]).reset_index(drop=True)


def relabel_frame(
    labels: np.ndarray, objects: pd.DataFrame | None, dtype: Any = np.int32
) -> np.ndarray:
    """One label image (Y, X) with values ``track_id`` instead of per-frame labels.

    ``objects`` holds that frame's ``label, track_id`` rows (None: no object
    is tracked, the result is all background). The result has ``dtype``. In one compiled
    pass (:func:`deathtrack._kernels.apply_lut`) where those kernels are loaded already.
    """
    labels = np.asarray(labels)
    lut = np.zeros(int(labels.max(initial=0)) + 1, dtype)
    if objects is not None and len(objects):
        lab = objects[col.LABEL].to_numpy()
        keep = lab < lut.size
        lut[lab[keep]] = objects[col.TRACK_ID].to_numpy()[keep]
    if labels.dtype.kind in "iu" and labels.size and "deathtrack._kernels" in sys.modules:
        from ._kernels import apply_lut

        return apply_lut(labels, lut)  # lut[labels], in one pass
    # where the compiled kernels are not loaded (a helper process writing the label
    # stacks), NumPy's ~3x slower indexing costs less than loading numba (~90 MB)
    return lut[labels]


def relabel_frames(
    frames: Iterable[np.ndarray], tracks: pd.DataFrame, dtype: Any = np.int32
) -> Iterator[np.ndarray]:
    """Yield label images whose values are ``track_id`` instead of per-frame labels.

    Parameters
    ----------
    frames
        Per-frame label images (Y, X), in frame order from frame 0.
    tracks
        ``frame, label, track_id``; objects without a track become background.
    dtype
        Of the images (it must hold every ``track_id``).
    """
    groups = {f: g for f, g in tracks.groupby(col.FRAME)}
    for t, lab in enumerate(frames):
        yield relabel_frame(lab, groups.get(t), dtype)


def export_ctc(
    frames: Iterable[np.ndarray],
    tracks: pd.DataFrame,
    lineage: pd.DataFrame,
    out_dir: str | Path,
    *,
    n_frames: int,
) -> Path:
    """Write tracks in the Cell Tracking Challenge result format.

    ``out_dir/maskTTT.tif`` (uint16 label images; of a z-stack, (Z, Y, X)
    volumes stored as one page per slice, as the CTC's 3D datasets are) and
    ``out_dir/res_track.txt`` (``L B E P`` per line: the result's own track file,
    the ``man_track.txt`` of a ground truth). CTC tracks are continuous in time,
    so a track with a gap is split into segments; each later segment gets a new
    label whose parent is the segment before it.

    Parameters
    ----------
    frames
        Per-frame label images (Y, X) or volumes (Z, Y, X) whose values are
        ``track_id`` (from :func:`relabel_frames`).
    """
    import tifffile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    segs: dict[tuple[int, int], int] = {}  # (track_id, frame) -> ctc label
    rows: list[list[int]] = []
    next_label = int(tracks[col.TRACK_ID].max()) + 1 if len(tracks) else 1
    first_label: dict[int, int] = {}
    last_label: dict[int, int] = {}
    for tid, g in tracks.groupby(col.TRACK_ID):
        fr = np.sort(g[col.FRAME].unique())
        breaks = np.flatnonzero(np.diff(fr) > 1) + 1
        parent = 0
        for k, seg in enumerate(np.split(fr, breaks)):
            label = int(tid) if k == 0 else next_label
            if k:
                next_label += 1
            for f in seg:
                segs[(int(tid), int(f))] = label
            rows.append([label, int(seg[0]), int(seg[-1]), parent])
            parent = label
            first_label.setdefault(int(tid), label)
            last_label[int(tid)] = label
    if next_label > 65535:
        raise ValueError(f"{next_label - 1} CTC tracks do not fit 16-bit masks")
    parent_of = {int(r.child_id): int(r.parent_id) for r in lineage.itertuples()}
    for r in rows:
        tid = next((t for t, lab in first_label.items() if lab == r[0]), None)
        if tid is not None and tid in parent_of:
            r[3] = last_label.get(parent_of[tid], 0)
    width = max(3, len(str(n_frames - 1)))
    for t, lab in enumerate(frames):
        lut_src = [(tid, lbl) for (tid, f), lbl in segs.items() if f == t]
        lut = np.zeros(int(lab.max(initial=0)) + 1, np.uint16)
        for tid, lbl in lut_src:
            if tid < lut.size:
                lut[tid] = lbl
        tifffile.imwrite(out / f"mask{t:0{width}d}.tif", lut[lab], compression="zlib")
    with open(out / "res_track.txt", "w", encoding="ascii") as fh:
        for r in sorted(rows):
            fh.write(" ".join(map(str, r)) + "\n")
    return out
