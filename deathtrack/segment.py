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

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

# loaded here, once, not inside the functions: frames are segmented by several threads, and
# scikit-image's lazily loaded submodules fail ("partially initialized module") when two
# threads load them at the same time
from skimage import filters, measure, morphology, segmentation
from skimage.feature import peak_local_max

from .config import PopulationSegmentConfig
from .errors import DeathtrackError, StackReadError

logger = logging.getLogger(__name__)

__all__ = ["estimate_background", "read_label_stack", "segment_frame", "threshold_value"]


def _block_sum(a: np.ndarray, f: int) -> np.ndarray:
    ny, nx = a.shape
    a = np.pad(a, ((0, (-ny) % f), (0, (-nx) % f)))
    return a.reshape(a.shape[0] // f, f, a.shape[1] // f, f).sum(axis=(1, 3))


def estimate_background(image: np.ndarray, radius_px: float) -> np.ndarray:
    """Smooth background under objects up to ``radius_px``.

    A first guess (the grey opening of block means: the lower envelope) finds
    the objects; then a quadratic surface (gradients, vignetting) plus a smooth
    local correction is fitted to the mean of the pixels outside the objects.
    Means, not minima, so the estimate is not biased low by noise, and a
    fitted surface, so it holds up to the image border.

    Parameters
    ----------
    image : ndarray, shape (Y, X)
    radius_px : float
        Radius of the largest object to keep out of the background, in pixels.

    Returns
    -------
    ndarray of float32, shape (Y, X)
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = img.shape
    f = max(1, int(radius_px // 3))
    counts = _block_sum(np.ones_like(img), f)
    small = _block_sum(img, f) / counts
    sy, sx = small.shape
    size = max(3, int(np.ceil(2 * radius_px / f)) | 1)
    bg_small = ndi.grey_opening(small, size=(size, size), mode="nearest")
    sd = _noise_sd(img)
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
    for _ in range(2):
        bg_full = _upsample(bg_small, f, ny, nx)
        objects = ndi.gaussian_filter(img - bg_full, 1.5) > 3 * sd / (2 * 1.5 * np.sqrt(np.pi))
        free = ~ndi.binary_dilation(objects, iterations=3)
        w = _block_sum(free.astype(np.float32), f)
        mean_bg = _block_sum(np.where(free, img, 0), f) / np.maximum(w, 1)
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
        return _upsample(bg_small, f, ny, nx)
    # the fitted surface at full resolution, by broadcasting a column and a row (the full
    # design matrix would be six float64 copies of the frame)
    y = (np.arange(ny, dtype=np.float64) / max(ny, 1) - 0.5)[:, None]
    x = (np.arange(nx, dtype=np.float64) / max(nx, 1) - 0.5)[None, :]
    c = coef
    surface = (c[0] + c[1] * y + c[3] * y * y) + (c[2] * x + c[4] * x * x) + c[5] * (y * x)
    return (surface + _upsample(local, f, ny, nx)).astype(np.float32)


def _upsample(small: np.ndarray, f: int, ny: int, nx: int) -> np.ndarray:
    zoom = (small.shape[0] * f / small.shape[0], small.shape[1] * f / small.shape[1])
    return ndi.zoom(small, zoom, order=1, mode="nearest", grid_mode=True)[:ny, :nx].astype(
        np.float32
    )


def _noise_sd(image: np.ndarray) -> float:
    """Pixel noise SD from the median absolute deviation of a high-pass residual."""
    resid = image - ndi.uniform_filter(image, 3)
    mad = float(np.median(np.abs(resid - np.median(resid))))
    # a 3x3 mean of white noise leaves a residual with SD sqrt(8/9) of the pixel SD
    return 1.4826 * mad / np.sqrt(8 / 9)


def _background_level(smoothed: np.ndarray) -> float:
    """Most common intensity (the background peak) of a background-corrected image."""
    lo, hi = np.percentile(smoothed, [0.5, 99.5])
    if hi <= lo:
        return float(lo)
    hist, edges = np.histogram(smoothed, bins=256, range=(lo, hi))
    k = int(np.argmax(ndi.uniform_filter1d(hist.astype(float), 5)))
    return float(0.5 * (edges[k] + edges[k + 1]))


def threshold_value(
    smoothed: np.ndarray,
    raw: np.ndarray,
    config: PopulationSegmentConfig,
    sigma_px: float,
    *,
    noise_sd: float | None = None,
) -> float:
    """The foreground threshold of one frame (see ``PopulationSegmentConfig.threshold``).

    ``noise_sd``: the pixel noise SD of ``raw`` when already known.
    """

    method = config.threshold
    if method == "noise":
        sd = _noise_sd(raw) if noise_sd is None else noise_sd
        # Gaussian smoothing with sigma s divides white-noise SD by 2 s sqrt(pi)
        sd_s = sd / (2 * sigma_px * np.sqrt(np.pi)) if sigma_px > 0.5 else sd
        return _background_level(smoothed) + config.noise_k * sd_s
    func = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
    }[method]
    return float(func(smoothed))


def _label_percentile(values: np.ndarray, labels: np.ndarray, n: int, q: float) -> np.ndarray:
    """``q``-th percentile of ``values`` inside each label 1..n (index 0 = 0)."""
    sel = labels.ravel() > 0
    lab = labels.ravel()[sel]
    val = values.ravel()[sel]
    order = np.lexsort((val, lab))
    lab, val = lab[order], val[order]
    counts = np.bincount(lab, minlength=n + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    idx = starts + np.floor((counts - 1) * q / 100.0).astype(np.int64)
    out = np.zeros(n + 1, np.float64)
    has = counts > 0
    out[has] = val[idx[has]]
    out[0] = 0
    return out


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
    clusters, _ = ndi.label(ndi.binary_dilation(small_mask, iterations=gap))
    lut = np.arange(labels.max() + 1)
    small_ids = np.flatnonzero(is_small)
    piece_cluster = ndi.maximum(clusters, labels, index=small_ids).astype(int)
    touch = ndi.binary_dilation(small_mask, iterations=2)
    # each cluster is looked at inside its own bounding box (grown by the 3 px the two
    # dilations reach), not over the whole frame
    boxes = ndi.find_objects(clusters)
    ny, nx = labels.shape
    for c in np.unique(piece_cluster):
        members = small_ids[piece_cluster == c]
        sl = boxes[c - 1] if c > 0 else None
        if sl is None:
            sl = (slice(0, ny), slice(0, nx))
        sl = (
            slice(max(sl[0].start - 3, 0), min(sl[0].stop + 3, ny)),
            slice(max(sl[1].start - 3, 0), min(sl[1].stop + 3, nx)),
        )
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


def _split_touching(mask, labels, n, img, bg_level, cfg, px, noise_sd=None):
    """Seeded watershed inside ``mask``, seeds from shape (distance) and signal (brightness).

    Cells are thicker, so brighter, in the middle, and touching cells meet at a
    neck and a dimmer seam, so the landscape mixes the distance to the edge with
    the smoothed brightness relative to the object's own plateau.

    ``seed_method = "prominence"``: the landscape is the distance to the edge
    (µm) weighted by brightness; every maximum standing ``seed_prominence_um``
    above the neck it shares with another seeds a cell (texture inside one cell
    does not). ``"spacing"``: maxima at least ``min_distance_um`` apart, for
    small crowded cells that touch without a neck (immune cells).
    """

    w = cfg.seed_shape_weight
    dist = ndi.distance_transform_edt(mask) * px
    if cfg.seed_method == "prominence":
        s_px = max(1.0, 1.0 / px)
        bright = ndi.gaussian_filter(img, s_px)
        plate = _label_percentile(bright, labels, n, 95.0) - bg_level
        # noise in the landscape: the smoothed signal's noise relative to each object's
        # plateau, times its depth; a seed must stand out of that as well as of the texture
        k_noise = cfg.seed_noise_k
        if noise_sd and k_noise > 0:
            sd_rel = noise_sd / (2 * s_px * np.sqrt(np.pi)) / np.maximum(plate, 1e-6)
            dmax = ndi.maximum(dist, labels, np.arange(n + 1))
            prominence = np.maximum(cfg.seed_prominence_um, k_noise * (1 - w) * dmax * sd_rel)
        else:
            prominence = np.full(n + 1, cfg.seed_prominence_um)
        rel = np.clip((bright - bg_level) / np.maximum(plate[labels], 1e-6), 0, 1)
        land = np.where(mask, dist * (w + (1 - w) * rel), 0).astype(np.float32)
        land = ndi.gaussian_filter(land, 1.0)
        # seeds and watershed object by object (bounding boxes): most of a frame is
        # background, and reconstruction on the whole frame is the slowest step
        out = np.zeros(labels.shape, np.int32)
        next_label = 1
        for k, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            comp = labels[sl] == k
            sub = np.where(comp, land[sl], 0)
            seeds = morphology.h_maxima(sub, prominence[k]) & comp
            markers, n_seeds = ndi.label(seeds)
            if n_seeds <= 1:
                out[sl][comp] = next_label
                next_label += 1
                continue
            split = segmentation.watershed(-sub, markers, mask=comp)
            out[sl][comp] = split[comp] + next_label - 1
            next_label += n_seeds
        return out
    else:
        min_d = max(1, int(round(cfg.min_distance_um / px)))
        bright = ndi.gaussian_filter(img, max(1.0, 0.5 * min_d))
        plate = _label_percentile(bright, labels, n, 95.0) - bg_level
        rel = np.clip((bright - bg_level) / np.maximum(plate[labels], 1e-6), 0, 1)
        land = np.minimum(dist / cfg.min_distance_um, 1.0) * w + rel * (1 - w)
        land = np.where(mask, land, 0).astype(np.float32)
        peaks = peak_local_max(land, min_distance=min_d, labels=labels, exclude_border=False)
        markers = np.zeros(labels.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        n_seeds = len(peaks)
    missing = np.setdiff1d(np.arange(1, n + 1), np.unique(labels[markers > 0]))
    for k, pos in enumerate(ndi.maximum_position(land, labels, missing), start=n_seeds + 1):
        markers[pos] = k  # every component gets at least one seed
    return segmentation.watershed(-land, markers, mask=mask)


def _segment_level(
    candidates, smoothed, img, thr, bg_level, cfg, px, min_plateau=-np.inf, noise_sd=None
):
    """Objects in a candidate mask: own-plateau edges, holes filled, touching ones split.

    Components whose plateau (90th percentile of the smoothed signal) stays below
    ``min_plateau`` are dropped: they are noise peaks just above the threshold.
    """
    labels, n = ndi.label(candidates)
    if n == 0:
        return labels
    plateau = _label_percentile(smoothed, labels, n, 90.0)
    faint = plateau < min_plateau
    faint[0] = False
    if faint.any():
        candidates = candidates & ~faint[labels]
    if cfg.edge_fraction > 0:
        # Objects are found at the noise threshold, but their edges lie where the blurred
        # signal crosses a fraction of the object's own plateau (half of it for a blurred
        # step edge), so a dim ghost and a bright cell both get their true outline.
        edge = np.maximum(bg_level + cfg.edge_fraction * (plateau - bg_level), thr)
        edge[0] = np.inf
        candidates = candidates & (smoothed > edge[labels])
    mask = ndi.binary_fill_holes(candidates)
    labels, n = ndi.label(mask)
    if n and cfg.split_touching:
        labels = _split_touching(mask, labels, n, img, bg_level, cfg, px, noise_sd)
    return labels


def segment_frame(
    image: np.ndarray,
    config: PopulationSegmentConfig | None = None,
    *,
    pixel_size_um: float,
) -> np.ndarray:
    """Label the objects of one population in one frame.

    Bright objects are found first; then dim objects (the ghost of a ruptured
    cell, a faint cell) are looked for in what is left of the foreground, away
    from the blurred rims of the bright ones, so a ghost touching a bright
    neighbour keeps its own outline.

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
    if cfg.background_radius_um > 0:
        img = img - estimate_background(img, cfg.background_radius_um / px)
    sigma = cfg.smooth_sigma_um / px
    smoothed = ndi.gaussian_filter(img, sigma) if sigma > 0 else img
    noise_sd = _noise_sd(img) if cfg.threshold == "noise" else None
    thr = threshold_value(smoothed, img, cfg, sigma, noise_sd=noise_sd)
    bg_level = _background_level(smoothed)
    fg = (smoothed > thr) & ~nan
    min_px = cfg.min_area_um2 / px**2

    # bright objects: clearly above the noise
    labels = _segment_level(
        fg,
        smoothed,
        img,
        thr,
        bg_level,
        cfg,
        px,
        min_plateau=bg_level + 2 * (thr - bg_level),
        noise_sd=noise_sd,
    )
    if cfg.dim_objects:
        # dim, large objects (ghosts) in what is left, away from the rims of bright objects,
        # seen at a coarser scale where their faint signal rises above the noise
        rim = max(2, int(round(2 * sigma + 1)))
        free = ~ndi.binary_dilation(labels > 0, iterations=rim) & ~nan
        sigma2 = max(sigma, cfg.dim_smooth_sigma_um / px)
        # smooth only what lies outside the bright objects (normalized convolution), so
        # their blurred halo does not pass for a dim object beside them
        weight = ndi.gaussian_filter(free.astype(np.float32), sigma2)
        smooth2 = ndi.gaussian_filter(np.where(free, img, 0), sigma2) / np.maximum(weight, 1e-3)
        smooth2 = np.where(free, smooth2, 0).astype(np.float32)
        bg2 = _background_level(smooth2)
        thr2 = threshold_value(smooth2, img, cfg, sigma2, noise_sd=noise_sd)
        residual = ndi.binary_opening((smooth2 > thr2) & free, iterations=rim)
        if residual.sum() >= min_px:
            dim = _segment_level(residual, smooth2, img, thr2, bg2, cfg, px, noise_sd=noise_sd)
            # only large leftovers are objects (a ghost); small ones are dim rims or noise
            # and only when round and convex (a swollen ghost): irregular leftovers are
            # uneven background between cells
            dim_area = np.bincount(dim.ravel())
            drop = dim_area < max(min_px, cfg.fragment_area_um2 / px**2)
            for region in measure.regionprops(dim):
                if region.solidity < 0.85:
                    drop[region.label] = True
            drop[0] = True
            dim[drop[dim]] = 0
            labels = np.where((dim > 0) & free, dim + labels.max(), labels)

    areas = np.bincount(labels.ravel())
    areas[0] = 0
    if cfg.merge_fragments:
        labels = _merge_fragments(labels, areas, cfg, px)
        areas = np.bincount(labels.ravel())
        areas[0] = 0
    bad = (areas < min_px) | (areas > cfg.max_area_um2 / px**2)
    bad[0] = True
    labels[bad[labels]] = 0
    labels, _, _ = segmentation.relabel_sequential(labels)
    return labels.astype(np.int32)


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
