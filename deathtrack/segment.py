"""Segment target cells and immune cells, frame by frame.

The classical default needs no downloads: background correction, Gaussian
denoising, a threshold set from each frame's own noise (so it follows
photobleaching and keeps the faint ghost of a ruptured necroptotic cell), a
seeded watershed that splits touching cells, size filters in µm², and a
merge of apoptotic-body clusters so fragments stay one object with the cell
they came from.

Bring-your-own segmentation: :func:`read_label_stack` opens label stacks
made by Cellpose, StarDist or any other tool (a TIFF or a Cell Tracking
Challenge folder) lazily, frame by frame.

Examples
--------
>>> import numpy as np
>>> from deathtrack.config import PopulationSegmentConfig
>>> img = np.full((64, 64), 100.0)
>>> img[20:40, 20:40] += 500
>>> labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=0.65)
>>> int(labels.max())
1
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.cluster.vq import ClusterError, kmeans2

# loaded here, once, not inside the functions: frames are segmented by several threads, and
# scikit-image's lazily loaded submodules fail ("partially initialized module") when two
# threads load them at the same time
from skimage import filters, morphology, segmentation
from skimage.feature import peak_local_max
from skimage.segmentation import expand_labels

from ._kernels import (
    above_upsampled,
    apply_lut,
    block_count,
    block_sum,
    components,
    dilate,
    distance_to_background,
    fill_holes,
    gaussian,
    h_maxima,
    histogram,
    label_max,
    label_percentile,
    median,
    mix_upsample,
    object_shapes,
    one_top_patch,
    opening,
    percentiles,
    relabel_sequential,
    single_tops,
)
from .config import PopulationSegmentConfig
from .errors import DeathtrackError, StackReadError

logger = logging.getLogger(__name__)

__all__ = [
    "crosstalk_ratio",
    "estimate_background",
    "read_label_stack",
    "segment_frame",
    "split_oversized",
    "threshold_value",
]


def _nanmedian64(values: np.ndarray) -> float:
    """``np.nanmedian`` of ``values`` as float64, exactly, without a float64 copy: the
    middle values are found among the values as they are (converting to float64 keeps
    their order) and only they are converted and averaged."""
    v = np.asarray(values).ravel()
    if v.dtype.kind == "f":
        nan = np.isnan(v)
        if nan.any():
            v = v[~nan]
    n = v.size
    if n == 0:
        return float("nan")
    if v.dtype.kind not in "fiu" or v.dtype.itemsize > (8 if v.dtype.kind == "f" else 4):
        return float(np.median(np.asarray(v, np.float64)))
    k = (n - 1) // 2
    part = np.partition(v, [k, n // 2]) if n % 2 == 0 else np.partition(v, k)
    if n % 2:
        return float(np.float64(part[k]))
    return float((np.float64(part[k]) + np.float64(part[n // 2])) / 2.0)


def crosstalk_ratio(
    target: np.ndarray,
    source: np.ndarray,
    source_objects: np.ndarray,
    target_objects: np.ndarray,
) -> float:
    """How much of channel ``source`` shows in channel ``target`` (bleed-through).

    Used to unmix two populations' channels before segmenting them again (the
    pipeline's ``segment.unmix``): the fraction of the source population's signal that
    its objects leave in the other channel.

    The median, over the brighter half of the pixels of ``source_objects`` that are not in
    ``target_objects``, of (target - its local background) / (source - its local
    background). Each channel's background is measured around the objects, not over the
    whole frame: the mean of the pixels in neither population's objects (nor within a
    quarter of the source objects' typical radius of them, their blurred rim), weighted
    by a Gaussian of twice that radius (normalized convolution). So an illumination
    gradient, vignetting or background texture that both channels share, which puts
    the objects of one side of the field on a brighter background in both, is not read
    as crosstalk. The typical radius is that of the median source object. 0 when below
    0.02 (no crosstalk worth correcting), with fewer than 50 background pixels or fewer
    than 100 object pixels to compare.

    Parameters
    ----------
    target, source : ndarray, shape (Y, X)
        Two channels of one frame. NaN pixels are ignored.
    source_objects, target_objects : ndarray of bool, shape (Y, X)
        Where the objects of each channel's own population are.

    Returns
    -------
    float
        The ratio, 0 or in [0.02, ...).
    """
    src_obj = np.asarray(source_objects, bool)
    tgt_obj = np.asarray(target_objects, bool)
    comps, n = components(src_obj)
    if n == 0:
        return 0.0
    areas = np.bincount(comps[src_obj])[1:]
    radius = float(np.sqrt(np.median(areas) / np.pi))
    t, s = np.asarray(target), np.asarray(source)
    finite = None
    if t.dtype.kind == "f" or s.dtype.kind == "f":
        finite = np.isfinite(t) & np.isfinite(s)
    free = ~dilate(src_obj | tgt_obj, max(1, int(round(radius / 4))))
    if finite is not None:
        free &= finite
    if free.sum() < 50:
        return 0.0
    # the local backgrounds, on blocks of b x b pixels (an eighth of the weighting's
    # sigma on each side of their centre: they are smooth), read at the object pixels
    sigma = max(2.0 * radius, 2.0)
    b = max(1, int(sigma // 4))
    weight = gaussian(_block_count(free, b, free.shape), sigma / b)
    frac = weight / _block_count(None, b, free.shape)

    def local(img: np.ndarray) -> np.ndarray:
        sums = _block_sum(img, b, free).astype(np.float32, copy=False)  # integer images too
        return gaussian(sums, sigma / b) / np.maximum(weight, 1e-6)

    sel = src_obj & ~tgt_obj
    if finite is not None:
        sel &= finite
    iy, ix = np.nonzero(sel)
    by, bx = iy // b, ix // b

    def read(small: np.ndarray) -> np.ndarray:
        return small[by, bx].astype(np.float64)

    # only where the background is measured: enough free pixels within reach
    ok = read(frac) > 0.05
    s_sig = (s[iy, ix].astype(np.float64) - read(local(s)))[ok]
    t_sig = (t[iy, ix].astype(np.float64) - read(local(t)))[ok]
    if s_sig.size < 100:
        return 0.0
    bright = s_sig >= np.median(s_sig)
    if not (s_sig[bright] > 0).all() or bright.sum() < 50:
        return 0.0
    ratio = float(np.median(t_sig[bright] / s_sig[bright]))
    return ratio if ratio >= 0.02 else 0.0


def _block_sum(a: np.ndarray, f: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``f`` x ``f`` blocks (of the pixels in ``mask`` when given), as NumPy sums
    them (:func:`deathtrack._kernels.block_sum`)."""
    return block_sum(a, f, mask)


