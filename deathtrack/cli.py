"""The ``deathtrack`` command line.

Heavy modules are imported inside the commands, so ``deathtrack --help``
returns at once. A user mistake (missing file, bad channel, bad config key)
prints one clear message and exits with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import sys
from pathlib import Path

import click

from .errors import DeathtrackError

logger = logging.getLogger("deathtrack")

#: the demo movie and its truth ship inside the package (package data), so a wheel has them
SAMPLE_DIR = Path(str(importlib.resources.files("deathtrack") / "sample_data"))
DEMO_STACK = SAMPLE_DIR / "demo.ome.tif"


def _friendly_errors(func):
    """Turn user errors into a message and exit status 2; Ctrl-C into status 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DeathtrackError as err:
            click.echo(f"deathtrack: error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("deathtrack: interrupted; finished outputs are kept.", err=True)
            sys.exit(130)

    return wrapper


def _setup_logging(verbose: int, quiet: bool) -> None:
    # the terminal shows warnings (and progress bars); -v adds what each stage did
    level = (
        logging.DEBUG if verbose > 1 else logging.INFO if verbose and not quiet else logging.WARNING
    )
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root = logging.getLogger("deathtrack")
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(min(level, logging.INFO))  # a log file gets INFO even with -q


def _parse_channels(values: tuple[str, ...]) -> dict[str, int | str]:
    from .columns import ROLES

    out: dict[str, int | str] = {}
    for item in values:
        role, sep, ch = item.partition("=")
        role = role.strip().lower()
        if not sep or not role or not ch.strip():
            raise click.BadParameter(
                f"{item!r} must look like ROLE=INDEX or ROLE=NAME, e.g. cells=0 or immune=CD8",
                param_hint="--channel",
            )
        if role not in ROLES:
            raise click.BadParameter(
                f"unknown role {role!r} in {item!r}; roles are: {', '.join(ROLES)}",
                param_hint="--channel",
            )
        ch = ch.strip()
        out[role] = int(ch) if ch.isdigit() else ch
    return out


def _build_config(config_file, channels, pixel_size, interval, z_step, axes, overrides):
    from .config import PipelineConfig, apply_overrides, load_config

    cfg = load_config(config_file) if config_file else PipelineConfig()
    flat: dict[str, object] = {}
    merged = {**cfg.input.channels, **_parse_channels(channels)}
    if channels:
        flat["input.channels"] = merged
    for key, value in (
        ("input.pixel_size_um", pixel_size),
        ("input.interval_s", interval),
        ("input.z_step_um", z_step),
        ("input.axes", axes),
    ):
        if value is not None:
            flat[key] = value
    if flat:
        cfg = apply_overrides(cfg, flat)
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    return cfg


def _input_options(func):
    opts = [
        click.option(
            "--channel",
            "channels",
            multiple=True,
            metavar="ROLE=INDEX|NAME",
            help="Channel role, repeatable: cells (required), immune, dye, caspase, nuclei. "
            "E.g. --channel cells=0 --channel immune=CD8. Default: from channel names.",
        ),
        click.option(
            "--pixel-size",
            type=float,
            default=None,
            metavar="UM",
            help="Pixel size in µm (overrides the file's metadata).",
        ),
        click.option(
            "--interval",
            type=float,
            default=None,
            metavar="S",
            help="Frame interval in seconds (overrides the file's metadata).",
        ),
        click.option(
            "--z-step",
            type=float,
            default=None,
            metavar="UM",
            help="Z step in µm for 3D stacks (overrides the file's metadata).",
        ),
        click.option(
            "--axes",
            default=None,
            metavar="AXES",
            help="Axes of the stored array when the file does not say, e.g. TCYX.",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="deathtrack")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """deathtrack: find, classify and measure cell deaths in live-cell movies.

    Start with `deathtrack info STACK` to check what deathtrack reads from a file,
    then `deathtrack run STACK --out DIR`. `deathtrack demo` runs on the bundled
    sample movie.
    """
    _setup_logging(verbose, quiet)
    ctx.obj = {"progress": not quiet}


@main.command()
@click.argument("stack", type=click.Path(path_type=Path))
@_input_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_friendly_errors
def info(stack, channels, pixel_size, interval, z_step, axes, as_json):
    """Show a stack's shape, axes, dtype, calibration, channels and roles."""
    from .io import open_input

    cfg = _build_config(None, channels, pixel_size, interval, z_step, axes, ())
    with open_input(stack, cfg.input) as movie:
        data = movie.info()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(_format_info(data))


def _format_info(data: dict) -> str:
    cal = data.get("calibration", {})
    src = cal.get("source", {}) or {}

    def fmt(key, unit, flag):
        value = cal.get(key)
        if value is None:
            return f"unknown (pass {flag})"
        origin = src.get(key)
        return f"{value:g} {unit}" + (f"  [{origin}]" if origin else "")

    lines = [
        f"file:        {data.get('path')}",
        f"format:      {data.get('format')}",
        f"axes:        {data.get('axes')}",
        f"shape:       {' x '.join(map(str, data.get('shape', ())))}",
        f"dtype:       {data.get('dtype')}",
        f"frames:      {data.get('n_frames')}",
        f"pixel size:  {fmt('pixel_size_um', 'µm', '--pixel-size UM')}",
        f"interval:    {fmt('interval_s', 's', '--interval S')}",
    ]
    if "Z" in str(data.get("axes", "")):
        lines.append(f"z step:      {fmt('z_step_um', 'µm', '--z-step UM')}")
    roles = data.get("roles", {}) or {}
    by_index = {}
    for role, idx in roles.items():
        by_index.setdefault(idx, []).append(role)
    lines.append("channels:")
    for i, name in enumerate(data.get("channel_names", [])):
        role = ", ".join(by_index.get(i, [])) or "-"
        lines.append(f"  {i}: {name:<20} role: {role}")
    return "\n".join(lines)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file of simulation parameters (see `deathtrack simulate --show-config`).",
)
@click.option(
    "--preset",
    default="default",
    help="Named scenario: default, dense, low_snr, divisions, no_deaths, no_dye, "
    "caspase, ignore, large, demo.",
)
@click.option("--seed", type=int, default=None, help="Random seed (overrides the config).")
@click.option("--name", default="movie", help="File name stem of the movie.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one parameter, e.g. --set n_frames=30 (repeatable).",
)
@click.option("--show-config", is_flag=True, help="Print the resolved parameters and exit.")
@_friendly_errors
def simulate(out, config_file, preset, seed, name, overrides, show_config):
    """Write a synthetic movie with known truth to OUT (a folder).

    OUT/NAME.ome.tif is the movie; OUT/NAME_truth/ holds the truth tables and
    label stacks, and simulation.toml, which regenerates the same movie.
    """
    from .config import apply_overrides, config_from_dict, config_to_dict, read_toml
    from .simulate import PRESETS, SimulationConfig, write_simulation
    from .simulate import preset as make_preset
    from .simulate import simulate as run_simulation

    cfg = make_preset(preset)  # validates the preset name
    if config_file:  # the file's values win over the preset's
        data = {**PRESETS[preset], **read_toml(config_file)}
        cfg = config_from_dict(data, SimulationConfig, source=str(config_file))
    if seed is not None:
        cfg = apply_overrides(cfg, {"seed": seed})
    if overrides:
        cfg = apply_overrides(cfg, list(overrides))
    if show_config:
        import tomli_w

        click.echo(tomli_w.dumps(config_to_dict(cfg)))
        return
    sim = run_simulation(cfg)
    paths = write_simulation(sim, out, name=name, progress=True)
    ev = sim.truth()["events"]
    counts = ev["mode"].value_counts().to_dict() if len(ev) else {}
    click.echo(
        f"wrote {paths['movie']} ({' x '.join(map(str, sim.shape))}, TCYX) with "
        f"{len(ev)} deaths {counts or ''}; truth in {paths['events'].parent}"
    )


@main.command()
@click.argument("stacks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Results folder; one sub-folder per stack.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML config file (see `deathtrack config`).",
)
@_input_options
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one config value, e.g. --set input.interval_s=120 (repeatable).",
)
@click.option(
    "--export-ctc",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Also write target-cell tracks in Cell Tracking Challenge format to DIR/<stem>_RES/ "
    "(for traccuracy, py-ctcmetrics, Fiji).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    help="Stacks analysed in parallel, each in its own process (a local Dask cluster).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://10.0.0.5:8786); "
    "see the README for a laptop or a SLURM cluster.",
)
@click.option("--force", is_flag=True, help="Redo stacks whose results are already complete.")
@click.option("--no-report", is_flag=True, help="Do not write report.html files.")
@click.option(
    "--log-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Append the log here too.  [default: OUT/deathtrack.log]",
)
@_friendly_errors
def run(
    stacks,
    out_dir,
    config_file,
    channels,
    pixel_size,
    interval,
    z_step,
    axes,
    overrides,
    export_ctc,
    workers,
    scheduler,
    force,
    no_report,
    log_file,
):
    """Analyse STACK(s) and write results to --out DIR/<stem>/.

    STACK may be a file, a quoted glob ('plate1/*.ome.tif') or a folder (its
    stacks, or one stack if it holds numbered frames). Stacks whose results are
    complete for the same input and config are skipped, so re-running after an
    interruption resumes. DIR/summary.csv has one row per stack (ok / failed,
    and why); the exit status is 1 when some stacks failed, 2 when all did.
    """
    from .batch import run_batch

    cfg = _build_config(config_file, channels, pixel_size, interval, z_step, axes, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    _add_log_file(log_file or out_dir / "deathtrack.log")
    progress = click.get_current_context().obj["progress"]
    try:
        result = run_batch(
            stacks,
            cfg,
            out_dir,
            workers=workers,
            scheduler=scheduler,
            force=force,
            progress=progress,
            export_ctc=export_ctc,
            report=not no_report,
        )
    finally:
        _close_log_file()
    summary = result.summary
    for row in summary.itertuples(index=False):
        if row.status == "ok":
            note = " (complete already: skipped; --force redoes it)" if row.skipped else ""
            click.echo(f"{row.stack}: wrote {row.out_dir}{note}")
        else:
            click.echo(f"deathtrack: error: {row.reason}", err=True)
    click.echo(f"summary: {result.files['summary']}")
    failed = result.n_failed
    if failed:
        click.echo(f"deathtrack: {failed} of {len(summary)} stack(s) failed", err=True)
        sys.exit(1 if failed < len(summary) else 2)


def _close_log_file() -> None:
    root = logging.getLogger("deathtrack")
    for old in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(old)
        old.close()


def _add_log_file(path: Path) -> None:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    _close_log_file()
    logging.getLogger("deathtrack").addHandler(handler)


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("demo_results"),
    help="Results folder.",
)
@_friendly_errors
def demo(out_dir):
    """Run the pipeline on the bundled sample movie (sample_data/demo.ome.tif)."""
    from .batch import run_batch
    from .config import PipelineConfig
    from .errors import StackNotFoundError
    from .io import open_stack

    if not DEMO_STACK.exists():
        raise StackNotFoundError(
            f"{DEMO_STACK}: the sample movie is missing; regenerate it with "
            "`deathtrack simulate sample_data --preset demo --seed 8 --name demo`"
        )
    with open_stack(DEMO_STACK) as movie:
        click.echo(_format_info(movie.info()))
    progress = click.get_current_context().obj["progress"]
    result = run_batch([DEMO_STACK], PipelineConfig(), out_dir, force=True, progress=progress)
    row = result.summary.iloc[0]
    if row.status != "ok":
        raise DeathtrackError(f"the demo failed: {row.reason}")
    folder = Path(row.out_dir)
    info = json.loads((folder / "run.json").read_text())
    c = info["counts"]
    click.echo(
        f"\n{c.get('n_tracks_cells', 0)} target-cell tracks, {c.get('n_tracks_immune', 0)} "
        f"immune-cell tracks, {c.get('n_divisions', 0)} division(s) in {c['n_frames']} frames "
        f"({row.seconds:.0f} s). Deaths: {c.get('n_events', 0)} "
        f"({c.get('n_apoptotic', 0)} apoptotic, {c.get('n_necroptotic', 0)} necroptotic, "
        f"{c.get('n_uncertain', 0)} uncertain). "
        f"The truth is in {SAMPLE_DIR / 'demo_truth'} (8 deaths: 4 + 4, 2 divisions)."
    )
    click.echo(f"wrote {folder}:")
    for p in sorted(folder.iterdir()):
        click.echo(f"  {p.name}")
    click.echo(f"Open {folder / 'report.html'} in a web browser to see the results.")


