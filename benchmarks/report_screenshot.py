"""Look at the HTML reports as a person sees them: screenshots of a stack and a batch report.

Usage: python benchmarks/report_screenshot.py [--out benchmarks/results] [--height 4000]

Simulates two 40-frame movies with about 20 deaths each (seeds 12 and 14),
runs the pipeline on them, adds a corrupt file that fails, writes
``summary.csv`` and the pooled ``recruitment_stats.csv`` the way a batch
does, renders every report, and takes screenshots with headless Chromium:
``report_stack.png`` (the seed-12 stack) and ``report_batch.png``. Working
files go to ``benchmarks/out/report/``. Also prints how long each report took.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from deathtrack.config import PipelineConfig
from deathtrack.pipeline import run_stack
from deathtrack.recruit import compare_modes
from deathtrack.report import write_batch_report, write_report
from deathtrack.simulate import SimulationConfig, simulate, write_simulation

REPO = Path(__file__).resolve().parents[1]
SEEDS = (12, 14)


def chromium_screenshot(html: Path, png: Path, height: int) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size=1400,{height}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def make_batch(work: Path) -> Path:
    """Two analysed stacks and one corrupt file, as ``deathtrack run ... --out`` leaves them."""
    movies, out = work / "movies", work / "results"
    shutil.rmtree(work, ignore_errors=True)
    movies.mkdir(parents=True)
    rows = []
    for seed in SEEDS:
        sim = simulate(
            SimulationConfig(
                seed=seed,
                shape_yx=(256, 256),
                n_frames=40,
                n_cells=26,
                n_immune=16,
                p_apoptotic=0.4,
                p_necroptotic=0.4,
                p_divide=0.1,
            )
        )
        movie = write_simulation(sim, movies, name=f"well_{seed}")["movie"]
        result = run_stack(movie, PipelineConfig(), out, progress=False)
        run = json.loads((result.out_dir / "run.json").read_text())
        rows.append(
            {"stack": str(movie), "stem": result.out_dir.name, "status": "ok", "reason": ""}
            | run["counts"]
        )
    corrupt = movies / "well_99.ome.tif"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 64)
    try:
        run_stack(corrupt, PipelineConfig(), out, progress=False)
        reason = ""
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
    rows.append({"stack": str(corrupt), "stem": "well_99", "status": "failed", "reason": reason})
    pd.DataFrame(rows).to_csv(out / "summary.csv", index=False)
    events = pd.concat(
        [pd.read_csv(out / r["stem"] / "events.csv").assign(stack=r["stem"]) for r in rows[:-1]],
        ignore_index=True,
    )
    compare_modes(events, stack_col="stack").to_csv(out / "recruitment_stats.csv", index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--height", type=int, default=4000, help="screenshot height (px)")
    args = parser.parse_args()
    out = make_batch(REPO / "benchmarks/out/report")
    stems = [p.name for p in sorted(out.iterdir()) if (p / "run.json").exists()]
    for stem in stems:
        n = len(pd.read_csv(out / stem / "events.csv"))
        t0 = time.perf_counter()
        write_report(out / stem)
        print(f"{stem}: report of {n} deaths in {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    write_batch_report(out)
    print(f"batch report in {time.perf_counter() - t0:.2f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    chromium_screenshot(out / stems[0] / "report.html", args.out / "report_stack.png", args.height)
    chromium_screenshot(out / "report.html", args.out / "report_batch.png", args.height)
    print(f"wrote {args.out / 'report_stack.png'} and {args.out / 'report_batch.png'}")


if __name__ == "__main__":
    main()
