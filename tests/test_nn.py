"""speechrecipe.nn: shapes, padding invariance, loss values, featurizer behaviour."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speechrecipe.errors import ConfigError
from speechrecipe.nn.ecapa import ECAPATDNN
from speechrecipe.nn.featurizer import Featurizer
from speechrecipe.nn.heads import CTCHead, UtteranceClassifier
from speechrecipe.nn.losses import AAMSoftmaxLoss, AMSoftmaxLoss, SoftmaxLoss, build_loss
from speechrecipe.nn.pooling import (
    AttentiveStatisticsPooling,
    MaskedBatchNorm1d,
    _MaskedBatchNorm,
    MeanPooling,
    StatisticsPooling,
)
from speechrecipe.nn.upstream import LOG_FLOOR, MFCC, Fbank, build_upstream
from speechrecipe.nn.xvector import XVector

ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def padded_batch(items: list[torch.Tensor], extra: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length items along dim 0 of each, padding with garbage (not zeros)."""
    lens = torch.tensor([len(x) for x in items])
    out = 100 * torch.randn(len(items), int(lens.max()) + extra, *items[0].shape[1:])
    for i, x in enumerate(items):
        out[i, : len(x)] = x
    return out, lens


def assert_padding_invariant(fn, items: list[torch.Tensor], atol: float = ATOL) -> None:
    """fn(batch, lens) row i equals fn(items[i] alone), on its valid part for frame outputs."""
    batch, lens = padded_batch(items)
    out_batch, out_lens = fn(batch, lens)
    for i, x in enumerate(items):
        alone, alone_lens = fn(x[None], torch.tensor([len(x)]))
        if alone.dim() == 2:  # [1, D] utterance-level
            torch.testing.assert_close(out_batch[i], alone[0], atol=atol, rtol=1e-5)
        else:  # [1, F, D] frame-level: compare valid frames
            n = int(alone_lens[0])
            assert int(out_lens[i]) == n
            torch.testing.assert_close(out_batch[i, :n], alone[0, :n], atol=atol, rtol=1e-5)


def utterance_fn(module):
    """Wrap an utterance-level module so it returns (output, None)."""
    return lambda x, lens: (module(x, lens), None)


def feats_of(lengths: list[int], dim: int) -> list[torch.Tensor]:
    return [torch.randn(n, dim) for n in lengths]


# --- upstreams ---------------------------------------------------------------------------


@pytest.mark.parametrize("wav_len", [400, 401, 559, 560, 16000, 16123])
def test_num_frames_matches_output_length(wav_len):
    fbank = Fbank()
    (feats,), lens = fbank(torch.randn(1, wav_len), torch.tensor([wav_len]))
    expected = (wav_len - 400) // 160 + 1
    assert feats.shape == (1, expected, 80)
    assert int(lens[0]) == expected == int(fbank.num_frames(torch.tensor([wav_len]))[0])


def test_wave_shorter_than_window_gives_zero_frames():
    (feats,), lens = Fbank()(torch.randn(2, 100), torch.tensor([100, 50]))
    assert lens.tolist() == [0, 0] and feats.shape == (2, 0, 80)


@pytest.mark.e2e
@pytest.mark.parametrize("name,dim", [("fbank", 80), ("mfcc", 30)])
def test_spectral_upstream_is_padding_invariant(name, dim):
    upstream = build_upstream(name).eval()
    assert upstream.num_layers == 1 and upstream.output_dim == dim and upstream.hop_samples == 160

    def fn(wavs, wav_lens):
        (feats,), lens = upstream(wavs, wav_lens)
        return feats, lens

    assert_padding_invariant(fn, [torch.randn(n) for n in (16000, 9000, 4321)], atol=1e-4)


@pytest.mark.parametrize("name", ["fbank", "mfcc"])
def test_spectrum_matches_torchaudios_transform(name):
    """The re^2 + im^2 power spectrum gives torchaudio's MelSpectrogram / MFCC to float rounding."""
    upstream = build_upstream(name, cmn=False).eval()
    x = upstream._frame_input(torch.randn(3, 12345))
    reference = upstream.mel(x).clamp(min=LOG_FLOOR).log() if name == "fbank" else upstream.mfcc(x)
    torch.testing.assert_close(upstream._spectrum(x), reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["fbank", "mfcc"])
