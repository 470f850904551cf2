"""A trained experiment's front end (upstream + featurizer) as an upstream of one layer, for dump-feature."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf
from torch import Tensor, nn

from speechrecipe.errors import ConfigError


class TrainedFrontEnd(nn.Module):
    """upstream → featurizer of a checkpoint: waveforms → ([its features], frame counts)."""

    num_layers = 1

    def __init__(self, upstream: nn.Module, featurizer: nn.Module):
        super().__init__()
        self.upstream, self.featurizer = upstream, featurizer
        self.output_dim = featurizer.output_dim
        self.sample_rate, self.hop_samples = upstream.sample_rate, upstream.hop_samples
        self.win_samples = getattr(upstream, "win_samples", upstream.hop_samples)

    def forward(self, wavs: Tensor, wav_lens: Tensor) -> tuple[list[Tensor], Tensor]:
        hidden, lens = self.upstream(wavs, wav_lens)
        feats, lens = self.featurizer(hidden, lens)
        return [feats], lens


def load_front_end(checkpoint: Path, problem) -> TrainedFrontEnd:
    """Build the checkpoint's upstream and featurizer with `problem`'s builders from its target_dir's
    config.yaml (checkpoints/ sits in target_dir), and load their trained weights."""
    from speechrecipe.engine.checkpoint import load

    config_file = Path(checkpoint).resolve().parent.parent / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"dump.checkpoint: {checkpoint} is not in <target_dir>/checkpoints/ next to a config.yaml; "
                          "give a checkpoint of a speechrecipe experiment")
    conf = OmegaConf.load(config_file)
    if "build_featurizer" not in conf or "build_upstream" not in conf:
        raise ConfigError(f"dump.checkpoint: {config_file} has no build_upstream/build_featurizer sections")
    upstream = problem.build_upstream(conf.build_upstream)
    if upstream.sample_rate != int(problem.conf.prepare_data.sample_rate):
        raise ConfigError(f"dump.checkpoint: it was trained at {upstream.sample_rate} Hz; "
                          f"set prepare_data.sample_rate={upstream.sample_rate}")
    front = TrainedFrontEnd(upstream, problem.build_featurizer(conf.build_featurizer, upstream))
    model = load(Path(checkpoint))["model"]
    state = {k: v for k, v in model.items() if k.split(".")[0] in ("upstream", "featurizer")}
    front.load_state_dict(state)
    return front
