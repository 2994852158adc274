"""The reference for issue 6's speed target: a bare scikit-image + trackpy script.

Usage: python benchmarks/reference_skimage_trackpy.py STACK OUT.csv [--channels 0 1]

What a user would write without deathtrack, for the same movie and the same
two populations: per frame and channel, smooth (Gaussian), threshold (Otsu),
split touching objects (distance transform, peaks, watershed), measure
(regionprops_table: centroid, area, mean intensity), then link each
population with trackpy. Frames are read one at a time (tifffile's zarr
store), so memory stays bounded; it runs in one thread, as such a script
would. Nothing else: no background model, no dim-object pass, no deaths, no
recruitment, no label stacks, no report.
"""

from __future__ import annotations

import argparse
import time

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


def segment(image: np.ndarray, sigma: float = 2.0, min_distance: int = 7) -> np.ndarray:
    smooth = gaussian(image.astype(np.float32), sigma, preserve_range=True)
    mask = smooth > threshold_otsu(smooth)
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        dist, min_distance=min_distance, labels=label(mask), exclude_border=False
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-dist, markers, mask=mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack")
    ap.add_argument("out")
    ap.add_argument("--channels", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--search-range", type=float, default=15.0, help="pixels per frame")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tifffile.TiffFile(args.stack) as tif:
        arr = zarr.open(tif.series[0].aszarr(), mode="r")  # (T, C, Y, X)
        rows = {c: [] for c in args.channels}
        for t in range(arr.shape[0]):
            frame = arr[t]
            for c in args.channels:
                lab = segment(frame[c])
                props = regionprops_table(
                    lab, frame[c], properties=("label", "centroid", "area", "mean_intensity")
                )
                rows[c].append(pd.DataFrame(props).assign(frame=t))
    seg_s = time.perf_counter() - t0
    trackpy.quiet()
    linked = []
    for c, dfs in rows.items():
        df = pd.concat(dfs, ignore_index=True).rename(
            columns={"centroid-0": "y", "centroid-1": "x"}
        )
        linked.append(trackpy.link(df, args.search_range, memory=2).assign(channel=c))
    pd.concat(linked).to_csv(args.out, index=False)
    print(f"segment+measure {seg_s:.1f} s, total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
