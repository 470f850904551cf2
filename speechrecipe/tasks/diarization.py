"""The diarization task (upstream → featurizer → frame tagger, permutation-invariant BCE) and
whole-recording inference: overlapping chunks, speaker order stitched across them, median filter,
threshold, segments."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from speechrecipe.data.batch_keys import upstream_input
from speechrecipe.data.diarization_chunks import FrameGrid
from speechrecipe.data.rttm import Segment
from speechrecipe.metrics.assignment import min_cost_assignment
from speechrecipe.nn.pit import pit_bce


class DiarizationTask(nn.Module):
    """forward(batch) is the train step (PIT BCE); test_step gives per-frame speaker probabilities."""

    def __init__(self, upstream: nn.Module, featurizer: nn.Module, downstream: nn.Module):
        super().__init__()
        self.upstream, self.featurizer, self.downstream = upstream, featurizer, downstream

    def logits(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, F, speakers] logits, [B] valid frames)."""
        hidden, lens = self.upstream(wavs, wav_lens)
        feats, lens = self.featurizer(hidden, lens)
        return self.downstream(feats, lens)

    def forward(self, batch: dict) -> dict:
        logits, lens = self.logits(*upstream_input(batch))
        frames = min(logits.shape[1], batch["labels"].shape[1])
        lens = torch.minimum(lens, batch["label_lens"]).clamp(max=frames)
        loss, _ = pit_bce(logits[:, :frames], batch["labels"][:, :frames], lens)
        return {"loss": loss}

    def test_step(self, batch: dict) -> dict:
        logits, lens = self.logits(*upstream_input(batch))
        return {"ids": batch["ids"], "probs": torch.sigmoid(logits.float()), "lens": lens}


def plan_chunks(total_samples: int, chunk_samples: int, overlap_samples: int, hop_samples: int) -> list[int]:
    """Chunk start samples covering a recording; the step is a whole number of frames so every
    chunk's frames fall on the recording's frame grid."""
    step = max(hop_samples, (chunk_samples - overlap_samples) // hop_samples * hop_samples)
    starts = [0]
    while starts[-1] + chunk_samples < total_samples:
        starts.append(starts[-1] + step)
    return starts


def stitch(chunks: list[tuple[int, np.ndarray]], total_frames: int) -> np.ndarray:
    """[total_frames, S] probabilities from (first frame, probs [f, S]) chunks in time order.

    Each chunk's speaker order is first matched to what is stitched so far on the frames they share
    (the assignment with the least absolute difference, exact for any S), then overlapping frames
    are averaged.
    """
    speakers = chunks[0][1].shape[1]
    total = np.zeros((total_frames, speakers))
    count = np.zeros(total_frames)
    for first, probs in chunks:
        frames = max(0, min(len(probs), total_frames - first))
        probs, span = probs[:frames], slice(first, first + frames)
        seen = count[span] > 0
        if seen.any():
            before = total[span][seen] / count[span][seen, None]
            now = probs[seen]
            cost = np.abs(before[:, :, None] - now[:, None, :]).sum(axis=0)  # [stitched speaker, chunk speaker]
            order = [j for _, j in min_cost_assignment(cost.tolist())]
            probs = probs[:, order]
        total[span] += probs
        count[span] += 1
    return total / np.maximum(count, 1)[:, None]


def median_filter(active: np.ndarray, width: int) -> np.ndarray:
    """Median of a 0/1 [F, S] array over `width` frames (odd) along time, zero-padded at the ends
    like scipy.signal.medfilt."""
    if width <= 1:
        return active
    half = width // 2
    padded = np.pad(active.astype(np.int64), ((half + 1, half), (0, 0)))
    sums = np.cumsum(padded, axis=0)
    window = sums[width:] - sums[:-width]
    return (window > half).astype(active.dtype)


def to_segments(probs: np.ndarray, grid: FrameGrid, threshold: float, median_width: int) -> list[Segment]:
    """Speaker segments (named spk0, spk1, ...) of per-frame probabilities [F, S]."""
    active = median_filter((probs > threshold).astype(np.int8), median_width)
    segments = []
    for speaker in range(active.shape[1]):
        edges = np.flatnonzero(np.diff(np.pad(active[:, speaker], 1)))
        for start, end in zip(edges[::2], edges[1::2]):
            segments.append((grid.frame_start_secs(int(start)), grid.frame_start_secs(int(end)), f"spk{speaker}"))
    return sorted(segments)