@main.command()
@click.argument("events", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Model file to write (JSON).",
)
@click.option(
    "--label-column",
    default="reviewed_mode",
    help="Column holding the reviewed mode (apoptotic / necroptotic).",
)
@_friendly_errors
def train(events, out_path, label_column):
    """Train the apoptotic / necroptotic classifier from reviewed EVENTS.csv files.

    Use the model with --set death.classifier=MODEL.json in deathtrack run.
    """
    import pandas as pd

    from .classify import save_model, train_classifier
    from .errors import StackNotFoundError

    tables = []
    for path in events:
        if not path.is_file():
            raise StackNotFoundError(f"{path}: no such events file")
        tables.append(pd.read_csv(path))
    model = train_classifier(tables, label_column=label_column)
    save_model(model, out_path)
    click.echo(f"wrote {out_path} (trained on {model.n_train})")


@main.command(name="config")
@click.option(
    "--file",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Validate this TOML file and print it with defaults filled in.",
)
@_friendly_errors
def config_cmd(config_file):
    """Print the full pipeline config (defaults, or a validated file) as TOML."""
    import tomli_w

    from .config import PipelineConfig, config_to_dict, load_config

    cfg = load_config(config_file) if config_file else PipelineConfig()
    click.echo(tomli_w.dumps(config_to_dict(cfg)))


def console_main() -> None:
    """The ``deathtrack`` console script: :func:`main`, then an exit without Python's final
    garbage collection over every object of NumPy, pandas, scikit-learn, trackpy, numba...
    (``gc.freeze``: ~1 s after a large run). Files are closed by then and the exit
    functions (log file, worker processes) still run."""
    import gc

    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    console_main()
