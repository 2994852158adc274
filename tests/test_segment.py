"""Segmentation against simulator truth and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from deathtrack.config import PopulationSegmentConfig, SegmentConfig
from deathtrack.evaluate import detection_scores, match_labels
from deathtrack.refine import segment_sequence
from deathtrack.segment import estimate_background, segment_frame
from deathtrack.simulate import preset, simulate

PX = 0.65


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2


def _scores(name, population, frames, seed=21, cfg=None, temporal=True, **kw):
    """Detection scores on ``frames``. ``temporal``: every frame up to the last is segmented
    in order, each mended with the frames before (:func:`segment_sequence`), as the
    pipeline does; else each of ``frames`` on its own (:func:`segment_frame`)."""
    sim = simulate(preset(name, seed=seed, n_frames=max(frames) + 1, **kw))
    cfg = cfg or getattr(SegmentConfig(), population)
    ch = 0 if population == "cells" else 1
    if temporal:
        images = (sim.render_frame(t)[ch] for t in range(max(frames) + 1))
        labels = dict(enumerate(segment_sequence(images, cfg, pixel_size_um=PX)))
    else:
        labels = {t: segment_frame(sim.render_frame(t)[ch], cfg, pixel_size_um=PX) for t in frames}
    return detection_scores([(sim.render_labels(t)[ch], labels[t]) for t in frames])[0]


@pytest.mark.parametrize("name", ["default", "divisions"])
def test_target_cells_f1(name):
    s = _scores(name, "cells", range(0, 40, 4))
    assert s["f1"] >= 0.95, s
    assert s["mean_iou"] >= 0.85, s


def test_noisy_frames_are_not_split_at_random():
    """Seeds must stand out of the frame's noise too (seed_noise_k), not only of the texture."""
    frames = range(0, 40, 4)
    tp = fp = tp_blind = fp_blind = 0
    for seed in (201, 202, 203):
        # the seeds of one frame on its own, with the frame-wide search for dim objects (whose
        # faint texture is what noise splits at random; by default faint cells are found by
        # the temporal mending, which would also merge a cell split at random in one frame)
        s = _scores(
            "low_snr",
            "cells",
            frames,
            seed=seed,
            temporal=False,
            cfg=PopulationSegmentConfig(dim_objects=True),
        )
        blind = _scores(
            "low_snr",
            "cells",
            frames,
            seed=seed,
            cfg=PopulationSegmentConfig(seed_noise_k=0, dim_objects=True),
            temporal=False,
        )
        assert _scores("low_snr", "cells", frames, seed=seed)["f1"] >= 0.95
        assert s["fp"] <= blind["fp"], (seed, s, blind)
        tp, fp = tp + s["tp"], fp + s["fp"]
        tp_blind, fp_blind = tp_blind + blind["tp"], fp_blind + blind["fp"]
    # without the noise term, more cells are split in two at random (pooled over the seeds:
    # since each object's landscape is its own, seed 202 alone shows a smaller gap)
    assert tp / (tp + fp) > tp_blind / (tp_blind + fp_blind) + 0.01, (tp, fp, tp_blind, fp_blind)


def test_blebs_join_their_cell_but_bodies_beside_a_live_neighbour_stay_apart():
    """A small bleb by a cell is that cell's; a cluster of bodies beside a live cell is not."""
    from deathtrack.segment import _merge_fragments

    shape = (120, 170)
    labels = np.zeros(shape, np.int32)
    labels[_disc(shape, 60, 40, 18)] = 1  # a live cell with one bleb just off its edge
    labels[_disc(shape, 60, 60, 2.5)] = 2
    labels[_disc(shape, 60, 110, 18)] = 3  # another live cell with a dead cell's four
    for k, (cy, cx) in enumerate(((60, 131), (60, 141), (50, 136), (70, 136)), start=4):
        labels[_disc(shape, cy, cx, 3.5)] = k  # apoptotic bodies beside it
    areas = np.bincount(labels.ravel())
    areas[0] = 0

    merged = _merge_fragments(labels, areas, PopulationSegmentConfig(), PX)
    assert merged[60, 60] == 1  # the bleb joins its cell
    bodies = np.unique(merged[labels >= 4])
    assert bodies.size == 1 and bodies[0] != 3  # the bodies: one object, not the neighbour's
    # without the size limit, the bodies would be taken for blebs of the neighbour
    old = _merge_fragments(labels, areas, PopulationSegmentConfig(bleb_max_fraction=100.0), PX)
    assert np.unique(old[labels >= 4]).tolist() == [3]


