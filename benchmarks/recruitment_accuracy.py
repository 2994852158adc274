"""Immune recruitment measured by deathtrack against the simulator's truth.

Usage: python benchmarks/recruitment_accuracy.py [--out benchmarks/out/recruit] [--record]
       [--workers 2] [--n-null 20]

Two scenarios at 320×320 px, 60 frames, ~28 target cells of which ~70 % die,
25 immune cells, held-out seeds never used for tuning:

- ``recruit`` (seeds 601-605): immune cells are drawn to deaths, more to
  necroptotic ones. Reports the mean absolute error of ``n_within_r`` and
  ``n_contact`` against the truth per event-frame (events matched within
  10 µm and 4 frames, compared frame by frame), and the necroptotic −
  apoptotic difference of the mean count after death, measured (our events,
  our calls) vs true (true events, true modes), pooled over seeds.
- ``ignore`` (seeds 701-720): immune cells ignore deaths. The primary test
  (Mann–Whitney on ``mean_within_r_post``, apoptotic vs necroptotic) must
  say "no significant difference at alpha 0.05" in at least 95 % of seeds.

Writes ``recruitment_accuracy.md`` and ``recruitment_curves.png`` (mean
recruitment curve ± 95 % bootstrap CI by mode, aligned at death, with the
truth and the chance level) with ``--record`` into ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
RECRUIT_SEEDS = tuple(range(601, 606))
NULL_SEEDS = tuple(range(701, 721))
MOVIE = dict(
    shape_yx=(320, 320),
    n_frames=60,
    n_cells=28,
    p_apoptotic=0.35,
    p_necroptotic=0.35,
    p_divide=0.1,
    n_immune=25,
)


def run_one(args) -> dict:
    scenario, seed, out = args
    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate import PRESETS, SimulationConfig, simulate, write_simulation

    preset = PRESETS["ignore"] if scenario == "ignore" else {}
    sim = simulate(SimulationConfig(**{**MOVIE, **preset, "seed": seed}))
    paths = write_simulation(sim, Path(out) / f"{scenario}_{seed}", name="movie")
    t0 = time.perf_counter()
    res = run_stack(
        paths["movie"], PipelineConfig(), Path(out) / f"{scenario}_{seed}_out", progress=False
    )
    truth = paths["events"].parent
    return {
        "scenario": scenario,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
        "events": pd.read_csv(res.out_dir / "events.csv"),
        "curves": pd.read_csv(res.out_dir / "recruitment.csv"),
        "stats": pd.read_csv(res.out_dir / "recruitment_stats.csv"),
        "true_events": pd.read_csv(truth / "events.csv"),
        "true_curves": pd.read_csv(truth / "recruitment.csv"),
    }


def frame_errors(r: dict) -> tuple[list[float], list[float], int, int]:
    """|ours - truth| of n_within_r and n_contact on matched events, frame by frame."""
    ev, tev, rec, trec = r["events"], r["true_events"], r["curves"], r["true_curves"]
    ew, ec, used = [], [], set()
    for e in tev.itertuples():
        if not len(ev):
            break
        d = np.hypot(ev.y_um - e.y_um, ev.x_um - e.x_um)
        ok = ev[(d <= 10) & ((ev.frame - e.frame).abs() <= 4) & ~ev.event_id.isin(used)]
        if not len(ok):
            continue
        m = ok.iloc[0]
        used.add(int(m.event_id))
        ours = rec[rec.event_id == m.event_id].set_index("frame")
        t = trec[trec.event_id == e.event_id]
        truth = t.assign(frame=t.dt + e.frame).set_index("frame")
        common = ours.index.intersection(truth.index)
        ew += list(np.abs(ours.loc[common, "n_within_r"] - truth.loc[common, "n_within_r"]))
        ec += list(np.abs(ours.loc[common, "n_contact"] - truth.loc[common, "n_contact"]))
    return ew, ec, len(used), len(tev)


def mode_difference(events: pd.DataFrame, curves: pd.DataFrame, mode_col: str) -> tuple:
    """Mean over events of their mean n_within_r from death on, by mode; nec - apo."""
    post = curves[curves.dt >= 0].groupby("event_id")["n_within_r"].mean()
    per = events.set_index("event_id")[mode_col].to_frame().join(post.rename("post"))
    m = per.groupby(mode_col)["post"].mean()
    return m.get("necroptotic", np.nan), m.get("apoptotic", np.nan)


def curve_figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rng = np.random.default_rng(0)
    fig = Figure(figsize=(7.5, 4.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    colors = {"apoptotic": "#1f77b4", "necroptotic": "#d62728"}
    for mode, color in colors.items():
        ours, truth, chance = [], [], []
        for r in results:
            ids = r["events"].loc[r["events"]["mode"] == mode, "event_id"]
            c = r["curves"][r["curves"].event_id.isin(ids)]
            ours.append(c.assign(key=lambda d, s=r["seed"]: s * 1000 + d.event_id))
            tids = r["true_events"].loc[r["true_events"]["mode"] == mode, "event_id"]
            truth.append(r["true_curves"][r["true_curves"].event_id.isin(tids)])
            chance.append(c)
        ours = pd.concat(ours)
        piv = ours.pivot_table(index="key", columns="t_rel_s", values="n_within_r")
        mean = piv.mean()
        boots = np.array(
            [piv.iloc[rng.integers(0, len(piv), len(piv))].mean().to_numpy() for _ in range(500)]
        )
        lo, hi = np.nanquantile(boots, [0.025, 0.975], axis=0)
        t_min = mean.index.to_numpy() / 60
        ax.plot(t_min, mean.to_numpy(), color=color, lw=2, label=f"{mode}, measured (n={len(piv)})")
        ax.fill_between(t_min, lo, hi, color=color, alpha=0.2, lw=0)
        tr = pd.concat(truth).groupby("t_rel_s")["n_within_r"].mean()
        ax.plot(tr.index / 60, tr.to_numpy(), color=color, ls="--", lw=1.2, label=f"{mode}, truth")
        ch = pd.concat(chance).groupby("t_rel_s")["expected_within_r"].mean()
        ax.plot(
            ch.index / 60,
            ch.to_numpy(),
            color=color,
            ls=":",
            lw=1.2,
            label=f"{mode}, chance (live-cell controls)",
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("time relative to death (min)")
    ax.set_ylabel("immune cells within 30 µm")
    ax.set_title("Recruitment by death mode (simulator, seeds 601-605; band: 95 % bootstrap CI)")
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "recruit")
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n-null", type=int, default=len(NULL_SEEDS))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [("recruit", s, args.out) for s in RECRUIT_SEEDS]
    jobs += [("ignore", s, args.out) for s in NULL_SEEDS[: args.n_null]]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_one, jobs))
    wall = time.perf_counter() - t0
    recruit = [r for r in results if r["scenario"] == "recruit"]
    null = [r for r in results if r["scenario"] == "ignore"]

    rows = []
    all_w, all_c = [], []
    for r in recruit:
        ew, ec, n_match, n_true = frame_errors(r)
        o_n, o_a = mode_difference(r["events"], r["curves"], "mode")
        t_n, t_a = mode_difference(r["true_events"], r["true_curves"], "mode")
        all_w += ew
        all_c += ec
        rows.append(
            {
                "seed": r["seed"],
                "true deaths": n_true,
                "matched": n_match,
                "MAE n_within_r": np.mean(ew),
                "MAE n_contact": np.mean(ec),
                "nec - apo (measured)": o_n - o_a,
                "nec - apo (truth)": t_n - t_a,
                "p (Mann-Whitney)": r["stats"].iloc[0]["p_value"],
                "Cliff's delta": r["stats"].iloc[0]["effect_size"],
            }
        )
    per_seed = pd.DataFrame(rows)
    ev_all = pd.concat([r["events"].assign(seed=r["seed"]) for r in recruit])
    cur_all = pd.concat(
        [r["curves"].assign(event_id=r["curves"].event_id + 1000 * r["seed"]) for r in recruit]
    )
    ev_all = ev_all.assign(event_id=ev_all.event_id + 1000 * ev_all.seed)
    tev_all = pd.concat(
        [
            r["true_events"].assign(event_id=r["true_events"].event_id + 1000 * r["seed"])
            for r in recruit
        ]
    )
    tcur_all = pd.concat(
        [
            r["true_curves"].assign(event_id=r["true_curves"].event_id + 1000 * r["seed"])
            for r in recruit
        ]
    )
    on, oa = mode_difference(ev_all, cur_all, "mode")
    tn, ta = mode_difference(tev_all, tcur_all, "mode")
    diff_ours, diff_true = on - oa, tn - ta
    rel = abs(diff_ours - diff_true) / abs(diff_true)

    from deathtrack.recruit import compare_modes

    pooled = compare_modes(ev_all.assign(stack=ev_all.seed), ["mean_within_r_post"]).iloc[0]
    null_rows = [
        {
            "seed": r["seed"],
            "events": len(r["events"]),
            "apoptotic": int((r["events"]["mode"] == "apoptotic").sum()),
            "necroptotic": int((r["events"]["mode"] == "necroptotic").sum()),
            "p (Mann-Whitney)": r["stats"].iloc[0]["p_value"] if len(r["stats"]) else np.nan,
            "p (permutation)": r["stats"].iloc[0]["p_permutation"] if len(r["stats"]) else np.nan,
            "Cliff's delta": r["stats"].iloc[0]["effect_size"] if len(r["stats"]) else np.nan,
        }
        for r in null
    ]
    null_df = pd.DataFrame(null_rows)
    tested = null_df["p (Mann-Whitney)"].notna()
    not_sig = float((null_df.loc[tested, "p (Mann-Whitney)"] >= 0.05).mean())
    not_sig_perm = float((null_df.loc[tested, "p (permutation)"] >= 0.05).mean())

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    md = f"""# Immune recruitment against the simulator's truth

