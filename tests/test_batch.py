"""Batch runs: many stacks, one failing alone, resume after interruption, Dask cluster."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from deathtrack.batch import expand_stacks, run_batch
from deathtrack.cli import main
from deathtrack.config import PipelineConfig, apply_overrides

TABLES = ("tracks.csv", "events.csv", "recruitment.csv", "lineage.csv", "recruitment_stats.csv")


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    """Three small simulated movies and one corrupt file, in one folder."""
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    folder = tmp_path_factory.mktemp("plate")
    paths = []
    for i, seed in enumerate((11, 12, 13)):
        sim = simulate(
            SimulationConfig(
                seed=seed,
                shape_yx=(128, 128),
                n_frames=16,
                n_cells=6,
                n_immune=6,
                p_apoptotic=0.3,
                p_necroptotic=0.3,
            )
        )
        res = write_simulation(sim, tmp_path_factory.mktemp(f"sim{i}"), name=f"well{i}")
        target = folder / f"well{i}.ome.tif"
        target.write_bytes(Path(res["movie"]).read_bytes())
        paths.append(target)
    bad = folder / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)  # a TIFF header and nothing behind it
    return {"folder": folder, "good": paths, "bad": bad}


def _tables(folder: Path) -> dict[str, bytes]:
    return {
        f"{d.name}/{t}": (d / t).read_bytes()
        for d in sorted(p for p in folder.iterdir() if p.is_dir())
        for t in TABLES
        if (d / t).exists()
    }


def test_expand_stacks_files_globs_folders(tmp_path, movies):
    frames = tmp_path / "ctc"
    frames.mkdir()
    for t in range(3):
        (frames / f"t{t:03d}.tif").write_bytes(b"")
    got = expand_stacks(
        [str(movies["folder"] / "well*.ome.tif"), movies["folder"], frames, tmp_path / "no*.tif"]
    )
    names = [Path(g).name for g, p, problem in got if not problem]
    assert names[:3] == ["well0.ome.tif", "well1.ome.tif", "well2.ome.tif"]
    assert names[3:7] == ["broken.tif", "well0.ome.tif", "well1.ome.tif", "well2.ome.tif"]
    assert names[7] == "ctc"  # numbered frames: one stack
    assert got[-1][2].endswith("no*.tif: no file matches this pattern")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "folder holds no stacks" in expand_stacks([empty])[0][2]


def test_batch_with_a_corrupt_file_fails_it_alone_and_exits_nonzero(tmp_path, movies):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["-q", "run", str(movies["folder"]), "--out", str(out), "--no-report"]
    )
    assert result.exit_code == 1, result.output
    summary = pd.read_csv(out / "summary.csv")
    assert summary["stack"].map(lambda s: Path(s).name).tolist() == [
        "broken.tif", "well0.ome.tif", "well1.ome.tif", "well2.ome.tif",
    ]  # fmt: skip
    bad = summary.iloc[0]
    assert bad.status == "failed"
    assert "broken.tif" in bad.reason and "truncated or corrupt" in bad.reason
    assert "broken.tif" in result.output
    assert (summary.status[1:] == "ok").all()
    for stem in ("well0", "well1", "well2"):
        for name in (*TABLES, "labels_cells.tif", "labels_immune.tif", "run.json"):
            assert (out / stem / name).exists(), f"{stem}/{name}"
    assert not (out / "broken").exists() or not (out / "broken" / "run.json").exists()
    assert (out / "recruitment_stats.csv").exists()  # pooled over the three stacks
    assert "failed" in (out / "deathtrack.log").read_text()

    # the same command again: everything done is skipped, nothing changes
    before = _tables(out)
    again = CliRunner().invoke(
        main, ["-q", "run", str(movies["folder"]), "--out", str(out), "--no-report"]
    )
    assert again.exit_code == 1
    summary2 = pd.read_csv(out / "summary.csv")
    assert summary2.skipped[1:].all() and not summary2.skipped[0]
    assert "skipped" in again.output
    assert _tables(out) == before


def test_changed_config_or_force_redoes_a_stack(tmp_path, movies):
    cfg = PipelineConfig()
    stack = movies["good"][0]
    first = run_batch([stack], cfg, tmp_path, progress=False, report=False)
    assert not first.summary.skipped[0]
    assert run_batch([stack], cfg, tmp_path, progress=False, report=False).summary.skipped[0]
    changed = apply_overrides(cfg, ["recruit.radius_um=20"])
    assert not run_batch([stack], changed, tmp_path, progress=False, report=False).summary.skipped[
        0
    ]
    forced = run_batch([stack], changed, tmp_path, progress=False, report=False, force=True)
    assert not forced.summary.skipped[0]
    # an incomplete folder (a file lost) is redone too
    (tmp_path / "well0" / "events.csv").unlink()
    redo = run_batch([stack], changed, tmp_path, progress=False, report=False)
    assert not redo.summary.skipped[0] and (tmp_path / "well0" / "events.csv").exists()


def test_two_stacks_with_the_same_stem_do_not_overwrite_each_other(tmp_path, movies):
    other = tmp_path / "b"
    other.mkdir()
    twin = other / "well0.ome.tif"
    twin.write_bytes(movies["good"][0].read_bytes())
    res = run_batch([movies["good"][0], twin], PipelineConfig(), tmp_path / "o", progress=False,
                    report=False)  # fmt: skip
    assert res.summary.status.tolist() == ["ok", "failed"]
    assert "rename one of the files" in res.summary.reason[1]


def test_killed_run_resumes_and_gives_identical_outputs(tmp_path, movies):
    serial = tmp_path / "serial"
    run_batch(movies["good"], PipelineConfig(), serial, progress=False, report=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "deathtrack.cli", "-q", "run", *map(str, movies["good"]),
           "--out", str(out), "--no-report"]  # fmt: skip
    # Ctrl-C at its default, as in a terminal: a process started from pytest may inherit an
    # ignored SIGINT (then the run never sees the Ctrl-C and finishes with exit 0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 120
    while not (out / "well0" / "run.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (out / "well2" / "run.json").exists()
    assert not [p for p in out.rglob("*.tmp")]  # no half-written file left behind
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = pd.read_csv(out / "summary.csv")
    assert summary.skipped[0]  # well0 was finished before the kill
    assert _tables(out) == _tables(serial)


@pytest.mark.slow
def test_local_dask_cluster_gives_byte_identical_tables(tmp_path, movies):
    pytest.importorskip("distributed")
    serial = run_batch(movies["good"], PipelineConfig(), tmp_path / "serial", progress=False,
                       report=False)  # fmt: skip
    parallel = run_batch(movies["good"], PipelineConfig(), tmp_path / "dask", workers=2,
                         progress=False, report=False)  # fmt: skip
    assert (serial.summary.status == "ok").all() and (parallel.summary.status == "ok").all()
    a, b = _tables(tmp_path / "serial"), _tables(tmp_path / "dask")
    assert len(a) == 3 * len(TABLES) and a == b
    info = json.loads((tmp_path / "dask" / "well1" / "run.json").read_text())
    assert info["status"] == "ok"


def test_local_cluster_starts_when_port_8787_is_taken():
    """Another Dask cluster (a notebook's, a second run, a parallel test) holds the default
    dashboard port: the run's cluster starts anyway, without a warning (pytest turns
    warnings into errors here)."""
    pytest.importorskip("distributed")
    import socket

    from deathtrack.batch import _local_cluster

    holder = socket.socket()
    try:
        holder.bind(("0.0.0.0", 8787))
        holder.listen()
    except OSError:
        pass  # something else holds it already: the same situation
    try:
        cluster = _local_cluster(1)
        cluster.close()
    finally:
        holder.close()


def _record_of_error_in(filename: str, function: str, error: type) -> logging.LogRecord:
    """A log record like tornado's for a callback that raised ``error`` in ``function``
    of a module at ``filename``."""
    space: dict = {}
    exec(compile(f"def {function}():\n    raise {error.__name__}('x')", filename, "exec"), space)
    try:
        space[function]()
    except error:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "tornado.application", logging.ERROR, filename, 1, "Exception in callback", (), exc_info
    )


def test_dask_s_cancel_race_on_ctrl_c_is_not_shown_and_nothing_else_is_hidden():
    """Ctrl-C just before a call into Dask's loop has started makes distributed's own
    ``cancel`` callback raise NameError, which tornado logs with a traceback (seen once in
    CI in test_ctrl_c_with_two_workers_reports_finished_stacks_as_ok). That record, and
    only that one, is dropped once a Dask client is made."""
    from deathtrack.batch import _DaskCancelRace, _quiet_dask_cancel_race

    race = _record_of_error_in("/env/site-packages/distributed/utils.py", "cancel", NameError)
    drop = _DaskCancelRace()
    assert not drop.filter(race)
    for other in (
        _record_of_error_in("/env/site-packages/distributed/utils.py", "sync", NameError),
        _record_of_error_in("/env/site-packages/deathtrack/utils.py", "cancel", NameError),
        _record_of_error_in("/env/site-packages/distributed/utils.py", "cancel", KeyError),
        logging.LogRecord("tornado.application", logging.ERROR, "x", 1, "no traceback", (), None),
    ):
        assert drop.filter(other)
    log = logging.getLogger("tornado.application")
    _quiet_dask_cancel_race()
    _quiet_dask_cancel_race()  # installed once
    assert sum(isinstance(f, _DaskCancelRace) for f in log.filters) == 1


def test_unreachable_scheduler_is_one_clear_error(tmp_path, movies, monkeypatch):
    pytest.importorskip("distributed")
    import deathtrack.batch

    # nothing listens on port 9: the error comes when the timeout runs out (20 s by default)
    monkeypatch.setattr(deathtrack.batch, "SCHEDULER_TIMEOUT_S", 2)
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(movies["good"][0]),
            "--out",
            str(tmp_path),
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--no-report",
        ],
    )
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.output


def test_freed_memory_is_given_back_before_the_report(tmp_path, movies, monkeypatch):
    """The analysis' freed heap goes back to the system before the report's peak (glibc's
    malloc_trim): the process tree's peak is then ~40 MB lower on the 1024² benchmark."""
    import deathtrack.batch as batch
    import deathtrack.report as report

    calls = []
    monkeypatch.setattr(batch, "_give_back_memory", lambda: calls.append("trim"))
    real = report.write_report
    monkeypatch.setattr(
        report, "write_report", lambda *a, **k: (calls.append("report"), real(*a, **k))[1]
    )
    batch.process_stack(movies["good"][0], PipelineConfig(), tmp_path / "a", progress=False)
    assert calls == ["trim", "report"]
    calls.clear()
    batch.process_stack(
        movies["good"][0], PipelineConfig(), tmp_path / "b", progress=False, report=False
    )
    assert calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_give_back_memory_calls_malloc_trim(monkeypatch):
    import ctypes

    from deathtrack.batch import _give_back_memory

    trimmed = []

    class Libc:
        def malloc_trim(self, pad):
            trimmed.append(pad)
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    _give_back_memory()
    assert trimmed == [0]


def test_the_command_line_claims_its_process(monkeypatch):
    """A command's process is deathtrack's own (trackpy is then imported without IPython
    and scikit-learn, test_track); a library call leaves that to the caller."""
    import deathtrack._memory as memory

    monkeypatch.setattr(memory, "_OWN_PROCESS", False)
    assert CliRunner().invoke(main, ["--help"]).exit_code == 0  # a group's help: no call
    assert not memory.own_process()
    assert CliRunner().invoke(main, ["config", "--help"]).exit_code == 0
    assert memory.own_process()
