"""Speech recognition: the LibriSpeech parser, tokenizers, CTC decoding, and stages 0-4 through the CLI."""
from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from speechrecipe.data.corpora.librispeech import prepare_librispeech
from speechrecipe.data.manifest import read_jsonl
from speechrecipe.data.tokenizer import BLANK, build_tokenizer, load_tokenizer
from speechrecipe.decoding.ctc import beam_best, ctc_log_likelihood, greedy, prefix_beam_search
from speechrecipe.errors import DataError
from test_numbers import assert_headline_is_the_resampled_statistic

REPO = Path(__file__).resolve().parent.parent
MINI = REPO / "speechrecipe" / "assets" / "mini" / "librispeech" / "LibriSpeech"
TINY = Path(__file__).parent / "fixtures" / "tiny_asr.yaml"
TEXTS = ["THE OLD MAN WALKED", "A CAT SAW THE DOG", "HER DOG'S BOOK", "THE MAN SAW A BOOK AGAIN"]


# ----- LibriSpeech parser ---------------------------------------------------------------------


def add_chapter(root: Path, split: str, speaker: str, chapter: str, texts: list[str], audio: list[int]) -> None:
    """A chapter folder with a transcript line per text and audio for the utterance numbers in `audio`."""
    folder = root / split / speaker / chapter
    folder.mkdir(parents=True)
    lines = []
    for k, text in enumerate(texts):
        lines.append(f"{speaker}-{chapter}-{k:04d} {text}\n")
    (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    rng = np.random.default_rng(len(lines))
    for k in audio:
        sf.write(folder / f"{speaker}-{chapter}-{k:04d}.flac", rng.uniform(-0.3, 0.3, 8000).astype("float32"), 16000)


@pytest.fixture
def fake_tree(tmp_path) -> Path:
    root = tmp_path / "LibriSpeech"
    add_chapter(root, "train-clean-100", "19", "198", TEXTS[:3], [0, 1, 2])
    add_chapter(root, "train-clean-100", "26", "495", TEXTS[:2], [0, 2])  # 0001 has no audio, 0002 no transcript
    add_chapter(root, "train-clean-360", "100", "121", TEXTS[1:], [0, 1, 2])
    add_chapter(root, "dev-clean", "84", "121", TEXTS[:2], [0, 1])
    add_chapter(root, "test-clean", "61", "70", TEXTS[2:], [0, 1])
    return root


def prepare(root: Path, out: Path, **kw) -> dict:
    args = dict(train_sets=["train-clean-100"], valid_sets=["dev-clean"], test_sets=["test-clean", "test-other"],
                num_workers=1)
    return prepare_librispeech(root, out, **{**args, **kw})


def test_librispeech_manifests_carry_transcripts_and_speakers(fake_tree, tmp_path):
    summary = prepare(fake_tree, tmp_path / "out", train_sets=["train-clean-100", "train-clean-360"])
    rows = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert [r["id"] for r in rows] == ["19-198-0000", "19-198-0001", "19-198-0002", "26-495-0000",
                                       "100-121-0000", "100-121-0001", "100-121-0002"]
    first = rows[0]
    assert set(first) == {"id", "path", "num_frames", "sample_rate", "channels", "duration", "transcript", "speaker"}
    assert (first["transcript"], first["speaker"], first["num_frames"], first["duration"]) == (TEXTS[0], "19", 8000, 0.5)
    assert Path(first["path"]).is_file()
    assert summary["train"] == {"utterances": 7, "speakers": 3, "hours": round(3.5 / 3600, 3)}
    assert list(summary["test_sets"]) == ["test-clean"]  # test-other is absent: skipped
    assert [r["transcript"] for r in read_jsonl(tmp_path / "out" / "test_test-clean.jsonl")] == TEXTS[2:]
    assert (tmp_path / "out" / "bad_audio.tsv").read_text() == "path\tproblem\n"


def test_librispeech_reports_unpaired_audio_and_transcripts(fake_tree, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = prepare(fake_tree, tmp_path / "out")
    assert summary["unpaired"] == 2
    report = (tmp_path / "out" / "unpaired.tsv").read_text().splitlines()
    assert report[0] == "split\tid\tproblem\twhere"
    assert report[1].startswith("train-clean-100\t26-495-0001\ttranscript without audio\t")
    assert report[1].endswith("26-495.trans.txt:2")
    assert report[2].startswith("train-clean-100\t26-495-0002\taudio without transcript\t")
    assert "1 transcript lines have no audio file (e.g. train-clean-100/26-495-0001)" in caplog.text
    assert "1 audio files have no transcript line (e.g. train-clean-100/26-495-0002)" in caplog.text
    assert "test-other is not in" in caplog.text
    with pytest.raises(DataError, match="prepare_data.strict=false"):
        prepare(fake_tree, tmp_path / "strict", strict=True)


def test_librispeech_missing_split_names_the_key_and_the_splits_found(fake_tree, tmp_path):
    with pytest.raises(DataError, match=r"prepare_data.valid_sets: .*dev-other does not exist.*dev-clean, test-clean"):
        prepare(fake_tree, tmp_path / "out", valid_sets=["dev-other"])


def test_librispeech_bad_transcript_line_names_file_and_line(fake_tree, tmp_path):
    trans = fake_tree / "dev-clean" / "84" / "121" / "84-121.trans.txt"
    trans.write_text(trans.read_text() + "84-121-0009\n")
    with pytest.raises(DataError, match=r"84-121.trans.txt:3: expected"):
        prepare(fake_tree, tmp_path / "out")


# ----- tokenizers --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "word", "subword"])
def test_tokenizer_round_trips_through_its_json_file(kind, tmp_path):
    if kind == "subword":
        pytest.importorskip("sentencepiece")
    tokenizer = build_tokenizer(kind, TEXTS * 5, vocab_size=24)
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert loaded.tokens == tokenizer.tokens and loaded.tokens[0] == BLANK and loaded.kind == kind
    for text in TEXTS + ["  THE   DOG  "]:
        ids = loaded.encode(text)
        assert ids == tokenizer.encode(text) and 0 not in ids
        assert loaded.decode(ids) == " ".join(text.split())


def test_word_tokenizer_keeps_the_most_frequent_words():
    tokenizer = build_tokenizer("word", TEXTS, vocab_size=5)
    assert tokenizer.tokens == [BLANK, "<unk>", "THE", "A", "BOOK"]
    assert tokenizer.decode(tokenizer.encode("THE ZEBRA")) == "THE <unk>"


def test_char_tokenizer_writes_spaces_as_word_boundaries():
    tokenizer = build_tokenizer("char", TEXTS)
    assert tokenizer.tokens[:2] == [BLANK, "|"] and "'" in tokenizer.tokens
    assert tokenizer.decode(tokenizer.encode("A CAT")) == "A CAT"
    assert [tokenizer.tokens[i] for i in tokenizer.encode("A CAT")] == ["A", "|", "C", "A", "T"]


# ----- CTC decoding ------------------------------------------------------------------------


def random_log_probs(rng: np.random.Generator, frames: int, vocab: int, peak: float = 0.0) -> np.ndarray:
    logits = rng.normal(size=(frames, vocab)) * rng.uniform(0.5, 4)
    logits[np.arange(frames), rng.integers(0, vocab, frames)] += peak
    return torch.log_softmax(torch.tensor(logits), dim=-1).numpy()


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(t for i, t in enumerate(path) if t != 0 and (i == 0 or path[i - 1] != t))


def test_ctc_log_likelihood_matches_torch_ctc_loss():
    rng = np.random.default_rng(0)
    for frames, tokens in ((30, [1, 1, 2, 3, 3]), (12, []), (8, [2, 2, 2, 2]), (3, [1, 2, 3])):
        lp = random_log_probs(rng, frames, 5)
        expected = -F.ctc_loss(torch.tensor(lp)[:, None], torch.tensor([tokens]), torch.tensor([frames]),
                               torch.tensor([len(tokens)]), reduction="sum").item()
        assert ctc_log_likelihood(lp, tokens) == pytest.approx(expected, rel=1e-9)


def test_prefix_beam_search_without_pruning_gives_exact_prefix_probabilities():
    rng = np.random.default_rng(1)
    for _ in range(10):
        lp = random_log_probs(rng, 4, 3)
        exact: dict[tuple[int, ...], float] = {}
        for path in itertools.product(range(3), repeat=4):
            exact[collapse(path)] = exact.get(collapse(path), 0.0) + math.exp(sum(lp[t, s] for t, s in enumerate(path)))
        hyps = prefix_beam_search(lp, beam_size=len(exact))
        assert {h.tokens for h in hyps} == set(exact)
        for h in hyps:
            assert math.exp(h.score) == pytest.approx(exact[h.tokens], rel=1e-9)
        assert hyps[0].tokens == max(exact, key=exact.get)


@pytest.mark.e2e
def test_beam_size_one_equals_greedy_on_peaked_log_probs():
    # with every frame's best token above 0.75, a one-prefix beam follows the best path
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(200):
        lp = random_log_probs(rng, int(rng.integers(5, 60)), int(rng.integers(3, 30)), peak=8.0)
        if lp.max(axis=1).min() > math.log(0.75):
            assert beam_best(lp, beam_size=1) == greedy(lp)
            checked += 1
    assert checked > 50


@pytest.mark.e2e
def test_beam_search_never_scores_worse_than_greedy():
    rng = np.random.default_rng(3)
    for _ in range(200):
        lp = random_log_probs(rng, int(rng.integers(5, 40)), int(rng.integers(3, 8)))
        best = beam_best(lp, beam_size=10)
        assert ctc_log_likelihood(lp, best) >= ctc_log_likelihood(lp, greedy(lp)) - 1e-9


# ----- end to end ------------------------------------------------------------------------------


def tiny_librispeech(root: Path) -> Path:
    """Four training speakers of the bundled mini corpus; dev and test re-use some of their
    utterances under new speaker ids, so the test asks whether the model fits what it saw."""
    corpus = root / "LibriSpeech"
    for speaker in ("1001", "1002", "1003", "1004"):
        shutil.copytree(MINI / "train-clean-100" / speaker, corpus / "train-clean-100" / speaker)
    for split, new, old in (("dev-clean", "2001", "1003"), ("test-clean", "3001", "1001"), ("test-clean", "3002", "1002")):
        chapter = sorted((MINI / "train-clean-100" / old).iterdir())[0]
        folder = corpus / split / new / chapter.name
        folder.mkdir(parents=True)
        for flac in chapter.glob("*.flac"):
            shutil.copy(flac, folder / flac.name.replace(old, new, 1))
        lines = (chapter / f"{old}-{chapter.name}.trans.txt").read_text().splitlines()
        (folder / f"{new}-{chapter.name}.trans.txt").write_text("".join(line.replace(old, new, 1) + "\n" for line in lines))
    return corpus


@pytest.fixture
def one_thread():
    # the 2-core CI machine also runs other work: one intra-op thread avoids oversubscription
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.e2e
def test_asr_stages_0_to_4_learn_and_write_every_output(cli, tmp_path, one_thread):
    corpus, cache = tiny_librispeech(tmp_path / "corpus"), tmp_path / "cache"
    common = ["-c", TINY, "--cache-dir", cache, f"prepare_data.dataset_root={corpus}"]
    trained = tmp_path / "trained"
    result = cli("run", "asr", "--target-dir", trained, *common)
    assert result.exit_code == 0, result.stderr

    (prepared,) = [p for p in (cache / "asr").iterdir() if not p.name.startswith(".")]  # .locks: the leases
    for name in ("train.jsonl", "valid.jsonl", "test_test-clean.jsonl", "bad_audio.tsv", "unpaired.tsv", "summary.json"):
        assert (prepared / name).is_file(), name
    assert list(json.loads((prepared / "summary.json").read_text())["test_sets"]) == ["test-clean"]
    assert load_tokenizer(trained / "tokenizer.json").kind == "char"
    for name in ("config.yaml", "log.txt", "train_log.jsonl", "training_curve.png", "checkpoints/valid_best.ckpt",
                 "checkpoints/step-150.ckpt", "results/results.json", "results/README.md"):
        assert (trained / name).is_file(), name
    assert sorted(p.name for p in (trained / "records").iterdir()) == [f"stage-{n}.json" for n in range(5)]
    test_ids = {r["id"] for r in read_jsonl(prepared / "test_test-clean.jsonl")}
    for checkpoint in ("valid_best", "step-150"):
        folder = trained / "evaluation" / checkpoint
        for suffix in ("ref", "greedy.hyp", "beam.hyp"):
            lines = (folder / f"test-clean.{suffix}").read_text().splitlines()
            assert {line.split()[0] for line in lines} == test_ids, suffix
        metrics = json.loads((folder / "test-clean.json").read_text())["metrics"]
        for decoder in ("greedy", "beam"):
            assert {f"{decoder}_{k}" for k in ("wer", "cer", "wer_substitutions", "wer_deletions", "wer_insertions")} <= set(metrics)

    results = json.loads((trained / "results" / "results.json").read_text())["test-clean"]
    readme = (trained / "results" / "README.md").read_text()
    assert "| test-clean |" in readme and "CER beam (%)" in readme and "| S | D | I |" in readme
    # intervals by utterance, recomputed from stage 3's hypothesis files, around the stage-3 figures
    intervals = results["intervals"]
    assert set(intervals) == {f"{d}_{k}" for d in ("greedy", "beam") for k in ("wer", "cer")}
    for key, found in intervals.items():
        assert found["unit"] == "utterance" and found["units"] == len(test_ids) and found["value"] == results[key]
        assert found["low"] <= results[key] <= found["high"], (key, found)
    assert assert_headline_is_the_resampled_statistic(trained, "asr", cache) == 4  # issue 22

    # the same model with a zero learning rate: what an untrained model scores
    untrained = tmp_path / "untrained"
    result = cli("run", "asr", "--target-dir", untrained, *common, "train.total_steps=1", "build_optimizer.conf.lr=0.0")
    assert result.exit_code == 0, result.stderr
    baseline = json.loads((untrained / "results" / "results.json").read_text())["test-clean"]
    assert results["beam_cer"] < 0.5 < baseline["beam_cer"], (results["beam_cer"], baseline["beam_cer"])
    assert results["beam_wer"] < baseline["beam_wer"]

    if importlib.util.find_spec("flashlight") is None:
        return
    # the optional word LM decoder: stage 3 again with evaluate.lm.path, decoding with lexicon words only
    words = [w for r in read_jsonl(prepared / "train.jsonl") for w in r["transcript"].split()]
    arpa = write_uniform_arpa(tmp_path / "lm.arpa", words)
    result = cli("run", "asr", "--start", "3", "--target-dir", trained, *common, f"evaluate.lm.path={arpa}")
    assert result.exit_code == 0, result.stderr
    assert (trained / "lexicon.txt").read_text().startswith("A A |\n")
    hyps = (trained / "evaluation" / "valid_best" / "test-clean.lm.hyp").read_text().split()
    assert set(hyps) - test_ids <= set(words)
    assert "lm_wer" in json.loads((trained / "results" / "results.json").read_text())["test-clean"]
    assert "WER beam+LM (%)" in (trained / "results" / "README.md").read_text()


# ----- optional word n-gram LM (flashlight-text) -------------------------------------------------


def write_uniform_arpa(path: Path, words: list[str]) -> Path:
    """A KenLM-readable bigram LM (KenLM wants at least two orders) with every word equally likely."""
    vocab = sorted(set(words))
    logp = -math.log10(len(vocab) + 2)
    lines = ["\\data\\", f"ngram 1={len(vocab) + 3}", f"ngram 2={len(vocab)}", "", "\\1-grams:", "-99\t<s>\t0"]
    lines += [f"{logp:.6f}\t{word}\t0" for word in vocab + ["</s>", "<unk>"]]
    lines += ["", "\\2-grams:"] + [f"{logp:.6f}\t<s> {word}" for word in vocab] + ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def test_lm_decoder_spells_only_lexicon_words(tmp_path):
    pytest.importorskip("flashlight.lib.text")
    from speechrecipe.decoding.lm import build_lm_decoder, write_lexicon

    tokenizer = build_tokenizer("char", TEXTS)
    words = [w for t in TEXTS for w in t.split()]
    write_lexicon(tmp_path / "lexicon.txt", words, tokenizer)
    decode = build_lm_decoder(tokenizer, write_uniform_arpa(tmp_path / "lm.arpa", words), tmp_path / "lexicon.txt",
                              weight=1.0, word_score=0.0, beam_size=20)
    # frames spelling "THE DOC" (not a word) with blanks between; the lexicon only knows DOG
    spelled = [tokenizer.index[c] for c in "THE|DOC"]
    log_probs = torch.full((2 * len(spelled) + 1, len(tokenizer)), -6.0)
    for t in range(log_probs.shape[0]):
        log_probs[t, spelled[t // 2] if t % 2 else 0] = -0.01
    log_probs[2 * spelled.index(tokenizer.index["C"]) + 1, tokenizer.index["G"]] = -1.0
    assert decode(log_probs.log_softmax(-1)) == "THE DOG"
    assert greedy(log_probs) == spelled
