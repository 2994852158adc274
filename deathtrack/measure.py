"""Measure every object of every frame: position, morphology and intensities.

Built on :func:`skimage.measure.regionprops_table` with ``spacing`` so that
lengths and areas come out in µm. Every measure is a :class:`Feature` in the
:data:`FEATURES` registry (name, unit, kind, description); users may add
their own with :func:`register_feature`.

Morphology that tells deaths apart (``DESIGN.md``): apoptotic cells shrink
(``area_um2`` down), bleb (``solidity`` down, ``roughness`` up) and fragment
(``n_fragments`` up); necroptotic cells swell and round up (``circularity``
up, smooth edge); the reporter concentrates (``*_mean`` up) or dilutes and
drops at rupture.

Examples
--------
>>> import numpy as np
>>> labels = np.zeros((20, 20), int); labels[5:15, 5:15] = 1
>>> measure_frame(labels, pixel_size_um=0.5)["area_um2"].tolist()
[25.0]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

# imported here, not in the functions: frames are measured by several threads, and
# scikit-image's lazily loaded submodules must not be first loaded by two at once
from skimage.measure import perimeter, regionprops

from . import columns as col
from ._kernels import masked_histogram, object_shapes, sort_by_label

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURES",
    "Feature",
    "feature_table",
    "measure_frame",
    "measure_movie",
    "register_feature",
]

INTENSITY_STATS = ("mean", "total", "std", "p10", "p50", "p90")


@dataclass(frozen=True)
class Feature:
    """One per-object measure.

    ``func(region, pixel_size_um) -> float`` receives a
    :class:`skimage.measure.RegionProperties` (built with ``spacing``).
    """

    name: str
    unit: str
    kind: str  # "position" | "morphology" | "intensity"
    description: str
    func: Callable | None = None


FEATURES: dict[str, Feature] = {}


def register_feature(feature: Feature) -> None:
    """Add a feature to the registry; names must be new."""
    if feature.name in FEATURES:
        raise ValueError(f"a feature named {feature.name!r} is already registered")
    if feature.kind not in ("position", "morphology", "intensity"):
        raise ValueError(
            f"feature kind must be position, morphology or intensity, got {feature.kind!r}"
        )
    FEATURES[feature.name] = feature


def _perimeter_um(r, px):
    return float(r.perimeter) if r.area > 1 * px * px else 4.0 * px


def _circularity(r, px):
    p = _perimeter_um(r, px)
    return float(min(1.0, 4 * np.pi * r.area / p**2)) if p > 0 else 1.0


def _roughness(r, px):
    """Edge roughness: perimeter / perimeter of the convex hull - 1 (0 for convex)."""
    if r.area <= 4 * px * px:
        return 0.0

    hull = np.pad(r.image_convex, 1)
    p_hull = perimeter(hull) * px
    p = perimeter(np.pad(r.image, 1)) * px
    return float(max(0.0, p / p_hull - 1.0)) if p_hull > 0 else 0.0


def _n_fragments(r, px):
    return float(ndi.label(r.image, structure=np.ones((3, 3)))[1])


def _touches_border(r, px, shape=None):
    return float("nan")  # filled in by measure_frame (needs the image shape)


for _f in (
    Feature(
        col.AREA_UM2,
        "µm²",
        "morphology",
        "area of all pieces of the object",
        lambda r, px: float(r.area),
    ),
    Feature(
        "perimeter_um", "µm", "morphology", "perimeter (scikit-image, 4-connected)", _perimeter_um
    ),
    Feature("circularity", "1", "morphology", "4π·area/perimeter², 1 for a disc", _circularity),
    Feature(
        "solidity",
        "1",
        "morphology",
        "area / convex hull area; blebbing lowers it",
        lambda r, px: float(r.solidity),
    ),
    Feature(
        "eccentricity",
        "1",
        "morphology",
        "of the ellipse with the same moments (0 = round)",
        lambda r, px: float(r.eccentricity),
    ),
    Feature(
        "major_axis_um",
        "µm",
        "morphology",
        "major axis of that ellipse",
        lambda r, px: float(r.axis_major_length),
    ),
    Feature(
        "minor_axis_um",
        "µm",
        "morphology",
        "minor axis of that ellipse",
        lambda r, px: float(r.axis_minor_length),
    ),
    Feature(
        "roughness",
        "1",
        "morphology",
        "perimeter / convex-hull perimeter - 1: 0 for a smooth convex outline, up with blebs",
        _roughness,
    ),
    Feature(
        "n_fragments",
        "count",
        "morphology",
        "connected pieces of the object (apoptotic bodies stay with their cell)",
        _n_fragments,
    ),
):
    register_feature(_f)
register_feature(Feature("touches_border", "bool", "position", "the object touches the image edge"))
register_feature(
    Feature(
        "<channel>_bg",
        "a.u.",
        "intensity",
        "median of the channel outside every object in the frame (background)",
    )
)
for _stat in INTENSITY_STATS:
    register_feature(
        Feature(
            f"<channel>_{_stat}",
            "a.u.",
            "intensity",
            {
                "mean": "mean intensity",
                "total": "summed intensity",
                "std": "standard deviation",
                "p10": "10th percentile",
                "p50": "median",
                "p90": "90th percentile",
            }[_stat]
            + " of the channel inside the object (NaN pixels ignored)",
        )
    )

BASE_COLUMNS = [col.FRAME, col.LABEL, col.POPULATION, col.Y, col.X, col.Y_UM, col.X_UM]

#: the built-in morphology functions: :func:`measure_frame` computes these together
#: (one perimeter per object, moments for all objects at once) with the same results
_BUILTIN_FUNCS = {name: f.func for name, f in FEATURES.items() if f.func is not None}


def _object_pixels(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every object pixel's label, row and column, and per label (indexed by label value)
    the pixel count and mean row and column: the centroids, and the moments' centre; last,
    the object pixels' flat indices (for :func:`_intensity_stats`)."""
    lab = labels.ravel()
    idx = np.flatnonzero(lab)
    ly = lab[idx]
    yy, xx = np.divmod(idx, labels.shape[1])
    size = int(ly.max(initial=0)) + 1
    cnt = np.bincount(ly, minlength=size)
    my = np.bincount(ly, weights=yy, minlength=size) / np.maximum(cnt, 1)
    mx = np.bincount(ly, weights=xx, minlength=size) / np.maximum(cnt, 1)
    return ly, yy, xx, cnt, my, mx, idx