def test_immune_cells_f1():
    s = _scores("default", "immune", range(0, 40, 4))
    assert s["f1"] >= 0.9, s


def test_dying_cells_are_kept():
    """Shrunken apoptotic cells, swollen necroptotic cells and their ghosts stay detected."""
    sim = simulate(preset("default", seed=21, n_frames=40, p_apoptotic=0.4, p_necroptotic=0.4))
    ev = sim.truth()["events"]
    cfg = SegmentConfig().cells
    images = (sim.render_frame(t)[0] for t in range(sim.config.n_frames))
    labels = list(segment_sequence(images, cfg, pixel_size_um=PX))
    missed = []
    for e in ev.itertuples():
        for t in (e.frame - 1, e.frame, e.frame + 2, e.frame + 6):
            if t >= sim.config.n_frames:
                continue
            truth = sim.render_labels(t)[0]
            m = match_labels(truth, labels[t], iou_threshold=0.3)
            if e.cell_id not in set(m.true_label):
                missed.append((e.cell_id, e.mode, t - e.frame))
    n_checked = 4 * len(ev)
    assert len(ev) >= 6
    assert len(missed) <= 0.05 * n_checked, missed


def test_touching_discs_are_split():
    img = np.full((80, 120), 100.0)
    a, b = _disc(img.shape, 40, 40, 15), _disc(img.shape, 40, 68, 15)
    yy, xx = np.mgrid[:80, :120]
    for m, cx in ((a, 40), (b, 68)):
        dome = 1 - ((yy - 40) ** 2 + (xx - cx) ** 2) / 15**2
        img += m * 400 * (0.5 + 0.5 * np.clip(dome, 0, 1))
    rng = np.random.default_rng(0)
    img = rng.poisson(img).astype(float)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert labels.max() == 2
    assert (
        len(np.unique(labels[a & ~b])) >= 1
        and np.unique(labels[20:60, 30:50])[-1] != np.unique(labels[20:60, 60:80])[-1]
    )


