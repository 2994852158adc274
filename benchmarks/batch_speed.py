"""Wall time and peak memory of batch runs, and of the full pipeline vs a bare script.

Usage: python benchmarks/batch_speed.py [--workdir benchmarks/out/batch] [--record]
       [--skip-batch] [--skip-large] [--repeats 3]

0. Warm-up: a first run after removing numba's cache of deathtrack's kernels (the
   cost of the first run after installing), then the same run again.

1. Batch scaling: 1, 2 and 4 simulator movies (256×256, 3 channels, 60 frames,
   seeds 801-804), `deathtrack run` serial vs `--workers 2` (a local Dask
   cluster of 2 processes), each a fresh command.
2. Large movie: 1024×1024, 3 channels, 60 and 120 frames (preset ``large``,
   seed 7): the full `deathtrack run` (segmentation, tracking, deaths,
   recruitment, report) vs `benchmarks/reference_skimage_trackpy.py` (only
   smooth, threshold, watershed, regionprops and trackpy linking of the same
   two populations), timed in turn ``--repeats`` times in the same benchmark run;
   the ratio of the median times is the target of issue 6 (at most 1.5).

Peak memory is the largest summed resident memory of the command and all its
child processes (sampled every 0.1 s with psutil). Writes
``benchmarks/results/batch_speed.md`` with ``--record``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
DEATHTRACK = [sys.executable, "-m", "deathtrack.cli", "-q"]


def measure(cmd: list[str], pss: bool = False) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak summed RSS of its process tree in MB).

    The CPU seconds (user + system) of the command and the child processes it waited
    for are left in ``LAST_CPU_S``. With ``pss``, the peak of the tree's summed PSS
    (proportional set size: each shared page, e.g. of a library every process maps,
    divided among the processes sharing it; what the tree takes of the machine's
    memory) is left in ``LAST_PEAK_PSS_MB``, sampled every 0.5 s (reading it costs
    ~10 ms a process: not for timed runs).
    """
    global LAST_CPU_S, LAST_PER_PROCESS_MB, LAST_PEAK_PSS_MB
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak = peak_pss = 0
    at_peak: list[float] = []
    tick = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            rss = [p.memory_info().rss for p in procs if p.is_running()]
            if sum(rss) > peak:
                peak, at_peak = sum(rss), [r / 2**20 for r in rss]
            if pss and tick % 5 == 0:
                peak_pss = max(peak_pss, sum(p.memory_full_info().pss for p in procs))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        tick += 1
        time.sleep(0.1)
    LAST_PEAK_PSS_MB = peak_pss / 2**20
    LAST_PER_PROCESS_MB = sorted(at_peak, reverse=True)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU_S = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, peak / 2**20


LAST_CPU_S = float("nan")
LAST_PEAK_PSS_MB = float("nan")
#: each process's RSS (MB) at the moment the tree's sum peaked, largest first
LAST_PER_PROCESS_MB: list[float] = []


def batch_scaling(work: Path) -> list[dict]:
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    movies = []
    for seed in range(801, 805):
        path = work / f"well{seed}.ome.tif"
        if not path.exists():
            write_simulation(simulate(SimulationConfig(seed=seed)), work, name=f"well{seed}")
        movies.append(path)
    rows = []
    for n in (1, 2, 4):
        for workers in (1, 2):
            out = work / f"out_{n}_{workers}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [*DEATHTRACK, "run", *map(str, movies[:n]), "--out", str(out)]
            wall, peak = measure(cmd + (["--workers", str(workers)] if workers > 1 else []))
            rows.append(
                {
                    "stacks": n,
                    "mode": "serial" if workers == 1 else "--workers 2",
                    "wall_s": wall,
                    "peak_mb": peak,
                }
            )
            print(rows[-1], flush=True)
    return rows


