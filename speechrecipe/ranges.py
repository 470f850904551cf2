"""The allowed range of every numeric config key: the one place to declare them. Imports no torch.

Adding a numeric key to a conf/*.yaml? Add its range to RANGES below (tests/test_ranges.py fails
until you do). A problem outside the package with keys of its own declares their ranges in its
class: `value_ranges = {"build_downstream.width": "[1, inf)"}` (they win over RANGES).

A range is an interval: `[` / `]` include the bound, `(` / `)` exclude it, `inf` is unbounded;
add ` or null` where null is a meaningful value. A list of numbers is checked element by element.
A key a problem's config does not have is skipped, so one table serves every problem.

A list-valued key where an empty list means nothing (a grid to tune over, the test sets, the words to
recognise) is in NONEMPTY, with what to give instead; one where empty is meaningful (no top-k accuracy) in
MAY_BE_EMPTY. tests/test_ranges.py fails until every list key of conf/*.yaml is in one of them. A problem
outside the package adds its own in its class: `nonempty_lists = {"build_downstream.widths": "give one width"}`.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

from speechrecipe.errors import ConfigError

COUNT = "[1, inf)"  # a whole number of things, at least one
COUNT0 = "[0, inf)"  # a whole number of things, possibly none
POSITIVE = "(0, inf)"
NONNEGATIVE = "[0, inf)"
PROBABILITY = "[0, 1]"
ANY = "(-inf, inf)"

RANGES: dict[str, str] = {
    "seed": "[0, 4294967295]",  # numpy's seed range
    # prepare_data (stage 0)
    "prepare_data.num_workers": COUNT0,
    "prepare_data.seed": "[0, 4294967295]",
    "prepare_data.valid_fraction": "(0, 1)",
    "prepare_data.valid_count": f"{COUNT} or null",
    "prepare_data.num_valid_trials": COUNT,
    "prepare_data.silence_fraction": PROBABILITY,
    "prepare_data.unknown_fraction": f"{NONNEGATIVE} or null",  # ks: `_unknown_` clips per command-word clip
    "prepare_data.silence_secs": POSITIVE,
    "prepare_data.sample_rate": COUNT,  # dump-feature (the training problems take build_dataset.sample_rate)
    # dump-feature, stage 1
    "dump.shard_secs": POSITIVE,
    "dump.batch_secs": POSITIVE,
    # stage 1
    "build_tokenizer.vocab_size": COUNT,
    # data
    "build_dataset.sample_rate": COUNT,
    "build_dataset.crop_secs": POSITIVE,
    "build_dataset.max_secs": f"{POSITIVE} or null",
    "build_dataset.augment.speeds": POSITIVE,
    "build_dataset.augment.noise_prob": PROBABILITY,
    "build_dataset.augment.snr_db": ANY,
    "build_dataset.augment.reverb_prob": PROBABILITY,
    "build_dataset.augment.shift_ms": NONNEGATIVE,  # ks: time shift either way
    "build_dataset.augment.noise_volume": NONNEGATIVE,  # ks: gain of the background noise, of full scale
    "build_batch_sampler.batch_size": COUNT,
    "build_batch_sampler.max_batch_secs": POSITIVE,
    "build_batch_sampler.eval_batch_secs": POSITIVE,
    # model
    "build_upstream.fbank.n_mels": COUNT,
    "build_upstream.fbank.win_ms": POSITIVE,
    "build_upstream.fbank.hop_ms": POSITIVE,
    "build_upstream.mfcc.n_mfcc": COUNT,
    "build_upstream.mfcc.n_mels": COUNT,
    "build_upstream.mfcc.win_ms": POSITIVE,
    "build_upstream.mfcc.hop_ms": POSITIVE,
    "build_upstream.ssl.finetune_after": COUNT0,  # updates
    "build_upstream.ssl.init_seed": "[0, 4294967295]",
    "build_featurizer.layer_selection": f"{ANY} or null",  # negative counts from the last layer
    "build_downstream.hidden_dim": COUNT,
    "build_downstream.num_layers": COUNT,
    "build_downstream.dropout": "[0, 1)",
    "build_downstream.subsample": COUNT,
    "build_downstream.probe.hidden_dim": COUNT,  # ks, sid, intent: SUPERB's probe (nn/classifiers.py)
    "build_downstream.tcresnet.depth": "[8, 14]",  # 8 or 14 (TCResNet refuses others, naming them)
    "build_downstream.tcresnet.width": POSITIVE,
    "build_downstream.tcresnet.dropout": "[0, 1)",
    "build_downstream.bcresnet.scale": POSITIVE,
    "build_downstream.bcresnet.dropout": "[0, 1)",
    "build_downstream.conformer.num_heads": COUNT,
    "build_downstream.conformer.ffn_dim": COUNT,
    "build_downstream.conformer.conv_kernel_size": COUNT,
    "build_downstream.xvector.channels": COUNT,
    "build_downstream.xvector.stats_channels": COUNT,
    "build_downstream.xvector.embedding_dim": COUNT,
    "build_downstream.xvector.dropout": "[0, 1)",
    "build_downstream.ecapa.channels": COUNT,
    "build_downstream.ecapa.embedding_dim": COUNT,
    "build_downstream.ecapa.scale": "[2, inf)",  # Res2Net channel groups
    "build_downstream.ecapa.se_channels": COUNT,
    "build_downstream.ecapa.attention_dim": COUNT,
    # task
    "build_task.margin": NONNEGATIVE,
    "build_task.scale": POSITIVE,
    "build_task.specaugment.freq_mask_bins": COUNT0,
    "build_task.specaugment.num_freq_masks": COUNT0,
    "build_task.specaugment.time_mask_frames": COUNT0,
    "build_task.specaugment.num_time_masks": COUNT0,
    "build_task.specaugment.time_mask_max_ratio": PROBABILITY,
    # optimizer and scheduler (whatever class `name` chooses)
    "build_optimizer.conf.lr": NONNEGATIVE,  # 0: an untrained baseline
    "build_optimizer.conf.weight_decay": NONNEGATIVE,
    "build_scheduler.conf.step_size": COUNT,
    "build_scheduler.conf.gamma": "(0, 1]",
    "build_scheduler.conf.max_lr": POSITIVE,  # OneCycleLR
    "build_scheduler.conf.total_steps": COUNT,
    "build_scheduler.conf.pct_start": "(0, 1)",
    # training (stage 2)
    "train.total_steps": COUNT,
    "train.log_step": COUNT,
    "train.eval_step": COUNT,
    "train.save_step": COUNT,
    "train.gradient_clipping": NONNEGATIVE,  # 0 disables
    "train.gradient_accumulate": COUNT,
    "train.seed": "[0, 4294967295]",
    "train.keep_num_ckpts": COUNT0,  # 0 keeps all
    "train.max_nonfinite_updates": COUNT,
    "train.max_wall_secs": f"{POSITIVE} or null",
    "train.num_workers": COUNT0,
    "train.prefetch_batches": COUNT0,
    # evaluation (stage 3)
    "evaluate.beam_size": COUNT,
    "evaluate.lm.weight": NONNEGATIVE,
    "evaluate.lm.word_score": ANY,
    "evaluate.lm.beam_size": COUNT,
    "evaluate.asnorm_top_n": COUNT,
    "evaluate.asnorm_cohort_per_speaker": COUNT,
    "evaluate.top_k": COUNT,
    # report (stage 4): 0 resamples turns the intervals off
    "report.resamples": COUNT0,
    "report.seed": "[0, 4294967295]",
    # asv: s3prl-like crops and duration-bucketed batches
    "build_dataset.min_secs": NONNEGATIVE,
    "build_batch_sampler.bucket_batches": COUNT,
    # diarization
    "prepare_data.mini.seed": "[0, 4294967295]",
    "prepare_data.mini.recordings.train": COUNT,
    "prepare_data.mini.recordings.dev": COUNT,
    "prepare_data.mini.recordings.test": COUNT,
    "prepare_data.mini.utterances_per_recording": "[2, inf)",  # turns alternate between two speakers
    "prepare_data.mini.overlap_ratio": PROBABILITY,
    "prepare_data.mini.pause_secs": NONNEGATIVE,
    "build_encoder.num_speakers": COUNT,
    "build_dataset.chunk_secs": POSITIVE,
    "evaluate.chunk_secs": POSITIVE,
    "evaluate.chunk_overlap_secs": NONNEGATIVE,
    "evaluate.threshold": "(0, 1)",
    "evaluate.median_frames": COUNT,
    "evaluate.collar_secs": NONNEGATIVE,
    "evaluate.tune.thresholds": "(0, 1)",
    "evaluate.tune.median_frames": COUNT,
}

# {list key: what to give}: an empty list is refused before any stage, in one line naming the key
NONEMPTY: dict[str, str] = {
    "prepare_data.train_sets": "name at least one training set",  # asr
    "prepare_data.valid_sets": "name at least one validation set",  # asr
    "prepare_data.test_sets": "name at least one test set",  # asr, asv
    "prepare_data.test_splits": "name at least one test split",  # diarization
    "prepare_data.words": "give at least one word to recognise",  # ks
    "prepare_data.mini.pause_secs": "use [min, max] seconds",  # diarization's mini corpus
    "build_encoder.fields": "name at least one manifest field to classify",  # ks, sid, intent
    "build_dataset.augment.speeds": "give at least one speed (1.0: unchanged), or set build_dataset.augment.speed_perturb=false",
    "build_dataset.augment.snr_db": "use [min, max] dB",  # asv's noise augmentation
    "evaluate.test_ckpt_steps": "name at least one checkpoint (valid_best, last or step-N)",
    "evaluate.tune.thresholds": "give at least one threshold to tune on dev (or evaluate.tune.apply=false)",
    "evaluate.tune.median_frames": "give at least one median filter length to tune on dev (or evaluate.tune.apply=false)",
}
# list keys where [] means something
MAY_BE_EMPTY: dict[str, str] = {
    "evaluate.top_k": "no top-k accuracy",  # ks, sid, intent
}

_INTERVAL = re.compile(r"\s*([\[(])\s*([^,\s]+)\s*,\s*([^\])\s]+)\s*([\])])\s*(or null)?\s*")


def ranges_for(problem_class: type) -> dict[str, str]:
    """RANGES plus the `value_ranges` of the problem's class hierarchy (nearest class wins)."""
    merged = dict(RANGES)
    for klass in reversed(problem_class.__mro__):
        merged.update(vars(klass).get("value_ranges", {}))
    return merged


