"""What a results folder guarantees (issue 14), under kills, retries, signals and two runs.

- a stack folder is complete only for the exact input bytes and config that wrote every
  file in it, whatever moment a run is killed at (SIGKILL at several points, then a run
  with another config);
- one run at a time writes into a results folder; the lock of a dead run is taken over;
- batch tables cover every complete stack folder; another config is flagged, not pooled;
- SIGTERM is handled like Ctrl-C; ``--workers 2`` and Ctrl-C report finished stacks as ok;
- ``.work-*`` folders of killed runs are removed by the next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from deathtrack.batch import is_complete, run_batch
from deathtrack.cli import main
from deathtrack.config import PipelineConfig, apply_overrides
from deathtrack.pipeline import input_checksum, outputs_intact

CFG_A = PipelineConfig()
B_OVERRIDE = "segment.cells.noise_k=3.5"
CFG_B = apply_overrides(PipelineConfig(), [B_OVERRIDE])


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> list[Path]:
    """Three tiny simulated movies (8 frames, 96 x 96) in one folder."""
    from deathtrack.simulate import SimulationConfig, simulate, write_simulation

    folder = tmp_path_factory.mktemp("plate")
    paths = []
    for i, seed in enumerate((3, 5, 7)):
        sim = simulate(
            SimulationConfig(seed=seed, shape_yx=(96, 96), n_frames=8, n_cells=5, n_immune=4)
        )
        paths.append(write_simulation(sim, folder, name=f"well{i}")["movie"])
    return paths


@pytest.fixture(scope="module")
def refs(tmp_path_factory, plate) -> dict[str, Path]:
    """The first movie's results under config A and config B, each written once."""
    out = {}
    for name, cfg in (("A", CFG_A), ("B", CFG_B)):
        folder = tmp_path_factory.mktemp(f"ref{name}")
        res = run_batch([plate[0]], cfg, folder, progress=False, report=False)
        assert res.summary.status[0] == "ok"
        out[name] = folder / "well0"
    a = (out["A"] / "tracks.csv").read_bytes()
    assert a != (out["B"] / "tracks.csv").read_bytes(), "A and B must give different tracks"
    return out


def _outputs(folder: Path) -> dict[str, bytes]:
    """The files run.json lists, as bytes."""
    info = json.loads((folder / "run.json").read_text())
    return {name: (folder / name).read_bytes() for name in info["outputs"]}


def _assert_one_run(folder: Path, stack: Path, refs: dict[str, Path]) -> str | None:
    """The folder is complete for exactly one config (A or B) with exactly that config's
    files, or it has no run.json (incomplete: the next run redoes it). Returns A, B or None."""
    if not (folder / "run.json").exists():
        return None
    checksum = input_checksum(stack)
    complete = {n: is_complete(folder, checksum, c, report=False) for n, c in
                (("A", CFG_A), ("B", CFG_B))}  # fmt: skip
    assert sum(complete.values()) == 1, complete
    which = next(n for n, ok in complete.items() if ok)
    assert _outputs(folder) == _outputs(refs[which]), f"files of config {which} differ"
    stale = {"A": "B", "B": "A"}[which]
    for name in _outputs(refs[stale]):
        if (folder / name).exists() and name not in _outputs(refs[which]):
            raise AssertionError(f"{name} of config {stale} left in a folder of config {which}")
    return which


