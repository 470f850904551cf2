"""Faults through the real CLI: bad audio in the corpus, non-finite losses, a full disk, an interrupted stage 3.

A full disk is real: a link from the file's temporary name to /dev/full makes the kernel answer
ENOSPC to the writes of the real atomic writer (the writer removes the link when it fails).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import assert_identical

from speechrecipe.data.manifest import read_jsonl, read_trials
from speechrecipe.engine import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
MINI_VOX = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
# rewritten by every run, whatever it does: logs, and the config of the latest attempt
LOGS = {"log.txt", "train_log.jsonl", "config.yaml", "run.json", "last_run.json", "experiment.json"}
TRAIN_UTT = "id10003/5w6wk69BREr/00001"  # a training speaker's utterance
TEST_UTT = "id10270/IZvYlZ3I-UD/00001"  # a test speaker's, used by several trials

needs_dev_full = pytest.mark.skipif(not os.access("/dev/full", os.W_OK), reason="needs a writable /dev/full")


def asv(cli, target: Path, *args: str):
    return cli("run", "asv", "--target-dir", target, "-c", TINY, *args)


def error_line(result) -> str:
    """The one line the CLI prints for a failure (everything else on stderr is logging)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every output file under root (logs aside) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in LOGS}


def fill_disk_at(path: Path) -> Path:
    """Make writing `path` (through its .tmp) fail with ENOSPC."""
    link = path.with_name(path.name + ".tmp")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to("/dev/full")
    return link


# ----- bad audio -----------------------------------------------------------------------------


def _samples(flac: Path) -> tuple[np.ndarray, int]:
    return sf.read(flac, dtype="int16")


def _as_wav(flac: Path) -> Path:
    flac.unlink()
    return flac.with_suffix(".wav")


def plant_empty(flac: Path) -> Path:
    flac.write_bytes(b"")
    return flac


