"""The default models of ks, sid and intent and their augmentation: keyword models that ignore batch
padding, clip augmentation and SpecAugment masks drawn from each sample's seed alone (the same from a
pack as from files), background noise only from the training part of each recording, and every recipe
overlay (corpus and SUPERB) loading on its problem's schema and passing the problem's checks."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrecipe.config import load_config
from speechrecipe.data.clip_augment import ClipAugment, SpeedClip, load_noises
from speechrecipe.data.clips import Clip, FieldLabels
from speechrecipe.data.packed import open_or_build
from speechrecipe.engine.paths import ExperimentPaths
from speechrecipe.nn.bcresnet import BCResNet
from speechrecipe.nn.classifiers import EmbeddingClassifier
from speechrecipe.nn.specaugment import SeededSpecAugment
from speechrecipe.nn.tcresnet import TCResNet
from speechrecipe.registry import resolve_problem

REPO = Path(__file__).resolve().parent.parent
RATE = 16000


@pytest.mark.parametrize("make,dim", [(lambda: TCResNet(40, [12, 3]), 40), (lambda: TCResNet(80, 5, depth=14, width=1.5), 80),
                                      (lambda: BCResNet(40, 12), 40)])
@pytest.mark.e2e
def test_keyword_models_score_a_clip_the_same_alone_and_padded_in_a_batch(make, dim):
    torch.manual_seed(0)
    model = make().eval()
    lens = torch.tensor([98, 71, 40])
    feats = torch.randn(3, 98, dim)
    batched = model(feats, lens)
    for i, n in enumerate(lens.tolist()):
        alone = model(feats[i : i + 1, :n], lens[i : i + 1])
        for a, b in zip(alone, batched):
            torch.testing.assert_close(a[0], b[i], atol=1e-5, rtol=1e-5)


def test_published_sizes():
    """TC-ResNet8 has 66k parameters and BC-ResNet-1 9,232 (the papers' 12-class figures)."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(TCResNet(40, 12)) == 65_148 and count(BCResNet(40, 12)) == 9_232


def test_clip_augment_is_a_function_of_the_seed_and_shifts_within_the_clip():
    noise = np.linspace(-0.5, 0.5, 5 * RATE, dtype=np.float32)
    augment = ClipAugment(RATE, shift_ms=100.0, noise_prob=1.0, noise_volume=0.1, noises=[noise])
    clip = np.sin(np.arange(RATE, dtype=np.float32) / 7).astype(np.float32)
    a, b, c = clip.copy(), clip.copy(), clip.copy()
    augment(a, random.Random(5)), augment(b, random.Random(5)), augment(c, random.Random(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0
    quiet = ClipAugment(RATE, shift_ms=100.0, noise_prob=0.0)
    shifted = clip.copy()
    rng = random.Random(3)
    quiet(shifted, rng)
    shift = random.Random(3).randint(-1600, 1600)
    assert shift != 0
    expected = np.zeros_like(clip)
    if shift > 0:
        expected[: RATE - shift] = clip[shift:]
    else:
        expected[-shift:] = clip[: RATE + shift]
    assert np.array_equal(shifted, expected)
    for seed in range(20):  # clips shorter than the largest shift (and empty ones) stay whole-length
        short = np.ones(50, dtype=np.float32)
        quiet(short, random.Random(seed))
        assert short.shape == (50,) and set(np.unique(short)) <= {0.0, 1.0}
    quiet(np.zeros(0, dtype=np.float32), random.Random(0))


def test_speed_perturbation_keeps_the_crop_length_and_is_a_function_of_the_seed():
    """sid's build_dataset.augment (off by default): a crop played at 0.9 or 1.1 keeps its length (cut to its middle or
    repeated)."""
    speed = SpeedClip(RATE, (0.9, 1.1))
    clip = np.sin(np.arange(2 * RATE, dtype=np.float32) / 7).astype(np.float32)
    a, b = clip.copy(), clip.copy()
    speed(a, random.Random(5)), speed(b, random.Random(5))
    assert a.shape == clip.shape and a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, clip)
    played = {}
    for seed in range(8):  # both speeds occur; the slower one's pitch is lower: fewer zero crossings
        c = clip.copy()
        factor = random.Random(seed).choice((0.9, 1.1))
        speed(c, random.Random(seed))
        played[factor] = int((np.diff(np.sign(c)) != 0).sum())
    assert played[0.9] < int((np.diff(np.sign(clip)) != 0).sum()) < played[1.1]
    unchanged = clip.copy()
    SpeedClip(RATE, (1.0,))(unchanged, random.Random(0))
    assert np.array_equal(unchanged, clip)


def test_background_noise_comes_only_from_the_training_part_of_each_recording(tmp_path):
    """The last 20 % of _background_noise_ makes the valid and test `_silence_` crops: never mixed into training."""
    wav = np.zeros(10 * RATE, dtype=np.float32)
    wav[int(0.8 * len(wav)) :] = 0.5
    sf.write(tmp_path / "noise.wav", wav, RATE)
    (noise,) = load_noises([tmp_path / "noise.wav"], RATE, (0.0, 0.8))
    assert len(noise) == 8 * RATE and not noise.any()


@pytest.mark.parametrize("kind", ["ks", "sid"])
def test_augmented_clips_are_the_same_from_a_pack_and_from_the_files(tmp_path, kind):
    rows = []
    for i in range(4):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, np.random.default_rng(i).uniform(-0.3, 0.3, RATE - 100 * i).astype(np.float32), RATE, subtype="PCM_16")
        rows.append({"id": f"c{i}", "path": str(path), "num_frames": RATE - 100 * i, "sample_rate": RATE, "label": "a"})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(f'{{"id": "{r["id"]}"}}\n' for r in rows))
    augment = (ClipAugment(RATE, noise_prob=1.0, noises=[np.random.default_rng(9).uniform(-1, 1, 3 * RATE).astype(np.float32)])
               if kind == "ks" else SpeedClip(RATE, (0.9, 1.1)))
    labels = FieldLabels(("label",), ({"a": 0},))
    files = Clip(RATE, ("labels",), labels, 0.9, None, augment)
    packed = Clip(RATE, ("labels",), labels, 0.9, open_or_build(rows, manifest, tmp_path / "packed", RATE), augment)
    seeds = [11, 12, 13, 14]
    a, b = files.make_batch(rows, seeds), packed.make_batch(rows, seeds)
    assert torch.equal(a["wavs"], b["wavs"]) and torch.equal(a["wav_lens"], b["wav_lens"])
    assert a["seeds"].tolist() == seeds == b["seeds"].tolist()
    plain = Clip(RATE, ("labels",), labels, 0.9, None, None).make_batch(rows, seeds)
    assert not torch.equal(plain["wavs"], a["wavs"])  # augmentation changed them