Command: `.venv/bin/python benchmarks/recruitment_accuracy.py --record`; commit {commit};
{platform.machine()}, 2 cores, Python {platform.python_version()}; wall time {wall:.0f} s
with 2 worker processes. Movies: 320×320 px (0.65 µm), 60 frames of 2 min, ~28 target
cells (35 % apoptotic, 35 % necroptotic, 10 % dividing), 25 immune cells; R = 30 µm,
window −10..+20 frames. Held-out seeds never used for tuning.

## Recruitment scenario (immune cells drawn to deaths; seeds 601-605)

Per event-frame errors against the truth, on events matched within 10 µm and 4 frames:

{per_seed.to_markdown(index=False, floatfmt=".3g")}

- Pooled MAE of `n_within_r`: **{np.mean(all_w):.3f}** cells per event-frame
  ({len(all_w)} event-frames; target <= 0.3); of `n_contact`: {np.mean(all_c):.3f}.
- Necroptotic − apoptotic mean count after death: measured **{diff_ours:.2f}**
  (necroptotic {on:.2f}, apoptotic {oa:.2f}; our events and calls) vs true **{diff_true:.2f}**
  (necroptotic {tn:.2f}, apoptotic {ta:.2f}); relative error **{rel:.1%}** (target <= 20 %).
