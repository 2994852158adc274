"""Compiled (numba) kernels for the per-object and per-pixel loops of segmentation and
measurement. Each equals the SciPy / scikit-image / NumPy operation it replaces
(``tests/test_kernels.py``): masks, counts, distances and the upsampled background exactly,
perimeters to rounding (the same weights summed in another order); they only make it
cheaper.

- :func:`object_shapes`: perimeter, convex hull and pieces of every object of a label
  image in one pass. The definitions are scikit-image's, object by object (``measure.py``
  keeps them as the registry functions; a test asserts the fast path equals them):
  perimeter as :func:`skimage.measure.perimeter` with 4-connectivity (border pixels
  weighted by how many border pixels are their 4- and diagonal neighbours); the convex
  hull as :func:`skimage.morphology.convex_hull_image` (pixels whose centres lie inside
  or on the hull of the midpoints of every object pixel's edges; coordinates doubled,
  so the hull is exact integer arithmetic); pieces as :func:`scipy.ndimage.label` with
  8-connectivity. scikit-image builds a ``RegionProperties``, calls Qhull and rasterises
  per object (~0.3 ms); here an object costs a few µs.
- :func:`sort_by_label`: per-label percentiles without sorting a frame's pixels.
- :func:`label_percentile`: one percentile per label, by selection (no sort, no copies
  of the frame).
- :func:`block_sum`: sums of f x f blocks (the background's block means), optionally of
  the pixels in a mask, without padded or masked copies of the frame, to the bit.
- :func:`relabel_sequential`: labels renumbered 1..N in the order of their values, two
  passes, no copies (scikit-image's ``relabel_sequential``).
- :func:`median`, :func:`percentiles` and :func:`histogram`: NumPy's ``median``,
  ``percentile`` (linear) and ``histogram`` (equal bins over a range) of a float32
  image's pixels, in a mask or all, to the bit: the order statistics selected through a
  fine histogram instead of partitioning a copy, the bins found as NumPy finds them
  (float64 arithmetic, then corrected against the bin edges).
- :func:`apply_lut`: ``lut[labels]`` (relabelling to track ids) in one pass.
- :func:`masked_histogram`: the histogram of an 8/16-bit image's pixels in a mask (the
  background's median) without copying them out.
- :func:`mix_upsample`: the background's linear upsampling without full-size temporaries.
- :func:`gaussian`: SciPy's Gaussian filter of a float32 frame, bit for bit, 5-7x faster.
- :func:`dilate`, :func:`erode`, :func:`opening`: SciPy's iterated cross-shaped binary
  morphology: up to 6 steps as shifted ORs / ANDs of the mask, beyond as one two-pass
  city-block distance.
- :func:`distance_to_background`: SciPy's exact Euclidean distance transform (Meijster's
  integer algorithm) and :func:`one_top_patch`, the single-maximum test of touching-cell
  seeds, for the small boxes of single objects where SciPy's overhead dominates;
  :func:`single_tops`, that test for every object of a frame in one call (most objects
  are one cell; the split's Python loop then only sees the others).
- :func:`above_upsampled` and :func:`block_count`: the background's object mask (the
  frame less the upsampled block background, above a level) without the upsampled frame,
  and per-block pixel counts of a mask, in one pass each.
- :func:`h_maxima`: scikit-image's h-maxima (the touching-cell split's seeds) with its
  grey reconstruction by compiled sweeps (~8x faster on an object's box).
- :func:`label_max`: each label's maximum value in one pass (``np.maximum.at``).
- :func:`components` and :func:`fill_holes`: SciPy's ``label`` (4-connected, the same
  numbering) and ``binary_fill_holes`` of a 2D mask, by a two-pass union-find: about half
  of SciPy's time on a 1024² frame, and without Python's lock.

numba compiles these on their first call and caches the machine code beside this file
(``__pycache__``), so only the first run after installing pays for it (~10 s).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "above_upsampled",
    "apply_lut",
    "block_count",
    "block_sum",
    "components",
    "dilate",
    "distance_to_background",
    "erode",
    "fill_holes",
    "gaussian",
    "h_maxima",
    "histogram",
    "label_max",
    "label_percentile",
    "masked_histogram",
    "median",
    "mix_upsample",
    "object_shapes",
    "one_top_patch",
    "opening",
    "percentiles",
    "relabel_sequential",
    "single_tops",
    "sort_by_label",
]

_W = np.zeros(50)
_W[[5, 7, 15, 17, 25, 27]] = 1.0
_W[[21, 33]] = math.sqrt(2)
_W[[13, 23]] = (1 + math.sqrt(2)) / 2


@numba.njit(cache=True, nogil=True)
def _perimeter(mask, weights, codes):
    """scikit-image's 4-connected perimeter of a 0/1 mask with a zero border of 1."""
    h, w = mask.shape
    codes[:] = 0
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            if mask[r, c] and not (
                mask[r - 1, c] and mask[r + 1, c] and mask[r, c - 1] and mask[r, c + 1]
            ):
                mask[r, c] = 2  # border pixel
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            if mask[r, c] == 2:
                k = 1
                k += 2 * (
                    (mask[r - 1, c] == 2)
                    + (mask[r + 1, c] == 2)
                    + (mask[r, c - 1] == 2)
                    + (mask[r, c + 1] == 2)
                )
                k += 10 * (
                    (mask[r - 1, c - 1] == 2)
                    + (mask[r - 1, c + 1] == 2)
                    + (mask[r + 1, c - 1] == 2)
                    + (mask[r + 1, c + 1] == 2)
                )
                codes[k] += 1
    total = 0.0
    for k in range(50):
        total += codes[k] * weights[k]
    for r in range(1, h - 1):  # restore the 0/1 mask
        for c in range(1, w - 1):
            if mask[r, c] == 2:
                mask[r, c] = 1
    return total


@numba.njit(cache=True, nogil=True)
def _fragments(mask, stack):
    """Number of 8-connected pieces of a 0/1 mask with a zero border (mask is kept)."""
    h, w = mask.shape
    n = 0
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            if mask[r, c] == 1:
                n += 1
                mask[r, c] = 3
                top = 0
                stack[top] = r * w + c
                top += 1
                while top:
                    top -= 1
                    i = stack[top]
                    rr, cc = i // w, i % w
                    for dr in (-1, 0, 1):
                        for dc in (-1, 0, 1):
                            if mask[rr + dr, cc + dc] == 1:
                                mask[rr + dr, cc + dc] = 3
                                stack[top] = (rr + dr) * w + cc + dc
                                top += 1
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            if mask[r, c] == 3:
                mask[r, c] = 1
    return n


