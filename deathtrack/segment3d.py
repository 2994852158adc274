"""Segment target cells and immune cells in z-stacks, volume by volume.

The same design as :func:`deathtrack.segment.segment_frame`, in 3D with
anisotropic voxels (``z_step_um`` along Z, ``pixel_size_um`` in Y and X), and
every size in µm from the same config (:class:`PopulationSegmentConfig`):

1. background: the 2D estimate (:func:`deathtrack.segment.estimate_background`,
   ``background_radius_um``) of each z slice, removed slice by slice, so depth
   attenuation and a background that changes with depth are followed;
2. a Gaussian of ``smooth_sigma_um`` in µm along every axis (fewer voxels
   along z), and a threshold of background level + ``noise_k`` x the noise SD
   of the smoothed volume (the pixel noise, measured per slice, carried
   through the anisotropic Gaussian);
3. each object's outline where the signal falls to ``edge_fraction_3d`` of
   its own plateau, on the volume smoothed by ``edge_sigma_um``
   (``edge_fraction_3d``, not ``edge_fraction``: the axial PSF is several
   times wider than the lateral one, so the outline of a small object at the
   2D fraction would lie well beyond its edge in z); holes filled; what is
   left of the detection beside the outlined objects (a ghost beside a bright
   cell) is outlined at its own plateau; faint objects are outlined again on
   a volume smoothed by 1.5 µm (``regrow_faint``);
4. touching cells split by a seeded watershed on the anisotropic distance to
   the object's edge (:func:`scipy.ndimage.distance_transform_edt` with
   ``sampling``), weighted by brightness; seeds are the maxima that stand
   ``seed_prominence_um`` above their neck; with ``seed_method`` ``spacing``
   or ``prominence+size``, objects of more than 1.8 x the typical volume are
   split at seeds spaced 0.8 typical radii apart (immune swarms);
5. apoptotic bodies: pieces smaller than the fragment size within
   ``fragment_gap_um`` of each other get one label;
6. size filter.

Sizes given as areas in the config are turned into volumes through the
sphere of the same cross-section (:func:`area_to_volume_um3`): ``min_area_um2
= 30`` (a disc of 3.1 µm radius) keeps objects of at least a ball of 3.1 µm
radius (126 µm³). What the 2D pipeline does over time (``split_merged``,
``carry_objects``: :mod:`deathtrack.refine`) is not done in 3D.

Examples
--------
>>> import numpy as np
>>> from deathtrack.config import PopulationSegmentConfig
>>> img = np.full((12, 48, 48), 100.0)
>>> img[3:9, 14:34, 14:34] += 500
>>> lab = segment_volume(img, PopulationSegmentConfig(), pixel_size_um=0.65, z_step_um=2.0)
>>> int(lab.max())
1
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage as ndi
from skimage import morphology, segmentation
from skimage.feature import peak_local_max

from .config import PopulationSegmentConfig
from .segment import (
    _background_level,
    _label_percentile,
    _noise_sd,
    _relabel_sequential,
    estimate_background,
)

logger = logging.getLogger(__name__)

__all__ = ["area_to_volume_um3", "segment_volume", "smoothed_noise_factor"]


def area_to_volume_um3(area_um2: float) -> float:
    """Volume of the ball whose cross-section is ``area_um2``: the 3D meaning of an area
    threshold of the config (``min_area_um2``, ``max_area_um2``, ``fragment_area_um2``)."""
    r = math.sqrt(max(area_um2, 0.0) / math.pi)
    return 4.0 / 3.0 * math.pi * r**3


def smoothed_noise_factor(sigma_vox) -> float:
    """SD of white noise after a separable Gaussian of ``sigma_vox`` (voxels per axis), over
    its SD before: the product over axes of ``(2 sigma sqrt(pi)) ** -1/2`` (axes smoothed by
    less than half a voxel count as not smoothed), as the 2D threshold does."""
    f = 1.0
    for s in np.atleast_1d(sigma_vox):
        if s > 0.5:
            f /= math.sqrt(2 * s * math.sqrt(math.pi))
    return f


def _grown(sl, g, shape):
    return tuple(slice(max(s.start - gi, 0), min(s.stop + gi, n)) for s, gi, n in zip(sl, g, shape))


def _union_box(boxes) -> tuple[slice, ...]:
    """The smallest box holding every box of ``boxes`` (slices from ``find_objects``)."""
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
        for a in range(len(boxes[0]))
    )


def _fill_holes_3d(mask: np.ndarray) -> np.ndarray:
    """Holes filled in 3D (cavities enclosed on every side). Not slice by slice: immune
    cells swarming around a dying cell ring it in a slice, and filling that ring would
    join them all with the cell.

    The result of :func:`scipy.ndimage.binary_fill_holes` (background not connected to
    the volume's faces through its faces), found by labelling the background once rather
    than by scipy's repeated dilation from the faces: the same voxels, twice as fast.
    """
    background, n = ndi.label(~mask)  # face connectivity, as binary_fill_holes
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, bool)
    for axis in range(mask.ndim):
        for end in (0, -1):
            outside[np.take(background, end, axis=axis)] = True
    outside[0] = True  # the mask itself
    return mask | ~outside[background]


def _ball_footprint(radius_um: float, spacing) -> np.ndarray:
    """Offsets (in voxels) within ``radius_um`` of the centre, with anisotropic voxels:
    ``sqrt(sum((offset * spacing) ** 2)) <= radius_um``, summed in the order and precision
    :func:`scipy.ndimage.distance_transform_edt` uses, so :func:`_within_um` draws its
    boundary on the same voxels."""
    half = [int(math.floor(radius_um / s)) for s in spacing]
    grids = np.meshgrid(
        *[np.arange(-h, h + 1).astype(np.float64) * s for h, s in zip(half, spacing)],
        indexing="ij",
    )
    d2 = grids[0] * grids[0]
    for g in grids[1:]:
        d2 = d2 + g * g
    return np.sqrt(d2) <= radius_um


def _within_um(mask: np.ndarray, radius_um: float, spacing) -> np.ndarray:
    """Voxels within ``radius_um`` of ``mask`` (anisotropic distances): the same voxels as
    ``distance_transform_edt(~mask, sampling=spacing) <= radius_um``, as a dilation by the
    ball of that radius (:func:`_ball_footprint`) instead of the full volume's distance
    map (that map and its feature transform cost seconds and ~30 bytes per voxel).

    The ball is a union of rows along X, each a centred run of ``2 w + 1`` voxels (the
    ball is convex and symmetric); a dilation by a run is a running maximum along X,
    shared by the rows of one length, and shifted into place along Z and Y. An empty
    ``mask`` keeps scipy's answer for a volume without background (distances to the
    volume's outside), so results stay what they were.
    """
    if not mask.any():
        return ndi.distance_transform_edt(~mask, sampling=spacing) <= radius_um
    ball = _ball_footprint(radius_um, spacing)
    hz, hy, _ = (n // 2 for n in ball.shape)
    nz, ny, _ = mask.shape
    out = np.zeros_like(mask)
    runs: dict[int, np.ndarray] = {}
    for iz, iy in zip(*np.nonzero(ball.any(axis=2))):
        w = int(ball[iz, iy].sum()) // 2
        if w not in runs:
            runs[w] = (
                ndi.maximum_filter1d(mask, 2 * w + 1, axis=2, mode="constant", cval=0)
                if w
                else mask
            )
        dz, dy = int(iz) - hz, int(iy) - hy  # out[z, y] |= run[z - dz, y - dy]
        out[max(dz, 0) : nz + min(dz, 0), max(dy, 0) : ny + min(dy, 0)] |= runs[w][
            max(-dz, 0) : nz + min(-dz, 0), max(-dy, 0) : ny + min(-dy, 0)
        ]
    return out


def _split_touching_3d(labels, bright, bg_level, cfg, spacing, noise_sd):
    """Seeded watershed in each object's box: landscape = anisotropic distance to the
    edge (µm) x brightness relative to the object's plateau; seeds = maxima standing
    ``seed_prominence_um`` above the neck (and the landscape's noise)."""
    n = int(labels.max())
    plate = _label_percentile(bright, labels, n, 95.0) - bg_level
    w = cfg.seed_shape_weight
    out = np.zeros(labels.shape, np.int32)
    nxt = 1
    grow = (1, 2, 2)
    # the landscape smoothed by 1 µm (at least half a voxel) along each axis: the distance
    # to the edge along z comes in z steps, whose stairs would each seed a cell
    land_sigma = [max(0.5, 1.0 / s) for s in spacing]
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        sl = _grown(sl, grow, labels.shape)
        comp = labels[sl] == k
        dist = ndi.distance_transform_edt(comp, sampling=spacing)
        rel = np.clip((bright[sl] - bg_level) / max(plate[k], 1e-6), 0, 1)
        land = np.where(comp, dist * (w + (1 - w) * rel), 0).astype(np.float32)
        land = np.where(comp, ndi.gaussian_filter(land, land_sigma), 0)
        prominence = cfg.seed_prominence_um
        if noise_sd and cfg.seed_noise_k:
            prominence = max(
                prominence,
                cfg.seed_noise_k * (1 - w) * float(dist.max()) * noise_sd / max(plate[k], 1e-6),
            )
        seeds = ndi.label(morphology.h_maxima(land, prominence) & comp)[0]
        m = int(seeds.max())
        if m <= 1:
            out[sl][comp] = nxt
            nxt += 1
            continue
        split = segmentation.watershed(-land, seeds, mask=comp)
        out[sl][comp] = split[comp] + nxt - 1
        nxt += m
    return out


def _split_oversized_3d(labels, cfg, spacing) -> np.ndarray:
    """Objects above 1.8 x the typical volume (lower quartile; a ball of 4 µm radius with
    fewer than 4 objects) split at seeds 0.8 typical radii apart (distance maxima), as many
    as typical cells fit in the object."""
    voxel = float(np.prod(spacing))
    n = int(labels.max())
    vols = np.bincount(labels.ravel(), minlength=n + 1).astype(float) * voxel
    vols[0] = 0
    sized = vols[vols >= area_to_volume_um3(cfg.min_area_um2)]
    typical = float(np.percentile(sized, 25)) if len(sized) >= 4 else 4 / 3 * np.pi * 4.0**3
    big = np.flatnonzero(vols > 1.8 * typical)
    if not len(big):
        return labels
    r_um = (3 * typical / (4 * np.pi)) ** (1 / 3)
    d_um = 0.8 * r_um
    half = np.maximum(np.round(d_um / np.asarray(spacing)).astype(int), 1)
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    footprint = sum(g * g for g in grids) <= d_um**2 + 1e-9
    out = labels.copy()
    nxt = n + 1
    boxes = ndi.find_objects(labels)
    for k in big:
        sl = _grown(boxes[k - 1], (1, 1, 1), labels.shape)
        comp = labels[sl] == k
        dist = ndi.distance_transform_edt(comp, sampling=spacing)
        land = dist
        # as many seeds as typical cells fit in it (at least two), the highest first
        k_cells = max(2, int(round(vols[k] / typical)))
        peaks = peak_local_max(
            land, footprint=footprint, labels=comp.astype(np.int32), num_peaks=k_cells
        )
        if len(peaks) <= 1:
            continue
        markers = np.zeros(comp.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        split = segmentation.watershed(-land, markers, mask=comp)
        region = out[sl]
        region[comp] = split[comp] + nxt - 1
        nxt += len(peaks)
    return _relabel_sequential(out)


def _merge_fragments_3d(labels: np.ndarray, cfg, spacing) -> np.ndarray:
    """Clusters of small pieces (closer than ``fragment_gap_um``) get one label: the one
    large object they touch when they are small beside it (blebs), else their own."""
    voxel = float(np.prod(spacing))
    vols = np.bincount(labels.ravel()).astype(float) * voxel
    vols[0] = 0
    small = (vols > 0) & (vols < area_to_volume_um3(cfg.fragment_area_um2))
    if not small.any():
        return labels
    small_mask = small[labels]
    near = _within_um(small_mask, cfg.fragment_gap_um / 2, spacing)
    clusters, _ = ndi.label(near)
    lut = np.arange(labels.max() + 1, dtype=labels.dtype)  # labels' type: no int64 volume
    ids = np.flatnonzero(small)
    cl = np.zeros(labels.max() + 1, np.int64)
    np.maximum.at(cl, labels[small_mask], clusters[small_mask])
    big_mask = (labels > 0) & ~small_mask
    touch = ndi.binary_dilation(small_mask, iterations=1)
    boxes = ndi.find_objects(labels)
    for c in np.unique(cl[ids]):
        members = ids[cl[ids] == c]
        # in the members' box grown by the dilation's reach (2 voxels), not the volume
        sl = _grown(_union_box([boxes[m - 1] for m in members]), (2, 2, 2), labels.shape)
        region = np.isin(labels[sl], members)
        grown = ndi.binary_dilation(region & touch[sl], iterations=2)
        near_big = np.unique(labels[sl][grown & big_mask[sl]])
        if near_big.size == 1 and vols[members].sum() < cfg.bleb_max_fraction * vols[near_big[0]]:
            lut[members] = near_big[0]
        else:
            lut[members] = members[np.argmax(vols[members])]
    return lut[labels]


def _regrow_faint_3d(labels, img, smoothed, bg_level, noise_sd, cfg, spacing) -> np.ndarray:
    """Outline faint objects again on a volume smoothed by 1.5 µm, where they stand out of
    the noise as a whole (the 3D :func:`deathtrack.segment._regrow_faint`).

    A faint object (plateau within 4 pixel-noise SDs of the background: a ruptured cell's
    ghost, a swollen cell whose reporter diluted) is found at the detection's scale only
    where its texture peaks. In its neighbourhood (3 µm around), away from the other
    objects, its outline is where the smoother volume falls to ``edge_fraction_3d`` of its
    plateau (and at least 3 SDs of that volume's noise); kept when it overlaps at least
    half of the object and is at most 3 times its size. Only objects already found are
    redrawn: empty background is not searched.
    """
    n = int(labels.max())
    plateau = _label_percentile(smoothed, labels, n, 90.0) - bg_level
    faint = np.flatnonzero((plateau > 0) & (plateau < 4 * noise_sd))
    faint = faint[faint > 0]
    if not len(faint):
        return labels
    sigma2 = np.array([max(0.5, 1.5 / s) for s in spacing])
    sm2 = ndi.gaussian_filter(img, sigma2)
    sd2 = noise_sd * smoothed_noise_factor(sigma2)
    boxes = ndi.find_objects(labels)
    reach = tuple(int(math.ceil(3.0 / s)) for s in spacing)
    out = labels.copy()
    for k in faint:
        if boxes[k - 1] is None:
            continue
        sl = _grown(boxes[k - 1], reach, labels.shape)
        own = out[sl] == k
        others = (out[sl] > 0) & ~own
        near = ndi.binary_dilation(others, iterations=1) if others.any() else others
        level = float(np.percentile(sm2[sl][own], 90)) - bg_level
        if level < 3 * sd2:
            continue
        cand = (sm2[sl] - bg_level > max(cfg.edge_fraction_3d * level, 3 * sd2)) & ~near
        lab, m = ndi.label(cand)
        if m == 0:
            continue
        overlap = np.bincount(lab[own], minlength=m + 1)
        overlap[0] = 0
        best = int(np.argmax(overlap))
        piece = ndi.binary_fill_holes(lab == best) & ~others
        if overlap[best] < 0.5 * own.sum() or piece.sum() > 3 * own.sum():
            continue
        region = out[sl]
        region[own & ~piece] = 0
        region[piece] = k
    return out


def segment_volume(
    image: np.ndarray,
    config: PopulationSegmentConfig | None = None,
    *,
    pixel_size_um: float,
    z_step_um: float,
    overwrite_input: bool = False,
) -> np.ndarray:
    """Label the objects of one population in one z-stack.

    Parameters
    ----------
    image : ndarray, shape (Z, Y, X)
        The population's channel at one time point. NaN voxels are background.
    config
        Segmentation parameters (the 2D ones; see the module docstring for how the
        area thresholds become volumes).
    pixel_size_um, z_step_um
        Voxel size in µm (Y and X; Z).
    overwrite_input
        ``image`` (float32) may be overwritten (its background removed in place): one
        volume less in memory when the caller has no more use for it.

    Returns
    -------
    ndarray of int32, shape (Z, Y, X)
        0 is background; labels 1..N.
    """
    cfg = config or PopulationSegmentConfig()
    if image.ndim != 3:
        raise ValueError(f"`image` must be 3D (Z, Y, X), got shape {image.shape}")
    if pixel_size_um <= 0 or z_step_um <= 0:
        raise ValueError(
            f"`pixel_size_um` ({pixel_size_um}) and `z_step_um` ({z_step_um}) must be > 0"
        )
    img = np.asarray(image, dtype=np.float32)
    nan = np.isnan(img)
    if nan.all():
        return np.zeros(img.shape, np.int32)
    if nan.any():
        img = np.where(nan, np.nanmedian(img), img)
    px, dz = float(pixel_size_um), float(z_step_um)
    spacing = (dz, px, px)
    noise_sd = float(np.median([_noise_sd(s) for s in img]))
    free = None
    if cfg.background_radius_um > 0:
        if not overwrite_input and np.may_share_memory(img, image):
            img = img.copy()
        free = np.zeros(img.shape, bool)
        for k in range(img.shape[0]):
            bg, free[k] = estimate_background(
                img[k],
                cfg.background_radius_um / px,
                noise_sd=noise_sd,
                return_free=True,
                envelope=cfg.background_envelope,
            )
            img[k] -= bg
    sigma = np.array([cfg.smooth_sigma_um / s for s in spacing])
    smoothed = ndi.gaussian_filter(img, sigma) if sigma.max() > 0 else img
    bg_level = _background_level(smoothed, free & ~nan if free is not None else None)
    sd_s = noise_sd * smoothed_noise_factor(sigma)
    if cfg.threshold == "noise":
        thr = bg_level + cfg.noise_k * sd_s
    else:
        from .segment import threshold_value

        thr = threshold_value(smoothed, img, cfg, float(sigma[-1]), bg_level=bg_level)
    fg = (smoothed > thr) & ~nan
    labels, n = ndi.label(fg)
    if n == 0:
        return np.zeros(img.shape, np.int32)
    # noise peaks just above the threshold: a plateau below twice the threshold's height,
    # and small (a faint large object is a ruptured cell's ghost: the 2D pipeline finds it
    # where the cell was the frame before, carry_objects; in 3D, noise peaks of the
    # smoothed volume are far smaller than a cell)
    plateau = _label_percentile(smoothed, labels, n, 90.0)
    size = np.bincount(labels.ravel(), minlength=n + 1) * float(np.prod(spacing))
    faint = (plateau < bg_level + 2 * (thr - bg_level)) & (
        size < area_to_volume_um3(cfg.fragment_area_um2)
    )
    faint[0] = False
    if faint.any():
        fg &= ~faint[labels]
    labels, n = ndi.label(_fill_holes_3d(fg))
    f = cfg.edge_fraction_3d
    if f > 0 and n:
        # each object's outline where the signal falls to edge_fraction_3d of its own
        # plateau, on the less smoothed volume; a faint object (its plateau within 4 pixel
        # noise SDs of the background) keeps the detection's scale, where it stands out as
        # a whole (what the 2D segmentation's regrow_faint does)
        edge_sigma = np.array([cfg.edge_sigma_um / s for s in spacing])
        edge_image = ndi.gaussian_filter(img, edge_sigma) if edge_sigma.max() > 0.2 else img

        def outline(labels, n):
            coarse = _label_percentile(smoothed, labels, n, 90.0)
            fine = _label_percentile(edge_image, labels, n, 90.0)
            faint = coarse - bg_level < 4 * noise_sd
            plateau = np.where(faint, coarse, fine)
            edge = np.maximum(bg_level + f * (plateau - bg_level), thr)
            edge[0] = np.inf
            on = np.where(faint[labels], smoothed, edge_image)
            return _fill_holes_3d(on > edge[labels])

        core = outline(labels, n)
        # what the outlines left of the detection, away from the objects: a faint object
        # beside a bright one (the ghost of a ruptured cell) fell below the bright one's
        # edge; outlined at its own plateau, it is an object of its own
        # (beyond the blur's reach of the objects: 3 µm, so their halo is not taken)
        rest = fg & ~_within_um(core, 3.0, spacing)
        rest_labels, m = ndi.label(rest)
        if m:
            vols = np.bincount(rest_labels.ravel()) * float(np.prod(spacing))
            big = vols >= area_to_volume_um3(cfg.min_area_um2)
            big[0] = False
            if big.any():
                rest_labels = np.where(big[rest_labels], rest_labels, 0)
                core |= outline(rest_labels, m) & rest
        labels, n = ndi.label(core)
        del edge_image, outline, core, rest, rest_labels  # volumes no longer needed
    del fg
    if n and cfg.split_touching:
        bright = ndi.gaussian_filter(img, np.maximum(0.5, 1.0 / np.asarray(spacing)))
        seed_sd = sd_s if cfg.threshold == "noise" else None
        labels = _split_touching_3d(labels, bright, bg_level, cfg, spacing, seed_sd)
        del bright
        if cfg.seed_method in ("spacing", "prominence+size"):
            labels = _split_oversized_3d(labels, cfg, spacing)
    if cfg.regrow_faint and cfg.threshold == "noise" and labels.max():
        labels = _regrow_faint_3d(labels, img, smoothed, bg_level, noise_sd, cfg, spacing)
    if cfg.merge_fragments and labels.max():
        labels = _merge_fragments_3d(labels, cfg, spacing)
    voxel = px * px * dz
    vols = np.bincount(labels.ravel()).astype(float) * voxel
    bad = (vols < area_to_volume_um3(cfg.min_area_um2)) | (
        vols > area_to_volume_um3(cfg.max_area_um2)
    )
    bad[0] = True
    labels[bad[labels]] = 0
    return _relabel_sequential(labels)
