"""The command line: parses, loads config, dispatches. No torch import at module level."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from speechrecipe.errors import SpeechRecipeError, describe, os_error_in

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from speechrecipe.engine.paths import ExperimentPaths
    from speechrecipe.engine.context import RunContext
    from speechrecipe.engine.problem import Problem

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Staged speech-experiment recipes.")

ConfigFiles = typer.Option(None, "--config", "-c", help="Config overlay(s), applied in order.")
Overrides = typer.Argument(None, help="key=value overrides, e.g. train.total_steps=2000")
Start = typer.Option(0, help="First stage to run.")
Stop = typer.Option(None, help="Last stage to run (default: the last).")
Device = typer.Option("auto", help="auto, cpu or cuda.")
NumWorkers = typer.Option(None, help="DataLoader workers (default: the config's train.num_workers).")
Verbose = typer.Option(False, "--verbose", "-v", help="Debug logging and full tracebacks on the console.")


def default_cache_dir() -> Path:
    return Path(os.environ.get("SPEECHRECIPE_CACHE_DIR", Path.home() / ".cache" / "speechrecipe"))


def _fail(err: Exception, verbose: bool, log_file: Optional[Path] = None) -> None:
    """One line on stderr and the error's exit code; the runner has put the traceback in log_file."""
    message, code = describe(err), err.exit_code if isinstance(err, SpeechRecipeError) else 1
    if not isinstance(err, SpeechRecipeError) and os_error_in(err) is None:  # unexpected: where to read more
        where = f"full traceback in {log_file}" if log_file and log_file.is_file() else "rerun with --verbose for the traceback"
        message = f"{message} ({where})"
    if verbose:
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    typer.echo(f"error: {message}", err=True)
    from speechrecipe.engine import distributed

    distributed.exit_after_failure(code)  # torchrun: leave without the interpreter's teardown
    raise typer.Exit(code)


def _load(problem: str, config: Optional[List[Path]], overrides: Optional[List[str]]):
    from speechrecipe.config import check_declared, load_config
    from speechrecipe.registry import resolve_problem
    from speechrecipe.validate import check_values

    klass = resolve_problem(problem)
    check_declared(klass.config_path(), *klass.declared_config(), klass.__name__)
    conf = load_config(klass.config_path(), config or [], overrides or [])
    check_values(klass, conf)
    return klass, conf


def _checked_problem(klass: type, conf: DictConfig, paths: Optional[ExperimentPaths] = None,
                     context: Optional[RunContext] = None) -> Problem:
    """The problem, after the checks `run` makes before any stage (`config` and `--dry-run` make them too)."""
    from speechrecipe.engine.paths import ExperimentPaths

    problem = klass(conf, paths or ExperimentPaths(Path("."), Path(".")), context)
    problem.check_config()
    return problem


def _command_line(command: str, problem: str, overrides: Optional[List[str]], config: Optional[List[Path]], **options) -> str:
    """The command as one would type it again: the options given (those not at their defaults) and overrides."""
    import shlex

    defaults = {"start": 0, "device": "auto"}
    words = ["speechrecipe", command, problem]
    for name, value in options.items():
        if value is not None and defaults.get(name) != value:
            words += [f"--{name.replace('_', '-')}", str(value)]
    words += [w for path in config or [] for w in ("-c", str(path))] + list(overrides or [])
    return shlex.join(words)


@app.command("list")
def list_problems() -> None:
    """Every problem with a one-line description."""
    from speechrecipe.registry import PROBLEMS, resolve_problem

    for name in PROBLEMS:
        typer.echo(f"{name:14s} {resolve_problem(name).description}")


@app.command()
def stages(
    problem: str,
    target_dir: Optional[Path] = typer.Option(None, help="Show each stage's state in this experiment, for the config given here (as `run` would see it)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Prepared-data cache (default $SPEECHRECIPE_CACHE_DIR or ~/.cache/speechrecipe)."),
    config: Optional[List[Path]] = ConfigFiles,
    overrides: Optional[List[str]] = Overrides,
) -> None:
    """The stage table; with --target-dir, each stage's state (done / stale / pending)."""
    try:
        klass, conf = _load(problem, config, overrides)
        _checked_problem(klass, conf)
        if target_dir is None:
            for s in klass.stages():
                typer.echo(f"{s.number}  {s.name:16s} {s.description}")
            return
        from speechrecipe.engine.runner import Runner, experiment_paths

        paths = experiment_paths(klass, conf, target_dir, cache_dir or default_cache_dir())
        runner = Runner(klass(conf, paths))
        # the plan, not each record alone: a stage after a stale one is stale too
        for item in runner.plan(runner.stages[0].number, runner.stages[-1].number):
            typer.echo(f"{item.stage.number}  {item.stage.name:16s} {item.state.describe()}")
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, False)