@numba.njit(cache=True, nogil=True)
def _cross(oy, ox, ay, ax, by, bx):
    return (ay - oy) * (bx - ox) - (ax - ox) * (by - oy)


@numba.njit(cache=True, nogil=True)
def _edge_midpoints(pts, n, r, c):
    """Append pixel (r, c)'s four edge midpoints, in doubled coordinates, at ``pts[n:]``."""
    pts[n, 0], pts[n, 1] = 2 * r - 1, 2 * c
    pts[n + 1, 0], pts[n + 1, 1] = 2 * r + 1, 2 * c
    pts[n + 2, 0], pts[n + 2, 1] = 2 * r, 2 * c - 1
    pts[n + 3, 0], pts[n + 3, 1] = 2 * r, 2 * c + 1
    return n + 4


@numba.njit(cache=True, nogil=True)
def _hull_mask(mask, hull, pts, chain):
    """Fill ``hull`` (same padded shape as ``mask``) with the convex-hull pixels; count them.

    Candidate pixels are the first and last of every row and column (as scikit-image's
    ``possible_hull``); each adds its four edge midpoints, in doubled coordinates.
    """
    h, w = mask.shape
    row_first, row_last = np.full(h, -1, np.int64), np.full(h, -1, np.int64)
    col_first, col_last = np.full(w, -1, np.int64), np.full(w, -1, np.int64)
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            if mask[r, c]:
                if row_first[r] < 0:
                    row_first[r] = c
                row_last[r] = c
                if col_first[c] < 0:
                    col_first[c] = r
                col_last[c] = r
    n = 0
    for r in range(h):
        if row_first[r] >= 0:
            n = _edge_midpoints(pts, n, r, row_first[r])
            n = _edge_midpoints(pts, n, r, row_last[r])
    for c in range(w):
        if col_first[c] >= 0:
            n = _edge_midpoints(pts, n, col_first[c], c)
            n = _edge_midpoints(pts, n, col_last[c], c)
    # Andrew's monotone chain, sorted by (y, x); collinear points dropped
    key = pts[:n, 0] * (4 * w + 8) + pts[:n, 1]
    order = np.argsort(key)
    m = 0
    for j in range(n):  # lower chain
        py, px = pts[order[j], 0], pts[order[j], 1]
        while (
            m >= 2
            and _cross(chain[m - 2, 0], chain[m - 2, 1], chain[m - 1, 0], chain[m - 1, 1], py, px)
            <= 0
        ):
            m -= 1
        chain[m, 0], chain[m, 1] = py, px
        m += 1
    low = m + 1
    for j in range(n - 2, -1, -1):  # upper chain
        py, px = pts[order[j], 0], pts[order[j], 1]
        while (
            m >= low
            and _cross(chain[m - 2, 0], chain[m - 2, 1], chain[m - 1, 0], chain[m - 1, 1], py, px)
            <= 0
        ):
            m -= 1
        chain[m, 0], chain[m, 1] = py, px
        m += 1
    m -= 1  # the last point repeats the first
    count = 0
    for r in range(1, h - 1):
        for c in range(1, w - 1):
            inside = True
            for e in range(m):
                f = e + 1 if e + 1 < m else 0
                if _cross(chain[e, 0], chain[e, 1], chain[f, 0], chain[f, 1], 2 * r, 2 * c) < 0:
                    inside = False
                    break
            hull[r, c] = inside
            count += inside
    return count


@numba.njit(cache=True, nogil=True)
def _object_shapes(labels, ids, want_hull, weights):
    hgt, wid = labels.shape
    size = 0
    for k in range(len(ids)):
        size = max(size, ids[k] + 1)
    index = np.full(size, -1, np.int64)
    for k in range(len(ids)):
        index[ids[k]] = k
    n = len(ids)
    r0 = np.full(n, hgt, np.int64)
    r1 = np.full(n, -1, np.int64)
    c0 = np.full(n, wid, np.int64)
    c1 = np.full(n, -1, np.int64)
    for r in range(hgt):
        for c in range(wid):
            v = labels[r, c]
            if v > 0 and v < size:
                k = index[v]
                if k >= 0:
                    r0[k] = min(r0[k], r)
                    r1[k] = max(r1[k], r)
                    c0[k] = min(c0[k], c)
                    c1[k] = max(c1[k], c)
    perim = np.zeros(n)
    frags = np.zeros(n, np.int64)
    hull_count = np.zeros(n, np.int64)
    hull_perim = np.zeros(n)
    codes = np.zeros(50, np.int64)
    for k in range(n):
        if r1[k] < 0:
            continue
        h, w = r1[k] - r0[k] + 3, c1[k] - c0[k] + 3
        mask = np.zeros((h, w), np.uint8)
        for r in range(1, h - 1):
            for c in range(1, w - 1):
                mask[r, c] = labels[r0[k] + r - 1, c0[k] + c - 1] == ids[k]
        perim[k] = _perimeter(mask, weights, codes)
        frags[k] = _fragments(mask, np.empty(h * w, np.int64))
        if want_hull:
            pts = np.empty((8 * (h + w), 2), np.int64)
            chain = np.empty((8 * (h + w) + 1, 2), np.int64)
            hull = np.zeros((h, w), np.uint8)
            hull_count[k] = _hull_mask(mask, hull, pts, chain)
            hull_perim[k] = _perimeter(hull, weights, codes)
    return perim, frags, hull_count, hull_perim


