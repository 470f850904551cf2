"""Computing one shard of a feature dump: read its audio, run the upstream in fixed batches, write.

Audio of the next batches is read in a background thread while the upstream runs on this one.
The batches of a shard depend only on its rows (feature_shards.batches_of), so a shard has the
same bytes whichever process computes it, and whenever.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from speechrecipe.data.audio import read_audio
from speechrecipe.data.feature_shards import ShardWriter, audio_source, batches_of, row_seconds
from speechrecipe.data.preprocessors import pad_waveforms
from speechrecipe.data.prefetch import Prefetch
from speechrecipe.errors import DataError


def read_row(row: dict, sample_rate: int) -> torch.Tensor:
    """A manifest row's audio (its `start`/`num_frames` span when it has one), or a DataError naming the file."""
    try:
        return read_audio(row["path"], int(row.get("start", 0)), int(row["num_frames"]), sample_rate)
    except (RuntimeError, OSError) as err:  # soundfile's errors derive from these
        raise DataError(f"{row['path']}: cannot be read any more ({err}); it was readable when stage 0 ran: "
                        "fix the file or run with --start 0 to check the corpus again") from None


def _read_batches(batches: list[list[dict]], sample_rate: int) -> Iterator[tuple[list[dict], torch.Tensor, torch.Tensor]]:
    for rows in batches:
        wavs, lens = pad_waveforms([read_row(row, sample_rate) for row in rows])
        yield rows, wavs, lens


def layers_of(upstream: nn.Module, wavs: torch.Tensor, lens: torch.Tensor,
              layers: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The upstream's layers (those listed, in that order; None: all) stacked as [B, frames, layers, dim], and the
    frame counts."""
    hidden, feat_lens = upstream(wavs, lens)
    return torch.stack(hidden if layers is None else [hidden[i] for i in layers], dim=2), feat_lens


def dump_shard(rows: list[dict], number: int, folder: Path, upstream: nn.Module, dtype: str, batch_secs: float,
               sample_rate: int, plan: str, device: str = "cpu", layers: list[int] | None = None) -> dict:
    """Write shard `number` of `rows` (the upstream's `layers`; None: all); returns its timing ({"seconds",
    "audio_seconds"})."""
    began = time.perf_counter()
    writer = ShardWriter(folder, number, dtype)
    torch_dtype = getattr(torch, dtype)
    batches = Prefetch(_read_batches(batches_of(rows, batch_secs), sample_rate), 2)
    try:
        with torch.inference_mode():
            for batch_rows, wavs, lens in batches:
                feats, feat_lens = layers_of(upstream, wavs.to(device), lens.to(device), layers)
                feats = feats.to(torch_dtype).cpu().numpy()
                for i, row in enumerate(batch_rows):
                    writer.add(row["id"], feats[i, : int(feat_lens[i])], int(lens[i]), audio_source(row))
    except BaseException:
        writer.abort()
        raise
    finally:
        batches.close()
    writer.close(plan)
    return {"seconds": time.perf_counter() - began, "audio_seconds": sum(row_seconds(r) for r in rows)}