def test_specaugment_masks_depend_only_on_each_samples_seed():
    masks = SeededSpecAugment(freq_mask_bins=8, time_mask_frames=10)
    feats = torch.ones(3, 50, 40)
    lens = torch.tensor([50, 30, 20])
    seeds = torch.tensor([7, 8, 9])
    out = masks(feats, lens, seeds)
    assert (out == 0).any(dim=(1, 2)).all()
    reordered = masks(feats[[2, 0]], lens[[2, 0]], seeds[[2, 0]])
    assert torch.equal(reordered[0], out[2]) and torch.equal(reordered[1], out[0])
    bins_kept = out[2, 0].eq(1)  # frames past the valid 20 are masked only by the frequency masks
    assert out[2, 20:, bins_kept].eq(1).all()


def test_sid_classifier_is_asvs_speaker_encoder_not_a_copy():
    from omegaconf import OmegaConf

    from speechrecipe.nn.classifiers import build_classifier
    from speechrecipe.nn.xvector import XVector

    conf = load_config("sid").build_downstream
    assert conf.name == "xvector"
    model = build_classifier(conf, 80, [7])
    assert isinstance(model, EmbeddingClassifier) and type(model.encoder) is XVector
    assert [type(m) for m in model.head] == [torch.nn.ReLU, torch.nn.BatchNorm1d]  # sid's head: relu_bn
    assert isinstance(build_classifier(OmegaConf.merge(conf, {"head": "linear"}), 80, [7]).head, torch.nn.Identity)
    asv = load_config("asv").build_downstream
    assert OmegaConf.to_container(asv.xvector) == OmegaConf.to_container(conf.xvector)


RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in RECIPES])
def test_every_recipe_overlay_loads_on_its_problems_schema_and_passes_its_checks(recipe, tmp_path):
    problem = recipe.stem
    conf = load_config(problem, [recipe], ["prepare_data.dataset_root=/data"])
    resolve_problem(problem)(conf, ExperimentPaths(tmp_path, tmp_path)).check_config()
    if recipe.parent.name == "superb" and problem in ("ks", "sid", "intent"):
        assert conf.build_downstream.name == "probe" and conf.build_downstream.probe.pooling == "mean"
        assert conf.build_optimizer.conf.lr == 0.0001 and conf.train.total_steps == 200000


def test_superb_recipes_cover_the_five_problems():
    assert {p.stem for p in (REPO / "recipes" / "superb").glob("*.yaml")} == {"ks", "sid", "intent", "asv", "asr"}


