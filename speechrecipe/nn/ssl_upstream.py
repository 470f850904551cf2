"""Self-supervised upstreams from torchaudio.models: wav2vec 2.0, HuBERT and WavLM.

`SSLUpstream` returns every hidden state (the projected CNN features after the positional
convolution, then each transformer layer's output) with their valid lengths, so the Featurizer's
weighted sum works as for filterbanks. One frame every 320 samples (20 ms at 16 kHz).

Padding-invariant: the group norm of the base models' first convolution is computed over each
utterance's valid frames only (torchaudio's normalises over the padded batch), attention masks the
padded frames, and padded output frames are zero; an utterance gets the same hidden states alone
as in a batch with longer ones.

Frozen by default: eval mode, no gradient, and its weights are left out of the task's state dict,
which keeps a digest of them instead (`stored_weights`); loading such a state dict checks the digest.
With `finetune`, it trains from update `finetune_after` on (told by the trainer through
`set_training_step`), with gradient checkpointing of the transformer layers if asked.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any, Callable

import torch
import torchaudio
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from speechrecipe.errors import ConfigError, RunFailure
from speechrecipe.nn.pooling import length_mask

MODELS = ("wav2vec2", "hubert", "wavlm")
SIZES = ("base", "large", "custom")
REFERENCE_KEY = "frozen_weights_sha256"  # in the state dict, in place of a frozen upstream's weights

# torchaudio's base architecture: what `custom` starts from (build_upstream.ssl.conf overrides it)
_BASE = dict(
    extractor_mode="group_norm", extractor_conv_layer_config=None, extractor_conv_bias=False,
    encoder_embed_dim=768, encoder_projection_dropout=0.1, encoder_pos_conv_kernel=128, encoder_pos_conv_groups=16,
    encoder_num_layers=12, encoder_num_heads=12, encoder_attention_dropout=0.1, encoder_ff_interm_features=3072,
    encoder_ff_interm_dropout=0.1, encoder_dropout=0.1, encoder_layer_norm_first=False, encoder_layer_drop=0.1,
    aux_num_out=None,
)
_WAVLM_BASE = dict(_BASE, encoder_num_buckets=320, encoder_max_distance=800)


def factory(model: str, size: str) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """torchaudio's builder for (model, size) and the defaults `custom` fills in."""
    if model not in MODELS:
        raise ConfigError(f"build_upstream.name: {model!r} is not one of {', '.join(MODELS)}")
    if size not in SIZES:
        raise ConfigError(f"build_upstream.ssl.size: {size!r} is not one of {', '.join(SIZES)}")
    models = torchaudio.models
    if size == "custom":
        if model == "wavlm":
            return models.wavlm_model, dict(_WAVLM_BASE)
        # HuBERT's architecture is wav2vec 2.0's (torchaudio builds both with wav2vec2_model)
        return models.wav2vec2_model, dict(_BASE)
    return getattr(models, f"{model}_{size}"), {}


def check_options(model: str, size: str, conf: dict) -> None:
    """Refuse keyword arguments torchaudio's builder does not take, before any work."""
    import difflib
    import inspect

    build, _ = factory(model, size)
    allowed = list(inspect.signature(build).parameters)
    for key in conf:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]}?" if close else f"{build.__name__} takes {', '.join(allowed)}"
            raise ConfigError(f"build_upstream.ssl.conf.{key}: not an option of torchaudio.models.{build.__name__}; {hint}")


