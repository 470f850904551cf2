"""Speaker diarization: DER, PIT loss, chunk stitching, the Kaldi data-dir parser, the mini corpus, end to end."""
from __future__ import annotations

import itertools
import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speechrecipe.config import asset_path
from speechrecipe.data.corpora.mini_diarization import MiniSpec, build_mini_corpus
from speechrecipe.data.diarization_chunks import FrameGrid, activity
from speechrecipe.data.manifest import read_jsonl
from speechrecipe.fileio import file_digest
from speechrecipe.data.rttm import read_rttm
from speechrecipe.metrics.assignment import min_cost_assignment
from speechrecipe.metrics.der import corpus_der, diarization_errors
from speechrecipe.nn.pit import pairwise_bce, pit_bce
from speechrecipe.tasks.diarization import median_filter, plan_chunks, stitch, to_segments
from test_numbers import assert_headline_is_the_resampled_statistic

TINY = Path(__file__).parent / "fixtures" / "tiny_diarization.yaml"
SOURCE = asset_path("mini/librispeech/LibriSpeech")


def random_segments(rng: random.Random, speakers: list[str], count: int, length: float = 30.0) -> list:
    found = []
    for _ in range(count):
        start = round(rng.uniform(0, length), 2)
        found.append((start, round(start + rng.uniform(0.1, 5), 2), rng.choice(speakers)))
    return found


# ----- DER ---------------------------------------------------------------------------------------


def test_der_hand_computed_overlap_mapping_and_collar():
    # two reference speakers overlapping for 5 s; hypothesis names differ and are swapped in order
    reference = [(0, 10, "A"), (5, 15, "B")]
    perfect = diarization_errors(reference, [(5, 15, "x"), (0, 10, "y")])
    assert (perfect.missed, perfect.false_alarm, perfect.confusion, perfect.total) == (0, 0, 0, 20)
    # one hypothesis speaker for everything: the overlap is missed once, B's 5 s alone are confused
    one = diarization_errors(reference, [(0, 15, "x")])
    assert (one.missed, one.false_alarm, one.confusion, one.total) == (5, 0, 5, 20)
    assert one.der == pytest.approx(0.5)
    # the mapping is optimal, not by order: x agrees with B for 8 s, with A for 2 s
    mapped = diarization_errors([(0, 2, "A"), (2, 10, "B")], [(0, 10, "x")])
    assert (mapped.confusion, mapped.missed, mapped.false_alarm) == (2, 0, 0)
    # a 1 s collar on each side hides boundary errors of up to 1 s, and shrinks the scored speech
    shifted = diarization_errors([(0, 10, "A")], [(1, 11, "x")], collar=1.0)
    assert (shifted.missed, shifted.false_alarm, shifted.total) == (0, 0, 8)
    assert diarization_errors([(0, 10, "A")], [(1, 11, "x")]).der == pytest.approx(0.2)
    # a recording missing from the hypothesis is all missed speech
    assert corpus_der({"r1": reference, "r2": [(0, 4, "C")]}, {"r1": reference}).der == pytest.approx(4 / 24)


@pytest.mark.filterwarnings("ignore:'uem' was approximated")
def test_der_equals_pyannote_metrics_on_random_rttm_pairs():
    pytest.importorskip("pyannote.metrics")
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    def annotation(segments):
        found = Annotation()
        for i, (start, end, speaker) in enumerate(segments):
            found[Segment(start, end), i] = speaker
        return found.support()  # a speaker's overlapping segments merged, as diarization_errors does

    rng = random.Random(0)
    for _ in range(200):
        reference = random_segments(rng, ["A", "B", "C"][: rng.randint(1, 3)], rng.randint(1, 12))
        hypothesis = random_segments(rng, ["w", "x", "y", "z"][: rng.randint(1, 4)], rng.randint(0, 12))
        collar = rng.choice([0.0, 0.25, 0.5])
        theirs = DiarizationErrorRate(collar=2 * collar)(annotation(reference), annotation(hypothesis), detailed=True)
        ours = diarization_errors(reference, hypothesis, collar)
        assert ours.der == pytest.approx(theirs["diarization error rate"], abs=1e-4)
        for key, value in (("missed detection", ours.missed), ("false alarm", ours.false_alarm),
                           ("confusion", ours.confusion), ("total", ours.total)):
            assert value == pytest.approx(theirs[key], abs=1e-4), key


