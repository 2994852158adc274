"""The catalogue of bad inputs and faults (issue 14): every case is one row.

Each row builds its input in a temporary folder, runs the command line as a
user would, and checks the exit status (0 done, 1 some stacks of a batch
failed, 2 a usage or input error), a fragment of the one line that names the
problem and what to do, and that no traceback reaches the terminal. Sequences
(kill and retry, two runs at once, signals) are in ``test_guarantees.py``.
"""

from __future__ import annotations

import errno
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from click.testing import CliRunner

from deathtrack.cli import main

PX = 0.65
INTERVAL = 120.0


# -- inputs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    """A tiny simulated movie (8 frames, 96 x 96, 3 channels) whose cells are found."""
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    sim = simulate(SimulationConfig(seed=3, shape_yx=(96, 96), n_frames=8, n_cells=5, n_immune=4))
    return write_simulation(sim, tmp_path_factory.mktemp("movie"), name="tiny")["movie"]


def _ome(path: Path, data: np.ndarray, *, px=PX, py=None, interval=INTERVAL, names=None) -> Path:
    names = names or ["cells", "immune", "dye"][: data.shape[1]]
    meta = {
        "axes": "TCYX",
        "PhysicalSizeX": px,
        "PhysicalSizeY": px if py is None else py,
        "TimeIncrement": interval,
        "TimeIncrementUnit": "s",
        "Channel": {"Name": list(names)},
    }
    tifffile.imwrite(path, data, ome=True, metadata=meta, photometric="minisblack")
    return path


def _pixels(movie: Path) -> np.ndarray:
    return tifffile.imread(movie)  # (T, C, Y, X)


_SHAPE = (4, 2, 64, 64)


def constant(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "constant.ome.tif", np.full(_SHAPE, 100, np.uint16))


def zeros(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "zeros.ome.tif", np.zeros(_SHAPE, np.uint16))


def noise(tmp: Path, movie: Path) -> Path:
    rng = np.random.default_rng(0)
    return _ome(tmp / "noise.ome.tif", rng.normal(100, 10, _SHAPE).astype(np.uint16))


def all_nan(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "nan.ome.tif", np.full(_SHAPE, np.nan, np.float32))


def with_inf(tmp: Path, movie: Path) -> Path:
    """The movie as float32 with +inf, -inf and NaN pixels in every channel."""
    data = _pixels(movie).astype(np.float32)
    data[:, :, 5, 5] = np.inf
    data[:, :, 40, 7] = -np.inf
    data[:, :, 90, 90] = np.nan
    return _ome(tmp / "inf.ome.tif", data)


def anisotropic(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "aniso.ome.tif", _pixels(movie), px=0.65, py=1.3)


def huge_pixels(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "huge.ome.tif", _pixels(movie), px=1e6)


def tiny_pixels(tmp: Path, movie: Path) -> Path:
    return _ome(tmp / "tiny_px.ome.tif", _pixels(movie), px=1e-6)


def _edit_xml(path: Path, edit: Callable[[str], str]) -> Path:
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, edit(xml).encode())
    return path


def size_abc(tmp: Path, movie: Path) -> Path:
    path = _ome(tmp / "abc.ome.tif", _pixels(movie))
    return _edit_xml(path, lambda x: x.replace(f'PhysicalSizeX="{PX}"', 'PhysicalSizeX="abc"'))