def _capsule(shape, cy, x0, x1, r):
    """Pixels within ``r`` of the segment (cy, x0)-(cy, x1): two cells fused without a neck."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(yy - cy, xx - np.clip(xx, x0, x1)) < r


def _cells_and_a_capsule(level, seam=0.0):
    """Six single cells (discs of 12 px) and a capsule of two cells' area at ``level``,
    ``seam`` dimmer (a fraction) along a line across its middle."""
    from scipy import ndimage as ndi

    shape = (120, 200)
    single = np.zeros(shape, bool)
    for cy, cx in ((20, 20), (20, 60), (20, 100), (20, 140), (20, 180), (95, 180)):
        single |= _disc(shape, cy, cx, 12)
    pair = _capsule(shape, 80, 50, 68, 12)
    xx = np.mgrid[: shape[0], : shape[1]][1]
    line = 1 - seam * np.exp(-((xx - 59.0) ** 2) / (2 * 2.5**2))
    img = 100 + ndi.gaussian_filter(500.0 * single + level * pair * line, 1.0)
    return np.random.default_rng(0).poisson(img).astype(float), pair


def test_cells_merged_without_a_neck_are_split_by_their_size():
    """Two cells pressed into one convex object (no neck, and a seam too faint for the
    watershed's seeds, as in textured cells) among single cells: twice a cell's area,
    elongated, with a dimmer line across its middle, so two cells, cut across there."""
    from scipy import ndimage as ndi

    from deathtrack.segment import split_oversized

    shape = (120, 200)
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(((20, 20), (20, 60), (20, 100), (20, 140), (20, 180), (95, 180))):
        labels[_disc(shape, cy, cx, 12)] = i + 1
    pair = _capsule(shape, 80, 50, 68, 12)
    labels[pair] = 7
    xx = np.mgrid[: shape[0], : shape[1]][1]
    # no seam, or one barely dimmer than the cells (a large nucleus): whole; a seam: two
    for seam, pieces in ((0.0, 1), (0.1, 1), (0.3, 2)):
        line = 1 - seam * np.exp(-((xx - 59.0) ** 2) / (2 * 1.5**2))
        image = ndi.gaussian_filter(500.0 * (labels > 0) * line, 1.0)
        out = split_oversized(labels, 1.6, image=image)
        assert len(np.unique(out[pair])) == pieces, seam
        assert out.max() == 6 + pieces
    areas = [int((out == i).sum()) for i in np.unique(out[pair])]
    assert min(areas) > 0.4 * pair.sum(), areas
    # cut across: each half holds one end
    assert out[80, 42] != out[80, 76]
    # a whole frame with such a pair: segment_frame splits it (by the watershed or the size)
    img, pair = _cells_and_a_capsule(500.0, seam=0.3)
    found = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert len(np.unique(found[pair & (found > 0)])) == 2


def test_a_large_cell_without_a_seam_is_not_split_by_its_size():
    """The same object without the dimmer line between two cells: one large cell (a large
    nucleus is lobed, or elongated, and has no seam through it), kept whole."""
    img, pair = _cells_and_a_capsule(500.0)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert len(np.unique(labels[pair & (labels > 0)])) == 1
    assert (labels[pair] > 0).mean() > 0.9


def test_a_large_dim_cell_is_not_split_by_its_size():
    """A swollen dying cell whose reporter diluted is as large as two cells but dim: one."""
    img, pair = _cells_and_a_capsule(150.0)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert len(np.unique(labels[pair & (labels > 0)])) == 1


def test_split_oversized_keeps_round_objects_and_needs_enough_objects():
    from deathtrack.segment import split_oversized

    shape = (120, 200)
    labels = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(((20, 20), (20, 60), (20, 100), (20, 140), (20, 180)), 1):
        labels[_disc(shape, cy, cx, 10)] = i
    labels[_disc(shape, 80, 60, 17)] = 6  # round, 2.9 x the others' area: a swollen cell
    assert np.array_equal(split_oversized(labels, 1.6), labels)
    labels[_capsule(shape, 80, 120, 150, 10)] = 7
    out = split_oversized(labels, 1.6)
    assert len(np.unique(out[labels == 7])) == 3  # 3.0 x a cell
    assert np.array_equal(out[labels == 6] > 0, np.ones((labels == 6).sum(), bool))
    assert len(np.unique(out[labels == 6])) == 1
    # fewer than 5 objects: no typical size to go by
    few = np.where(labels >= 5, labels, 0)
    assert np.array_equal(split_oversized(few, 1.6), few)


def _frame_scores(img, truth, **kw):
    """Detection scores of one frame segmented with the target-cell defaults changed by
    ``kw`` (PopulationSegmentConfig fields)."""
    labels = segment_frame(img, PopulationSegmentConfig(**kw), pixel_size_um=PX)
    return detection_scores([(truth, labels)])[0]


def test_confluent_cells_keep_their_dim_parts():
    """A confluent field (89 % covered) of cells with a dimmer nucleus and thinner edges:
    the cut that keeps what is brighter than its surroundings (confluent_seam_um 0) also
    bites into each cell's dim parts; the bodies grow back (confluent_grow_um) and are
    drawn whole."""
    from scipy import ndimage as ndi

    shape, radius = (176, 176), 12.5
    rng = np.random.default_rng(3)
    cy, cx = np.mgrid[14:170:22, 14:170:22].reshape(2, -1).astype(float)
    cy += rng.uniform(-2, 2, cy.shape)
    cx += rng.uniform(-2, 2, cx.shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy[None] - cy[:, None, None], xx[None] - cx[:, None, None])
    rel = d.min(axis=0) / radius
    truth = np.where(rel < 1, np.argmin(d, axis=0) + 1, 0)
    level = np.where(rel < 0.4, 0.8, 1.0) * (0.6 + 0.4 * np.clip((1 - rel) / 0.35, 0, 1))
    img = rng.poisson(100 + ndi.gaussian_filter(500 * level * (truth > 0), 1.0)).astype(float)
    assert (truth > 0).mean() > PopulationSegmentConfig().confluent_fraction
    bitten = _frame_scores(img, truth, confluent_grow_um=0, confluent_seam_um=0)
    whole = _frame_scores(img, truth, confluent_seam_um=0)
    assert whole["mean_iou"] >= 0.82 and whole["f1"] >= 0.75, whole
    assert whole["mean_iou"] > bitten["mean_iou"] + 0.05, (whole, bitten)


def _confluent_cells_with_dim_patches(seed, shape=(192, 192), spacing=24, radius=14.0):
    """A confluent field (~92 % covered) of cells packed against each other, thin dark seams
    where two meet, and in each cell a dim patch (0.7 of its brightness) off its centre that
    reaches its edge, as the textured cells of a real confluent culture have."""
    rng = np.random.default_rng(seed)
    cy, cx = np.mgrid[12 : shape[0] : spacing, 12 : shape[1] : spacing].reshape(2, -1)
    cy = cy + rng.uniform(-3, 3, cy.shape)
    cx = cx + rng.uniform(-3, 3, cx.shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy[None] - cy[:, None, None], xx[None] - cx[:, None, None])
    nearest, second = np.sort(d, axis=0)[:2]
    owner = np.argmin(d, axis=0)
    truth = np.where(nearest < radius, owner + 1, 0)
    angle = rng.uniform(0, 2 * np.pi, cy.size)
    py = cy + 0.45 * radius * np.sin(angle)
    px = cx + 0.45 * radius * np.cos(angle)
    patch = np.hypot(yy - py[owner], xx - px[owner]) < 0.45 * radius
    level = np.where(second - nearest < 1.5, 0.3, np.where(patch, 0.7, 1.0))
    img = rng.poisson(100 + ndi.gaussian_filter(500 * level * (truth > 0), 1.0)).astype(float)
    return img, truth


@pytest.mark.parametrize("seed", [1, 3])
def test_confluent_cells_are_cut_at_their_seams_not_their_dim_patches(seed):
    """Confluent cells with a dim patch that opens onto their edge: the confluent cut follows
    the thin dark seams between cells and keeps each cell whole. Keeping only what is
    brighter than its surroundings (confluent_seam_um 0) bites the patches out, and no
    confluent cut at all (confluent_fraction 1) leaves cells merged."""
    img, truth = _confluent_cells_with_dim_patches(seed)
    assert (truth > 0).mean() > PopulationSegmentConfig().confluent_fraction
    seams = _frame_scores(img, truth)
    window = _frame_scores(img, truth, confluent_seam_um=0)
    none = _frame_scores(img, truth, confluent_fraction=1.0)
    assert seams["f1"] >= 0.97 and seams["mean_iou"] >= 0.92, seams
    assert window["mean_iou"] < seams["mean_iou"] - 0.05, (window, seams)
    assert none["f1"] < seams["f1"] - 0.1, (none, seams)


def test_background_level_of_an_all_but_covered_field_is_the_subtracted_estimate():
    """Fewer than 1 % of pixels free of objects: the level is 0 (the subtracted background),
    not the most common intensity, which is the cells'."""
    from deathtrack.segment import _background_level

    rng = np.random.default_rng(0)
    img = (50 + rng.normal(0, 2, (100, 100))).astype(np.float32)  # cells 50 above background
    free = np.zeros(img.shape, bool)
    free[:5, :10] = True  # 0.5 % of the frame
    assert _background_level(img, free) == 0.0
    free[:20, :20] = True  # 4 %: the peak among them
    img[free] -= 50
    assert abs(_background_level(img, free)) < 2
    assert abs(_background_level(img) - 50) < 2  # without `free`: the peak of all pixels


def test_dark_lines_are_the_hessians_larger_eigenvalue():
    """The seams' line strength is scikit-image's larger Hessian eigenvalue (away from the
    border, where the two pad differently), kept where positive and scaled by sigma²; a
    dark line scores, a bright one does not."""
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    from deathtrack.segment import _dark_lines

    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.normal(0, 1, (96, 96)), 2).astype(np.float32)
    s = 1.5
    ref = hessian_matrix_eigvals(
        hessian_matrix(img, sigma=s, order="rc", use_gaussian_derivatives=True)
    )[0]
    got = _dark_lines(img, s)
    inner = (slice(10, -10), slice(10, -10))
    np.testing.assert_allclose(got[inner], np.maximum(ref, 0)[inner] * s * s, atol=1e-4)
    line = np.full((40, 40), 10.0, np.float32)
    line[:, 19:21] = 5.0  # a dark seam
    assert _dark_lines(line, 1.0)[20, 20] > 1 and _dark_lines(-line, 1.0)[20, 20] < 1e-2