def _builtin_morphology(
    labels: np.ndarray, pixels: tuple, ids: np.ndarray, px: float, names: list[str]
) -> dict[str, np.ndarray]:
    """The built-in morphology features in ``names``, equal to their registry functions.

    ``pixels``: :func:`_object_pixels` of the label image. Perimeters, convex hulls and
    pieces come from one compiled pass over the objects (:mod:`deathtrack._kernels`).
    """
    out: dict[str, np.ndarray] = {}
    ly, yy, xx, cnt, my, mx = pixels[:6]
    area = cnt[ids].astype(np.float64) * px * px
    if col.AREA_UM2 in names:
        out[col.AREA_UM2] = area
    need_hull = bool({"solidity", "roughness"} & set(names))
    if {"perimeter_um", "circularity", "roughness", "solidity", "n_fragments"} & set(names):
        p_pix, pieces, hull_count, hull_p = object_shapes(labels, ids, hull=need_hull)
    if {"perimeter_um", "circularity", "roughness"} & set(names):
        p_raw = p_pix * px
        p = np.where(area > px * px, p_raw, 4.0 * px)
        if "perimeter_um" in names:
            out["perimeter_um"] = p
        if "circularity" in names:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["circularity"] = np.where(p > 0, np.minimum(1.0, 4 * np.pi * area / p**2), 1.0)
        if "roughness" in names:
            p_hull = hull_p * px
            with np.errstate(divide="ignore", invalid="ignore"):
                rough = np.where(p_hull > 0, np.maximum(0.0, p_raw / p_hull - 1.0), 0.0)
            out["roughness"] = np.where(area <= 4 * px * px, 0.0, rough)
    if "solidity" in names:
        pixel_area = px * px  # scikit-image's area / area_convex, both in µm²
        out["solidity"] = area / (hull_count * pixel_area)
    if {"eccentricity", "major_axis_um", "minor_axis_um"} & set(names):
        # second central moments of every object at once (µm²): the inertia tensor's
        # eigenvalues, as scikit-image computes them object by object
        size, c = len(cnt), np.maximum(cnt, 1)
        dy, dx = yy - my[ly], xx - mx[ly]
        vyy = (np.bincount(ly, weights=dy * dy, minlength=size) / c)[ids] * px * px
        vxx = (np.bincount(ly, weights=dx * dx, minlength=size) / c)[ids] * px * px
        vxy = (np.bincount(ly, weights=dx * dy, minlength=size) / c)[ids] * px * px
        half = np.sqrt(((vxx - vyy) / 2) ** 2 + vxy**2)
        l1 = np.maximum((vxx + vyy) / 2 + half, 0)
        l2 = np.maximum((vxx + vyy) / 2 - half, 0)
        if "eccentricity" in names:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["eccentricity"] = np.where(l1 > 0, np.sqrt(1 - l2 / l1), 0.0)
        if "major_axis_um" in names:
            out["major_axis_um"] = 4 * np.sqrt(l1)
        if "minor_axis_um" in names:
            out["minor_axis_um"] = 4 * np.sqrt(l2)
    if "n_fragments" in names:
        out["n_fragments"] = pieces.astype(np.float64)
    return out