def test_an_evaluation_batch_in_blocks_of_rows_gives_the_whole_batchs_features_bit_for_bit(name, monkeypatch):
    """Issue 26: on the CPU an evaluation batch's spectrum is computed a few rows at a time, in the whole
    batch's memory layout, so CMN and everything after it see the same values in the same order."""
    from speechrecipe.nn import upstream as module

    upstream = build_upstream(name).eval()
    lens = torch.tensor([16000, 15999, 9000, 4321, 16000, 700, 12000])
    wavs = torch.randn(len(lens), 16000) * (torch.arange(16000) < lens[:, None])
    monkeypatch.setattr(module, "SPECTRUM_BLOCK_SAMPLES", 10**12)
    (whole,), whole_lens = upstream(wavs, lens)
    for block in (1, 20000, 40000):  # one row, one row (the padded row is longer than 20000), three rows
        monkeypatch.setattr(module, "SPECTRUM_BLOCK_SAMPLES", block)
        (feats,), feat_lens = upstream(wavs, lens)
        assert torch.equal(feats, whole) and torch.equal(feat_lens, whole_lens) and feats.stride() == whole.stride()
        assert torch.equal(upstream._spectrum_by_rows(upstream._frame_input(wavs)), upstream._spectrum(upstream._frame_input(wavs)))


def test_cmn_zeroes_the_mean_over_valid_frames_and_padding():
    (feats,), lens = MFCC()(torch.randn(2, 8000), torch.tensor([8000, 5000]))
    n = int(lens[1])
    assert feats[1, :n].mean(0).abs().max() < 1e-4
    assert feats[1, n:].abs().max() == 0


def test_unknown_upstream_names_the_choices():
    with pytest.raises(ConfigError, match="fbank, mfcc"):
        build_upstream("hubert_nonexistent")


def test_unknown_upstream_option_suggests_the_key():
    with pytest.raises(ConfigError, match="did you mean hop_ms"):
        build_upstream("fbank", hop_msec=10)


# --- featurizer --------------------------------------------------------------------------


def test_featurizer_weights_sum_to_one_and_train():
    featurizer = Featurizer(num_layers=4, input_dim=8, normalize=True)
    layers = [torch.randn(2, 5, 8) for _ in range(4)]
    assert math.isclose(sum(featurizer.layer_weights()), 1.0, rel_tol=1e-6)
    out, lens = featurizer(layers, torch.tensor([5, 3]))
    assert out.shape == (2, 5, 8) and lens.tolist() == [5, 3]
    out.square().sum().backward()
    assert featurizer.weights.grad is not None and featurizer.weights.grad.abs().sum() > 0


def test_featurizer_returns_the_selected_layer():
    layers = [torch.randn(2, 5, 8) for _ in range(3)]
    for selection, index in ((1, 1), (-1, 2)):
        featurizer = Featurizer(num_layers=3, input_dim=8, layer_selection=selection)
        out, _ = featurizer(layers, torch.tensor([5, 5]))
        assert out is layers[index]
        assert featurizer.layer_weights() == [float(i == index) for i in range(3)]


def test_featurizer_rejects_a_layer_out_of_range():
    with pytest.raises(ConfigError, match="layer_selection=5"):
        Featurizer(num_layers=3, input_dim=8, layer_selection=5)


# --- pooling -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling",
    [MeanPooling(16), StatisticsPooling(16), AttentiveStatisticsPooling(16, attention_dim=8),
     AttentiveStatisticsPooling(16, attention_dim=8, global_context=False)],
    ids=["mean", "stats", "attentive", "attentive-local"],
)
def test_pooling_is_padding_invariant(pooling):
    items = feats_of([20, 7, 1], 16)
    assert_padding_invariant(utterance_fn(pooling), items)
    assert pooling(*padded_batch(items)).shape == (3, pooling.output_dim)


def test_statistics_pooling_matches_torch_mean_std():
    x = torch.randn(30, 4)
    pooled = StatisticsPooling(4)(*padded_batch([x]))[0]
    torch.testing.assert_close(pooled, torch.cat([x.mean(0), x.std(0, unbiased=False)]))


def test_statistics_pooling_gradient_matches_finite_differences():
    x, lens = padded_batch([torch.randn(6, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)])
    x = x.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: StatisticsPooling(3)(t, lens), (x,))
    # the same through a channels-first tensor seen as [B, F, D], as the x-vector passes it
    xt = x.detach().transpose(1, 2).contiguous().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: StatisticsPooling(3)(t.transpose(1, 2), lens), (xt,))


