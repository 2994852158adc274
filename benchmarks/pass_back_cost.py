"""What the pass from the last frame back (``segment.cells.split_merged_seen_later``) costs.

Usage: python benchmarks/pass_back_cost.py [--reps 3] [--workdir benchmarks/out/pass_back]
       [--record]

Runs the pipeline (in this process, as a script or a Dask worker does) on two movies, with
the pass on and off in turn, ``--reps`` times each, after a first run that is not timed: the 1024² × 3-channel movie of
``batch_speed.py`` (preset ``large``, seed 7, 60 frames: cells that rarely touch, so the
pass reads every frame's labels and changes none) and a packed ``dense`` development movie
(seed 3, 512 px cap, 60 frames: the pass changes frames, which are measured again). Reports
the wall time of segmenting and measuring (where the pass runs) and of the whole run, and
how many frames the pass changed. With ``--record``, writes
``benchmarks/results/pass_back_cost.md``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


class _Count(logging.Handler):
    """Keeps the pass's "N of M frames mended from the last frame back" log line."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.mended = None

    def emit(self, record):
        msg = record.getMessage()
        if "mended from the last frame back" in msg and msg.startswith("cells"):
            self.mended = msg.split(": ", 1)[1].split(" mended")[0]


def _movies(work: Path) -> dict:
    """name -> (movie file, its simulation config)."""
    from deathtrack.simulate import preset, random_config, simulate, write_simulation

    movies = {
        "large (1024², 60 frames)": (
            work / "large60.ome.tif",
            preset("large", seed=7, n_frames=60),
        ),
        "dense dev seed 3 (512 px cap, 60 frames)": (
            work / "dense3.ome.tif",
            random_config("dense", 3, max_frames=60, max_side_px=512),
        ),
    }
    for path, sim in movies.values():
        if not path.is_file():
            write_simulation(simulate(sim), work, name=path.name.split(".")[0])
    return movies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "pass_back")
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)

    from generalization import pipeline_config  # defaults plus calibration and roles

    from deathtrack.pipeline import run_stack

    count = _Count()
    logging.getLogger("deathtrack").addHandler(count)
    logging.getLogger("deathtrack").setLevel(logging.INFO)
    rows = []
    for name, (movie, sim) in _movies(a.workdir).items():
        # a first run, not timed: numba's kernels load (or compile) and files are cached
        run_stack(movie, pipeline_config(sim, {}), a.workdir / "warmup", progress=False)
        for rep in range(a.reps):
            for on in (True, False):
                cfg = pipeline_config(sim, {})
                cfg.segment.cells.split_merged_seen_later = on
                count.mended = None
                t0 = time.perf_counter()
                res = run_stack(movie, cfg, a.workdir / f"out_{on}_{rep}", progress=False)
                wall = time.perf_counter() - t0
                rows.append((name, on, rep, res.timings_s["segment_measure"], wall, count.mended))
                print(rows[-1], flush=True)

    lines = [
        "| movie | pass back | run | segment + measure (s) | whole run (s) | frames the pass changed |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, on, rep, seg, wall, mended in rows:
        lines.append(
            f"| {name} | {'on' if on else 'off'} | {rep + 1} | {seg:.1f} | {wall:.1f} | "
            f"{mended if on else '-'} |"
        )
    for name in dict.fromkeys(r[0] for r in rows):
        med = {
            on: statistics.median(r[3] for r in rows if r[0] == name and r[1] == on)
            for on in (True, False)
        }
        lines.append(f"| {name} | **median: on − off** | | **{med[True] - med[False]:+.1f}** | | |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        RESULTS.joinpath("pass_back_cost.md").write_text(
            "# The pass from the last frame back: what it costs\n\n"
            f"Command: `python benchmarks/pass_back_cost.py --reps {a.reps} --record` · commit "
            f"{commit} · {platform.machine()}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}\n\n"
            "Each run in this process (frames segmented in threads), the pass on and off in "
            "turn, after a first run per movie that is not timed. The pass reads every frame's labels back and compares them with the frame "
            "after; only the frames it changes are read from the movie and measured again.\n\n"
            f"{table}\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    main()
