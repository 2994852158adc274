"""Real data with DEFAULT parameters plus calibration only (issue 13).

Usage: python benchmarks/real_data.py [--only gowt1 hela adcc] [--record]

- GOWT1 (``../shared/data/ctc_Fluo-N2DH-GOWT1_02_full``, 92 frames of mouse
  stem-cell nuclei, 0.24 µm, 5 min): the Cell Tracking Challenge's DET, SEG and
  TRA (``ctc_evaluate``, py-ctcmetrics) against its gold truth, with the defaults
  and with the tuned preset ``benchmarks/presets/ctc_gowt1.toml`` beside them.
- HeLa (``../shared/data/ctc_Fluo-N2DL-HeLa_02_subset``, 0.645 µm, 30 min):
  detection F1 (IoU >= 0.5) against its reference segmentation
  (``Fluo_Hela_02_ERR_SEG.tif``, every frame), and the deaths called on it (no
  dye; mostly divisions the tracks did not link: a known fault, described in
  the results file).
- ADCC (``../shared/data/celldetective_adcc_snapshot``, one frame, Hoechst
  nuclei, PI, NK cells; 0.3112 µm): nuclei detection F1 against the 48
  labelled target nuclei, and the PI-positive nuclei (the dye's rise over the
  nucleus-free background, ``death.dye_min_rise_sd``) drawn for inspection.

Nothing here tuned the defaults, with the two exceptions the results file
names: they were chosen on development seeds of the simulator's families
(``benchmarks/generalization.py``); these sequences were run with the defaults
once the defaults were fixed. Overlays are written to
``benchmarks/results/real_data_*.png``; ``--record`` writes
``benchmarks/results/real_data.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"

from tracking_accuracy import ctc_scores, overlay  # noqa: E402

from deathtrack.config import PipelineConfig, apply_overrides, load_config  # noqa: E402
from deathtrack.evaluate import detection_scores  # noqa: E402
from deathtrack.measure import measure_frame  # noqa: E402
from deathtrack.pipeline import run_stack  # noqa: E402
from deathtrack.segment import segment_frame  # noqa: E402


def gowt1(work: Path) -> list[dict]:
    seq = DATA / "ctc_Fluo-N2DH-GOWT1_02_full"
    calib = ["input.pixel_size_um=0.24", "input.interval_s=300"]
    rows = []
    for name, cfg in (
        ("defaults + calibration", apply_overrides(PipelineConfig(), calib)),
        (
            "preset ctc_gowt1.toml (tuned on this sequence)",
            apply_overrides(load_config(REPO / "benchmarks/presets/ctc_gowt1.toml"), calib),
        ),
    ):
        tag = "defaults" if name.startswith("defaults") else "preset"
        t0 = time.perf_counter()
        res = run_stack(
            seq / "02",
            cfg,
            work / f"gowt1_{tag}",
            progress=False,
            export_ctc=work / f"gowt1_{tag}_ctc",
        )
        s = ctc_scores(work / f"gowt1_{tag}_ctc" / "02_RES", seq / "02_GT")
        rows.append(
            {
                "data": "GOWT1 02 (92 frames)",
                "parameters": name,
                **{k: round(v, 3) for k, v in s.items()},
                "seconds": round(time.perf_counter() - t0),
            }
        )
        if tag == "defaults":
            tracks = pd.read_csv(res.out_dir / "tracks.csv")
            t = 60
            overlay(
                tifffile.imread(seq / "02" / f"t{t:03d}.tif"),
                tifffile.imread(res.out_dir / "labels_cells.tif", key=t),
                tracks,
                t,
                RESULTS / "real_data_gowt1_t060.png",
                f"GOWT1 02, frame {t}, defaults",
            )
        print(rows[-1], flush=True)
    return rows


def hela(work: Path) -> list[dict]:
    seq = DATA / "ctc_Fluo-N2DL-HeLa_02_subset"
    cfg = apply_overrides(PipelineConfig(), ["input.pixel_size_um=0.645", "input.interval_s=1800"])
    t0 = time.perf_counter()
    res = run_stack(seq / "Fluo_Hela_02_img.tif", cfg, work / "hela", progress=False)
    pred = tifffile.imread(res.out_dir / "labels_cells.tif")
    ref = tifffile.imread(seq / "Fluo_Hela_02_ERR_SEG.tif")
    s, _ = detection_scores(zip(ref, pred))
    tracks = pd.read_csv(res.out_dir / "tracks.csv")
    overlay(
        tifffile.imread(seq / "Fluo_Hela_02_img.tif", key=10),
        pred[10],
        tracks,
        10,
        RESULTS / "real_data_hela_t010.png",
        "HeLa 02, frame 10, defaults",
    )
    row = {
        "data": f"HeLa 02 ({len(ref)} frames)",
        "parameters": "defaults + calibration",
        "F1": round(s["f1"], 3),
        "precision": round(s["precision"], 3),
        "recall": round(s["recall"], 3),
        # no dye and no death truth: a movie of dividing cells, so these calls are mostly
        # divisions the tracks did not link (see the note under the table)
        "cell tracks": int(tracks.loc[tracks["population"] == "cells", "track_id"].nunique()),
        "deaths called (no dye)": len(pd.read_csv(res.out_dir / "events.csv")),
        "seconds": round(time.perf_counter() - t0),
    }
    print(row, flush=True)
    return [row]


def adcc() -> list[dict]:
    d = DATA / "celldetective_adcc_snapshot"
    img = tifffile.imread(d / "sample.tif").astype(np.float32)
    ref = tifffile.imread(d / "sample_labelled.tif").astype(np.int32)
    px = 0.3112
    cfg = PipelineConfig()
    t0 = time.perf_counter()
    pred = segment_frame(img[3], cfg.segment.cells, pixel_size_um=px)
    s, _ = detection_scores([(ref, pred)])
    # PI-positive nuclei: mean PI in the nucleus above the PI background (the median of
    # the pixels outside every nucleus) by more than the dye rise a death needs and 3
    # noise SDs (one frame: the rise is against the background, not against the past)
    pi = img[2]
    outside = pi[pred == 0]
    bg = float(np.median(outside))
    noise = 1.4826 * float(np.median(np.abs(outside - bg)))
    n = int(pred.max())
    # each nucleus's PI: mean and spread (measured as the pipeline measures every channel)
    nuclei = measure_frame(pred, {"pi": pi}, pixel_size_um=px, features=())
    # the dye rise a death needs is in units of the dye's pixel noise within cells (the
    # median over nuclei of the PI's standard deviation inside each), as in detect_deaths
    unit = float(nuclei["pi_std"].median()) if n else 0.0
    rise = max(cfg.death.dye_min_rise_sd * unit, 3 * noise)
    positive = nuclei.loc[nuclei["pi_mean"] - bg > rise, "label"].to_numpy()
    # bright PI objects that no nucleus covers (a dead cell whose Hoechst is faint)
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(pi, 2)
    so = smooth[pred == 0]
    so_bg = float(np.median(so))
    blobs, nb = ndi.label(smooth > so_bg + 8 * 1.4826 * float(np.median(np.abs(so - so_bg))))
    sizes = np.bincount(blobs.ravel(), minlength=nb + 1)
    inside = np.bincount(blobs[pred > 0], minlength=nb + 1)
    big = sizes >= cfg.segment.cells.min_area_um2 / px**2
    big[0] = False
    stray = int((big & (inside < 0.5 * sizes)).sum())
    _adcc_overlay(img, ref, pred, positive, RESULTS / "real_data_adcc.png")
    row = {
        "data": "ADCC snapshot (1 frame, 48 labelled nuclei)",
        "parameters": "defaults + calibration",
        "F1": round(s["f1"], 3),
        "precision": round(s["precision"], 3),
        "recall": round(s["recall"], 3),
        "nuclei found": n,
        "PI-positive nuclei": len(positive),
        "PI objects": int(big.sum()),
        "PI objects mostly outside nuclei": stray,
        "seconds": round(time.perf_counter() - t0),
    }
    print(row, flush=True)
    return [row]


def _adcc_overlay(img, ref, pred, positive, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    fig, axes = plt.subplots(1, 2, figsize=(14, 7))
    for ax, ch, title in (
        (axes[0], 3, "Hoechst: labelled (green), found (magenta)"),
        (axes[1], 2, "PI: nuclei called PI-positive (yellow)"),
    ):
        im = img[ch]
        ax.imshow(im, cmap="gray", vmin=np.percentile(im, 1), vmax=np.percentile(im, 99.7))
        ax.set_title(title)
        ax.axis("off")
    for labels, colour, ax in ((ref, (0, 1, 0), axes[0]), (pred, (1, 0, 1), axes[0])):
        b = find_boundaries(labels)
        rgba = np.zeros((*b.shape, 4))
        rgba[b] = (*colour, 1)
        ax.imshow(rgba)
    b = find_boundaries(np.where(np.isin(pred, positive), pred, 0))
    rgba = np.zeros((*b.shape, 4))
    rgba[b] = (1, 1, 0, 1)
    axes[1].imshow(rgba)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", nargs="+", choices=["gowt1", "hela", "adcc"], default=["gowt1", "hela", "adcc"]
    )
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/real_data.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sections = {}
        if "gowt1" in args.only:
            sections["GOWT1: Cell Tracking Challenge measures (target DET >= 0.90)"] = gowt1(work)
        if "hela" in args.only:
            sections["HeLa: detection (target F1 >= 0.88)"] = hela(work)
        if "adcc" in args.only:
            sections["ADCC: nuclei (target F1 >= 0.85) and PI-positive calls"] = adcc()
    if not args.record:
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Real data with default parameters",
        "",
        f"Command: `python benchmarks/real_data.py --record` · commit {commit} · "
        f"{platform.node()} ({platform.machine()}, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')})",
        "",
        "Defaults plus calibration only (pixel size, frame interval): nothing here tuned "
        "them. They were chosen on development seeds (0-99) of the simulator's families; "
        "see `generalization.md`. Two exceptions. The size split of cells pressed together "
        "(`segment.cells.oversize_factor`) cuts only along a seam because, without that "
        "test, it cut the large GOWT1 nucleus and HeLa nuclei that the references hold "
        "whole; its threshold (0.85) was set with these sequences in view. And a cell "
        "that divided is not carried as a faded cell (`segment.cells.carry_divided`), a "
        "rule made after looking at HeLa's death calls (its reach set so that the "
        "simulator's development seeds score the same): HeLa's numbers do not check it "
        "independently. The GOWT1 "
        "preset, tuned on the very sequence it is scored on, is shown beside the defaults "
        "for comparison, not as a result.",
        "",
    ]
    for title, rows in sections.items():
        lines += [f"## {title}", "", _table(rows), ""]
    if "hela" in args.only:
        lines += [
            "HeLa's death calls are a known fault, not a result: the sequence (MitoCheck HeLa "
            "H2B-GFP, 10 hours) shows cells dividing, a few apoptotic nuclei at most, and no "
            "dead-cell dye. In an event gallery of the calls, most are divisions that no "
            "track linked: at 30 minutes a frame the chromatin condenses and splits between "
            "two frames, so the mother's nucleus halves in area and loses half its reporter, "
            "as in a rupture or a shrinkage, while its daughters start new tracks that the "
            "division test does not pair with it (why, for each, not yet known: its "
            "distance and area tests were made for the simulator's cells). Another cause, "
            "the mother's outline carried as a faded ghost into the gap between its "
            "daughters, is gone since 47e5465 (`segment.cells.carry_divided`; 52 calls to "
            "40, 78 divisions linked to 100). Tried and not kept (issue 13's note): "
            "vetoing a call when a daughter-sized track starts beside it (it also vetoed "
            "true deaths on the simulator's no_dye development seeds), and the parent's "
            "largest area over the last hour in the division test (52 calls to 48).",
            "",
        ]
    lines += [
        "Overlays (looked at): `real_data_gowt1_t060.png`, `real_data_hela_t010.png`, "
        "`real_data_adcc.png`.",
        "",
        "```json",
        json.dumps(sections, indent=1),
        "```",
        "",
    ]
    (RESULTS / "real_data.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