def object_shapes(
    labels: np.ndarray, ids: np.ndarray, hull: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per label in ``ids`` (in pixels): perimeter, 8-connected pieces, convex-hull pixel
    count and convex-hull perimeter (the last two zero unless ``hull``)."""
    return _object_shapes(np.ascontiguousarray(labels), np.asarray(ids, np.int64), bool(hull), _W)


@numba.njit(cache=True, nogil=True)
def _sort_by_label(lab, val, size):
    counts = np.zeros(size + 1, np.int64)
    for i in range(len(lab)):
        counts[lab[i] + 1] += 1
    for k in range(size):
        counts[k + 1] += counts[k]
    pos = counts[:size].copy()
    out_lab = np.empty_like(lab)
    out_val = np.empty_like(val)
    for i in range(len(lab)):
        k = lab[i]
        out_lab[pos[k]] = k
        out_val[pos[k]] = val[i]
        pos[k] += 1
    for k in range(size):
        if counts[k + 1] - counts[k] > 1:
            out_val[counts[k] : counts[k + 1]].sort()
    return out_lab, out_val


def sort_by_label(lab: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``lab`` (non-negative ints) and ``val`` (float64, no NaN) sorted by label, then by
    value: a counting sort by label, then each label's few values sorted (per-label
    percentiles without sorting the whole frame's pixels)."""
    lab = np.ascontiguousarray(lab, np.int64)
    val = np.ascontiguousarray(val, np.float64)
    if not len(lab):
        return lab, val
    return _sort_by_label(lab, val, int(lab.max()) + 1)


@numba.njit(cache=True, nogil=True)
def _label_percentile(lab, val, n, q):
    starts = np.zeros(n + 2, np.int64)
    for i in range(lab.size):
        k = lab[i]
        if 0 < k <= n:
            starts[k + 1] += 1
    for k in range(n + 1):
        starts[k + 1] += starts[k]
    pos = starts[: n + 1].copy()
    buf = np.empty(starts[n + 1], np.float64)
    for i in range(lab.size):
        k = lab[i]
        if 0 < k <= n:
            buf[pos[k]] = val[i]
            pos[k] += 1
    out = np.zeros(n + 1, np.float64)
    for k in range(1, n + 1):
        c = starts[k + 1] - starts[k]
        if c == 0:
            continue
        idx = np.int64(math.floor((c - 1) * q / 100.0))
        seg = buf[starts[k] : starts[k + 1]]
        has_nan = False
        for v in seg:
            if np.isnan(v):
                has_nan = True
                break
        if has_nan:  # NumPy's sort order (NaN last), as a sort would give
            out[k] = np.sort(seg)[idx]
        else:
            out[k] = np.partition(seg, idx)[idx]
    return out


def label_percentile(values: np.ndarray, labels: np.ndarray, n: int, q: float) -> np.ndarray:
    """The ``q``-th percentile (the value at sorted index ``floor((count - 1) q / 100)``,
    in float64) of ``values`` inside each label 1..n; 0 for an empty label and at index
    0. Labels outside 1..n are ignored. Equal to sorting each label's values
    (:func:`sort_by_label`), by selection instead of a sort."""
    lab = np.ascontiguousarray(labels).ravel()
    val = np.ascontiguousarray(values).ravel()
    if lab.dtype.kind not in "iu":
        lab = lab.astype(np.int64)
    if val.dtype not in (np.float32, np.float64):
        val = val.astype(np.float64)
    return _label_percentile(lab, val, int(n), float(q))


@numba.njit(cache=True, nogil=True)
def _block_sum(a, f, mask, use_mask, zero):
    """Each block row's run of ``f`` pixels summed as NumPy's add.reduce inner loop sums
    it (``pairwise_sum``: plain for fewer than 8 values, else eight accumulators, then
    the rest one by one), zeros past the row's end and outside the mask, the runs added
    to the block's sum row by row: NumPy's additions in NumPy's order."""
    ny, nx = a.shape
    sy, sx = (ny + f - 1) // f, (nx + f - 1) // f
    out = np.zeros((sy, sx), a.dtype)
    run = np.zeros(sx * f, a.dtype)  # one row, zero-padded, masked
    tail = f % 8
    for y in range(ny):
        for x in range(nx):
            run[x] = a[y, x] if (not use_mask or mask[y, x]) else zero
        row = out[y // f]
        for bx in range(sx):
            x0 = bx * f
            if f < 8:
                res = zero
                for i in range(f):
                    res += run[x0 + i]
            else:
                r0, r1, r2, r3 = run[x0], run[x0 + 1], run[x0 + 2], run[x0 + 3]
                r4, r5, r6, r7 = run[x0 + 4], run[x0 + 5], run[x0 + 6], run[x0 + 7]
                i = 8
                while i < f - tail:
                    x = x0 + i
                    r0 += run[x]
                    r1 += run[x + 1]
                    r2 += run[x + 2]
                    r3 += run[x + 3]
                    r4 += run[x + 4]
                    r5 += run[x + 5]
                    r6 += run[x + 6]
                    r7 += run[x + 7]
                    i += 8
                res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
                while i < f:
                    res += run[x0 + i]
                    i += 1
            row[bx] += res
    return out


def block_sum(a: np.ndarray, f: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Sums of the ``f`` x ``f`` blocks of a 2D float image (a last partial row or column
    of blocks sums the pixels it has), of the pixels where ``mask`` only when given:
    ``np.pad(np.where(mask, a, 0), ...).reshape(sy, f, sx, f).sum(axis=(1, 3))`` to the
    bit (each block row's run summed as NumPy sums it, the runs added row by row), in
    the image's dtype. One column of blocks (NumPy then sums whole blocks at once, in
    another order) and f > 128 go to NumPy."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"`a` must be 2D, got shape {a.shape}")
    if mask is not None and np.shape(mask) != a.shape:
        raise ValueError(f"`mask` has shape {np.shape(mask)}, `a` {a.shape}")
    f = int(f)
    ny, nx = a.shape
    if a.dtype not in (np.float32, np.float64) or nx <= f or f > 128:
        x = a if mask is None else np.where(mask, a, 0)
        x = np.pad(x, ((0, (-ny) % f), (0, (-nx) % f)))
        return x.reshape(x.shape[0] // f, f, x.shape[1] // f, f).sum(axis=(1, 3))
    use = mask is not None
    m = np.asarray(mask, bool) if use else np.zeros((1, 1), bool)
    return _block_sum(a, f, m, use, a.dtype.type(0))


@numba.njit(cache=True, nogil=True)
def _label_max(lab, val, n):
    out = np.full(n + 1, -np.inf)
    for i in range(lab.size):
        k = lab[i]
        if k <= 0:
            continue
        v = np.float64(val[i])
        o = out[k]
        if o != o:  # NaN stays (np.maximum propagates it)
            continue
        if v != v or v > o:
            out[k] = v
    out[0] = 0
    return out


def label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """The maximum of ``values`` (as float64) inside each label 1..n: -inf for an empty
    label, 0 at index 0, NaN where a label holds a NaN (``np.maximum.at`` over the
    labelled pixels, in one pass). Labels above ``n`` are an error."""
    lab = np.ascontiguousarray(labels).ravel()
    if lab.dtype.kind not in "iu":
        raise TypeError(f"`labels` must be integers, got {lab.dtype}")
    n = int(n)
    if lab.size and int(lab.max()) > n:
        raise IndexError(f"a label above n = {n}")
    return _label_max(lab, np.ascontiguousarray(values).ravel(), n)


@numba.njit(cache=True, nogil=True)
def _relabel_sequential(labels):
    flat = labels.ravel()
    top = 0
    for i in range(flat.size):
        if flat[i] > top:
            top = flat[i]
    lut = np.zeros(top + 1, np.int32)
    for i in range(flat.size):
        lut[flat[i]] = 1
    lut[0] = 0
    k = 0
    for v in range(1, top + 1):
        if lut[v]:
            k += 1
            lut[v] = k
    out = np.empty(flat.size, np.int32)
    for i in range(flat.size):
        out[i] = lut[flat[i]]
    return out.reshape(labels.shape)


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """int32 labels 1..N in the order of the values of ``labels`` (non-negative ints; 0
    stays background)."""
    labels = np.ascontiguousarray(labels)
    if labels.size == 0:
        return np.zeros(labels.shape, np.int32)
    return _relabel_sequential(labels)


@numba.njit(cache=True, nogil=True)
def _order_stats(values, mask, use_mask, ranks):
    """The values at ``ranks`` (sorted ascending, within 0 .. n - 1) of the sorted
    selected values: a histogram of 4096 bins between their extremes (the bin is a
    non-decreasing function of the value), then the few values of each wanted bin
    sorted."""
    lo, hi, n = np.inf, -np.inf, 0
    for i in range(values.size):
        if not use_mask or mask[i]:
            v = values[i]
            lo = min(lo, v)
            hi = max(hi, v)
            n += 1
    out = np.empty(ranks.size, np.float64)
    if lo == hi:
        out[:] = lo
        return out
    n_bins = 4096
    scale = n_bins / (np.float64(hi) - np.float64(lo))
    counts = np.zeros(n_bins + 1, np.int64)
    for i in range(values.size):
        if not use_mask or mask[i]:
            k = min(int((np.float64(values[i]) - np.float64(lo)) * scale), n_bins - 1)
            counts[k + 1] += 1
    for k in range(n_bins):
        counts[k + 1] += counts[k]
    # the bins of the wanted ranks, and all their values gathered in one more pass
    bins = np.empty(ranks.size, np.int64)
    for j in range(ranks.size):
        bins[j] = np.searchsorted(counts, ranks[j], side="right") - 1
    wanted = np.full(n_bins, -1, np.int64)  # bin -> its place in the buffer
    sizes = np.zeros(ranks.size + 1, np.int64)
    n_wanted = 0
    for j in range(ranks.size):
        b = bins[j]
        if wanted[b] < 0:
            wanted[b] = n_wanted
            sizes[n_wanted + 1] = counts[b + 1] - counts[b]
            n_wanted += 1
    for j in range(n_wanted):
        sizes[j + 1] += sizes[j]
    buf = np.empty(sizes[n_wanted], values.dtype)
    fill = sizes[:n_wanted].copy()
    for i in range(values.size):
        if not use_mask or mask[i]:
            k = min(int((np.float64(values[i]) - np.float64(lo)) * scale), n_bins - 1)
            w = wanted[k]
            if w >= 0:
                buf[fill[w]] = values[i]
                fill[w] += 1
    for j in range(n_wanted):
        buf[sizes[j] : sizes[j + 1]].sort()
    for j in range(ranks.size):
        b = bins[j]
        out[j] = buf[sizes[wanted[b]] + ranks[j] - counts[b]]
    return out


def percentiles(image: np.ndarray, q, mask: np.ndarray | None = None) -> np.ndarray:
    """``np.percentile(image[mask], q)`` (``image`` whole without a mask) for a float32
    image without NaN, bit for bit (float64)."""
    image = np.ascontiguousarray(image, np.float32)
    use = mask is not None
    m = np.ascontiguousarray(mask, bool).ravel() if use else np.zeros(1, bool)
    n = int(m.sum()) if use else image.size
    if n == 0:
        raise ValueError("no values to take percentiles of")
    # NumPy's linear method: virtual index (n - 1) q, its floor and the next, the weight
    virtual = (n - 1) * np.true_divide(np.asanyarray(q, np.float64), 100)
    prev = np.floor(virtual).astype(np.intp)
    nxt = np.minimum(prev + 1, n - 1)
    top = virtual >= n - 1
    prev[top] = nxt[top] = n - 1
    gamma = virtual - np.floor(virtual)
    ranks = np.unique(np.concatenate([prev, nxt]))
    vals = _order_stats(image.ravel(), m, use, ranks.astype(np.int64)).astype(np.float32)
    a = vals[np.searchsorted(ranks, prev)]
    b = vals[np.searchsorted(ranks, nxt)]
    diff = b - a  # float32, as NumPy's _lerp
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def median(image: np.ndarray) -> np.float32:
    """``np.median(image)`` of a float32 array without NaN, bit for bit (the mean, in
    float32, of the middle value or two)."""
    image = np.ascontiguousarray(image, np.float32)
    n = image.size
    if n == 0:
        raise ValueError("no values to take the median of")
    ranks = np.array([n // 2 - 1, n // 2] if n % 2 == 0 else [(n - 1) // 2], np.int64)
    middle = _order_stats(image.ravel(), np.zeros(1, bool), False, ranks)
    return np.mean(middle.astype(np.float32))


@numba.njit(cache=True, nogil=True)
def _histogram(values, mask, use_mask, lo, hi, edges):
    n_bins = edges.size - 1
    hist = np.zeros(n_bins, np.int64)
    denom = hi - lo
    for i in range(values.size):
        if use_mask and not mask[i]:
            continue
        v = np.float64(values[i])
        if not (v >= lo and v <= hi):
            continue
        k = int(((v - lo) / denom) * n_bins)
        if k == n_bins:
            k -= 1
        if v < edges[k]:
            k -= 1
        if k != n_bins - 1 and v >= edges[k + 1]:
            k += 1
        hist[k] += 1
    return hist


def histogram(
    image: np.ndarray, bins: int, lo: float, hi: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """``np.histogram(image[mask], bins, range=(lo, hi))[0]`` of a float32 image (lo <
    hi), the same counts (NumPy's equal-bins path, float64 edges from ``np.linspace``)."""
    image = np.ascontiguousarray(image, np.float32)
    use = mask is not None
    m = np.ascontiguousarray(mask, bool).ravel() if use else np.zeros(1, bool)
    lo, hi = np.float64(lo), np.float64(hi)
    edges = np.linspace(lo, hi, int(bins) + 1, endpoint=True, dtype=np.float64)
    return _histogram(image.ravel(), m, use, lo, hi, edges)


@numba.njit(cache=True, nogil=True)
def _apply_lut(labels, lut):
    flat = labels.ravel()
    out = np.empty(flat.size, lut.dtype)
    for i in range(flat.size):
        out[i] = lut[flat[i]]
    return out.reshape(labels.shape)


def apply_lut(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[labels]`` for a label image of non-negative ints below ``lut.size``, in one
    pass (NumPy's fancy indexing takes ~3x as long on a 1024² frame)."""
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"`labels` must be integers, got {labels.dtype}")
    return _apply_lut(labels, np.ascontiguousarray(lut))


@numba.njit(cache=True, nogil=True)
def _masked_histogram(values, mask, n_bins):
    hist = np.zeros(n_bins, np.int64)
    for i in range(values.size):
        if mask[i]:
            hist[values[i]] += 1
    return hist


def masked_histogram(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pixel counts of each value 0 .. max of the dtype (uint8 or uint16) of ``image``
    where ``mask``: ``np.bincount(image[mask], minlength=2**bits)``."""
    image = np.ascontiguousarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"`image` must be uint8 or uint16, got {image.dtype}")
    mask = np.ascontiguousarray(mask, bool)
    if mask.shape != image.shape:
        raise ValueError(f"`mask` has shape {mask.shape}, `image` {image.shape}")
    n_bins = int(np.iinfo(image.dtype).max) + 1
    return _masked_histogram(image.ravel(), mask.ravel(), n_bins)


@numba.njit(cache=True, nogil=True)
def _upsampled_row(small, i0, i1, wy, j0, j1, wx, y, row, out):
    # output row y (float32, as NumPy computes it): rows i0[y] and i1[y] of small mixed by
    # wy[y] into ``row``, then its columns j0 and j1 mixed by wx into ``out``
    one = np.float32(1)
    a, b = one - wy[y], wy[y]
    for c in range(small.shape[1]):
        row[c] = small[i0[y], c] * a + small[i1[y], c] * b
    for x in range(len(j0)):
        out[x] = row[j0[x]] * (one - wx[x]) + row[j1[x]] * wx[x]


@numba.njit(cache=True, nogil=True)
def _mix_upsample(small, i0, i1, wy, j0, j1, wx):
    out = np.empty((len(i0), len(j0)), np.float32)
    row = np.empty(small.shape[1], np.float32)
    for y in range(len(i0)):
        _upsampled_row(small, i0, i1, wy, j0, j1, wx, y, row, out[y])
    return out


def _upsample_args(small, i0, i1, wy, j0, j1, wx) -> tuple:
    return (
        np.ascontiguousarray(small, np.float32),
        np.asarray(i0, np.int64),
        np.asarray(i1, np.int64),
        np.asarray(wy, np.float32),
        np.asarray(j0, np.int64),
        np.asarray(j1, np.int64),
        np.asarray(wx, np.float32),
    )


def mix_upsample(small, i0, i1, wy, j0, j1, wx) -> np.ndarray:
    """float32 ``out[y, x]``: rows ``i0, i1`` of ``small`` mixed by ``wy``, then columns
    ``j0, j1`` of that by ``wx`` (``a * (1 - w) + b * w``, float32 as NumPy computes it),
    without the two full-size temporaries NumPy makes."""
    return _mix_upsample(*_upsample_args(small, i0, i1, wy, j0, j1, wx))


@numba.njit(cache=True, nogil=True)
def _above_upsampled(image, small, i0, i1, wy, j0, j1, wx, level, in_float64):
    ny, nx = len(i0), len(j0)
    out = np.empty((ny, nx), np.bool_)
    row = np.empty(small.shape[1], np.float32)
    up = np.empty(nx, np.float32)
    for y in range(ny):
        _upsampled_row(small, i0, i1, wy, j0, j1, wx, y, row, up)
        for x in range(nx):
            diff = image[y, x] - up[x]
            if in_float64:
                out[y, x] = np.float64(diff) > level
            else:
                out[y, x] = diff > np.float32(level)
    return out


def above_upsampled(image, small, i0, i1, wy, j0, j1, wx, level: float) -> np.ndarray:
    """``image - mix_upsample(small, ...) > level`` for a float32 ``image``, in NumPy's
    types (the difference in float32; compared in float32 with a Python float, in float64
    with a NumPy float64), without the upsampled frame and the difference."""
    return _above_upsampled(
        np.ascontiguousarray(image, np.float32),
        *_upsample_args(small, i0, i1, wy, j0, j1, wx),
        float(level),
        np.result_type(np.float32, level) == np.float64,
    )


@numba.njit(cache=True, nogil=True)
def _block_count(mask, f):
    ny, nx = mask.shape
    sy, sx = (ny + f - 1) // f, (nx + f - 1) // f
    counts = np.zeros((sy, sx), np.int64)
    for y in range(ny):
        by = y // f
        for x in range(nx):
            if mask[y, x]:
                counts[by, x // f] += 1
    return counts.astype(np.float32)


def block_count(mask: np.ndarray, f: int) -> np.ndarray:
    """The number of ``mask``'s pixels in each ``f`` x ``f`` block (a last partial row or
    column of blocks counts the pixels it has), as float32: whole numbers, so equal to
    any order of summing them."""
    return _block_count(np.ascontiguousarray(mask, np.bool_), int(f))


@numba.njit(cache=True, nogil=True)
def _raise_sweep(rec, mask):
    # one raster sweep: each pixel raised to the largest of itself and its neighbours
    # already swept (the row above, the pixel to the left), capped by the mask; whether
    # any rose. On the arrays reversed in both axes it is the backward sweep
    h, w = rec.shape
    changed = False
    for r in range(h):
        for c in range(w):
            v = rec[r, c]
            for dr, dc in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr and 0 <= cc < w and rec[rr, cc] > v:
                    v = rec[rr, cc]
            if v > mask[r, c]:
                v = mask[r, c]
            if v > rec[r, c]:
                rec[r, c] = v
                changed = True
    return changed


@numba.njit(cache=True, nogil=True)
def _reconstruct(seed, mask):
    # grey reconstruction by dilation of seed under mask, 8-connected: raster sweeps,
    # forward then backward, until a pair of sweeps changes nothing. The result is the
    # unique reconstruction: only seed and mask values are taken, none computed
    rec = seed.copy()
    changed = True
    while changed:
        changed = _raise_sweep(rec, mask)
        changed |= _raise_sweep(rec[::-1, ::-1], mask[::-1, ::-1])
    return rec


def h_maxima(image: np.ndarray, h) -> np.ndarray:
    """:func:`skimage.morphology.h_maxima` of a 2D float32 image (its default 3x3
    footprint): the same uint8 mask, to the bit. scikit-image's own steps in NumPy (the
    shifted image, in its types; rounded to float32 as its reconstruction stores it; the
    residue compared with ``h``), and the grey reconstruction, whose result is unique, by
    compiled sweeps instead of its sort of every pixel. Other images go to
    scikit-image."""
    image = np.asarray(image)
    if image.dtype != np.float32 or image.ndim != 2 or 0 in image.shape:
        from skimage.morphology import h_maxima as reference

        return reference(image, h)
    if h > np.ptp(image):
        return np.zeros(image.shape, dtype=np.uint8)
    if h == 0:
        raise ValueError("h = 0 is ambiguous, use local_maxima() instead?")
    resolution = 2 * np.finfo(image.dtype).resolution * np.abs(image)
    shifted = image - h - resolution
    if np.any(shifted > image):
        raise ValueError("the shifted image rose above the image")  # as scikit-image
    rec = _reconstruct(
        np.ascontiguousarray(shifted, np.float32), np.ascontiguousarray(image, np.float32)
    )
    return (image - rec >= h).astype(np.uint8)


@numba.njit(cache=True, nogil=True)
def _l1_distance(target, cap, edge_is_target, d):
    """City-block distance (4-connected steps) to the nearest ``target`` pixel, capped at
    ``cap``, by one forward and one backward raster pass (exact for this metric), into
    ``d`` (uint8 for caps below 255: a quarter of the memory to stream)."""
    h, w = target.shape
    edge = 0 if edge_is_target else cap
    for r in range(h):
        for c in range(w):
            if target[r, c]:
                d[r, c] = 0
            else:
                up = d[r - 1, c] if r > 0 else edge
                left = d[r, c - 1] if c > 0 else edge
                d[r, c] = min(cap, up + 1, left + 1)
    for r in range(h - 1, -1, -1):
        for c in range(w - 1, -1, -1):
            if d[r, c]:
                down = d[r + 1, c] if r < h - 1 else edge
                right = d[r, c + 1] if c < w - 1 else edge
                d[r, c] = min(d[r, c], down + 1, right + 1)
    return d


#: up to this many steps, dilation and erosion shift the mask step by step (faster than
#: the two raster passes of the distance, whose every pixel waits on its neighbour's)
_FEW_STEPS = 6


def dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, iterations=k)`` (cross element, k >= 1): the
    pixels within k 4-connected steps of the mask, in two passes instead of k."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    k = int(iterations)
    mask = np.ascontiguousarray(mask, np.bool_)
    if k <= _FEW_STEPS and mask.ndim == 2:
        # a few steps: each one OR of the four shifted masks (1-3 ms a 1024² frame)
        out = mask
        for _ in range(k):
            grown = out.copy()
            grown[1:] |= out[:-1]
            grown[:-1] |= out[1:]
            grown[:, 1:] |= out[:, :-1]
            grown[:, :-1] |= out[:, 1:]
            out = grown
        return out
    return _l1(mask, k + 1, False) <= k


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, iterations=k)`` (cross element, outside the
    image counts as background, k >= 1)."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    k = int(iterations)
    mask = np.ascontiguousarray(mask, np.bool_)
    if k <= _FEW_STEPS and mask.ndim == 2:
        out = mask
        for _ in range(k):  # AND of the four shifted masks, outside the image background
            kept = out.copy()
            kept[1:] &= out[:-1]
            kept[:-1] &= out[1:]
            kept[:, 1:] &= out[:, :-1]
            kept[:, :-1] &= out[:, 1:]
            kept[0] = kept[-1] = False
            kept[:, 0] = kept[:, -1] = False
            out = kept
        return out
    return _l1(~mask, k + 1, True) > k


def _l1(target: np.ndarray, cap: int, edge_is_target: bool) -> np.ndarray:
    d = np.empty(target.shape, np.uint8 if cap < 255 else np.int32)
    return _l1_distance(target, cap, edge_is_target, d)


def opening(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, iterations=k)`` (cross element, k >= 1)."""
    return dilate(erode(mask, iterations), iterations)


@numba.njit(cache=True, nogil=True)
def _edt(mask):
    """Exact squared Euclidean distance to the nearest False pixel (Meijster et al. 2002:
    a column pass, then each row's lower envelope of parabolas, all in integers)."""
    h, w = mask.shape
    inf = h + w
    g = np.empty((h, w), np.int64)
    for c in range(w):
        g[0, c] = inf if mask[0, c] else 0
        for r in range(1, h):
            g[r, c] = g[r - 1, c] + 1 if mask[r, c] else 0
        for r in range(h - 2, -1, -1):
            if g[r + 1, c] < g[r, c]:
                g[r, c] = g[r + 1, c] + 1
    out = np.empty((h, w), np.int64)
    s = np.empty(w, np.int64)
    t = np.empty(w, np.int64)
    for r in range(h):
        q = 0
        s[0] = 0
        t[0] = 0
        for u in range(1, w):
            while q >= 0 and (t[q] - s[q]) ** 2 + g[r, s[q]] ** 2 > (t[q] - u) ** 2 + g[r, u] ** 2:
                q -= 1
            if q < 0:
                q = 0
                s[0] = u
            else:
                i = s[q]
                sep = (u * u - i * i + g[r, u] ** 2 - g[r, i] ** 2) // (2 * (u - i))
                wpos = 1 + sep
                if wpos < w:
                    q += 1
                    s[q] = u
                    t[q] = wpos
        for u in range(w - 1, -1, -1):
            out[r, u] = (u - s[q]) ** 2 + g[r, s[q]] ** 2
            if u == t[q]:
                q -= 1
    return out


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask)``, exactly (the square root of the
    same integer squared distances), for masks with at least one False pixel."""
    mask = np.ascontiguousarray(mask, np.bool_)
    if mask.all():  # no background: SciPy's own convention
        from scipy import ndimage as ndi

        return ndi.distance_transform_edt(mask)
    return np.sqrt(_edt(mask).astype(np.float64))


@numba.njit(cache=True, nogil=True)
def _reflect(i, n):
    # scipy.ndimage's "reflect" for a 3-wide window: -1 -> 0, n -> n - 1
    if i < 0:
        return 0
    if i >= n:
        return n - 1
    return i


@numba.njit(cache=True, nogil=True)
def _one_top_patch(sub, comp):
    h, w = sub.shape
    top = np.zeros((h, w), np.uint8)
    n = 0
    for r in range(h):
        for c in range(w):
            if not comp[r, c]:
                continue
            v = sub[r, c]
            is_max = True
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if sub[_reflect(r + dr, h), _reflect(c + dc, w)] > v:
                        is_max = False
            if is_max:
                top[r, c] = 1
                n += 1
    if n <= 1:
        return True
    # one 4-connected patch? flood from the first top pixel and see if it reaches all
    stack = np.empty(n, np.int64)
    for i in range(h * w):
        if top[i // w, i % w]:
            break
    top[i // w, i % w] = 2
    stack[0] = i
    size, reached = 1, 1
    while size:
        size -= 1
        j = stack[size]
        r, c = j // w, j % w
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < h and 0 <= cc < w and top[rr, cc] == 1:
                top[rr, cc] = 2
                stack[size] = rr * w + cc
                size += 1
                reached += 1
    return reached == n


def one_top_patch(sub: np.ndarray, comp: np.ndarray) -> bool:
    """Whether the pixels of ``comp`` no lower than their 8 neighbours (SciPy's 3x3
    ``maximum_filter``, mode "reflect") are at most one pixel or one 4-connected patch:
    then the object has a single regional maximum."""
    return bool(_one_top_patch(np.ascontiguousarray(sub), np.ascontiguousarray(comp, np.bool_)))


@numba.njit(cache=True, nogil=True)
def _mirror(i, n):
    # scipy.ndimage's "reflect" extension (d c b a | a b c d | d c b a), repeated for
    # offsets longer than the line: period 2n
    i = i % (2 * n)
    return i if i < n else 2 * n - 1 - i


@numba.njit(cache=True, nogil=True)
def _smooth_columns(src, w, out):
    # along axis 0; each output row as SciPy's symmetric correlate1d computes it, in
    # float64 and in its order (centre, then pairs from the farthest in), a row at a time
    ny, nx = src.shape
    r = len(w) - 1
    acc = np.empty(nx, np.float64)
    for y in range(ny):
        for x in range(nx):
            acc[x] = np.float64(src[y, x]) * w[0]
        for j in range(r, 0, -1):
            ya, yb = _mirror(y - j, ny), _mirror(y + j, ny)
            wj = w[j]
            for x in range(nx):
                acc[x] += (np.float64(src[ya, x]) + np.float64(src[yb, x])) * wj
        for x in range(nx):
            out[y, x] = np.float32(acc[x])


@numba.njit(cache=True, nogil=True)
def _smooth_rows(src, w, out):
    # along axis 1, from a reflected float64 copy of each row; shifted views of it, so the
    # sums run over plain indices and vectorise
    ny, nx = src.shape
    r = len(w) - 1
    line = np.empty(nx + 2 * r, np.float64)
    acc = np.empty(nx, np.float64)
    for y in range(ny):
        for i in range(r):
            line[i] = src[y, _mirror(i - r, nx)]
            line[nx + r + i] = src[y, _mirror(nx + i, nx)]
        for i in range(nx):
            line[i + r] = src[y, i]
        centre = line[r : r + nx]
        for x in range(nx):
            acc[x] = centre[x] * w[0]
        for j in range(r, 0, -1):
            a, b, wj = line[r - j : r - j + nx], line[r + j : r + j + nx], w[j]
            for x in range(nx):
                acc[x] += (a[x] + b[x]) * wj
        for x in range(nx):
            out[y, x] = np.float32(acc[x])


def _half_weights(sigma: float) -> np.ndarray:
    """SciPy's Gaussian weights (``truncate=4``), exactly: the centre and one side."""
    radius = int(4.0 * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    phi = phi / phi.sum()
    return np.ascontiguousarray(phi[radius:], np.float64)


def gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """:func:`scipy.ndimage.gaussian_filter` of a 2D float32 image (``mode="reflect"``,
    ``truncate=4``), equal to it bit for bit: the same kernel, summed in float64 in the
    same order, rounded to float32 after each axis. SciPy copies every line into a
    float64 buffer and back (~25 ms a 1024² frame whatever the sigma); here whole rows
    are summed as vectors (the second axis on the transpose; ~6 ms at sigma 1.5). Other
    inputs go to SciPy."""
    if image.dtype != np.float32 or image.ndim != 2 or sigma <= 0 or 0 in image.shape:
        from scipy import ndimage as ndi

        return ndi.gaussian_filter(image, sigma)
    half = _half_weights(sigma)
    src = np.ascontiguousarray(image)
    mid = np.empty(src.shape, np.float32)
    _smooth_columns(src, half, mid)
    out = np.empty(src.shape, np.float32)
    _smooth_rows(mid, half, out)
    return out


@numba.njit(cache=True, nogil=True)
def _single_tops(labels, boxes, bright, bg_level, num_f32, divisor, w, px, half):
    n = boxes.shape[0]
    out = np.zeros(n + 1, np.bool_)
    for k in range(1, n + 1):
        y0, y1, x0, x1 = boxes[k - 1, 0], boxes[k - 1, 1], boxes[k - 1, 2], boxes[k - 1, 3]
        h, wd = y1 - y0, x1 - x0
        if h <= 0 or wd <= 0:
            continue
        comp = np.empty((h, wd), np.bool_)
        background = False
        for r in range(h):
            for c in range(wd):
                comp[r, c] = labels[y0 + r, x0 + c] == k
                background |= not comp[r, c]
        if not background:  # SciPy's distance convention for a full box: the caller's path
            continue
        sq = _edt(comp)
        land = np.zeros((h, wd), np.float32)
        for r in range(h):
            for c in range(wd):
                if not comp[r, c]:
                    continue
                b = bright[y0 + r, x0 + c]
                if num_f32:  # NumPy's float32 subtraction of a Python float
                    num = np.float64(np.float32(np.float32(b) - np.float32(bg_level)))
                else:
                    num = np.float64(b) - np.float64(bg_level)
                rel = num / divisor[k]
                if rel < 0.0:  # np.clip(rel, 0, 1); NaN stays NaN
                    rel = 0.0
                elif rel > 1.0:
                    rel = 1.0
                d = math.sqrt(np.float64(sq[r, c])) * px
                land[r, c] = np.float32(d * (w + (1.0 - w) * rel))
        mid = np.empty((h, wd), np.float32)
        _smooth_columns(land, half, mid)
        sub = np.empty((h, wd), np.float32)
        _smooth_rows(mid, half, sub)
        for r in range(h):
            for c in range(wd):
                if not comp[r, c]:
                    sub[r, c] = 0
        out[k] = _one_top_patch(sub, comp)
    return out


def single_tops(
    labels: np.ndarray,
    found: list,
    grow: int,
    bright: np.ndarray,
    bg_level: float,
    divisor: np.ndarray,
    w: float,
    px: float,
) -> np.ndarray:
    """For each object 1..n of ``labels``, whether the touching-cell split's landscape has
    one regional maximum (then the object is one cell), all objects in one call.

    Object by object, in its bounding box (``found``: :func:`scipy.ndimage.find_objects`
    of ``labels``) grown by ``grow`` pixels, exactly as ``segment._split_touching`` builds
    it: ``dist * (w + (1 - w) * rel)`` in the object, where ``dist`` is
    :func:`distance_to_background` of its mask times ``px`` and ``rel`` is
    ``clip((bright - bg_level) / divisor[k], 0, 1)`` in NumPy's types (``divisor``:
    float64, one per label), Gaussian-smoothed (sigma 1) and tested by
    :func:`one_top_patch`. False where the box has no background pixel (the caller's own
    path decides). One compiled call instead of a few NumPy calls per object: the small
    objects' Python overhead, and no giving up and taking back of Python's lock per
    object when frames are segmented in threads."""
    ny, nx = labels.shape
    boxes = np.zeros((len(found), 4), np.int64)
    for i, sl in enumerate(found):
        if sl is not None:
            boxes[i] = (
                max(sl[0].start - grow, 0),
                min(sl[0].stop + grow, ny),
                max(sl[1].start - grow, 0),
                min(sl[1].stop + grow, nx),
            )
    bright = np.ascontiguousarray(bright)
    if bright.dtype not in (np.float32, np.float64):
        bright = bright.astype(np.float64)
    return _single_tops(
        np.ascontiguousarray(labels),
        boxes,
        bright,
        float(bg_level),
        np.result_type(bright, bg_level) == np.float32,
        np.ascontiguousarray(divisor, np.float64),
        float(w),
        float(px),
        _half_weights(1.0),
    )


@numba.njit(cache=True, nogil=True)
def _find_root(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def _label4(mask):
    h, w = mask.shape
    prov = np.zeros((h, w), np.int32)
    parent = np.zeros(h * ((w + 1) // 2) + 2, np.int32)  # at most one new run every 2 px
    m = 0
    for r in range(h):
        for c in range(w):
            if not mask[r, c]:
                continue
            up = prov[r - 1, c] if r > 0 else 0
            left = prov[r, c - 1] if c > 0 else 0
            if up == 0 and left == 0:
                m += 1
                parent[m] = m
                prov[r, c] = m
            elif up == 0 or left == 0 or up == left:
                prov[r, c] = up if up else left
            else:
                a, b = _find_root(parent, up), _find_root(parent, left)
                if a < b:
                    parent[b] = a
                elif b < a:
                    parent[a] = b
                prov[r, c] = left
    # final labels in order of each component's first pixel (raster order), as SciPy's
    final = np.zeros(m + 1, np.int32)
    n = 0
    for i in range(1, m + 1):
        root = _find_root(parent, i)
        if root == i:
            n += 1
            final[i] = n
    for i in range(1, m + 1):
        final[i] = final[_find_root(parent, i)]
    for r in range(h):
        for c in range(w):
            if prov[r, c]:
                prov[r, c] = final[prov[r, c]]
    return prov, n


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label(mask)`` of a 2D mask (4-connected, the default structure):
    the same int32 labels, numbered in the order of each component's first pixel, by a
    two-pass union-find without Python's lock."""
    lab, n = _label4(np.ascontiguousarray(mask, np.bool_))
    return lab, int(n)


@numba.njit(cache=True, nogil=True)
def _fill_holes(mask):
    # the background's components (4-connected); those that reach the border are outside
    h, w = mask.shape
    lab, n = _label4(~mask)
    edge = np.zeros(n + 1, np.bool_)
    for c in range(w):
        edge[lab[0, c]] = True
        edge[lab[h - 1, c]] = True
    for r in range(h):
        edge[lab[r, 0]] = True
        edge[lab[r, w - 1]] = True
    out = np.empty((h, w), np.bool_)
    for r in range(h):
        for c in range(w):
            out[r, c] = mask[r, c] or not edge[lab[r, c]]
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)`` of a 2D mask (holes: background not
    4-connected to the border): the background's components that do not reach it."""
    return _fill_holes(np.ascontiguousarray(mask, np.bool_))


@numba.njit(cache=True, nogil=True)
def _label_sums(labels, size):
    cnt = np.zeros(size, np.int64)
    sy = np.zeros(size, np.float64)
    sx = np.zeros(size, np.float64)
    h, w = labels.shape
    for y in range(h):
        for x in range(w):
            k = labels[y, x]
            if k > 0:
                cnt[k] += 1
                sy[k] += y
                sx[k] += x
    return cnt, sy, sx


def label_sums(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label 0..n (index 0 left zero): pixel count (int64) and the sums of the rows and
    of the columns (float64), added in raster order as ``np.bincount`` with weights adds
    them, so equal to it; one pass, no pixel-index temporaries."""
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"`labels` must be 2D, got shape {labels.shape}")
    size = max(int(n), int(labels.max(initial=0))) + 1
    return _label_sums(labels, size)


@numba.njit(cache=True, nogil=True)
def _pair_counts(a, b, size_a, size_b):
    # pixels shared by each (a, b) pair: a counting sort of the overlapping pixels by a,
    # then each a's few b values sorted and counted
    h, w = a.shape
    counts = np.zeros(size_a + 1, np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            if a[y, x] > 0 and b[y, x] > 0:
                counts[a[y, x] + 1] += 1
                n += 1
    for k in range(size_a):
        counts[k + 1] += counts[k]
    pos = counts[:size_a].copy()
    bs = np.empty(n, np.int64)
    for y in range(h):
        for x in range(w):
            if a[y, x] > 0 and b[y, x] > 0:
                k = a[y, x]
                bs[pos[k]] = b[y, x]
                pos[k] += 1
    out_a = np.empty(n, np.int64)
    out_b = np.empty(n, np.int64)
    out_n = np.empty(n, np.int64)
    m = 0
    for k in range(size_a):
        lo, hi = counts[k], counts[k + 1]
        if hi == lo:
            continue
        seg = np.sort(bs[lo:hi])
        run = 1
        for i in range(1, hi - lo + 1):
            if i < hi - lo and seg[i] == seg[i - 1]:
                run += 1
                continue
            out_a[m] = k
            out_b[m] = seg[i - 1]
            out_n[m] = run
            m += 1
            run = 1
    return out_a[:m], out_b[:m], out_n[:m]


def pair_counts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by each pair of labels (both > 0) of two label images: arrays
    ``(label_a, label_b, count)`` sorted by ``label_a`` then ``label_b``, as
    ``np.unique`` of the pair keys gives them."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"`a` and `b` must be 2D of one shape, got {a.shape} and {b.shape}")
    size_a = int(a.max(initial=0)) + 1
    size_b = int(b.max(initial=0)) + 1
    return _pair_counts(a, b, size_a, size_b)
