"""Feature dumping (dump-feature): SUPERB's feature extraction, s3prl's DumpFeature. No torch at module level.

Stage 0 parses a corpus with the toolkit's own parser (so utterance ids match those of asv, ks,
sid, intent and asr) or a plain list of audio files; stage 1 runs an upstream over every
utterance into large shards plus an index (data/feature_shards.py), on every torchrun rank; stage 2
checks every entry and reports. There is no training stage. Training problems read the dump through
the `precomputed` upstream.
"""
from __future__ import annotations

import importlib
import inspect
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from speechrecipe.config import asset_path
from speechrecipe.fileio import atomic_write_json, digest
from speechrecipe.nn.catalog import SSL, SSL_SAMPLE_RATE, UPSTREAM_NAMES
from speechrecipe.engine.problem import stage
from speechrecipe.engine.recipe import PreparesCorpus
from speechrecipe.errors import ConfigError, DataError
from speechrecipe.progress import progress

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# corpus → (its parser, its bundled mini corpus, parser arguments that differ from the parser's defaults:
# those of the problem that trains on it, so the utterance ids are the same; its list files, relative to
# the corpus root: an edit prepares it again). VoxCeleb1 is parsed by its identification split, which
# lists every utterance, so one dump serves asv and sid.
CORPORA: dict[str, tuple[str, str, dict, tuple[str, ...]]] = {
    "voxceleb1": ("speechrecipe.data.corpora.voxceleb1:prepare_voxceleb1_identification", "mini/voxceleb1", {},
                  ("iden_split.txt",)),
    "librispeech": ("speechrecipe.data.corpora.librispeech:prepare_librispeech", "mini/librispeech/LibriSpeech",
                    {"train_sets": ["train-clean-100"], "valid_sets": ["dev-clean"], "test_sets": ["test-clean", "test-other"]},
                    ()),
    "speech_commands": ("speechrecipe.data.corpora.speech_commands:prepare_speech_commands", "mini/speech_commands",
                        {"words": ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]},
                        ("validation_list.txt", "testing_list.txt")),
    "fluent_speech_commands": ("speechrecipe.data.corpora.fluent_speech_commands:prepare_fluent_speech_commands",
                               "mini/fluent_speech_commands", {},
                               ("data/train_data.csv", "data/valid_data.csv", "data/test_data.csv")),
}
LIST = "list"
# arguments stage 0 sets itself from prepare_data's own keys
OWN_ARGUMENTS = ("root", "out_dir", "strict", "check_audio", "num_workers", "sample_rate")
TIMING = "dump_timing"  # per-shard compute times (not part of the dump: they differ run to run)


