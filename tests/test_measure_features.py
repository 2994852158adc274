"""Per-object measures against analytic values, and their edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deathtrack.measure import (
    FEATURES,
    Feature,
    feature_table,
    measure_frame,
    measure_movie,
    register_feature,
)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_disc_in_physical_units():
    labels = _disc((100, 100), 50, 50, 20).astype(np.int32)
    df = measure_frame(labels, pixel_size_um=0.5)
    row = df.iloc[0]
    assert row.area_um2 == pytest.approx(np.pi * 20**2 * 0.25, rel=0.02)
    assert row.circularity > 0.9
    assert row.eccentricity < 0.1 and row.solidity > 0.95  # digital hull adds edge pixels
    assert row.major_axis_um == pytest.approx(20.0, rel=0.03)
    assert (row.y, row.x, row.y_um, row.x_um) == (50, 50, 25, 25)
    assert row.roughness < 0.03 and row.n_fragments == 1 and not row.touches_border


def test_ellipse_axes_and_pixel_size_scaling():
    yy, xx = np.mgrid[:100, :100]
    labels = (((yy - 50) / 10) ** 2 + ((xx - 50) / 30) ** 2 <= 1).astype(np.int32)
    a = measure_frame(labels, pixel_size_um=1.0).iloc[0]
    b = measure_frame(labels, pixel_size_um=2.0).iloc[0]
    assert a.major_axis_um == pytest.approx(60, rel=0.03)
    assert a.minor_axis_um == pytest.approx(20, rel=0.05)
    assert a.eccentricity == pytest.approx(np.sqrt(1 - (10 / 30) ** 2), abs=0.02)
    assert b.area_um2 == pytest.approx(4 * a.area_um2)
    assert b.perimeter_um == pytest.approx(2 * a.perimeter_um)


def test_square_and_one_pixel_object():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 1
    labels[18, 2] = 2
    df = measure_frame(labels, {"cells": np.ones((20, 20))}, pixel_size_um=1.0)
    sq, dot = df.iloc[0], df.iloc[1]
    assert sq.area_um2 == 100 and sq.solidity == 1
    assert dot.area_um2 == 1 and np.isfinite(dot.perimeter_um) and dot.circularity <= 1
    assert dot.cells_mean == 1 and dot.cells_std == 0


def test_blebbed_outline_rougher_and_less_solid_than_disc():
    disc = _disc((120, 120), 60, 60, 25)
    blebbed = _disc((120, 120), 60, 60, 23)
    for a in np.linspace(0, 2 * np.pi, 9)[:-1]:
        blebbed |= _disc((120, 120), 60 + 24 * np.sin(a), 60 + 24 * np.cos(a), 5)
    smooth = measure_frame(disc.astype(np.int32)).iloc[0]
    rough = measure_frame(blebbed.astype(np.int32)).iloc[0]
    assert rough.roughness > smooth.roughness + 0.02
    assert rough.solidity < smooth.solidity - 0.02
    assert rough.circularity < smooth.circularity


def test_fragments_count_and_area_sum():
    labels = np.zeros((60, 60), np.int32)
    for cy, cx in ((15, 15), (15, 45), (45, 30)):
        labels[_disc(labels.shape, cy, cx, 5)] = 7
    row = measure_frame(labels).iloc[0]
    assert row.label == 7 and row.n_fragments == 3
    assert row.area_um2 == (labels == 7).sum()


def test_border_flag():
    labels = np.zeros((30, 30), np.int32)
    labels[0:5, 10:15] = 1
    labels[10:15, 10:15] = 2
    labels[20:30, 25:30] = 3
    assert measure_frame(labels)["touches_border"].tolist() == [True, False, True]


def test_intensity_statistics_known_values_and_nan():
    labels = np.zeros((10, 10), np.int32)
    labels[0:2, 0:5] = 1  # 10 pixels with values 1..10
    labels[5:7, 5:7] = 2  # all NaN
    img = np.zeros((10, 10))
    img[0:2, 0:5] = np.arange(1, 11).reshape(2, 5)
    img[5:7, 5:7] = np.nan
    img[0, 0] = np.nan  # one NaN pixel inside object 1
    df = measure_frame(labels, {"dye": img})
    one, two = df.iloc[0], df.iloc[1]
    vals = np.arange(2, 11)
    assert one.dye_mean == pytest.approx(vals.mean())
    assert one.dye_total == pytest.approx(vals.sum())
    assert one.dye_std == pytest.approx(vals.std())
    assert one.dye_p50 == 6 and one.dye_p10 == 2 and one.dye_p90 == 9
    assert np.isnan(two.dye_mean) and np.isnan(two.dye_total) and np.isnan(two.dye_p90)


def test_empty_frame_has_all_columns():
    df = measure_frame(np.zeros((8, 8), np.int32), {"cells": np.zeros((8, 8))}, frame=3)
    full = measure_frame(np.ones((8, 8), np.int32), {"cells": np.zeros((8, 8))})
    assert df.empty and list(df.columns) == list(full.columns)
    assert df["frame"].dtype == np.int64 and df["n_fragments"].dtype == np.int64


def test_shape_and_type_errors():
    with pytest.raises(
        ValueError,
        match=r"intensity image 'dye' \(shape \(4, 4\)\) must have the same shape as `labels` \(shape \(8, 8\)\)",
    ):
        measure_frame(np.zeros((8, 8), np.int32), {"dye": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="`labels` must be integers, got float64"):
        measure_frame(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['volume'\]"):
        measure_frame(np.zeros((8, 8), np.int32), features=["volume"])
    with pytest.raises(ValueError, match=r"`labels` must be >= 0 .*found -1"):
        measure_frame(np.array([[-1, 0], [0, 1]]))
    with pytest.raises(ValueError, match=r"`labels` is empty \(shape \(0, 3\)\)"):
        measure_frame(np.zeros((0, 3), np.int32))


def test_registry_add_and_refuse_duplicates():
    name = "test_width_um"
    register_feature(
        Feature(
            name, "µm", "morphology", "bbox width", lambda r, px: float(r.bbox[3] - r.bbox[1]) * px
        )
    )
    try:
        labels = np.zeros((10, 10), np.int32)
        labels[2:4, 1:8] = 1
        assert measure_frame(labels, pixel_size_um=0.5)[name].iloc[0] == 3.5
        with pytest.raises(
            ValueError, match="a feature named 'test_width_um' is already registered"
        ):
            register_feature(Feature(name, "µm", "morphology", "again", lambda r, px: 0.0))
    finally:
        FEATURES.pop(name)
    assert {"area_um2", "solidity", "roughness", "n_fragments"} <= set(feature_table()["name"])


def test_measure_movie_streams_frames():
    frames = [np.zeros((8, 8), np.int32) for _ in range(3)]
    frames[1][2:4, 2:4] = 1
    frames[2][2:4, 2:4] = 5
    df = measure_movie(iter(frames), pixel_size_um=1.0)
    assert df[["frame", "label"]].values.tolist() == [[1, 1], [2, 5]]
    assert isinstance(measure_movie([], pixel_size_um=1.0), pd.DataFrame)


def _random_labels(rng, shape=(60, 70), n=12):
    """Blobs of random shapes and sizes, touching, some in pieces, one pixel objects."""
    from scipy import ndimage as ndi

    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.uniform(0.5, 9)
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        blob = (yy - cy) ** 2 / rng.uniform(0.3, 3) + (xx - cx) ** 2 <= r * r
        labels[blob & (rng.random(shape) > 0.1)] = k
    labels[ndi.binary_erosion(labels > 0, iterations=2) & (rng.random(shape) > 0.97)] = n + 1
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_builtin_features_computed_together_equal_their_registry_functions(seed):
    """measure_frame computes the built-in morphology for all objects at once; the values
    must be those of each feature's own function (its definition) on every object."""
    from skimage.measure import regionprops

    from deathtrack.measure import FEATURES, _builtin_morphology, _object_pixels

    rng = np.random.default_rng(seed)
    labels = _random_labels(rng)
    for px in (0.65, 1.0, 2.5):
        regions = regionprops(labels, spacing=(px, px))
        ids = np.array([r.label for r in regions])
        names = [n for n, f in FEATURES.items() if f.kind == "morphology" and f.func]
        fast = _builtin_morphology(labels, _object_pixels(labels), ids, px, names)
        for name in names:
            ref = np.array([FEATURES[name].func(r, px) for r in regions])
            np.testing.assert_allclose(fast[name], ref, rtol=1e-9, atol=1e-12, err_msg=name)


