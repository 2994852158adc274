"""What went wrong in a run's segmentation, by the state of the true cells.

Usage: python benchmarks/segmentation_errors.py RESULTS TRUTH [--csv FILE]

RESULTS is a ``deathtrack run`` results folder (its ``labels_cells.tif``); TRUTH is
the simulator's truth folder of the same movie (``labels_cells.tif``, ``cells.csv``,
``events.csv``), e.g. ``benchmarks/out/generalization/movies/dense_3/movie_truth``
after ``benchmarks/generalization.py --simulate-only --families dense --seeds 3``.

Detection F1 says how many true cells were not found; this table says how
(:func:`deathtrack.evaluate.detection_errors`: missed, split, merged with a
neighbour, outlined too small or too large) and for which cells: alive, dividing,
dying or dead, by death mode (an apoptotic cell's bodies and a necroptotic cell's
ghost fail in different ways). Each cell is counted once per frame; the last row
counts the objects drawn where there is no cell. Use it on development seeds only
(seeds 0-99; see ``generalization.py``): looking at scoring seeds tunes on them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import tifffile

from deathtrack.evaluate import ERROR_KINDS, detection_errors


def error_table(results: Path, truth: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per cell-frame errors with the cell's state, counts by state and kind)."""
    need = {
        "results": results / "labels_cells.tif",
        "truth labels": truth / "labels_cells.tif",
        "truth cells": truth / "cells.csv",
    }
    for what, path in need.items():
        if not path.is_file():
            raise SystemExit(f"error: no {what} file: {path}")
    pred = tifffile.imread(need["results"])
    true = tifffile.imread(need["truth labels"])
    if pred.shape != true.shape:
        raise SystemExit(
            f"error: {need['results']} is {pred.shape} but {need['truth labels']} is "
            f"{true.shape}: not the same movie"
        )
    err = detection_errors(true, pred)
    cells = pd.read_csv(need["truth cells"], usecols=["frame", "cell_id", "state"])
    events = truth / "events.csv"
    modes = pd.read_csv(events, usecols=["cell_id", "mode"]) if events.is_file() else None
    err = err.merge(
        cells.rename(columns={"cell_id": "true_label"}), on=["frame", "true_label"], how="left"
    )
    err["state"] = err["state"].fillna("(no cell)")
    if modes is not None and len(modes):
        err = err.merge(
            modes.rename(columns={"cell_id": "true_label"}), on="true_label", how="left"
        )
        dying = err["state"].isin(["dying", "dead"]) & err["mode"].notna()
        err.loc[dying, "state"] = err.loc[dying, "state"] + " " + err.loc[dying, "mode"]
        err = err.drop(columns="mode")
    counts = pd.crosstab(err["state"], err["kind"]).reindex(
        columns=[k for k in ERROR_KINDS if k in set(err["kind"])], fill_value=0
    )
    return err, counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a `deathtrack run` results folder")
    ap.add_argument("truth", type=Path, help="the simulator's truth folder of that movie")
    ap.add_argument("--csv", type=Path, help="write every cell-frame's error here")
    args = ap.parse_args(argv)
    err, counts = error_table(args.results, args.truth)
    n_true = int((err["true_label"] > 0).sum())
    print(f"{n_true} true cell-frames; {int((err['kind'] == 'ok').sum())} found (IoU > 0.5)")
    print(counts.to_string())
    if args.csv:
        err.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    sys.exit(main())
