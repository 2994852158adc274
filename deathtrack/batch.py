"""Batch runs: many stacks in one command, resumable, serial or on a Dask cluster.

:func:`run_batch` is what ``deathtrack run STACK... --out DIR`` calls. Each
stack is analysed by :func:`process_stack` (the pipeline, then its
report) — in this process, in ``workers`` local processes, or on the
workers of a Dask cluster at ``scheduler``; all three take the same code
path through a :class:`concurrent.futures.Executor`-like client, so their
tables are byte-identical. One bad stack fails alone: its row in
``DIR/summary.csv`` says why, the others finish.

What a results folder guarantees:

- One run at a time writes into ``DIR`` (:func:`deathtrack.io.results_lock`);
  another is refused with a message naming the holder; the lock of a run
  that died is taken over.
- A stack folder is complete only when its ``run.json`` says ``ok`` and every
  file it lists is there with the recorded size and SHA-256: it then holds the
  results of one input (SHA-256 of its bytes) and one config. A run writes
  into a work folder and moves the files in at the end, ``run.json`` last, so
  a killed run leaves either the earlier complete results or no ``run.json``.
  A complete folder of the same input and config is skipped, so re-running a
  command after an interruption picks up where it stopped (``force=True``
  redoes all).
- ``summary.csv``, ``recruitment_stats.csv`` and the batch ``report.html`` are
  computed from every complete stack folder in ``DIR`` (column ``run_id``:
  the run that wrote each; ``in_this_run``), not only from this run's stacks.
  A stack analysed with another config than this run's is flagged
  (``pooled`` = False, ``note``) and left out of the pooled statistics.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as col
from ._memory import give_back_memory as _give_back_memory
from .config import PipelineConfig, config_from_dict, config_to_dict
from .errors import DeathtrackError, interrupt_behind
from .pipeline import read_table, table_path

logger = logging.getLogger(__name__)

__all__ = [
    "REQUIRED_OUTPUTS",
    "SUMMARY_COLUMNS",
    "BatchResult",
    "analysis_config_id",
    "expand_stacks",
    "is_complete",
    "process_stack",
    "run_batch",
]

#: files a finished stack folder holds (tables may be .parquet instead of .csv)
REQUIRED_OUTPUTS = (
    "tracks",
    "events",
    "recruitment",
    "lineage",
    "run.json",
    "report.html",
)

#: columns of ``summary.csv``
SUMMARY_COLUMNS = [
    "stack",
    "stem",
    "status",
    "reason",
    "skipped",
    "n_frames",
    "n_tracks_cells",
    "n_tracks_immune",
    "n_divisions",
    "n_events",
    "n_apoptotic",
    "n_necroptotic",
    "n_uncertain",
    "mean_within_r_post_apoptotic",
    "mean_within_r_post_necroptotic",
    "recruitment_index_apoptotic",
    "recruitment_index_necroptotic",
    "seconds",
    "warnings",
    "run_id",
    "in_this_run",
    "config_id",
    "pooled",
    "note",
    "out_dir",
]

#: ``status`` of a folder in the results folder that holds no complete run
INCOMPLETE = "incomplete"

_STACK_SUFFIXES = (".tif", ".tiff", ".btf", ".zarr")
_FRAME_FILE = re.compile(r"^[A-Za-z_\-]*\d+\.tiff?$", re.IGNORECASE)


@dataclass
class BatchResult:
    """What :func:`run_batch` did: one summary row per stack, and where it wrote.

    ``summary`` holds this run's stacks first (in the order given), then the
    other stack folders of the results folder (``in_this_run`` False).
    """

    summary: pd.DataFrame
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    run_id: str = ""
    interrupted: bool = False

    @property
    def this_run(self) -> pd.DataFrame:
        """The rows of the stacks this run was given."""
        return self.summary[self.summary["in_this_run"].astype(bool)]

    @property
    def n_failed(self) -> int:
        """Stacks of this run that did not end ``ok``."""
        return int((self.this_run["status"] != "ok").sum())


def _is_stack_path(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith(_STACK_SUFFIXES) and not name.startswith(".")


def _is_frame_folder(p: Path) -> bool:
    """A folder of numbered single-frame TIFFs (Cell Tracking Challenge layout): one stack."""
    tiffs = [f.name for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".tif", ".tiff")]
    return bool(tiffs) and all(_FRAME_FILE.match(n) for n in tiffs)


def expand_stacks(items: Iterable[str | Path]) -> list[tuple[str, Path | None, str]]:
    """Turn files, globs and folders into the list of stacks to analyse.

    - a file, or a ``.zarr`` folder, is one stack;
    - a glob (``plate1/*.ome.tif``, quoted so the shell leaves it) is every
      stack it matches, in sorted order;
    - a folder of numbered single-frame TIFFs (``t000.tif, t001.tif, ...``)
      is one stack; any other folder stands for the stacks directly inside it.

    Returns
    -------
    list of (given, path, problem)
        ``problem`` is empty, or says why ``given`` yields no stack (then
        ``path`` is None); such items become ``failed`` rows, not errors.
    """
    out: list[tuple[str, Path | None, str]] = []
    for item in items:
        s = str(item)
        p = Path(s)
        if any(ch in s for ch in "*?[") and not p.exists():
            hits = sorted(Path(h) for h in glob.glob(s, recursive=True))
            hits = [h for h in hits if h.is_file() or h.suffix.lower() == ".zarr"]
            if not hits:
                out.append((s, None, f"{s}: no file matches this pattern"))
            out.extend((str(h), h, "") for h in hits)
        elif p.is_dir() and p.suffix.lower() != ".zarr" and not _is_frame_folder(p):
            inside = sorted(q for q in p.iterdir() if _is_stack_path(q))
            if not inside:
                out.append(
                    (
                        s,
                        None,
                        f"{s}: folder holds no stacks (.tif, .tiff, .ome.tif, .zarr) "
                        "and is not a folder of numbered frames (t000.tif, ...)",
                    )
                )
            out.extend((str(q), q, "") for q in inside)
        else:
            out.append((s, p, ""))
    return out


def _normalised(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def analysis_config_id(config: PipelineConfig | dict) -> str:
    """A short hash of the parameters that shape results: every section but ``input``
    (calibration and channels may differ from stack to stack) and ``output``, and without
    ``segment.workers`` / ``segment.parallel`` (results do not depend on them)."""
    data = config_to_dict(config) if isinstance(config, PipelineConfig) else config
    data = json.loads(json.dumps(data or {}, default=str))
    data.pop("input", None)
    data.pop("output", None)
    seg = data.get("segment")
    if isinstance(seg, dict):
        seg.pop("workers", None)
        seg.pop("parallel", None)
    return hashlib.sha256(_normalised(data).encode()).hexdigest()[:12]


def _read_run_json(folder: Path) -> dict | None:
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _has_required(folder: Path, report: bool) -> bool:
    for name in REQUIRED_OUTPUTS:
        if name == "report.html" and not report:
            continue
        if "." in name:
            if not (folder / name).exists():
                return False
        elif table_path(folder, name) is None:
            return False
    return True


def is_complete(
    stack_dir: str | Path,
    checksum: str,
    config: PipelineConfig,
    *,
    report: bool = True,
    verify: str = "sha256",
) -> bool:
    """Whether ``stack_dir`` holds a finished run of these input bytes and this config.

    Finished: ``run.json`` says ``ok``, names this input checksum and this config,
    and every file it lists is there as written (size and SHA-256; ``verify =
    "size"`` checks sizes only). ``report``: whether ``report.html`` must be there
    too.
    """
    from .pipeline import outputs_intact

    folder = Path(stack_dir)
    info = _read_run_json(folder)
    if info is None or info.get("status") != "ok" or info.get("input_checksum") != checksum:
        return False
    if _normalised(info.get("config")) != _normalised(
        json.loads(json.dumps(config_to_dict(config), default=str))
    ):
        return False
    return _has_required(folder, report) and outputs_intact(folder, info, verify=verify)


def _empty_row(**values) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
    row.update(reason="", skipped=False, warnings="", run_id="", in_this_run=True,
               config_id="", pooled=False, note="", out_dir="")  # fmt: skip
    row.update(values)
    return row


def _row_from_folder(row: dict, folder: Path, info: dict | None = None) -> dict:
    """Fill a summary row with what a finished folder's run.json and events say."""
    info = info if info is not None else (_read_run_json(folder) or {})
    counts = info.get("counts", {})
    for key in SUMMARY_COLUMNS:
        if key.startswith("n_") and key in counts:
            row[key] = counts[key]
    row["warnings"] = "; ".join(str(w) for w in info.get("warnings") or [])
    row["run_id"] = str(info.get("run_id") or info.get("started") or "")
    row["config_id"] = analysis_config_id(info.get("config") or {})
    ev = read_table(folder, "events")
    if ev is not None:
        for metric in ("mean_within_r_post", "recruitment_index"):
            for mode in (col.APOPTOTIC, col.NECROPTOTIC):
                vals = ev.loc[ev[col.MODE] == mode, metric] if metric in ev else pd.Series()
                vals = pd.to_numeric(vals, errors="coerce").dropna()
                row[f"{metric}_{mode}"] = float(vals.mean()) if len(vals) else math.nan
    return row


def process_stack(
    stack: str | Path,
    config: PipelineConfig | dict,
    out_dir: str | Path,
    *,
    force: bool = False,
    progress: bool = False,
    export_ctc: str | Path | None = None,
    report: bool = True,
    lock: bool = True,
    run_id: str | None = None,
) -> dict:
    """Analyse one stack (unless already done) and return its ``summary.csv`` row.

    Never raises for a bad stack: a user error (unreadable file, wrong axes,
    missing calibration, ...) or an unexpected failure becomes a ``failed``
    row whose ``reason`` says what went wrong. Ctrl-C still stops the run.
    A complete folder that only lacks its ``report.html`` gets the report, not
    a new run. ``lock``: hold the lock of ``out_dir`` (``False`` when the
    caller holds it, as :func:`run_batch` does).
    """
    import contextlib

    from .io import results_lock, stack_stem
    from .pipeline import input_checksum, run_stack

    cfg = config if isinstance(config, PipelineConfig) else config_from_dict(config)
    stack = Path(stack)
    folder = Path(out_dir) / stack_stem(stack)
    row = _empty_row(stack=str(stack), stem=folder.name, status="failed", run_id=run_id or "",
                     out_dir=str(folder))  # fmt: skip
    t0 = time.perf_counter()
    try:
        with results_lock(out_dir) if lock else contextlib.nullcontext():
            if not stack.exists():
                from .errors import StackNotFoundError

                raise StackNotFoundError(f"{stack}: no such file or folder")
            if not force and folder.exists():
                checksum = input_checksum(stack)
                if is_complete(folder, checksum, cfg, report=False):
                    if report and not (folder / "report.html").exists():
                        from .report import write_report

                        write_report(folder, stack_path=stack)
                    row.update(status="ok", skipped=True)
                    return _row_from_folder(row, folder)
            run_stack(
                stack,
                cfg,
                out_dir,
                progress=progress,
                export_ctc=export_ctc,
                lock=False,
                run_id=run_id,
            )
            if report:
                from .report import write_report

                _give_back_memory()  # the analysis' freed memory, before the report's peak
                write_report(folder, stack_path=stack)
            row.update(status="ok")
            _row_from_folder(row, folder)
    except DeathtrackError as err:
        row["reason"] = str(err)
    except Exception as err:
        stop = interrupt_behind(err)
        if stop is not None:
            raise stop from None
        # a bug or an unforeseen input: this stack fails, the batch goes on, the log has it all
        logger.error("%s: unexpected error\n%s", stack, traceback.format_exc(),
                     extra={"deathtrack_console": False})  # fmt: skip
        row["reason"] = f"{stack}: unexpected {type(err).__name__}: {err} (see the log)"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


class _Deferred:
    """A job of :class:`_SerialClient`: runs when its result is asked for."""

    def __init__(self, fn, args, kwargs):
        self._call = (fn, args, kwargs)

    def result(self):
        fn, args, kwargs = self._call
        return fn(*args, **kwargs)


class _SerialClient:
    """The client used without workers: runs each job in this process, one after another."""

    def submit(self, fn, *args, **kwargs) -> _Deferred:
        return _Deferred(fn, args, kwargs)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _worker_env():
    """While local worker processes start: they ignore Ctrl-C (the terminal sends it to every
    process; this one stops them itself, so they print no tracebacks) and log only Dask's
    errors (not its notes on the tasks cancelled then)."""
    import os
    import signal
    import threading

    key = "DASK_LOGGING__DISTRIBUTED"  # read by distributed when a worker process imports it
    old_env = os.environ.get(key)
    os.environ[key] = "error"
    main = threading.current_thread() is threading.main_thread()
    # an ignored signal stays ignored in the child processes, and Python (and asyncio) keep
    # it so; this process gets its own handler back at once
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        yield
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if old_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old_env


class _DaskCancelRace(logging.Filter):
    """Drops one known log record: Ctrl-C during a call into Dask's event loop, in the
    moment before that call has started, makes ``distributed.utils.sync``'s ``cancel``
    callback raise ``NameError`` (its ``future`` is not set yet), and tornado logs that
    with a traceback. The interruption itself is handled (outputs finished are kept); the
    traceback would only tell the user that something went wrong. Any other record
    passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        if not (exc and exc[0] is NameError and exc[2] is not None):
            return True
        tb = exc[2]
        while tb.tb_next is not None:
            tb = tb.tb_next
        code = tb.tb_frame.f_code
        path = Path(code.co_filename)
        return not (code.co_name == "cancel" and path.parts[-2:] == ("distributed", "utils.py"))


def _quiet_dask_cancel_race() -> None:
    """Install :class:`_DaskCancelRace` on tornado's callback logger (once)."""
    log = logging.getLogger("tornado.application")
    if not any(isinstance(f, _DaskCancelRace) for f in log.filters):
        log.addFilter(_DaskCancelRace())


def _local_cluster(workers: int):
    """A local Dask cluster of ``workers`` processes (see :func:`_worker_env`)."""
    from distributed import LocalCluster

    with _worker_env():
        # no dashboard, and the scheduler's HTTP endpoints on a free port: by default they
        # take 8787 and warn when another cluster (a notebook's, a second run) holds it
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
        )


#: how long to try reaching a Dask scheduler given with --scheduler before giving up
SCHEDULER_TIMEOUT_S = 20


def _client(workers: int, scheduler: str | None):
    if scheduler is None and workers <= 1:
        return _SerialClient(), None
    from .errors import ConfigError

    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "--workers and --scheduler need Dask distributed: pip install 'deathtrack[dask]'"
        ) from None
    _quiet_dask_cancel_race()
    if scheduler is not None:
        try:
            return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s"), None
        except (OSError, ValueError, TypeError) as err:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {scheduler} ({err}); is it running? "
                "Give its address as tcp://HOST:PORT; start one with `dask scheduler` (see "
                "the README)"
            ) from None
    cluster = _local_cluster(workers)
    return Client(cluster), cluster


def _as_completed(futures: Sequence, client):
    if isinstance(client, _SerialClient):
        yield from futures
    else:
        from distributed import as_completed

        yield from as_completed(futures)


def _close(client, cluster) -> None:
    """Close the Dask client and local cluster, quietly, even after Ctrl-C (a worker still
    busy with a stack is stopped: Dask's note that it killed it is not for the terminal)."""
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        client.close()
        if cluster is not None:
            cluster.close(timeout=10)
    finally:
        quiet.setLevel(level)


def run_batch(
    stacks: Iterable[str | Path],
    config: PipelineConfig | None = None,
    out_dir: str | Path = "results",
    *,
    workers: int = 1,
    scheduler: str | None = None,
    force: bool = False,
    progress: bool = True,
    export_ctc: str | Path | None = None,
    report: bool = True,
) -> BatchResult:
    """Analyse every stack and write ``out_dir/<stem>/``, ``summary.csv`` and the pooled stats.

    Parameters
    ----------
    stacks
        Files, globs and folders (see :func:`expand_stacks`).
    config
        Pipeline parameters, the same for every stack.
    out_dir
        Results folder.
    workers
        Local worker processes (a Dask ``LocalCluster``); 1 runs in this process.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); overrides
        ``workers``.
    force
        Redo stacks whose outputs are complete.
    progress
        Progress bars (over stacks; over frames too when serial).
    export_ctc
        Also write Cell Tracking Challenge results per stack to this folder.
    report
        Write ``report.html`` per stack and for the batch.

    Returns
    -------
    BatchResult
        ``summary``: this run's stacks in the order given, then the other stack
        folders of ``out_dir``; the files written.

    Raises
    ------
    ResultsLockedError
        Another run is writing into ``out_dir``.
    DeathtrackError
        A problem shared by every stack (the results folder, the classifier
        file, the Dask scheduler), before any stack is analysed.
    KeyboardInterrupt
        On Ctrl-C (or SIGTERM in the CLI), after ``summary.csv`` is written:
        finished stacks are ``ok``, the others ``not run``.
    """
    from .io import ensure_folder, remove_stale_work, results_lock
    from .pipeline import new_run_id

    cfg = config or PipelineConfig()
    out = Path(out_dir)
    run_id = new_run_id()
    with results_lock(out):
        for d in [out, *(p for p in out.iterdir() if p.is_dir())]:
            for p in remove_stale_work(d):
                logger.info("removed %s, left by a run that was killed", p)
        if cfg.death.classifier:
            from .classify import load_model

            load_model(cfg.death.classifier)  # one bad model file fails the run, not each stack
        if export_ctc is not None:
            ensure_folder(export_ctc, "--export-ctc folder")
        return _run_locked(
            stacks, cfg, out, run_id, workers=workers, scheduler=scheduler, force=force,
            progress=progress, export_ctc=export_ctc, report=report,
        )  # fmt: skip


def _run_locked(
    stacks, cfg, out: Path, run_id: str, *, workers, scheduler, force, progress, export_ctc, report
) -> BatchResult:
    from tqdm.auto import tqdm

    from .io import stack_stem

    items = expand_stacks(stacks)
    rows: list[dict | None] = [None] * len(items)
    seen: dict[str, str] = {}
    todo = []
    for i, (given, path, problem) in enumerate(items):
        if path is not None:
            stem = stack_stem(path)
            if stem in seen:
                problem = (
                    f"{given}: its results folder {out / stem} is also {seen[stem]}'s; "
                    "rename one of the files or run them with different --out folders"
                )
            else:
                seen[stem] = given
        if problem:
            rows[i] = _empty_row(stack=given, stem="", status="failed", reason=problem,
                                 run_id=run_id)  # fmt: skip
        else:
            todo.append((i, path))

    serial = scheduler is None and workers <= 1
    client, cluster = _client(workers, scheduler)
    cfg_arg: Any = cfg if serial else config_to_dict(cfg)
    t0 = time.perf_counter()
    futures: dict = {}
    stopped: BaseException | None = None
    try:
        for i, path in todo:
            fut = client.submit(
                process_stack,
                path,
                cfg_arg,
                out,
                force=force,
                progress=progress and serial,
                export_ctc=export_ctc,
                report=report,
                lock=False,  # this process holds it
                run_id=run_id,
                **({} if serial else {"pure": False, "key": f"deathtrack-{i}-{path.name}"}),
            )
            futures[fut] = i
        bar = tqdm(
            total=len(items), desc="stacks", unit="stack", disable=not progress or len(items) < 2
        )
        bar.update(len(items) - len(todo))
        for fut in _as_completed(list(futures), client):
            row = fut.result()
            rows[futures[fut]] = row
            bar.update(1)
            if row["status"] == "ok":
                logger.info("%s: %s", row["stack"], "done before, skipped" if row["skipped"]
                            else f"ok ({row['seconds']} s)")  # fmt: skip
            else:
                logger.error("%s: failed: %s", row["stack"], row["reason"],
                             extra={"deathtrack_console": False})  # fmt: skip
        bar.close()
    except BaseException as err:
        stopped = err
        raise
    finally:
        # interrupted or not, the summary says what is done; a re-run resumes from it
        for fut, i in futures.items():
            if rows[i] is None and getattr(fut, "status", None) == "finished":
                try:
                    rows[i] = fut.result()
                except Exception:  # pragma: no cover - a worker lost while reporting
                    pass
        try:
            _close(client, cluster)
        except BaseException as err:  # a second Ctrl-C while closing: the summary comes first
            logger.debug("closing the Dask cluster: %r", err)
        for i, row in enumerate(rows):
            if row is None:
                given = items[i][0]
                folder = out / stack_stem(given)
                info = _read_run_json(folder)
                if info is not None and info.get("run_id") == run_id:
                    # finished by a worker, but not reported before the interruption
                    rows[i] = _row_from_folder(
                        _empty_row(stack=given, stem=folder.name, status="ok",
                                   out_dir=str(folder)),
                        folder, info,
                    )  # fmt: skip
                else:
                    rows[i] = _empty_row(
                        stack=given, stem=stack_stem(given), status="not run",
                        reason="interrupted before this stack finished", out_dir=str(folder),
                    )  # fmt: skip
        summary = _batch_summary([r for r in rows if r is not None], out, cfg, run_id)
        files = _write_batch_tables(summary, out, cfg, report, interrupted=stopped is not None)
        if stopped is not None:  # the caller (the CLI) says what was done
            stopped.batch_result = BatchResult(  # type: ignore[attr-defined]
                summary=summary, out_dir=out, files=files, run_id=run_id, interrupted=True
            )
    this = summary[summary["in_this_run"].astype(bool)]
    logger.info(
        "%d stack(s): %d ok, %d failed, in %.0f s",
        len(this),
        int((this.status == "ok").sum()),
        int((this.status != "ok").sum()),
        time.perf_counter() - t0,
    )
    return BatchResult(summary=summary, out_dir=out, files=files, run_id=run_id)


def _batch_summary(rows: list[dict], out: Path, cfg: PipelineConfig, run_id: str) -> pd.DataFrame:
    """This run's rows, then one row per other stack folder of ``out``; configs compared."""
    from .pipeline import outputs_intact

    ref = analysis_config_id(cfg)
    ours = {r["stem"] for r in rows if r.get("stem")}
    others = []
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in ours:
            continue
        info = _read_run_json(folder)
        if info is None:
            from .pipeline import _known_outputs

            if not any((folder / n).exists() for n in _known_outputs()):
                continue  # not a stack folder (e.g. a --export-ctc folder inside out)
        row = _empty_row(stack=str((info or {}).get("stack", "")), stem=folder.name,
                         in_this_run=False, out_dir=str(folder))  # fmt: skip
        if info and info.get("status") == "ok" and outputs_intact(folder, info, verify="size"):
            row.update(status="ok", skipped=True)
            _row_from_folder(row, folder, info)
        else:
            row.update(
                status=INCOMPLETE,
                reason=f"{folder}: no complete results (a run failed or was interrupted "
                "there); run its stack again",
            )
        others.append(row)
    all_rows = [dict(r) for r in rows] + others
    for row in all_rows:
        if row["status"] != "ok":
            continue
        if not row.get("config_id"):
            row["config_id"] = analysis_config_id((_read_run_json(Path(row["out_dir"])) or {})
                                                  .get("config") or {})  # fmt: skip
        row["pooled"] = row["config_id"] == ref
        if not row["pooled"]:
            row["note"] = (
                f"analysed with another config ({row['config_id']}) than this run's ({ref}): "
                "left out of the pooled statistics; run it again with this config to include it"
            )
    summary = pd.DataFrame(all_rows, columns=SUMMARY_COLUMNS)
    for c in ("skipped", "in_this_run", "pooled"):
        summary[c] = summary[c].astype(bool)
    return summary


def _write_batch_tables(
    summary: pd.DataFrame, out: Path, cfg: PipelineConfig, report: bool, *, interrupted: bool
) -> dict[str, Path]:
    """``summary.csv``, then (unless interrupted) the pooled statistics and the batch report.

    The old pooled statistics and report are removed first: they would no longer
    match the summary. After an interruption the next run writes them.
    """
    from .pipeline import write_table

    for name in ("recruitment_stats.csv", "recruitment_stats.parquet", "report.html"):
        (out / name).unlink(missing_ok=True)
    files = {"summary": write_table(summary, out / "summary.csv")}
    if interrupted:
        logger.info("interrupted: the pooled statistics and batch report are left to the next run")
        return files
    files.update(_pooled(summary, out, cfg, report))
    return files


def _pooled(summary: pd.DataFrame, out: Path, cfg: PipelineConfig, report: bool) -> dict:
    """Pooled comparison of recruitment by mode across stacks, and the batch report."""
    from .pipeline import write_table
    from .recruit import compare_modes

    files = {}
    tables = []
    for row in summary[(summary.status == "ok") & summary.pooled].itertuples(index=False):
        ev = read_table(row.out_dir, "events")
        if ev is None:
            continue
        tables.append(ev.assign(stack=row.stem))
    if tables:
        events = pd.concat(tables, ignore_index=True)
        stats = compare_modes(
            events,
            n_bootstrap=cfg.recruit.n_bootstrap,
            n_permutations=cfg.recruit.n_permutations,
            seed=cfg.recruit.seed,
            stack_col="stack",
        )
        files["recruitment_stats"] = write_table(stats, out / "recruitment_stats.csv")
    if report:
        try:
            from .report import write_batch_report

            files["report"] = write_batch_report(out)
        except Exception as err:
            logger.error("the batch report could not be written: %s", err)
            logger.debug("the batch report's error", exc_info=True)
    return files