def _bound(text: str, spec: str) -> float:
    try:
        return float(text)  # "inf", "-inf" included
    except ValueError:
        raise ValueError(f"range {spec!r}: {text!r} is not a number") from None


def parse_range(spec: str) -> tuple[float, bool, float, bool, bool]:
    """(low, low included, high, high included, null allowed) of an interval like "[1, inf) or null"."""
    match = _INTERVAL.fullmatch(spec)
    if not match:
        raise ValueError(f"range {spec!r}: expected an interval such as [1, inf), (0, 1] or [0, inf) or null")
    left, low, high, right, null = match.groups()
    return _bound(low, spec), left == "[", _bound(high, spec), right == "]", bool(null)


def in_range(value: Any, spec: str) -> bool:
    """Whether `value` (a number, a list of numbers, or None) lies in the range `spec`."""
    low, low_in, high, high_in, null_ok = parse_range(spec)
    if value is None:
        return null_ok
    values = value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or math.isnan(item):
            return False
        if item < low or (item == low and not low_in) or item > high or (item == high and not high_in):
            return False
    return True


def check_ranges(flat: Mapping[str, Any], ranges: Mapping[str, str]) -> None:
    """Raise ConfigError naming the first key of `flat` ({dotted key: value}) outside its range."""
    for key, value in flat.items():
        spec = ranges.get(key)
        if spec is not None and not in_range(value, spec):
            what = "null is not allowed" if value is None else f"{value!r} is out of range"
            raise ConfigError(f"{key}: {what}; expected a value in {spec}")


def nonempty_for(problem_class: type) -> dict[str, str]:
    """NONEMPTY plus the `nonempty_lists` of the problem's class hierarchy."""
    merged = dict(NONEMPTY)
    for klass in reversed(problem_class.__mro__):
        merged.update(vars(klass).get("nonempty_lists", {}))
    return merged


def check_nonempty(flat: Mapping[str, Any], nonempty: Mapping[str, str]) -> None:
    """Raise ConfigError naming the first key of `flat` that holds an empty list where one value is needed."""
    for key, value in flat.items():
        if key in nonempty and isinstance(value, (list, tuple)) and not value:
            raise ConfigError(f"{key}: [] is empty; {nonempty[key]}")
