"""Data layer on real files: audio reading and checking, JSONL manifests, the VoxCeleb1 parser."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.data.audio import probe_audio, read_audio
from speechrecipe.data.corpora.voxceleb1 import (
    prepare_voxceleb1_identification,
    prepare_voxceleb1_verification,
)
from speechrecipe.fileio import file_digest
from speechrecipe.data.manifest import (
    split_manifest,
    read_jsonl,
    read_trials,
    write_jsonl,
)
from speechrecipe.data.scan import find_audio, probe_files, summarize_checks
from speechrecipe.errors import DataError

RATE = 16000


def noise(frames: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, (frames, channels)).astype("float32")
    return x[:, 0] if channels == 1 else x


def write(path: Path, data: np.ndarray, rate: int = RATE, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, **kw)
    return path


# --- bad audio: one case per problem string --------------------------------------------------


def _empty(d: Path) -> Path:
    (d / "a.wav").write_bytes(b"")
    return d / "a.wav"


def _truncated_wav(d: Path) -> Path:
    data = write(d / "ok.wav", noise(8000), subtype="PCM_16").read_bytes()
    (d / "a.wav").write_bytes(data[: len(data) // 2])
    return d / "a.wav"


def _garbage_flac(d: Path) -> Path:
    data = write(d / "ok.flac", noise(8000)).read_bytes()
    (d / "a.flac").write_bytes(data[:200] + np.random.default_rng(1).bytes(len(data) - 200))
    return d / "a.flac"


def _truncated_flac(d: Path) -> Path:
    data = write(d / "ok.flac", noise(8000)).read_bytes()
    (d / "a.flac").write_bytes(data[: len(data) // 2])
    return d / "a.flac"


def _text_as_wav(d: Path) -> Path:
    (d / "a.wav").write_text("id10001 id10001/1zcIwhmdeo4/00001.wav\n")
    return d / "a.wav"


def _no_samples(d: Path) -> Path:
    return write(d / "a.wav", np.zeros(0, "float32"))


def _all_zero(d: Path) -> Path:
    return write(d / "a.wav", np.zeros(8000, "float32"), subtype="PCM_16")


def _nan(d: Path) -> Path:
    x = noise(300_000)  # longer than one read block: the NaN is in the second
    x[290_000] = np.nan
    return write(d / "a.wav", x, subtype="FLOAT")


@pytest.mark.parametrize(
    "make, problem",
    [
        (_empty, "empty file"),
        (_truncated_wav, "corrupt or truncated"),
        (_garbage_flac, "corrupt or truncated"),
        (_truncated_flac, "corrupt or truncated"),
        (_text_as_wav, "not an audio file"),
        (_no_samples, "no samples"),
        (_all_zero, "all-zero samples"),
        (_nan, "non-finite samples (NaN/inf)"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_probe_names_the_problem(tmp_path, make, problem):
    assert probe_audio(make(tmp_path)).problem == problem


@pytest.mark.parametrize("make", [_empty, _truncated_wav, _text_as_wav, _no_samples])
def test_header_check_catches_what_the_header_shows(tmp_path, make):
    assert probe_audio(make(tmp_path), full=False).problem is not None


def test_header_check_does_not_decode_samples(tmp_path):
    assert probe_audio(_all_zero(tmp_path), full=False).problem is None


def test_probe_reports_usable_file(tmp_path):
    info = probe_audio(write(tmp_path / "a.flac", noise(8000)))
    assert (info.num_frames, info.sample_rate, info.channels, info.duration) == (8000, RATE, 1, 0.5)
    assert info.problem is None and info.warnings == ()


def test_probe_accepts_wav_streamed_with_placeholder_size(tmp_path):
    # a writer streaming to a pipe (ffmpeg) cannot seek back and leaves the sizes at 0xffffffff
    data = bytearray(write(tmp_path / "a.wav", noise(8000), subtype="PCM_16").read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = b"\xff\xff\xff\xff"
    (tmp_path / "a.wav").write_bytes(data)
    info = probe_audio(tmp_path / "a.wav")
    assert info.problem is None and info.num_frames == 8000


def test_probe_warns_on_stereo_and_other_rate(tmp_path):
    info = probe_audio(write(tmp_path / "a.wav", noise(4000, channels=2), rate=8000))
    assert info.problem is None
    assert info.warnings == ("stereo → downmixed", "sample rate 8000 → resampled to 16000")


# --- read_audio --------------------------------------------------------------------------------


def test_read_audio_partial_read_matches_slice(tmp_path):
    x = noise(8000)
    path = write(tmp_path / "a.wav", x, subtype="FLOAT")
    wav = read_audio(path, start=1000, num_frames=500)
    assert wav.dtype == torch.float32 and wav.shape == (500,)
    assert torch.equal(wav, torch.from_numpy(x[1000:1500]))
    assert read_audio(path).shape == (8000,)


def test_read_audio_downmixes_by_averaging(tmp_path):
    x = noise(4000, channels=2)
    wav = read_audio(write(tmp_path / "a.wav", x, subtype="FLOAT"))
    assert torch.allclose(wav, torch.from_numpy(x.mean(axis=1)))


def test_read_audio_resamples_to_requested_rate(tmp_path):
    t = np.arange(8000) / 8000
    path = write(tmp_path / "a.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate=8000)
    wav = read_audio(path)
    assert wav.shape == (16000,)
    # start/num_frames count the file's frames: 800 frames at 8 kHz become 1600
    assert read_audio(path, start=800, num_frames=800).shape == (1600,)
    spectrum = torch.fft.rfft(wav).abs()
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1 s at 16 kHz: bin index = Hz


# --- manifests --------------------------------------------------------------------------------


def test_jsonl_round_trip_leaves_no_tmp(tmp_path):
    rows = [{"id": "id1/v/00001", "path": "/x/ü.wav", "num_frames": 8000, "duration": 0.5}, {"id": "b"}]
    write_jsonl(tmp_path / "m.jsonl", rows)
    assert read_jsonl(tmp_path / "m.jsonl") == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_jsonl_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "m.jsonl"
    write_jsonl(path, [{"id": "old"}])

    def rows():
        yield {"id": "new"}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"id": "old"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_file_digest_is_sha256(tmp_path):
    data = np.random.default_rng(0).bytes(3_000_000)
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == hashlib.sha256(data).hexdigest()


# --- scanning ---------------------------------------------------------------------------------


def test_find_audio_is_sorted_and_skips_other_files(tmp_path):
    for name in ["b/2.wav", "a/1.FLAC", "a/x/3.wav", "a/notes.txt", "a/._1.wav", ".hidden/4.wav"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio(tmp_path)]
    assert found == ["a/1.FLAC", "a/x/3.wav", "b/2.wav"]


@pytest.mark.e2e
def test_probe_files_in_parallel_matches_serial(tmp_path):
    good = write(tmp_path / "good.wav", noise(800), subtype="PCM_16").read_bytes()
    paths = []
    for i in range(600):  # enough files for the process pool to be used
        paths.append(tmp_path / f"{i}.wav")
        paths[-1].write_bytes(good if i % 100 else b"")
    parallel = probe_files(paths, num_workers=2)
    assert parallel == [probe_audio(p) for p in paths]
    assert [i for i, info in enumerate(parallel) if info.problem] == list(range(0, 600, 100))


def test_summarize_checks_warns_once_and_reports(tmp_path, caplog):
    (tmp_path / "t").mkdir()
    paths = [_empty(tmp_path), write(tmp_path / "st.wav", noise(800, 2)), _text_as_wav(tmp_path / "t")]
    with caplog.at_level(logging.WARNING):
        bad = summarize_checks(paths, [probe_audio(p) for p in paths], tmp_path / "bad.tsv", strict=False)
    assert bad == {paths[0], paths[2]}
    assert (tmp_path / "bad.tsv").read_text().splitlines() == [
        "path\tproblem", f"{paths[0]}\tempty file", f"{paths[2]}\tnot an audio file"]
    assert [r.getMessage() for r in caplog.records] == [
        f"2 files are unusable and left out (first: {paths[0]}: empty file); see {tmp_path / 'bad.tsv'}",
        "1 audio files: stereo → downmixed",
    ]


# --- VoxCeleb1 --------------------------------------------------------------------------------

SPEAKERS = [f"id1000{i}" for i in range(1, 9)]
TEST_SPEAKERS = SPEAKERS[6:]


def utterances(speaker: str) -> list[str]:
    return [f"{speaker}/vid{v}/{n:05d}" for v in range(2) for n in range(1, 6)]  # 10 per speaker


@pytest.fixture(scope="module")
def vox_template(tmp_path_factory) -> Path:
    """8 speakers x 10 utterances of 0.1 s; test speakers stored as FLAC, trial list names .wav."""
    root = tmp_path_factory.mktemp("vox1")
    trials, iden = [], []
    for s, speaker in enumerate(SPEAKERS):
        ext = "flac" if speaker in TEST_SPEAKERS else "wav"
        for n, utt in enumerate(utterances(speaker)):
            write(root / "wav" / f"{utt}.{ext}", noise(1600, seed=100 * s + n))
            iden.append(f"{1 + (n % 5 == 3) + 2 * (n % 5 == 4)} {utt}.wav")
    a, b = utterances(TEST_SPEAKERS[0]), utterances(TEST_SPEAKERS[1])
    for i in range(5):
        trials += [f"1 {a[i]}.wav {a[i + 5]}.wav", f"0 {a[i]}.wav {b[i]}.wav  "]
    (root / "veri_test2.txt").write_text("\n".join(trials) + "\n\n")
    (root / "iden_split.txt").write_text("\n".join(iden) + "\n")
    return root


@pytest.fixture
def vox(vox_template, tmp_path) -> Path:
    root = tmp_path / "vox1"
    shutil.copytree(vox_template, root)
    return root


def prepare(root: Path, out: Path, **kw) -> dict:
    args = dict(test_sets=[{"name": "O", "trial_file": "veri_test2.txt"}], valid_fraction=0.2,
                valid_count=None, iden_split=None, seed=0, strict=False, check_audio="full",
                num_workers=1, num_valid_trials=10)
    return prepare_voxceleb1_verification(root, out, **{**args, **kw})


def test_verification_train_speakers_exclude_trial_speakers(vox, tmp_path):
    summary = prepare(vox, tmp_path / "out")
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    valid = read_jsonl(tmp_path / "out" / "valid.jsonl")
    assert {r["speaker"] for r in train} == {r["speaker"] for r in valid} == set(SPEAKERS[:6])
    assert len(train) == 6 * 8 and len(valid) == 6 * 2
    assert summary["train_utterances"] == 48 and summary["train_speakers"] == 6
    row = train[0]
    assert set(row) == {"id", "path", "num_frames", "sample_rate", "channels", "duration", "speaker"}
    assert Path(row["path"]).is_absolute() and row["num_frames"] == 1600 and row["duration"] == 0.1


def test_verification_valid_count_is_per_speaker(vox, tmp_path):
    prepare(vox, tmp_path / "out", valid_count=3)
    valid = read_jsonl(tmp_path / "out" / "valid.jsonl")
    assert len(valid) == 18 and all(sum(r["speaker"] == s for r in valid) == 3 for s in SPEAKERS[:6])


def test_verification_split_depends_only_on_seed(vox, tmp_path):
    def valid_ids(out, seed):
        prepare(vox, tmp_path / out, seed=seed)
        return [r["id"] for r in read_jsonl(tmp_path / out / "valid.jsonl")]

    assert valid_ids("a", 0) == valid_ids("b", 0) != valid_ids("c", 1)
    assert (tmp_path / "a" / "trials_valid.tsv").read_bytes() == (tmp_path / "b" / "trials_valid.tsv").read_bytes()


def test_verification_valid_trials_are_balanced(vox, tmp_path):
    prepare(vox, tmp_path / "out", valid_count=4, num_valid_trials=20)
    valid = {r["id"]: r["speaker"] for r in read_jsonl(tmp_path / "out" / "valid.jsonl")}
    trials = read_trials(tmp_path / "out" / "trials_valid.tsv")
    assert len(trials) == 20 and sum(label for label, _, _ in trials) == 10
    assert all((valid[a] == valid[b]) == bool(label) and a != b for label, a, b in trials)


def test_verification_iden_split_marks_valid(vox, tmp_path):
    prepare(vox, tmp_path / "out", iden_split="iden_split.txt")
    valid = read_jsonl(tmp_path / "out" / "valid.jsonl")
    assert sorted(r["id"] for r in valid) == sorted(
        u for s in SPEAKERS[:6] for u in utterances(s) if u.endswith("00004"))


def test_verification_writes_test_manifest_and_trials(vox, tmp_path):
    summary = prepare(vox, tmp_path / "out")
    trials = read_trials(tmp_path / "out" / "trials_O.tsv")
    assert len(trials) == 10 and trials[0] == (1, "id10007/vid0/00001", "id10007/vid1/00001")
    test = read_jsonl(tmp_path / "out" / "test_O.jsonl")
    assert sorted(r["id"] for r in test) == sorted({u for t in trials for u in t[1:]})
    assert all(r["path"].endswith(".flac") for r in test)
    assert summary["test_sets"]["O"] == {"trials": 10, "utterances": 15, "dropped_trials": 0}
    assert (tmp_path / "out" / "bad_audio.tsv").read_text() == "path\tproblem\n"


def _all_speaker_list(vox: Path) -> str:
    """A list_test_all2.txt-like list: trials between every pair of neighbouring speakers."""
    lines = [f"1 {utterances(s)[0]}.wav {utterances(s)[1]}.wav" for s in SPEAKERS]
    lines += [f"0 {utterances(a)[2]}.wav {utterances(b)[2]}.wav" for a, b in zip(SPEAKERS, SPEAKERS[1:])]
    (vox / "list_test_all2.txt").write_text("\n".join(lines) + "\n")
    return "list_test_all2.txt"


def test_verification_lists_of_all_speakers_need_not_decide_training(vox, tmp_path, caplog):
    test_sets = [{"name": "O", "trial_file": "veri_test2.txt"},
                 {"name": "E", "trial_file": _all_speaker_list(vox), "exclude_speakers": False}]
    with caplog.at_level(logging.WARNING):
        summary = prepare(vox, tmp_path / "out", test_sets=test_sets)
    assert summary["train_speakers"] == 6 and summary["test_sets"]["E"] == {"trials": 15, "utterances": 24, "dropped_trials": 0}
    assert "test set E: 6 of its 8 speakers are training speakers (exclude_speakers: false)" in caplog.text
    assert len(read_trials(tmp_path / "out" / "trials_E.tsv")) == 15


def test_verification_without_training_speakers_names_the_fix(vox, tmp_path):
    test_sets = [{"name": "E", "trial_file": _all_speaker_list(vox)}]
    with pytest.raises(DataError, match="no training speakers left: .*exclude_speakers: false"):
        prepare(vox, tmp_path / "out", test_sets=test_sets)


def test_verification_missing_files_are_counted(vox, tmp_path):
    for utt in utterances("id10008")[:4]:
        (vox / "wav" / f"{utt}.flac").unlink()
    with pytest.raises(DataError) as e:
        prepare(vox, tmp_path / "out")
    assert str(e.value) == (f"veri_test2.txt names 4 files missing under {vox / 'wav'} (as .wav or .flac): "
                            "id10008/vid0/00001, id10008/vid0/00002, id10008/vid0/00003, …")


def test_verification_missing_trial_file_names_key(vox, tmp_path):
    with pytest.raises(DataError, match=r"prepare_data.test_sets\[0\].trial_file: .*nope.txt does not exist"):
        prepare(vox, tmp_path / "out", test_sets=[{"name": "O", "trial_file": "nope.txt"}])


def test_identification_missing_iden_split_names_key(vox, tmp_path):
    with pytest.raises(DataError, match=r"prepare_data.iden_split: .*iden_split_v2.txt does not exist"):
        prepare_voxceleb1_identification(vox, tmp_path / "out", "iden_split_v2.txt", num_workers=1)


def test_verification_missing_root_names_key(tmp_path):
    with pytest.raises(DataError, match=f"prepare_data.dataset_root: {tmp_path / 'nowhere'} does not exist"):
        prepare(tmp_path / "nowhere", tmp_path / "out")


def test_verification_malformed_trial_line_names_line(vox, tmp_path):
    with open(vox / "veri_test2.txt", "a") as f:
        f.write("1 id10007/vid0/00001.wav\n")
    with pytest.raises(DataError, match=r"veri_test2.txt:12: expected"):
        prepare(vox, tmp_path / "out")


def test_verification_leaves_out_and_reports_bad_audio(vox, tmp_path):
    bad_train = vox / "wav" / "id10001" / "vid0" / "00001.wav"
    bad_test = vox / "wav" / "id10008" / "vid0" / "00001.flac"
    bad_train.write_bytes(b"")
    bad_test.write_text("not audio")
    summary = prepare(vox, tmp_path / "out")
    ids = {r["id"] for name in ("train", "valid") for r in read_jsonl(tmp_path / "out" / f"{name}.jsonl")}
    assert len(ids) == 59 and "id10001/vid0/00001" not in ids
    assert summary["test_sets"]["O"]["dropped_trials"] == 1 and summary["bad_files"] == 2
    assert all("id10008/vid0/00001" not in t for t in read_trials(tmp_path / "out" / "trials_O.tsv"))
    assert (tmp_path / "out" / "bad_audio.tsv").read_text().splitlines()[1:] == [
        f"{bad_train}\tempty file", f"{bad_test}\tnot an audio file"]


def test_verification_strict_refuses_bad_audio(vox, tmp_path):
    bad = vox / "wav" / "id10003" / "vid1" / "00002.wav"
    bad.write_bytes(b"")
    with pytest.raises(DataError, match=r"1 file is unusable \(first: .*00002.wav: empty file\); see .*bad_audio.tsv; "
                                        r".*prepare_data.strict=false"):
        prepare(vox, tmp_path / "out", strict=True)


def test_identification_follows_iden_split(vox, tmp_path):
    summary = prepare_voxceleb1_identification(vox, tmp_path / "out", "iden_split.txt", num_workers=1)
    split = {name: read_jsonl(split_manifest(tmp_path / "out", name)) for name in ("train", "valid", "test")}
    assert [len(rows) for rows in split.values()] == [48, 16, 16]
    assert {r["speaker"] for r in split["test"]} == set(SPEAKERS)
    assert all(r["id"].endswith("00005") for r in split["test"])
    assert summary["train_speakers"] == 8 and summary["bad_files"] == 0
    assert json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])["speaker"] == "id10001"
