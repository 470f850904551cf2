"""SSL upstreams (wav2vec2, HuBERT, WavLM from torchaudio.models): hidden states, padding invariance,
frozen vs fine-tuned, checkpoints that refer to a frozen upstream, and asv/asr/ks end to end with a
tiny `custom` wav2vec2 (frozen and fine-tuned) through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from speechrecipe.errors import ConfigError, RunFailure
from speechrecipe.nn.featurizer import Featurizer
from speechrecipe.nn.ssl_upstream import REFERENCE_KEY, SSLUpstream
from speechrecipe.nn.upstream import Fbank, build_upstream

FIXTURES = Path(__file__).parent / "fixtures"
TINY_YAML = FIXTURES / "tiny_wav2vec2.yaml"
TINY = OmegaConf.to_container(OmegaConf.load(TINY_YAML).build_upstream.ssl.conf)


def tiny(model: str = "wav2vec2", seed: int = 1, **kwargs) -> SSLUpstream:
    return SSLUpstream(model, "custom", dict(TINY), init_seed=seed, **kwargs)


def batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random waveforms, zero-padded to the longest."""
    g = torch.Generator().manual_seed(seed)
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wavs[i, :n] = 0.1 * torch.randn(n, generator=g)
    return wavs, torch.tensor(lengths)


# --- hidden states and frame rate -----------------------------------------------------------------


def test_every_hidden_state_at_20_ms_with_valid_lengths():
    up = tiny().eval()
    wavs, lens = batch([16000, 8000])
    hidden, feat_lens = up(wavs, lens)
    assert up.num_layers == len(hidden) == 3  # projected CNN features + 2 transformer layers
    assert up.hop_samples == 320 and up.frame_shift_ms == 20.0 and up.output_dim == 32
    assert feat_lens.tolist() == up.num_frames(lens).tolist() == [49, 24]
    assert all(h.shape == (2, 49, 32) for h in hidden)
    assert all(float(h[1, 24:].abs().max()) == 0.0 for h in hidden)  # padded frames are zero
    feats, _ = Featurizer(up.num_layers, up.output_dim)(hidden, feat_lens)  # the weighted sum works unchanged
    assert feats.shape == (2, 49, 32)


@pytest.mark.parametrize("model", ["wav2vec2", "hubert", "wavlm"])
@pytest.mark.parametrize("extractor", ["group_norm", "layer_norm"])
def test_an_utterance_gets_the_same_hidden_states_alone_as_batched_with_longer_ones(model, extractor):
    up = SSLUpstream(model, "custom", dict(TINY, extractor_mode=extractor, encoder_layer_norm_first=extractor == "layer_norm"),
                     init_seed=3).eval()
    lengths = [16000, 9000, 4000]
    wavs, lens = batch(lengths)
    hidden, feat_lens = up(wavs, lens)
    for i, n in enumerate(lengths):
        alone, alone_lens = up(wavs[i : i + 1, :n], lens[i : i + 1])
        frames = int(alone_lens)
        assert frames == int(feat_lens[i])
        for layer, (batched, single) in enumerate(zip(hidden, alone)):
            torch.testing.assert_close(batched[i, :frames], single[0], atol=2e-5, rtol=0, msg=f"layer {layer}, utt {i}")


def test_torchaudios_own_group_norm_is_not_padding_invariant_which_is_why_ours_is_masked():
    """The check above can fail: torchaudio normalises the first convolution over the padded batch."""
    up = tiny().eval()
    wavs, lens = batch([16000, 4000])
    hidden, frames = up.model.extract_features(wavs, lens)
    alone, _ = up.model.extract_features(wavs[1:, :4000], lens[1:])
    n = int(frames[1])
    assert float((hidden[-1][1, :n] - alone[-1][0]).abs().max()) > 1e-2


def test_fbank_through_the_same_interface():
    up = build_upstream("fbank")
    assert isinstance(up, Fbank) and up.num_layers == 1


def test_base_and_large_sizes_build_torchaudios_architectures():
    assert tiny().model.encoder.transformer.layers[0].attention.embed_dim == 32
    with pytest.raises(ConfigError, match="ssl.size"):
        SSLUpstream("wav2vec2", "huge")
    with pytest.raises(ConfigError, match="encoder_num_layer.*did you mean encoder_num_layers"):
        SSLUpstream("wav2vec2", "custom", {"encoder_num_layer": 2})


# --- frozen, fine-tuned, checkpoints ---------------------------------------------------------------