def test_masked_batchnorm_ignores_padded_frames_in_training():
    items = feats_of([9, 4], 3)
    batch, lens = padded_batch(items)
    x = batch.transpose(1, 2)  # [B, C, F]
    mask = (torch.arange(x.shape[2])[None, :] < lens[:, None]).unsqueeze(1)
    masked, plain = MaskedBatchNorm1d(3), torch.nn.BatchNorm1d(3)
    out = masked(x, mask)
    ref = plain(torch.cat(items).T[None])  # the valid frames only, as one sequence
    torch.testing.assert_close(out[0, :, :9], ref[0, :, :9], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)



def test_masked_batchnorm_gradients_are_those_of_batchnorm_on_the_valid_frames():
    batch, lens = padded_batch(feats_of([9, 4, 6], 3))
    x = batch.transpose(1, 2).double().contiguous().requires_grad_()  # [B, C, F]
    mask = (torch.arange(x.shape[2])[None, :] < lens[:, None]).unsqueeze(1)
    masked, plain = MaskedBatchNorm1d(3).double(), torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        for bn in (masked, plain):
            bn.weight.copy_(torch.tensor([0.5, 1.5, 2.0])), bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    upstream = torch.randn(x.shape, dtype=torch.double) * mask  # padded outputs feed nothing
    (masked(x, mask) * upstream).sum().backward()
    valid = torch.cat([x[b, :, :n] for b, n in enumerate(lens)], dim=1).detach().requires_grad_()
    plain(valid[None]).mul(torch.cat([upstream[b, :, :n] for b, n in enumerate(lens)], dim=1)[None]).sum().backward()
    torch.testing.assert_close(torch.cat([x.grad[b, :, :n] for b, n in enumerate(lens)], dim=1), valid.grad)
    torch.testing.assert_close(masked.weight.grad, plain.weight.grad)
    torch.testing.assert_close(masked.bias.grad, plain.bias.grad)
    # and on padded frames too (where an upstream gradient is not zero), against finite differences
    weight, bias = masked.weight.detach().clone().requires_grad_(), masked.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t, w, b: _MaskedBatchNorm.apply(t, mask.double(), w, b, 1e-5)[0],
                                    (x.detach().requires_grad_(), weight, bias))

# --- speaker encoders --------------------------------------------------------------------


@pytest.mark.e2e
def test_xvector_shape_and_padding_invariance():
    model = XVector(20, channels=32, embedding_dim=24, stats_channels=48)
    model.train()(*padded_batch(feats_of([40, 30], 20)))  # move BatchNorm running stats off 0/1
    model.eval()
    items = feats_of([60, 23, 10], 20)  # 10 < 15 frames of context: zero-padded to one output frame
    assert model(*padded_batch(items)).shape == (3, 24)
    assert_padding_invariant(utterance_fn(model), items)


def test_ecapa_shape_and_padding_invariance():
    model = ECAPATDNN(20, channels=32, embedding_dim=16, scale=4, se_channels=8, attention_dim=8)
    model.train()(*padded_batch(feats_of([40, 30], 20)))
    model.eval()
    items = feats_of([50, 17, 3], 20)
    assert model(*padded_batch(items)).shape == (3, 16)
    assert_padding_invariant(utterance_fn(model), items)


@pytest.mark.e2e
def test_speaker_encoders_train_on_padded_batches():
    for model in (XVector(20, channels=16, embedding_dim=8, stats_channels=16),
                  ECAPATDNN(20, channels=16, embedding_dim=8, scale=4, se_channels=4, attention_dim=4)):
        emb = model.train()(*padded_batch(feats_of([30, 12], 20)))
        emb.square().sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# --- heads -------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("pooling", ["mean", "attentive"])
def test_utterance_classifier_gives_one_head_per_field(pooling):
    head = UtteranceClassifier(12, [3, 5], pooling=pooling, hidden_dim=16).eval()
    items = feats_of([15, 4], 12)
    logits = head(*padded_batch(items))
    assert [tuple(x.shape) for x in logits] == [(2, 3), (2, 5)]
    for field in range(2):
        assert_padding_invariant(lambda x, lens: (head(x, lens)[field], None), items)
    assert len(UtteranceClassifier(12, 4)(*padded_batch(items))) == 1


@pytest.mark.e2e
@pytest.mark.parametrize("kind,subsample", [("lstm", 1), ("lstm", 2), ("conformer", 1), ("conformer", 4)])
def test_ctc_head_is_padding_invariant(kind, subsample):
    head = CTCHead(12, vocab_size=7, hidden_dim=16, kind=kind, subsample=subsample, num_heads=2,
                   ffn_dim=32, conv_kernel_size=5).eval()
    items = feats_of([21, 9, 2], 12)
    log_probs, lens = head(*padded_batch(items))
    assert log_probs.shape[2] == 7
    assert lens.tolist() == [math.ceil(n / subsample) for n in (21, 9, 2)]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    assert_padding_invariant(head, items)