@pytest.mark.parametrize("seed", [19, 21])
def test_cells_packed_edge_to_edge_are_cut_at_their_faint_seams(seed):
    """A frame of the simulator's dense family packed edge to edge (>= 82 % covered;
    development seeds, 0.78-0.79 µm per pixel): with packed_fraction 0.84 the seams, found
    as lines, cut the sheet into its cells; the grey closing of looser confluent fields
    (the default, packed_fraction 1) leaves many merged. Either way the sheet is found:
    the background level is not taken from the cells (seed 21's frame has 0.5 % of its
    pixels free; with the cells' level as the background it kept 8 objects of 124 cells)."""
    from deathtrack.simulate import random_config

    cfg = random_config("dense", seed, max_frames=2, max_side_px=200)
    sim = simulate(cfg)
    img, truth = sim.render_frame(0)[0].astype(float), sim.render_labels(0)[0]
    assert (truth > 0).mean() >= 0.82

    def scores(**kw):
        labels = segment_frame(img, PopulationSegmentConfig(**kw), pixel_size_um=cfg.pixel_size_um)
        return detection_scores([(truth, labels)])[0]

    lines, closing = scores(packed_fraction=0.84), scores()
    assert lines["f1"] >= 0.9, lines
    assert closing["f1"] < lines["f1"] - 0.2, (closing, lines)
    assert closing["n_pred"] >= 0.6 * closing["n_true"], closing