class DumpFeature(PreparesCorpus):
    """Run an upstream over a corpus once and keep its features in shards, for training without recomputing them."""

    conf_name = "dump-feature"
    description = "dump upstream features of a corpus into shards + index, for the precomputed upstream"
    choices = {"prepare_data.corpus": (*CORPORA, LIST), "build_upstream.name": UPSTREAM_NAMES,
               "dump.dtype": ("float16", "float32"), "prepare_data.check_audio": ("full", "header")}
    config_sections = ("dump",)
    stage_texts = {0: "parse the corpus (or a list of audio files) into manifests"}


    @stage(1, "dump", "run the upstream over every utterance into shards + index (every torchrun rank dumps its share)",
           uses=("prepare_data", "build_upstream", "dump"), all_ranks=True)
    def dump_stage(self) -> list[Path]:
        from speechrecipe.data import feature_shards as fs
        from speechrecipe.engine import distributed
        from speechrecipe.engine.trainer import seed_everything

        seed_everything(self.conf.seed)
        c, folder = self.conf.dump, fs.dump_folder(self.paths.target_dir)
        upstream, meta = self.dump_upstream()
        rows = self.utterances()
        shards = fs.plan_shards(rows, float(c.shard_secs))
        plan = digest([meta, [[r["id"], r["path"], r.get("start", 0), r["num_frames"]] for r in rows],
                       float(c.shard_secs), float(c.batch_secs)])
        if distributed.world().main:
            self.start_dump(folder, {**meta, "plan": plan})
        distributed.barrier()
        self.dump_share(shards, plan, folder, upstream, meta.get("layers"))
        distributed.barrier()  # every shard is written
        return self.finish_dump(shards, plan, folder) if distributed.world().main else []

    @stage(2, "verify and report", "check every entry (readable, finite, frames match the duration); "
           "summary in results/: utterances, hours, bytes, audio-s/s", role="report")
    def report_stage(self) -> list[Path]:
        from speechrecipe.data.feature_check import check_dump, summarize, write_summary
        from speechrecipe.data.feature_shards import dump_folder

        folder = dump_folder(self.paths.target_dir)
        problems = check_dump(folder)
        if problems:
            raise DataError(f"{folder}: {len(problems)} index entries are unusable (first: {problems[0]}); "
                            f"remove {folder} and run the same command again (stage 1 dumps anew)")
        summary = summarize(folder, self.paths.artifact(TIMING))
        table = write_summary(summary, self.paths.results)
        log.info("results (%s):\n%s", self.paths.results / "README.md", table)
        return [self.paths.results / "results.json"]

    # ----- hooks ---------------------------------------------------------------------------
    def prepare_corpus(self, out_dir: Path) -> dict:
        if self.conf.prepare_data.corpus == LIST:
            from speechrecipe.data.corpora.audio_list import prepare_audio_list

            options = {k: v for k, v in self.corpus_options().items() if k != "root"}
            return prepare_audio_list(self.list_file, out_dir, **options)
        parser, kwargs = self.corpus_parser()
        return parser(out_dir=out_dir, **self.corpus_options(), **kwargs)

    def check_prepared(self, out_dir: Path) -> None:
        """Nothing to check: no metric is computed on a split here (every manifest is dumped, empty or not)."""

    def corpus_options(self) -> dict:
        """As every problem's, with the sample rate from prepare_data (this problem has no build_dataset)."""
        c = self.conf.prepare_data
        return {"root": self.dataset_root, "strict": c.strict, "check_audio": c.check_audio,
                "num_workers": c.num_workers, "sample_rate": c.sample_rate}

    # ----- builders --------------------------------------------------------------------
    def dump_upstream(self) -> tuple["torch.nn.Module", dict]:
        """The module to dump (the configured upstream, or a trained checkpoint's upstream + featurizer),
        in eval mode on this process's device, and the dump's description (features.json)."""
        from speechrecipe.nn.catalog import upstream_options

        checkpoint = self.conf.dump.checkpoint
        if checkpoint:
            from speechrecipe.engine.trained import load_front_end

            module = load_front_end(Path(str(checkpoint)), self)
            name = f"checkpoint {checkpoint}"
        else:
            module = self.build_upstream(self.conf.build_upstream)
            name = str(self.conf.build_upstream.name)
        layers = self.dumped_layers(int(module.num_layers))
        loaded = self.load_pretrained(module)
        module.to(self.device).eval()
        meta = {"upstream": name, "upstream_conf": upstream_options(self.conf.build_upstream), "pretrained": loaded,
                "dtype": str(self.conf.dump.dtype), "sample_rate": int(self.conf.prepare_data.sample_rate),
                "hop_samples": int(module.hop_samples), "win_samples": int(getattr(module, "win_samples", module.hop_samples)),
                "num_layers": len(layers), "output_dim": int(module.output_dim)}
        if self.conf.dump.get("layers") is not None:  # (a dump of every layer describes itself as before)
            meta.update(layers=layers, upstream_num_layers=int(module.num_layers))
            if hasattr(module, "last_layer"):  # an SSL model: the transformer layers after the last one kept are not run
                module.last_layer = max(layers)
                meta["hidden_states_computed"] = max(layers) + 1
        return module, json.loads(json.dumps(meta, default=str))

    def dumped_layers(self, available: int) -> list[int]:
        """dump.layers as indices 0..available-1 in the order given (null: every layer), or a ConfigError naming it."""
        chosen = self.conf.dump.get("layers")
        if chosen is None:
            return list(range(available))
        fix = f"give indices 0..{available - 1} (negative: from the last), each once, or null for all {available}"
        if not OmegaConf.is_list(chosen) or not len(chosen):
            raise ConfigError(f"dump.layers: {chosen!r} is not a list of layers; {fix}")
        found = []
        for layer in chosen:
            if isinstance(layer, bool) or not isinstance(layer, int) or not -available <= layer < available:
                raise ConfigError(f"dump.layers: {layer!r} is not one of this upstream's {available} hidden states; {fix}")
            found.append(layer % available)
        if len(set(found)) != len(found):
            raise ConfigError(f"dump.layers: {list(chosen)} names a layer twice; {fix}")
        return found

    def load_pretrained(self, upstream) -> list[dict]:
        """`pretrained.upstream` (a file, a folder, a Hugging Face model folder: engine/pretrained.py) into the
        upstream to dump, as a training problem loads it; what was loaded goes into features.json."""
        import torch

        from speechrecipe.engine import pretrained

        holder = torch.nn.Module()
        holder.upstream = upstream  # the name a training task gives its upstream, so entries read the same
        report = pretrained.apply(self.conf.get("pretrained"), holder, self.paths.target_dir / "pretrained", self.conf)
        return [{k: entry[k] for k in ("name", "source", "format") if k in entry} for entry in report]

    # ----- helpers -----------------------------------------------------------------------
    def corpus_parser(self):
        """The corpus's parser and its arguments: the defaults above, then prepare_data.conf."""
        c = self.conf.prepare_data
        target, _, defaults, _ = CORPORA[str(c.corpus)]
        module_name, _, function = target.partition(":")
        parser = getattr(importlib.import_module(module_name), function)
        kwargs = {**defaults, **_plain(c.conf)}
        params = inspect.signature(parser).parameters
        if "seed" in params and "seed" not in kwargs:
            kwargs["seed"] = self.conf.seed
        return parser, kwargs

    @property
    def dataset_root(self) -> Path:
        c = self.conf.prepare_data
        if c.corpus == LIST:
            return self.list_file.parent
        if c.dataset_root is None:
            return asset_path(CORPORA[str(c.corpus)][1])
        return super().dataset_root

    @property
    def list_file(self) -> Path:
        return Path(str(self.conf.prepare_data.list_file)).expanduser().resolve()

    def protocol_files(self) -> list[Path]:
        if self.conf.prepare_data.corpus == LIST:
            return [self.list_file]
        listed = [self.dataset_root / name for name in CORPORA[str(self.conf.prepare_data.corpus)][3]]
        iden_split = self.conf.prepare_data.conf.get("iden_split")  # voxceleb1 with another split file
        return [self.dataset_root / str(iden_split)] if iden_split else listed

    def utterances(self) -> list[dict]:
        """Every utterance of every manifest stage 0 wrote, once (an id in two manifests must be the same audio)."""
        from speechrecipe.data.manifest import read_jsonl

        found: dict[str, dict] = {}
        for manifest in sorted(self.paths.cache.glob("*.jsonl")):
            for row in read_jsonl(manifest):
                seen = found.setdefault(row["id"], row)
                if (seen["path"], seen.get("start"), seen["num_frames"]) != (row["path"], row.get("start"), row["num_frames"]):
                    raise DataError(f"{manifest}: utterance id {row['id']!r} names other audio than in another manifest "
                                    f"({seen['path']}); ids must be unique")
        if not found:
            raise DataError(f"stage 0 found no usable audio (see {self.paths.cache / 'bad_audio.tsv'})")
        return list(found.values())

    def start_dump(self, folder: Path, meta: dict) -> None:
        """Rank 0, before anyone dumps: describe the dump; the index goes until the dump is complete again."""
        from speechrecipe.data import feature_shards as fs

        folder.mkdir(parents=True, exist_ok=True)
        (folder / fs.INDEX).unlink(missing_ok=True)
        atomic_write_json(folder / fs.META, meta)

    def dump_share(self, shards: list[list[dict]], plan: str, folder: Path, upstream, layers: list[int] | None) -> None:
        """This process's shards (k ≡ rank mod world size) not yet done under `plan`: the upstream's `layers` (None:
        all)."""
        from speechrecipe.data.feature_dump import dump_shard
        from speechrecipe.data.feature_shards import finished_shard
        from speechrecipe.engine import distributed

        world, c = distributed.world(), self.conf.dump
        mine = [k for k in range(len(shards)) if k % world.size == world.rank]
        todo = [k for k in mine if finished_shard(folder, k, plan) is None]
        log.info("%d shards of %d utterances; this process dumps %d (%d already done)",
                 len(shards), sum(map(len, shards)), len(todo), len(mine) - len(todo))
        for k in progress(todo, desc=f"dump (rank {world.rank})" if world.distributed else "dump", unit="shard"):
            timing = dump_shard(shards[k], k, folder, upstream, str(c.dtype), float(c.batch_secs),
                                int(self.conf.prepare_data.sample_rate), plan, self.device, layers)
            self.write_timing(k, {**timing, "rank": world.rank})

    def finish_dump(self, shards: list[list[dict]], plan: str, folder: Path) -> list[Path]:
        """Rank 0, once every shard is written: the index, and no shard left from an earlier, larger plan."""
        from speechrecipe.data import feature_shards as fs

        entries = [e for k in range(len(shards)) for e in fs.finished_shard(folder, k, plan)]
        for stray in fs.shard_files(folder)[len(shards):]:
            for path in (stray, stray.with_suffix(".json"), self.paths.artifact(TIMING) / f"{stray.stem}.json"):
                path.unlink(missing_ok=True)
        log.info("dumped %d utterances into %d shards in %s", len(entries), len(shards), folder)
        return [fs.write_index(folder, entries), folder / fs.META]

    def write_timing(self, number: int, timing: dict) -> None:
        from speechrecipe.data.feature_shards import shard_name

        atomic_write_json(self.paths.artifact(TIMING) / f"{shard_name(number)}.json", timing)

    def check_config(self) -> None:
        super().check_config()
        c = self.conf.prepare_data
        if c.corpus == LIST:
            if not c.list_file or not self.list_file.is_file():
                raise ConfigError(f"prepare_data.list_file: {c.list_file} is not a file; with prepare_data.corpus=list "
                                  "give a text file naming one audio file per line")
        else:
            self.check_parser_arguments()
        if self.conf.build_upstream.name in SSL and c.sample_rate != SSL_SAMPLE_RATE:
            raise ConfigError(f"prepare_data.sample_rate: {c.sample_rate}; {self.conf.build_upstream.name} takes "
                              f"{SSL_SAMPLE_RATE} Hz audio, set prepare_data.sample_rate={SSL_SAMPLE_RATE}")
        if self.conf.dump.checkpoint and not Path(str(self.conf.dump.checkpoint)).is_file():
            raise ConfigError(f"dump.checkpoint: {self.conf.dump.checkpoint} is not a checkpoint file "
                              "(give a step-N.ckpt or valid_best.ckpt of another target_dir, or null)")
        if self.conf.dump.get("layers") is not None and not self.conf.dump.checkpoint:
            # the upstream's layer count, before stage 0 (building it loads no weights)
            self.dumped_layers(int(self.build_upstream(self.conf.build_upstream).num_layers))

    def check_parser_arguments(self) -> None:
        """prepare_data.conf: only arguments the corpus's parser takes, and every one it needs."""
        import difflib

        parser, kwargs = self.corpus_parser()
        params = inspect.signature(parser).parameters
        allowed = [p for p in params if p not in OWN_ARGUMENTS]
        for key in _plain(self.conf.prepare_data.conf):
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]}?" if close else f"it takes {', '.join(allowed)}"
                own = f" (set prepare_data.{key} instead)" if key in OWN_ARGUMENTS else ""
                raise ConfigError(f"prepare_data.conf.{key}: not an option of the {self.conf.prepare_data.corpus} "
                                  f"parser{own}; {hint}")
        needed = [p for p, v in params.items() if v.default is inspect.Parameter.empty
                  and p not in OWN_ARGUMENTS and p not in kwargs]
        if needed:
            raise ConfigError(f"prepare_data.conf: the {self.conf.prepare_data.corpus} parser needs "
                              f"{', '.join(needed)}; set prepare_data.conf.{needed[0]}=...")


def _plain(section) -> dict:
    return OmegaConf.to_container(section, resolve=True) if section is not None else {}
