"""Measure every object of a z-stack: 3D position, volume, surface, shape, intensities.

One row per object, with the per-object columns the 2D stages read
(:mod:`deathtrack.death`, :mod:`deathtrack.classify`, :mod:`deathtrack.track`,
:mod:`deathtrack.recruit`) given their 3D meaning, explicitly:

==================  ===========================================================
column              3D meaning
==================  ===========================================================
``z, y, x``         centroid in voxels; ``z_um, y_um, x_um`` in µm
``area_um2``        *equivalent area*: ``pi r**2`` of the ball of the object's
                    volume (:func:`deathtrack.simulate3d.equivalent_area_um2`);
                    ratios of it are volume ratios to the power 2/3, so the
                    death stage's area thresholds (shrinkage to 0.85, swelling)
                    and ``sqrt(area / pi)`` as a radius keep their meaning
``volume_um3``      voxels x voxel volume
``surface_um2``     area of the marching-cubes mesh of the object
``sphericity``      ``pi**(1/3) (6 V)**(2/3) / A`` on the mesh (1 for a ball)
``circularity``     = ``sphericity`` (what the mode call reads as rounding up)
``solidity``        mesh volume / volume of its convex hull (blebs lower it)
``roughness``       mesh surface / convex-hull surface - 1 (0 when convex)
``n_fragments``     26-connected pieces of the object (apoptotic bodies)
``major_axis_um``,  4 sqrt of the largest and smallest eigenvalue of the
``minor_axis_um``   object's second moments in µm (as in 2D);
``eccentricity``    ``sqrt(1 - smallest / largest)``
``touches_border``  the object touches a face of the volume (x, y or z)
``<channel>_*``     the 2D intensity statistics (mean, total, std, p10, p50,
                    p90) over the object's voxels, and ``_bg``: the median of
                    the voxels outside every object
==================  ===========================================================

Examples
--------
>>> import numpy as np
>>> lab = np.zeros((10, 30, 30), np.int32); lab[2:8, 5:25, 5:25] = 1
>>> df = measure_volume(lab, pixel_size_um=0.5, z_step_um=2.0)
>>> float(df["volume_um3"].iloc[0])
1200.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.measure import marching_cubes, mesh_surface_area

from . import columns as col
from .measure import INTENSITY_STATS, _background_median, _intensity_stats
from .simulate3d import VOLUME_UM3, equivalent_area_um2

logger = logging.getLogger(__name__)

__all__ = ["SHAPE_COLUMNS", "measure_volume"]

#: morphology columns of a 3D object, in table order
SHAPE_COLUMNS = [
    col.AREA_UM2,
    VOLUME_UM3,
    "surface_um2",
    "sphericity",
    "circularity",
    "solidity",
    "roughness",
    "eccentricity",
    "major_axis_um",
    "minor_axis_um",
    "n_fragments",
]


def _mesh_shape(mask: np.ndarray, spacing) -> tuple[float, float, float, float]:
    """(surface µm², mesh volume µm³, hull volume µm³, hull surface µm²) of a mask."""
    from scipy.spatial import ConvexHull, QhullError

    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=spacing)
    area = float(mesh_surface_area(verts, faces))
    tri = verts[faces]
    vol = float(abs(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6)
    try:
        hull = ConvexHull(verts)
        return area, vol, float(hull.volume), float(hull.area)
    except (QhullError, ValueError):  # flat: one voxel thick
        return area, vol, vol, area


def measure_volume(
    labels: np.ndarray,
    intensities: Mapping[str, np.ndarray] | None = None,
    *,
    frame: int = 0,
    pixel_size_um: float,
    z_step_um: float,
    population: str = col.CELLS,
) -> pd.DataFrame:
    """One row per object of a label volume (see the module docstring for the columns).

    Parameters
    ----------
    labels : ndarray of int, shape (Z, Y, X)
        0 is background; a label may have several pieces.
    intensities : mapping of str to ndarray (Z, Y, X)
        Volumes to measure inside each object, by channel name or role.
    frame, population
        Written to the ``frame`` and ``population`` columns.
    pixel_size_um, z_step_um
        Voxel size in µm.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"`labels` must be 3D (Z, Y, X), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"`labels` must be integers, got {labels.dtype}")
    if pixel_size_um <= 0 or z_step_um <= 0:
        raise ValueError("`pixel_size_um` and `z_step_um` must be > 0")
    intensities = dict(intensities or {})
    for name, img in intensities.items():
        if np.shape(img) != labels.shape:
            raise ValueError(
                f"intensity image {name!r} (shape {np.shape(img)}) must have the same shape as "
                f"`labels` (shape {labels.shape})"
            )
    spacing = np.array([z_step_um, pixel_size_um, pixel_size_um], float)
    voxel = float(np.prod(spacing))
    boxes = ndi.find_objects(labels)
    ids = np.array([i for i, sl in enumerate(boxes, start=1) if sl is not None], np.int64)
    rows: dict[str, list] = {c: [] for c in (col.Z, col.Y, col.X, *SHAPE_COLUMNS)}
    border = []
    nz, ny, nx = labels.shape
    for k in ids:
        sl = boxes[k - 1]
        mask = labels[sl] == k
        idx = np.nonzero(mask)
        n = len(idx[0])
        c = [float(i.mean()) + s.start for i, s in zip(idx, sl)]
        rows[col.Z].append(c[0])
        rows[col.Y].append(c[1])
        rows[col.X].append(c[2])
        vol = n * voxel
        rows[VOLUME_UM3].append(vol)
        rows[col.AREA_UM2].append(float(equivalent_area_um2(vol)))
        # second moments in µm²: the inertia ellipsoid's axes
        d = np.stack([(i - i.mean()) * s for i, s in zip(idx, spacing)])
        ev = np.clip(np.linalg.eigvalsh(d @ d.T / max(n, 1)), 0, None)
        rows["major_axis_um"].append(float(4 * np.sqrt(ev[-1])))
        rows["minor_axis_um"].append(float(4 * np.sqrt(ev[0])))
        rows["eccentricity"].append(float(np.sqrt(1 - ev[0] / ev[-1])) if ev[-1] > 0 else 0.0)
        rows["n_fragments"].append(int(ndi.label(mask, structure=np.ones((3, 3, 3)))[1]))
        area, mvol, hvol, harea = _mesh_shape(mask, spacing)
        rows["surface_um2"].append(area)
        sph = float(np.pi ** (1 / 3) * (6 * mvol) ** (2 / 3) / area) if area > 0 else 1.0
        rows["sphericity"].append(min(sph, 1.0))
        rows["circularity"].append(min(sph, 1.0))
        rows["solidity"].append(float(min(mvol / hvol, 1.0)) if hvol > 0 else 1.0)
        rows["roughness"].append(float(max(area / harea - 1.0, 0.0)) if harea > 0 else 0.0)
        border.append(
            sl[0].start == 0
            or sl[0].stop == nz
            or sl[1].start == 0
            or sl[1].stop == ny
            or sl[2].start == 0
            or sl[2].stop == nx
        )
    out: dict[str, object] = {
        col.FRAME: np.full(len(ids), frame, np.int64),
        col.LABEL: ids,
        col.POPULATION: np.full(len(ids), population, dtype=object),
    }
    z, y, x = (np.asarray(rows[c], float) for c in (col.Z, col.Y, col.X))
    out.update({col.Z: z, col.Y: y, col.X: x})
    out.update({col.Z_UM: z * spacing[0], col.Y_UM: y * spacing[1], col.X_UM: x * spacing[2]})
    for c in SHAPE_COLUMNS:
        out[c] = np.asarray(rows[c], np.int64 if c == "n_fragments" else float)
    out["touches_border"] = np.asarray(border, bool)
    background = labels == 0
    for name, img in intensities.items():
        stats = (
            _intensity_stats(labels, img, ids)
            if len(ids)
            else {s: np.zeros(0) for s in INTENSITY_STATS}
        )
        for s in INTENSITY_STATS:
            out[f"{name}_{s}"] = stats[s]
        out[f"{name}_bg"] = np.full(len(ids), _background_median(img, background))
    return pd.DataFrame(out)
