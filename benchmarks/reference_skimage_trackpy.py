"""The reference: a bare scikit-image + trackpy script, for speed (issue 6) and accuracy (issue 13).

Usage: python benchmarks/reference_skimage_trackpy.py STACK OUT.csv [--channels 0 1]
       [--pixel-size UM] [--interval S]

What a user would write without deathtrack, for the same movie and the same
two populations: per frame and channel, smooth (Gaussian), threshold (Otsu),
split touching objects (distance transform, peaks, watershed), measure
(regionprops_table: centroid, area, mean intensity), then link each
population with trackpy. Frames are read one at a time (tifffile's zarr
store), so memory stays bounded; it runs in one thread, as such a script
would. Nothing else: no background model, no dim-object pass, no deaths, no
recruitment, no report.

Its parameters are physical, set once as a user who knows the calibration
and roughly how big and how fast the cells are would set them: smoothing
1.3 µm, peaks at least 4.5 µm apart, and links up to max(10 µm, 1 µm/min ×
the interval). The calibration comes from the file's OME metadata, or from
``--pixel-size`` / ``--interval`` (Python: the arguments of
:func:`track_channel`).

From Python (``benchmarks/generalization.py`` does this)::

    from reference_skimage_trackpy import track_channel
    labels, table = track_channel("movie.ome.tif", channel=0, pixel_size_um=0.5, interval_s=60)

``labels`` is the (T, Y, X) stack whose values are trackpy particle ids + 1,
so it scores like deathtrack's ``labels_cells.tif``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import trackpy
import zarr
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.measure import label, regionprops_table
from skimage.segmentation import watershed

SIGMA_UM = 1.3
MIN_DISTANCE_UM = 4.5
MAX_SPEED_UM_PER_MIN = 1.0
MIN_STEP_UM = 10.0


def segment(
    image: np.ndarray,
    *,
    pixel_size_um: float = 0.65,
    sigma_um: float = SIGMA_UM,
    min_distance_um: float = MIN_DISTANCE_UM,
) -> np.ndarray:
    """Otsu threshold of the smoothed image, touching objects split by a distance watershed."""
    smooth = gaussian(image.astype(np.float32), sigma_um / pixel_size_um, preserve_range=True)
    mask = smooth > threshold_otsu(smooth)
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        dist,
        min_distance=max(1, int(round(min_distance_um / pixel_size_um))),
        labels=label(mask),
        exclude_border=False,
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask)


def calibration(stack: str | Path) -> tuple[float | None, float | None]:
    """Pixel size (µm) and frame interval (s) from the file's OME metadata, or None."""
    with tifffile.TiffFile(stack) as tif:
        if not tif.ome_metadata:
            return None, None
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (pixels[0] if isinstance(pixels, list) else pixels)["Pixels"]
    px = pixels.get("PhysicalSizeX")
    dt = pixels.get("TimeIncrement")
    return (float(px) if px else None), (float(dt) if dt else None)


def search_range_px(pixel_size_um: float, interval_s: float) -> float:
    """How far an object may move between frames, in pixels (what trackpy is given)."""
    return max(MIN_STEP_UM, MAX_SPEED_UM_PER_MIN * interval_s / 60.0) / pixel_size_um


def _frames(stack: str | Path):
    with tifffile.TiffFile(stack) as tif:
        arr = zarr.open(tif.series[0].aszarr(), mode="r")  # (T, C, Y, X)
        for t in range(arr.shape[0]):
            yield t, np.asarray(arr[t])


def _link(df: pd.DataFrame, search_px: float) -> pd.DataFrame:
    trackpy.quiet()
    if df.empty:
        return df.assign(particle=pd.Series(dtype=int))
    # adaptive search: what a user adds after trackpy's "subnetwork too large" error
    return trackpy.link(df, search_px, memory=2, adaptive_stop=0.3 * search_px, adaptive_step=0.9)


def track_channel(
    stack: str | Path,
    *,
    channel: int = 0,
    pixel_size_um: float | None = None,
    interval_s: float | None = None,
    sigma_um: float = SIGMA_UM,
    min_distance_um: float = MIN_DISTANCE_UM,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Segment and link one channel of a (T, C, Y, X) stack.

    Returns
    -------
    labels : ndarray of int32, shape (T, Y, X)
        Object pixels labelled with their trackpy particle id + 1.
    table : DataFrame
        ``frame, label, y, x, area, mean_intensity, particle``.
    """
    if pixel_size_um is None or interval_s is None:
        px, dt = calibration(stack)
        pixel_size_um = pixel_size_um or px or 0.65
        interval_s = interval_s or dt or 120.0
    lab_frames, rows = [], []
    for t, frame in _frames(stack):
        lab = segment(
            frame[channel],
            pixel_size_um=pixel_size_um,
            sigma_um=sigma_um,
            min_distance_um=min_distance_um,
        )
        lab_frames.append(lab.astype(np.int32))
        props = regionprops_table(
            lab, frame[channel], properties=("label", "centroid", "area", "mean_intensity")
        )
        rows.append(pd.DataFrame(props).assign(frame=t))
    df = pd.concat(rows, ignore_index=True).rename(columns={"centroid-0": "y", "centroid-1": "x"})
    linked = _link(df, search_range_px(pixel_size_um, interval_s))
    labels = np.zeros((len(lab_frames), *lab_frames[0].shape), np.int32)
    for t, lab in enumerate(lab_frames):
        here = linked[linked["frame"] == t]
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[here["label"].to_numpy(int)] = here["particle"].to_numpy(int) + 1
        labels[t] = lut[lab]
    return labels, linked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack")
    ap.add_argument("out")
    ap.add_argument("--channels", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--pixel-size", type=float, default=None, help="µm (default: from the file)")
    ap.add_argument("--interval", type=float, default=None, help="s (default: from the file)")
    ap.add_argument(
        "--search-range",
        type=float,
        default=None,
        help="pixels per frame (default: max(10 µm, 1 µm/min x interval))",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    px, dt = calibration(args.stack)
    px = args.pixel_size or px or 0.65
    dt = args.interval or dt or 120.0
    rows = {c: [] for c in args.channels}
    for t, frame in _frames(args.stack):
        for c in args.channels:
            lab = segment(frame[c], pixel_size_um=px)
            props = regionprops_table(
                lab, frame[c], properties=("label", "centroid", "area", "mean_intensity")
            )
            rows[c].append(pd.DataFrame(props).assign(frame=t))
    seg_s = time.perf_counter() - t0
    search = args.search_range or search_range_px(px, dt)
    linked = []
    for c, dfs in rows.items():
        df = pd.concat(dfs, ignore_index=True).rename(
            columns={"centroid-0": "y", "centroid-1": "x"}
        )
        linked.append(_link(df, search).assign(channel=c))
    pd.concat(linked).to_csv(args.out, index=False)
    print(f"segment+measure {seg_s:.1f} s, total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