def test_min_cost_assignment_is_exact_against_brute_force():
    rng = random.Random(1)
    for _ in range(300):
        rows, cols = rng.randint(1, 5), rng.randint(1, 5)
        cost = [[rng.choice([rng.random(), 0.0, 1.0]) for _ in range(cols)] for _ in range(rows)]
        pairs = min_cost_assignment(cost)
        assert len(pairs) == min(rows, cols) and len({c for _, c in pairs}) == len(pairs)
        if rows <= cols:
            best = min(sum(cost[i][p[i]] for i in range(rows)) for p in itertools.permutations(range(cols), rows))
        else:
            best = min(sum(cost[p[j]][j] for j in range(cols)) for p in itertools.permutations(range(rows), cols))
        assert sum(cost[r][c] for r, c in pairs) == pytest.approx(best)


# ----- PIT loss ----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("speakers", [1, 2, 3, 4])
def test_pit_bce_is_the_loss_of_the_best_speaker_order(speakers):
    # 2-3 speakers: every permutation; 4: the Hungarian algorithm; both exact
    torch.manual_seed(speakers)
    logits = torch.randn(5, 30, speakers)
    labels = (torch.rand(5, 30, speakers) > 0.5).float()
    lens = torch.tensor([30, 25, 10, 1, 17])
    loss, perm = pit_bce(logits, labels, lens)
    mask = (torch.arange(30)[None, :] < lens[:, None]).float()
    best = []
    for b in range(5):
        per_order = [(torch.nn.functional.binary_cross_entropy_with_logits(logits[b], labels[b][:, list(p)], reduction="none")
                      .sum(1) * mask[b]).sum() for p in itertools.permutations(range(speakers))]
        best.append(min(per_order))
    assert loss.item() == pytest.approx((sum(best) / (lens.sum() * speakers)).item(), rel=1e-5)
    shuffled, _ = pit_bce(logits, labels[:, :, list(reversed(range(speakers)))], lens)
    assert shuffled.item() == pytest.approx(loss.item(), rel=1e-6)  # invariant to the reference's order
    assert pairwise_bce(logits, labels, lens).gather(2, perm.unsqueeze(2)).sum().item() == pytest.approx(sum(best).item(), rel=1e-5)


def test_pit_bce_gradient_flows_and_padding_is_ignored():
    logits = torch.randn(2, 8, 2, requires_grad=True)
    labels = (torch.rand(2, 8, 2) > 0.5).float()
    loss, _ = pit_bce(logits, labels, torch.tensor([8, 4]))
    loss.backward()
    assert logits.grad[1, 4:].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


# ----- inference: chunks, stitching, post-processing ---------------------------------------------


def test_stitching_follows_a_speaker_order_that_flips_between_chunks():
    # a synthetic recording: speaker 0 then 1 in turns with an overlap; the model's chunk outputs
    # name them the other way round in every second chunk
    frames, hop = 1000, 160
    truth = np.zeros((frames, 2))
    for k, start in enumerate(range(0, frames, 130)):
        truth[start : start + 150, k % 2] = 0.9
    truth += 0.05
    starts = plan_chunks(total_samples=frames * hop + 240, chunk_samples=300 * hop, overlap_samples=100 * hop, hop_samples=hop)
    assert len(starts) > 4 and all(s % hop == 0 for s in starts)
    chunks = []
    for k, start in enumerate(starts):
        first = start // hop
        piece = truth[first : first + 300]
        chunks.append((first, piece[:, ::-1] if k % 2 else piece))
    assert np.allclose(stitch(chunks, frames), truth)
    # without the matching, averaging the flipped chunks would blur the speakers together
    assert not np.allclose(np.mean([truth, truth[:, ::-1]], axis=0), truth)