def test_a_replaced_builtin_feature_is_computed_by_its_new_function():
    """The fast path only serves the built-in functions: a user's override is used."""
    from deathtrack.measure import FEATURES

    labels = np.zeros((20, 20), int)
    labels[5:15, 5:15] = 1
    original = FEATURES["solidity"]
    try:
        FEATURES["solidity"] = Feature("solidity", "1", "morphology", "test", lambda r, px: 0.5)
        assert measure_frame(labels, pixel_size_um=1.0)["solidity"].tolist() == [0.5]
    finally:
        FEATURES["solidity"] = original
    assert measure_frame(labels, pixel_size_um=1.0)["solidity"].tolist() == [1.0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_background_median_equals_numpy_median(dtype):
    from deathtrack.measure import _background_median

    rng = np.random.default_rng(3)
    for n in range(0, 40):
        img = rng.integers(-30 if dtype == np.int16 else 0, 200, (n + 1, 5)).astype(dtype)
        outside = rng.random(img.shape) > 0.4
        got, values = _background_median(img, outside), img[outside]
        if values.size:
            assert got == float(np.median(values))
        else:
            assert np.isnan(got)


@pytest.mark.parametrize("seed", range(3))
def test_measure_changed_equals_measuring_the_mended_frame_whole(seed):
    from deathtrack.measure import measure_changed

    rng = np.random.default_rng(seed)
    before = np.zeros((80, 90), np.int32)
    for k in range(1, 9):
        y, x = rng.integers(8, 72), rng.integers(8, 82)
        before[y - 4 : y + 4, x - 5 : x + 5] = k
    after = before.copy()
    after[(after == 1) & (np.arange(90)[None, :] % 2 == 0)] = 20  # one object split in two
    after[after == 2] = 3  # two merged
    after[after == 4] = 0  # one gone
    after[0:6, 0:6] = 21  # a new one, at the border
    ys, xs = np.nonzero(before == 5)
    after[max(ys.min() - 2, 0) : ys.max(), xs.min() : xs.max()] = 5  # one grown
    intensities = {
        "a": rng.normal(100, 10, before.shape).astype(np.float32),
        "b": rng.integers(0, 4000, before.shape).astype(np.uint16),
    }
    intensities["a"][3, 3] = np.nan
    kw = dict(frame=4, pixel_size_um=0.5, population="cells")
    table = measure_frame(before, intensities, **kw)
    got = measure_changed(table, before, after, intensities, **kw)
    pd.testing.assert_frame_equal(got, measure_frame(after, intensities, **kw), check_exact=True)
    assert measure_changed(table, before, before.copy(), intensities, **kw) is table