def test_faint_ghost_beside_bright_cell_is_its_own_object():
    """A swollen cell that ruptures beside a bright neighbour: its faint ghost is found, with
    its own outline, where the cell just was."""
    from scipy import ndimage as ndi

    bright = _disc((90, 140), 45, 40, 16)
    ghost = _disc((90, 140), 45, 75, 20) & ~bright
    rng = np.random.default_rng(1)
    frames = []
    for level in (450, 450, 450, 60):  # a cell seen in three frames, then its ghost
        img = np.full((90, 140), 100.0) + bright * 500 + ghost * level
        frames.append(rng.poisson(ndi.gaussian_filter(img, 1.2)).astype(float))
    labels = list(segment_sequence(frames, PopulationSegmentConfig(), pixel_size_um=PX))
    truth = bright.astype(int) + 2 * ghost.astype(int)
    for lab in labels:
        m = match_labels(truth, lab)
        assert set(m.true_label) == {1, 2}, m
        assert m["iou"].min() > 0.8, m


def test_fragments_stay_one_object():
    img = np.full((80, 80), 100.0)
    truth = np.zeros((80, 80), int)
    for cy, cx in ((36, 36), (44, 40), (38, 46), (46, 32)):
        truth[_disc(img.shape, cy, cx, 3.5)] = 1
    img += (truth > 0) * 600
    img = np.random.default_rng(2).poisson(img).astype(float)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert len(np.unique(labels[truth > 0])) == 1 and labels.max() == 1


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (64, 64)])
def test_empty_and_flat_frames(shape):
    rng = np.random.default_rng(3)
    img = rng.poisson(100, shape).astype(float)
    assert segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX).max() == 0


def test_nan_pixels_are_background():
    img = np.full((64, 64), 100.0)
    img[_disc(img.shape, 32, 32, 10)] += 500
    img = np.random.default_rng(4).poisson(img).astype(float)
    img[:, :8] = np.nan
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert labels.max() == 1 and (labels[:, :8] == 0).all()
    assert segment_frame(np.full((8, 8), np.nan), pixel_size_um=PX).max() == 0


def test_cell_at_border():
    img = np.full((64, 64), 100.0)
    img[_disc(img.shape, 32, 2, 12)] += 500
    img = np.random.default_rng(5).poisson(img).astype(float)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert labels.max() == 1 and labels[32, 0] == 1


def test_size_filters_in_um2():
    img = np.full((64, 64), 100.0)
    img[_disc(img.shape, 32, 32, 10)] += 500  # ~ 314 px = 133 µm²
    img = np.random.default_rng(6).poisson(img).astype(float)
    assert (
        segment_frame(img, PopulationSegmentConfig(max_area_um2=100), pixel_size_um=PX).max() == 0
    )
    assert (
        segment_frame(
            img, PopulationSegmentConfig(min_area_um2=200, max_area_um2=900), pixel_size_um=PX
        ).max()
        == 0
    )
    assert segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX).max() == 1


def test_background_follows_a_gradient_to_the_border():
    yy, xx = np.mgrid[:128, :160]
    bg = 100 + 0.5 * xx + 0.2 * yy
    img = bg + 400 * _disc(bg.shape, 60, 80, 12)
    est = estimate_background(img, 25 / PX)
    assert np.abs(est - bg)[~_disc(bg.shape, 60, 80, 20)].max() < 5


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"`image` must be 2D \(Y, X\), got shape \(2, 8, 8\)"):
        segment_frame(np.zeros((2, 8, 8)), pixel_size_um=PX)
    with pytest.raises(ValueError, match="`pixel_size_um` must be > 0, got 0"):
        segment_frame(np.zeros((8, 8)), pixel_size_um=0)