def warm_up(work: Path) -> tuple[float, float]:
    """One untimed-in-the-tables run after removing numba's on-disk cache of deathtrack's
    kernels and of trackpy's solver (deathtrack.track._cache_compiled_linker): what the
    first run after installing costs (they are compiled and cached; later runs load
    them). Returns its wall time."""
    import deathtrack._kernels as kernels
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation
    from deathtrack.track import import_trackpy

    cache = Path(kernels.__file__).parent / "__pycache__"
    for f in [*cache.glob("_kernels.*.nbi"), *cache.glob("_kernels.*.nbc")]:
        f.unlink()
    import_trackpy()
    from trackpy.linking import subnetlinker

    stats = getattr(subnetlinker._numba_subnet_norecur, "stats", None)
    if stats is not None and stats.cache_path:
        for f in Path(stats.cache_path).glob("subnetlinker._numba_subnet_norecur-*.nb[ic]"):
            f.unlink()
    movie = work / "warmup.ome.tif"
    if not movie.exists():
        write_simulation(simulate(SimulationConfig(seed=800, n_frames=10)), work, name="warmup")
    out = work / "out_warmup"
    shutil.rmtree(out, ignore_errors=True)
    wall, _ = measure([*DEATHTRACK, "run", str(movie), "--out", str(out), "--no-report"])
    again, _ = measure(
        [*DEATHTRACK, "run", str(movie), "--out", str(out), "--force", "--no-report"]
    )
    print({"first_run_s": wall, "second_run_s": again}, flush=True)
    return wall, again


def _large_movie(work: Path, n_frames: int) -> Path:
    from deathtrack.simulate import preset, simulate, write_simulation

    movie = work / f"large{n_frames}.ome.tif"
    if not movie.exists():
        write_simulation(
            simulate(preset("large", seed=7, n_frames=n_frames)), work, name=f"large{n_frames}"
        )
    return movie


def memory_only(work: Path, frames: list[int]) -> list[dict]:
    """One full run per movie length, for the peak memory of the process tree (is it flat
    in the number of frames?)."""
    rows = []
    for n_frames in frames:
        movie = _large_movie(work, n_frames)
        out = work / f"large_out{n_frames}"
        shutil.rmtree(out, ignore_errors=True)
        wall, peak = measure([*DEATHTRACK, "run", str(movie), "--out", str(out)], pss=True)
        rows.append(
            {
                "frames": n_frames,
                "deathtrack_s": wall,
                "deathtrack_mb": peak,
                "deathtrack_pss_mb": LAST_PEAK_PSS_MB,
                "per_process_mb": LAST_PER_PROCESS_MB,
            }
        )
        print(rows[-1], flush=True)
    return rows