- Pooled over the five movies (resampling and permutations within each movie): difference
  {pooled.difference:.2f} (95 % CI {pooled.ci_low:.2f} to {pooled.ci_high:.2f}), Cliff's delta
  {pooled.effect_size:.2f} ({pooled.effect_size_ci_low:.2f} to {pooled.effect_size_ci_high:.2f}),
  Mann–Whitney p = {pooled.p_value:.2g}, permutation p = {pooled.p_permutation:.2g}.

## Null scenario (immune cells ignore deaths; seeds 701-{700 + len(null)})

{null_df.to_markdown(index=False, floatfmt=".3g")}

- Seeds with no significant difference at alpha 0.05 (Mann–Whitney, primary metric
  `mean_within_r_post`): **{not_sig:.0%}** of {int(tested.sum())} (target >= 95 %);
  with the permutation test: {not_sig_perm:.0%}.

Figure: `recruitment_curves.png` — measured mean curve by mode (solid, 95 % bootstrap CI
over events), the truth (dashed) and the chance level from live-cell controls (dotted).
"""
    print(md)
    target = RESULTS if args.record else args.out
    target.mkdir(parents=True, exist_ok=True)
    curve_figure(recruit, target / "recruitment_curves.png")
    if args.record:
        (RESULTS / "recruitment_accuracy.md").write_text(md)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
