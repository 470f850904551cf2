"""The keys under which a batch carries the upstream's input: waveforms, or features dumped by dump-feature.
Imports nothing heavy."""
from __future__ import annotations

WAVEFORMS = ("wavs", "wav_lens")  # [B, samples] and each one's length in samples
FEATURES = ("feats", "feat_lens")  # [B, frames, layers, dim] and each one's length in frames (`precomputed`)
# the upstream whose input is features dumped by dump-feature (asv, ks, sid, intent); options in build_upstream.precomputed
PRECOMPUTED = "precomputed"


def upstream_input(batch: dict) -> tuple:
    """(input, lengths) for the upstream: dumped features where the batch has them, else waveforms."""
    data, lengths = FEATURES if FEATURES[0] in batch else WAVEFORMS
    return batch[data], batch[lengths]