def large(work: Path, repeats: int, frames: list[int]) -> list[dict]:
    """Reference script and full run in turn, ``repeats`` times per movie (this machine's
    speed drifts by ~10-15 % between minutes: alternating keeps both under the same)."""
    rows = []
    for n_frames in frames:
        movie = _large_movie(work, n_frames)
        for rep in range(repeats):
            ref_wall, ref_peak = measure(
                [
                    sys.executable,
                    str(REPO / "benchmarks" / "reference_skimage_trackpy.py"),
                    str(movie),
                    str(work / f"reference{n_frames}.csv"),
                ]
            )
            ref_cpu = LAST_CPU_S
            out = work / f"large_out{n_frames}"
            shutil.rmtree(out, ignore_errors=True)
            wall, peak = measure([*DEATHTRACK, "run", str(movie), "--out", str(out)])
            rows.append(
                {
                    "frames": n_frames,
                    "repeat": rep + 1,
                    "reference_s": ref_wall,
                    "reference_cpu_s": ref_cpu,
                    "reference_mb": ref_peak,
                    "deathtrack_s": wall,
                    "deathtrack_cpu_s": LAST_CPU_S,
                    "deathtrack_mb": peak,
                    "per_process_mb": LAST_PER_PROCESS_MB,
                    "ratio": wall / ref_wall,
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "batch")
    ap.add_argument("--large-workdir", type=Path, default=REPO / "benchmarks" / "out" / "speed")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--skip-batch", action="store_true")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each large-movie command")
    ap.add_argument("--frames", type=int, nargs="+", default=[60, 120], help="timed movie lengths")
    ap.add_argument(
        "--memory-frames",
        type=int,
        nargs="*",
        default=[240],
        help="movie lengths run once more, for memory only",
    )
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.large_workdir.mkdir(parents=True, exist_ok=True)
    first, second = warm_up(args.workdir)
    batch = [] if args.skip_batch else batch_scaling(args.workdir)
    big = [] if args.skip_large else large(args.large_workdir, args.repeats, args.frames)
    mem = [] if args.skip_large else memory_only(args.large_workdir, args.memory_frames)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Batch runs and the full pipeline vs a bare scikit-image + trackpy script",
        "",
        f"Command: `.venv/bin/python benchmarks/batch_speed.py --record`; commit {commit}; "
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}. Peak memory: summed RSS of the command and its child "
        "processes.",
        "",
        f"First run after installing (numba compiles deathtrack's kernels into its on-disk "
        f"cache; 256², 10 frames, no report): {first:.1f} s; the same run again: {second:.1f} s. "
        "Every timing below is of later runs.",
        "",
    ]
    if batch:
        lines += [
            "## Batch scaling (256×256, 3 channels, 60 frames per movie)",
            "",
            "| stacks | mode | wall time (s) | peak memory (MB) |",
            "| ---: | --- | ---: | ---: |",
            *[
                f"| {r['stacks']} | {r['mode']} | {r['wall_s']:.1f} | {r['peak_mb']:.0f} |"
                for r in batch
            ],
            "",
        ]
    if big:
        lines += [
            "## 1024×1024, 3 channels: full `deathtrack run` vs the bare script",
            "",
            "The two commands run in turn, each run a fresh process; the ratio of the medians "
            "is the one to read.",
            "",
            "| frames | run | reference script (s) | its CPU (s) | its peak (MB) "
            "| deathtrack run (s) | its CPU (s) | its peak (MB) | ratio (wall) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *[
                f"| {r['frames']} | {r['repeat']} | {r['reference_s']:.1f} | "
                f"{r['reference_cpu_s']:.0f} | {r['reference_mb']:.0f} | {r['deathtrack_s']:.1f} | "
                f"{r['deathtrack_cpu_s']:.0f} | {r['deathtrack_mb']:.0f} | {r['ratio']:.2f} |"
                for r in big
            ],
            *[
                f"| {n} | **median** | {ref:.1f} | | | {dt:.1f} | | "
                f"{max(r['deathtrack_mb'] for r in big if r['frames'] == n):.0f} | "
                f"**{dt / ref:.2f}** |"
                for n in sorted({r["frames"] for r in big})
                for ref, dt in [
                    (
                        float(np.median([r["reference_s"] for r in big if r["frames"] == n])),
                        float(np.median([r["deathtrack_s"] for r in big if r["frames"] == n])),
                    )
                ]
            ],
            "",
            "Memory at the peak, process by process (MB, largest first; the run's own "
            "process, then any helper processes and resource trackers"
            + (
                ": none in this record, where the frames were segmented in threads):"
                if all(len(r["per_process_mb"]) == 1 for r in big)
                else "):"
            ),
            "",
            *[
                f"- {r['frames']} frames, run {r['repeat']}: "
                + ", ".join(f"{m:.0f}" for m in r["per_process_mb"])
                for r in big
            ],
            "",
        ]
    if mem:
        lines += [
            "## Peak memory vs movie length (one full run each)",
            "",
            "| frames | deathtrack run (s) | peak of the process tree (MB) "
            "| per process at the peak | peak PSS of the tree (MB) |",
            "| ---: | ---: | ---: | --- | ---: |",
            *[
                f"| {r['frames']} | {r['deathtrack_s']:.1f} | {r['deathtrack_mb']:.0f} | "
                + ", ".join(f"{m:.0f}" for m in r["per_process_mb"])
                + f" | {r['deathtrack_pss_mb']:.0f} |"
                for r in mem
            ],
            "",
            "PSS counts each shared page once over the processes that map it (with helper "
            "processes, numba's compiler library, ~70-84 MB resident, is mapped by each of "
            "them and counted once per process in the summed RSS); sampled every 0.5 s, and "
            "only in these runs (reading it slows the sampler).",
            "",
        ]
    md = "\n".join(lines)
    print(md)
    if args.record:
        (REPO / "benchmarks" / "results" / "batch_speed.md").write_text(md)


if __name__ == "__main__":
    main()
