"""`speechrecipe.load`: a target_dir or a bundle → the trained model of its problem, ready to use."""
from __future__ import annotations

import importlib
from pathlib import Path

from speechrecipe.errors import ConfigError
from speechrecipe.inference.source import Source, open_source


def load(path: str | Path, checkpoint: str = "valid_best", device: str = "cpu", problem: str | None = None):
    """The model trained in target_dir `path` (checkpoint valid_best, last or step-N) or exported to bundle `path`:
    a Classifier (ks, sid, intent), SpeakerEmbedder (asv), Transcriber (asr) or Diarizer (diarization) from
    speechrecipe/inference/models.py. Needs no corpus, manifests, cache or network."""
    return load_source(open_source(path, checkpoint, problem), device)


def load_source(source: Source, device: str = "cpu"):
    from speechrecipe.engine import checkpoint as ckpt
    from speechrecipe.engine.context import RunContext
    from speechrecipe.engine.paths import ExperimentPaths
    from speechrecipe.registry import resolve_problem

    klass = resolve_problem(source.problem_spec)
    if not klass.inference:
        raise ConfigError(f"{source.root}: problem {source.problem_spec} has no model to load")
    if source.conf.build_upstream.name == "precomputed":
        raise ConfigError(f"{source.root}: trained on dumped features (build_upstream.name=precomputed), so it cannot "
                          "hear audio; train from the upstream itself to use it on new recordings")
    # the cache is never read: a folder that does not exist makes any attempt fail loudly
    paths = ExperimentPaths(source.root, source.root / "no-cache", "none")
    problem = klass(source.conf, paths, RunContext(device=device, num_workers=0))
    encoder = problem.load_encoder()
    task = problem.build_task(problem.section("build_task"), encoder)
    state = ckpt.load(source.weights)
    if source.bundle:
        task.load_state_dict(state["model"])  # every tensor is in it: no `pretrained:` source is read
    else:
        problem.restore_model(task, state)
    task.to(problem.device).eval()
    module_name, _, class_name = klass.inference.rpartition(":")
    model = getattr(importlib.import_module(module_name), class_name)(problem, task, encoder, source)
    model.prepare()
    return model