def test_an_lstm_head_on_the_cpu_gives_the_packed_batchs_outputs_and_gradients_one_sequence_at_a_time():
    """On the CPU the head runs its LSTM over each sequence alone when lengths differ (a packed batch of unequal
    lengths is 2-5x slower there): outputs, zero padding included, and gradients are the packed batch's to float
    rounding, in training and in evaluation."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    head = CTCHead(12, vocab_size=7, hidden_dim=16, kind="lstm", subsample=1, dropout=0.0)
    x = torch.randn(4, 21, 12)
    lens = torch.tensor([21, 9, 2, 21])
    packed = pad_packed_sequence(head.encoder(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))[0],
                                 batch_first=True, total_length=21)[0]
    (packed_grad,) = torch.autograd.grad(packed.square().sum(), head.encoder.weight_hh_l0)
    for mode in (True, False):
        alone = head.train(mode)._lstm_by_sequence(x, lens)
        torch.testing.assert_close(alone, packed, atol=1e-6, rtol=1e-5)
        assert torch.equal(alone[1, 9:], torch.zeros(12, 32))
    (alone_grad,) = torch.autograd.grad(head.train()._lstm_by_sequence(x, lens).square().sum(), head.encoder.weight_hh_l0)
    torch.testing.assert_close(alone_grad, packed_grad, atol=1e-5, rtol=1e-4)


# --- losses ------------------------------------------------------------------------------


def scaled_cosine_ce(loss, embeddings, labels):
    cosine = F.normalize(embeddings) @ F.normalize(loss.weight).T
    return F.cross_entropy(loss.scale * cosine, labels)


@pytest.mark.parametrize("cls", [AMSoftmaxLoss, AAMSoftmaxLoss])
def test_margin_zero_is_scaled_cosine_softmax(cls):
    loss = cls(16, 10, margin=0.0, scale=30.0)
    embeddings, labels = torch.randn(8, 16), torch.randint(0, 10, (8,))
    value, logits = loss(embeddings, labels)
    torch.testing.assert_close(value, scaled_cosine_ce(loss, embeddings, labels))
    assert logits.shape == (8, 10)


@pytest.mark.parametrize("cls", [AMSoftmaxLoss, AAMSoftmaxLoss])
def test_margin_increases_the_loss_not_the_logits(cls):
    embeddings, labels = torch.randn(8, 16), torch.randint(0, 10, (8,))
    plain = cls(16, 10, margin=0.0)
    margin = cls(16, 10, margin=0.3)
    margin.load_state_dict(plain.state_dict())
    (low, logits_low), (high, logits_high) = plain(embeddings, labels), margin(embeddings, labels)
    assert high > low
    torch.testing.assert_close(logits_low, logits_high)


def test_aam_target_logit_is_cos_theta_plus_margin():
    loss = AAMSoftmaxLoss(4, 3, margin=0.2)
    theta = torch.tensor([0.1, 1.0, 2.0])
    torch.testing.assert_close(loss._target_logit(theta.cos()), (theta + 0.2).cos())
    # beyond theta + m = pi the target logit stays monotonic: cos(theta) - m * sin(m)
    far = torch.tensor([3.1]).cos()
    torch.testing.assert_close(loss._target_logit(far), far - math.sin(0.2) * 0.2)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["softmax", "amsoftmax", "aamsoftmax"])
def test_loss_decreases_on_separable_embeddings(name):
    centres = 3 * torch.randn(4, 16)
    labels = torch.arange(4).repeat(8)
    embeddings = centres[labels] + 0.3 * torch.randn(32, 16)
    loss = build_loss(name, embedding_dim=16, num_classes=4, margin=0.2, scale=30.0)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        value, logits = loss(embeddings, labels)
        first = value.item() if first is None else first
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert value.item() < 0.5 * first
    assert (logits.argmax(1) == labels).float().mean() == 1.0


def test_unknown_loss_names_the_choices():
    with pytest.raises(ConfigError, match="softmax, amsoftmax, aamsoftmax"):
        build_loss("arcface", 8, 2)
    assert isinstance(build_loss("softmax", 8, 2), SoftmaxLoss)
