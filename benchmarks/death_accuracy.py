"""Death detection and apoptotic / necroptotic calls on held-out simulator seeds.

Usage: python benchmarks/death_accuracy.py [--out benchmarks/out/death] [--record]

Scenarios: with dye (default), without dye (morphology alone), dense, low SNR,
divisions without deaths, no deaths at all; seeds 501-503, never used for
tuning. A called death matches a true one within 10 µm and 4 frames. Reports
detection precision / recall / F1, median |death-frame error|, balanced
accuracy of the mode over matched events (uncertain counts as wrong), the
confusion matrix, coverage (fraction not uncertain) and false events per 100
tracks. Writes a gallery PNG of the missed and wrongly called deaths.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("default", "no_dye", "dense", "low_snr", "divisions", "no_deaths")
SEEDS = (501, 502, 503)
MODES = ("apoptotic", "necroptotic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/out/death")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    from deathtrack.evaluate import match_events
    from deathtrack.gallery import event_gallery
    from deathtrack.io import open_stack
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate import preset, simulate, write_simulation

    rows, all_matches, wrong = [], [], []
    for name in SCENARIOS:
        for seed in SEEDS:
            work = args.out / f"{name}_{seed}"
            sim = simulate(preset(name, seed=seed, n_frames=40))
            paths = write_simulation(sim, work, name="movie")
            res = run_stack(paths["movie"], None, work / "out", progress=False)
            pred = pd.read_csv(res.out_dir / "events.csv")
            truth = sim.truth()["events"]
            tracks = pd.read_csv(res.out_dir / "tracks.csv")
            n_tracks = tracks[tracks.population == "cells"].track_id.nunique()
            m = match_events(pred, truth).assign(scenario=name, seed=seed)
            all_matches.append(m)
            tp = int((m.pred_id >= 0).sum())
            rows.append(
                {
                    "scenario": name,
                    "seed": seed,
                    "n_true": len(truth),
                    "n_called": len(pred),
                    "tp": tp,
                    "false": len(pred) - tp,
                    "n_tracks": n_tracks,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
            bad = m[(m.called != m.true_mode)]
            for r in bad.itertuples():
                e = truth[truth.event_id == r.true_id].iloc[0]
                wrong.append(
                    {
                        "scenario": name,
                        "seed": seed,
                        "movie": str(paths["movie"]),
                        "event_id": len(wrong) + 1,
                        "frame": int(e["frame"]),
                        "y": e["y"],
                        "x": e["x"],
                        "mode": f"{e['mode']} -> {r.called}",
                        "p_necroptotic": r.p,
                    }
                )
            for _, f in pred[~pred.event_id.isin(m.pred_id)].iterrows():  # false calls
                wrong.append(
                    {
                        "scenario": name,
                        "seed": seed,
                        "movie": str(paths["movie"]),
                        "event_id": len(wrong) + 1,
                        "frame": int(f["frame"]),
                        "y": f["y"],
                        "x": f["x"],
                        "mode": f"no death -> {f['mode']}",
                        "p_necroptotic": f["p_necroptotic"],
                    }
                )
    df = pd.DataFrame(rows)
    matches = pd.concat(all_matches, ignore_index=True)
    summary = []
    for name, g in df.groupby("scenario", sort=False):
        mm = matches[(matches.scenario == name) & (matches.pred_id >= 0)]
        tp, n_true, n_called = g.tp.sum(), g.n_true.sum(), g.n_called.sum()
        prec = tp / n_called if n_called else float("nan")
        rec = tp / n_true if n_true else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if n_true and n_called and prec + rec else float("nan")
        per_mode = [
            (mm[mm.true_mode == k].called == k).mean() for k in MODES if (mm.true_mode == k).any()
        ]
        summary.append(
            {
                "scenario": name,
                "true deaths": int(n_true),
                "called": int(n_called),
                "precision": round(prec, 3),
                "recall": round(rec, 3),
                "F1": round(f1, 3),
                "median |frame error|": float(np.nanmedian(mm.frame_error.abs()))
                if len(mm)
                else float("nan"),
                "mode balanced acc.": round(float(np.mean(per_mode)), 3)
                if per_mode
                else float("nan"),
                "coverage": round(float((mm.called != "uncertain").mean()), 3)
                if len(mm)
                else float("nan"),
                "false per 100 tracks": round(100 * (g.false.sum()) / g.n_tracks.sum(), 2),
            }
        )
    summary = pd.DataFrame(summary)
    conf = pd.crosstab(matches.true_mode, matches.called)
    print(summary.to_string(index=False))
    print(conf)
    gallery = args.out / "wrong_calls.png"
    if wrong:
        w = pd.DataFrame(wrong)
        # crops come from each event's own movie: one gallery per movie, stacked vertically
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        parts = []
        for k, (movie_path, sub) in enumerate(w.groupby("movie", sort=False)):
            part = args.out / f"wrong_{k}.png"
            with open_stack(movie_path) as movie:
                event_gallery(movie, sub, part, title_columns=("mode", "p_necroptotic"))
            parts.append(plt.imread(part))
        width = max(p.shape[1] for p in parts)
        stacked = np.concatenate(
            [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=1) for p in parts]
        )
        plt.imsave(gallery, stacked)
    if args.record:
        out = REPO / "benchmarks/results/death_accuracy.md"
        import subprocess as sp

        commit = sp.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip()
        wrong_txt = (
            pd.DataFrame(wrong).drop(columns=["movie", "event_id"]).to_markdown(index=False)
            if wrong
            else "none"
        )
        out.write_text(
            f"""# Death detection and classification accuracy

Command: `.venv/bin/python benchmarks/death_accuracy.py --record`; 2 cores, Python 3.11; commit
{commit}. Simulator scenarios at 256×256, 40 frames, held-out seeds {", ".join(map(str, SEEDS))}
(never used for tuning). A call matches a true death within 10 µm and 4 frames; the mode's
balanced accuracy is over matched deaths, with `uncertain` counted as wrong.

{summary.to_markdown(index=False)}

Confusion matrix (true mode × call, all scenarios; `missed` = not detected):

{conf.to_markdown()}

Missed and wrongly called deaths:

{wrong_txt}

Gallery of every missed, wrong and false call (crops around the event, cells and dye
channels, frames relative to the death): `death_wrong_calls.png`.
""",
            encoding="utf-8",
        )
        if wrong:
            (REPO / "benchmarks/results/death_wrong_calls.png").write_bytes(gallery.read_bytes())
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