@app.command("config")
def show_config(problem: str, config: Optional[List[Path]] = ConfigFiles, overrides: Optional[List[str]] = Overrides) -> None:
    """Print the resolved, validated config that `run` would use."""
    from speechrecipe.config import to_yaml

    try:
        klass, conf = _load(problem, config, overrides)
        _checked_problem(klass, conf)
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, False)
    typer.echo(to_yaml(conf), nl=False)


@app.command()
def run(
    problem: str,
    overrides: Optional[List[str]] = Overrides,
    start: int = Start,
    stop: Optional[int] = Stop,
    target_dir: Optional[Path] = typer.Option(None, help="Experiment folder (default exp/<problem>)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Prepared-data cache (default $SPEECHRECIPE_CACHE_DIR or ~/.cache/speechrecipe)."),
    config: Optional[List[Path]] = ConfigFiles,
    device: str = Device,
    num_workers: Optional[int] = NumWorkers,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would run and why; run nothing."),
    force: bool = typer.Option(False, "--force", help="Retrain even though checkpoints were made with another config."),
    redo: Optional[int] = typer.Option(None, "--redo", help="Run stage N again from scratch (then each later stage whose inputs changed); only --redo of the training stage retrains."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unusable audio file (prepare_data.strict=true)."),
    clear_cache: bool = typer.Option(False, "--clear-cache", help="Empty this problem's prepared-data cache first."),
    verbose: bool = Verbose,
) -> None:
    """Run stages START..STOP of PROBLEM, skipping those already done."""
    from speechrecipe.engine.logs import setup_console

    setup_console(verbose)
    log_file = None
    try:
        overrides = list(overrides or []) + (["prepare_data.strict=true"] if strict else [])
        klass, conf = _load(problem, config, overrides)
        from speechrecipe.engine.context import RunContext
        from speechrecipe.engine.runner import Runner, describe_plan, experiment_paths
        from speechrecipe.validate import check_device

        check_device(device)
        target = target_dir or Path("exp") / klass.conf_name
        paths = experiment_paths(klass, conf, target, cache_dir or default_cache_dir())
        log_file = paths.log
        command = _command_line("run", problem, start=start, stop=stop, target_dir=target_dir, cache_dir=cache_dir,
                                config=config, device=device, num_workers=num_workers, redo=redo, overrides=overrides)
        context = RunContext(device=device, num_workers=num_workers, force=force, redo=redo, command=command)
        runner = Runner(_checked_problem(klass, conf, paths, context))
        last = runner.stages[-1].number if stop is None else stop
        runner.check_range(start, last)
        if dry_run:
            plan = runner.plan(start, last)
            typer.echo("\n".join(describe_plan(runner, plan)))
            runner.check_earlier_done(plan)
            return
        runner.run(start, last, clear_cache=clear_cache)
    except Exception as err:  # noqa: BLE001 - one line here; the runner put the traceback in log.txt
        _fail(err, verbose, log_file)


@app.command()
def sweep(
    problem: str,
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=V1,V2,... (swept) and KEY=V (every member); a value in brackets or quotes is one value"),
    target_dir: Path = typer.Option(..., help="The sweep folder: one target_dir per member inside, sweep.md/json/png."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Members run at once, each in its own process."),
    start: int = Start,
    stop: Optional[int] = Stop,
    cache_dir: Optional[Path] = typer.Option(None, help="Prepared-data cache, shared by every member."),
    config: Optional[List[Path]] = ConfigFiles,
    device: str = Device,
    num_workers: Optional[int] = NumWorkers,
    force: bool = typer.Option(False, "--force", help="Retrain members whose checkpoints were made with another config."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first unusable audio file."),
    verbose: bool = Verbose,
) -> None:
    """Run a grid of overrides as ordinary experiments (members) and compare them; the best chosen on validation."""
    from speechrecipe.engine.logs import setup_console

    setup_console(verbose)
    try:
        from speechrecipe.engine.sweep import Sweep, members, parse_grid
        from speechrecipe.validate import check_device

        check_device(device)
        if jobs < 1:
            raise SpeechRecipeError("--jobs: give 1 or more")
        axes, fixed = parse_grid(list(overrides or []))
        grid = members(axes)
        for member in grid:  # every member's config is checked before any runs
            klass, conf = _load(problem, config, [*fixed, *member.overrides])
            _checked_problem(klass, conf)
        options = [f"--start={start}", *([f"--stop={stop}"] if stop is not None else []), f"--device={device}",
                   *([f"--cache-dir={cache_dir.absolute()}"] if cache_dir else []),
                   *([f"--num-workers={num_workers}"] if num_workers is not None else []),
                   *(["--force"] if force else []), *(["--strict"] if strict else []), *(["--verbose"] if verbose else []),
                   *[w for path in config or [] for w in ("-c", str(path.absolute()))]]
        Sweep(problem, target_dir.absolute(), options, fixed, grid).run(jobs)
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, verbose)


@app.command()
def status(target_dir: Path) -> None:
    """Stages done, a live run's progress and ETA, checkpoints, best validation so far, final results."""
    from speechrecipe.engine.status import describe_status

    try:
        typer.echo(describe_status(target_dir))
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, False)


@app.command()
def compare(
    target_dirs: List[Path] = typer.Argument(..., help="Experiment folders (target dirs) to compare; the first is the reference."),
    format: str = typer.Option("markdown", "--format", help="markdown, csv or json."),
) -> None:
    """Final results of several runs side by side, with the config keys in which they differ."""
    from speechrecipe.engine.compare import compare as compare_runs

    try:
        typer.echo(compare_runs(target_dirs, format))
    except SpeechRecipeError as err:
        _fail(err, False)


@app.command()
def infer(
    path: Path = typer.Argument(..., help="A target_dir of a finished run, or a bundle from `speechrecipe export`."),
    inputs: Optional[List[str]] = typer.Argument(None, help="Audio files, folders, or @list.txt (paths relative to the list's folder)."),
    checkpoint: str = typer.Option("valid_best", help="valid_best, last or step-N."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The TSV (or RTTM) to write; default: standard output."),
    trials: Optional[Path] = typer.Option(None, help="asv: `enroll test` (or `label enroll test`) lines to score."),
    root: Optional[Path] = typer.Option(None, help="The folder --trials paths are relative to (default: the trial file's)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    problem: Optional[str] = typer.Option(None, help="The problem, for a target_dir from before experiment.json was kept."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Full tracebacks on the console."),
) -> None:
    """Classify, embed, transcribe or diarize new audio with a trained model: a TSV (or RTTM) of its outputs."""
    from speechrecipe.engine.logs import setup_console

    setup_console(verbose)
    try:
        from speechrecipe.inference.infer import run_infer
        from speechrecipe.validate import check_device

        check_device(device)
        run_infer(path, list(inputs or []), checkpoint, output, trials, root, device, problem)
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, verbose)


@app.command()
def export(
    path: Path = typer.Argument(..., help="The target_dir of a finished run."),
    output: Path = typer.Option(..., "--output", "-o", help="The bundle folder to create (it must not exist)."),
    checkpoint: str = typer.Option("valid_best", help="valid_best, last or step-N."),
    format: Optional[List[str]] = typer.Option(None, "--format", "-f", help="Also a plain graph, features inside: "
                                               "torchscript (model.ts) or onnx (model.onnx); repeat for both. ks, sid, intent, asv."),
) -> None:
    """A self-contained folder of one trained model: weights, encoder, config, results, model card, digests."""
    from speechrecipe.engine.logs import setup_console

    setup_console(False)
    try:
        from speechrecipe.inference.bundle import export_bundle

        typer.echo(f"bundle written to {export_bundle(path, output, checkpoint, list(format or []))}")
    except Exception as err:  # noqa: BLE001 - one line, whatever failed
        _fail(err, False)


def main() -> None:
    app()
