"""Temporal mending of segmentation (deathtrack.refine) on synthetic frames with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from deathtrack.config import PopulationSegmentConfig
from deathtrack.evaluate import match_labels
from deathtrack.refine import (
    CARRY_MIN_FRAMES,
    Mender,
    estimate_shift,
    mends_later,
    object_age,
    refine_frame,
    segment_sequence,
)

PX = 0.65
SHAPE = (96, 128)


def _disc(cy, cx, r, shape=SHAPE):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r**2


def _image(objects, rng, shape=SHAPE, bg=100.0):
    """Camera-like frame: objects (mask, level) on a background, blurred, Poisson noise."""
    img = np.full(shape, bg)
    for mask, level in objects:
        img = img + mask * level
    return rng.poisson(ndi.gaussian_filter(img, 1.2)).astype(np.float32)


def test_a_ruptured_cell_is_followed_as_its_faint_ghost():
    rng = np.random.default_rng(0)
    cell, other = _disc(48, 40, 15), _disc(48, 95, 12)
    frames = [_image([(cell, 450), (other, 500)], rng) for _ in range(CARRY_MIN_FRAMES)]
    frames += [_image([(cell, 45), (other, 500)], rng) for _ in range(4)]  # 10 % ghost
    truth = cell.astype(int) + 2 * other.astype(int)
    for t, labels in enumerate(
        segment_sequence(frames, PopulationSegmentConfig(), pixel_size_um=PX)
    ):
        m = match_labels(truth, labels)
        assert set(m.true_label) == {1, 2}, (t, m)
        assert m["iou"].min() > 0.75, (t, m)


def test_a_blob_seen_once_is_not_carried():
    """Only a cell seen in a few frames in a row is looked for when it fades: noise or
    texture that shows in one frame does not start a track of its own."""
    rng = np.random.default_rng(1)
    blob = _disc(40, 60, 8)
    frames = [_image([(blob, 300)], rng)] + [_image([], rng) for _ in range(3)]
    labels = list(segment_sequence(frames, PopulationSegmentConfig(), pixel_size_um=PX))
    assert labels[0].max() == 1
    assert all(lab.max() == 0 for lab in labels[1:])


def test_empty_background_after_a_cell_leaves_nothing_behind():
    """A cell that is gone (no signal left where it was) is not carried."""
    rng = np.random.default_rng(2)
    cell = _disc(48, 60, 14)
    frames = [_image([(cell, 450)], rng) for _ in range(4)] + [_image([], rng) for _ in range(3)]
    labels = list(segment_sequence(frames, PopulationSegmentConfig(), pixel_size_um=PX))
    assert all(lab.max() == 1 for lab in labels[:4])
    assert all(lab.max() == 0 for lab in labels[4:])


def test_neighbours_merged_in_one_frame_are_split_again():
    """Two touching cells seen apart, then as one object: split along the seam again."""
    a, b = _disc(48, 45, 16), _disc(48, 76, 16)
    prev = a.astype(np.int32) + 2 * (b & ~a)
    cur = (a | b).astype(np.int32)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    img = 100 + 500 * (a | b) * (
        0.5
        + 0.5
        * np.clip(1 - np.minimum(np.hypot(yy - 48, xx - 45), np.hypot(yy - 48, xx - 76)) / 16, 0, 1)
    )
    out, carried = refine_frame(
        prev, cur, lambda: img.astype(np.float32), PopulationSegmentConfig(), pixel_size_um=PX
    )
    assert not carried
    m = match_labels(prev, out)
    assert set(m.true_label) == {1, 2} and m["iou"].min() > 0.8, m


def test_a_round_object_is_not_split_without_a_seam():
    """A convex object with no dimmer line through it stays one, even if two objects were
    there before (e.g. a wrong split in the previous frame)."""
    whole = _disc(48, 60, 20)
    prev = np.zeros(SHAPE, np.int32)
    prev[whole & (np.mgrid[: SHAPE[0], : SHAPE[1]][1] < 60)] = 1
    prev[whole & (np.mgrid[: SHAPE[0], : SHAPE[1]][1] >= 60)] = 2
    img = (100 + 500 * whole).astype(np.float32)
    out, _ = refine_frame(
        prev, whole.astype(np.int32), lambda: img, PopulationSegmentConfig(), pixel_size_um=PX
    )
    assert np.array_equal(out, whole.astype(np.int32))


def test_apoptotic_bodies_stay_one_cell():
    """A shrunken cell that falls into bodies (each much smaller than it): one object."""
    cell = _disc(48, 60, 10)
    bodies = np.zeros(SHAPE, np.int32)
    for i, (cy, cx) in enumerate(((42, 55), (44, 67), (55, 58)), start=1):
        bodies[_disc(cy, cx, 3.5)] = i
    img = (100 + 600 * (bodies > 0)).astype(np.float32)
    out, _ = refine_frame(
        cell.astype(np.int32), bodies, lambda: img, PopulationSegmentConfig(), pixel_size_um=PX
    )
    assert len(np.unique(out[bodies > 0])) == 1
    assert np.array_equal(out > 0, bodies > 0)


def test_two_round_daughters_are_left_for_tracking():
    """A cell in two similar round halves may have divided: not merged."""
    parent = _disc(48, 60, 14)
    daughters = _disc(48, 50, 9.3).astype(np.int32) + 2 * _disc(48, 70, 9.3)
    img = (100 + 600 * (daughters > 0)).astype(np.float32)
    out, _ = refine_frame(
        parent.astype(np.int32), daughters, lambda: img, PopulationSegmentConfig(), pixel_size_um=PX
    )
    assert np.array_equal(out, daughters)


def test_drift_is_estimated_from_the_objects():
    rng = np.random.default_rng(3)
    prev = np.zeros((200, 200), np.int32)
    centres = rng.uniform(20, 180, (12, 2))
    for i, (cy, cx) in enumerate(centres, start=1):
        prev[_disc(cy, cx, 12, (200, 200))] = i
    cur = np.roll(prev, (7, -4), axis=(0, 1))
    assert estimate_shift(prev, cur) == (7, -4)
    assert estimate_shift(prev, np.zeros_like(prev)) == (0, 0)


def test_object_age_counts_frames_in_a_row():
    a = _disc(40, 40, 10).astype(np.int32)
    age = object_age(None, None, a)
    assert age[1] == 1
    age = object_age(a, age, a)
    assert age[1] == 2
    b = _disc(40, 100, 10).astype(np.int32)  # elsewhere: a new object
    assert object_age(a, age, b)[1] == 1


@pytest.mark.parametrize("shape", [(1, 1), (8, 8), (64, 64)])
def test_empty_frames_and_no_previous(shape):
    cfg = PopulationSegmentConfig()
    empty = np.zeros(shape, np.int32)
    out, carried = refine_frame(
        None, empty, lambda: np.zeros(shape, np.float32), cfg, pixel_size_um=PX
    )
    assert out is empty and carried == {}
    out, carried = refine_frame(
        empty, empty, lambda: np.zeros(shape, np.float32), cfg, pixel_size_um=PX
    )
    assert out is empty and carried == {}


def test_image_read_only_when_something_changes():
    a = _disc(40, 40, 10).astype(np.int32)

    def never():
        raise AssertionError("the image was read though nothing changed")

    out, _ = refine_frame(a, a.copy(), never, PopulationSegmentConfig(), pixel_size_um=PX)
    assert np.array_equal(out, a)


def test_nan_pixels_do_not_break_the_search():
    rng = np.random.default_rng(4)
    cell = _disc(48, 60, 15)
    frames = [_image([(cell, 450)], rng) for _ in range(3)] + [_image([(cell, 60)], rng)]
    frames[-1][40:44, :] = np.nan
    labels = list(segment_sequence(frames, PopulationSegmentConfig(), pixel_size_um=PX))
    found = labels[-1] > 0
    assert (found & cell).sum() > 0.7 * (cell & ~np.isnan(frames[-1])).sum()
    assert (found & ~cell).sum() < 0.2 * cell.sum()


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        refine_frame(
            np.ones((4, 4), np.int32),
            np.ones((5, 5), np.int32),
            lambda: None,
            PopulationSegmentConfig(),
            pixel_size_um=PX,
        )


def test_mender_reports_carried_labels():
    rng = np.random.default_rng(5)
    cell = _disc(48, 60, 15)
    mend = Mender(PopulationSegmentConfig(), pixel_size_um=PX)
    from deathtrack.segment import segment_frame

    for t in range(CARRY_MIN_FRAMES + 1):
        img = _image([(cell, 450 if t < CARRY_MIN_FRAMES else 10)], rng)
        labels, carried = mend(segment_frame(img, pixel_size_um=PX), lambda img=img: img)
    assert carried == set(np.unique(labels[labels > 0]).tolist())


def _ruptured_with_dye(nucleus_level: float, neighbour=((48, 95, 12), (48, 95, 12)), seed=6):
    """A cell (r 15 px, 9.8 µm) and a neighbour, seen for a few frames; then the cell is
    gone from its channel (a ruptured necroptotic cell's ghost at background level, as
    in dense fields) while the dye stains its nucleus (r 4 px) ``nucleus_level`` above
    a dye background of 50. ``neighbour``: its disc (y, x, r) before and after."""
    rng = np.random.default_rng(seed)
    cell, other = _disc(48, 40, 15), _disc(*neighbour[0])
    n_live = CARRY_MIN_FRAMES + 1
    cells = [_image([(cell, 450), (other, 500)], rng) for _ in range(n_live)]
    cells += [_image([(_disc(*neighbour[1]), 500)], rng) for _ in range(3)]
    dye = [_image([], rng, bg=50.0) for _ in range(n_live)]
    dye += [_image([(_disc(48, 40, 4), nucleus_level)], rng, bg=50.0) for _ in range(3)]
    return cell, cells, dye


def _mend(cells, dye, config=None):
    from deathtrack.segment import segment_frame

    config = config or PopulationSegmentConfig()
    mend = Mender(config, pixel_size_um=PX)
    out = []
    for img, d in zip(cells, dye):
        labels = segment_frame(img, config, pixel_size_um=PX)
        out.append(mend(labels, lambda img=img: img, None if d is None else lambda d=d: d))
    return out


def test_a_vanished_cell_whose_outline_takes_up_the_dye_is_kept_as_its_ghost():
    """The cell's track must run through its rupture for the death to be called: its last
    outline is kept while the dye shows in it, though its own channel shows nothing."""
    cell, cells, dye = _ruptured_with_dye(nucleus_level=150)
    n_live = CARRY_MIN_FRAMES + 1
    for t, (labels, carried) in enumerate(_mend(cells, dye)):
        m = match_labels(cell.astype(int), labels)
        assert len(m) == 1 and m["iou"].iloc[0] > 0.9, (t, m)
        ghost = int(m["pred_label"].iloc[0])
        assert (ghost in carried) == (t >= n_live), (t, carried)


@pytest.mark.parametrize(
    "why",
    ["no nucleus stained", "no dye channel", "carry_dye_k = 0", "dye only in the ring"],
)
def test_a_vanished_cell_without_the_dye_is_not_kept(why):
    cell, cells, dye = _ruptured_with_dye(nucleus_level=0 if why == "no nucleus stained" else 150)
    config = PopulationSegmentConfig()
    if why == "no dye channel":
        dye = [None] * len(dye)
    elif why == "carry_dye_k = 0":
        config = PopulationSegmentConfig(carry_dye_k=0)
    elif why == "dye only in the ring":
        # dye everywhere around as much as inside (a bright dye background, debris): no
        # contrast with the surroundings
        dye = [d + 150 * ~_disc(48, 40, 1) for d in dye]
    labels, _ = _mend(cells, dye, config)[-1]
    assert not (labels[cell] > 0).any(), why


def test_a_neighbour_spreading_into_a_vanished_cell_does_not_stand_for_it():
    """The swollen cell's touching neighbour spreads into the space the cell leaves: it
    lies mostly where it was, so the cell is still missing, and kept while the dye shows."""
    before, after = (48, 70, 16), (48, 61, 17)
    cell, cells, dye = _ruptured_with_dye(nucleus_level=150, neighbour=(before, after))
    assert 0.2 < (cell & _disc(*after)).sum() / cell.sum() < 0.3
    assert (_disc(*after) & _disc(*before)).sum() / _disc(*after).sum() > 0.6
    for labels, carried in _mend(cells, dye)[CARRY_MIN_FRAMES + 1 :][:2]:
        ghost = np.bincount(labels[cell], minlength=labels.max() + 1)
        ghost[0] = 0
        best = int(np.argmax(ghost))
        assert best in carried
        assert ghost[best] >= 0.65 * cell.sum()


# -- cells seen apart are kept apart (split_merged_seen) ----------------------------------

# four single cells elsewhere in the field: the frame's typical object is one cell
_SINGLES = [(20, 20), (20, 108), (76, 20), (76, 108)]
_R = 11


def _pair_frames(n_apart: int, pair=((48, 54), (48, 72)), r=_R):
    """``n_apart`` frames with the pair as two objects, then one frame with it as one
    object, on a flat image (no seam, the union convex enough to show no neck)."""
    a, b = _disc(*pair[0], r), _disc(*pair[1], r)
    singles = np.zeros(SHAPE, np.int32)
    for i, c in enumerate(_SINGLES, start=1):
        singles[_disc(*c, r)] = i
    apart = np.where(a, 5, np.where(b, 6, singles)).astype(np.int32)
    merged = np.where(a | b, 5, singles).astype(np.int32)
    img = (100 + 500 * ((a | b) | (singles > 0))).astype(np.float32)
    return [apart] * n_apart + [merged], img, (a & ~b, b & ~a)


def _mend_all(frames, img, config=None):
    mend = Mender(config or PopulationSegmentConfig(), pixel_size_um=PX)
    for labels in frames:
        out, _ = mend(labels, lambda: img)
    return out


def test_object_age_apart_restarts_for_pieces_and_merges():
    """Counted with ``mutual``, a cell cut in two starts two new counts, and two cells
    merged one; the plain count goes on in both cases."""
    whole = _disc(48, 64, 16).astype(np.int32)
    halves = np.where(whole > 0, 1 + (np.mgrid[: SHAPE[0], : SHAPE[1]][1] >= 64), 0).astype(
        np.int32
    )
    age = apart = object_age(None, None, whole)
    for _ in range(2):
        age = object_age(whole, age, whole)
        apart = object_age(whole, apart, whole, mutual=0.6)
    assert age[1] == apart[1] == 3
    assert object_age(whole, age, halves)[1:].tolist() == [4, 4]
    cut = object_age(whole, apart, halves, mutual=0.6)
    assert cut[1:].tolist() == [1, 1]
    assert object_age(halves, cut, whole, mutual=0.6)[1] == 1
    # the same object moved by the drift goes on counting
    moved = np.roll(whole, 5, axis=1)
    assert object_age(whole, apart, moved, mutual=0.6)[1] == 4


def test_cells_seen_apart_stay_apart_without_a_seam():
    """Two cells pressed together with no seam and no neck, each seen as its own object
    for CARRY_MIN_FRAMES frames, are split again where each was."""
    frames, img, (a, b) = _pair_frames(CARRY_MIN_FRAMES)
    out = _mend_all(frames, img)
    assert len(np.unique(out[a | b])) == 2
    la, lb = np.bincount(out[a]).argmax(), np.bincount(out[b]).argmax()
    assert la != lb and la > 0 and lb > 0
    for mask, lab in ((a, la), (b, lb)):
        iou = (mask & (out == lab)).sum() / (mask | (out == lab)).sum()
        assert iou > 0.8, iou
    # the singles are untouched
    for c in _SINGLES:
        assert len(np.unique(out[_disc(*c, _R)])) == 1


def test_cells_seen_apart_too_briefly_or_with_the_rule_off_stay_merged():
    """Apart in fewer than CARRY_MIN_FRAMES frames (a cell the segmentation cut in two now
    and then), or with ``split_merged_seen`` off, the seamless object stays one."""
    frames, img, (a, b) = _pair_frames(CARRY_MIN_FRAMES - 1)
    assert len(np.unique(_mend_all(frames, img)[a | b])) == 1
    frames, img, _ = _pair_frames(CARRY_MIN_FRAMES + 2)
    off = PopulationSegmentConfig(split_merged_seen=False)
    assert len(np.unique(_mend_all(frames, img, off)[a | b])) == 1


def _one_cell_cut(cell):
    """Labels of the singles and ``cell`` (a mask) whole, and with ``cell`` cut in two
    halves at x = 64; a flat image of them all."""
    x = np.mgrid[: SHAPE[0], : SHAPE[1]][1]
    singles = np.zeros(SHAPE, np.int32)
    for i, c in enumerate(_SINGLES, start=1):
        singles[_disc(*c, _R)] = i
    whole = np.where(cell, 5, singles).astype(np.int32)
    cut = np.where(cell, 5 + (x >= 64), singles).astype(np.int32)
    img = (100 + 500 * (cell | (singles > 0))).astype(np.float32)
    return whole, cut, img


def test_a_typical_cell_cut_in_two_for_long_is_whole_again():
    """Halves of one typical cell (each half a cell's area) cut for many frames: once found
    whole, the cell stays whole (the merged object is the size of one cell)."""
    whole = _disc(48, 64, _R)
    found, cut, img = _one_cell_cut(whole)
    out = _mend_all([cut] * (CARRY_MIN_FRAMES + 3) + [found], img)
    assert len(np.unique(out[whole])) == 1


def _mend_back(frames, img, config=None):
    """Frames mended in order, then again from the last back (the pipeline's two passes)."""
    config = config or PopulationSegmentConfig()
    mend = Mender(config, pixel_size_um=PX)
    out = [mend(labels, lambda: img)[0] for labels in frames]
    if mends_later(config):
        back = Mender(config, pixel_size_um=PX, seen_only=True)
        for t in range(len(out) - 1, -1, -1):
            out[t] = back(out[t], lambda: img)[0]
    return out


def test_cells_seen_apart_later_are_split_where_merged_before():
    """Two cells pressed together without a seam from the first frame, each its own object
    for CARRY_MIN_FRAMES frames later: the pass from the last frame back splits them in the
    first frame too; with ``split_merged_seen_later`` off, it stays one object."""
    # two round cells 20 px apart: their union's solidity 0.91 (as pressed pairs were on the
    # dense development seeds; 18 px apart, 0.935, would pass for one cell)
    pair = ((48, 53), (48, 73))
    frames, img, (a, b) = _pair_frames(CARRY_MIN_FRAMES, pair)
    frames = frames[::-1]  # merged first, apart after
    first = _mend_back(frames, img)[0]
    la, lb = np.bincount(first[a]).argmax(), np.bincount(first[b]).argmax()
    assert la != lb and la > 0 and lb > 0
    for mask, lab in ((a, la), (b, lb)):
        iou = (mask & (first == lab)).sum() / (mask | (first == lab)).sum()
        assert iou > 0.8, iou
    off = PopulationSegmentConfig(split_merged_seen_later=False)
    assert not mends_later(off)
    assert len(np.unique(_mend_back(frames, img, off)[0][a | b])) == 1
    # apart later for too few frames: not evidence
    short, img, _ = _pair_frames(CARRY_MIN_FRAMES - 1, pair)
    assert len(np.unique(_mend_back(short[::-1], img)[0][a | b])) == 1


def test_one_large_cell_cut_later_is_not_cut_before(monkeypatch):
    """A large round cell (two typical cells' area) whole in the first frames and cut in
    two by the segmentation after: the pass back leaves it whole where it was found whole
    (more convex than LATER_MAX_SOLIDITY); without that test it would cut it."""
    import deathtrack.refine as refine

    big = _disc(48, 64, 16)
    whole, cut, img = _one_cell_cut(big)
    frames = [whole] * 2 + [cut] * (CARRY_MIN_FRAMES + 2)
    assert len(np.unique(_mend_back(frames, img)[0][big])) == 1
    monkeypatch.setattr(refine, "LATER_MAX_SOLIDITY", 1.0)
    assert len(np.unique(_mend_back(frames, img)[0][big])) == 2


def test_the_pass_back_does_not_cut_a_small_part_off():
    """Where the cells seen apart later would be cut out of the earlier object unevenly (a
    part smaller than SEEN_MIN_PART of the typical cell, as a dividing cell ahead of its
    division), the object is left whole; without that test it is cut."""
    from deathtrack.refine import _split_merged

    a, b = _disc(48, 53, _R), _disc(48, 73, _R)
    cur = (a | b).astype(np.int32)
    prev = np.zeros(SHAPE, np.int32)
    prev[_disc(48, 58, _R + 3)] = 1
    prev[_disc(48, 80, 5) & cur.astype(bool)] = 2
    img = (100 + 500 * (a | b)).astype(np.float32)
    args = (1, [1, 2], prev, img, PX, 2, True, 1.0)
    kept = cur.copy()
    assert _split_merged(kept, *args, min_part_px=0.6 * a.sum()) == 2
    assert len(np.unique(kept[kept > 0])) == 1
    cut = cur.copy()
    assert _split_merged(cut, *args) == 3
    assert np.bincount(cut.ravel())[1:].min() < 0.6 * a.sum()


def _dividing(gap_level: float = 60.0):
    """A mother seen for CARRY_MIN_FRAMES frames, then its two daughters on either side
    of where it was, with a faint glow in the gap between them (what the carry would take
    for the mother's ghost)."""
    rng = np.random.default_rng(3)
    mother = _disc(48, 64, 12)
    d1, d2 = _disc(48, 48, 8), _disc(48, 80, 8)
    gap = _disc(48, 64, 9) & ~d1 & ~d2
    frames = [_image([(mother, 500)], rng) for _ in range(CARRY_MIN_FRAMES)]
    frames.append(_image([(d1, 600), (d2, 600), (gap, gap_level)], rng))
    return frames, (d1, d2)


@pytest.mark.parametrize("carry_divided", [False, True])
def test_a_cell_that_divided_is_not_carried_into_the_gap_between_its_daughters(carry_divided):
    """Its daughters are new objects on either side of it: the mother is not looked for as
    a faded cell (it would be found in the glow between them, a ghost taken for a death),
    unless ``carry_divided``; the daughters are kept either way."""
    from deathtrack.segment import segment_frame

    frames, (d1, d2) = _dividing()
    cfg = PopulationSegmentConfig(carry_divided=carry_divided)
    mend = Mender(cfg, pixel_size_um=PX)
    for img in frames:
        labels, carried = mend(segment_frame(img, cfg, pixel_size_um=PX), lambda img=img: img)
    for d in (d1, d2):
        lab = np.bincount(labels[d]).argmax()
        assert lab > 0 and (labels == lab).sum() < 1.5 * d.sum()
    # the test can fail: without the rule, the mother is carried into the gap
    assert bool(carried) == carry_divided, carried
