"""3D + time (issue 17): accuracy on held-out 3D movies, the maximum projection's
recruitment bias, and peak memory of a 512² x 30-slice x 60-frame run vs its 2D projection.

Usage:
    python benchmarks/three_d.py accuracy [--seeds 1006-1013] [--workdir DIR]
    python benchmarks/three_d.py memory [--workdir DIR]

``accuracy``: movies of :func:`deathtrack.simulate3d.random_config_3d` (128² pixels, z step
2-5x the pixel size, 20, 30 or 40 slices by seed, 20 frames) at scoring seeds (from 1000:
never looked at while choosing the 3D defaults, which were chosen on development seeds
0-7), run with the default config and scored with :func:`deathtrack.evaluate.score_run`;
then the same movies maximum-projected over z and run in 2D, their immune counts within R
scored against the 3D truth.

``memory``: one 512 x 512 x 30-slice x 60-frame movie (3 channels) run in a fresh process,
then its maximum projection (512 x 512 x 60 frames) run in 2D in a fresh process; the peak
resident memory of each process tree (the run and every worker process it starts, summed,
sampled every 0.1 s with psutil) and the wall time.

Results are written to ``benchmarks/results/three_d.json`` (merged) and printed; the
Markdown summary ``benchmarks/results/three_d.md`` is written by hand from them.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "three_d.json"
ROLES = {"cells": 0, "immune": 1, "dye": 2}

CHILD = r"""
import json, sys, time
from deathtrack.config import PipelineConfig
from deathtrack.pipeline import run_stack
cfg = PipelineConfig.model_validate({"input": {"channels": json.loads(sys.argv[3])}})
t0 = time.perf_counter()
res = run_stack(sys.argv[1], cfg, sys.argv[2], progress=False)
print(json.dumps({"wall_s": time.perf_counter() - t0, "timings_s": res.timings_s,
                  "counts": res.counts}))
"""


def _seeds(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def _project(movie_path: Path, out: Path) -> Path:
    """The movie's maximum projection over z, as a (T, C, Y, X) OME-TIFF, frame by frame."""
    import numpy as np

    from deathtrack.io import open_stack, write_ome_tiff

    with open_stack(movie_path) as movie:
        cal = movie.calibration
        return write_ome_tiff(
            out,
            (movie.frame(t).max(axis=1) for t in range(movie.n_frames)),
            shape=(movie.n_frames, movie.n_channels, *movie.shape[-2:]),
            dtype=np.uint16,
            channel_names=movie.channel_names,
            pixel_size_um=cal.pixel_size_um,
            interval_s=cal.interval_s,
        )


