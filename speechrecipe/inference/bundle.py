"""`speechrecipe export`: a self-contained folder of one trained model that `speechrecipe.load` reads with the
target_dir and the cache gone.

It holds the resolved config, every tensor of the task (model.ckpt, a frozen SSL upstream's included), the
encoder or tokenizer files, what stage 3 fixed for these weights (a tuned threshold, an AS-norm cohort, an LM
and its lexicon), results.json with intervals, a README model card, and bundle.json with the sha256 of every
file. It is written beside its destination and renamed into place, so a failed export leaves nothing half made.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from omegaconf import OmegaConf

from speechrecipe.errors import ConfigError
from speechrecipe.inference.source import BUNDLE_FILE, BUNDLE_FORMAT, INFERENCE_DIR, WEIGHTS, Source, open_source

LM_DIR = "lm"


def export_bundle(path: Path, output: Path, checkpoint: str = "valid_best", formats: list[str] = ()) -> Path:
    """Write the bundle of `checkpoint` of target_dir `path` into `output` (which must not exist yet), with a graph
    of the model in each of `formats` (torchscript: model.ts, onnx: model.onnx; inference/graph.py)."""
    from speechrecipe.engine.checkpoint import load as load_checkpoint, save_atomic
    from speechrecipe.inference.loading import load_source
    from speechrecipe.nn.ssl_upstream import full_state_dict, state_digest

    source = open_source(path, checkpoint)
    if source.bundle:
        raise ConfigError(f"{path} is a bundle already; copy the folder to move it")
    output = Path(output)
    if output.exists():
        raise ConfigError(f"--output {output} exists; give a new folder (an export never writes into an existing one)")
    formats = list(dict.fromkeys(formats))
    if formats:
        from speechrecipe.inference.graph import check_formats

        check_formats(formats, source.problem_spec)
    model = load_source(source, "cpu")
    partial = output.with_name(f".{output.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with full_state_dict(model.task):
            weights = model.task.state_dict()
        step = load_checkpoint(source.weights).get("counters", {}).get("step")
        save_atomic({"format": 1, "model": weights, "checkpoint": source.checkpoint, "step": step}, partial / WEIGHTS)
        conf = OmegaConf.load(source.root / "config.yaml")
        _copy_lm(conf, source.root, partial)
        OmegaConf.save(conf, partial / "config.yaml")
        for name in _encoder_files(source):
            shutil.copyfile(source.root / name, partial / name)
        for found in sorted((source.root / INFERENCE_DIR).glob(f"{state_digest(model.task.state_dict())[:16]}*")):
            (partial / INFERENCE_DIR).mkdir(exist_ok=True)
            shutil.copyfile(found, partial / INFERENCE_DIR / found.name)
        results = source.root / "results" / "results.json"
        if results.is_file():
            shutil.copyfile(results, partial / "results.json")
        card = model_card(source, step, results if results.is_file() else None)
        if formats:
            from speechrecipe.inference.graph import FORMATS, graph_card, write_graph

            for fmt in formats:
                write_graph(model, fmt, partial / FORMATS[fmt])
            card += "\n" + "\n".join(graph_card(model, formats))
        (partial / "README.md").write_text(card)
        _write_manifest(partial, source, step)
        partial.rename(output)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return output


def _encoder_files(source: Source) -> list[str]:
    """The files the stages before training wrote into target_dir (label encoders, tokenizer): their records say."""
    from speechrecipe.engine.records import StageRecord
    from speechrecipe.registry import resolve_problem

    train = resolve_problem(source.problem_spec).stage_with_role("train")
    names = []
    for path in sorted((source.root / "records").glob("stage-*.json")):
        record = StageRecord.load(path)
        if record is None or record.stage >= train.number:
            continue
        target = Path(record.roots.get("target", source.root))
        for written in map(Path, record.files):
            if written.is_relative_to(target) and (source.root / written.relative_to(target)).is_file():
                names.append(str(written.relative_to(target)))
    return names


def _copy_lm(conf, root: Path, bundle: Path) -> None:
    """asr with an LM: the LM file and its lexicon travel in the bundle, named relative to it."""
    lm = OmegaConf.select(conf, "evaluate.lm")
    if not lm or not lm.get("path"):
        return
    (bundle / LM_DIR).mkdir()
    lexicon = Path(lm.lexicon).expanduser() if lm.lexicon else root / "lexicon.txt"
    for key, file in (("path", Path(lm.path).expanduser()), ("lexicon", lexicon)):
        shutil.copyfile(file, bundle / LM_DIR / file.name)
        lm[key] = f"{LM_DIR}/{file.name}"


def _write_manifest(bundle: Path, source: Source, step) -> None:
    from speechrecipe.fileio import atomic_write_json, file_digest

    files = {str(p.relative_to(bundle)): file_digest(p) for p in sorted(bundle.rglob("*")) if p.is_file()}
    atomic_write_json(bundle / BUNDLE_FILE, {
        "format": BUNDLE_FORMAT, "problem": source.problem_spec, "checkpoint": source.checkpoint, "step": step,
        "config_digest": files["config.yaml"], "commands": source.meta.get("commands", []),
        "exported": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "files": files})


def model_card(source: Source, step, results: Path | None) -> str:
    """README.md of a bundle: problem, corpus, headline metric with its interval, the commands, the config digest."""
    from speechrecipe.engine.figures import kind_of, show_interval
    from speechrecipe.fileio import file_digest

    conf = source.conf
    corpus = OmegaConf.select(conf, "prepare_data.dataset_root") or "the mini corpus built on first use"
    lines = [f"# speechrecipe model: {source.problem_spec}", "",
             f"- problem: `{source.problem_spec}`; checkpoint `{source.checkpoint}` (step {step})",
             f"- corpus: `{corpus}`",
             f"- config: config.yaml, sha256 `{file_digest(source.root / 'config.yaml')}`",
             f"- input: audio files or samples at any rate, mono or not: resampled to "
             f"{OmegaConf.select(conf, 'build_dataset.sample_rate')} Hz and downmixed, as stage 0 does", ""]
    if results is not None:
        lines += ["## Results (stage 4: the checkpoint chosen on validation)", "", "| test set | checkpoint | metric | value (95 % interval) |",
                  "|---|---|---|---|"]
        for test_set, row in json.loads(results.read_text()).items():
            if isinstance(row, dict) and "metric" in row:
                metric = row["metric"]
                shown = show_interval(row.get(metric), row.get("intervals", {}).get(metric), kind_of(metric))
                unit = " %" if kind_of(metric) == "pct" else ""
                lines.append(f"| {test_set} | {row.get('checkpoint')} | {metric} | {shown}{unit} |")
        lines.append("")
    else:
        lines += ["No results: stage 4 had not run when this bundle was exported.", ""]
    commands = source.meta.get("commands", [])
    lines += ["## Trained by", "", *(f"    {c}" for c in commands or ["(the command was not recorded)"]), "",
              "## Use", "", "    import speechrecipe", "    model = speechrecipe.load(\"THIS_FOLDER\")", "",
              "    speechrecipe infer THIS_FOLDER audio.wav --output out.tsv", "",
              f"bundle.json holds the sha256 of every file; `load` refuses a bundle whose files were changed.", ""]
    return "\n".join(lines)
