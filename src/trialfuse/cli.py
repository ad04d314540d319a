"""The `trialfuse` command line. Exit codes: 0 success, 2 bad input or usage, 1 internal failure."""
from __future__ import annotations

import gc
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from trialfuse.catalog import DEFAULT_MODELS, FAMILIES
from trialfuse.errors import RunFailed, UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Find the best model for a tabular problem (numbers or classes), without overfitting.")

Models = Annotated[str | None, typer.Option(help=f"Comma-separated families: {', '.join(FAMILIES)} (default: "
                                                f"{','.join(DEFAULT_MODELS)}).")]
Trials = Annotated[int, typer.Option(help="Optuna trials per family.")]
Folds = Annotated[int, typer.Option(help="K in K-fold cross-validation.")]
Holdout = Annotated[float, typer.Option(help="Fraction of rows sealed away for the final score.")]
Out = Annotated[Path | None, typer.Option(help="Run directory (default runs/<timestamp>).")]
Seed = Annotated[int, typer.Option(help="Seed for splits, sampler and models.")]
Devices = Annotated[str, typer.Option(help="auto, cpu, a CPU worker count (2 or cpu:2), cuda:0,1 (plus CPU workers "
                                                  "on the other cores), or an exact mix: cuda:0+cpu:6.")]
Fuse = Annotated[str, typer.Option(help="NN models trained as one: auto (on a GPU), on, off, or at most N per "
                                         "batch.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print results.json to stdout.")]


def _run(opts, quiet: bool, as_json: bool) -> None:
    from trialfuse.api import search_and_report  # the run, then its report
    from trialfuse.present.progress import RichReporter, show_summary

    if quiet or as_json:
        record = search_and_report(opts)
    else:
        with RichReporter() as reporter:
            record = search_and_report(opts, reporter)
    if as_json:
        typer.echo(json.dumps(record.to_json(), indent=2))
    elif not quiet:
        show_summary(Console(), record)
    else:  # no progress, no table; what the user must know still reaches the terminal
        for line in record.warnings:
            print(f"trialfuse: warning: {line}", file=sys.stderr)