def test_mini_keyword_and_intent_corpora_test_on_speakers_never_heard_in_training():
    """The end-to-end tests (test_classification.py) score the defaults on these test splits."""
    import csv

    sc = REPO / "speechrecipe" / "assets" / "mini" / "speech_commands"
    held_out = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        held_out |= set(sc.joinpath(name).read_text().split())
    test = {Path(p).name.split("_nohash_")[0] for p in sc.joinpath("testing_list.txt").read_text().split()}
    train = {p.name.split("_nohash_")[0] for p in sc.glob("*/*_nohash_*")
             if f"{p.parent.name}/{p.name}" not in held_out and p.parent.name != "_background_noise_"}
    assert test and train and not test & train
    fsc = REPO / "speechrecipe" / "assets" / "mini" / "fluent_speech_commands" / "data"
    speakers = {split: {row["speakerId"] for row in csv.DictReader(open(fsc / f"{split}_data.csv"))}
                for split in ("train", "test")}
    assert speakers["test"] and not speakers["test"] & speakers["train"]


@pytest.mark.e2e
def test_ks_defaults_resume_bit_identical_with_augmentation(cli, tmp_path):
    """Shift, noise and SpecAugment draw from the sample seeds, so stopping at update 6 and going on to 12
    ends with the same weights as 12 updates in one go (packed clips, prefetch thread: the defaults)."""
    common = ("--stop", "2", "train.log_step=3", "train.eval_step=6", "train.save_step=6",
              "build_batch_sampler.batch_size=8", "train.keep_num_ckpts=0",
              "build_scheduler.conf.total_steps=12", "build_task.specaugment.apply=true")  # one schedule for both runs

    def train(target: Path, steps: int) -> None:
        result = cli("run", "ks", "--target-dir", target, *common, f"train.total_steps={steps}")
        assert result.exit_code == 0, result.stderr

    train(tmp_path / "straight", 12)
    train(tmp_path / "resumed", 6)
    train(tmp_path / "resumed", 12)
    a = torch.load(tmp_path / "straight" / "checkpoints" / "step-12.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "step-12.ckpt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "resume" in (tmp_path / "resumed" / "train_log.jsonl").read_text()


def one_cycle_rates(max_lr: float, total_steps: int) -> list[float]:
    """The rate OneCycleLR(max_lr, total_steps, pct_start=0.3) gives after each of the updates 1..total_steps."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=0.3)
    rates = []
    for _ in range(total_steps):
        optimizer.step()
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def on_mini(recipe: str, mini: str) -> tuple[str, ...]:
    """A corpus overlay's options, on the bundled mini corpus of its layout."""
    return ("-c", str(REPO / "recipes" / recipe), "train.num_workers=0",
            f"prepare_data.dataset_root={REPO / 'speechrecipe' / 'assets' / 'mini' / mini}")


# the corpus overlays (60k and 20k updates on the real corpora) must keep the same shape over a short run
@pytest.mark.parametrize("problem,overlay", [("sid", ()), ("intent", ()), ("sid", on_mini("voxceleb1/sid.yaml", "voxceleb1")),
                                             ("intent", on_mini("fluent_speech_commands/intent.yaml", "fluent_speech_commands"))],
                         ids=["sid", "intent", "sid-voxceleb1", "intent-fluent_speech_commands"])
@pytest.mark.e2e
def test_default_schedule_follows_total_steps_also_when_it_changes_on_resume(cli, tmp_path, problem, overlay):
    """The sid and intent defaults (and their corpus overlays) warm up and anneal within whatever
    train.total_steps is (8 here, not the default's), and a run resumed with total_steps raised to 12 goes on
    along the 12-update cycle (OneCycleLR's saved length of 8 would stop it with an error after update 8) down
    to ~0 at its end; lowered back to 8, training is done and nothing fails."""
    common = ("--stop", "2", "--target-dir", tmp_path, *overlay, "train.log_step=1", "train.eval_step=100",
              "train.save_step=4", "build_batch_sampler.batch_size=4", "evaluate.test_ckpt_steps=[last]")
    conf = load_config(problem, [Path(overlay[1])], overlay[2:]) if overlay else load_config(problem)
    max_lr = float(conf.build_scheduler.conf.max_lr)

    def train(steps: int) -> list[float]:
        result = cli("run", problem, *common, f"train.total_steps={steps}")
        assert result.exit_code == 0, result.stderr
        events = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
        return [e["lr"] for e in events if e["event"] == "train"]

    short = train(8)  # the rate logged after update k is the one update k + 1 uses
    assert short == pytest.approx(one_cycle_rates(max_lr, 8))
    assert short[0] < max(short) <= max_lr and short[-2] < max_lr / 100
    longer = train(12)
    assert longer[:8] == short and longer[8:] == pytest.approx(one_cycle_rates(max_lr, 12)[8:])
    assert longer[8] > short[-2] and longer[-2] < max_lr / 100
    assert train(8) == longer  # lowered below the step reached: nothing to replay or train, no error
