"""Look at the simulator's truth: a gallery of every death in the demo movie.

Usage: python benchmarks/simulator_gallery.py [--out benchmarks/results/simulator_gallery.png]

Rows are the truth events of the demo movie, deathtrack/sample_data/demo.ome.tif
(apoptotic: shrink, bleb, fragment, late dye; necroptotic: swell, round,
rupture, ghost, abrupt dye); columns are the cells and dye channels at frames relative to death.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from deathtrack.gallery import event_gallery
from deathtrack.io import open_stack

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/simulator_gallery.png"
    )
    args = parser.parse_args()
    from deathtrack.cli import SAMPLE_DIR  # the demo ships inside the package

    events = pd.read_csv(SAMPLE_DIR / "demo_truth/events.csv")
    with open_stack(SAMPLE_DIR / "demo.ome.tif") as movie:
        path = event_gallery(
            movie,
            events.sort_values("mode"),
            args.out,
            title_columns=("mode", "onset_frame", "dye_frame"),
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