def test_scikit_image_submodules_load_at_import_not_in_worker_threads():
    """Frames are segmented by several threads; scikit-image's lazily loaded submodules
    fail ('partially initialized module') if two threads load them at once, so importing
    deathtrack's segment and measure modules must load them."""
    import subprocess
    import sys

    code = (
        "import sys, deathtrack.segment, deathtrack.measure\n"
        "mods = ['skimage.morphology', 'skimage.segmentation', 'skimage.measure',"
        " 'skimage.filters', 'skimage.feature']\n"
        "missing = [m for m in mods if m not in sys.modules]\n"
        "assert not missing, missing\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


# --- the fast helpers are the scipy / scikit-image operations they replace -------------------


@pytest.mark.parametrize("seed", range(5))
def test_label_helpers_equal_scipy(seed):
    from scipy import ndimage as ndi

    from deathtrack._kernels import fill_holes, label_max
    from deathtrack.segment import _label_percentile

    rng = np.random.default_rng(seed)
    mask = ndi.gaussian_filter(rng.random((80, 90)), 2) > 0.5
    mask[30:40, 30:40] = True
    mask[33:36, 33:36] = False  # a hole
    assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    labels, n = ndi.label(mask)
    values = rng.integers(0, 6, mask.shape).astype(np.float32)  # many ties
    ids = np.arange(1, n + 1)
    np.testing.assert_array_equal(
        label_max(values, labels, n)[1:], ndi.maximum(values, labels, ids)
    )
    for q in (0, 50, 90, 95, 100):
        ref = [
            np.sort(values[labels == k])[int(np.floor((np.sum(labels == k) - 1) * q / 100))]
            for k in ids
        ]
        np.testing.assert_array_equal(_label_percentile(values, labels, n, q)[1:], ref)


def test_fill_holes_of_empty_and_full_masks():
    from deathtrack._kernels import fill_holes

    assert not fill_holes(np.zeros((5, 5), bool)).any()
    assert fill_holes(np.ones((5, 5), bool)).all()


def test_upsample_equals_scipy_zoom():
    from scipy import ndimage as ndi

    from deathtrack.segment import _upsample

    small = np.random.default_rng(0).random((9, 13)).astype(np.float32)
    for f, ny, nx in ((4, 36, 52), (5, 43, 61), (1, 9, 13)):
        ref = ndi.zoom(small, (f, f), order=1, mode="nearest", grid_mode=True)[:ny, :nx]
        np.testing.assert_allclose(_upsample(small, f, ny, nx), ref, rtol=1e-5, atol=1e-6)


def test_noise_sd_of_white_noise_on_a_gradient():
    from deathtrack.segment import _noise_sd

    rng = np.random.default_rng(1)
    ramp = np.linspace(0, 300, 1024, dtype=np.float32)[None, :]
    for sd in (1.0, 7.0):
        for shape in ((1024, 1024), (200, 300)):  # subsampled and full paths
            img = rng.normal(100, sd, shape).astype(np.float32) + ramp[:, : shape[1]]
            assert _noise_sd(img) == pytest.approx(sd, rel=0.02)


def _two_channels(rng, n=128, *, crosstalk=0.0, gradient=True):
    """Two channels of one frame, built: ``source`` shows discs of its own population,
    ``target`` discs of another and ``crosstalk`` x the source's signal. With
    ``gradient``, both share an illumination that falls from left to right to a fifth
    and vignetting, and a background 5x brighter on the left (the objects of the left
    side sit on a bright background in both channels). Returns the channels and each
    population's true masks."""
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    if gradient:
        illum = (1.0 - 0.8 * xx / (n - 1)) * (
            1 - 0.3 * ((yy - n / 2) ** 2 + (xx - n / 2) ** 2) / n**2
        )
        bg = 100 + 400 * illum
    else:
        illum, bg = np.ones((n, n)), np.full((n, n), 200.0)
    src_obj = np.zeros((n, n), bool)
    tgt_obj = np.zeros((n, n), bool)
    for _ in range(8):
        src_obj |= _disc((n, n), *rng.integers(8, n - 8, 2), 6)
        tgt_obj |= _disc((n, n), *rng.integers(8, n - 8, 2), 5.5)
    src_signal = ndi.gaussian_filter(1000.0 * src_obj, 1.0) * illum
    tgt_signal = ndi.gaussian_filter(800.0 * tgt_obj, 1.0) * illum
    source = bg + src_signal + rng.normal(0, 10, (n, n))
    target = 0.8 * bg + tgt_signal + crosstalk * src_signal + rng.normal(0, 10, (n, n))
    return target, source, src_obj, tgt_obj


@pytest.mark.parametrize("seed", range(3))
def test_crosstalk_ratio_is_0_for_a_gradient_both_channels_share(seed):
    # no crosstalk: the objects on the bright side sit on a brighter background in both
    # channels, which a frame-wide background read as 0.3-0.7 crosstalk
    from deathtrack.segment import crosstalk_ratio

    target, source, src_obj, tgt_obj = _two_channels(np.random.default_rng(seed))
    assert crosstalk_ratio(target, source, src_obj, tgt_obj) == 0.0
    assert crosstalk_ratio(source, target, tgt_obj, src_obj) == 0.0


@pytest.mark.parametrize("gradient", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_crosstalk_ratio_finds_known_crosstalk(seed, gradient):
    from deathtrack.segment import crosstalk_ratio

    target, source, src_obj, tgt_obj = _two_channels(
        np.random.default_rng(seed), crosstalk=0.1, gradient=gradient
    )
    assert crosstalk_ratio(target, source, src_obj, tgt_obj) == pytest.approx(0.1, abs=0.03)
    # and none the other way
    assert crosstalk_ratio(source, target, tgt_obj, src_obj) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.float64])
