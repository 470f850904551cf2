"""Tokenizers for CTC: text ↔ token ids, index 0 the CTC blank. Saved as JSON; imports no torch.

- char: the characters of the training transcripts, the space written as "|" (word boundary).
- word: the `vocab_size` most frequent training words, others map to <unk>.
- subword: a sentencepiece model (unigram or bpe) trained on the training transcripts; needs
  the optional `sentencepiece` package (`pip install 'speechrecipe[subword]'`). Its model is
  stored inside the JSON, base64-encoded, so one file holds the tokenizer.

Text is normalised by collapsing whitespace; case is kept (LibriSpeech is in capitals).
"""
from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path
from typing import Iterable

from speechrecipe.errors import ConfigError, DataError
from speechrecipe.fileio import atomic_write_text

BLANK = "<blank>"
UNK = "<unk>"
SPACE = "|"
KINDS = ("char", "word", "subword")


def normalize(text: str) -> str:
    return " ".join(text.split())


def require_sentencepiece():
    """The sentencepiece module, or a ConfigError saying how to install it."""
    try:
        import sentencepiece
    except ImportError:
        raise ConfigError("build_tokenizer.kind=subword needs sentencepiece: "
                          "pip install 'speechrecipe[subword]' (or pip install sentencepiece)") from None
    return sentencepiece


class Tokenizer:
    """A token list whose index 0 is the blank; subclasses split and join text."""

    kind = ""

    def __init__(self, tokens: list[str]):
        if not tokens or tokens[0] != BLANK:
            raise DataError(f"a tokenizer's first token must be {BLANK}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        unk = self.index.get(UNK)
        ids = [self.index.get(piece, unk) for piece in self.split(normalize(text))]
        return [i for i in ids if i is not None]  # char: unseen characters are dropped

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids (blanks and repeats already removed) → text; blanks are skipped."""
        return normalize(self.join([self.tokens[i] for i in ids if i != 0]))

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def join(self, pieces: list[str]) -> str:
        raise NotImplementedError

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=0))


class CharTokenizer(Tokenizer):
    kind = "char"

    @classmethod
    def fit(cls, texts: Iterable[str]) -> "CharTokenizer":
        chars = Counter(c for t in texts for c in normalize(t))
        if SPACE in chars:
            raise DataError(f"the transcripts contain {SPACE!r}, which the char tokenizer uses for spaces")
        chars.pop(" ", None)
        return cls([BLANK, SPACE] + sorted(chars))

    def split(self, text: str) -> list[str]:
        return [SPACE if c == " " else c for c in text]

    def join(self, pieces: list[str]) -> str:
        return "".join(" " if p == SPACE else p for p in pieces)


class WordTokenizer(Tokenizer):
    kind = "word"

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int) -> "WordTokenizer":
        """The most frequent words (ties alphabetical); vocab_size counts blank and <unk>, 0 keeps all."""
        counts = Counter(w for t in texts for w in t.split())
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        keep = ranked if vocab_size <= 0 else ranked[: max(vocab_size - 2, 0)]
        return cls([BLANK, UNK] + keep)

    def split(self, text: str) -> list[str]:
        return text.split()

    def join(self, pieces: list[str]) -> str:
        return " ".join(pieces)


class SubwordTokenizer(Tokenizer):
    """sentencepiece ids shifted by one: its <unk> (id 0) is our 1, the blank is 0."""

    kind = "subword"

    def __init__(self, tokens: list[str], model: bytes):
        super().__init__(tokens)
        self.model = model
        self._processor = None

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int, model_type: str = "unigram") -> "SubwordTokenizer":
        spm = require_sentencepiece()
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter([normalize(t) for t in texts]), model_writer=model,
                vocab_size=vocab_size - 1, model_type=model_type, character_coverage=1.0,
                unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=False,
                num_threads=1, minloglevel=2,
            )
        except RuntimeError as err:
            raise ConfigError(f"build_tokenizer.vocab_size={vocab_size}: sentencepiece failed "
                              f"({str(err).splitlines()[0]}); try a smaller vocab_size") from None
        processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        return cls([BLANK] + pieces, model.getvalue())

    @property
    def processor(self):
        if self._processor is None:
            self._processor = require_sentencepiece().SentencePieceProcessor(model_proto=self.model)
        return self._processor

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.processor.encode(normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return normalize(self.processor.decode([i - 1 for i in ids if i != 0]))

    def __getstate__(self) -> dict:  # the sentencepiece processor is rebuilt where unpickled
        return {**self.__dict__, "_processor": None}

    def to_json(self) -> dict:
        return {**super().to_json(), "model": base64.b64encode(self.model).decode("ascii")}


def build_tokenizer(kind: str, texts: list[str], vocab_size: int = 0, model_type: str = "unigram") -> Tokenizer:
    if kind == "char":
        return CharTokenizer.fit(texts)
    if kind == "word":
        return WordTokenizer.fit(texts, vocab_size)
    if kind == "subword":
        return SubwordTokenizer.fit(texts, vocab_size, model_type)
    raise ConfigError(f"build_tokenizer.kind: {kind!r} is not one of {', '.join(KINDS)}")


def load_tokenizer(path: Path) -> Tokenizer:
    if not Path(path).is_file():
        raise DataError(f"{path} is missing; run stage 1 (--start 1)")
    data = json.loads(Path(path).read_text())
    if data.get("kind") == "subword":
        return SubwordTokenizer(data["tokens"], base64.b64decode(data["model"]))
    classes = {"char": CharTokenizer, "word": WordTokenizer}
    if data.get("kind") not in classes:
        raise DataError(f"{path}: unknown tokenizer kind {data.get('kind')!r}; rerun stage 1 (--start 1)")
    return classes[data["kind"]](data["tokens"])
