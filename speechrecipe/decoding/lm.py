"""Word n-gram LM decoding through torchaudio's flashlight-text CTC decoder (optional).

Needs the `flashlight-text` package (`pip install 'speechrecipe[lm]'`) and a KenLM model (.arpa or
.bin). Decoding is lexicon-constrained: the lexicon spells each word in the char tokenizer's
tokens followed by the word boundary "|", so only lexicon words can be produced.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from speechrecipe.fileio import atomic_open
from speechrecipe.data.tokenizer import SPACE, Tokenizer
from speechrecipe.errors import ConfigError


def lexicon_lines(words: Iterable[str], tokenizer: Tokenizer) -> list[str]:
    """`WORD W O R D |` for each distinct word whose characters are all tokens."""
    return [f"{w} {' '.join(w)} {SPACE}" for w in sorted(set(words)) if all(c in tokenizer.index for c in w)]


def write_lexicon(path: Path, words: Iterable[str], tokenizer: Tokenizer) -> None:
    with atomic_open(path) as handle:
        handle.writelines(line + "\n" for line in lexicon_lines(words, tokenizer))


def build_lm_decoder(tokenizer: Tokenizer, lm_path: Path, lexicon_path: Path, weight: float,
                     word_score: float, beam_size: int) -> Callable:
    """A function: log-probs [T, V] (CPU torch) → the best word sequence as text."""
    if tokenizer.kind != "char":
        raise ConfigError(f"evaluate.lm.path: the LM decoder needs build_tokenizer.kind=char, not {tokenizer.kind}")
    try:
        from torchaudio.models.decoder import ctc_decoder

        decoder = ctc_decoder(lexicon=str(lexicon_path), tokens=tokenizer.tokens, lm=str(lm_path),
                              beam_size=beam_size, lm_weight=weight, word_score=word_score,
                              blank_token=tokenizer.tokens[0], sil_token=SPACE, unk_word="<unk>")
    except (ImportError, RuntimeError) as err:
        raise ConfigError(f"evaluate.lm: cannot build the flashlight decoder ({str(err).splitlines()[0]}); "
                          "pip install 'speechrecipe[lm]' and check evaluate.lm.path") from None

    def decode(log_probs) -> str:
        result = decoder(log_probs.float().unsqueeze(0).contiguous())[0]
        return " ".join(result[0].words) if result else ""

    return decode