def test_a_frozen_upstream_has_no_gradient_stays_in_eval_mode_and_is_referenced_not_stored():
    up = tiny().train()
    assert not up.model.training and not any(p.requires_grad for p in up.parameters())
    hidden, _ = up(*batch([8000]))
    assert not hidden[-1].requires_grad
    state = up.state_dict()
    assert list(state) == [REFERENCE_KEY] and len(state[REFERENCE_KEY]) == 64
    again = tiny()
    again.load_state_dict(state)  # same init: the digest matches and the weights stay
    other = tiny(seed=2)
    with pytest.raises(RunFailure, match="differ from the ones built now"):
        other.load_state_dict(state)


@pytest.mark.e2e
def test_finetune_after_n_updates_trains_from_then_on_and_then_stores_the_weights():
    up = tiny(finetune=True, finetune_after=2, gradient_checkpointing=False).train()
    before = {k: v.clone() for k, v in up.model.state_dict().items()}
    optimizer = torch.optim.SGD(up.parameters(), lr=0.1)
    wavs, lens = batch([8000, 6000])
    for step in range(4):
        up.set_training_step(step)
        assert up.model.training == (step >= 2)
        hidden, _ = up(wavs, lens)
        loss = hidden[-1].square().mean()
        if step < 2:
            assert not loss.requires_grad
            assert REFERENCE_KEY in up.state_dict()
            continue
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = [k for k, v in up.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and REFERENCE_KEY not in up.state_dict() and "model.encoder.transformer.layers.0.attention.k_proj.weight" in up.state_dict()


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        up = tiny(finetune=True, gradient_checkpointing=checkpointing).train()
        up.set_training_step(0)
        torch.manual_seed(0)  # the same dropout masks: checkpointing replays them in backward
        hidden, _ = up(*batch([8000, 5000]))
        sum(h.square().mean() for h in hidden).backward()
        grads.append({n: p.grad.clone() for n, p in up.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


# --- end to end through the CLI -------------------------------------------------------------------

COMMON = ["-c", str(TINY_YAML), "train.num_workers=0", "train.log_step=2", "evaluate.test_ckpt_steps=[valid_best]"]
PROBLEMS = {
    # SUPERB's probe, the downstream for judging an upstream (the default TC-ResNet8 outweighs the tiny upstream)
    "ks": ["build_batch_sampler.batch_size=8", "build_dataset.max_secs=0.8", "build_downstream.name=probe"],
    "asv": ["-c", str(FIXTURES / "tiny_asv.yaml"), "build_batch_sampler.batch_size=4"],
    "asr": ["-c", str(FIXTURES / "tiny_asr.yaml"), "build_downstream.subsample=1", "build_batch_sampler.max_batch_secs=8.0"],
    # stage 3 tunes on dev once per set of weights, hashing the state dict: a frozen upstream's entry is a string
    "diarization": ["-c", str(FIXTURES / "tiny_diarization.yaml"), "build_batch_sampler.batch_size=4"],
}
MODES = {"frozen": [], "finetuned": ["build_upstream.ssl.finetune=true", "build_upstream.ssl.finetune_after=2"]}


@pytest.mark.e2e
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_a_tiny_wav2vec2_trains_evaluates_and_reports_its_layer_weights(cli, tmp_path, problem, mode):
    target = tmp_path / problem
    result = cli("run", problem, "--target-dir", target, *COMMON, *PROBLEMS[problem], *MODES[mode],
                 "train.total_steps=4", "train.eval_step=4", "train.save_step=4", "train.keep_num_ckpts=0")
    assert result.exit_code == 0, result.stderr
    state = torch.load(target / "checkpoints" / "step-4.ckpt", weights_only=True)["model"]
    upstream_keys = [k for k in state if k.startswith("upstream.")]
    initial = tiny(seed=1337)  # init_seed: ${seed}
    if mode == "frozen":
        assert upstream_keys == [f"upstream.{REFERENCE_KEY}"] and state[upstream_keys[0]] == initial.weights_digest()
    else:  # fine-tuned for updates 2 and 3: stored, and changed
        weight = "upstream.model.encoder.transformer.layers.1.feed_forward.output_dense.weight"
        assert weight in state
        assert not torch.equal(state[weight], initial.model.state_dict()[weight.removeprefix("upstream.model.")])
    weights = json.loads((target / "results" / "layer_weights.json").read_text())
    (entry,) = weights.values()
    assert len(entry["weights"]) == 3 and abs(sum(entry["weights"]) - 1) < 1e-6
    assert (target / "results" / "layer_weights.png").stat().st_size > 1000
    assert "layer_weights.png" in (target / "results" / "README.md").read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("mode", list(MODES))
def test_a_checkpoint_resumes_bit_identically_frozen_or_fine_tuned_after_two_updates(cli, tmp_path, mode):
    args = [*COMMON, *PROBLEMS["ks"], *MODES[mode], "--stop", "2", "train.eval_step=100", "train.save_step=3",
            "train.keep_num_ckpts=0", "build_scheduler.conf.total_steps=6"]  # one 6-update schedule for both runs
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert cli("run", "ks", "--target-dir", whole, *args, "train.total_steps=6").exit_code == 0
    assert cli("run", "ks", "--target-dir", halves, *args, "train.total_steps=3").exit_code == 0
    assert cli("run", "ks", "--target-dir", halves, *args, "train.total_steps=6").exit_code == 0
    assert any(json.loads(line)["event"] == "resume" for line in (halves / "train_log.jsonl").read_text().splitlines())
    a, b = (torch.load(t / "checkpoints" / "step-6.ckpt", weights_only=True) for t in (whole, halves))
    # (the 3-step run validated at its last step, so only its best-so-far counters differ)
    same = lambda counters: {k: v for k, v in counters.items() if not k.startswith("best_")}  # noqa: E731
    assert same(a["counters"]) == same(b["counters"]) and a["model"].keys() == b["model"].keys()
    stored = [k for k in a["model"] if k.startswith("upstream.model.")]
    assert bool(stored) == (mode == "finetuned")  # fine-tuned from update 2: stored by step 3's checkpoint
    for name, value in a["model"].items():
        assert value == b["model"][name] if isinstance(value, str) else torch.equal(value, b["model"][name]), name
    for key, values in a["optimizer"]["state"].items():
        for name, value in values.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][key][name])), (key, name)
    if mode == "finetuned":
        return
    # the checkpoint holds the downstream only: far smaller than the upstream's weights
    upstream_bytes = sum(t.numel() * t.element_size() for t in tiny().model.state_dict().values())
    downstream_bytes = sum(v.numel() * v.element_size() for v in a["model"].values() if not isinstance(v, str))
    assert downstream_bytes < upstream_bytes


