"""Where a full `deathtrack run` spends its time, per stage and per process, with a flame graph.

Usage: python benchmarks/profile_run.py [--frames 120] [--workdir benchmarks/out/speed]
       [--rate 50] [--record]

Samples the whole process tree of one `deathtrack run` (the 1024² × 3-channel movie
of ``benchmarks/batch_speed.py``, preset ``large``, seed 7) with py-spy
(``pip install py-spy``; it reads the processes' stacks from outside, no code
changes), ``--rate`` samples a second, active threads only (a thread waiting on a
lock or a pipe is not counted), so the width of a box is CPU time. Writes
``benchmarks/results/profile_flame.png`` (one flame graph per process: the main
process and each worker, x in CPU seconds) and, with ``--record``,
``benchmarks/results/profile.md`` (inclusive CPU seconds of each stage in each
process; wall time of the run).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: stages: (label, function names whose inclusive time is the stage's), in run order
STAGES = [
    ("start-up: imports", ("_find_and_load",)),
    ("read frames (main)", ("Movie.frame",)),
    ("segment a frame (both populations)", ("segment_frame",)),
    ("  background", ("estimate_background",)),
    ("  split touching cells", ("_split_touching",)),
    ("crosstalk estimate", ("crosstalk_ratio",)),
    ("measure objects", ("measure_frame",)),
    ("mend over time (main)", ("Mender.__call__",)),
    ("write raw labels", ("_LabelStore.__setitem__",)),
    ("link (trackpy)", ("_link",)),
    ("deaths and modes", ("detect_deaths", "classify_events")),
    ("recruitment and statistics", ("_recruit",)),
    ("motility", ("motility_table", "track_motility")),
    ("label stacks (TIFF)", ("_write_label_stack",)),
    ("TrackMate XML", ("export_trackmate",)),
    ("report", ("write_report",)),
    ("  report gallery", ("_gallery_rows",)),
    ("  report figures (PNG)", ("_fig_to_uri",)),
]


def _frame_name(f: str) -> str:
    m = re.match(r"(\S+) \(", f)
    return m.group(1) if m else f


def parse(raw: Path) -> dict[str, collections.Counter]:
    """py-spy raw output -> {process label: Counter of stack tuples}."""
    procs: dict[str, collections.Counter] = {}
    names: dict[str, str] = {}
    for line in raw.read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        frames = stack.split(";")
        heads = [f for f in frames if f.startswith("process ")]
        key = heads[-1].split(":")[0] if heads else "?"
        if key not in names:
            cmd = heads[-1] if heads else ""
            kind = "worker" if "loky" in cmd else "tracker" if "tracker" in cmd else "main"
            names[key] = kind
        body = tuple(
            re.sub(r":\d+\)", ")", re.sub(r" \(.*?site-packages/", " (", f))
            for f in frames
            if not f.startswith("process ")
        )
        procs.setdefault(key, collections.Counter())[body] += int(n)
    # label: main, worker 1, worker 2 ... (by pid order); trackers dropped (idle)
    out: dict[str, collections.Counter] = {}
    k = 0
    for key in sorted(procs, key=lambda s: int(s.split()[1])):
        kind = names[key]
        if kind == "tracker":
            continue
        if kind == "worker":
            k += 1
            kind = f"worker {k}"
        out[kind] = procs[key]
    return out


def stage_seconds(stacks: collections.Counter, rate: float) -> dict[str, float]:
    res = {}
    for label, funcs in STAGES:
        total = 0
        for stack, n in stacks.items():
            if any(_frame_name(f) in funcs for f in stack):
                total += n
        res[label] = total / rate
    return res


def flame(
    ax, stacks: collections.Counter, rate: float, title: str, xmax: float, max_depth: int = 24
) -> None:
    """An icicle-style flame graph: callers on top of callees, width = CPU seconds."""
    from matplotlib.patches import Rectangle

    tree: dict = {}
    for stack, n in stacks.items():
        node = tree
        for f in stack[:max_depth]:
            child = node.setdefault(f, [0, {}])
            child[0] += n
            node = child[1]
    palette = ["#f4a261", "#e9c46a", "#e76f51", "#f6bd60", "#f7a072", "#eddea4"]
    total = sum(stacks.values()) / rate

    def draw(node: dict, x0: float, depth: int) -> None:
        x = x0
        for name, (n, kids) in sorted(node.items(), key=lambda kv: -kv[1][0]):
            w = n / rate
            short = _frame_name(name)
            colour = "#8ecae6" if "deathtrack/" in name else palette[hash(short) % len(palette)]
            ax.add_patch(Rectangle((x, depth), w, 1, facecolor=colour, edgecolor="white", lw=0.3))
            if w > total * 0.035:
                ax.text(
                    x + w / 2,
                    depth + 0.5,
                    short[: int(w / total * 120)],
                    ha="center",
                    va="center",
                    fontsize=5.5,
                    clip_on=True,
                )
            draw(kids, x, depth + 1)
            x += w

    draw(tree, 0.0, 0)
    depth = max((len(s) for s in stacks), default=1)
    ax.set_xlim(0, max(xmax, 1e-9))
    ax.set_ylim(min(depth, max_depth) + 0.5, 0)
    ax.set_yticks([])
    ax.set_xlabel("CPU seconds")
    ax.set_title(f"{title}: {total:.1f} s of CPU (blue: deathtrack's own functions)", fontsize=9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "out" / "speed")
    ap.add_argument("--rate", type=int, default=50)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        sys.exit("py-spy is not installed: pip install py-spy")
    args.workdir.mkdir(parents=True, exist_ok=True)
    movie = args.workdir / f"large{args.frames}.ome.tif"
    if not movie.exists():
        from deathtrack.simulate import preset, simulate, write_simulation

        write_simulation(
            simulate(preset("large", seed=7, n_frames=args.frames)),
            args.workdir,
            name=f"large{args.frames}",
        )
    raw = args.workdir / f"profile{args.frames}.txt"
    cmd = [sys.executable, "-m", "deathtrack.cli", "-q", "run", str(movie)]
    cmd += ["--out", str(args.workdir / f"profile_out{args.frames}"), "--force"]
    t0 = time.perf_counter()
    subprocess.run(
        [
            pyspy,
            "record",
            "--subprocesses",
            "-r",
            str(args.rate),
            "-f",
            "raw",
            "-o",
            str(raw),
            "--",
            *cmd,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    procs = parse(raw)
    # processes that did next to nothing (a resource tracker's start-up) are left out
    cpu = {label: sum(st.values()) / args.rate for label, st in procs.items()}
    procs = {label: st for label, st in procs.items() if cpu[label] >= 0.02 * max(cpu.values())}
    xmax = max(cpu[label] for label in procs)

    from matplotlib.figure import Figure

    height = 4.2 * len(procs) + 0.7
    fig = Figure(figsize=(16, height))
    axes = fig.subplots(len(procs), 1, squeeze=False)[:, 0]
    for ax, (label, stacks) in zip(axes, procs.items()):
        flame(ax, stacks, args.rate, label, xmax)
    # margins in inches, so that the title and the first plot's own title never meet
    # (a run of one process has one plot)
    fig.subplots_adjust(
        left=0.02, right=0.99, top=1 - 0.75 / height, bottom=0.6 / height, hspace=0.35
    )
    fig.suptitle(
        f"deathtrack run, 1024² × 3 channels × {args.frames} frames: where the CPU goes "
        f"(py-spy, {args.rate} Hz; wall {wall:.0f} s with py-spy attached)",
        fontsize=11,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "profile_flame.png", dpi=90)

    per = {label: stage_seconds(stacks, args.rate) for label, stacks in procs.items()}
    totals = {label: sum(stacks.values()) / args.rate for label, stacks in procs.items()}
    head = "| stage | " + " | ".join(per) + " | all |"
    lines = [head, "| --- |" + " ---: |" * (len(per) + 1)]
    for label, _ in STAGES:
        vals = [per[p][label] for p in per]
        lines.append(
            f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {sum(vals):.1f} |"
        )
    lines.append(
        "| **CPU of the process** | "
        + " | ".join(f"**{totals[p]:.1f}**" for p in per)
        + f" | **{sum(totals.values()):.1f}** |"
    )
    table = "\n".join(lines)
    print(table)
    print(f"wall {wall:.1f} s")
    if args.record:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        text = f"""# Where the time of a full run goes (issue 16)

Command: `python benchmarks/profile_run.py --frames {args.frames} --record`; commit {commit};
{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()};
{time.strftime("%Y-%m-%d")}. py-spy samples every process of the run {args.rate} times a
second and counts only active threads, so each number is CPU seconds spent inside the
stage (inclusive of what it calls); a stage's rows overlap (indented rows are parts of
the row above). Wall time of the run with py-spy attached: {wall:.1f} s.

{table}

Flame graph: `benchmarks/results/profile_flame.png` (one per process; width = CPU s).
"""
        (RESULTS / "profile.md").write_text(text)


if __name__ == "__main__":
    main()
