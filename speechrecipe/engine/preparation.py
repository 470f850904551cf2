"""Stage 0's body: a corpus parsed into a cache folder, reused while it is complete and the corpus unchanged.

A mixin of Problem (engine/problem.py); the hooks it calls (prepare_corpus, protocol_files, check_prepared) are
the contract's.
Imports no torch.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


class CorpusPreparation:
    """prepare_corpus_cached (the "prepare" stage) and what the runner asks of the prepared corpus."""

    def prepare_cached(self, prepare: Callable[[Path], dict]) -> list[Path]:
        """Run prepare(out_dir) into a fresh cache folder, unless already there.

        prepare writes into the cache folder itself, so the paths it logs (bad_audio.tsv) are where the
        files stay; summary.json, written last and atomically, marks the folder complete.
        """
        from speechrecipe.data import corpus_state
        from speechrecipe.engine.cache import exclusive_use, mark_complete
        from speechrecipe.engine.checkpoint import write_text_atomic

        cache = self.paths.cache
        if self.redoing("prepare"):
            log.info("--redo: preparing %s again", cache)
        if not self.redoing("prepare") and self._cache_reusable():
            log.info("prepared data found in cache %s; reusing it", cache)
        else:
            with exclusive_use(self.cache_lease, "it is incomplete, or the corpus or config changed"):
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir(parents=True)
                summary = prepare(cache)
                corpus_state.record(cache, self.protocol_files(), self.dataset_root)
                mark_complete(cache)
                write_text_atomic(cache / "summary.json", json.dumps(summary, indent=1, default=str))
            log.info("prepared data in %s: %s", cache, json.dumps(summary, default=str))
        return sorted(p for p in cache.iterdir() if p.suffix in (".jsonl", ".tsv"))

    def shared_cache_folders(self) -> list[str]:
        """Folders of the problem's cache, besides its prepared folder, that a run reads (a corpus built on first
        use, shared by prepared folders): the runner leases them too, so --clear-cache keeps them while it runs."""
        return []

    def _cache_reusable(self) -> bool:
        """A complete cache folder made from the corpus as it is now."""
        from speechrecipe.data import corpus_state

        from speechrecipe.engine.cache import incomplete

        cache = self.paths.cache
        if not (cache / "summary.json").is_file():
            return False
        missing = incomplete(cache)
        if missing:
            log.info("cache folder %s is incomplete (%s); preparing it again", cache, "; ".join(missing))
            return False
        state = corpus_state.recorded(cache)
        if state is None:  # prepared before corpus.json existed: watch the corpus from now on
            corpus_state.record(cache, self.protocol_files(), self.dataset_root)
            return True
        why = corpus_state.changes(state)
        if why:
            log.info("the corpus changed since it was prepared (%s); preparing it again", "; ".join(why))
        return not why

    @property
    def dataset_root(self) -> Path:
        return Path(str(self.conf.prepare_data.dataset_root)).expanduser().resolve()

    def corpus_digest(self, file_digest: Callable[[Path], str] | None = None) -> str | None:
        """The prepared corpus's files and folders as they are now (None: not prepared yet);
        `file_digest` hashes a protocol file (the runner's, which hashes each version once)."""
        from speechrecipe.data import corpus_state

        if not (self.paths.cache / "summary.json").is_file():
            return None
        return corpus_state.digest_now(corpus_state.recorded(self.paths.cache), file_digest)

    def corpus_options(self) -> dict[str, Any]:
        """The stage-0 options every corpus parser takes, from prepare_data and build_dataset."""
        c = self.conf.prepare_data
        return {"root": self.dataset_root, "strict": c.strict, "check_audio": c.check_audio,
                "num_workers": c.num_workers, "sample_rate": self.conf.build_dataset.sample_rate}

    def prepare_corpus_cached(self) -> list[Path]:
        """Stage "prepare": prepare_corpus into the cache unless a complete, current copy is there; a split
        that cannot define its metric is refused (check_prepared), whether prepared now or earlier."""
        files = self.prepare_cached(self.prepare_corpus)
        self.check_prepared(self.paths.cache)
        return files