def accuracy(seeds: list[int], workdir: Path) -> dict:
    import pandas as pd

    from deathtrack.config import PipelineConfig
    from deathtrack.evaluate import score_run
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate3d import random_config_3d, simulate_3d, write_simulation_3d

    cfg = PipelineConfig.model_validate({"input": {"channels": ROLES}})
    rows = []
    for seed in seeds:
        d = workdir / f"s{seed}"
        sim_cfg = random_config_3d(seed, n_z=(20, 30, 40)[seed % 3])
        paths = write_simulation_3d(simulate_3d(sim_cfg), d)
        t0 = time.perf_counter()
        res = run_stack(paths["movie"], cfg, d / "res3d", progress=False)
        wall = time.perf_counter() - t0
        s3 = score_run(res.out_dir, d / "movie_truth")
        proj = _project(paths["movie"], d / "projection.ome.tif")
        res2 = run_stack(proj, cfg, d / "res2d", progress=False)
        for pop in ("cells", "immune"):  # 2D labels are not compared with 3D truth
            (res2.out_dir / f"labels_{pop}.tif").unlink()
        s2 = score_run(res2.out_dir, d / "movie_truth")
        row = {
            "seed": seed,
            "n_z": sim_cfg.n_z,
            "z_ratio": round(sim_cfg.z_step_um / sim_cfg.pixel_size_um, 2),
            "snr": sim_cfg.snr,
            "run_3d_s": round(wall, 1),
            **{k: s3[k] for k in s3},
            "proj_deaths_f1": s2["deaths_f1"],
            "proj_recruit_mae": s2["recruit_mae"],
            "proj_recruit_bias": s2["recruit_bias"],
            "proj_recruit_n": s2["recruit_n"],
        }
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "cells_f1", "deaths_f1")}), flush=True)
    df = pd.DataFrame(rows)

    def pooled(val, n):
        return float((df[val] * df[n]).sum() / df[n].sum())

    tp, called, true = df["deaths_tp"].sum(), df["deaths_n_called"].sum(), df["deaths_n_true"]
    summary = {
        "seeds": seeds,
        "cells_f1_mean": float(df["cells_f1"].mean()),
        "cells_link_recall_mean": float(df["cells_link_recall"].mean()),
        "immune_f1_mean": float(df["immune_f1"].mean()),
        "immune_link_recall_mean": float(df["immune_link_recall"].mean()),
        "deaths_f1_pooled": float(2 * tp / (called + true.sum())),
        "deaths_n_true": int(true.sum()),
        "mode_balanced_accuracy_mean": float(df["mode_balanced_accuracy"].mean()),
        "death_frame_error_median": float(df["death_frame_error"].median()),
        "recruit_mae_pooled": pooled("recruit_mae", "recruit_n"),
        "recruit_bias_pooled": pooled("recruit_bias", "recruit_n"),
        "proj_recruit_mae_pooled": pooled("proj_recruit_mae", "proj_recruit_n"),
        "proj_recruit_bias_pooled": pooled("proj_recruit_bias", "proj_recruit_n"),
    }
    return {"per_seed": rows, "summary": summary}


def _tree_peak(cmd: list[str]) -> tuple[float, str]:
    """Run ``cmd``; (peak summed RSS in MiB of it and its descendants, its stdout)."""
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            procs = [ps, *ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed ({proc.returncode})")
    return peak / 2**20, out


def memory(workdir: Path) -> dict:
    from deathtrack.simulate3d import Simulation3DConfig, simulate_3d, write_simulation_3d

    sim_cfg = Simulation3DConfig(
        seed=2000, shape_yx=(512, 512), n_z=30, n_frames=60, n_cells=150, n_immune=200
    )
    movie = workdir / "big" / "movie.ome.tif"
    if not movie.is_file():
        t0 = time.perf_counter()
        write_simulation_3d(simulate_3d(sim_cfg), workdir / "big")
        print(f"simulated in {time.perf_counter() - t0:.0f} s", flush=True)
    proj = workdir / "big" / "projection.ome.tif"
    if not proj.is_file():
        _project(movie, proj)
    out = {
        "movie": {
            "shape_tczyx": [60, 3, 30, 512, 512],
            **sim_cfg.model_dump(include={"pixel_size_um", "z_step_um", "n_cells", "n_immune"}),
        }
    }
    for key, path in (("run_3d", movie), ("run_2d_projection", proj)):
        peak, text = _tree_peak(
            [sys.executable, "-c", CHILD, str(path), str(workdir / f"res_{key}"), json.dumps(ROLES)]
        )
        rec = json.loads(text.strip().splitlines()[-1])
        out[key] = {"peak_tree_rss_mb": round(peak, 1), **rec}
        print(key, round(peak), "MiB", round(rec["wall_s"]), "s", flush=True)
    out["ratio_3d_over_2d"] = round(
        out["run_3d"]["peak_tree_rss_mb"] / out["run_2d_projection"]["peak_tree_rss_mb"], 3
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["accuracy", "memory"])
    parser.add_argument("--seeds", default="1006-1013")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/three_d"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = (
        accuracy(_seeds(args.seeds), args.workdir)
        if args.what == "accuracy"
        else memory(args.workdir)
    )
    import os

    result["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[args.what] = result
    RESULTS.write_text(json.dumps(data, indent=1, default=float) + "\n")
    print(json.dumps(result.get("summary", result), indent=1, default=float))


if __name__ == "__main__":
    main()
