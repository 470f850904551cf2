"""Stage 2 of dump-feature: check every entry of a dump, and summarise it for people and programs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from speechrecipe.data.feature_shards import FeatureShards, shard_files, shard_name, total_bytes
from speechrecipe.fileio import atomic_write_json, atomic_write_text

FRAME_SLACK = 1  # frames an upstream may differ from floor((samples - window) / hop) + 1


def expected_frames(num_samples: int, meta: dict) -> int:
    return max(0, (num_samples - meta["win_samples"]) // meta["hop_samples"] + 1)


def check_dump(folder: Path) -> list[str]:
    """One line per unusable entry (unreadable, non-finite, wrong shape or frame count); empty when all are fine."""
    shards = FeatureShards.open(folder, key="dump")
    meta, problems = shards.meta, []
    covered: dict[int, int] = {}
    for utt, entry in shards.entries.items():
        frames, layers, dim = entry["shape"]
        if (layers, dim, entry["dtype"]) != (meta["num_layers"], meta["output_dim"], meta["dtype"]):
            problems.append(f"{utt}: shape {entry['shape']} {entry['dtype']} is not [frames, {meta['num_layers']}, "
                            f"{meta['output_dim']}] {meta['dtype']}")
            continue
        if abs(frames - expected_frames(entry["num_samples"], meta)) > FRAME_SLACK:
            problems.append(f"{utt}: {frames} frames for {entry['num_samples']} samples "
                            f"(expected {expected_frames(entry['num_samples'], meta)})")
        try:
            if not np.isfinite(shards.get(utt)).all():
                problems.append(f"{utt}: non-finite values")
        except Exception as err:  # a short or unreadable shard
            problems.append(f"{utt}: unreadable ({err})")
        covered[entry["shard"]] = covered.get(entry["shard"], 0) + frames * layers * dim * np.dtype(entry["dtype"]).itemsize
    for number, size in covered.items():
        actual = (folder / f"{shard_name(number)}.bin").stat().st_size
        if actual != size:
            problems.append(f"{shard_name(number)}.bin: {actual} bytes, its entries {size}")
    return problems


def summarize(folder: Path, timing_dir: Path) -> dict:
    """Utterances, audio hours, bytes, shards; audio-s/s of the dump's compute (per process: the shards' own times)."""
    shards = FeatureShards.open(folder, key="dump")
    rate = shards.meta["sample_rate"]
    audio = sum(e["num_samples"] for e in shards.entries.values()) / rate
    timings = [json.loads(p.read_text()) for p in sorted(Path(timing_dir).glob("shard-*.json"))]
    seconds = sum(t["seconds"] for t in timings)
    return {"utterances": len(shards.entries), "hours": audio / 3600, "bytes": total_bytes(folder),
            "shards": len(shard_files(folder)), "frames": sum(e["shape"][0] for e in shards.entries.values()),
            "audio_s_per_s": sum(t["audio_seconds"] for t in timings) / seconds if seconds else None,
            **{k: shards.meta[k] for k in ("upstream", "dtype", "num_layers", "output_dim", "sample_rate", "hop_samples")},
            "folder": str(folder)}


def write_summary(summary: dict, results: Path) -> str:
    """results.json and README.md; returns the Markdown table."""
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "results.json", summary)
    speed = summary["audio_s_per_s"]
    rows = [("upstream", summary["upstream"]), ("utterances", f"{summary['utterances']:,}"),
            ("audio", f"{summary['hours']:.3f} h"), ("frames", f"{summary['frames']:,}"),
            ("features", f"{summary['num_layers']} layer(s) × {summary['output_dim']} {summary['dtype']}"),
            ("bytes", f"{summary['bytes']:,} in {summary['shards']} shards"),
            ("dump speed", f"{speed:,.0f} audio-s/s per process" if speed else "—"), ("folder", summary["folder"])]
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    atomic_write_text(results / "README.md", f"# Feature dump\n\n{table}\n")
    return table
