"""Keep a population's segmentation consistent from frame to frame.

Each frame is first segmented on its own (:func:`deathtrack.segment.segment_frame`,
in parallel). Then one pass over the frames, in order, compares each frame's
objects with the previous frame's (after the field's drift) and mends two
faults that no single frame can see:

- **Merged neighbours.** Two cells that were separate in the previous frame
  and now form one object (their seam got too faint to split) are split
  again, by a watershed on the image seeded with where each of them was.
  Cells do not fuse, so the previous frame's separation is evidence; it is
  followed when the merged object shows a neck or a seam (a round, convex
  object with no dimmer line through it stays one), or when the two were
  each their own object for ``CARRY_MIN_FRAMES`` frames in a row and the
  merged object is the size of two cells: cells pressed together without a
  visible seam (``split_merged_seen``).
- **Cells that fade or are missed.** A cell that was there and now has no
  object where it was (not at the image edge) is looked for where it was, at
  a lower threshold relative to its own surroundings: the faint ghost of a
  ruptured necroptotic cell, or a cell missed in one frame. Such objects are
  marked ``carried``. A cell that divided (two new objects on either side of
  where it was) is not looked for: between its daughters the search would find
  the dark gap (``carry_divided``). Only places where a cell just was are searched, so
  uneven background elsewhere never becomes an object. With a dead-cell dye,
  a target cell whose ghost is at background level (confluent fields) is kept
  as its last outline while the dye stains it there (``carry_dye_k``).

Once every frame is mended, a second pass goes from the last frame back and
splits merged objects only: two cells seen apart in later frames are split in
the earlier frames where they were merged without a seam, as cells pressed
together from the start that move apart later (``split_merged_seen_later``). An
object more convex than a pair of cells usually is stays whole: one large cell
that the segmentation cut in two later is not cut earlier too.

This replaces a frame-wide search for dim objects, which drew objects into
uneven background and the glow around bright cells.

Every size is physical (µm); the pass needs the images (and the dye) only in
the frames it changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from scipy import ndimage as ndi

from ._kernels import components, dilate, erode, fill_holes, gaussian, label_sums, pair_counts
from .config import PopulationSegmentConfig

logger = logging.getLogger(__name__)

__all__ = [
    "CARRY_MIN_FRAMES",
    "Mender",
    "estimate_shift",
    "mends_later",
    "object_age",
    "refine_frame",
    "segment_sequence",
]


#: a cell is carried through a fade only after it has been seen in this many frames in a
#: row (a segmentation-consistency rule, about frames by nature: a blob of noise or
#: background texture shows in one frame or two)
CARRY_MIN_FRAMES = 3

#: two cells seen apart (each its own object) in ``CARRY_MIN_FRAMES`` frames in a row are
#: kept apart when they merge without a neck or seam (``split_merged_seen``), if each was at
#: least this share of the frame's typical object area (a cell cut in two unevenly leaves a
#: small piece) ...
SEEN_MIN_PART = 0.6
#: ... and the merged object is at least this many typical areas (a cell cut in two and
#: whole again is the size of one cell; two cells pressed together, of two)
SEEN_MIN_MERGED = 1.5
#: an object continues another's separate life only when each covers this share of the
#: other (a piece cut from a cell starts its own count)
SEEN_OVERLAP = 0.6
#: the pass from the last frame back (``split_merged_seen_later``) leaves whole an object
#: more convex than this (its area over its convex hull's): one large cell, cut in two in
#: the later frames by the segmentation, would otherwise be cut in the earlier ones too
#: (two cells pressed together: 0.87-0.89 on dense development seeds; one large cell cut
#: in two: 0.90-0.95)
LATER_MAX_SOLIDITY = 0.93


def object_age(
    prev: np.ndarray | None,
    prev_age: np.ndarray | None,
    cur: np.ndarray,
    *,
    mutual: float = 0.0,
) -> np.ndarray:
    """In how many frames in a row each object of ``cur`` has been seen (indexed by label):
    one more than the oldest object of ``prev`` under at least 30 % of it, else 1.

    With ``mutual`` > 0, an object continues only an object of ``prev`` that covers that
    share of it *and* that it covers that share of: how long it has been seen as its own
    object (a cell cut in two starts two new counts; two cells merged, one)."""
    if prev is None or prev_age is None or not cur.max(initial=0):
        return _aged(cur, None, prev_age)
    return _aged(cur, _overlaps(prev, cur), prev_age, mutual)


def _overlaps(prev: np.ndarray, cur: np.ndarray):
    """What :func:`_aged` needs of two frames: the pairs of overlapping objects (after
    the field's drift) and both frames' object areas."""
    prev_s = _shifted(prev, *estimate_shift(prev, cur))
    a, b, cnt = _pair_counts(prev_s, cur)
    area = np.bincount(cur.ravel(), minlength=int(cur.max(initial=0)) + 1)
    area_prev = np.bincount(prev_s.ravel(), minlength=int(prev.max(initial=0)) + 1)
    return a, b, cnt, area, area_prev


def _aged(cur: np.ndarray, overlaps, prev_age: np.ndarray | None, mutual: float = 0.0):
    """:func:`object_age` given the frames' :func:`_overlaps` (None: no previous frame)."""
    n = int(cur.max(initial=0))
    age = np.zeros(n + 1, np.int64)
    age[np.unique(cur[cur > 0])] = 1
    if overlaps is None or prev_age is None or not n:
        return age
    a, b, cnt, area, area_prev = overlaps
    ok = (cnt >= 0.3 * area[b]) & (a < len(prev_age))
    if mutual > 0:
        ok &= (cnt >= mutual * area[b]) & (cnt >= mutual * area_prev[a])
    np.maximum.at(age, b[ok], prev_age[a[ok]] + 1)
    return age


def _pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by each pair of labels (both > 0): arrays (label_a, label_b, count)."""
    return pair_counts(a, b)


def _centroids(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cnt, sy, sx = label_sums(labels, n)
    cnt = cnt.astype(np.float64)
    return cnt, sy / np.maximum(cnt, 1), sx / np.maximum(cnt, 1)


def estimate_shift(prev: np.ndarray, cur: np.ndarray) -> tuple[int, int]:
    """Shift (dy, dx) in whole pixels of the field from ``prev`` to ``cur`` (two label images).

    The median displacement of objects that overlap one another one to one (stage
    drift moves every object alike; the cells' own movements average out). (0, 0) when
    fewer than three objects pair up.
    """
    a, b, n = _pair_counts(prev, cur)
    if len(a) < 3:
        return 0, 0
    na, nb = int(prev.max()), int(cur.max())
    ca, ya, xa = _centroids(prev, na)
    cb, yb, xb = _centroids(cur, nb)
    iou = n / (ca[a] + cb[b] - n)
    # one-to-one: each object's best partner is the other's best partner
    best_a = np.zeros(na + 1, np.int64)
    best_b = np.zeros(nb + 1, np.int64)
    order = np.argsort(iou, kind="stable")
    best_a[a[order]] = b[order]
    best_b[b[order]] = a[order]
    mutual = (best_a[a] == b) & (best_b[b] == a) & (iou > 0.2)
    if mutual.sum() < 3:
        return 0, 0
    dy = np.median(yb[b[mutual]] - ya[a[mutual]])
    dx = np.median(xb[b[mutual]] - xa[a[mutual]])
    return int(round(dy)), int(round(dx))


def _shifted(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``labels`` moved by (dy, dx) pixels; what moves in from outside is background."""
    if dy == 0 and dx == 0:
        return labels
    out = np.zeros_like(labels)
    ny, nx = labels.shape
    if abs(dy) >= ny or abs(dx) >= nx:
        return out
    ys = slice(max(dy, 0), ny + min(dy, 0))
    yd = slice(max(-dy, 0), ny + min(-dy, 0))
    xs = slice(max(dx, 0), nx + min(dx, 0))
    xd = slice(max(-dx, 0), nx + min(-dx, 0))
    out[ys, xs] = labels[yd, xd]
    return out


def _placed(anchor: tuple[int, int, np.ndarray], dy: int, dx: int, sl) -> np.ndarray:
    """An anchor ``(y0, x0, mask)`` moved by (dy, dx), drawn into the box ``sl``."""
    y0, x0, mask = anchor
    y0, x0 = y0 + dy, x0 + dx
    out = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), bool)
    oy, ox = y0 - sl[0].start, x0 - sl[1].start
    ys = slice(max(oy, 0), min(oy + mask.shape[0], out.shape[0]))
    xs = slice(max(ox, 0), min(ox + mask.shape[1], out.shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        out[ys, xs] = mask[ys.start - oy : ys.stop - oy, xs.start - ox : xs.stop - ox]
    return out


def _solidity(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Solidity (pixels / convex hull pixels, as scikit-image's) of the objects ``ids``."""
    from ._kernels import object_shapes

    hull = object_shapes(labels, np.asarray(ids, dtype=np.int64), hull=True)[2]
    area = np.bincount(labels.ravel(), minlength=int(max(ids)) + 1)[ids]
    return area / np.maximum(hull, 1)


def _box(mask_sl: tuple[slice, slice], grow: int, shape) -> tuple[slice, slice]:
    return tuple(
        slice(max(s.start - grow, 0), min(s.stop + grow, n)) for s, n in zip(mask_sl, shape)
    )  # type: ignore[return-value]


def _noise_sd(values: np.ndarray, where: np.ndarray) -> float:
    """Pixel noise SD of a small image over the pixels ``where``: MAD of the residual of a
    3x3 mean (the pixels' own noise, not the slow changes of the background)."""
    if min(values.shape) < 5:
        return float(np.std(values[where]))
    resid = (values - ndi.uniform_filter(values, 3, mode="reflect"))[where]
    mad = float(np.median(np.abs(resid - np.median(resid))))
    return 1.4826 * mad / np.sqrt(8 / 9)


def _split_merged(
    cur: np.ndarray,
    k: int,
    parents: list[int],
    prev_s: np.ndarray,
    image: np.ndarray,
    px: float,
    next_label: int,
    seen_apart: bool = False,
    max_solidity: float = 1.0,
    min_part_px: float = 0.0,
) -> int:
    """Split object ``k`` of ``cur`` (in place) along the seams between where each of
    ``parents`` was; returns the next free label. Leaves ``k`` whole when the object
    shows no sign of being two (no neck, no dimmer seam), unless ``parents`` were
    ``seen_apart`` long enough for that to be evidence, and when its solidity is above
    ``max_solidity`` or a part would be smaller than ``min_part_px`` pixels."""
    sl = _box(ndi.find_objects((cur == k).astype(np.int32))[0], 2, cur.shape)
    comp = cur[sl] == k
    markers = np.zeros(comp.shape, np.int32)
    e = max(1, int(round(1.0 / px)))
    for i, p in enumerate(parents, start=1):
        m = (prev_s[sl] == p) & comp
        core = erode(m, e)
        markers[core if core.any() else m] = i
    if len(np.unique(markers[markers > 0])) < 2:
        return next_label
    img = np.nan_to_num(image[sl].astype(np.float32), nan=float(np.nanmedian(image[sl])))
    smooth = gaussian(img, max(0.5, 0.5 / px))
    from skimage.segmentation import find_boundaries, watershed

    split = watershed(-smooth, markers, mask=comp)
    # evidence that these are two: a seam dimmer than the cells, or a neck in the shape
    seam = find_boundaries(split, mode="inner") & comp & ~find_boundaries(comp, mode="inner")
    inner = comp & ~dilate(seam, max(1, int(round(1.0 / px))))
    if not seam.any() or not inner.any():
        return next_label
    seam_level = float(np.median(smooth[seam]))
    inner_level = float(np.median(smooth[inner]))
    from ._kernels import object_shapes

    hull = object_shapes(comp.astype(np.int32), np.array([1]), hull=True)[2]
    solidity = float(comp.sum() / max(hull[0], 1))
    if solidity > max_solidity or (
        not seen_apart and seam_level > 0.92 * inner_level and solidity > 0.9
    ):
        return next_label
    if min_part_px > 0 and np.bincount(split.ravel())[1:].min() < min_part_px:
        return next_label
    from .segment import number_pieces

    return number_pieces(cur[sl], split, next_label)


def _find_faded(
    cur: np.ndarray,
    a_mask: np.ndarray,
    sl: tuple[slice, slice],
    image: np.ndarray,
    cfg: PopulationSegmentConfig,
    px: float,
    pieces: list[int] | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray | None:
    """The object where ``a_mask`` (a cell of the previous frame, within box ``sl``) was,
    found at a lower threshold relative to its own surroundings; a mask in ``sl`` or None.
    ``pieces``: labels of ``cur`` that may be part of it (not other cells). It is looked
    for within ``carry_reach_um`` of ``a_mask``, or, given the cell's ``anchor`` (its
    outline before it faded), within 0.4 of the anchor's radius of it."""
    reach = max(1, int(round(cfg.carry_reach_um / px)))
    region = dilate(a_mask, reach)
    if anchor is not None:
        # a faded cell may still swell (up to about twice its area) but not grow beyond
        region = dilate(anchor, max(reach, int(round(0.4 * np.sqrt(anchor.sum() / np.pi)))))
    others = cur[sl] > 0
    if pieces:
        others &= ~np.isin(cur[sl], pieces)
    near_others = dilate(others, max(1, int(round(1.0 / px))))
    img = image[sl].astype(np.float32)
    finite = np.isfinite(img)
    around = ~dilate(a_mask, reach + max(2, int(round(2.0 / px)))) & ~near_others & finite
    if around.sum() < 30:
        return None
    bg = float(np.median(img[around]))
    fill = np.where(finite, img, bg)
    noise = _noise_sd(fill, around)
    if not noise > 0:
        return None
    # from fine to coarse: a faint ghost rises above the noise only when smoothed over a
    # good part of its own size. The finest scale at which it is found whole, with an
    # outline clear of the noise, is taken.
    ref = a_mask if anchor is None else anchor
    ref_area = int(ref.sum())
    diameter_um = 2 * np.sqrt(ref_area / np.pi) * px
    fine = cfg.carry_smooth_um
    best, best_key = None, None
    signal = fill - bg
    mine = np.isin(cur[sl], pieces) if pieces else None
    for scale_um in (fine, max(2 * fine, 0.12 * diameter_um), max(4 * fine, 0.25 * diameter_um)):
        found, clear = _faded_at(
            signal, noise, a_mask, region, near_others, finite, scale_um / px, cfg
        )
        if found is None:
            continue
        found = fill_holes(found) & ~others
        if mine is not None and mine.any() and (found & ~mine).any():
            # one faint cell seen only where its texture peaks has signal between its
            # pieces; apoptotic bodies have background between them: they stay pieces
            between = float(np.mean(signal[found & ~mine]))
            if between < 0.3 * float(np.mean(signal[mine])):
                continue
        whole = found.sum() >= 0.7 * ref_area
        if whole and clear:
            return found
        key = (whole, clear, int(found.sum()))
        if best_key is None or key > best_key:
            best, best_key = found, key
    return best


def _faded_at(signal, noise, a_mask, region, near_others, finite, sigma, cfg):
    """:func:`_find_faded` at one smoothing scale (``sigma`` pixels): the object or None,
    and whether its outline is clear of the noise (its plateau 8 noise SDs up, so the edge
    at ``edge_fraction`` of it stands well out of the noise)."""
    sigma = max(1.0, sigma)
    # smoothed over the pixels that are not other objects (their glow is not this cell's)
    w = gaussian((~near_others).astype(np.float32), sigma)
    sm = gaussian(np.where(near_others, 0, signal), sigma) / np.maximum(w, 1e-3)
    noise_s = noise / (2 * sigma * np.sqrt(np.pi))
    cand = (sm > cfg.carry_k * noise_s) & region & ~near_others & finite
    if not cand.any():
        return None, False
    lab, n = components(cand)
    overlap = np.bincount(lab[a_mask], minlength=n + 1)
    overlap[0] = 0
    best = int(np.argmax(overlap))
    if best == 0:
        return None, False
    piece = lab == best
    # the outline where the signal falls to a fraction of the object's own plateau, as for
    # any object (segment.py): at the noise threshold alone the outline of a faint object
    # frays into the noise, and would grow frame after frame
    plateau = float(np.percentile(sm[piece], 90))
    piece &= sm > max(cfg.carry_k * noise_s, cfg.edge_fraction * plateau)
    lab, n = components(piece)
    if n == 0:
        return None, False
    overlap = np.bincount(lab[a_mask], minlength=n + 1)
    overlap[0] = 0
    best = int(np.argmax(overlap))
    piece = lab == best
    a_area = a_mask.sum()
    if best == 0 or piece.sum() < 0.3 * a_area or overlap[best] < 0.3 * a_area:
        return None, False
    return piece, plateau >= 8 * noise_s


#: a cell that divided is not carried: two new objects lie on either side of where it was,
#: each this share of its area or more (and no more than its area) ...
DIVIDED_MIN_AREA = 0.2
#: ... their centres between these many of its radii from its centre (daughters move
#: apart; pieces of a dying cell, or its ghost's patches, lie within it)
DIVIDED_REACH = (0.6, 2.0)


class _Divided:
    """Whether a cell of the previous frame divided (``config.carry_divided`` False): two
    objects of this frame that are not mostly on another previous cell lie on either side
    of where it was (their directions from its centre more than 90 degrees apart), each of
    ``DIVIDED_MIN_AREA`` to 1 times its area, ``DIVIDED_REACH`` of its radii from its
    centre. Such a mother must not be looked for as a faded cell: between its daughters,
    the search finds the dark gap, and a ghost carried there is taken for a death.
    Centroids are computed at the first question."""

    def __init__(self, prev_s, cur, a, b, n, area_prev, area_cur):
        self._args = (prev_s, cur, a, b, n, area_prev, area_cur)
        self._ready = False

    def _prepare(self) -> None:
        prev_s, cur, a, b, n, area_prev, area_cur = self._args
        nc = len(area_cur)
        # each current object's largest share on one previous object, and which
        share = np.zeros(nc)
        on = np.zeros(nc, np.int64)
        if len(b):
            frac = n / np.maximum(area_cur[b], 1)
            order = np.lexsort((frac, b))  # by object, its largest share last
            last = order[np.r_[np.flatnonzero(np.diff(b[order])), len(order) - 1]]
            share[b[last]], on[b[last]] = frac[last], a[last]
        _, self.cy, self.cx = _centroids(cur, nc - 1)
        _, self.py, self.px = _centroids(prev_s, len(area_prev) - 1)
        self.ids = np.flatnonzero(area_cur[1:]) + 1
        self.share, self.on = share[self.ids], on[self.ids]
        self._ready = True

    def __call__(self, k: int) -> bool:
        if not self._ready:
            self._prepare()
        area_prev, area_cur = self._args[5], self._args[6]
        ids = self.ids
        r = np.sqrt(area_prev[k] / np.pi)
        dy, dx = self.cy[ids] - self.py[k], self.cx[ids] - self.px[k]
        dist = np.hypot(dy, dx)
        lo, hi = DIVIDED_REACH
        sel = (
            ((self.share < 0.3) | (self.on == k))
            & (area_cur[ids] >= DIVIDED_MIN_AREA * area_prev[k])
            & (area_cur[ids] <= area_prev[k])
            & (dist >= lo * r)
            & (dist <= hi * r)
        )
        if sel.sum() < 2:
            return False
        v = np.stack([dy[sel], dx[sel]], 1) / dist[sel, None]
        return bool((v @ v.T).min() < 0)


def _not_anothers(b: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """For each pair (previous object, current object ``b``) of :func:`_pair_counts`, with
    ``inside`` the share of ``b`` on that previous object: False where ``b`` lies mostly
    (>= 50 %) on another previous object."""
    main = np.zeros(int(b.max(initial=0)) + 1)
    np.maximum.at(main, b, inside)
    return (inside >= main[b]) | (main[b] < 0.5)


def _dye_ghost(
    lab: np.ndarray,
    a_mask: np.ndarray,
    sl: tuple[slice, slice],
    dye: np.ndarray,
    px: float,
    pieces: list[int],
    k_sd: float,
) -> np.ndarray | None:
    """A vanished cell whose last outline now shows the dead-cell dye: its ruptured ghost
    (the outline, less other objects), or None.

    The dye stains the dead cell's nucleus, a disc about a quarter of the cell across:
    the 90th percentile inside the outline is compared with the median of a 4 µm ring
    around it (other objects left out), in noise SDs of that ring."""
    others = lab[sl] > 0
    if pieces:
        others &= ~np.isin(lab[sl], pieces)
    mask = a_mask & ~others
    if mask.sum() < 0.7 * a_mask.sum():
        return None  # another cell has taken its place
    d = dye[sl]
    ring = dilate(a_mask, max(2, int(round(4.0 / px)))) & ~dilate(a_mask, 1) & ~others
    ring &= np.isfinite(d)
    if ring.sum() < 30 or not np.isfinite(d[mask]).any():
        return None
    bg = float(np.median(d[ring]))
    sd = _noise_sd(np.where(np.isfinite(d), d, bg), ring)
    inside = float(np.nanpercentile(d[mask], 90))
    return mask if sd > 0 and inside > bg + k_sd * sd else None


def refine_frame(
    prev: np.ndarray | None,
    cur: np.ndarray,
    image: Callable[[], np.ndarray],
    config: PopulationSegmentConfig,
    *,
    pixel_size_um: float,
    prev_carried: dict[int, tuple[int, int, np.ndarray]] | None = None,
    prev_age: np.ndarray | None = None,
    dye: Callable[[], np.ndarray] | None = None,
    prev_apart: np.ndarray | None = None,
    seen_only: bool = False,
) -> tuple[np.ndarray, dict[int, tuple[int, int, np.ndarray]]]:
    """Mend frame ``cur``'s labels with the previous frame's (see the module docstring).

    Parameters
    ----------
    prev : ndarray of int, shape (Y, X), or None
        The previous frame's labels, already refined (None for the first frame).
    cur : ndarray of int, shape (Y, X)
        This frame's labels as segmented on their own.
    image : callable
        Returns this frame's image of the population's channel (Y, X); called only
        when something is to be mended.
    config
        The population's segmentation parameters (``split_merged``, ``carry_*``).
    pixel_size_um
        Pixel size in µm.
    prev_carried : dict, optional
        The previous frame's ``carried`` (what this function returned for it).
    prev_age : ndarray of int, optional
        For each object of ``prev`` (indexed by label), in how many frames in a row it
        has been seen (:func:`object_age`). Only a cell seen in at least
        ``CARRY_MIN_FRAMES`` frames is carried when it fades: a blob of noise or
        texture that shows in one frame is not looked for in the next. Without it,
        every object counts as seen long enough.
    dye : callable, optional
        Returns this frame's dead-cell dye image (Y, X), for target cells in a movie
        with a dye; called only when a cell vanished and no faded ghost of it was found.
        A vanished cell whose last outline shows the dye is kept as its ghost
        (``config.carry_dye_k``).
    prev_apart : ndarray of int, optional
        For each object of ``prev``, in how many frames in a row it has been its own
        object (:func:`object_age` with ``mutual=SEEN_OVERLAP``). Two cells seen apart
        in at least ``CARRY_MIN_FRAMES`` frames that now form one object are split again
        even without a neck or seam (``config.split_merged_seen``). Without it, only
        with one.
    seen_only : bool
        Mend only that: split merged objects only when their cells were seen apart, and
        not objects more convex than :data:`LATER_MAX_SOLIDITY`; carry nothing and merge
        no fragments (the pass from the last frame back, ``prev`` being the frame after).

    Returns
    -------
    labels : ndarray of int32, shape (Y, X)
        A new label image (``cur`` itself when nothing changed).
    carried : dict
        For each object found where a cell of the previous frame was (its label):
        ``(y0, x0, anchor)``, the outline the cell had before it faded (a boolean
        mask whose top left pixel is at ``y0, x0``).
    """
    if prev is None or not (config.split_merged or config.carry_objects):
        return cur, {}
    if prev.shape != cur.shape:
        raise ValueError(
            f"`prev` (shape {prev.shape}) must have the same shape as `cur` (shape {cur.shape})"
        )
    px = pixel_size_um
    n_prev = int(prev.max(initial=0))
    if n_prev == 0:
        return cur, {}
    dy, dx = estimate_shift(prev, cur)
    prev_s = _shifted(prev, dy, dx)
    a, b, n = _pair_counts(prev_s, cur)
    area_prev = np.bincount(prev_s.ravel(), minlength=n_prev + 1)
    area_cur = np.bincount(cur.ravel(), minlength=int(cur.max(initial=0)) + 1)
    out = None
    img = None
    next_label = int(cur.max(initial=0)) + 1
    carried: dict[int, tuple[int, int, np.ndarray]] = {}
    prev_carried = prev_carried or {}

    def working(need_image: bool = True):
        nonlocal out, img
        if out is None:
            out = cur.astype(np.int32, copy=True)
        if img is None and need_image:
            img = np.asarray(image(), dtype=np.float32)
        return out, img

    # the share of each current object that lies on the previous object of the pair
    inside = n / area_cur[b] if len(b) else n.astype(np.float64)
    done: set[int] = set()
    if config.split_merged and len(a):
        # the previous frame's typical object, for cells kept apart without a seam
        seen_typical = 0.0
        if config.split_merged_seen and prev_apart is not None and len(prev_apart):
            sized = area_prev[1:][area_prev[1:] >= config.min_area_um2 / px**2]
            seen_typical = float(np.median(sized)) if len(sized) else 0.0
        covers = n >= 0.5 * area_prev[a]
        for k in np.unique(b[covers]):
            parents = a[covers & (b == k)]
            if len(parents) < 2:
                continue
            total = area_prev[parents].sum()
            if not 0.6 * total <= area_cur[k] <= 1.3 * total:
                continue
            seen_apart = (
                seen_typical > 0
                and bool(np.all(parents < len(prev_apart)))
                and bool(np.all(prev_apart[parents] >= CARRY_MIN_FRAMES))
                and area_prev[parents].min() >= SEEN_MIN_PART * seen_typical
                and area_cur[k] >= SEEN_MIN_MERGED * seen_typical
            )
            if seen_only and not seen_apart:
                continue
            lab, im = working()
            next_label = _split_merged(
                lab,
                int(k),
                list(parents),
                prev_s,
                im,
                px,
                next_label,
                seen_apart,
                LATER_MAX_SOLIDITY if seen_only else 1.0,
                # each part the size its cell had later (a dividing cell is not cut
                # unevenly ahead of its division)
                SEEN_MIN_PART * seen_typical if seen_only else 0.0,
            )

    if config.carry_objects and not seen_only:
        covered = np.bincount(a, weights=n, minlength=n_prev + 1)
        # with the dye: how much is covered by objects that are not mostly another
        # previous cell (a neighbour spreading into the space a swollen cell leaves does
        # not stand for it; the cell itself, moved on, half on background, does)
        by_dye = dye is not None and config.carry_dye_k > 0
        if by_dye:
            own = _not_anothers(b, inside)
            covered_own = np.bincount(a[own], weights=n[own], minlength=n_prev + 1)
        dye_image = None
        min_px = config.min_area_um2 / px**2
        todo: list[tuple[int, list[int], bool]] = []  # (cell, its pieces, vanished)
        divided = (
            None if config.carry_divided else _Divided(prev_s, cur, a, b, n, area_prev, area_cur)
        )
        for k in range(1, n_prev + 1):
            if area_prev[k] < min_px or k in done:
                continue
            if prev_age is not None and k < len(prev_age) and prev_age[k] < CARRY_MIN_FRAMES:
                continue
            vanished = covered[k] < 0.2 * area_prev[k]
            if by_dye and covered_own[k] < 0.2 * area_prev[k]:
                vanished = True
            elif covered[k] >= 0.7 * area_prev[k]:
                continue
            if divided is not None and divided(k):
                continue  # it divided: its daughters are new objects on either side of it
            mine = a == k
            pieces = b[mine]
            within = (inside[mine] >= 0.7) & ~np.isin(pieces, b[~mine & (inside > 0.3)])
            if vanished:
                # vanished (small pieces within it may be what is left of it); at the image
                # edge too: a cell leaving the field goes gradually (after the drift is
                # taken out), a whole cell does not vanish from one frame to the next
                todo.append((k, [int(p) for p in pieces[within]], True))
            elif within.all():
                # broken into pieces that all lie within it: a faint cell (a ghost) found
                # only where its texture peaks; looked for as a whole, kept only if whole
                todo.append((k, [int(p) for p in pieces], False))
        if todo:
            boxes = ndi.find_objects(prev_s)
            grow = int(round((config.carry_reach_um + 15.0) / px))
            for k, pieces, vanished in todo:
                if boxes[k - 1] is None:
                    continue
                lab, im = working()
                sl = _box(boxes[k - 1], grow, lab.shape)
                a_mask = prev_s[sl] == k
                # a faded cell is looked for around its outline from before it faded (its
                # anchor), not around its last faded outline: else it could grow, frame
                # after frame, into a touching faded neighbour
                anchor = _placed(prev_carried[k], dy, dx, sl) if k in prev_carried else None
                found = None
                if covered[k] < 0.7 * area_prev[k]:
                    found = _find_faded(lab, a_mask, sl, im, config, px, pieces, anchor)
                if found is None and vanished and by_dye:
                    # (not when pieces of it are left: an apoptotic cell's bodies take
                    # the dye up late, and are not its last outline)
                    if dye_image is None:
                        dye_image = np.asarray(dye(), dtype=np.float32)
                    found = _dye_ghost(lab, a_mask, sl, dye_image, px, pieces, config.carry_dye_k)
                if found is None:
                    continue
                whole = found.sum() >= 0.7 * area_prev[k]
                if not vanished and not whole:
                    continue
                if pieces:
                    lab[np.isin(lab, pieces)] = 0
                lab[sl][found] = next_label
                done.add(k)
                carried[next_label] = (
                    sl[0].start,
                    sl[1].start,
                    a_mask if anchor is None else anchor,
                )
                next_label += 1
    if config.merge_fragments and len(a) and not seen_only:
        # one cell now in several pieces that lie on it and on no other cell: apoptotic
        # bodies, which stay the one cell they were (the division of a cell into two
        # daughters is left for tracking to see)
        for k in np.unique(a):
            if k in done:
                continue
            mine = (a == k) & (inside >= 0.5)
            pieces = b[mine]
            if len(pieces) < 2 or np.isin(pieces, b[(a != k) & (inside > 0.3)]).any():
                continue
            ar = area_cur[pieces]
            if ar.sum() > 1.6 * area_prev[k]:  # fragments drift apart
                continue
            if (
                len(pieces) == 2
                and ar.min() >= max(0.35 * area_prev[k], 0.6 * ar.max())
                and _solidity(cur, pieces).min() >= 0.85
            ):
                continue  # two similar round halves, each a large share of it: daughters?
            lab, _ = working(need_image=False)
            lab[np.isin(lab, pieces)] = pieces[np.argmax(ar)]
            done.add(int(k))

    return (cur if out is None else out), carried


def segment_sequence(
    images: Iterable[np.ndarray],
    config: PopulationSegmentConfig | None = None,
    *,
    pixel_size_um: float,
) -> Iterator[np.ndarray]:
    """Segment frames in order, each mended with the frame before, then (with
    ``split_merged_seen_later``) with the frame after, from the last frame back: what the
    pipeline does for one population, without measuring (for scripts and tests).

    Parameters
    ----------
    images : iterable of ndarray, shape (Y, X)
        The population's channel, frame after frame.
    config
        Segmentation parameters (defaults: target cells).
    pixel_size_um
        Pixel size in µm.

    Yields
    ------
    ndarray of int32, shape (Y, X)
        Each frame's labels (all frames are segmented before the first is yielded when the
        pass back is on).
    """
    from .segment import segment_frame

    cfg = config or PopulationSegmentConfig()
    mender = Mender(cfg, pixel_size_um=pixel_size_um)
    if not mends_later(cfg):
        for image in images:
            image = np.asarray(image)
            labels = segment_frame(image, cfg, pixel_size_um=pixel_size_um)
            yield mender(labels, lambda image=image: image)[0]
        return
    images = [np.asarray(image) for image in images]
    frames = [
        mender(segment_frame(image, cfg, pixel_size_um=pixel_size_um), lambda image=image: image)[0]
        for image in images
    ]
    back = Mender(cfg, pixel_size_um=pixel_size_um, seen_only=True)
    for t in range(len(frames) - 1, -1, -1):
        frames[t] = back(frames[t], lambda image=images[t]: image)[0]
    yield from frames


def mends_later(config: PopulationSegmentConfig) -> bool:
    """Whether frames are mended with the frames after them too (the pass from the last
    frame back: cells seen apart later are split where they were merged before)."""
    return bool(config.split_merged and config.split_merged_seen and config.split_merged_seen_later)


class Mender:
    """Mends frames given in order (:func:`refine_frame`), keeping what it needs of the
    frames before: the last labels, the anchors of faded cells and each object's age.

    Call it with each frame's labels (as segmented on their own), a function that
    returns the frame's image and, for target cells in a movie with a dead-cell dye,
    one that returns the frame's dye image; it returns the mended labels and the
    carried labels.

    With ``seen_only``, it only splits objects whose cells were seen apart in the frames
    it was given before (:func:`refine_frame`): given the frames from the last back, the
    cells seen apart later are split where the segmentation merged them earlier.
    """

    def __init__(
        self, config: PopulationSegmentConfig, *, pixel_size_um: float, seen_only: bool = False
    ):
        self.config, self.px, self.seen_only = config, pixel_size_um, seen_only
        self.prev: np.ndarray | None = None
        self.carried: dict[int, tuple[int, int, np.ndarray]] = {}
        self.age: np.ndarray | None = None
        # in how many frames in a row each object has been its own object
        self.apart: np.ndarray | None = None

    def __call__(
        self,
        labels: np.ndarray,
        image: Callable[[], np.ndarray],
        dye: Callable[[], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, set[int]]:
        out, carried = refine_frame(
            self.prev,
            labels,
            image,
            self.config,
            pixel_size_um=self.px,
            prev_carried=self.carried,
            prev_age=self.age,
            dye=dye,
            prev_apart=self.apart,
            seen_only=self.seen_only,
        )
        # both counts from one pass over the two frames' overlaps
        pairs = None if self.prev is None or not out.max(initial=0) else _overlaps(self.prev, out)
        if not self.seen_only:  # (only what is seen apart counts in the pass back)
            self.age = _aged(out, pairs, self.age)
        self.apart = _aged(out, pairs, self.apart, mutual=SEEN_OVERLAP)
        self.prev, self.carried = out, carried
        return out, set(carried)