def test_crosstalk_ratio_dtypes_and_nan(dtype):
    from deathtrack.segment import crosstalk_ratio

    target, source, src_obj, tgt_obj = _two_channels(np.random.default_rng(5), crosstalk=0.1)
    source, target = source.clip(0).astype(dtype), target.clip(0).astype(dtype)
    if dtype is np.float32:
        target[5, 5] = np.nan  # ignored
    assert crosstalk_ratio(target, source, src_obj, tgt_obj) == pytest.approx(0.1, abs=0.03)
    # nothing to compare: no source objects, or no background left
    none = np.zeros(src_obj.shape, bool)
    assert crosstalk_ratio(target, source, none, tgt_obj) == 0.0
    assert crosstalk_ratio(target, source, ~none, tgt_obj) == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_immune_cells_on_bright_textured_background(seed):
    # a background bright and textured on one side (uneven light: 3x brighter on the left;
    # background texture of 15 % at a 30 µm scale, as the simulator's uneven_light family
    # draws at its finest) with 6 immune-sized cells (5 µm radius) 10 noise SDs above it:
    # those 6 objects, not pieces of the bright patches
    rng = np.random.default_rng(seed)
    n = 192
    xx = np.mgrid[:n, :n][1].astype(np.float64)
    texture = ndi.gaussian_filter(rng.normal(size=(n, n)), 30 / PX, mode="wrap")
    texture /= texture.std()
    bg = (150 + 300 * (1 - xx / (n - 1))) * (1 + 0.15 * texture)
    cells = np.zeros((n, n), np.int32)
    centres = [(40, 30), (40, 100), (40, 160), (140, 30), (140, 100), (140, 160)]
    for k, (cy, cx) in enumerate(centres, start=1):
        cy, cx = cy + rng.integers(-8, 9), cx + rng.integers(-8, 9)
        cells[_disc((n, n), cy, cx, 5 / PX)] = k
    sd = 20.0
    image = bg + ndi.gaussian_filter(10 * sd * (cells > 0), 1.0) + rng.normal(0, sd, (n, n))
    labels = segment_frame(image, SegmentConfig().immune, pixel_size_um=PX)
    matches = match_labels(cells, labels, iou_threshold=0.5)
    assert len(matches) == 6  # the cells are found
    assert labels.max() <= 7  # and hardly anything else (base code: 13-120 objects)


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 64), (100, 101), (33, 200)])
@pytest.mark.parametrize("f", [1, 3, 7, 40])
def test_block_count_equals_block_sum_of_the_mask(shape, f):
    from deathtrack.segment import _block_count, _block_sum

    mask = np.random.default_rng(f).random(shape) > 0.3
    got = _block_count(mask, f, shape)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _block_sum(mask.astype(np.float32), f))
    ones = _block_count(None, f, shape)
    np.testing.assert_array_equal(ones, _block_sum(np.ones(shape, np.float32), f))