@app.command()
def run(
    data: Annotated[Path, typer.Argument(metavar="DATA",
                                         help="Table: .csv, .parquet, .npz (X, y), .json/.jsonl records.")],
    target: Annotated[str | None, typer.Option(help="Column to predict (NPZ: the name given to y).")] = None,
    task: Annotated[str, typer.Option(help="auto (decided from the target, and said), regression, binary or "
                                           "multiclass.")] = "auto",
    metric: Annotated[str | None, typer.Option(help="Search metric: r2 (default), rmse or mae for numbers; log_loss "
                                                    "(default), roc_auc, accuracy or balanced_accuracy for classes.")
                      ] = None,
    class_weight: Annotated[str, typer.Option(help="none, or balanced: each class weighs the same in training "
                                                   "(rare classes count more; scores stay unweighted).")] = "none",
    models: Models = None,
    trials: Annotated[int | None, typer.Option(help="Optuna trials per family (default 20; with --timeout and no "
                                                    "--trials, as many as the budget allows, shared by cost).")] = None,
    folds: Annotated[int | None, typer.Option(help="K in K-fold cross-validation (default 8; 5 for more than "
                                                   "two classes, unless one has under 400 rows in the "
                                                   "table and can fill 8).")] = None,
    holdout: Holdout = 0.2,
    out: Out = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL or journal file path.")] = None,
    seed: Seed = 0,
    devices: Devices = "auto",
    # \\[ keeps the bracket: rich reads [ray] as markup and drops it.
    ray: Annotated[str | None, typer.Option(help="Run the workers as Ray actors: 'local' starts Ray on this "
                                                 "machine, 'auto' or an address joins a cluster (pip install "
                                                 "'trialfuse\\[ray]').")] = None,
    fuse: Fuse = "auto",
    precision: Annotated[str, typer.Option(help="What the fused NN batches' matmuls compute in: auto, fp32, tf32 "
                                                "or bf16 (weights, BatchNorm and the loss stay float32).")] = "auto",
    timeout: Annotated[str | None, typer.Option(help="Budget for the whole run (90s, 20m, 6h); the best "
                                                       "model so far is still saved.")] = None,
    job_timeout: Annotated[str | None, typer.Option(help="Limit for one task on a worker (e.g. 10m); past "
                                                           "it the worker is killed and its trials fail.")] = None,
    prune: Annotated[bool, typer.Option(help="Stop a trial after a fold where its running mean score is below the "
                                             "median of earlier trials at that fold (from 4 such trials on).")] = True,
    ensemble: Annotated[bool, typer.Option(help="Save a weighted ensemble or a linear stack of the search's models "
                                                "unless the best single model is clearly better out of fold.")] = True,
    refit: Annotated[bool, typer.Option(help="Retrain each saved model on all search rows instead of serving a "
                                             "model as the mean of its search's K fold models.")] = False,
    explain: Annotated[bool, typer.Option(help="Explain the winner on the holdout rows after their score "
                                               "(explain.json, the report's \"The winner\").")] = True,
    keep_columns: Annotated[str, typer.Option(help="Comma-separated columns to use even though they look like "
                                                   "row names (a row index, a per-row unique text).")] = "",
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Search every family, rank them by CV score (--metric), save the winner, score the holdout once."""
    from trialfuse.driver.options import RunOptions

    _run(RunOptions(data=data, target=target, task=task, metric=metric, class_weight=class_weight,
                    models=models, trials=trials, folds=folds,
                    holdout=holdout, out=out, storage=storage, seed=seed, devices=devices, ray=ray, fuse=fuse,
                    precision=precision, timeout=timeout, job_timeout=job_timeout, prune=prune, ensemble=ensemble,
                    refit=refit, explain=explain, keep_columns=keep_columns), quiet, as_json)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="Rows of the reference table to make.")] = 3000,
    trials: Trials = 5,
    folds: Folds = 3,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: run/ beside the table, in a new "
                                                  "temporary folder).")] = None,
    devices: Devices = "auto",
    bands: Annotated[int | None, typer.Option(help="Classes instead: the score's K equal-count bands (the "
                                                   "reference table's classification version).")] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Make a small reference table and compare all four families on it (a few minutes on a laptop)."""
    from trialfuse.driver.options import RunOptions
    from trialfuse.survivors import BAND_TARGET, TARGET, write_survivors

    if bands is not None and bands < 2:
        raise UserError(f"--bands must be at least 2, got {bands}")
    made = Path(tempfile.mkdtemp(prefix="trialfuse-demo-"))  # the table beside the run, never in its folder
    data = write_survivors(made / ("bands.csv" if bands else "survivors.csv"), rows=rows, seed=0, bands=bands)
    out = out or made / "run"
    if not (quiet or as_json):
        what = f", target: the score's {bands} bands" if bands else ""
        Console(stderr=True).print(f"demo: reference table of {rows} rows x 62 features{what} in {data}")
    _run(RunOptions(data=data, target=BAND_TARGET if bands else TARGET, trials=trials, folds=folds, out=out,
                    devices=devices), quiet, as_json)


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL_DIR",
                                              help="A best_model/ directory (or the run directory).")],
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Table with the model's feature columns.")],
    out: Annotated[Path | None, typer.Option(help="File to write: Parquet, JSON or JSON lines by its suffix "
                                                  "(.parquet, .json, .jsonl), else CSV (default: stdout).")] = None,
) -> None:
    """Apply a saved model to a table: one `prediction` per input row, same order (for classes,
    the likeliest class and a `probability_<class>` column per class)."""
    from trialfuse.driver.run_dir import check_file_out
    from trialfuse.predict import check_table_out, predict_table, write_table

    if out:
        check_file_out(out, data, model_dir)
        check_table_out(out)
    warn = lambda line: typer.echo(f"warning: {line}", err=True)  # noqa: E731
    terminal = Console(stderr=True)  # a spinner where stderr is a terminal (a million rows take half a minute)
    with terminal.status(f"reading {escape(str(data))} and predicting"):
        frame = predict_table(model_dir, data, on_warning=warn)
    if out is None:  # not under the spinner, which takes stdout over while it spins
        write_table(frame, None)
        return
    with terminal.status(f"writing {len(frame):,} predictions to {escape(str(out))}"):
        write_table(frame, out)


@app.command()
def explain(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holding results.json).")],
    table: Annotated[Path | None, typer.Option(help="Explain on these rows (with the target column) instead of "
                                                    "the run's holdout.")] = None,
    seconds: Annotated[float | None, typer.Option(help="The most it may take (default 120): parts that do not fit "
                                                       "are left out, and none at all is an error saying what "
                                                       "would.")] = None,
) -> None:
    """Explain RUN_DIR's winner again (explain.json, the report's "The winner"), on new rows if given."""
    from trialfuse.driver.run_dir import EXPLAIN, read_json
    from trialfuse.explain import LIMIT_SECONDS, explain_run

    page = explain_run(run_dir, table, on_warning=lambda line: typer.echo(f"warning: {line}", err=True),
                       limit=LIMIT_SECONDS if seconds is None else seconds)
    found = read_json(run_dir / EXPLAIN)
    top = ", ".join(f"{f['name']} {f['permutation_drop']:.3g}" for f in found["features"][:5])
    typer.echo(f"explained on {found['rows_from']}; how much the {found['metric']} worsens when one feature is "
               f"shuffled: {top}")
    typer.echo(str(page))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holding results.json).")],
) -> None:
    """Rebuild RUN_DIR/report.html from the run directory's results, study and diagnostics."""
    if not (run_dir / "results.json").is_file():
        raise UserError(f"{run_dir} is not a finished run directory (no results.json)")
    from trialfuse.present.report import build_report

    typer.echo(str(build_report(run_dir)))