def _intensity_stats(
    labels: np.ndarray,
    image: np.ndarray,
    ids: np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """NaN-aware per-label statistics, vectorised over labels (sorted by label).

    ``pixels``: the object pixels' flat indices and labels, when already known (every
    channel of a frame has the same)."""
    if pixels is None:
        lab = labels.ravel()
        sel = np.flatnonzero(lab)  # object pixels only: most of a frame is background
        lab = lab[sel]
    else:
        sel, lab = pixels
    image = np.asarray(image)
    val = image.ravel()[sel].astype(np.float64)
    if image.dtype.kind == "f":  # integer pixels are never NaN
        keep = ~np.isnan(val)
        if not keep.all():
            lab, val = lab[keep], val[keep]
    n = int(ids.max(initial=0)) + 1
    counts = np.bincount(lab, minlength=n)[ids]
    sums = np.bincount(lab, weights=val, minlength=n)[ids]
    sq = np.bincount(lab, weights=val * val, minlength=n)[ids]
    lab, val = sort_by_label(lab, val)
    starts = np.searchsorted(lab, ids)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        var = np.where(counts > 1, sq / np.maximum(counts, 1) - mean**2, 0.0)
    out["mean"] = mean
    out["total"] = np.where(counts > 0, sums, np.nan)
    out["std"] = np.where(counts > 0, np.sqrt(np.maximum(var, 0)), np.nan)
    for q in (10, 50, 90):
        idx = starts + np.floor((counts - 1) * q / 100.0).astype(np.int64)
        vals = val[np.clip(idx, 0, max(len(val) - 1, 0))] if len(val) else np.zeros(len(ids))
        out[f"p{q}"] = np.where(counts > 0, vals, np.nan)
    return out


def _background_median(image: np.ndarray, background: np.ndarray) -> float:
    """Median of the finite pixels outside every object (NaN if there are none)."""
    image = np.asarray(image)
    if image.dtype in (np.uint8, np.uint16):
        # the histogram of the pixels in place (no copy of them)
        hist = np.cumsum(masked_histogram(image, background))
        return _counts_median(hist) if hist[-1] else float("nan")
    values = image[background]
    if values.dtype.kind == "i" and values.size and values.dtype.itemsize <= 2:
        # signed 8/16-bit pixels: from a histogram of the values shifted to start at 0
        shift = int(values.min())
        return _counts_median(np.cumsum(np.bincount(values.astype(np.int64) - shift))) + shift
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    return float(np.median(values)) if values.size else float("nan")


def _counts_median(cumulative: np.ndarray) -> float:
    """The median, exact, of the integers 0, 1, ... counted ``np.cumsum`` of their counts
    times (at least one): the middle value, or the mean of the middle two."""
    n = int(cumulative[-1])
    lo = int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))
    hi = int(np.searchsorted(cumulative, n // 2, side="right"))
    return (lo + hi) / 2


def measure_frame(
    labels: np.ndarray,
    intensities: Mapping[str, np.ndarray] | None = None,
    *,
    frame: int = 0,
    pixel_size_um: float = 1.0,
    population: str = col.CELLS,
    features: Iterable[str] | None = None,
) -> pd.DataFrame:
    """One row per object of a label image.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        0 is background. A label may have several disconnected pieces.
    intensities : mapping of str to ndarray (Y, X)
        Images to measure inside each object, by channel name or role; NaN
        pixels are ignored.
    frame, population
        Written to the ``frame`` and ``population`` columns.
    pixel_size_um
        Pixel size in µm: positions ``y_um, x_um``, lengths and areas are physical.
    features
        Morphology feature names to compute (default: all registered).

    Returns
    -------
    DataFrame
        ``frame, label, population, y, x, y_um, x_um``, the morphology
        features, ``touches_border``, then ``<channel>_mean, _total, _std,
        _p10, _p50, _p90, _bg`` for each intensity image (``_bg``: median outside
        every object in the frame, the background). Rows sorted by label.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"`labels` must be 2D (Y, X), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be integers, got {labels.dtype}")
    if labels.size == 0:
        raise ValueError(f"`labels` is empty (shape {labels.shape})")
    if labels.min() < 0:
        raise ValueError(
            f"`labels` must be >= 0 (0 = background, 1..N objects); found {labels.min()}"
        )
    if pixel_size_um <= 0:
        raise ValueError(f"`pixel_size_um` must be > 0, got {pixel_size_um}")
    intensities = dict(intensities or {})
    for name, img in intensities.items():
        if np.shape(img) != labels.shape:
            raise ValueError(
                f"intensity image {name!r} (shape {np.shape(img)}) must have the same shape as "
                f"`labels` (shape {labels.shape})"
            )
    names = [f.name for f in FEATURES.values() if f.kind == "morphology" and f.func is not None]
    if features is not None:
        unknown = sorted(set(features) - set(names))
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; registered: {names}")
        names = [n for n in names if n in set(features)]

    px = float(pixel_size_um)
    pixels = _object_pixels(labels)
    ids = np.flatnonzero(pixels[3]).astype(np.int64)
    ids = ids[ids > 0]
    rows = {
        col.FRAME: np.full(len(ids), frame, np.int64),
        col.LABEL: ids,
        col.POPULATION: np.full(len(ids), population, dtype=object),
    }
    # centroids (pixel means), for all objects at once
    my, mx = pixels[4], pixels[5]
    rows[col.Y], rows[col.X] = my[ids], mx[ids]
    rows[col.Y_UM], rows[col.X_UM] = my[ids] * px, mx[ids] * px
    builtin = [name for name in names if FEATURES[name].func is _BUILTIN_FUNCS.get(name)]
    fast = _builtin_morphology(labels, pixels, ids, px, builtin) if len(ids) else {}
    regions = None  # scikit-image's regions only for a user's own features
    for name in names:
        if name in fast:
            rows[name] = fast[name]
            continue
        if regions is None:
            regions = regionprops(labels, spacing=(px, px))
        func = FEATURES[name].func
        rows[name] = np.array([func(r, px) for r in regions], dtype=np.float64)
    border = np.zeros(int(ids.max(initial=0)) + 1, bool)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    border[np.unique(edge[edge > 0])] = True
    rows["touches_border"] = border[ids] if len(ids) else np.zeros(0, bool)
    background = labels == 0
    for cname, img in intensities.items():
        stats = (
            _intensity_stats(labels, img, ids, (pixels[6], pixels[0]))
            if len(ids)
            else {s: np.zeros(0) for s in INTENSITY_STATS}
        )
        for s in INTENSITY_STATS:
            rows[f"{cname}_{s}"] = stats[s]
        rows[f"{cname}_bg"] = np.full(len(ids), _background_median(img, background))
    df = pd.DataFrame(rows)
    if "n_fragments" in df:
        df["n_fragments"] = df["n_fragments"].astype(np.int64)
    return df


def measure_changed(
    table: pd.DataFrame,
    before: np.ndarray,
    after: np.ndarray,
    intensities: Mapping[str, np.ndarray] | None = None,
    *,
    frame: int = 0,
    pixel_size_um: float = 1.0,
    population: str = col.CELLS,
) -> pd.DataFrame:
    """:func:`measure_frame` of ``after``, from ``table`` (:func:`measure_frame` of
    ``before``) by measuring again only the objects whose pixels changed.

    Every per-object value depends on the object's own pixels only, so the other rows
    stand; the background columns (``<channel>_bg``, the median outside every object)
    are taken again from ``after`` for all rows. Equal to measuring ``after`` whole
    (a test asserts it); a frame whose labels were mended in a few places costs a few
    objects instead of a frame.
    """
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(
            f"`before` (shape {before.shape}) and `after` (shape {after.shape}) differ in shape"
        )
    diff = before != after
    if not diff.any():
        return table
    touched = np.union1d(np.unique(before[diff]), np.unique(after[diff]))
    touched = touched[touched > 0]
    redo = np.zeros(int(max(after.max(initial=0), touched.max(initial=0))) + 1, bool)
    redo[touched] = True
    intensities = dict(intensities or {})
    fresh = measure_frame(
        np.where(redo[after], after, 0),
        intensities,
        frame=frame,
        pixel_size_um=pixel_size_um,
        population=population,
    )
    kept = table[~table[col.LABEL].isin(touched)]
    out = pd.concat([kept, fresh], ignore_index=True) if len(kept) else fresh
    out = out.sort_values(col.LABEL, kind="stable", ignore_index=True)
    background = after == 0
    for cname, img in intensities.items():
        out[f"{cname}_bg"] = _background_median(img, background)
    return out


def measure_movie(
    labels_frames: Iterable[np.ndarray],
    intensity_frames: Iterable[Mapping[str, np.ndarray]] | None = None,
    *,
    pixel_size_um: float,
    population: str = col.CELLS,
    features: Iterable[str] | None = None,
) -> pd.DataFrame:
    """:func:`measure_frame` over frames (streamed), concatenated."""
    tables = []
    intens = iter(intensity_frames) if intensity_frames is not None else None
    for t, lab in enumerate(labels_frames):
        imgs = next(intens) if intens is not None else None
        tables.append(
            measure_frame(
                lab,
                imgs,
                frame=t,
                pixel_size_um=pixel_size_um,
                population=population,
                features=features,
            )
        )
    if not tables:
        return measure_frame(
            np.zeros((1, 1), np.int32),
            pixel_size_um=pixel_size_um,
            population=population,
            features=features,
        )
    return pd.concat(tables, ignore_index=True)


def feature_table() -> pd.DataFrame:
    """The registry as a table: name, unit, kind, description."""
    return pd.DataFrame(
        [(f.name, f.unit, f.kind, f.description) for f in FEATURES.values()],
        columns=["name", "unit", "kind", "description"],
    )