class SSLUpstream(nn.Module):
    """A torchaudio wav2vec2/HuBERT/WavLM model as an upstream: every hidden state, valid lengths."""

    def __init__(
        self,
        model: str = "wav2vec2",
        size: str = "base",
        conf: dict | None = None,
        finetune: bool = False,
        finetune_after: int = 0,
        gradient_checkpointing: bool = True,
        normalize_waveform: bool = False,
        init_seed: int = 0,
        sample_rate: int = 16000,
    ):
        """conf: keyword arguments of torchaudio's builder (for custom: over the base architecture).
        finetune_after: updates the upstream stays frozen before it trains (with finetune)."""
        super().__init__()
        options = dict(conf or {})
        check_options(model, size, options)
        if finetune_after < 0:
            raise ConfigError(f"build_upstream.ssl.finetune_after: {finetune_after} must be 0 or more")
        build, defaults = factory(model, size)
        if options.get("extractor_conv_layer_config") is not None:
            options["extractor_conv_layer_config"] = [tuple(layer) for layer in options["extractor_conv_layer_config"]]
        with torch.random.fork_rng(devices=[]):  # the init depends on init_seed only, not on what ran before
            torch.manual_seed(init_seed)
            self.model = build(**{**defaults, **options})
        self.kind, self.size = model, size
        self.sample_rate = sample_rate
        self.finetune_after = finetune_after if finetune else None
        self.gradient_checkpointing = gradient_checkpointing
        self.normalize_waveform = normalize_waveform
        layers = self.model.encoder.transformer.layers
        self.num_layers = len(layers) + 1
        self.output_dim = self.model.encoder.feature_projection.projection.out_features
        self.hop_samples = 1
        for block in self.model.feature_extractor.conv_layers:
            self.hop_samples *= block.stride
        self.last_layer: int | None = None  # set: hidden states 0..last_layer only, the later layers not run (dump.layers)
        self._step = -1  # the update being trained, as the trainer last said
        self._store_all = False  # full_state_dict(): the state dict holds the weights even when frozen
        self._digest_cache: tuple[tuple, str] | None = None
        if self.finetune_after is None:
            self.model.requires_grad_(False)
        self._register_state_dict_hook(_leave_out_frozen_weights)
        self._register_load_state_dict_pre_hook(_fill_in_frozen_weights, with_module=True)

    # ----- what the engine asks -----------------------------------------------------------
    @property
    def frame_shift_ms(self) -> float:
        return 1000.0 * self.hop_samples / self.sample_rate

    @property
    def trainable_now(self) -> bool:
        return self.finetune_after is not None and self._step >= self.finetune_after

    @property
    def stored_weights(self) -> bool:
        """Whether the task's checkpoints hold this upstream's weights: once it has trained."""
        return self.trainable_now or self._store_all

    def set_training_step(self, step: int) -> None:
        """The trainer's update number, before each update (fine-tuning starts at finetune_after)."""
        self._step = step
        if self.training:
            self.train(True)  # the wrapped model leaves eval mode when fine-tuning starts

    def train(self, mode: bool = True) -> "SSLUpstream":
        """A frozen upstream stays in eval mode (no dropout, no layer drop) while the task trains."""
        super().train(mode)
        if mode and not self.trainable_now:
            self.model.eval()
        return self

    def weights_digest(self) -> str:
        """sha256 of the wrapped model's tensors (cached until one of them changes in place)."""
        tensors = list(self.model.state_dict().values())
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._digest_cache is None or self._digest_cache[0] != key:
            self._digest_cache = (key, state_digest(self.model.state_dict()))
        return self._digest_cache[1]

    # ----- forward --------------------------------------------------------------------------
    def num_frames(self, wav_lens: Tensor) -> Tensor:
        lens = wav_lens
        for block in self.model.feature_extractor.conv_layers:
            lens = torch.div(lens - block.kernel_size, block.stride, rounding_mode="floor").add(1).clamp(min=0)
        return lens

    def forward(self, wavs: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        """wavs [B, T], wav_lens [B] -> (num_layers x [B, F, D], feat_lens [B]); padded frames are 0."""
        if not self.trainable_now or not self.training:
            with torch.no_grad():
                return self._hidden_states(wavs, wav_lens)
        return self._hidden_states(wavs, wav_lens)

    def _hidden_states(self, wavs: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        wavs = wavs.float()
        if self.normalize_waveform:
            wavs = _masked_layer_norm(wavs, wav_lens)
        feats, lens = self._cnn(wavs, wav_lens)
        encoder = self.model.encoder
        x, mask = encoder._preprocess(feats, lens)  # projection; padded frames zeroed; additive attention mask
        transformer = encoder.transformer
        x = transformer._preprocess(x)  # positional convolution (+ layer norm for layer_norm_first models)
        valid = length_mask(lens, x.shape[1]).unsqueeze(-1).to(x.dtype)
        hidden = [x * valid]
        wavlm = isinstance(transformer.layers[0].attention, torchaudio.models.wav2vec2.wavlm_attention.WavLMSelfAttention)
        # WavLM takes an additive key-padding mask [B, F]; the others the additive [B, 1, F, F] mask
        attention = dict(attention_mask=None, key_padding_mask=mask[:, 0, 0, :]) if wavlm else dict(attention_mask=mask)
        position_bias = None
        for layer in transformer.layers[: self.last_layer]:
            dropped = self.training and transformer.layer_drop > 0 and torch.rand(1).item() <= transformer.layer_drop
            if not dropped:
                x, position_bias = self._layer(layer, x, position_bias, attention)
            hidden.append(x * valid)
        return hidden, lens

    def _layer(self, layer: nn.Module, x: Tensor, position_bias: Tensor | None, attention: dict):
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(lambda a, b: layer(a, position_bias=b, **attention), x, position_bias, use_reentrant=False)
        return layer(x, position_bias=position_bias, **attention)

    def _cnn(self, wavs: Tensor, wav_lens: Tensor) -> tuple[Tensor, Tensor]:
        """The convolutional feature encoder, with a group norm over each utterance's valid frames."""
        x, lens = wavs.unsqueeze(1), wav_lens
        for block in self.model.feature_extractor.conv_layers:
            x = block.conv(x)
            lens = torch.div(lens - block.kernel_size, block.stride, rounding_mode="floor").add(1).clamp(min=0)
            if isinstance(block.layer_norm, nn.GroupNorm):
                x = _masked_group_norm(x, lens, block.layer_norm)
            elif block.layer_norm is not None:
                x = block.layer_norm(x)
            x = nn.functional.gelu(x)
        return x.transpose(1, 2), lens


def state_digest(state: dict) -> str:
    """sha256 of a state dict: each entry's name, then a tensor's bytes (any dtype, bfloat16 too) or any other
    value's repr (a frozen upstream's entry is its weights' digest string)."""
    hasher = hashlib.sha256()
    for name, value in state.items():
        hasher.update(name.encode())
        if isinstance(value, Tensor):
            hasher.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            hasher.update(repr(value).encode())
    return hasher.hexdigest()


def _masked_layer_norm(wavs: Tensor, lens: Tensor) -> Tensor:
    """Zero mean, unit variance over each waveform's valid samples (padding stays 0)."""
    mask = length_mask(lens, wavs.shape[1]).to(wavs.dtype)
    count = lens.clamp(min=1).to(wavs.dtype)[:, None]
    mean = (wavs * mask).sum(1, keepdim=True) / count
    var = (((wavs - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + 1e-5) * mask


def _masked_group_norm(x: Tensor, lens: Tensor, norm: nn.GroupNorm) -> Tensor:
    """nn.GroupNorm with one channel per group (the base models' first convolution), over valid frames only."""
    if norm.num_groups != norm.num_channels:
        raise RunFailure(f"group norm with {norm.num_groups} groups over {norm.num_channels} channels is not supported")
    mask = length_mask(lens, x.shape[-1]).unsqueeze(1).to(x.dtype)  # [B, 1, T]
    count = lens.clamp(min=1).to(x.dtype)[:, None, None]
    mean = (x * mask).sum(-1, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(-1, keepdim=True) / count
    y = (x - mean) / torch.sqrt(var + norm.eps)
    if norm.affine:
        y = y * norm.weight[None, :, None] + norm.bias[None, :, None]
    return y


def _leave_out_frozen_weights(module: SSLUpstream, state: dict, prefix: str, _meta) -> dict:
    """State-dict hook: a frozen upstream's weights are replaced by their digest."""
    if module.stored_weights:
        return state
    for key in [k for k in state if k.startswith(prefix + "model.")]:
        del state[key]
    state[prefix + REFERENCE_KEY] = module.weights_digest()
    return state


def _fill_in_frozen_weights(module: SSLUpstream, state: dict, prefix: str, *_args) -> None:
    """Load pre-hook: a state dict that holds the digest, not the weights, keeps the current weights if they match."""
    wanted = state.pop(prefix + REFERENCE_KEY, None)
    if wanted is None:
        return
    have = module.weights_digest()
    if wanted != have:
        raise RunFailure(
            f"the checkpoint was made with a frozen {module.kind} upstream whose weights (sha256 {wanted[:12]}) "
            f"differ from the ones built now ({have[:12]}); use the same build_upstream and pretrained: settings")
    for key, value in module.model.state_dict().items():
        state.setdefault(f"{prefix}model.{key}", value)


@contextlib.contextmanager
def full_state_dict(module: nn.Module):
    """Within it, every SSL upstream in `module` puts its weights in state dicts, frozen or not."""
    upstreams = [m for m in module.modules() if isinstance(m, SSLUpstream)]
    for upstream in upstreams:
        upstream._store_all = True
    try:
        yield
    finally:
        for upstream in upstreams:
            upstream._store_all = False


def expand_references(state: dict, module: nn.Module, what: str, source: Path) -> dict:
    """`state` with each frozen-upstream digest replaced by the matching upstream's weights in `module`
    (a state dict saved with a frozen upstream refers to weights it does not hold)."""
    found = {}
    for key, value in state.items():
        if not key.endswith(REFERENCE_KEY):
            found[key] = value
            continue
        prefix = key[: -len(REFERENCE_KEY)]
        try:
            upstream = module.get_submodule(prefix.rstrip(".")) if prefix else module
        except AttributeError:
            upstream = None
        if not isinstance(upstream, SSLUpstream):
            found[key] = value  # reported as unexpected
            continue
        if upstream.weights_digest() != value:
            raise RunFailure(
                f"{what}: {source} was trained on a frozen upstream whose weights (sha256 {value[:12]}) are not in it "
                f"and differ from this model's ({upstream.weights_digest()[:12]}); load that upstream's weights too "
                "(pretrained.upstream: its pretrained/upstream.ckpt)")
        found.update({f"{prefix}model.{k}": v for k, v in upstream.model.state_dict().items()})
    return found