def test_median_filter_equals_a_sliding_median_with_zero_padding():
    rng = np.random.default_rng(0)
    active = (rng.random((50, 3)) > 0.5).astype(np.int8)
    for width in (1, 3, 5, 11):
        padded = np.pad(active, ((width // 2, width // 2), (0, 0)))
        expected = np.stack([np.median(padded[i : i + width], axis=0) for i in range(50)])
        assert np.array_equal(median_filter(active, width), expected.astype(np.int8))


def test_frame_targets_and_output_segments_share_the_frame_grid():
    grid = FrameGrid(16000, hop_samples=480, win_samples=720)  # 3 stacked 10 ms frames of a 25 ms window
    centres = grid.centres_secs(0, grid.num_frames(16000 * 3))
    labels = activity([(0.5, 1.5, "A"), (1.0, 2.0, "B")], ["A", "B"], centres)
    segments = to_segments(labels * 0.8 + 0.1, grid, threshold=0.5, median_width=1)
    reference = [(0.5, 1.5, "A"), (1.0, 2.0, "B")]
    assert diarization_errors(reference, segments).der < 0.03  # off by less than a frame at each boundary


# ----- corpus: the mini corpus and the Kaldi data-dir parser -------------------------------------


SMALL = MiniSpec(recordings={"train": 3, "dev": 2, "test": 2})


def test_mini_corpus_is_a_pure_function_of_its_seed(tmp_path):
    first = build_mini_corpus(SOURCE, tmp_path / "a", SMALL)
    second = build_mini_corpus(SOURCE, tmp_path / "b", SMALL)
    other = build_mini_corpus(SOURCE, tmp_path / "c", MiniSpec(seed=7, recordings=SMALL.recordings))
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert {f"data/{s}/{n}" for s in ("train", "dev", "test") for n in ("wav.scp", "rttm", "segments", "utt2spk",
                                                                          "spk2utt", "reco2dur")} <= set(map(str, files))
    assert all(file_digest(first / f) == file_digest(second / f) for f in files)
    assert file_digest(first / "data/train/rttm") != file_digest(other / "data/train/rttm")
    rttm = read_rttm(first / "data/train/rttm")
    assert all(len({s for _, _, s in segs}) == 2 for segs in rttm.values())


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    return build_mini_corpus(SOURCE, tmp_path_factory.mktemp("corpus") / "mini", SMALL)


def broken_copy(corpus: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    edit(copy / "data" / "train")
    return copy


def replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text
    path.write_text("".join(lines))


BAD_DIRS = {
    "missing audio": (lambda d: (d.parent.parent / "wav/train/train_0001.wav").unlink(), "wav.scp:2: ", "does not exist"),
    "piped wav.scp": (lambda d: replace_line(d / "wav.scp", 2, "train_0001 sox in.wav -t wav - |\n"), "wav.scp:2: ",
                      "piped command"),
    "missing rttm": (lambda d: (d / "rttm").unlink(), "rttm does not exist", "needs wav.scp and rttm"),
    "rttm beyond the end": (lambda d: (d / "rttm").write_text((d / "rttm").read_text() +
                                                              "SPEAKER train_0000 1 2.000 99.000 <NA> <NA> x <NA> <NA>\n"),
                            "recording train_0000", "ends after the recording"),
    "reco2dur disagrees": (lambda d: replace_line(d / "reco2dur", 1, "train_0000 99.0\n"), "reco2dur:1: ", "lasts 99.00 s"),
    "segments disagree": (lambda d: replace_line(d / "segments", 1, " ".join((d / "segments").read_text().split("\n")[0].split()[:3])
                                                 + " 0.001\n"), "segments: recording train_", "segments/utt2spk and rttm disagree"),
    # issue 23.8: the speaker missing from utt2spk is named, not the other one whose speech then differs
    "rttm speaker not in utt2spk": (lambda d: rename_rttm_speaker(d / "rttm", "train_0000", "zz_stranger"),
                                    "rttm: recording train_0000: speaker zz_stranger is in the rttm but not in",
                                    "utt2spk for any utterance of this recording"),
}


def rename_rttm_speaker(rttm: Path, recording: str, new: str) -> None:
    """Rename the recording's first speaker (by sorted id) in the rttm only."""
    rows = [line.split() for line in rttm.read_text().splitlines()]
    old = min(r[7] for r in rows if r[1] == recording)
    rttm.write_text("".join(" ".join(r[:7] + [new if r[1] == recording and r[7] == old else r[7]] + r[8:]) + "\n"
                            for r in rows))


@pytest.mark.parametrize("case", list(BAD_DIRS))
def test_bad_data_dir_is_one_line_naming_the_file(case, small_corpus, tmp_path, cli):
    edit, where, what = BAD_DIRS[case]
    corpus = broken_copy(small_corpus, tmp_path, edit)
    result = cli("run", "diarization", "--stop", "0", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache",
                 f"prepare_data.dataset_root={corpus}")
    assert result.exit_code == 1, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert where in lines[0] and what in lines[0], lines[0]
    assert not list((tmp_path / "cache" / "diarization").glob("*/summary.json"))  # nothing half-prepared counts as done


def test_manifest_rows_hold_rttm_segments_per_recording(small_corpus, tmp_path, cli):
    result = cli("run", "diarization", "--stop", "0", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache",
                 f"prepare_data.dataset_root={small_corpus}")
    assert result.exit_code == 0, result.stderr
    (prepared,) = [p for p in (tmp_path / "cache" / "diarization").iterdir() if p.name != "mini_corpus" and not p.name.startswith(".")]
    rows = {r["id"]: r for r in read_jsonl(prepared / "train.jsonl")}
    reference = read_rttm(small_corpus / "data" / "train" / "rttm")
    assert set(rows) == set(reference)
    for recording, segments in reference.items():
        assert [tuple(s) for s in rows[recording]["segments"]] == sorted(segments)
        assert rows[recording]["path"].startswith(str(small_corpus))  # relative wav.scp paths resolved from the root
    assert {p.name for p in prepared.glob("*.jsonl")} == {"train.jsonl", "valid.jsonl", "test_test.jsonl"}


# ----- end to end and resume ---------------------------------------------------------------------


def one_speaker_der(manifest: Path) -> float:
    """DER of the all-one-speaker hypothesis: one speaker wherever anyone speaks (oracle speech activity)."""
    reference = {r["id"]: [tuple(s) for s in r["segments"]] for r in read_jsonl(manifest)}
    return corpus_der(reference, {rec: [(s, e, "one") for s, e, _ in segs] for rec, segs in reference.items()}).der


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """A tiny data dir: the mini corpus with 16 training, 4 dev and 4 test recordings."""
    return build_mini_corpus(SOURCE, tmp_path_factory.mktemp("tiny") / "mini", MiniSpec(recordings={"train": 16, "dev": 4, "test": 4}))


@pytest.mark.e2e
def test_diarization_stages_0_to_4_learn_and_write_every_output(cli, tmp_path, tiny_corpus):
    cache = tmp_path / "cache"
    common = ["-c", TINY, "--cache-dir", cache, f"prepare_data.dataset_root={tiny_corpus}",
              "train.total_steps=80", "train.eval_step=40", "train.save_step=40"]
    trained = tmp_path / "trained"
    result = cli("run", "diarization", "--target-dir", trained, *common)
    assert result.exit_code == 0, result.stderr
    for name in ("speaker_order.json", "train_log.jsonl", "training_curve.png", "checkpoints/valid_best.ckpt",
                 "checkpoints/step-80.ckpt", "results/results.json", "results/README.md", "results/activity_test.png"):
        assert (trained / name).is_file(), name
    (prepared,) = [p for p in (cache / "diarization").iterdir() if p.name != "mini_corpus" and not p.name.startswith(".")]
    test_ids = {r["id"] for r in read_jsonl(prepared / "test_test.jsonl")}
    for checkpoint in ("valid_best", "step-80"):
        hypothesis = read_rttm(trained / "evaluation" / checkpoint / "test.rttm")
        assert set(hypothesis) <= test_ids and hypothesis
        metrics = json.loads((trained / "evaluation" / checkpoint / "test.json").read_text())["metrics"]
        assert metrics["der"] == pytest.approx(metrics["missed"] + metrics["false_alarm"] + metrics["confusion"])
        assert metrics["threshold"] in (0.4, 0.5, 0.6) and metrics["median_frames"] in (1, 5)
    results = json.loads((trained / "results" / "results.json").read_text())["test"]
    assert "| test |" in (trained / "results" / "README.md").read_text()
    baseline = one_speaker_der(prepared / "test_test.jsonl")
    assert results["der"] < baseline, (results["der"], baseline)
    interval = results["intervals"]["der"]  # resampled by recording (issue 14)
    assert interval["unit"] == "recording" and interval["low"] <= results["der"] <= interval["high"]
    assert assert_headline_is_the_resampled_statistic(trained, "diarization", cache) == 4  # issue 22


def resume_command(target: Path, corpus: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "speechrecipe", "run", "diarization", "--stop", "2", "--target-dir", str(target),
            "--cache-dir", str(cache), "-c", str(TINY), f"prepare_data.dataset_root={corpus}"]


@pytest.mark.e2e
def test_resume_after_sigkill_is_bit_identical(tmp_path, tiny_corpus):
    from helpers import assert_identical, wait_for

    cache = tmp_path / "cache"
    reference = subprocess.run(resume_command(tmp_path / "reference", tiny_corpus, cache), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    target = tmp_path / "killed"
    process = subprocess.Popen(resume_command(target, tiny_corpus, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (target / "checkpoints" / "step-8.ckpt").is_file() or process.poll() is not None, process)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (target / "checkpoints" / "step-24.ckpt").is_file()
    resumed = subprocess.run(resume_command(target, tiny_corpus, cache), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in (target / "log.txt").read_text()
    load = lambda root: torch.load(root / "checkpoints" / "step-24.ckpt", weights_only=True)  # noqa: E731
    assert_identical(load(target), load(tmp_path / "reference"))