def plant_truncated_wav(flac: Path) -> Path:
    data, rate = _samples(flac)
    wav = _as_wav(flac)
    sf.write(wav, data, rate, subtype="PCM_16")
    wav.write_bytes(wav.read_bytes()[: wav.stat().st_size // 2])
    return wav


def plant_truncated_flac(flac: Path) -> Path:
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    return flac


def plant_text_as_wav(flac: Path) -> Path:
    wav = _as_wav(flac)
    wav.write_text("1 id10270/IZvYlZ3I-UD/00001.wav id10270/V7I2FBkzmpG/00002.wav\n")
    return wav


def plant_all_zero(flac: Path) -> Path:
    data, rate = _samples(flac)
    sf.write(flac, np.zeros_like(data), rate)
    return flac


def plant_nan(flac: Path) -> Path:
    data, rate = _samples(flac)
    samples = data.astype("float32") / 32768
    samples[len(samples) // 2] = np.nan
    wav = _as_wav(flac)
    sf.write(wav, samples, rate, subtype="FLOAT")
    return wav


def plant_stereo(flac: Path) -> Path:
    data, rate = _samples(flac)
    sf.write(flac, np.stack([data, data // 2], axis=1), rate)
    return flac


def plant_8khz(flac: Path) -> Path:
    data, rate = _samples(flac)
    sf.write(flac, data[::2], rate // 2)
    return flac


BAD = {
    plant_empty: "empty file",
    plant_truncated_wav: "corrupt or truncated",
    plant_truncated_flac: "corrupt or truncated",
    plant_text_as_wav: "not an audio file",
    plant_all_zero: "all-zero samples",
    plant_nan: "non-finite samples (NaN/inf)",
}
CONVERTED = {
    plant_stereo: ("stereo → downmixed", {"channels": 2}),
    plant_8khz: ("sample rate 8000 → resampled to 16000", {"sample_rate": 8000}),
}


@pytest.fixture
def corpus(tmp_path) -> Path:
    root = tmp_path / "vox1"
    shutil.copytree(MINI_VOX, root)
    return root


def plant(corpus: Path, make, utts=(TRAIN_UTT, TEST_UTT)) -> list[Path]:
    return [make(corpus / "wav" / f"{utt}.flac") for utt in utts]


def prepared(target: Path) -> Path:
    """The cache folder stage 0 wrote (its record lists the files)."""
    files = json.loads((target / "records" / "stage-0.json").read_text())["files"]
    return Path(next(iter(files))).parent


def manifest_ids(cache: Path) -> dict[str, dict]:
    return {row["id"]: row for split in ("train", "valid", "test_voxceleb1_o") for row in read_jsonl(cache / f"{split}.jsonl")}


@pytest.mark.e2e
@pytest.mark.parametrize("make", list(BAD), ids=lambda f: f.__name__.removeprefix("plant_"))
def test_bad_audio_is_left_out_and_reported_and_strict_stops(cli, corpus, tmp_path, make):
    bad = plant(corpus, make)
    target = tmp_path / "exp"
    result = asv(cli, target, "--stop", "1", f"prepare_data.dataset_root={corpus}")
    assert result.exit_code == 0, result.stderr
    cache = prepared(target)
    report = cache / "bad_audio.tsv"
    problem = BAD[make]
    summary = [line for line in result.stderr.splitlines() if "are unusable" in line]
    assert summary == [f"2 files are unusable and left out (first: {bad[0]}: {problem}); see {report}"]
    assert f"test set voxceleb1_o: dropped 9 of 600 trials that use unusable audio; see {report}" in result.stderr
    assert report.read_text().splitlines() == ["path\tproblem", f"{bad[0]}\t{problem}", f"{bad[1]}\t{problem}"]
    assert not {TRAIN_UTT, TEST_UTT} & set(manifest_ids(cache))
    trials = read_trials(cache / "trials_voxceleb1_o.tsv")
    assert len(trials) == 591 and all(TEST_UTT not in t for t in trials)

    before = snapshot(target)
    result = asv(cli, target, "--stop", "1", "--strict", f"prepare_data.dataset_root={corpus}")
    assert result.exit_code == 1, result.stderr  # a data failure, not a usage error (2)
    line = error_line(result)
    head, report = f"error: 2 files are unusable (first: {bad[0]}: {problem}); see ", line.split("; see ")[1].split(";")[0]
    assert line == f"{head}{report}; fix or remove them, or set prepare_data.strict=false to leave them out"
    assert Path(report).read_text().splitlines()[1:] == [f"{bad[0]}\t{problem}", f"{bad[1]}\t{problem}"]
    assert snapshot(target) == before


@pytest.mark.e2e
@pytest.mark.parametrize("make", list(CONVERTED), ids=lambda f: f.__name__.removeprefix("plant_"))
def test_stereo_and_other_rates_are_kept_with_a_counted_warning(cli, corpus, tmp_path, make):
    plant(corpus, make)
    warning, fields = CONVERTED[make]
    target = tmp_path / "exp"
    result = asv(cli, target, "--stop", "1", "--strict", f"prepare_data.dataset_root={corpus}")
    assert result.exit_code == 0, result.stderr
    assert f"2 audio files: {warning}" in result.stderr.splitlines()
    assert "unusable" not in result.stderr
    cache = prepared(target)
    assert (cache / "bad_audio.tsv").read_text() == "path\tproblem\n"
    rows = manifest_ids(cache)
    for utt in (TRAIN_UTT, TEST_UTT):
        assert fields.items() <= rows[utt].items()


@pytest.mark.e2e
def test_training_and_evaluation_run_on_a_corpus_with_every_kind_of_bad_audio(cli, corpus, tmp_path):
    wav = corpus / "wav"
    # veri_test2.txt is the corpus's own list (space-separated), not a file speechrecipe wrote
    trial_lines = [line.split() for line in (corpus / "veri_test2.txt").read_text().splitlines() if line.strip()]
    trial_utts = sorted({u.rsplit(".", 1)[0] for t in trial_lines for u in t[1:]})
    planted = {plant_stereo: [p.relative_to(wav).with_suffix("").as_posix() for p in wav.glob("id10001/*/*")],
               plant_8khz: [p.relative_to(wav).with_suffix("").as_posix() for p in wav.glob("id10002/*/*")]}
    for i, make in enumerate(BAD):
        planted[make] = [f"id1000{3 + i}/{sorted(os.listdir(wav / f'id1000{3 + i}'))[0]}/00001"]
    for i, make in enumerate([*BAD, *CONVERTED]):  # one file per fault among those trials use
        planted[make].append(trial_utts[10 * i])
    for make, utts in planted.items():
        plant(corpus, make, utts)
    target = tmp_path / "exp"
    result = asv(cli, target, "--stop", "3", f"prepare_data.dataset_root={corpus}", "train.total_steps=12",
                 "evaluate.test_ckpt_steps=[last]")
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("12 files are unusable and left out") for line in lines)
    assert {"7 audio files: stereo → downmixed", "7 audio files: sample rate 8000 → resampled to 16000"} <= set(lines)
    rows = manifest_ids(prepared(target))
    assert all(rows[u]["channels"] == 2 for u in planted[plant_stereo])
    assert not any(u in rows for make in BAD for u in planted[make])
    events = [json.loads(line) for line in (target / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "train"] == [4, 8, 12]
    assert all(np.isfinite(e["loss"]) for e in events if e["event"] == "train")
    assert not any(e["event"] == "nonfinite" for e in events)
    result_file = json.loads((target / "evaluation" / "step-12" / "voxceleb1_o.json").read_text())
    assert 0 <= result_file["metrics"]["eer"] <= 1


# ----- non-finite losses -----------------------------------------------------------------------

NAN_PROBLEM = '''
"""asv fed a NaN sample in the training batches listed in $NAN_BATCHES (counted from 1 in this process)."""
import os

from speechrecipe.problems.asv import ASV


class NaNLossASV(ASV):
    def build_task(self, conf, encoder):
        task = super().build_task(conf, encoder)
        poisoned = {int(n) for n in os.environ.get("NAN_BATCHES", "").split(",") if n}
        forward, seen = task.forward, [0]

        def forward_with_nan(batch):
            seen[0] += 1
            if seen[0] in poisoned:  # NaN features: a NaN loss, and NaN batch-norm statistics
                batch["wavs"][0, 100] = float("nan")
            return forward(batch)

        task.forward = forward_with_nan
        return task
'''


@pytest.fixture
def nan_problem(tmp_path, monkeypatch):
    """Run the user problem `nan_loss_problem:NaNLossASV`; returns a function setting the NaN batches."""
    (tmp_path / "nan_loss_problem.py").write_text(NAN_PROBLEM)
    monkeypatch.syspath_prepend(str(tmp_path))
    return lambda batches: monkeypatch.setenv("NAN_BATCHES", ",".join(map(str, batches)))


def run_nan(cli, target: Path, *args: str):
    return cli("run", "nan_loss_problem:NaNLossASV", "--stop", "2", "--target-dir", target, "-c", TINY, *args)


@pytest.mark.e2e
def test_nonfinite_loss_skips_the_update_with_a_counted_warning(cli, tmp_path, nan_problem):
    nan_problem([3, 6])
    target = tmp_path / "exp"
    result = run_nan(cli, target, "train.total_steps=8", "train.save_step=1", "train.eval_step=100")
    assert result.exit_code == 0, result.stderr
    log = (target / "log.txt").read_text()
    assert "step 3: non-finite loss or gradient; update skipped (1 so far, 1 in a row)" in log
    assert "step 6: non-finite loss or gradient; update skipped (2 so far, 1 in a row)" in log
    state = {step: ckpt.load(ckpt.step_path(target / "checkpoints", step)) for step in (2, 3, 4, 8)}
    assert_identical({**state[3], "counters": None}, {**state[2], "counters": None})  # step 3 changed nothing
    assert not all(torch.equal(t, state[3]["model"][n]) for n, t in state[4]["model"].items())
    assert all(torch.isfinite(t).all() for t in state[8]["model"].values() if t.is_floating_point())
    assert state[8]["counters"]["nonfinite_total"] == 2 and state[8]["counters"]["nonfinite_run"] == 0


@pytest.mark.e2e
def test_too_many_nonfinite_updates_in_a_row_stop_with_the_last_good_state_saved(cli, tmp_path, nan_problem):
    nan_problem(range(5, 100))
    target = tmp_path / "exp"
    result = run_nan(cli, target, "train.total_steps=12", "train.max_nonfinite_updates=3")
    assert result.exit_code == 1, result.stderr
    saved = ckpt.step_path(target / "checkpoints", 7)
    assert error_line(result) == (
        "error: 3 updates in a row had a non-finite loss or gradient (train.max_nonfinite_updates=3); the weights "
        f"of step 4, the last good one, are saved in {saved}; lower the learning rate or check the data")
    last_good, stopped = ckpt.load(ckpt.step_path(target / "checkpoints", 4)), ckpt.load(saved)
    assert stopped["counters"]["step"] == 7 and stopped["counters"]["nonfinite_run"] == 3
    for name, tensor in last_good["model"].items():
        assert torch.equal(tensor, stopped["model"][name])
    assert [ckpt.step_path(target / "checkpoints", s).is_file() for s in (4, 7, 8)] == [True, True, False]


# ----- a full disk, and stage 3 resuming --------------------------------------------------------

TRAIN = ("train.eval_step=4", "train.save_step=2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Stages 0-2 uninterrupted for 8 steps: checkpoints 2, 4, 6, 8 and valid_best."""
    from typer.testing import CliRunner

    from speechrecipe.cli import app

    target = tmp_path_factory.mktemp("trained") / "exp"
    args = ["run", "asv", "--stop", "2", "--target-dir", str(target), "-c", str(TINY), "train.total_steps=8", *TRAIN]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return target


@pytest.mark.e2e
@needs_dev_full
def test_disk_full_while_saving_a_checkpoint_keeps_earlier_ones_and_resumes(cli, tmp_path, trained):
    target, checkpoints = tmp_path / "exp", tmp_path / "exp" / "checkpoints"
    assert asv(cli, target, "--stop", "2", "train.total_steps=4", *TRAIN).exit_code == 0
    before = snapshot(target)
    link = fill_disk_at(ckpt.step_path(checkpoints, 6))
    result = asv(cli, target, "--stop", "2", "train.total_steps=8", *TRAIN)
    assert result.exit_code == 1, result.stderr
    assert error_line(result) == (
        f"error: could not write {checkpoints / 'step-6.ckpt'}: No space left on device; earlier checkpoints "
        "and results are intact; free space and run the same command again to resume")
    assert snapshot(target) == before
    assert not os.path.lexists(link)

    result = asv(cli, target, "--stop", "2", "train.total_steps=8", *TRAIN)
    assert result.exit_code == 0, result.stderr
    assert f"resuming from {checkpoints / 'step-4.ckpt'} (step 4)" in result.stderr
    final = ckpt.load(ckpt.step_path(checkpoints, 8))
    assert_identical(final, ckpt.load(ckpt.step_path(trained / "checkpoints", 8)))


@pytest.mark.e2e
@needs_dev_full
def test_disk_full_while_logging_training_names_the_log(cli, tmp_path):
    """Issue 23.8: a write that the system reports without a file name (an append to train_log.jsonl) is named."""
    target = tmp_path / "exp"
    assert asv(cli, target, "--stop", "1", "train.total_steps=4", *TRAIN).exit_code == 0
    before = snapshot(target)
    (target / "train_log.jsonl").symlink_to("/dev/full")  # every write: No space left on device
    result = asv(cli, target, "--stop", "2", "train.total_steps=4", *TRAIN)
    assert result.exit_code == 1, result.stderr
    assert error_line(result) == (f"error: {target / 'train_log.jsonl'}: No space left on device; free some space there "
                                  "(or use another --target-dir / --cache-dir) and run the same command again")
    assert snapshot(target) == before
    (target / "train_log.jsonl").unlink()
    assert asv(cli, target, "--stop", "2", "train.total_steps=4", *TRAIN).exit_code == 0


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs (needs root and a mount the system allows; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.e2e
def test_disk_full_while_building_the_mini_corpus_names_the_file_and_leaves_no_partial_copy(cli, tmp_path, small_disk):
    cache = small_disk / "cache"
    result = cli("run", "diarization", "--stop", "0", "--target-dir", tmp_path / "exp", "--cache-dir", cache,
                 "-c", Path(__file__).parent / "fixtures" / "tiny_diarization.yaml")
    assert result.exit_code == 1, result.stderr
    line = error_line(result)
    assert line.startswith(f"error: {cache / 'diarization' / 'mini_corpus'}/") and ".wav: No space left on device; " \
        "free some space there (or use another --target-dir / --cache-dir) and run the same command again" in line, line
    assert not list((cache / "diarization" / "mini_corpus").iterdir())  # the half-built copy is gone
    assert "last run: failed in stage 0 (prepare data): " + line.removeprefix("error: ") in cli("status", tmp_path / "exp").stdout


def evaluate(cli, target: Path, *steps: str):
    return asv(cli, target, "--start", "3", "--stop", "3", "train.total_steps=8", *TRAIN,
               f"evaluate.test_ckpt_steps=[{','.join(steps)}]")


def results(target: Path) -> dict[str, tuple[bytes, int]]:
    """Each result file of stage 3: its bytes and modification time."""
    return {str(p.relative_to(target)): (p.read_bytes(), p.stat().st_mtime_ns) for p in (target / "evaluation").glob("*/*.json")}


@pytest.mark.e2e
@needs_dev_full
def test_disk_full_while_writing_a_result_keeps_earlier_results(cli, tmp_path, trained):
    target = tmp_path / "exp"
    shutil.copytree(trained, target)
    assert evaluate(cli, target, "step-4").exit_code == 0
    before, kept = snapshot(target), results(target)
    last_result = target / "evaluation" / "step-8" / "voxceleb1_o.json"
    fill_disk_at(last_result)
    result = evaluate(cli, target, "step-4", "last")
    assert result.exit_code == 1, result.stderr
    assert error_line(result) == (
        f"error: could not write {last_result}: No space left on device; earlier checkpoints "
        "and results are intact; free space and run the same command again to resume")
    assert results(target) == kept
    assert {k: v for k, v in snapshot(target).items() if not k.startswith("evaluation/step-8/")} == before

    result = evaluate(cli, target, "step-4", "last")
    assert result.exit_code == 0, result.stderr
    assert "step-4 on voxceleb1_o: already evaluated; skipping" in result.stderr
    assert {k: v for k, v in results(target).items() if "step-4" in k} == kept
    assert json.loads(last_result.read_text())["step"] == 8


@pytest.mark.e2e
def test_stage_3_after_an_interruption_computes_only_the_missing_pair(cli, tmp_path, trained):
    target = tmp_path / "exp"
    shutil.copytree(trained, target)
    assert evaluate(cli, target, "step-2", "step-4", "last").exit_code == 0
    before = results(target)
    missing = target / "evaluation" / "step-4" / "voxceleb1_o.json"
    missing.unlink()  # as if stage 3 had been killed while evaluating step-4
    result = evaluate(cli, target, "step-2", "step-4", "last")
    assert result.exit_code == 0, result.stderr
    skipped = [line.split(" on ")[0] for line in result.stderr.splitlines() if line.endswith("already evaluated; skipping")]
    assert skipped == ["step-2", "step-8"]
    after = results(target)
    assert {k: v for k, v in after.items() if "step-4" not in k} == {k: v for k, v in before.items() if "step-4" not in k}
    assert json.loads(after["evaluation/step-4/voxceleb1_o.json"][0])["metrics"] == \
        json.loads(before["evaluation/step-4/voxceleb1_o.json"][0])["metrics"]
