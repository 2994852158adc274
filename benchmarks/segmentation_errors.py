"""What went wrong in a run's segmentation, by the state of the true cells.

Usage: python benchmarks/segmentation_errors.py RESULTS TRUTH [--csv FILE] [--contrast]

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

``--contrast`` also says how visible each true cell was: its mean in the cells
channel above the frame's background (the median away from every true cell), in
units of the pixel noise there (:func:`contrast_sd`), and the share found in bands
of it. A dead cell's remains can fade into the noise (the simulator keeps them in
the truth): a cell lost at 0.5 noise SDs is not the same fault as one lost at 5.
The movie is the truth folder's ``<name>.ome.tif`` beside it (``--movie`` to give it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
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


#: bands of contrast (noise SDs) in which the share of true cells found is given
CONTRAST_BANDS = (-np.inf, 0.5, 1.0, 2.0, np.inf)


def contrast_sd(movie: np.ndarray, truth: np.ndarray, channel: int = 0) -> pd.DataFrame:
    """Each true cell's visibility per frame: its mean in ``channel`` above the frame's
    background (one level: the median of the pixels more than 3 px from every true
    cell), in units of the pixel noise there (the MAD of the residual of a 3 x 3 mean).
    NaN in a frame the cells cover whole.

    Returns ``frame, true_label, contrast_sd``.
    """
    from scipy import ndimage as ndi

    rows = []
    for f, lab in enumerate(truth):
        img = np.asarray(movie[f, channel], dtype=np.float64)
        away = ~ndi.binary_dilation(lab > 0, iterations=3)
        if not away.any():
            away = lab == 0
        n = int(lab.max()) + 1
        if not away.any():  # the cells cover the whole frame: no background to compare with
            ids = np.flatnonzero(np.bincount(lab.ravel(), minlength=n)[1:]) + 1
            rows.append(pd.DataFrame({"frame": f, "true_label": ids, "contrast_sd": np.nan}))
            continue
        resid = (img - ndi.uniform_filter(img, 3))[away]
        noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) / np.sqrt(8 / 9)
        bg = float(np.median(img[away]))
        count = np.bincount(lab.ravel(), minlength=n)
        mean = np.bincount(lab.ravel(), img.ravel(), minlength=n) / np.maximum(count, 1)
        ids = np.flatnonzero(count[1:]) + 1
        c = (mean[ids] - bg) / noise if noise > 0 else np.full(len(ids), np.nan)
        rows.append(pd.DataFrame({"frame": f, "true_label": ids, "contrast_sd": c}))
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["frame", "true_label", "contrast_sd"])
    )


def found_by_contrast(err: pd.DataFrame) -> pd.DataFrame:
    """Share of the true cell-frames found, by state and band of contrast (cell-frames
    in brackets)."""
    true = err[err["true_label"] > 0].copy()
    true["contrast"] = pd.cut(true["contrast_sd"], CONTRAST_BANDS, right=False)
    g = true.groupby(["state", "contrast"], observed=True)["kind"]
    share = g.apply(lambda k: float((k == "ok").mean()))
    size = g.size()
    return pd.concat(
        {
            "found": share.round(2).unstack("contrast"),
            "cell-frames": size.unstack("contrast", fill_value=0),
        },
        axis=1,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a `deathtrack run` results folder")
    ap.add_argument("truth", type=Path, help="the simulator's truth folder of that movie")
    ap.add_argument("--csv", type=Path, help="write every cell-frame's error here")
    ap.add_argument(
        "--contrast", action="store_true", help="also each true cell's contrast (noise SDs)"
    )
    ap.add_argument("--movie", type=Path, help="the movie (default: beside TRUTH)")
    args = ap.parse_args(argv)
    err, counts = error_table(args.results, args.truth)
    n_true = int((err["true_label"] > 0).sum())
    print(f"{n_true} true cell-frames; {int((err['kind'] == 'ok').sum())} found (IoU > 0.5)")
    print(counts.to_string())
    if args.contrast:
        movie = args.movie or args.truth.parent / (
            args.truth.name.removesuffix("_truth") + ".ome.tif"
        )
        if not movie.is_file():
            raise SystemExit(f"error: no movie file: {movie} (give it with --movie)")
        stack = tifffile.imread(movie)
        truth = tifffile.imread(args.truth / "labels_cells.tif")
        if (
            stack.ndim != 4
            or stack.shape[0] != truth.shape[0]
            or stack.shape[2:] != truth.shape[1:]
        ):
            raise SystemExit(
                f"error: {movie} is {stack.shape}, not (T, C, Y, X) with the truth's "
                f"{truth.shape}: not the same movie"
            )
        # the simulator writes the cells channel first (SimulationConfig.channel_names)
        c = contrast_sd(stack, truth, 0)
        err = err.merge(c, on=["frame", "true_label"], how="left")
        print("\nshare found, by contrast in the cells channel (noise SDs):")
        print(found_by_contrast(err).to_string(na_rep="–"))
    if args.csv:
        err.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    sys.exit(main())