def xml_cut(tmp: Path, movie: Path) -> Path:
    """OME-XML cut in the middle (a file copied in part, or edited by hand)."""
    return _edit_xml(_ome(tmp / "cut.ome.tif", _pixels(movie)), lambda x: x[: len(x) // 2])


def xml_cut_ending_ome(tmp: Path, movie: Path) -> Path:
    """Cut, but still ending with ``OME>``: tifffile takes it for OME-XML, then fails."""
    path = _ome(tmp / "cut2.ome.tif", _pixels(movie))
    return _edit_xml(path, lambda x: x[: len(x) // 2] + "</OME>")


def rgb(tmp: Path, movie: Path) -> Path:
    """The movie as an RGB TIFF (T, Y, X, 3) of 8-bit samples, no calibration."""
    data = _pixels(movie).astype(np.float32)
    data = (255 * data / data.max(axis=(0, 2, 3), keepdims=True)).astype(np.uint8)
    path = tmp / "rgb.tif"
    tifffile.imwrite(path, np.moveaxis(data, 1, -1), photometric="rgb")
    return path


def crowded(tmp: Path, movie: Path) -> Path:
    """Cells packed closely (a simulation that places 9 in 112 x 112 pixels)."""
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    sim = simulate(SimulationConfig(seed=4, shape_yx=(112, 112), n_frames=6, n_cells=16,
                                    n_immune=2))  # fmt: skip
    return write_simulation(sim, tmp, name="crowded")["movie"]


def _classifier(tmp: Path, name: str, **changes) -> Path:
    model = {
        "features": ["area_ratio_before", "reporter_drop"],
        "fill": [1.0, 0.0],
        "mean": [1.0, 0.2],
        "scale": [0.3, 0.2],
        "coef": [1.5, 2.0],
        "intercept": 0.1,
        "n_train": {"apoptotic": 3, "necroptotic": 3},
        "format": "deathtrack-classifier",
        "version": 1,
        **changes,
    }
    path = tmp / name
    path.write_text(json.dumps(model))
    return path


def scale_zero(tmp: Path, movie: Path) -> Path:
    return _classifier(tmp, "scale0.json", scale=[0.0, 0.2])


def string_coef(tmp: Path, movie: Path) -> Path:
    return _classifier(tmp, "strings.json", coef=["abc", 2.0])


def not_a_model(tmp: Path, movie: Path) -> Path:
    path = tmp / "BAD.json"
    path.write_text('{"x": 1}')
    return path


def pickle_zarr(tmp: Path, movie: Path) -> Path:
    """An OME-Zarr whose array holds pickled Python objects: reading it could run code."""
    root = tmp / "pickled.zarr"
    (root / "0").mkdir(parents=True)
    (root / ".zgroup").write_text('{"zarr_format": 2}')
    axes = [{"name": n, "type": t} for n, t in zip("tcyx", ("time", "channel", "space", "space"))]
    ms = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    (root / ".zattrs").write_text(json.dumps({"multiscales": ms}))
    (root / "0" / ".zarray").write_text(
        json.dumps(
            {
                "zarr_format": 2,
                "shape": [2, 1, 8, 8],
                "chunks": [1, 1, 8, 8],
                "dtype": "|O",
                "compressor": None,
                "fill_value": None,
                "filters": [{"id": "pickle", "protocol": 5}],
                "order": "C",
            }
        )
    )
    (root / "0" / "0.0.0.0").write_bytes(pickle.dumps(np.ones(64, object)))
    return root


def a_file(tmp: Path, movie: Path) -> Path:
    path = tmp / "a_file"
    path.write_text("not a folder\n")
    return path


def empty_folder(tmp: Path, movie: Path) -> Path:
    path = tmp / "empty"
    path.mkdir()
    return path


def twin(tmp: Path, movie: Path) -> Path:
    """Another file with the movie's name, in another folder (the same results folder)."""
    (tmp / "other").mkdir()
    path = tmp / "other" / movie.name
    path.write_bytes(movie.read_bytes())
    return path


# -- the catalogue -----------------------------------------------------------------------------


@dataclass
class Case:
    """One row: ``{input}`` in ``args`` is the built input, ``{movie}`` the good movie,
    ``{out}`` a fresh results folder, ``{tmp}`` the case's folder."""

    id: str
    args: list[str]
    exit: int
    fragment: str
    build: Callable[[Path, Path], Path] | None = None
    check: Callable[[Path], None] | None = None
    extra: dict = field(default_factory=dict)


def _warned(fragment: str) -> Callable[[Path], None]:
    def check(out: Path) -> None:
        runs = list(out.glob("*/run.json"))
        assert runs, f"no run.json in {out}"
        warnings = json.loads(runs[0].read_text())["warnings"]
        assert any(fragment in w for w in warnings), warnings
        assert fragment in pd.read_csv(out / "summary.csv")["warnings"].iloc[0]

    return check


def _tracks(out: Path) -> None:
    info = json.loads(next(out.glob("*/run.json")).read_text())
    assert info["counts"]["n_tracks_cells"] > 0, info["counts"]


def _batch_report_written(out: Path) -> None:
    assert (out / "report.html").is_file()
    assert (out / "summary.csv").is_file()


RUN = ["run", "--no-report"]

CASES = [
    # results that were wrong while saying ok
    Case("constant image", [*RUN, "{input}", "--out", "{out}"], 2,
         "no signal: channel 0 ('cells'), the target cells' channel, is constant (100) in every frame",
         constant),
    Case("all-zero image", [*RUN, "{input}", "--out", "{out}"], 2, "is all zero in every frame",
         zeros),
    Case("pure noise: no cells", [*RUN, "{input}", "--out", "{out}"], 2,
         "no cells: segmentation found no target cell in any of the 4 frame(s)", noise),
    Case("all NaN", [*RUN, "{input}", "--out", "{out}"], 2,
         "has no finite value (all NaN or ±inf) in every frame", all_nan),
    Case("pixel size 1e6 µm in the metadata", [*RUN, "{input}", "--out", "{out}"], 2,
         "pixel size 1e+06 µm (from the ome metadata) is outside", huge_pixels),
    Case("pixel size 1e6 µm given", [*RUN, "{movie}", "--out", "{out}", "--pixel-size", "1e6"], 2,
         "input.pixel_size_um: Input should be less than or equal to 10000"),
    Case("pixel size 80 µm: implausible", [*RUN, "{movie}", "--out", "{out}", "--pixel-size",
         "80"], 2, "pixel size 80 µm (given) is outside the plausible range 0.01-50 µm"),
    Case("pixel size 80 µm forced", [*RUN, "{movie}", "--out", "{out}", "--pixel-size", "80",
         "--force-calibration"], 2, "no cells: segmentation found no target cell"),
    Case("interval 0.01 s: implausible", [*RUN, "{movie}", "--out", "{out}", "--interval",
         "0.01"], 2, "frame interval 0.01 s (given) is outside the plausible range 0.1-86400 s"),
    Case("interval 0.05 s forced: analysed, with a warning", [*RUN, "{movie}", "--out", "{out}",
         "--interval", "0.05", "--force-calibration"], 0, "",
         check=_warned("frame interval 0.05 s is outside the plausible range 0.1-86400 s; used "
                       "because of --force-calibration")),
    Case("interval 2 days: implausible", [*RUN, "{movie}", "--out", "{out}", "--interval",
         "172800"], 2, "pass --interval S, or --force-calibration"),
    Case("interval forced to 1 day: tracking gives up", [*RUN, "{input}", "--out", "{out}",
         "--interval", "86400", "--force-calibration"], 2,
         "tracking the cells failed: a search range of 4.32e+03 µm", crowded),
    Case("interval 300 s: fine", [*RUN, "{movie}", "--out", "{out}", "--interval", "300"], 0,
         "", check=_tracks),
    Case("OME-XML cut: refused", [*RUN, "{input}", "--out", "{out}"], 2,
         "its OME-XML metadata does not parse", xml_cut),
    Case("OME-XML cut but ending in OME>: refused", ["info", "{input}"], 2,
         "its OME-XML metadata does not parse", xml_cut_ending_ome),
    Case("OME-XML cut, axes and calibration given", [*RUN, "{input}", "--out", "{out}", "--axes",
         "TYX", "--pixel-size", "0.65", "--interval", "120"], 0, "", xml_cut,
         check=_warned("its OME-XML metadata does not parse")),
    Case("anisotropic pixels", [*RUN, "{input}", "--out", "{out}"], 2,
         "pixels are not square (1.3 µm along Y, 0.65 µm along X", anisotropic),
    Case("anisotropic pixels, size given", [*RUN, "{input}", "--out", "{out}", "--pixel-size",
         "0.65"], 0, "", anisotropic, check=_tracks),
    Case("a role given twice", [*RUN, "{movie}", "--out", "{out}", "--channel", "cells=0",
         "--channel", "cells=1"], 2, "role 'cells' is given twice (cells=0 and cells=1)"),
    Case("a role given twice, the same way", [*RUN, "{movie}", "--out", "{out}", "--channel",
         "cells=0", "--channel", "cells=0"], 0, "", check=_tracks),
    Case("classifier with scale 0", [*RUN, "{movie}", "--out", "{out}", "--set",
         "death.classifier='{input}'"], 2,
         "malformed classifier: the scale of ['area_ratio_before'] is not positive", scale_zero),
    # tracebacks instead of one line
    Case("float stack with ±inf and NaN", [*RUN, "{input}", "--out", "{out}"], 0, "", with_inf,
         check=_warned("non-finite pixel value(s) (NaN, ±inf) in frame(s) 0, 1, 2")),
    Case("two roles on one channel", [*RUN, "{movie}", "--out", "{out}", "--channel", "cells=0",
         "--channel", "immune=0"], 2,
         "roles 'cells' and 'immune' both point at channel 0 ('cells'); a channel has one role"),
    Case("--pixel-size 1e308", [*RUN, "{movie}", "--out", "{out}", "--pixel-size", "1e308"], 2,
         "input.pixel_size_um: Input should be less than or equal to 10000 (got 1e+308)"),
    Case("--interval 1e308", [*RUN, "{movie}", "--out", "{out}", "--interval", "1e308"], 2,
         "input.interval_s: Input should be less than or equal to 10000000 (got 1e+308)"),
    Case("OME pixel size 1e-6 µm", [*RUN, "{input}", "--out", "{out}"], 2,
         "pixel size 1e-06 µm (from the ome metadata) is outside 0.0001-10000 µm", tiny_pixels),
    Case("pixel size 0.001 µm forced: a 2.5e9-pixel frame", [*RUN, "{movie}", "--out", "{out}",
         "--pixel-size", "0.001", "--force-calibration"], 2,
         "segment.cells.background_radius_um (25 µm) spans 2.5e+04 pixels: a 96 x 96 frame "
         "padded for it would hold 2.51e+09 pixels, above deathtrack's bound of 268,435,456"),
    Case("PhysicalSizeX='abc': info", ["info", "{input}"], 0,
         "unknown (pass --pixel-size UM; PhysicalSizeX = 'abc' is not a number", size_abc),
    Case("PhysicalSizeX='abc': run", [*RUN, "{input}", "--out", "{out}"], 2,
         "pixel_size_um unknown (the file says PhysicalSizeX = 'abc' is not a number", size_abc),
    Case("recruit.radius_um=1e308", [*RUN, "{movie}", "--out", "{out}", "--set",
         "recruit.radius_um=1e308"], 2, "recruit.radius_um: Input should be less than or equal to 10000"),
    Case("recruit.radius_um=inf", [*RUN, "{movie}", "--out", "{out}", "--set",
         "recruit.radius_um=inf"], 2, "recruit.radius_um: Input should be a finite number"),
    Case("recruit.n_bootstrap=1e11", [*RUN, "{movie}", "--out", "{out}", "--set",
         "recruit.n_bootstrap=1e11"], 2,
         "recruit.n_bootstrap: Input should be less than or equal to 100000"),
    Case("recruit.n_permutations=1e8 (ran without end)", [*RUN, "{movie}", "--out", "{out}",
         "--set", "recruit.n_permutations=1e8"], 2,
         "recruit.n_permutations: Input should be less than or equal to 100000"),
    Case("track.cells.max_gap_min=1e9", [*RUN, "{movie}", "--out", "{out}", "--set",
         "track.cells.max_gap_min=1000000000"], 2,
         "track.cells.max_gap_min: Input should be less than or equal to 100000"),
    Case("classifier with string coefficients", [*RUN, "{movie}", "--out", "{out}", "--set",
         "death.classifier='{input}'"], 2, "coef[0] = 'abc' is not a finite number", string_coef),
    Case("not a classifier: fails before any stack", [*RUN, "{movie}", "--out", "{out}", "--set",
         "death.classifier='{input}'"], 2,
         "not a deathtrack classifier (no format = 'deathtrack-classifier')", not_a_model),
    Case("--out is a regular file", [*RUN, "{movie}", "--out", "{input}"], 2,
         "the --out folder is a file, not a folder", a_file),
    Case("--out on a read-only file system", [*RUN, "{movie}", "--out", "{tmp}/ro/out"], 2,
         "cannot create the --out folder (Read-only file system)",
         extra={"read_only": "ro"}),
    Case("--log-file on a read-only file system", [*RUN, "{movie}", "--out", "{out}",
         "--log-file", "{tmp}/ro/x.log"], 2,
         "cannot write the log file (Read-only file system); pass --log-file",
         extra={"read_only": "ro"}),
    Case("--export-ctc is a file", [*RUN, "{movie}", "--out", "{out}", "--export-ctc",
         "{input}"], 2, "the --export-ctc folder is a file, not a folder", a_file),
    Case("--scheduler 'not a url'", [*RUN, "{movie}", "--out", "{out}", "--scheduler",
         "not a url"], 2, "cannot reach the Dask scheduler at not a url"),
    Case("train given a TIFF", ["train", "{movie}", "--out", "{tmp}/model.json"], 2,
         "not an events table (CSV)"),
    Case("Zarr with a pickle codec: info", ["info", "{input}"], 2,
         "its array uses the 'pickle' codec, which deathtrack never reads", pickle_zarr),
    Case("Zarr with a pickle codec: run", [*RUN, "{input}", "--out", "{out}"], 2,
         "its array uses the 'pickle' codec", pickle_zarr),
    # batch and interruption
    Case("an empty folder: batch report still written", ["run", "{input}", "--out", "{out}"], 2,
         "folder holds no stacks", empty_folder, check=_batch_report_written),
    Case("a glob matching nothing: batch report still written", ["run", "{tmp}/nothing*.tif",
         "--out", "{out}"], 2, "nothing*.tif: no file matches this pattern",
         check=_batch_report_written),
    Case("the same stem twice: batch report still written", ["run", "{movie}", "{input}",
         "--out", "{out}"], 1, "rename one of the files or run them with different --out",
         twin, check=_batch_report_written),
    Case("RGB stack: colour samples are channels", [*RUN, "{input}", "--out", "{out}",
         "--channel", "cells=0", "--channel", "immune=1", "--pixel-size", "0.65", "--interval",
         "120"], 0, "", rgb, check=_tracks),
    Case("RGB stack read with --axes TYXC", [*RUN, "{input}", "--out", "{out}", "--axes", "TYXC",
         "--channel", "cells=0", "--pixel-size", "0.65", "--interval", "120"], 0, "", rgb,
         check=_tracks),
    Case("RGB stack read with --axes TCYX", [*RUN, "{input}", "--out", "{out}", "--axes", "TCYX",
         "--channel", "cells=0", "--pixel-size", "0.65", "--interval", "120"], 2,
         "axes TCYX make frames of 96 x 3 pixels (shape (8, 96, 96, 3)), too small to analyse "
         "(at least 8 pixels a side); the file stores colour (RGB) samples in its axis 3 "
         "(file axes 'QYXS'): use --axes TYXC", rgb),
]  # fmt: skip


def _read_only(root: Path, monkeypatch) -> None:
    """Writes under ``root`` fail as on a read-only file system (os.mkdir, open for writing)."""
    import builtins
    import os

    root.mkdir()
    real_mkdir, real_open = os.mkdir, builtins.open

    def inside(path) -> bool:
        try:
            return Path(os.fspath(path)).resolve().is_relative_to(root.resolve())
        except TypeError:
            return False

    def mkdir(path, *args, **kwargs):
        if inside(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if inside(file) and any(m in mode for m in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogue(case: Case, movie: Path, tmp_path: Path, monkeypatch):
    built = case.build(tmp_path, movie) if case.build else None
    out = tmp_path / "out"
    values = {"input": built, "movie": movie, "out": out, "tmp": tmp_path}
    args = [a.format(**values) for a in case.args]
    if "read_only" in case.extra:
        _read_only(tmp_path / case.extra["read_only"], monkeypatch)
    result = CliRunner().invoke(main, ["-q", *args])
    stderr = result.stderr
    # a user error or a failed batch ends with an exit status, never an exception
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception),
        stderr,
    )
    assert result.exit_code == case.exit, (result.output, stderr)
    assert case.fragment in (stderr if case.exit else result.stdout), (result.stdout, stderr)
    assert "Traceback" not in stderr and "Traceback" not in result.stdout
    assert "unexpected" not in stderr
    if case.exit == 2 and args[0] == "run" and "--out" in args:
        # one line names the problem (a config error lists the bad key below its line)
        errors = [line for line in stderr.splitlines() if line.startswith("deathtrack: error:")]
        assert len(errors) <= 1 or "no stacks" in stderr or "no file matches" in stderr, stderr
    if case.check is not None:
        case.check(out)
