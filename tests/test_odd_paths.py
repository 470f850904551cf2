"""Any path a file system allows goes through every stage: spaces, tabs and non-ASCII characters in the
corpus, the target_dir and the cache; every file the toolkit writes and reads back round-trips them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from speechrecipe.data.manifest import read_trials, write_trials
from speechrecipe.data.tsv import read_tsv, write_tsv

REPO = Path(__file__).resolve().parent.parent
MINI_VOX = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
ODD = ["my video", "vidéo\tà onglet", "ünï ç 名"]  # training speaker id10001's three videos get these names
ODD_TEST = "tést video"  # a test speaker's video, listed tab-separated in the trial list


def test_toolkit_tsv_round_trips_any_field(tmp_path):
    fields = ["a b", "tab\there", "line\nbreak", "cr\rx", 'q"uote', "ünï ç", '"', "", " lead", "trail "]
    write_tsv(tmp_path / "x.tsv", [fields, ["1", "2"]], header=["h1", "h2"])
    assert [row for _, row in read_tsv(tmp_path / "x.tsv", skip_header=True)] == [fields, ["1", "2"]]
    write_trials(tmp_path / "trials.tsv", [(1, "id1/my video/00001", "id1/tab\tvid/00002")])
    assert read_trials(tmp_path / "trials.tsv") == [(1, "id1/my video/00001", "id1/tab\tvid/00002")]


def _odd_corpus(root: Path) -> Path:
    corpus = Path(shutil.copytree(MINI_VOX, root / "données du corpus"))
    for video, name in zip(sorted((corpus / "wav" / "id10001").iterdir()), ODD):
        video.rename(video.with_name(name))
    test_video = corpus / "wav" / "id10270" / "IZvYlZ3I-UD"
    test_video.rename(test_video.with_name(ODD_TEST))
    lines = []
    for line in (corpus / "veri_test2.txt").read_text().splitlines():
        label, a, b = line.split()
        lines.append("\t".join([label, *(p.replace("IZvYlZ3I-UD", ODD_TEST) for p in (a, b))]))
    (corpus / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return corpus


@pytest.mark.e2e
def test_odd_paths_through_all_five_stages(cli, tmp_path):
    corpus = _odd_corpus(tmp_path)
    target, cache = tmp_path / "exp ü\tx", tmp_path / "cache ß"
    result = cli("run", "asv", "--target-dir", target, "--cache-dir", cache, "-c", TINY,
                 f"prepare_data.dataset_root={corpus}", "train.total_steps=4", "train.save_step=2",
                 "train.eval_step=2", "evaluate.test_ckpt_steps=[last]")
    assert result.exit_code == 0, result.stderr
    (prepared,) = [p for p in (cache / "asv").iterdir() if p.is_dir() and not p.name.startswith(".")]
    valid_ids = {u for _, a, b in read_trials(prepared / "trials_valid.tsv") for u in (a, b)}
    assert any(name in u for u in valid_ids for name in ODD)  # validation ran on them (it read this file back)
    test_ids = {u for _, a, b in read_trials(prepared / "trials_voxceleb1_o.tsv") for u in (a, b)}
    assert any(ODD_TEST in u for u in test_ids)
    results = json.loads((target / "results" / "results.json").read_text())
    assert "eer" in results["voxceleb1_o"]
    (scores,) = (target / "evaluation").glob("*/voxceleb1_o.scores")
    assert sum(ODD_TEST in row[0] or ODD_TEST in row[1] for _, row in read_tsv(scores)) > 0
