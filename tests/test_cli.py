"""The command line: help is fast, user errors give one clear line and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from deathtrack.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_is_fast_and_light():
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from deathtrack.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numpy', 'pandas', 'skimage', 'trackpy', 'tifffile', 'scipy') "
            "if m in sys.modules]\nprint('HEAVY', heavy)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert time.perf_counter() - start < 10
    assert "HEAVY []" in proc.stdout
    for command in ("info", "run", "simulate", "demo", "config"):
        assert command in proc.stdout


def test_run_help_shows_defaults_and_flags():
    result = _run("run", "--help")
    assert result.exit_code == 0
    for flag in ("--out", "--channel", "--pixel-size", "--interval", "--config", "--set"):
        assert flag in result.output


def test_info_on_simulated_movie(small_movie, small_sim):
    result = _run("info", str(small_movie["movie"]))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "axes:        TCYX" in out
    assert "shape:       40 x 3 x 192 x 192" in out
    assert "pixel size:  0.65 µm" in out
    assert "interval:    120 s" in out
    assert "0: cells" in out and "role: cells" in out
    assert "2: dye" in out and "role: dye" in out


def test_info_json(small_movie):
    result = _run("info", str(small_movie["movie"]), "--json")
    data = json.loads(result.output)
    assert data["shape"] == [40, 3, 192, 192]
    assert data["roles"] == {"cells": 0, "immune": 1, "dye": 2}


def test_missing_file_is_one_clear_line(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "nope.tif")])
    assert result.exit_code == 2
    assert "deathtrack: error:" in result.output and "nope.tif" in result.output
    assert "Traceback" not in result.output


def test_bad_channel_flag(small_movie):
    result = CliRunner().invoke(main, ["info", str(small_movie["movie"]), "--channel", "cellz=0"])
    assert result.exit_code == 2
    assert "unknown role 'cellz'" in result.output


def test_channel_role_out_of_range(small_movie):
    result = CliRunner().invoke(main, ["info", str(small_movie["movie"]), "--channel", "immune=7"])
    assert result.exit_code == 2
    assert "immune" in result.output and "7" in result.output
    assert "Traceback" not in result.output


def test_bad_config_key_in_run(tmp_path, small_movie):
    cfg = tmp_path / "exp.toml"
    cfg.write_text("[input]\npixelsize = 1\n")
    result = CliRunner().invoke(
        main,
        ["run", str(small_movie["movie"]), "--out", str(tmp_path / "out"), "--config", str(cfg)],
    )
    assert result.exit_code == 2
    assert "unknown key 'input.pixelsize'" in result.output


def test_run_writes_run_json(tmp_path, small_movie):
    out = tmp_path / "results"
    result = _run("run", str(small_movie["movie"]), "--out", str(out), "--interval", "60")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "small" / "run.json").read_text())
    assert info["status"] == "ok"
    assert info["input_checksum"].startswith("sha256:")
    assert info["config"]["input"]["interval_s"] == 60.0
    assert info["input"]["calibration"]["interval_s"] == 60.0
    assert info["counts"]["n_frames"] == 40
    assert "numpy" in info["versions"]


def test_run_continues_after_a_bad_stack(tmp_path, small_movie):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"this is not a tiff")
    result = CliRunner().invoke(
        main, ["run", str(bad), str(small_movie["movie"]), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1
    assert "corrupt.tif" in result.output
    assert (tmp_path / "o" / "small" / "run.json").exists()


def test_simulate_command_writes_movie_and_truth(tmp_path):
    result = _run(
        "simulate",
        str(tmp_path),
        "--seed",
        "2",
        "--set",
        "n_frames=6",
        "--set",
        "shape_yx=[64, 64]",
        "--set",
        "n_cells=3",
        "--name",
        "tiny",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny.ome.tif").exists()
    for name in (
        "events.csv",
        "cells.csv",
        "immune.csv",
        "lineage.csv",
        "recruitment.csv",
        "labels_cells.tif",
        "labels_immune.tif",
        "simulation.toml",
    ):
        assert (tmp_path / "tiny_truth" / name).exists(), name
    # the saved config regenerates the same movie
    again = tmp_path / "again"
    result = _run(
        "simulate",
        str(again),
        "--config",
        str(tmp_path / "tiny_truth" / "simulation.toml"),
        "--name",
        "tiny",
    )
    assert result.exit_code == 0, result.output
    import tifffile

    assert (
        tifffile.imread(again / "tiny.ome.tif") == tifffile.imread(tmp_path / "tiny.ome.tif")
    ).all()


def test_simulate_show_config_and_bad_preset(tmp_path):
    result = _run("simulate", str(tmp_path), "--preset", "dense", "--show-config")
    assert "n_cells = 55" in result.output
    result = CliRunner().invoke(main, ["simulate", str(tmp_path), "--preset", "nope"])
    assert result.exit_code == 2 and "unknown simulation preset 'nope'" in result.output


def test_config_command_prints_valid_toml(tmp_path):
    result = _run("config")
    path = tmp_path / "c.toml"
    path.write_text(result.output)
    result = _run("config", "--file", str(path))
    assert result.exit_code == 0
    assert "[segment.cells]" in result.output


@pytest.mark.parametrize("module", ["deathtrack", "deathtrack.cli", "deathtrack.pipeline"])
def test_import_never_pulls_gui(module):
    code = (
        f"import sys, {module}; "
        "gui = ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide6'); "
        "bad = [m for m in gui if m in sys.modules]; "
        "print(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_run_writes_tracks_labels_and_ctc_export(tmp_path, small_movie):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        main,
        [
            "-q",
            "run",
            str(small_movie["movie"]),
            "--out",
            str(out),
            "--export-ctc",
            str(tmp_path / "ctc"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "segment:" not in result.output  # -q: no progress bar
    folder = out / "small"
    for name in (
        "tracks.csv",
        "lineage.csv",
        "events.csv",
        "recruitment.csv",
        "recruitment_stats.csv",
        "labels_cells.tif",
        "labels_immune.tif",
        "run.json",
    ):
        assert (folder / name).exists(), name
    ctc = tmp_path / "ctc" / "small_RES"
    assert (ctc / "res_track.txt").read_text().strip()
    assert len(list(ctc.glob("mask*.tif"))) == 40
    info = json.loads((folder / "run.json").read_text())
    assert info["stages"] == ["segment", "measure", "track", "death", "recruit"]
    assert info["counts"]["n_tracks_cells"] >= 10


def test_info_on_bundled_sample():
    from deathtrack.cli import DEMO_STACK

    result = _run("info", str(DEMO_STACK))
    assert result.exit_code == 0, result.output
    assert "shape:       40 x 3 x 224 x 224" in result.output
    assert "pixel size:  0.65 µm  [ome]" in result.output
    assert "interval:    120 s  [ome]" in result.output
    assert "1: immune" in result.output


def test_bundled_sample_regenerates_byte_for_byte(tmp_path):
    """sample_data/README.md gives the command that remakes the demo movie: check it does."""
    from deathtrack.cli import SAMPLE_DIR

    result = _run("simulate", str(tmp_path), "--preset", "demo", "--seed", "8", "--name", "demo")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo.ome.tif").read_bytes() == (SAMPLE_DIR / "demo.ome.tif").read_bytes()
    for name in ("events.csv", "cells.csv", "recruitment.csv", "lineage.csv"):
        assert (tmp_path / "demo_truth" / name).read_text() == (
            SAMPLE_DIR / "demo_truth" / name
        ).read_text()


def test_run_with_labels_from_another_tool(tmp_path, small_movie):
    """Bring-your-own segmentation: truth labels given as a label stack are used as they are."""
    import tifffile

    cfg = tmp_path / "byo.toml"
    cfg.write_text(
        "[segment.cells]\nmethod = 'labels'\n"
        f"labels_path = '{small_movie['labels_cells'].as_posix()}'\n"
    )
    out = tmp_path / "o"
    result = _run("-q", "run", str(small_movie["movie"]), "--out", str(out), "--config", str(cfg))
    assert result.exit_code == 0, result.output
    truth = tifffile.imread(small_movie["labels_cells"])
    ours = tifffile.imread(out / "small" / "labels_cells.tif")
    for t in (0, 20, 39):  # same objects, renumbered as tracks
        assert len(np.unique(ours[t])) == len(np.unique(truth[t]))
        assert ((ours[t] > 0) == (truth[t] > 0)).all()


def test_labels_of_the_wrong_shape_are_refused(tmp_path, small_movie):
    import tifffile

    bad = tmp_path / "bad_labels.tif"
    tifffile.imwrite(bad, np.zeros((3, 10, 10), np.int32), photometric="minisblack")
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(small_movie["movie"]),
            "--out",
            str(tmp_path / "o"),
            "--set",
            "segment.cells.method=labels",
            "--set",
            f"segment.cells.labels_path='{bad.as_posix()}'",
        ],
    )
    assert result.exit_code == 2
    assert (
        "bad_labels.tif: label stack has shape (3, 10, 10) (T, Y, X) but the movie has (40, 192, 192)"
        in result.output
    )


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    import pandas as pd

    from deathtrack.errors import ConfigError
    from deathtrack.pipeline import write_table

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow":
            raise ImportError("no pyarrow here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ConfigError, match="output.table_format = 'parquet' needs pyarrow"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv", "parquet")
    assert write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv", "csv").read_text() == "a\n1\n"


def test_console_script_keeps_exit_statuses_and_messages(tmp_path):
    """The console entry (``console_main``: main, then an exit without the final garbage
    collection) exits 0 on success and 2 with one clear line on a user mistake."""
    ok = subprocess.run(
        [sys.executable, "-m", "deathtrack.cli", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "deathtrack run" in ok.stdout
    missing = tmp_path / "nothing_here.ome.tif"
    bad = subprocess.run(
        [sys.executable, "-m", "deathtrack.cli", "info", str(missing)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_an_unexpected_error_in_a_stack_is_one_line_and_its_traceback_goes_to_the_log(
    tmp_path, small_movie, monkeypatch
):
    import deathtrack.death

    def broken(*args, **kwargs):
        raise TypeError("boom (simulated bug)")

    monkeypatch.setattr(deathtrack.death, "detect_deaths", broken)
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["-q", "run", str(small_movie["movie"]), "--out", str(out)])
    assert result.exit_code == 2  # every stack (one) failed
    assert "unexpected TypeError: boom (simulated bug) (see the log)" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" in (out / "deathtrack.log").read_text()


def test_an_unexpected_error_outside_a_batch_is_one_line(small_movie, monkeypatch):
    import deathtrack.io

    def broken(*args, **kwargs):
        raise RuntimeError("boom (simulated bug)")

    monkeypatch.setattr(deathtrack.io, "open_input", broken)
    result = CliRunner().invoke(main, ["info", str(small_movie["movie"])])
    assert result.exit_code == 1
    assert "deathtrack: error: unexpected RuntimeError: boom (simulated bug)" in result.stderr
    assert "Traceback" not in result.stderr


def test_info_warns_of_calibration_that_run_refuses(tmp_path):
    import tifffile

    path = tmp_path / "aniso.ome.tif"
    meta = {"axes": "TYX", "PhysicalSizeX": 0.005, "PhysicalSizeY": 0.01}
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint16), ome=True, metadata=meta)
    result = _run("info", str(path))
    assert result.exit_code == 0, result.output
    assert "pixel size 0.005 µm is outside the plausible 0.01-50 µm" in result.output
    assert "pixels are not square (0.01 µm along Y, 0.005 µm along X)" in result.output
