"""`speechrecipe infer`: a trained model over audio files, written as a TSV (an .npy of embeddings, an RTTM).

Output formats, by problem:
- ks, sid, intent: `id`, then per label field its predicted label and `<field>_prob` (that label's probability);
- asr: `id`, `text`;
- asv: `id` and `<output>.npy` ([N, D] embeddings, rows in the TSV's order); with --trials, the trial lines
  with a `score` column;
- diarization: RTTM.
`id` is the input path as given, without its audio extension. Unusable inputs are named one per line and in
`<output>.bad_audio.tsv`; the rest goes on. Nothing usable at all is an error.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from speechrecipe.errors import ConfigError, DataError
from speechrecipe.inference.inputs import check, expand

log = logging.getLogger(__name__)


def run_infer(path: Path, inputs: list[str], checkpoint: str, output: Optional[Path], trials: Optional[Path],
              root: Optional[Path], device: str, problem: Optional[str]) -> None:
    """Load, check the inputs, run, write (see the module docstring)."""
    from speechrecipe.inference.loading import load
    from speechrecipe.inference.models import Diarizer, SpeakerEmbedder

    if trials is None and not inputs:
        raise ConfigError("give audio files, folders or @list.txt to infer on (or --trials FILE for asv)")
    model = load(path, checkpoint, device, problem)
    if trials is not None and not isinstance(model, SpeakerEmbedder):
        raise ConfigError(f"--trials: only speaker verification scores trials; {path} is a {type(model).__name__}")
    if isinstance(model, SpeakerEmbedder) and output is None:
        raise ConfigError("--output FILE: asv writes embeddings to FILE.npy beside the TSV; name the output")
    trial_lines = read_trial_lines(trials) if trials is not None else None
    items = trial_audio(trial_lines, root or trials.parent) if trial_lines is not None else expand(inputs)
    report = Path(f"{output}.bad_audio.tsv") if output is not None else None
    found = check(items, model.sample_rate, report)
    if not found.rows:
        where = f"; see {report}" if report else ""
        raise DataError(f"none of the {len(items)} inputs is usable audio{where}; give readable audio files")
    results = model.run_rows(found.rows)
    if trial_lines is not None:
        write_trial_scores(model, found.rows, results, trial_lines, output)
    elif isinstance(model, SpeakerEmbedder):
        write_embeddings(found.rows, results, output)
    elif isinstance(model, Diarizer):
        write_rttm_output(found.rows, results, output)
    else:
        write_table(model, found.rows, results, output)
    if found.bad:
        log.warning("%d of %d inputs were unusable and left out; see %s", len(found.bad), len(items), report or "above")


def write_table(model, rows: list[dict], results: list, output: Optional[Path]) -> None:
    """Classifications or transcripts as a TSV with a header."""
    from speechrecipe.inference.models import Classifier

    if isinstance(model, Classifier):
        fields = list(model.encoder)
        header = ["id", *(c for f in fields for c in (f, f"{f}_prob"))]
        lines = ([r["id"], *(c for f in fields for c in (r[f], f"{r[f'{f}_probs'][r[f]]:.6f}"))] for r in results)
    else:
        header = ["id", "text"]
        lines = ([row["id"], text] for row, text in zip(rows, results))
    with _opened(output) as write:
        write(header, lines)


def write_embeddings(rows: list[dict], embeddings: list, output: Path) -> None:
    import numpy as np
    import torch

    from speechrecipe.fileio import atomic_open

    with atomic_open(Path(f"{output}.npy"), "wb") as handle:
        np.save(handle, torch.stack(embeddings).numpy())
    with _opened(output) as write:
        write(["id"], ([row["id"]] for row in rows))


def write_rttm_output(rows: list[dict], segments: list, output: Optional[Path]) -> None:
    from speechrecipe.data.rttm import rttm_lines, write_rttm

    import re

    # an RTTM line is split on white space: a recording named by a path with spaces gets underscores there
    found = {re.sub(r"\s", "_", row["id"]): segs for row, segs in zip(rows, segments)}
    if output is None:
        for recording in sorted(found):
            sys.stdout.writelines(rttm_lines(recording, found[recording]))
    else:
        write_rttm(output, found)


def read_trial_lines(trials: Path) -> list[list[str]]:
    """Trial lines `enroll test` or VoxCeleb's `label enroll test`, split on white space."""
    if not trials.is_file():
        raise DataError(f"--trials {trials}: no such file; give a list of `enroll test` (or `label enroll test`) lines")
    lines = [line.split() for line in trials.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, fields in enumerate(lines, 1):
        if len(fields) not in (2, 3):
            raise DataError(f"--trials {trials}:{number}: {len(fields)} fields; give `enroll test` or `label enroll test`")
    if not lines:
        raise DataError(f"--trials {trials}: no trial lines")
    return lines


def trial_audio(lines: list[list[str]], root: Path) -> list[tuple[str, Path]]:
    """(id, path) of every file the trials name, once each (paths relative to `root`)."""
    from speechrecipe.data.corpora.common import find_listed

    names = dict.fromkeys(name for fields in lines for name in fields[-2:])
    return [(_trial_id(name), find_listed(root, name) or root / name) for name in names]


def _trial_id(name: str) -> str:
    from speechrecipe.inference.inputs import FOLDER_SUFFIXES

    path = Path(name)
    return str(path.with_suffix("")) if path.suffix.lower() in FOLDER_SUFFIXES else name


def write_trial_scores(model, rows: list[dict], embeddings: list, lines: list[list[str]], output: Path) -> None:
    """The trial lines with a score column; a trial with an unusable file is left out (and counted)."""
    import torch

    index = {row["id"]: i for i, row in enumerate(rows)}
    kept = [fields for fields in lines if all(_trial_id(n) in index for n in fields[-2:])]
    if len(kept) < len(lines):
        log.warning("%d of %d trials name an unusable file and are left out", len(lines) - len(kept), len(lines))
    enroll = torch.tensor([index[_trial_id(f[-2])] for f in kept], dtype=torch.long)
    test = torch.tensor([index[_trial_id(f[-1])] for f in kept], dtype=torch.long)
    scores = model.score_table(torch.stack(embeddings), enroll, test)
    header = (["label"] if kept and len(kept[0]) == 3 else []) + ["enroll", "test", "score"]
    with _opened(output) as write:
        write(header, ([*fields, f"{s:.6f}"] for fields, s in zip(kept, scores.tolist())))


@contextmanager
def _opened(output: Optional[Path]) -> Iterator:
    """write(header, rows) into `output` atomically (the TSV quoting of data/tsv.py), or to stdout."""
    from speechrecipe.data.tsv import write_tsv

    if output is not None:
        yield lambda header, rows: write_tsv(output, rows, header)
        return

    def to_stdout(header, rows) -> None:
        from speechrecipe.data.tsv import tsv_line

        for fields in [header, *rows]:
            sys.stdout.write(tsv_line(fields))

    yield to_stdout