def test_background_enclosed_by_a_ring_of_cells_is_no_cell():
    """Eight touching cells in a ring around a gap of background larger than a cell: the
    gap belongs to none of them (filled, it made them a fifth larger and seeded a "cell"),
    while the dim nucleus inside a cell, above the noise, stays the cell's."""
    from scipy import ndimage as ndi

    shape, ring = (160, 160), 31.5
    cells = np.zeros(shape, np.int32)
    for i, a in enumerate(np.arange(8) * np.pi / 4, 1):
        cells[_disc(shape, 80 + ring * np.sin(a), 80 + ring * np.cos(a), 12.5) & (cells == 0)] = i
    one, nucleus = _disc(shape, 25, 25, 14), _disc(shape, 25, 25, 6)
    level = 500.0 * (cells > 0) + np.where(nucleus, 0.25, 1.0) * 500.0 * one
    img = np.random.default_rng(1).poisson(100 + ndi.gaussian_filter(level, 1.0)).astype(float)
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=PX)
    assert not (labels[_disc(shape, 80, 80, 15)] > 0).any()
    assert labels.max() == 9
    ids = np.unique(labels[cells > 0])
    assert len(ids[ids > 0]) == 8
    for i in range(1, 9):
        found = np.bincount(labels[cells == i]).argmax()
        assert 0.9 < (labels == found).sum() / (cells == i).sum() < 1.15
    assert len(np.unique(labels[one])) == 1 and (labels[nucleus] > 0).all()


@pytest.mark.parametrize(("name", "population"), [("dense", "cells"), ("default", "immune")])
def test_the_one_call_test_of_single_cells_gives_the_object_by_object_labels(name, population):
    """The touching-cell split decides which objects are one cell for all of a frame's
    objects in one compiled call; the labels are those of the object-by-object path, on
    crowded frames (many objects split, many not), with NaN pixels and cells cut by the
    frame's border."""
    import deathtrack.segment as seg

    sim = simulate(preset(name, seed=7, n_frames=12))
    cfg = getattr(SegmentConfig(), population)
    ch = 0 if population == "cells" else 1
    split = 0
    yy, xx = np.mgrid[:256, :256]
    for t in (0, 11):
        img = sim.render_frame(t)[ch].astype(np.float32)
        for cy, cx in ((40, 200), (40, 213), (200, 40), (212, 48)):  # touching pairs
            dome = 1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / 7.0**2
            img += np.float32(3 * img.std()) * np.clip(dome, 0, 1).astype(np.float32)
        img[5:9, 20:60] = np.nan
        for image in (img, img[7:, 13:]):  # the second: objects cut by the border
            fast = segment_frame(image, cfg, pixel_size_um=PX)
            seg._FAST_SINGLE_TOPS = False
            try:
                reference = segment_frame(image, cfg, pixel_size_um=PX)
            finally:
                seg._FAST_SINGLE_TOPS = True
            np.testing.assert_array_equal(fast, reference)
            unsplit = segment_frame(
                image, cfg.model_copy(update={"split_touching": False}), pixel_size_um=PX
            )
            split += int(fast.max()) - int(unsplit.max())
    assert split > 0  # objects were split: both paths were taken


def test_dim_cells_at_coarse_pixels_are_found_whole():
    # pixels coarser than smooth_sigma_um (1.25 µm against 0.8): the detection is smoothed
    # over at least a pixel, so dim cells (2.5 pixel-noise SDs, radius 7 px = 8.75 µm) are
    # found whole; smoothed over 0.64 px, each pixel had to clear the threshold alone and
    # they fell into pieces
    rng = np.random.default_rng(3)
    shape = (96, 96)
    truth = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate([(24, 24), (24, 70), (70, 24), (70, 70)], 1):
        truth[_disc(shape, cy, cx, 7)] = i
    img = 100 + 2.5 * 10 * (truth > 0) + rng.normal(0, 10, shape)
    img = ndi.gaussian_filter(img, 0.5)  # a little optical blur
    labels = segment_frame(img, PopulationSegmentConfig(), pixel_size_um=1.25)
    m = match_labels(truth, labels)
    assert len(m) == 4, f"matched {len(m)} of 4 dim cells"
    assert labels.max() == 4