@app.command()
def bench(
    rows: Annotated[int, typer.Option(help="Rows of the reference table.")] = 10_000,
    configs: Annotated[int, typer.Option(help="NN configs drawn from the search space.")] = 20,
    folds: Folds = 5,
    epochs: Annotated[int, typer.Option(help="Epoch budget per model (early stopping may end sooner).")] = 100,
    device: Annotated[str, typer.Option(help="cpu or cuda[:N].")] = "cpu",
    modes: Annotated[str, typer.Option(help="Comma-separated, of: serial, fused, auto, serial-tf32, fused-tf32, "
                                          "fused-bf16, fused-compiled, fused-compiled-tf32, fused-compiled-bf16, "
                                          "fused-filled, fused-padded, fused-snug, auto-snug.")]
    = "serial,fused,auto",
    shape: Annotated[str | None, typer.Option(help="Fix every model to DEPTHxWIDTH (e.g. 3x128; ReLU, dropout 0.2, "
                                                   "no early stopping), as tools/gpu_limit.py trains.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report, not the table.")] = False,
    save: Annotated[Path | None, typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Time the same NN configs x folds one at a time and fused, in one process; print the ratios."""
    from trialfuse.bench import check_device, format_report, parse_modes, run_bench

    try:
        chosen = parse_modes(modes)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if min(rows, configs, epochs) < 1 or folds < 2 or rows < 2 * folds:
        raise UserError("--rows, --configs and --epochs must be positive, --folds at least 2, rows >= 2 x folds")
    if shape is not None and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", shape.lower()):
        raise UserError(f"--shape must be DEPTHxWIDTH, e.g. 3x128, got {shape!r}")
    check_device(device)
    if save:
        _check_writable(save, "--save")
    report = run_bench(rows=rows, configs=configs, folds=folds, epochs=epochs, device=device, modes=chosen,
                       shape=shape)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))


def _check_writable(path: Path, option: str) -> None:
    """One line now where a file written at the end could not be (a bench's figures lost)."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


@app.command()
def worker() -> None:
    """Serve training jobs as JSON lines on stdin/stdout (one process per device)."""
    from trialfuse.transport.stdio_host import main

    main()


@app.command("make-table")
def make_table(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write: .csv or .npz.")],
    rows: Annotated[int, typer.Option(help="Rows to make.")] = 98_000,
    seed: Annotated[int, typer.Option(help="Seed of the table's random draws.")] = 0,
    bands: Annotated[int | None, typer.Option(help="The classification version: the score's K equal-count bands "
                                                   "(target `band`; .csv only).")] = None,
) -> None:
    """Write the reference survivors table (62 features, target `score`, or with --bands `band`)."""
    from trialfuse.survivors import write_survivors

    if out.suffix not in (".csv", ".npz") or (bands is not None and out.suffix != ".csv"):
        raise UserError(f"make-table {'--bands ' if bands is not None else ''}writes .csv"
                        f"{'' if bands is not None else ' or .npz'}, not {out.suffix or 'a file without extension'}")
    if bands is not None and bands < 2:
        raise UserError(f"--bands must be at least 2, got {bands}")
    if rows < 1:
        raise UserError(f"--rows must be at least 1, got {rows}")
    if seed < 0:
        raise UserError(f"--seed must be zero or positive, got {seed}")
    if bands is not None and bands > rows:
        raise UserError(f"--bands {bands} needs at least as many rows (--rows {rows}): a band without rows is no class")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} is not there; make it first")
    replaced = " (replacing the file there)" if out.exists() else ""
    write_survivors(out, rows=rows, seed=seed, bands=bands)
    typer.echo(f"wrote {out}{replaced}: {rows} rows x 62 features" + (f", target 'band' ({bands} bands)" if bands
                                                                       else ""))


def entry() -> None:
    """The `trialfuse` script: `main`, then exit without the interpreter's last garbage collections
    over every object the libraries made (half a second after a run): what must be written is."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line and exit 2, never a traceback."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="trialfuse", standalone_mode=False)
    except UserError as exc:
        print(f"trialfuse: error: {exc}", file=sys.stderr)
        return 2
    except RunFailed as exc:
        print(f"trialfuse: error: {exc}", file=sys.stderr)
        return 1
    except typer.Exit as exc:
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            return 2
        print(f"trialfuse: error: {exc.format_message()}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:  # typer turns Ctrl-C into this exit code
        print("trialfuse: interrupted; rerun the same command to continue", file=sys.stderr)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
