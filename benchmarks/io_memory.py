"""Opening a large stack does not read it: peak memory while iterating all frames.

Usage: python benchmarks/io_memory.py [--size-gb 2] [--dir DIR]

Writes an uncompressed OME-TIFF of ``--size-gb`` (1024 x 1024 uint16 frames,
one channel, streamed to disk), then in a fresh process opens it with
``deathtrack.io.open_stack`` and reads every frame, reporting the peak
resident memory (ru_maxrss) of that process and the read rate. Deletes the
file afterwards.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READER = r"""
import json, resource, sys, time
import numpy as np
from deathtrack.io import open_stack
path = sys.argv[1]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
with open_stack(path) as m:
    opened = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    checksum = 0
    for t, frame in enumerate(m.iter_frames("cells")):
        checksum += int(frame[0, 0])
    n, shape = m.n_frames, m.shape
elapsed = time.perf_counter() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"n_frames": n, "shape": shape, "rss_before_mb": before / 1024,
                  "rss_after_open_mb": opened / 1024, "rss_peak_mb": after / 1024,
                  "seconds": elapsed, "checksum": checksum}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the big file")
    args = parser.parse_args()
    from deathtrack.io import write_ome_tiff

    frame_bytes = 1024 * 1024 * 2
    n = int(args.size_gb * 1e9 // frame_bytes)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "big.ome.tif"
        t0 = time.perf_counter()
        frames = (np.full((1, 1024, 1024), t % 65535, np.uint16) for t in range(n))
        write_ome_tiff(
            path,
            frames,
            shape=(n, 1, 1024, 1024),
            dtype=np.uint16,
            channel_names=["cells"],
            pixel_size_um=1,
            interval_s=1,
            compression=None,
        )
        write_s = time.perf_counter() - t0
        size_gb = path.stat().st_size / 1e9
        out = subprocess.run(
            [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, check=True
        )
        res = json.loads(out.stdout)
    res.update(
        file_gb=round(size_gb, 3),
        write_s=round(write_s, 1),
        read_mb_per_s=round(size_gb * 1e3 / res["seconds"], 1),
    )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