def test_a_wrong_ssl_option_is_one_config_line_before_any_work(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "x", "build_upstream.name=hubert",
                 "build_upstream.ssl.conf.encoder_layers=3")
    assert result.exit_code == 2
    assert "build_upstream.ssl.conf.encoder_layers" in result.stderr and "did you mean" in result.stderr
    assert not (tmp_path / "x" / "records").exists()


def test_layer_weights_are_written_for_a_weighted_sum_only(tmp_path):
    from speechrecipe.engine.layer_weights import write_layer_weights

    checkpoints, results = tmp_path / "checkpoints", tmp_path / "results"
    checkpoints.mkdir()
    results.mkdir()
    logits = torch.tensor([0.0, 1.0, 2.0])
    torch.save({"format": 1, "model": {"featurizer.weights": logits}}, checkpoints / "valid_best.ckpt")
    torch.save({"format": 1, "model": {"downstream.weight": torch.ones(2)}}, checkpoints / "step-4.ckpt")
    best = {"a": {"checkpoint": "valid_best", "step": 8}, "b": {"checkpoint": "valid_best", "step": 8}}
    written = write_layer_weights(best, checkpoints, results)
    found = json.loads(written.read_text())
    assert found == {"valid_best": {"step": 8, "weights": torch.softmax(logits, 0).tolist(), "test_sets": ["a", "b"]}}
    assert (results / "layer_weights.png").stat().st_size > 1000
    # one layer (fbank) or a selected layer: no weights, nothing written
    assert write_layer_weights({"a": {"checkpoint": "step-4", "step": 4}}, checkpoints, tmp_path / "none") is None


@pytest.mark.parametrize("problem", ["asv", "asr", "ks", "sid", "intent"])
def test_every_problem_takes_an_ssl_upstream_and_a_pretrained_section(cli, tmp_path, problem):
    source = tmp_path / "w.pt"
    torch.save(tiny().model.state_dict(), source)
    result = cli("run", problem, "--dry-run", "--target-dir", tmp_path / "exp", "-c", TINY_YAML,
                 "build_upstream.name=hubert", f"pretrained.upstream={source}")
    assert result.exit_code == 0, result.stderr
    config = cli("config", problem, "-c", TINY_YAML, f"pretrained.upstream={source}").stdout
    assert "name: wav2vec2" in config and f"upstream: {source}" in config


def test_audio_at_another_rate_is_refused_for_an_ssl_upstream(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "x", "build_upstream.name=wavlm", "build_dataset.sample_rate=8000")
    assert result.exit_code == 2 and "build_dataset.sample_rate: 8000; wavlm takes 16000 Hz audio" in result.stderr