def _block_count(mask: np.ndarray | None, f: int, shape: tuple[int, int]) -> np.ndarray:
    """:func:`_block_sum` of a 0/1 image as float32 (of ones when ``mask`` is None): whole
    numbers below 2**24, exact in any order, so counted as integers without the float
    copy and the padding."""
    ny, nx = shape
    sy, sx = -(-ny // f), -(-nx // f)
    if mask is None:
        rows = np.minimum(f, ny - f * np.arange(sy))
        cols = np.minimum(f, nx - f * np.arange(sx))
        return np.outer(rows, cols).astype(np.float32)
    return block_count(mask, f)


def estimate_background(
    image: np.ndarray,
    radius_px: float,
    *,
    noise_sd: float | None = None,
    return_free: bool = False,
    envelope: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Smooth background under objects up to ``radius_px``.

    A first guess (the grey opening of block means: the lower envelope) finds
    the objects; then a quadratic surface (gradients, vignetting) plus a smooth
    local correction is fitted to the mean of the pixels outside the objects.
    Means, not minima, so the estimate is not biased low by noise, and a
    fitted surface, so it holds up to the image border.

    The fit follows the background only where it sees it: a patch of brighter
    background (uneven light, background texture) that stands above the fitted
    surface is taken for objects and left out of the fit, so the surface stays
    under it. With ``envelope``, the background is never below the lower envelope:
    what is wider than ``2 * radius_px`` everywhere (no object is) is background.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
    radius_px : float
        Radius of the largest object to keep out of the background, in pixels.
    noise_sd : float, optional
        The image's pixel noise SD, when already known.
    return_free : bool
        Also return the mask of the pixels found free of objects (the background's
        own pixels).
    envelope : bool
        Raise the background to the lower envelope (the grey opening, over
        ``2 * radius_px``, of block means) where that is higher. For small, separate
        objects (immune cells); not for cells in clumps wider than ``2 * radius_px``,
        under which the envelope rises.

    Returns
    -------
    ndarray of float32, shape (Y, X)
        The background; with ``return_free``, ``(background, free)``.
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    f = max(1, int(radius_px // 3))
    counts = _block_count(None, f, img.shape)
    small = _block_sum(img, f) / counts
    sy, sx = small.shape
    size = max(3, int(np.ceil(2 * radius_px / f)) | 1)
    bg_small = ndi.grey_opening(small, size=(size, size), mode="nearest")
    env_small = None
    if envelope:
        # the lower envelope again, with the blocks continued past the border by point
        # reflection (a ramp goes on as a ramp): a background rising into the border is
        # not a peak to cut, as it is when the border blocks are repeated
        h = size // 2
        padded = np.pad(small, h, mode="reflect", reflect_type="odd")
        env_small = ndi.grey_opening(padded, size=(size, size))[h : h + sy, h : h + sx]
    sd = _noise_sd(img) if noise_sd is None else noise_sd
    if sd == 0:  # a noise-free image: anything clearly above the lower envelope is an object
        lo, hi = np.percentile(img, [0.5, 99.5])
        sd = max(0.01 * (hi - lo), 1e-6)
    yc = np.minimum((np.arange(sy) + 0.5) * f - 0.5, ny - 1)
    xc = np.minimum((np.arange(sx) + 0.5) * f - 0.5, nx - 1)

    def design(y, x):
        y = y / max(ny, 1) - 0.5
        x = x / max(nx, 1) - 0.5
        return np.stack([np.ones_like(y), y, x, y * y, x * x, y * x], axis=-1)

    yy, xx = np.meshgrid(yc, xc, indexing="ij")
    a_small = design(yy, xx)
    coef = None
    local = np.zeros_like(small)
    # objects: where the smoothed image stands out of the background (the background is
    # smooth, so smoothing the image alone is smoothing the difference)
    # (full resolution: on 2x2-binned pixels, 3x faster, the dim ghost of a swollen
    # necroptotic cell between neighbours went into the background and one more death
    # was missed on the held-out dense movies of benchmarks/death_accuracy.py)
    blurred = gaussian(img, 1.5)
    # objects: blurred - _upsample(bg_small) > level, without the upsampled frame
    i0, i1, wy = _zoom_weights(sy, f, ny)
    j0, j1, wx = _zoom_weights(sx, f, nx)
    level = 3 * sd / (2 * 1.5 * np.sqrt(np.pi))
    for _ in range(2):
        objects = above_upsampled(blurred, bg_small, i0, i1, wy, j0, j1, wx, level)
        free = ~dilate(objects, 3)
        w = _block_count(free, f, img.shape)
        mean_bg = _block_sum(img, f, free) / np.maximum(w, 1)
        ok = w > 0.25 * counts
        if ok.sum() < 6:
            break
        sw = np.sqrt(w[ok])
        coef, *_ = np.linalg.lstsq(a_small[ok] * sw[:, None], mean_bg[ok] * sw, rcond=None)
        trend = a_small @ coef
        # smooth local correction by normalized convolution of the residuals
        r = np.where(ok, mean_bg - trend, 0) * w
        norm = ndi.gaussian_filter(w * ok, size / 2, mode="nearest")
        local = ndi.gaussian_filter(r, size / 2, mode="nearest") / np.maximum(norm, 1e-6)
        local = np.where(norm > 1e-3 * w.max(), local, 0)
        bg_small = trend + local
    if coef is None:
        bg = _upsample(np.maximum(bg_small, env_small) if envelope else bg_small, f, ny, nx)
        return (bg, free) if return_free else bg
    # the fitted surface at full resolution, by broadcasting a column and a row (the full
    # design matrix would be six float64 copies of the frame)
    y = np.arange(ny, dtype=np.float64) / max(ny, 1) - 0.5
    x = np.arange(nx, dtype=np.float64) / max(nx, 1) - 0.5
    c = coef
    col_part = (c[0] + c[1] * y + c[3] * y * y).astype(np.float32)[:, None]
    row_part = (c[2] * x + c[4] * x * x).astype(np.float32)[None, :]
    surface = np.outer((c[5] * y).astype(np.float32), x.astype(np.float32))
    surface += col_part
    surface += row_part
    surface += _upsample(local, f, ny, nx)
    if envelope:
        np.maximum(surface, _upsample(env_small, f, ny, nx), out=surface)
    return (surface, free) if return_free else surface


def _upsample(small: np.ndarray, f: int, ny: int, nx: int) -> np.ndarray:
    """Linear interpolation of a block image back to (ny, nx), as ``ndi.zoom`` (order 1,
    grid mode, nearest edges) would, but separably: each output row, then column, mixes
    two neighbours (no BLAS: its threads fight the frame workers for the cores)."""
    i0, i1, wy = _zoom_weights(small.shape[0], f, ny)
    j0, j1, wx = _zoom_weights(small.shape[1], f, nx)
    return mix_upsample(small, i0, i1, wy, j0, j1, wx)


@functools.lru_cache(maxsize=32)
def _zoom_weights(n_small: int, f: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices ``ndi.zoom``'s linear interpolation by
    ``f`` mixes, and the weight of the second."""
    eye = np.eye(n_small, dtype=np.float64)
    w = ndi.zoom(eye, (f, 1), order=1, mode="nearest", grid_mode=True)[:n_out]
    i0 = np.argmax(w > 0, axis=1)
    i1 = np.minimum(i0 + 1, n_small - 1)
    w1 = np.where(i1 > i0, w[np.arange(n_out), i1], 0.0).astype(np.float32)
    for a in (i0, i1, w1):
        a.setflags(write=False)
    return i0, i1, w1


def _noise_sd(image: np.ndarray) -> float:
    """Pixel noise SD from the median absolute deviation of a high-pass residual."""
    ny, nx = image.shape
    if ny * nx > 1 << 18 and ny > 8 and nx > 8:
        # at every other pixel of every other row: plenty of pixels, 4x less work
        c = image[1:-1:2, 1:-1:2]
        h, w = c.shape
        total = sum(
            image[dy : dy + 2 * h : 2, dx : dx + 2 * w : 2] for dy in range(3) for dx in range(3)
        )
        resid = c - total / 9
    else:
        resid = image - ndi.uniform_filter(image, 3)
    if resid.dtype == np.float32 and np.isfinite(resid).all():  # np.median to the bit
        mad = float(median(np.abs(resid - median(resid))))
    else:
        mad = float(np.median(np.abs(resid - np.median(resid))))
    # a 3x3 mean of white noise leaves a residual with SD sqrt(8/9) of the pixel SD
    return 1.4826 * mad / np.sqrt(8 / 9)


def _background_level(smoothed: np.ndarray, free: np.ndarray | None = None) -> float:
    """Most common intensity (the background peak) of a background-corrected image.

    ``free``: the pixels known to be background (:func:`estimate_background`, whose
    estimate was subtracted); the peak is taken among them when they are enough
    (>= 1 % of the image), so that in a confluent field, where cells cover most
    pixels, the most common intensity is not the cells'. When they are fewer, the
    field is all but covered and its background is the subtracted estimate: 0.
    (Taking the peak of all pixels there, the cells', a frame of ~200 cells at 83 %
    cover kept 9 of them.) Without ``free``: the peak of all pixels.
    """
    mask = None
    if free is not None:
        if np.count_nonzero(free) < max(64, 0.01 * free.size):
            return 0.0
        mask = free
    fast = smoothed.dtype == np.float32 and smoothed.ndim == 2 and bool(np.isfinite(smoothed).all())
    if mask is not None:
        sub = smoothed if fast else smoothed[mask]
    else:
        # the range from every other pixel of every other row (4x fewer to sort); the
        # histogram from all of them
        sub = smoothed[::2, ::2] if smoothed.ndim == 2 and smoothed.size > 1 << 18 else smoothed
    if fast:  # NumPy's percentile and histogram to the bit, without copies (_kernels)
        lo, hi = percentiles(sub, [0.5, 99.5], mask)
    else:
        lo, hi = np.percentile(sub, [0.5, 99.5])
    if hi <= lo:
        return float(lo)
    edges = np.linspace(lo, hi, 257)
    if fast:
        hist = histogram(smoothed, 256, lo, hi, mask)
    else:
        values = smoothed if mask is None else smoothed[mask]
        hist = np.histogram(values, bins=256, range=(lo, hi))[0]
    k = int(np.argmax(ndi.uniform_filter1d(hist.astype(float), 5)))
    return float(0.5 * (edges[k] + edges[k + 1]))


def threshold_value(
    smoothed: np.ndarray,
    raw: np.ndarray,
    config: PopulationSegmentConfig,
    sigma_px: float,
    *,
    noise_sd: float | None = None,
    bg_level: float | None = None,
) -> float:
    """The foreground threshold of one frame (see ``PopulationSegmentConfig.threshold``).

    ``noise_sd``: the pixel noise SD of ``raw``, and ``bg_level``: the background
    level of ``smoothed``, when already known.
    """

    method = config.threshold
    if method == "noise":
        sd = _noise_sd(raw) if noise_sd is None else noise_sd
        # Gaussian smoothing with sigma s divides white-noise SD by 2 s sqrt(pi)
        sd_s = sd / (2 * sigma_px * np.sqrt(np.pi)) if sigma_px > 0.5 else sd
        level = _background_level(smoothed) if bg_level is None else bg_level
        return level + config.noise_k * sd_s
    func = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
    }[method]
    return float(func(smoothed))


def _label_percentile(values: np.ndarray, labels: np.ndarray, n: int, q: float) -> np.ndarray:
    """``q``-th percentile of ``values`` inside each label 1..n (index 0 = 0)."""
    return label_percentile(values, labels, n, q)


def _grown(sl: tuple[slice, slice], g: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """A bounding box grown by ``g`` pixels on every side, within the image."""
    return tuple(slice(max(s.start - g, 0), min(s.stop + g, n)) for s, n in zip(sl, shape))  # type: ignore[return-value]


def _merge_fragments(labels: np.ndarray, areas: np.ndarray, config, px: float) -> np.ndarray:
    """Give each cluster of small pieces (apoptotic bodies) one label.

    Small pieces closer than ``fragment_gap_um`` to each other form a cluster.
    A cluster touching exactly one large object and small beside it (blebs on a
    cell: below ``bleb_max_fraction`` of its area) joins it; any other cluster
    (apoptotic bodies beside a live neighbour, or near several objects, or
    none) stays an object of its own.
    """
    frag_px = config.fragment_area_um2 / px**2
    is_small = (areas > 0) & (areas < frag_px)
    if not is_small.any():
        return labels
    small_mask = is_small[labels]
    big_mask = (labels > 0) & ~small_mask
    gap = max(1, int(round(config.fragment_gap_um / px / 2)))
    clusters, _ = components(dilate(small_mask, gap))
    lut = np.arange(labels.max() + 1)
    small_ids = np.flatnonzero(is_small)
    piece_cluster = label_max(clusters, labels, int(labels.max()))[small_ids].astype(int)
    touch = dilate(small_mask, 2)
    # each cluster is looked at inside its own bounding box (grown by the 3 px the two
    # dilations reach), not over the whole frame
    boxes = ndi.find_objects(clusters)
    ny, nx = labels.shape
    for c in np.unique(piece_cluster):
        members = small_ids[piece_cluster == c]
        sl = boxes[c - 1] if c > 0 else None
        sl = _grown((slice(0, ny), slice(0, nx)) if sl is None else sl, 3, labels.shape)
        region = touch[sl] & np.isin(labels[sl], members)
        near = ndi.binary_dilation(region, iterations=1) & big_mask[sl]
        near_big = np.unique(labels[sl][near])
        if (
            near_big.size == 1
            and areas[members].sum() < config.bleb_max_fraction * areas[near_big[0]]
        ):
            lut[members] = near_big[0]
        else:
            lut[members] = members[np.argmax(areas[members])]
    return lut[labels]


def _typical_spacing_um(fg: np.ndarray, min_px: float, px: float) -> float:
    """Spacing of the seeds of touching objects (µm) for ``min_distance_um = 'auto'``: 1.2 x
    the radius of the lower quartile of the foreground's pieces (most are single cells;
    clumps are the large ones), within 2-20 µm; 4 µm (a T cell's radius) with fewer than 3."""
    areas = np.bincount(components(fg)[0].ravel())[1:]
    areas = areas[areas >= min_px]
    if len(areas) < 3:
        return 4.0
    radius_um = float(np.sqrt(np.percentile(areas, 25) / np.pi)) * px
    return float(np.clip(1.2 * radius_um, 2.0, 20.0))


def _seed_smoothing_px(cfg, px: float) -> float:
    """Gaussian sigma (pixels) of the brightness that weighs the seeds' landscape."""
    if cfg.seed_method != "spacing":
        return max(1.0, 1.0 / px)
    return max(1.0, 0.5 * max(1, int(round(cfg.min_distance_um / px))))


def _split_touching(labels, n, bright, bg_level, cfg, px, noise_sd=None):
    """Seeded watershed inside each object of ``labels``, seeds from shape (distance) and
    signal (brightness).

    Cells are thicker, so brighter, in the middle, and touching cells meet at a
    neck and a dimmer seam, so the landscape mixes the distance to the edge with
    the smoothed brightness relative to the object's own plateau.

    ``seed_method = "prominence"``: the landscape is the distance to the edge
    (µm) weighted by brightness; every maximum standing ``seed_prominence_um``
    above the neck it shares with another seeds a cell (texture inside one cell
    does not). ``"spacing"``: maxima at least ``min_distance_um`` apart, for
    small crowded cells that touch without a neck (immune cells).

    ``bright``: the image smoothed by :func:`_seed_smoothing_px`.
    """

    w = cfg.seed_shape_weight
    if cfg.seed_method != "spacing":
        s_px = _seed_smoothing_px(cfg, px)
        plate = _label_percentile(bright, labels, n, 95.0) - bg_level
        # noise in the landscape: the smoothed signal's noise relative to each object's
        # plateau, times its depth; a seed must stand out of that as well as of the texture
        k_noise = cfg.seed_noise_k if noise_sd else 0.0
        sd_rel = noise_sd / (2 * s_px * np.sqrt(np.pi)) / np.maximum(plate, 1e-6) if k_noise else 0

        def seeds(k, sl, comp):
            dist = distance_to_background(comp) * px
            prominence = cfg.seed_prominence_um
            if k_noise:
                prominence = max(prominence, k_noise * (1 - w) * dist.max() * sd_rel[k])
            rel = np.clip((bright[sl] - bg_level) / max(plate[k], 1e-6), 0, 1)
            land = np.where(comp, dist * (w + (1 - w) * rel), 0).astype(np.float32)
            sub = np.where(comp, gaussian(land, 1.0), 0)
            # the pixels no lower than their 8 neighbours: when they form one (4-connected)
            # flat patch, the object has one regional maximum, so one seed, and the costly
            # h-maxima transform would find just that
            if one_top_patch(sub, comp):
                return None, sub
            return components(h_maxima(sub, prominence) & comp)[0], sub

        # boxes grown by the reach of the landscape's smoothing (4 px); each object's
        # landscape is its own: a touching neighbour's does not blur into it. Most objects
        # are one cell: their one-top test is made for all of them in one compiled call
        # (the same landscape, to the bit), and only the others come back to ``seeds``
        grow = 5
        found = ndi.find_objects(labels)
        single = None
        if _FAST_SINGLE_TOPS:
            single = single_tops(labels, found, grow, bright, bg_level, plate, w, px)
            # a plateau under 1e-6: the per-object division would be by a Python float
            # (float32 arithmetic); such objects take the per-object path
            single &= plate >= 1e-6
        return _split_objects(labels, grow, seeds, single, found)

    # "spacing": maxima at least min_distance_um apart, object by object (as
    # peak_local_max does with labels), in boxes grown by one pixel of background
    min_d = max(1, int(round(cfg.min_distance_um / px)))
    plate = _label_percentile(bright, labels, n, 95.0) - bg_level

    def peaks(k, sl, comp):
        dist = distance_to_background(comp) * px
        rel = np.clip((bright[sl] - bg_level) / max(plate[k], 1e-6), 0, 1)
        land = np.minimum(dist / cfg.min_distance_um, 1.0) * w + rel * (1 - w)
        land = np.where(comp, land, 0).astype(np.float32)
        # peak_local_max's candidates (its own test); most objects have one, and then
        # they are the answer without its sorting and spacing
        cand = (land == ndi.maximum_filter(land, size=2 * min_d + 1, mode="nearest")) & (
            land > land.min()
        )
        if cand.sum() <= 1:  # one cell (or none found: the object is its own seed)
            return None, land
        found = peak_local_max(land, min_distance=min_d, exclude_border=False)
        if len(found) <= 1:
            return None, land
        markers = np.zeros(land.shape, np.int32)
        markers[tuple(found.T)] = np.arange(1, len(found) + 1)
        return markers, land

    return _split_objects(labels, 1, peaks)


def _split_objects(labels: np.ndarray, grow: int, seeds, single=None, found=None) -> np.ndarray:
    """Split each object by a seeded watershed in its own bounding box (grown by ``grow``
    pixels; most of a frame is background) and number the cells 1..N in object order.

    ``seeds(k, box, comp)`` returns (markers or None for one cell, landscape) for the
    object ``k`` (``comp``: its mask in ``box``). ``single``: per object 0..n, True
    where the object is known to be one cell (``seeds`` is not called for it);
    ``found``: :func:`scipy.ndimage.find_objects` of ``labels`` when the caller has it.
    """
    if found is None:
        found = ndi.find_objects(labels)
    count = np.ones(len(found) + 1, np.int64)  # cells per object
    count[0] = 0
    parts = []
    for k, sl in enumerate(found, start=1):
        if sl is None:
            count[k] = 0
            continue
        if single is not None and single[k]:
            continue
        sl = _grown(sl, grow, labels.shape)
        comp = labels[sl] == k
        markers, land = seeds(k, sl, comp)
        n_seeds = 0 if markers is None else int(markers.max())
        if n_seeds > 1:
            parts.append((k, sl, comp, segmentation.watershed(-land, markers, mask=comp)))
            count[k] = n_seeds
    first = np.cumsum(count) - count + 1  # each object's first cell label
    first[0] = 0
    out = apply_lut(labels, first.astype(np.int32))
    for k, sl, comp, split in parts:
        out[sl][comp] = split[comp] + np.int32(first[k] - 1)
    return out


#: the finest detection smoothing (pixels), whatever ``smooth_sigma_um``: a sampling limit
#: (see segment_frame), not a size. 1 against 0.8 and 1.25 on coarse_slow development seeds
#: 1-6 (cells F1 0.953 -> 0.955 / 0.964 / 0.962; 1.25 called more false deaths); checked on
#: seeds 7-12 (0.971 -> 0.975). It acts only on pixels coarser than smooth_sigma_um.
MIN_SMOOTH_PX = 1.0

#: the one-top test of all objects in one compiled call (False: object by object, the
#: reference the test of the fast path compares with)
_FAST_SINGLE_TOPS = True


def _segment_level(
    candidates,
    smoothed,
    bright,
    thr,
    bg_level,
    cfg,
    px,
    min_plateau=-np.inf,
    noise_sd=None,
    edge_image=None,
):
    """Objects in a candidate mask: own-plateau edges, holes filled, touching ones split.

    Components whose plateau (90th percentile of the smoothed signal) stays below
    ``min_plateau`` are dropped: they are noise peaks just above the threshold.
    ``bright``: see :func:`_split_touching`. ``edge_image``: the image, smoothed less than
    ``smoothed``, on which edges are placed (default: ``smoothed``).
    """
    labels, n = components(candidates)
    if n == 0:
        return labels
    plateau = _label_percentile(smoothed, labels, n, 90.0)
    faint = plateau < min_plateau
    faint[0] = False
    if faint.any():
        candidates = candidates & ~faint[labels]
    above = candidates
    if cfg.edge_fraction > 0:
        # Objects are found at the noise threshold, but their edges lie where the blurred
        # signal crosses a fraction of the object's own plateau (half of it for a blurred
        # step edge), so a dim ghost and a bright cell both get their true outline.
        # Edges are placed on an image smoothed less than the one objects are found on:
        # the detection's smoothing would blur a small object (an apoptotic body) and
        # widen its outline by a pixel or two all round.
        if edge_image is None:
            edge_image = smoothed
        else:
            plateau = _label_percentile(edge_image, labels, n, 90.0)
        edge = np.maximum(bg_level + cfg.edge_fraction * (plateau - bg_level), thr)
        edge[0] = np.inf
        candidates = candidates & (edge_image > edge[labels])
    # holes: a dim nucleus or vacuole inside one cell is the cell's (it stands above the
    # threshold, under the cell's own edge level), but the background that a ring of
    # touching cells encloses is not (in a clump it can be the size of many cells). Such
    # gaps, which reach below the threshold, are left out of the split when larger than the
    # smallest object (their middle would seed a "cell"); after the split, a gap goes to
    # the one object around it, or to none.
    mask = fill_holes(candidates)
    holes, n_holes = components(mask & ~candidates)
    if n_holes:
        size = np.bincount(holes.ravel(), minlength=n_holes + 1)
        # a gap reaches down to the background: a tenth of it below the threshold
        gap = np.bincount(holes[~above], minlength=n_holes + 1) > 0.1 * size
        gap[0] = False
        if gap.any():
            mask &= ~(gap & (size > cfg.min_area_um2 / px**2))[holes]
            holes, n_holes = components(np.where(gap[holes], holes, 0) > 0)
        else:
            n_holes = 0
    labels, n = components(mask)
    if n and cfg.split_touching:
        labels = _split_touching(labels, n, bright, bg_level, cfg, px, noise_sd)
        if cfg.seed_method == "prominence+size":
            labels = _split_oversized(labels, bright, bg_level, cfg, px)
    if n_holes:
        labels = _fill_own_holes(labels, holes, n_holes)
    return labels


def _fill_own_holes(labels: np.ndarray, holes: np.ndarray, n_holes: int) -> np.ndarray:
    """Each hole (``holes``: labels 1..n_holes of the background enclosed by objects) goes
    to the object around it when one object alone encloses it, and to the background when
    several do (a gap between touching cells)."""
    ids, around = [], []
    for a, b in (
        (np.s_[1:, :], np.s_[:-1, :]),
        (np.s_[:-1, :], np.s_[1:, :]),
        (np.s_[:, 1:], np.s_[:, :-1]),
        (np.s_[:, :-1], np.s_[:, 1:]),
    ):
        # the pixels just outside each hole (4-connected, as the holes are), and their objects
        edge = (holes[a] > 0) & (holes[b] == 0)
        ids.append(holes[a][edge])
        around.append(labels[b][edge])
    ids, around = np.concatenate(ids), np.concatenate(around).astype(np.int64)
    owner = np.zeros(n_holes + 1, np.int64)
    if len(ids):
        lo = np.full(n_holes + 1, np.iinfo(np.int64).max)
        hi = np.zeros(n_holes + 1, np.int64)
        np.minimum.at(lo, ids, around)
        np.maximum.at(hi, ids, around)
        one = (lo == hi) & (hi > 0)
        owner[one] = hi[one]
    inside = holes > 0
    out = labels.copy()
    out[inside] = owner[holes[inside]]
    return out


def _split_oversized(labels, bright, bg_level, cfg, px) -> np.ndarray:
    """Split objects of more than 1.8 times the frame's typical object area (its lower
    quartile) by seeds spaced 0.8 typical radii apart (touching cells' centres are two
    radii apart): cells of one kind and size that touch without a neck (immune cells
    swarming at a death), which the prominence of their seeds cannot tell apart."""
    n = int(labels.max())
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    sized = areas[areas >= cfg.min_area_um2 / px**2]
    # the lower quartile: most objects are single cells even in a swarm's frame, and the
    # clumps are the large ones; with fewer than 4 objects (all in one swarm), a T cell's
    # size (4 µm radius)
    if len(sized) >= 4:
        typical = float(np.percentile(sized, 25))
    else:
        typical = np.pi * (4.0 / px) ** 2
    big = np.flatnonzero(areas > 1.8 * typical)
    if not len(big):
        return labels
    spacing = 0.8 * np.sqrt(typical / np.pi) * px
    sub_cfg = cfg.model_copy(update={"seed_method": "spacing", "min_distance_um": spacing})
    sub = np.where(np.isin(labels, big), labels, 0)
    sub, m = components(sub > 0)
    parts = _split_touching(sub, m, bright, bg_level, sub_cfg, px)
    out = np.where(parts > 0, parts + n, labels)
    return _relabel_sequential(out)


def split_oversized(
    labels: np.ndarray,
    factor: float,
    *,
    image: np.ndarray | None = None,
    min_area_px: float = 0.0,
    min_brightness: float = 0.7,
    max_elongation: float = 1.3,
    min_solidity: float = 0.85,
    max_seam: float = 0.85,
) -> np.ndarray:
    """Split objects too large to be one cell into as many cells as their area holds.

    An object of more than ``factor`` times the frame's typical object area (the median
    of the objects of at least ``min_area_px`` pixels; at least 5 of them) that is not
    round (elongation, the ratio of its axes, of ``max_elongation`` or more, or solidity
    below ``min_solidity``, judged on its opening by a disc of 0.3 typical radii: blebs or
    apoptotic bodies stuck to a cell do not count), and, given the ``image``, as bright
    as live cells (its median at least ``min_brightness`` times the median of the
    objects' medians: a swollen dying cell, whose reporter dilutes, or a ruptured cell's
    ghost is large, dim and ragged, and is one cell) is taken as ``round(area /
    typical)`` cells merged without a neck, their seam too faint for the watershed's
    seeds: its pixels are clustered in that many groups (k-means of their coordinates,
    SciPy's ``kmeans2``, seeded, best of 3); each group is a cell, cut from its
    neighbours halfway between their centres, so across the clump's narrowest way. Given
    the ``image``, the cut is made only if it runs along a seam: the median of the image
    on the lines between the groups at most ``max_seam`` times its median inside them (a
    large nucleus, lobed or with dark nucleoli, has no seam through it and stays whole,
    as does a swollen cell, which is round).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
    factor : float
        How many times the typical area an object must exceed (> 1).
    image : ndarray, shape (Y, X), optional
        The frame, background removed: dim objects are not split.
    min_area_px : float
        Objects smaller than this (debris, fragments) do not count for the typical area.
    min_brightness, max_elongation, min_solidity, max_seam : float
        See above.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        Labels 1..N (``labels`` relabelled when nothing is split).
    """
    n = int(labels.max(initial=0))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    sized = areas[areas >= max(min_area_px, 1)]
    if len(sized) < 5:
        return labels
    typical = float(np.median(sized))
    big = np.flatnonzero(areas > factor * typical)
    if not len(big):
        return labels
    if image is not None:
        level = _label_percentile(image, labels, n, 50.0)
        big = big[
            level[big] >= min_brightness * float(np.median(level[areas >= max(min_area_px, 1)]))
        ]
        if not len(big):
            return labels
    out = labels.astype(np.int32, copy=True)
    next_label = n + 1
    boxes = ndi.find_objects(labels)
    # the shape is judged without the small things stuck to the object (blebs, apoptotic
    # bodies of a cell beside it): on its opening by a disc of 0.3 typical radii
    r_open = max(1, int(round(0.3 * np.sqrt(typical / np.pi))))
    footprint = morphology.disk(r_open)
    for k in big:
        sl = _grown(boxes[k - 1], r_open, labels.shape)
        comp = labels[sl] == k
        body = ndi.binary_opening(comp, footprint)
        if body.sum() < 0.5 * areas[k]:
            continue
        yx_body = np.argwhere(body).astype(np.float64)
        ev = np.linalg.eigvalsh(np.cov(yx_body.T))
        elongation = float(np.sqrt(ev[1] / max(ev[0], 1e-9)))
        sol = body.sum() / max(int(object_shapes(body.astype(np.int32), np.array([1]))[2][0]), 1)
        if elongation < max_elongation and sol >= min_solidity:
            continue
        yx = np.argwhere(comp).astype(np.float64)
        m = max(2, int(round(areas[k] / typical)))
        rng = np.random.default_rng(int(k))
        best = None
        for _ in range(3):
            try:
                centres, which = kmeans2(yx, m, iter=20, minit="++", seed=rng, missing="raise")
            except ClusterError:
                continue
            inertia = float(((yx - centres[which]) ** 2).sum())
            if best is None or inertia < best[0]:
                best = (inertia, centres, which)
        if best is None:
            continue
        # the groups are the cells (their border halfway between neighbouring centres);
        # a group in several pieces (a curved clump) keeps its largest, and the others go
        # to the neighbours they touch (a watershed from the kept pieces)
        groups = np.zeros(comp.shape, np.int32)
        groups[comp] = best[2] + 1
        markers = np.zeros(comp.shape, np.int32)
        for i in range(1, m + 1):
            pieces, n_pieces = components(groups == i)
            if n_pieces:
                size = np.bincount(pieces.ravel())
                size[0] = 0
                markers[pieces == int(np.argmax(size))] = i
        split = segmentation.watershed(np.zeros(comp.shape, np.float32), markers, mask=comp)
        if image is not None:
            # ...and cut only if the line between the groups is dimmer than the cells:
            # cells pressed together leave a seam there, too faint for the watershed's
            # seeds but a seam; one large nucleus (lobed, with dark nucleoli) has none
            patch = image[sl]
            cut = (
                segmentation.find_boundaries(split, mode="inner")
                & comp
                & ~segmentation.find_boundaries(comp, mode="inner")
            )
            inner = ndi.binary_erosion(comp, footprint) & ~dilate(cut, r_open)
            if not cut.any() or not inner.any():
                continue
            if np.median(patch[cut]) > max_seam * np.median(patch[inner]):
                continue
        next_label = number_pieces(out[sl], split, next_label)
    return _relabel_sequential(out)


def number_pieces(region: np.ndarray, split: np.ndarray, next_label: int) -> int:
    """Give pieces 2, 3, ... of ``split`` (a watershed of one object in the box ``region``,
    whose piece 1 keeps the object's label) new labels from ``next_label`` on, in place;
    returns the next free label."""
    for i in range(2, int(split.max()) + 1):
        piece = split == i
        if piece.any():
            region[piece] = next_label
            next_label += 1
    return next_label


def _regrow_faint(
    labels: np.ndarray,
    img: np.ndarray,
    smoothed: np.ndarray,
    bg_level: float,
    noise_sd: float,
    sigma: float,
    cfg: PopulationSegmentConfig,
    px: float,
) -> np.ndarray:
    """Outline faint objects again at a scale where they stand out of the noise.

    At the detection's scale a faint object (a swollen cell whose reporter has diluted,
    the ghost of a ruptured one) is found only where its texture peaks: a fraction of it,
    with a ragged edge. Each object whose plateau stands less than 4 pixel-noise SDs
    above the background is looked at again, in its own neighbourhood, on the image
    smoothed just enough for its edge (``edge_fraction`` of its plateau) to stand 3 SDs
    out of the smoothed noise (at most a quarter of its size), ignoring the other objects
    and their glow. Only objects already found are redrawn: empty background is not
    searched.
    """
    n = int(labels.max())
    plateau = _label_percentile(smoothed, labels, n, 90.0) - bg_level
    faint = np.flatnonzero((plateau > 0) & (plateau < 4 * noise_sd))
    faint = faint[faint > 0]
    if not len(faint):
        return labels
    area = np.bincount(labels.ravel(), minlength=n + 1)
    boxes = ndi.find_objects(labels)
    out = labels.copy()
    glow = max(1, int(round(1.0 / px)))
    for k in faint:
        if boxes[k - 1] is None:
            continue
        radius = np.sqrt(area[k] / np.pi)
        s = 2.42 * noise_sd / (cfg.edge_fraction / 0.35 * plateau[k])
        s = float(np.clip(s, sigma, max(sigma, 0.5 * radius)))
        sl = _grown(boxes[k - 1], int(np.ceil(radius + 3 * s)), labels.shape)
        own = out[sl] == k
        others = (out[sl] > 0) & ~own
        near = dilate(others, glow)
        w = gaussian((~near).astype(np.float32), s)
        sm = gaussian(np.where(near, 0, img[sl] - bg_level), s) / np.maximum(w, 1e-3)
        level = float(np.percentile(sm[own], 90))
        noise_s = noise_sd / (2 * s * np.sqrt(np.pi))
        if level < 3 * noise_s:
            continue
        cand = (sm > max(cfg.edge_fraction * level, 3 * noise_s)) & ~near
        lab, m = components(cand)
        if m == 0:
            continue
        overlap = np.bincount(lab[own], minlength=m + 1)
        overlap[0] = 0
        best = int(np.argmax(overlap))
        piece = fill_holes(lab == best) & ~others
        # a faint object regrown, not a stretch of uneven background taken along
        if overlap[best] < 0.5 * own.sum() or piece.sum() > 3 * own.sum():
            continue
        region = out[sl]
        region[own & ~piece] = 0
        region[piece] = k
    return out


def segment_frame(
    image: np.ndarray,
    config: PopulationSegmentConfig | None = None,
    *,
    pixel_size_um: float,
) -> np.ndarray:
    """Label the objects of one population in one frame.

    Objects clearly above the noise get their outlines where the signal falls to a
    fraction of their own plateau; faint ones are outlined again at a coarser scale
    (:func:`_regrow_faint`). Cells that only a coarser scale would show (the ghost of a
    ruptured cell, a swollen cell whose reporter has diluted) are found where a cell
    was in the frame before (:func:`deathtrack.refine.segment_sequence`, as the
    pipeline does): a search of the whole frame at that scale draws objects into
    uneven background and the glow of bright cells (``dim_objects``, off by default).

    Parameters
    ----------
    image : ndarray, shape (Y, X)
        The population's channel. NaN pixels are treated as background.
    config
        Segmentation parameters (defaults: target cells).
    pixel_size_um
        Pixel size in µm; every size in ``config`` is physical.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        0 is background; labels are 1..N.
    """

    cfg = config or PopulationSegmentConfig()
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2D (Y, X), got shape {image.shape}")
    if pixel_size_um <= 0:
        raise ValueError(f"`pixel_size_um` must be > 0, got {pixel_size_um}")
    img = np.asarray(image, dtype=np.float32)
    nan = np.isnan(img)
    if nan.all():
        return np.zeros(img.shape, np.int32)
    if nan.any():
        img = np.where(nan, np.nanmedian(img), img)
    px = pixel_size_um
    # pixel noise, measured once: the background subtracted below is smooth, so it does not
    # change the (high-pass) noise estimate
    noise_sd = _noise_sd(img)
    free = None
    if cfg.background_radius_um > 0:
        bg, free = estimate_background(
            img,
            cfg.background_radius_um / px,
            noise_sd=noise_sd,
            return_free=True,
            envelope=cfg.background_envelope,
        )
        img = img - bg
    # never finer than the pixel grid: a Gaussian of less than a pixel hardly averages
    # (at 0.64 px the centre keeps 39 % of the weight), so with coarse pixels (above
    # smooth_sigma_um) each pixel of a dim cell had to clear the noise threshold alone
    sigma = max(cfg.smooth_sigma_um / px, MIN_SMOOTH_PX) if cfg.smooth_sigma_um > 0 else 0.0
    smoothed = gaussian(img, sigma) if sigma > 0 else img
    bg_level = _background_level(smoothed, free & ~nan if free is not None else None)
    thr = threshold_value(smoothed, img, cfg, sigma, noise_sd=noise_sd, bg_level=bg_level)
    # the seeds' noise term goes with the noise threshold (see seed_noise_k)
    seed_sd = noise_sd if cfg.threshold == "noise" else None
    fg = (smoothed > thr) & ~nan
    sheet = None
    cover = fg.mean()
    if cover > cfg.confluent_fraction:
        # a confluent field: cells cover most of it and the seams between them stand above
        # the noise, so the threshold finds one sheet, to be cut at the seams
        sheet = fill_holes(fg)
        if cfg.confluent_seam_um > 0:
            if cover > cfg.packed_fraction:
                # cells packed edge to edge: their seams are faint lines, found along their
                # length by the Hessian (at 0.4 x confluent_seam_um, the scale of a line
                # that wide)
                dark = _dark_lines(img, 0.4 * cfg.confluent_seam_um / px)
            else:
                # the seams are thin dark lines: what a grey closing over confluent_seam_um
                # fills (a cell's dim centre or nucleus is wider, and stays)
                w = max(3, int(round(cfg.confluent_seam_um / px)) | 1)
                dark = ndi.grey_closing(smoothed, size=(w, w)) - smoothed
            # the seams: above Otsu's threshold of that darkness within the sheet
            inside = dark[sheet & ~nan]
            if inside.size and inside.max() > inside.min():
                fg &= ~(dark > filters.threshold_otsu(inside))
        else:
            # keep what is brighter than its surroundings (the cell bodies): this also cuts
            # the dim patches out of textured cells
            size = int(round(cfg.confluent_window_um / px)) | 1
            fg &= fill_holes(smoothed > ndi.uniform_filter(smoothed, size))
    min_px = cfg.min_area_um2 / px**2
    edge_sigma = cfg.edge_sigma_um / px
    edge_image = (
        None if edge_sigma >= sigma else (gaussian(img, edge_sigma) if edge_sigma > 0.2 else img)
    )

    if cfg.split_touching and cfg.seed_method == "spacing" and cfg.min_distance_um == "auto":
        cfg = cfg.model_copy(update={"min_distance_um": _typical_spacing_um(fg, min_px, px)})
    # the brightness that weighs the seeds of touching cells (both passes below)
    bright = gaussian(img, _seed_smoothing_px(cfg, px)) if cfg.split_touching else None
    # bright objects: clearly above the noise
    labels = _segment_level(
        fg,
        smoothed,
        bright,
        thr,
        bg_level,
        cfg,
        px,
        min_plateau=bg_level + 2 * (thr - bg_level),
        noise_sd=seed_sd,
        edge_image=edge_image,
    )
    if cfg.regrow_faint and seed_sd is not None and labels.max():
        labels = _regrow_faint(labels, img, smoothed, bg_level, noise_sd, sigma, cfg, px)
    if cfg.dim_objects:
        # dim, large objects (ghosts) in what is left, away from the rims of bright objects,
        # seen at a coarser scale where their faint signal rises above the noise
        rim = max(2, int(round(2 * sigma + 1)))
        free = ~dilate(labels > 0, rim) & ~nan
        sigma2 = max(sigma, cfg.dim_smooth_sigma_um / px)
        # smooth only what lies outside the bright objects (normalized convolution), so
        # their blurred halo does not pass for a dim object beside them
        # (at half resolution when the smoothing is wide: the result is smooth anyway)
        b = 2 if sigma2 >= 3 else 1
        free_f = free.astype(np.float32)
        if b > 1:
            ny, nx = img.shape
            weight = gaussian(_block_sum(free_f, b), sigma2 / b)
            value = gaussian(_block_sum(img, b, free), sigma2 / b)
            smooth2 = _upsample(value / np.maximum(weight, b * b * 1e-3), b, ny, nx)
        else:
            weight = gaussian(free_f, sigma2)
            smooth2 = gaussian(np.where(free, img, 0), sigma2) / np.maximum(weight, 1e-3)
        smooth2 = np.where(free, smooth2, 0).astype(np.float32)
        bg2 = _background_level(smooth2)
        thr2 = threshold_value(smooth2, img, cfg, sigma2, noise_sd=noise_sd, bg_level=bg2)
        residual = opening((smooth2 > thr2) & free, rim)
        if residual.sum() >= min_px:
            dim = _segment_level(residual, smooth2, bright, thr2, bg2, cfg, px, noise_sd=seed_sd)
            # only large leftovers are objects (a ghost); small ones are dim rims or noise
            # and only when round and convex (a swollen ghost): irregular leftovers are
            # uneven background between cells
            dim_area = np.bincount(dim.ravel())
            drop = dim_area < max(min_px, cfg.fragment_area_um2 / px**2)
            ids = np.flatnonzero(dim_area[1:]) + 1
            if len(ids):
                # solidity as scikit-image's regionprops: pixels / convex-hull pixels
                hull = object_shapes(dim, ids)[2]
                drop[ids[dim_area[ids] / hull < 0.85]] = True
            drop[0] = True
            dim[drop[dim]] = 0
            labels = np.where((dim > 0) & free, dim + labels.max(), labels)

    areas = np.bincount(labels.ravel())
    areas[0] = 0
    if cfg.merge_fragments:
        labels = _merge_fragments(labels, areas, cfg, px)
    if sheet is not None and cfg.confluent_grow_um > 0 and labels.max():
        # the cut at the seams also took the cell bodies' dimmer parts (rims, a dim
        # nucleus): each body grows back into the sheet by at most confluent_grow_um, never
        # into a neighbour (scikit-image's expand_labels: nearest body first), and only
        # where the signal stands above the body's own edge level (edge_fraction of its
        # plateau), so its outline is drawn as in a frame that is not confluent: a movie
        # whose cover comes and goes around confluent_fraction keeps its cells' sizes
        grown = np.where(sheet, expand_labels(labels, cfg.confluent_grow_um / px), 0)
        if cfg.edge_fraction > 0:
            ei = smoothed if edge_image is None else edge_image
            plateau = _label_percentile(ei, labels, int(labels.max()), 90.0)
            edge = bg_level + cfg.edge_fraction * (plateau - bg_level)
            edge[0] = np.inf
            grown = np.where((grown == labels) | (ei > edge[grown]), grown, 0)
        labels = grown
    if cfg.oversize_factor > 0 and cfg.split_touching and labels.max():
        # the typical cell: among the objects larger than fragments (apoptotic bodies and
        # shrunken dying cells would make it small late in a movie)
        typical_min = max(min_px, cfg.fragment_area_um2 / px**2)
        labels = split_oversized(
            labels, cfg.oversize_factor, image=smoothed, min_area_px=typical_min
        )
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    bad = (areas < min_px) | (areas > cfg.max_area_um2 / px**2)
    bad[0] = True
    labels[bad[labels]] = 0
    return _relabel_sequential(labels)


def _dark_lines(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Strength of the dark lines (seams) of width about ``sigma_px`` in ``image``: the
    larger eigenvalue of the Hessian at that scale where positive (the image curves up
    across the line), times ``sigma_px**2`` (comparable across scales). Found along a
    line's length, so a seam too faint for a pixel's neighbourhood still shows. (The same
    as scikit-image's ``hessian_matrix_eigvals(hessian_matrix(..., order="rc",
    use_gaussian_derivatives=True))[0]`` away from the border, in a third less time and
    without its stacked copies of the frame.)"""
    img = np.asarray(image, np.float32)
    hrr = ndi.gaussian_filter(img, sigma_px, order=(2, 0))
    hcc = ndi.gaussian_filter(img, sigma_px, order=(0, 2))
    hrc = ndi.gaussian_filter(img, sigma_px, order=(1, 1))
    half = 0.5 * (hrr - hcc)
    lam = 0.5 * (hrr + hcc) + np.sqrt(half * half + hrc * hrc)
    return np.maximum(lam, 0) * np.float32(sigma_px * sigma_px)


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Labels 1..N in the order of their values (as skimage's relabel_sequential), int32."""
    return relabel_sequential(labels)


class LabelStack:
    """A lazy (T, Y, X) label stack read from a TIFF or a folder of TIFFs."""

    def __init__(self, path: str | Path):
        from .io import open_stack

        self.path = Path(path)
        self._movie = open_stack(self.path)
        if self._movie.n_channels != 1 or self._movie.is_3d:
            raise StackReadError(
                f"{self.path}: a label stack must be (T, Y, X), one label image per frame; "
                f"found axes {self._movie.axes} with shape {self._movie.shape}"
            )
        if not np.issubdtype(self._movie.dtype, np.integer):
            raise StackReadError(
                f"{self.path}: label images must be integers, found {self._movie.dtype}; "
                "export labels (not probabilities) from your segmentation tool"
            )
        self.n_frames = self._movie.n_frames
        self.shape = (self._movie.n_frames, *self._movie.shape[-2:])

    def __getitem__(self, t: int) -> np.ndarray:
        return np.asarray(self._movie.read(0, t)).astype(np.int32, copy=False)

    def close(self) -> None:
        self._movie.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_label_stack(
    path: str | Path, *, expect_shape: tuple[int, int, int] | None = None
) -> LabelStack:
    """Open a label stack made by another tool (Cellpose, StarDist, CTC ground truth...).

    Parameters
    ----------
    path
        A (T, Y, X) integer TIFF or a folder of per-frame label TIFFs.
    expect_shape
        (T, Y, X) of the movie the labels belong to; a mismatch is an error
        that names both shapes.
    """
    stack = LabelStack(path)
    if expect_shape is not None and tuple(stack.shape) != tuple(expect_shape):
        stack.close()
        raise DeathtrackError(
            f"{path}: label stack has shape {stack.shape} (T, Y, X) but the movie has "
            f"{tuple(expect_shape)}; the labels must come from this movie"
        )
    return stack
