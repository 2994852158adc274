"""The compiled kernels equal the scikit-image / SciPy / NumPy definitions they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import perimeter, regionprops

from deathtrack._kernels import (
    apply_lut,
    block_sum,
    gaussian,
    histogram,
    label_percentile,
    label_sums,
    masked_histogram,
    median,
    object_shapes,
    pair_counts,
    percentiles,
    relabel_sequential,
    sort_by_label,
)


def _reference(labels):
    regions = regionprops(labels)
    return (
        np.array([r.label for r in regions]),
        np.array([perimeter(r.image, 4) for r in regions]),
        np.array([ndi.label(r.image, structure=np.ones((3, 3)))[1] for r in regions]),
        np.array([r.image_convex.sum() for r in regions]),
        np.array([perimeter(np.pad(r.image_convex, 1)) for r in regions]),
    )


def _check(labels):
    ids, p, pieces, hull, hull_p = _reference(labels)
    got = object_shapes(labels, ids)
    np.testing.assert_allclose(got[0], p, rtol=1e-12, err_msg="perimeter")
    np.testing.assert_array_equal(got[1], pieces, err_msg="pieces")
    np.testing.assert_array_equal(got[2], hull, err_msg="convex hull pixels")
    np.testing.assert_allclose(got[3], hull_p, rtol=1e-12, err_msg="convex hull perimeter")


@pytest.mark.parametrize("seed", range(8))
def test_object_shapes_equal_scikit_image_on_random_blobs(seed):
    """Smooth and ragged blobs, some cut by the image edge, several pieces per label."""
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((70, 90)), rng.uniform(0.7, 4))
    labels = ndi.label(img > np.quantile(img, rng.uniform(0.4, 0.9)))[0]
    merged = labels.copy()
    merged[merged % 3 == 0] = 1  # one label of many scattered pieces
    _check(labels)
    _check(merged)


@pytest.mark.parametrize(
    "pixels",
    [
        [(0, 0)],  # one pixel in the corner
        [(3, 3)],
        [(2, c) for c in range(1, 9)],  # a horizontal line
        [(r, 4) for r in range(10)],  # a vertical line across the whole image
        [(r, r) for r in range(8)],  # a diagonal (one 8-connected piece)
        [(1, 1), (1, 7), (8, 1), (8, 7)],  # four corners of one label
    ],
)
def test_object_shapes_on_degenerate_objects(pixels):
    labels = np.zeros((10, 9), np.int32)
    for r, c in pixels:
        labels[r, c] = 5
    _check(labels)


def test_object_shapes_of_an_absent_label_are_zero_and_ids_may_be_a_subset():
    labels = np.zeros((6, 6), np.int64)
    labels[1:3, 1:3] = 2
    labels[4, 4] = 7
    p, pieces, hull, hull_p = object_shapes(labels, np.array([2, 3]))
    assert p.tolist() == [perimeter(np.ones((2, 2)), 4), 0.0]
    assert pieces.tolist() == [1, 0] and hull.tolist() == [4, 0]
    p, pieces, hull, hull_p = object_shapes(labels, np.array([2]), hull=False)
    assert hull.tolist() == [0] and hull_p.tolist() == [0.0] and pieces.tolist() == [1]


@pytest.mark.parametrize("shape", [(40, 40), (13, 70), (1, 300), (5, 1), (97, 131)])
@pytest.mark.parametrize("f", [1, 3, 7, 8, 12, 13, 17, 38])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_sum_equals_numpy_padded_block_sums_to_the_bit(shape, f, dtype):
    rng = np.random.default_rng(5)
    a = (rng.normal(100, 20, shape) * rng.uniform(0.01, 100)).astype(dtype)
    mask = rng.random(shape) > 0.5
    ny, nx = shape

    def numpy_sums(x):  # what segment.py computed before the kernel
        x = np.pad(x, ((0, (-ny) % f), (0, (-nx) % f)))
        return x.reshape(x.shape[0] // f, f, x.shape[1] // f, f).sum(axis=(1, 3))

    got = block_sum(a, f)
    assert got.dtype == dtype and got.shape == (-(-ny // f), -(-nx // f))
    np.testing.assert_array_equal(got, numpy_sums(a))  # same additions, same order
    np.testing.assert_array_equal(block_sum(a, f, mask), numpy_sums(np.where(mask, a, 0)))
    with pytest.raises(ValueError, match="shape"):
        block_sum(a, f, np.zeros((ny + 1, nx), bool))


@pytest.mark.parametrize("kind", ["normal", "ties", "half zeros", "few values"])
def test_percentiles_histogram_and_median_equal_numpy_to_the_bit(kind):
    rng = np.random.default_rng(7)
    for trial in range(150):
        n = int(rng.integers(1, 2000))
        x = rng.normal(0, rng.uniform(0.1, 100), n).astype(np.float32)
        if kind == "ties":
            x = np.round(x).astype(np.float32)
        elif kind == "half zeros":
            x[: n // 2] = 0
        elif kind == "few values":
            x = rng.integers(0, 5, n).astype(np.float32)
        x = x.reshape(1, -1) if trial % 2 else x
        mask = rng.random(x.shape) > 0.3 if trial % 3 == 0 else None
        sel = x[mask] if mask is not None else x
        assert median(x) == np.median(x) and median(x).dtype == np.median(x).dtype
        if not sel.size:
            with pytest.raises(ValueError, match="no values"):
                percentiles(x, [50], mask)
            continue
        ref = np.percentile(sel, [0.5, 99.5])
        got = percentiles(x, [0.5, 99.5], mask)
        np.testing.assert_array_equal(got, ref)
        assert got.dtype == ref.dtype
        if ref[1] > ref[0]:
            np.testing.assert_array_equal(
                histogram(x, 256, ref[0], ref[1], mask),
                np.histogram(sel, bins=256, range=(ref[0], ref[1]))[0],
            )


def test_apply_lut_equals_numpy_fancy_indexing():
    rng = np.random.default_rng(9)
    for dtype in (np.int32, np.uint16, np.int64):
        lab = rng.integers(0, 50, (3, 20, 30)).astype(dtype)
        lut = rng.integers(0, 70000, 50).astype(np.int32)
        got = apply_lut(lab, lut)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, lut[lab])
        np.testing.assert_array_equal(apply_lut(lab[:, ::2], lut), lut[lab[:, ::2]])
    with pytest.raises(TypeError, match="integers"):
        apply_lut(lab.astype(float), lut)


def test_relabel_sequential_equals_scikit_image():
    from skimage.segmentation import relabel_sequential as skimage_relabel

    rng = np.random.default_rng(6)
    lab = rng.choice([0, 3, 7, 8, 40, 41, 1000], size=(30, 20)).astype(np.int32)
    got = relabel_sequential(lab)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, skimage_relabel(lab)[0])
    assert relabel_sequential(np.zeros((4, 4), np.int32)).max() == 0
    assert relabel_sequential(np.zeros((0, 3), np.int32)).shape == (0, 3)
    np.testing.assert_array_equal(relabel_sequential(lab[:, ::2]), skimage_relabel(lab[:, ::2])[0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_masked_histogram_equals_bincount_of_the_masked_pixels(dtype):
    rng = np.random.default_rng(4)
    top = np.iinfo(dtype).max
    img = rng.integers(0, top + 1, (37, 23)).astype(dtype)
    img[0, 0], img[-1, -1] = 0, top  # both ends of the range
    mask = rng.random(img.shape) > 0.3
    got = masked_histogram(img, mask)
    np.testing.assert_array_equal(got, np.bincount(img[mask], minlength=top + 1))
    assert masked_histogram(img[:, ::2], mask[:, ::2]).sum() == mask[:, ::2].sum()  # views
    assert masked_histogram(img, np.zeros(img.shape, bool)).sum() == 0
    with pytest.raises(TypeError, match="uint8 or uint16"):
        masked_histogram(img.astype(np.int16), mask)
    with pytest.raises(ValueError, match="shape"):
        masked_histogram(img, mask[1:])


def test_sort_by_label_equals_a_two_key_lexsort():
    rng = np.random.default_rng(1)
    lab = rng.integers(0, 40, 5000)
    val = np.round(rng.normal(size=5000), 2)  # ties included
    got_lab, got_val = sort_by_label(lab, val)
    order = np.lexsort((val, lab))
    np.testing.assert_array_equal(got_lab, lab[order])
    np.testing.assert_array_equal(got_val, val[order])
    empty = sort_by_label(np.zeros(0, int), np.zeros(0))
    assert len(empty[0]) == len(empty[1]) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize("q", [0.0, 10.0, 50.0, 90.0, 95.0, 100.0])
def test_label_percentile_equals_the_sorted_values_index(dtype, q):
    rng = np.random.default_rng(int(q) + 7)
    labels = rng.integers(0, 30, (60, 70))
    labels[labels == 13] = 0  # an empty label inside 1..n
    values = (np.round(rng.normal(100, 20, labels.shape), 1)).astype(dtype)  # ties included
    if dtype != np.uint16:
        values[5, :7] = np.nan  # NaN sorts last, as in a sort
    n = int(labels.max())
    got = label_percentile(values, labels, n, q)
    want = np.zeros(n + 1)
    for k in range(1, n + 1):
        v = np.sort(values[labels == k].astype(np.float64))
        if len(v):
            want[k] = v[int(np.floor((len(v) - 1) * q / 100.0))]
    np.testing.assert_array_equal(got, want)
    assert got[13] == 0 and got[0] == 0
    # nothing labelled, and labels above n ignored
    np.testing.assert_array_equal(label_percentile(values, np.zeros_like(labels), 3, q), 0)
    assert len(label_percentile(values, labels, 5, q)) == 6


@pytest.mark.parametrize("seed", range(4))
def test_dilate_erode_opening_equal_scipy_iterated_cross(seed):
    """Including masks that touch the image edge, all-true and all-false masks, and thin
    images (one row / one column)."""
    from deathtrack._kernels import dilate, erode, opening

    rng = np.random.default_rng(seed)
    shapes = [(1, 17), (23, 1), (40, 57), (64, 64)]
    for shape in shapes:
        masks = [
            ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3)) > 0.5,
            rng.random(shape) > 0.7,
            np.ones(shape, bool),
            np.zeros(shape, bool),
        ]
        for m in masks:
            for k in (1, 2, 3, 6, 7, 10):  # shifted step by step up to 6, by distance beyond
                np.testing.assert_array_equal(dilate(m, k), ndi.binary_dilation(m, iterations=k))
                np.testing.assert_array_equal(erode(m, k), ndi.binary_erosion(m, iterations=k))
                np.testing.assert_array_equal(opening(m, k), ndi.binary_opening(m, iterations=k))
    with pytest.raises(ValueError, match="iterations"):
        dilate(masks[0], 0)


def test_mix_upsample_is_bit_identical_to_the_numpy_expression():
    from deathtrack._kernels import mix_upsample
    from deathtrack.segment import _zoom_weights

    rng = np.random.default_rng(3)
    for (sy, sx), f, ny, nx in (((16, 16), 8, 128, 128), ((5, 7), 3, 14, 20), ((1, 1), 4, 4, 4)):
        small = (rng.normal(size=(sy, sx)) * 100).astype(np.float32)
        i0, i1, wy = _zoom_weights(sy, f, ny)
        j0, j1, wx = _zoom_weights(sx, f, nx)
        rows = small[i0] * (1 - wy)[:, None] + small[i1] * wy[:, None]
        expected = rows[:, j0] * (1 - wx) + rows[:, j1] * wx
        got = mix_upsample(small, i0, i1, wy, j0, j1, wx)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", range(4))
def test_distance_to_background_equals_scipy_edt(seed):
    from deathtrack._kernels import distance_to_background

    rng = np.random.default_rng(seed)
    for shape in [(1, 1), (1, 9), (7, 1), (31, 44), (60, 60)]:
        for m in (
            ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 4)) > 0.4,
            rng.random(shape) > 0.2,
            np.ones(shape, bool),  # no background: SciPy's convention
            np.zeros(shape, bool),
        ):
            np.testing.assert_array_equal(distance_to_background(m), ndi.distance_transform_edt(m))


@pytest.mark.parametrize("seed", range(4))
def test_one_top_patch_equals_the_maximum_filter_and_label_test(seed):
    """Plateaus (rounded values) make ties, which the exact comparison must keep."""
    from deathtrack._kernels import one_top_patch

    rng = np.random.default_rng(seed)
    answers = []
    for shape in [(1, 5), (6, 1), (25, 30), (50, 40)]:
        for decimals in (1, 2, 4):
            sub = ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 3))
            sub = np.round(sub, decimals).astype(np.float32)
            comp = ndi.gaussian_filter(rng.random(shape), 2) > 0.3
            top = (sub == ndi.maximum_filter(sub, 3)) & comp
            expected = np.count_nonzero(top) <= 1 or ndi.label(top)[1] <= 1
            assert one_top_patch(sub, comp) == expected
            answers.append(expected)
    assert any(answers) and not all(answers)  # both outcomes were tested


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (3, 4), (17, 9), (64, 33), (130, 257)])
@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.23, 2.5, 7.7, 20.0])
def test_gaussian_is_bit_identical_to_scipy(shape, sigma):
    # lines shorter than the kernel (reflected more than once) included
    rng = np.random.default_rng(int(sigma * 10) + shape[0] * 1000 + shape[1])
    image = (rng.random(shape) * 4000 - 100).astype(np.float32)
    np.testing.assert_array_equal(gaussian(image, sigma), ndi.gaussian_filter(image, sigma))


def test_gaussian_hands_other_inputs_to_scipy():
    rng = np.random.default_rng(3)
    f64 = rng.random((20, 30))
    np.testing.assert_array_equal(gaussian(f64, 1.5), ndi.gaussian_filter(f64, 1.5))
    cube = rng.random((4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(gaussian(cube, 1.0), ndi.gaussian_filter(cube, 1.0))
    flat = rng.random((8, 8)).astype(np.float32)
    np.testing.assert_array_equal(gaussian(flat, 0), ndi.gaussian_filter(flat, 0))


@pytest.mark.parametrize("seed", range(4))
def test_label_sums_and_pair_counts_equal_numpy(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 70)), int(rng.integers(1, 90)))
    a = rng.integers(0, 12, shape).astype(np.int32)
    b = ndi.label(rng.random(shape) > 0.4)[0].astype(np.int32)
    cnt, sy, sx = label_sums(a, 15)
    idx = np.flatnonzero(a.ravel())
    lab = a.ravel()[idx]
    yy, xx = np.divmod(idx, shape[1])
    np.testing.assert_array_equal(cnt, np.bincount(lab, minlength=16))
    np.testing.assert_array_equal(sy, np.bincount(lab, weights=yy, minlength=16))
    np.testing.assert_array_equal(sx, np.bincount(lab, weights=xx, minlength=16))
    sel = (a > 0) & (b > 0)
    nb = int(b.max()) + 1
    keys, counts = np.unique(a[sel].astype(np.int64) * nb + b[sel], return_counts=True)
    got = pair_counts(a, b)
    for g, want in zip(got, (keys // nb, keys % nb, counts)):
        np.testing.assert_array_equal(g, want)
        assert g.dtype == np.int64
    empty = pair_counts(a, np.zeros_like(b))
    assert all(len(e) == 0 for e in empty)


@pytest.mark.parametrize("bright_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bg_type", [float, np.float64])
def test_single_tops_equals_the_object_by_object_landscape_test(bright_dtype, bg_type):
    """Each object's landscape built in its own grown box (distance to its edge times the
    relative brightness, smoothed, masked) and tested for one top, as the touching-cell
    split does object by object, in NumPy's types (float32 brightness less a Python float
    stays float32, less a NumPy float64 does not); an object that fills its box has no
    background there and is left to the caller (False)."""
    from deathtrack._kernels import distance_to_background, one_top_patch, single_tops

    rng = np.random.default_rng(3)
    blobs = ndi.gaussian_filter(rng.random((120, 150)), 3) > 0.52
    labels, n = ndi.label(blobs)
    bright = (ndi.gaussian_filter(rng.random(labels.shape), 2) * 900 + 100).astype(bright_dtype)
    bright[labels == 5] = np.nan
    bg = bg_type(180.3)
    plate = label_percentile(bright, labels, n, 95.0) - bg
    w, px, grow = 0.6, 0.65, 5
    found = ndi.find_objects(labels)
    got = single_tops(labels, found, grow, bright, bg, plate, w, px)
    expected = np.zeros(n + 1, bool)
    for k, sl in enumerate(found, start=1):
        sl = tuple(
            slice(max(s.start - grow, 0), min(s.stop + grow, m)) for s, m in zip(sl, labels.shape)
        )
        comp = labels[sl] == k
        dist = distance_to_background(comp) * px
        rel = np.clip((bright[sl] - bg) / max(plate[k], 1e-6), 0, 1)
        land = np.where(comp, dist * (w + (1 - w) * rel), 0).astype(np.float32)
        expected[k] = one_top_patch(np.where(comp, gaussian(land, 1.0), 0), comp)
    np.testing.assert_array_equal(got, expected)
    assert expected[1:].any() and not expected[1:].all()  # both answers were tested
    # an object filling the whole frame: no background in its box
    full = np.ones((6, 7), np.int32)
    got = single_tops(full, ndi.find_objects(full), grow, bright[:6, :7], bg, plate[:2], w, px)
    np.testing.assert_array_equal(got, [False, False])


@pytest.mark.parametrize("seed", range(3))
def test_components_and_fill_holes_equal_scipy(seed):
    """Same labels, numbered in the same (raster) order, and the same filled masks as
    ``scipy.ndimage.label`` and ``binary_fill_holes``: smooth blobs with holes, salt and
    pepper, empty and full masks, single rows and columns, and a spiral corridor."""
    from deathtrack._kernels import components, fill_holes

    rng = np.random.default_rng(seed)
    spiral = np.ones((80, 80), bool)
    for i in range(2, 40, 4):
        spiral[i, i : 80 - i] = False
        spiral[i : 80 - i, 80 - i - 1] = False
        spiral[80 - i - 1, i + 2 : 80 - i] = False
        spiral[i + 2 : 80 - i, i + 2] = False
    masks = [spiral, ~spiral]
    for shape in [(1, 1), (1, 9), (7, 1), (31, 44), (120, 90)]:
        masks += [
            ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 4)) > rng.uniform(0.4, 0.6),
            rng.random(shape) > rng.uniform(0.2, 0.8),
            np.zeros(shape, bool),
            np.ones(shape, bool),
        ]
    for m in masks:
        got, n = components(m)
        expected, n_expected = ndi.label(m)
        assert n == n_expected and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(fill_holes(m), ndi.binary_fill_holes(m))
    assert any(ndi.binary_fill_holes(m).sum() > m.sum() for m in masks)  # holes were filled


@pytest.mark.parametrize("level_type", [float, np.float64])
def test_above_upsampled_and_block_count_equal_numpy(level_type):
    """The background's object mask without the upsampled frame, compared as NumPy
    compares (float32 with a Python float, float64 with a NumPy float64), and block counts
    of a mask, partial blocks at the edges included."""
    from deathtrack._kernels import above_upsampled, block_count, mix_upsample
    from deathtrack.segment import _zoom_weights

    rng = np.random.default_rng(5)
    for ny, nx, f in [(64, 48, 8), (101, 77, 9), (5, 3, 2)]:
        sy, sx = -(-ny // f), -(-nx // f)
        small = rng.normal(100, 5, (sy, sx))  # float64, as the fitted background is
        image = (rng.normal(100, 5, (ny, nx))).astype(np.float32)
        i0, i1, wy = _zoom_weights(sy, f, ny)
        j0, j1, wx = _zoom_weights(sx, f, nx)
        for level in (level_type(0.1), level_type(1 / 3), level_type(2.7)):
            expected = image - mix_upsample(small, i0, i1, wy, j0, j1, wx) > level
            got = above_upsampled(image, small, i0, i1, wy, j0, j1, wx, level)
            np.testing.assert_array_equal(got, expected)
        mask = rng.random((ny, nx)) > 0.3
        padded = np.pad(mask, ((0, sy * f - ny), (0, sx * f - nx)))
        expected = padded.reshape(sy, f, sx, f).sum(axis=(1, 3)).astype(np.float32)
        np.testing.assert_array_equal(block_count(mask, f), expected)


def test_label_max_equals_maximum_at():
    from deathtrack._kernels import label_max

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 9, (40, 30)).astype(np.int32)
    labels[labels == 4] = 0  # an empty label
    for values in (
        rng.normal(size=labels.shape),
        rng.integers(-5, 50, labels.shape).astype(np.int32),
    ):
        if values.dtype.kind == "f":
            values[3, 3] = np.nan
            labels[3, 3] = 7
        expected = np.full(9, -np.inf)
        sel = labels.ravel() > 0
        with np.errstate(invalid="ignore"):  # NumPy warns of the NaN it propagates
            np.maximum.at(expected, labels.ravel()[sel], values.ravel()[sel])
        expected[0] = 0
        np.testing.assert_array_equal(label_max(values, labels, 8), expected)
    with pytest.raises(IndexError):
        label_max(values, labels, 5)


def test_h_maxima_equals_scikit_image():
    """Smooth and plateaued (rounded) landscapes of many sizes, h as a Python float, a
    NumPy float64 and float32 (scikit-image's arithmetic differs with each), h above the
    range; and a 3D image goes to scikit-image."""
    from skimage.morphology import h_maxima as reference

    from deathtrack._kernels import h_maxima

    rng = np.random.default_rng(11)
    found = 0
    for trial in range(300):
        shape = tuple(rng.integers(1, 50, 2))
        img = ndi.gaussian_filter(rng.random(shape) * rng.uniform(0.1, 20), rng.uniform(0.3, 3))
        img = (np.round(img, 1) if trial % 4 == 0 else img).astype(np.float32)
        for h in (
            0.05,
            float(rng.uniform(0.01, 2)),
            np.float64(rng.uniform(0.01, 2)),
            np.float32(0.3),
        ):
            got = h_maxima(img, h)
            expected = reference(img, h)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
            found += int(ndi.label(expected)[1] >= 2)
    assert found > 50  # many landscapes had several maxima
    vol = ndi.gaussian_filter(rng.random((6, 20, 20)), 1).astype(np.float32)
    np.testing.assert_array_equal(h_maxima(vol, 0.01), reference(vol, 0.01))
