"""Speed and peak memory of `deathtrack run` (segmentation + measurement + tracking).

Usage: python benchmarks/speed_memory.py [--workdir DIR] [--workers 2]

Simulates 1024 x 1024 x 3-channel movies of 60 and 120 frames (preset
``large``, same seed), runs the pipeline on each in a fresh process and reports
wall time, frames per second and peak resident memory (ru_maxrss of the child).
Peak memory must not grow with the number of frames.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from deathtrack.config import PipelineConfig, apply_overrides
from deathtrack.pipeline import run_stack
cfg = apply_overrides(PipelineConfig(), [f"segment.workers={sys.argv[3]}"])
t0 = time.perf_counter()
res = run_stack(sys.argv[1], cfg, sys.argv[2], progress=False)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_rss_mb": peak, "timings_s": res.timings_s,
                  "counts": res.counts}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/speed"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from deathtrack.simulate import preset, simulate, write_simulation

    rows = []
    for n_frames in (60, 120):
        movie = args.workdir / f"large{n_frames}.ome.tif"
        if not movie.exists():
            t0 = time.perf_counter()
            write_simulation(
                simulate(preset("large", seed=7, n_frames=n_frames)),
                args.workdir,
                name=f"large{n_frames}",
            )
            print(f"simulated {movie} in {time.perf_counter() - t0:.0f} s", flush=True)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(movie), str(args.workdir / "out"), str(args.workers)],
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        res.update(n_frames=n_frames, fps=n_frames / res["wall_s"])
        rows.append(res)
        print(json.dumps(res), flush=True)
    print(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count(),
                },
                "workers": args.workers,
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