# a child process that dies (SIGKILL, as the OOM killer or `kill -9`) at a chosen point
_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    where, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    seen = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "segment":  # while frames are segmented
        import deathtrack.segment as seg
        real = seg.segment_frame
        def segment_frame(*a, **k):
            seen[0] += 1
            if seen[0] > n:
                die()
            return real(*a, **k)
        seg.segment_frame = segment_frame
    elif where == "commit":  # after n outputs were moved into the stack folder
        real_replace = os.replace
        def replace(src, dst):
            s, d = Path(src), Path(dst)
            if s.parent.name == "out" and s.parent.parent.name.startswith(".work-") and \\
                    d.parent == s.parent.parent.parent:
                seen[0] += 1
                if seen[0] > n:
                    die()
            return real_replace(src, dst)
        os.replace = replace
    elif where == "report":  # run.json written, report.html not yet
        import deathtrack.report as rep
        rep.write_report = lambda *a, **k: die()
    from deathtrack.cli import main
    main(args)
    """
)


def _killed_run(where: str, n: int, stack: Path, out: Path, *extra: str) -> None:
    args = ["-q", "run", str(stack), "--out", str(out), *extra]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, where, str(n), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)


def _rerun(stack: Path, out: Path, cfg: PipelineConfig, report: bool = False):
    res = run_batch([stack], cfg, out, progress=False, report=report)
    assert res.summary.status[0] == "ok", res.summary.reason[0]
    return res


def test_kill_at_any_point_then_rerun_with_another_config_never_mixes(tmp_path, plate, refs):
    stack, out = plate[0], tmp_path / "out"
    folder = out / "well0"
    _rerun(stack, out, CFG_A)
    assert _assert_one_run(folder, stack, refs) == "A"
    configs = {"A": ([], CFG_A), "B": (["--set", B_OVERRIDE], CFG_B)}
    steps = [
        # (kill point, after how many, config of the killed run, of the next run, then)
        ("segment", 3, "B", "A", "A"),  # killed before anything was replaced
        ("commit", 0, "B", "A", None),  # killed as it moved its first file in
        ("commit", 4, "B", "B", None),  # ... with files of both configs in the folder
        ("commit", 3, "A", "B", None),
        ("report", 0, "A", "B", "A"),  # killed after run.json, before report.html
    ]
    for where, n, killed, rerun, then in steps:
        extra = configs[killed][0] + ([] if where == "report" else ["--no-report"])
        _killed_run(where, n, stack, out, *extra)
        # complete for one config with exactly its files, or incomplete (no run.json)
        assert _assert_one_run(folder, stack, refs) == then, (where, n)
        if where == "segment":
            assert [p for p in folder.iterdir() if p.name.startswith(".work-")]
        res = _rerun(stack, out, configs[rerun][1])
        assert res.summary.skipped[0] == (then == rerun)
        assert _assert_one_run(folder, stack, refs) == rerun
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # .work-*, *.tmp
    # killed after run.json: the next run of that config only writes the missing report
    _killed_run("report", 0, stack, out, "--set", B_OVERRIDE)
    res = _rerun(stack, out, CFG_B, report=True)
    assert res.summary.skipped[0] and (folder / "report.html").exists()
    assert _assert_one_run(folder, stack, refs) == "B"


def test_a_failed_rerun_leaves_the_earlier_complete_results(tmp_path, plate, refs, monkeypatch):
    """Issue 14, case 1: a re-run with another config fails at the death stage; the folder
    must not then pass for complete with tables of both configs."""
    import deathtrack.death

    stack, out = plate[0], tmp_path / "out"
    _rerun(stack, out, CFG_A)

    def broken(*args, **kwargs):
        raise ValueError("the death stage failed (simulated)")

    monkeypatch.setattr(deathtrack.death, "detect_deaths", broken)
    res = run_batch([stack], CFG_B, out, progress=False, report=False)
    assert res.summary.status[0] == "failed" and "simulated" in res.summary.reason[0]
    monkeypatch.undo()
    assert _assert_one_run(out / "well0", stack, refs) == "A"
    again = _rerun(stack, out, CFG_A)
    assert again.summary.skipped[0]  # complete, and truly of A
    # the same with the CLI: a bad classifier is refused before any stack is touched
    before = _outputs(out / "well0")
    bad = tmp_path / "BAD.json"
    bad.write_text('{"x": 1}')
    result = CliRunner().invoke(main, ["-q", "run", str(stack), "--out", str(out), "--set",
                                       B_OVERRIDE, "--set", f"death.classifier='{bad}'"])  # fmt: skip
    assert result.exit_code == 2 and "not a deathtrack classifier" in result.stderr
    assert _outputs(out / "well0") == before


def test_a_changed_or_damaged_output_makes_the_folder_incomplete(tmp_path, plate, refs):
    stack, out = plate[0], tmp_path / "out"
    folder = out / "well0"
    _rerun(stack, out, CFG_A)
    tracks = folder / "tracks.csv"
    data = bytearray(tracks.read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")  # same size, other content
    tracks.write_bytes(bytes(data))
    info = json.loads((folder / "run.json").read_text())
    assert outputs_intact(folder, info, verify="size")
    assert not outputs_intact(folder, info)
    assert not is_complete(folder, input_checksum(stack), CFG_A, report=False)
    res = _rerun(stack, out, CFG_A)
    assert not res.summary.skipped[0]
    assert _assert_one_run(folder, stack, refs) == "A"


def test_a_reviewed_folder_stays_complete(tmp_path, plate):
    """A review in napari rewrites events.csv (labels, deaths added by hand): the folder
    still counts as complete, so a re-run skips it and keeps the review."""
    stack, out = plate[1], tmp_path / "out"
    folder = out / "well1"
    _rerun(stack, out, CFG_A)
    ev = pd.read_csv(folder / "events.csv")
    added = {"event_id": len(ev) + 1, "frame": 3, "y": 10.0, "x": 10.0, "y_um": 6.5, "x_um": 6.5}
    ev = pd.concat([ev, pd.DataFrame([added])], ignore_index=True)
    ev["reviewed_mode"] = "apoptotic"
    ev["reviewer"] = "ana"
    ev.to_csv(folder / "events.csv", index=False)
    assert _rerun(stack, out, CFG_A).summary.skipped[0]
    assert pd.read_csv(folder / "events.csv")["reviewer"].eq("ana").all()


def test_stale_work_folders_and_temporary_files_are_removed(tmp_path, plate, caplog):
    stack, out = plate[0], tmp_path / "out"
    (out / "well0" / ".work-deadbeef" / "out").mkdir(parents=True)
    (out / "well0" / ".work-deadbeef" / "out" / "tracks.csv").write_text("x\n")
    (out / "well0" / ".events.csv.abc.tmp").write_text("half")
    (out / ".summary.csv.xyz.tmp").write_text("half")
    (out / "elsewhere" / ".work-1234").mkdir(parents=True)
    _rerun(stack, out, CFG_A)
    left = [p for p in out.rglob("*") if p.name.startswith((".work-", ".events", ".summary"))]
    assert left == []
    removed = [r.getMessage() for r in caplog.records if "left by a run that was killed" in
               r.getMessage()]  # fmt: skip
    assert len(removed) == 4, removed


# -- one run at a time --------------------------------------------------------------------------

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from deathtrack.io import results_lock
    with results_lock(sys.argv[1], command="deathtrack run plate/ --out results"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_a_second_run_into_the_same_folder_is_refused_until_the_first_dies(tmp_path, plate):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(main, ["-q", "run", str(plate[0]), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert (
            f"another deathtrack run is writing into this results folder (pid {holder.pid} on "
            in result.stderr
        )
        assert "deathtrack run plate/ --out results); wait until it ends, or use another --out" in (
            result.stderr
        )
        assert not (out / "well0").exists() and not (out / "summary.csv").exists()
    finally:
        holder.kill()  # SIGKILL: the holder never releases its lock
        holder.communicate()
    # its lock died with it: the next run takes it over
    result = CliRunner().invoke(main, ["-q", "run", str(plate[0]), "--out", str(out),
                                       "--no-report"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "took over the lock of a run that ended without releasing it" in (
        (out / "deathtrack.log").read_text()
    )
    assert not (out / ".deathtrack.lock.json").exists()


def test_two_runs_at_once_never_mix(tmp_path, plate):
    """Two processes started together into one folder, with different configs: one writes,
    the other is refused; the folder holds one config's results."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deathtrack.cli", "-q", "run", str(plate[0]), str(plate[1]),
           "--out", str(out), "--no-report"]  # fmt: skip
    procs = [
        subprocess.Popen(cmd + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for extra in ([], ["--set", B_OVERRIDE])
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    refused = [r for r in results if r[0] == 2]
    assert codes == [0, 2] or codes == [0, 0], results
    for _, _, err in refused:
        assert "another deathtrack run is writing into this results folder" in err
    for _, _, err in results:
        assert "Traceback" not in err
    # one ran, or they ran one after the other (the second redid both stacks): either way
    # one config in every folder
    summary = pd.read_csv(out / "summary.csv")
    assert summary["status"].eq("ok").all() and len(summary) == 2
    assert summary["config_id"].nunique() == 1 and summary["pooled"].all()
    configs = {json.dumps(json.loads((out / s / "run.json").read_text())["config"],
                          sort_keys=True) for s in ("well0", "well1")}  # fmt: skip
    assert len(configs) == 1


# -- batch tables -------------------------------------------------------------------------------


def test_batch_tables_cover_every_complete_folder_and_flag_another_config(tmp_path, plate):
    out = tmp_path / "out"
    first = run_batch(plate[:2], CFG_A, out, progress=False)
    assert first.summary.shape[0] == 2 and first.summary.pooled.all()
    stats_two = (out / "recruitment_stats.csv").read_bytes()
    # issue 14, case 3: re-running one stack keeps the batch tables whole
    again = run_batch([plate[0]], CFG_A, out, progress=False, force=True)
    s = again.summary
    assert s.stem.tolist() == ["well0", "well1"]
    assert s.in_this_run.tolist() == [True, False] and s.status.eq("ok").all()
    assert s.run_id[0] == again.run_id and s.run_id[1] == first.run_id
    assert (out / "recruitment_stats.csv").read_bytes() == stats_two
    report = (out / "report.html").read_text()
    assert "well0" in report and "well1" in report
    # a stack of another config is in the summary, flagged, and out of the pooled statistics
    other = run_batch([plate[2]], CFG_B, out, progress=False)
    s = other.summary.set_index("stem")
    assert s.loc["well2", "pooled"] and not s.loc["well0", "pooled"]
    assert "analysed with another config" in s.loc["well0", "note"]
    assert s.loc["well0", "config_id"] == s.loc["well1", "config_id"] != s.loc["well2", "config_id"]
    assert "left out of the pooled" in (out / "report.html").read_text()
    # an interrupted run's folder is listed as incomplete, and not pooled
    (out / "well1" / "run.json").unlink()
    s = run_batch([plate[2]], CFG_B, out, progress=False, report=False).summary.set_index("stem")
    assert s.loc["well1", "status"] == "incomplete" and not s.loc["well1", "pooled"]
    assert other.n_failed == 0  # other folders never fail this run


# -- signals ------------------------------------------------------------------------------------


def _start(args: list[str]) -> subprocess.Popen:
    """The CLI in its own process group, with Ctrl-C at its default (as in a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-m", "deathtrack.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(out: Path, n_done: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 240
    while len(list(out.glob("*/run.json"))) < n_done:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)


def test_sigterm_writes_the_summary_and_keeps_finished_outputs(tmp_path, plate):
    out = tmp_path / "out"
    proc = _start(["-q", "run", *map(str, plate), "--out", str(out), "--no-report"])
    _wait_for(out, 1, proc)
    proc.send_signal(signal.SIGTERM)  # what `timeout`, `kill` and SLURM send
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "deathtrack: terminated (SIGTERM); finished outputs are kept." in stderr
    summary = pd.read_csv(out / "summary.csv")
    done = {p.parent.name for p in out.glob("*/run.json")}
    assert set(summary.loc[summary.status == "ok", "stem"]) == done
    assert set(summary.status) <= {"ok", "not run"} and "not run" in set(summary.status)
    assert not [p for p in out.rglob(".work-*")]
    rerun = run_batch(plate, CFG_A, out, progress=False, report=False)
    assert rerun.summary.status.eq("ok").all()
    assert rerun.summary.skipped.tolist() == [s in done for s in ("well0", "well1", "well2")]


def test_an_interrupted_run_leaves_no_frame_thread_at_work(monkeypatch, tmp_path, plate):
    """Frames segmented in threads are waited for when the run is stopped: a thread still
    inside numpy's C++ when the interpreter exits is stopped there and aborts the process
    (SIGTERM gave exit status -6 instead of 143 in ~7 % of tries under load)."""
    from deathtrack import pipeline

    at_work: list[int] = []
    real = pipeline._segment_measure_frame

    def slow(*args):
        at_work.append(1)
        try:
            time.sleep(0.3)
            return real(*args)
        finally:
            at_work.pop()

    def stop(stage, done, total):
        if stage == "segment":
            raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_segment_measure_frame", slow)
    cfg = apply_overrides(PipelineConfig(), ["segment.workers=2", "segment.parallel=threads"])
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_stack(plate[0], cfg, tmp_path / "out", progress=False, on_progress=stop)
    assert not at_work, f"{len(at_work)} frame(s) still being segmented after the interrupt"


def test_an_interrupt_inside_compiled_code_stops_the_batch_not_the_stack(
    monkeypatch, tmp_path, plate
):
    """Ctrl-C or SIGTERM landing while numba's dispatcher calls back into Python comes back
    as a SystemError caused by it: the stack is "not run" (resumable), never "failed"."""
    from deathtrack import pipeline

    def interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as stop:
            raise SystemError(
                "CPUDispatcher(<function _pair_counts>) returned a result with an exception set"
            ) from stop

    monkeypatch.setattr(pipeline, "run_stack", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch(plate[:2], CFG_A, out, progress=False, report=False)
    assert set(pd.read_csv(out / "summary.csv").status) == {"not run"}


def test_a_label_write_still_under_way_does_not_outlive_the_work_folder(tmp_path):
    """zarr 3 writes in its own I/O thread; a signal that interrupts the wait leaves the
    write running, and it put ``labels_immune.zarr/zarr.json`` back into a work folder
    just removed (CI, SIGTERM on a busy machine). Removal waits for such writes."""
    import asyncio

    import zarr  # noqa: F401  (its I/O loop, as the label stores use it)
    from zarr.core.sync import _get_loop

    from deathtrack.pipeline import _remove_tree

    work = tmp_path / ".work-test"
    work.mkdir()

    async def late_write():  # what an interrupted store write does, 0.3 s late
        await asyncio.sleep(0.3)
        (work / "labels_immune.zarr").mkdir(parents=True, exist_ok=True)
        (work / "labels_immune.zarr" / "zarr.json").write_text("{}")

    pending = asyncio.run_coroutine_threadsafe(late_write(), _get_loop())
    _remove_tree(work)
    pending.result(timeout=5)
    assert not work.exists()


def test_ctrl_c_with_two_workers_reports_finished_stacks_as_ok(tmp_path, plate):
    pytest.importorskip("distributed")
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for i in range(4):  # more stacks than the workers finish before the interruption
        (stacks / f"s{i}.ome.tif").write_bytes(plate[i % 3].read_bytes())
    out = tmp_path / "out"
    proc = _start(["-q", "run", str(stacks), "--out", str(out), "--no-report", "--workers", "2"])
    _wait_for(out, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "deathtrack: interrupted; finished outputs are kept." in stderr
    summary = pd.read_csv(out / "summary.csv")
    finished = {p.parent.name for p in out.glob("*/run.json")}
    assert len(finished) >= 2
    assert set(summary.loc[summary.status == "ok", "stem"]) == finished
    for stem in finished:
        assert f"{stem}.ome.tif: wrote " in stdout


@pytest.mark.parametrize("change", [False, True])
def test_a_stack_changed_during_its_run_leaves_no_complete_folder(
    tmp_path, plate, monkeypatch, change
):
    """The stack's checksum is worked out beside the later stages; a file changed while
    they run (here: during the deaths stage) is refused by name, and the folder is not
    complete; unchanged, run.json carries the checksum of exactly the bytes analysed."""
    import shutil

    import deathtrack.death as death
    from deathtrack.errors import StackChangedError
    from deathtrack.pipeline import run_stack

    stack = tmp_path / "well.ome.tif"
    shutil.copy(plate[1], stack)
    before = input_checksum(stack)
    real = death.detect_deaths

    def detect_deaths(*args, **kwargs):
        if change:  # a microscope still writing the file, or a copy over it
            with open(stack, "ab") as fh:
                fh.write(b"\0" * 64)
        return real(*args, **kwargs)

    monkeypatch.setattr(death, "detect_deaths", detect_deaths)
    out = tmp_path / "out"
    if change:
        with pytest.raises(StackChangedError, match=r"well.ome.tif: the stack's file\(s\) changed"):
            run_stack(stack, CFG_A, out, progress=False)
        assert not (out / "well" / "run.json").exists()
        assert not is_complete(out / "well", input_checksum(stack), CFG_A, report=False)
    else:
        run_stack(stack, CFG_A, out, progress=False)
        info = json.loads((out / "well" / "run.json").read_text())
        assert info["input_checksum"] == before
        assert is_complete(out / "well", before, CFG_A, report=False)
