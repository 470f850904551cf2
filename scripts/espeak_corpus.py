"""Synthetic multi-speaker speech from espeak-ng voices, for the bundled mini corpora.

A *speaker* is a fixed espeak-ng voice identity: an English accent voice, a voice
variant (formants, pitch range, roughness...), a base pitch, a base speed and a word
gap. A *session* is a recording condition shared by a group of utterances: additive
noise (colour and SNR), sox reverberation and a channel (band limits plus EQ) and a
level, and optionally a speed factor (the sid calibration corpus's speaker on another day). Each utterance then varies speed, pitch, SNR and level a little around them.

Everything is a pure function of integer seeds: `rng_for(seed, *keys)` derives an
independent generator per speaker / session / utterance, espeak-ng and sox (without
dither) are deterministic, and the noise is drawn with numpy, so the same seeds give
byte-identical files. Output is 16 kHz mono 16-bit, FLAC or WAV after the suffix.

Needs the `espeak-ng` and `sox` executables. Used by `make_mini_*.py` in this folder.
"""
from __future__ import annotations

import subprocess
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
WAV_HEADER_BYTES = 44

# Accents: the espeak-ng English language voices (mbrola voices are not used).
LANGUAGES = (
    "en", "en-us", "en-us-nyc", "en-gb-scotland", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-gb-x-rp", "en-029",
)
# Human-sounding variants of `espeak-ng --voices=variant` (no robots, whispers, echoes).
MALE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex", "Andy", "Denis", "Diogo",
    "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike", "Nguyen", "antonio", "boris",
    "david", "ed", "edward", "gustave", "iven", "klatt", "klatt2", "klatt3", "marcelo",
    "max", "paul", "pedro", "quincy", "rob", "robert", "travis", "victor", "grandpa",
    "benjamin", "adam", "sandro", "kaukovalta", "Storm",
)
FEMALE_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "aunty", "belinda",
    "linda", "anika", "steph", "grandma", "shelby",
)
NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


@dataclass(frozen=True)
class Speaker:
    """A fixed espeak-ng voice identity."""

    language: str
    variant: str
    gender: str  # "m" or "f"
    pitch: int  # espeak-ng -p, 0..99 (scales the variant's pitch range)
    speed: int  # espeak-ng -s, words per minute
    word_gap: int  # espeak-ng -g, pause between words in units of 10 ms

    @property
    def voice(self) -> str:
        """The espeak-ng -v argument."""
        return f"{self.language}+{self.variant}"


@dataclass(frozen=True)
class Session:
    """A recording condition shared by the utterances of one session."""

    noise: str  # "white", "pink" or "brown"
    snr_db: float
    reverberance: float  # sox reverb, percent
    hf_damping: float  # sox reverb, percent
    room_scale: float  # sox reverb, percent
    pre_delay_ms: float
    highpass_hz: float
    lowpass_hz: float
    eq: tuple[tuple[float, float, float], ...]  # (centre Hz, width in q, gain dB)
    level_db: float  # active speech RMS, dBFS
    speed: float = 1.0  # sox speed factor of the whole session (tempo, pitch and formants); 1.0: none


@dataclass(frozen=True)
class Job:
    """One utterance to render into `path`."""

    path: Path
    speaker: Speaker
    text: str
    session: Session
    seed: int


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent generator for `seed` and a path of keys, stable across runs."""
    words = [seed] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """`n` distinct speakers, genders alternating m, f, m, ... so any slice is balanced.

    Variants are not reused within a gender until all are taken; a reused variant
    gets another accent, so (language, variant) pairs stay unique.
    """
    rng = rng_for(seed, "speakers")
    pools = {g: list(rng.permutation(v)) for g, v in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS))}
    used: set[tuple[str, str]] = set()
    speakers = []
    for i in range(n):
        gender = "mf"[i % 2]
        pool = pools[gender]
        variant = str(pool[(i // 2) % len(pool)])
        language = str(rng.choice([lang for lang in LANGUAGES if (lang, variant) not in used]))
        used.add((language, variant))
        speakers.append(Speaker(
            language=language, variant=variant, gender=gender,
            pitch=int(rng.integers(25, 76)), speed=int(rng.integers(140, 191)),
            word_gap=int(rng.integers(0, 3)),
        ))
    return speakers


def sample_session(rng: np.random.Generator) -> Session:
    """A random recording condition: noise, room, channel and level."""
    n_bands = int(rng.integers(1, 4))
    eq = tuple(
        (float(np.exp(rng.uniform(np.log(150), np.log(5000)))), float(rng.uniform(0.7, 2.0)),
         float(rng.uniform(-10, 10)))
        for _ in range(n_bands)
    )
    return Session(
        noise=str(rng.choice(list(NOISE_EXPONENTS))),
        snr_db=float(rng.uniform(5, 30)),
        reverberance=float(rng.uniform(0, 90)),
        hf_damping=float(rng.uniform(10, 90)),
        room_scale=float(rng.uniform(10, 100)),
        pre_delay_ms=float(rng.uniform(0, 30)),
        highpass_hz=float(rng.uniform(50, 400)),
        lowpass_hz=float(rng.uniform(3200, 7800)),
        eq=eq,
        level_db=float(rng.uniform(-38, -26)),
    )


def espeak(speaker: Speaker, text: str, pitch: int, speed: int) -> np.ndarray:
    """Raw espeak-ng output at ESPEAK_RATE as int16 samples."""
    cmd = ["espeak-ng", "-v", speaker.voice, "-p", str(pitch), "-s", str(speed),
           "-g", str(speaker.word_gap), "--stdout", text]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    return trim_trailing_silence(np.frombuffer(out[WAV_HEADER_BYTES:], dtype="<i2"), ESPEAK_RATE)


def frame_power(x: np.ndarray, frame: int) -> np.ndarray:
    """Mean power of consecutive non-overlapping frames of `frame` samples."""
    frames = x[: len(x) // frame * frame].astype(np.float64).reshape(-1, frame)
    return np.mean(frames ** 2, axis=1)


def trim_trailing_silence(x: np.ndarray, rate: int, keep_s: float = 0.15) -> np.ndarray:
    """Cut the pause espeak-ng appends, keeping `keep_s` after the last 40 dB-active 10 ms."""
    power = frame_power(x, rate // 100)
    last = int(np.nonzero(power > power.max() * 1e-4)[0][-1])
    return x[: (last + 1) * (rate // 100) + int(keep_s * rate)]


def sox(samples: np.ndarray, in_rate: int, in_type: str, effects: list[str]) -> np.ndarray:
    """Run mono raw samples through sox `effects`; float32 at SAMPLE_RATE comes back."""
    cmd = ["sox", "-D", "-t", in_type, "-r", str(in_rate), "-c", "1", "-",
           "-t", "f32", "-r", str(SAMPLE_RATE), "-c", "1", "-", *effects]
    out = subprocess.run(cmd, input=samples.tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4")


def room_effects(session: Session) -> list[str]:
    """sox effects: normalise, change the speed (when the session has one), resample to 16 kHz, reverberate."""
    speed = ["speed", f"{session.speed:.4f}"] if session.speed != 1.0 else []
    return ["gain", "-n", "-12", *speed, "rate", "-h", str(SAMPLE_RATE), "reverb",
            f"{session.reverberance:.1f}", f"{session.hf_damping:.1f}",
            f"{session.room_scale:.1f}", "100", f"{session.pre_delay_ms:.1f}"]


def channel_effects(session: Session) -> list[str]:
    """sox effects: band-limit and equalise like a microphone / codec chain."""
    effects = ["sinc", f"{session.highpass_hz:.0f}-{session.lowpass_hz:.0f}"]
    for centre, width, gain in session.eq:
        effects += ["equalizer", f"{centre:.0f}", f"{width:.2f}q", f"{gain:.1f}"]
    return effects


def colored_noise(rng: np.random.Generator, n: int, color: str) -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise, shaped in the frequency domain."""
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0)
    noise = np.fft.irfft(spectrum / freqs ** (NOISE_EXPONENTS[color] / 2), n)
    return noise / np.sqrt(np.mean(noise ** 2))


def active_rms(x: np.ndarray, frame: int = 400) -> float:
    """RMS over the 25 ms frames within 30 dB of the loudest one (speech, not pauses)."""
    power = frame_power(x, frame)
    return float(np.sqrt(np.mean(power[power > power.max() * 1e-3])))


def synthesize(speaker: Speaker, text: str, session: Session, seed: int) -> np.ndarray:
    """One utterance as float32 at SAMPLE_RATE, with per-utterance jitter from `seed`."""
    rng = rng_for(seed, "utterance")
    pitch = int(np.clip(speaker.pitch + rng.integers(-5, 6), 0, 99))
    speed = int(round(speaker.speed * rng.uniform(0.93, 1.07)))
    dry = sox(espeak(speaker, text, pitch, speed), ESPEAK_RATE, "s16", room_effects(session))
    snr_db = session.snr_db + rng.uniform(-2, 2)
    noise = colored_noise(rng, len(dry), session.noise) * active_rms(dry) * 10 ** (-snr_db / 20)
    wet = sox((dry + noise).astype("<f4"), SAMPLE_RATE, "f32", channel_effects(session))
    target = 10 ** ((session.level_db + rng.uniform(-1.5, 1.5)) / 20)
    out = wet * (target / active_rms(wet))
    return (out / max(1.0, float(np.abs(out).max()) / 0.99)).astype(np.float32)


def render(job: Job) -> float:
    """Synthesize `job` into its path (16-bit FLAC or WAV); return the duration in s."""
    audio = synthesize(job.speaker, job.text, job.session, job.seed)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    flac = {"compression_level": 1.0} if job.path.suffix == ".flac" else {}
    sf.write(job.path, audio, SAMPLE_RATE, subtype="PCM_16", **flac)
    return len(audio) / SAMPLE_RATE


def render_all(jobs: Sequence[Job], workers: int = 2) -> list[float]:
    """Render `jobs` with a process pool; durations come back in job order."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(render, jobs, chunksize=8))


DETERMINERS = ("the", "a", "this", "that", "my", "your", "his", "her", "our", "their",
               "every", "one", "some")
ADJECTIVES = (
    "old", "new", "small", "big", "long", "short", "young", "green", "red", "blue",
    "black", "white", "dark", "bright", "warm", "cold", "quiet", "loud", "happy", "tired",
    "strong", "clever", "gentle", "simple", "heavy", "empty", "open", "busy", "careful",
    "quick", "slow", "silver", "golden", "wooden", "broken", "famous", "strange",
    "friendly", "little", "great", "good", "hot", "soft", "clean", "fresh", "wild", "calm",
    "yellow", "narrow", "wide", "proud", "lucky", "honest", "early", "hungry", "sleepy",
)
NOUNS = (
    "man", "woman", "child", "doctor", "teacher", "farmer", "driver", "friend", "neighbour",
    "captain", "student", "baker", "sister", "brother", "mother", "father", "king", "queen",
    "river", "house", "garden", "window", "door", "table", "chair", "book", "letter",
    "paper", "road", "bridge", "city", "village", "market", "station", "train", "ship",
    "boat", "car", "horse", "dog", "cat", "bird", "fish", "tree", "flower", "field",
    "forest", "mountain", "hill", "lake", "island", "morning", "evening", "winter",
    "summer", "stone", "bread", "water", "coffee", "music", "song", "story", "picture",
    "box", "bag", "key", "clock", "lamp", "kitchen", "office", "school", "church",
    "hospital", "shop", "wall", "floor", "ladder", "basket", "apple", "orange", "cake",
    "shirt", "coat", "hat", "shoe", "ring", "bottle", "glass", "plate", "cup", "pencil",
    "camera", "radio", "phone", "engine", "wheel", "machine", "sailor", "soldier",
    "painter", "singer", "garage", "corner", "tower", "castle", "valley", "beach",
    "harbour", "meadow", "candle", "blanket", "pocket", "wagon", "rabbit", "sheep",
)
TRANSITIVE = (
    "found", "saw", "carried", "opened", "closed", "painted", "watched", "followed",
    "bought", "sold", "built", "cleaned", "visited", "moved", "pushed", "pulled",
    "lifted", "dropped", "lost", "kept", "left", "held", "brought", "took", "made",
    "wrote", "read", "sent", "liked", "wanted", "needed", "helped", "called", "passed",
    "reached", "crossed", "fixed", "filled", "covered", "counted", "chose", "showed",
    "remembered", "noticed", "borrowed", "washed", "packed", "answered", "described",
)
INTRANSITIVE = (
    "walked", "waited", "smiled", "laughed", "slept", "stopped", "arrived", "returned",
    "listened", "worked", "rested", "sang", "danced", "stayed", "travelled", "shouted",
    "whispered", "wandered", "hurried", "paused", "stood", "sat", "ran", "swam",
)
ADVERBS = (
    "slowly", "quickly", "quietly", "yesterday", "today", "again", "later", "soon",
    "often", "always", "never", "carefully", "suddenly", "happily", "early", "outside",
    "together", "alone", "once", "twice",
)
PREPOSITIONS = ("near", "behind", "under", "over", "across", "along", "into", "beside",
                "through", "past", "around", "towards", "with", "from", "inside")
CONJUNCTIONS = ("and", "but", "because", "while", "so", "then", "before", "after", "when")


def noun_phrase(rng: np.random.Generator) -> list[str]:
    """Determiner, optional adjective, noun ('a' becomes 'an' before a vowel)."""
    words = [str(rng.choice(ADJECTIVES))] if rng.random() < 0.5 else []
    words.append(str(rng.choice(NOUNS)))
    det = str(rng.choice(DETERMINERS))
    return ["an" if det == "a" and words[0][0] in "aeiou" else det, *words]


def clause(rng: np.random.Generator) -> list[str]:
    """Subject, verb (with object when transitive), optional place and adverb."""
    words = noun_phrase(rng)
    if rng.random() < 0.6:
        words += [str(rng.choice(TRANSITIVE)), *noun_phrase(rng)]
    else:
        words.append(str(rng.choice(INTRANSITIVE)))
    if rng.random() < 0.4:
        words += [str(rng.choice(PREPOSITIONS)), *noun_phrase(rng)]
    if rng.random() < 0.3:
        words.append(str(rng.choice(ADVERBS)))
    return words


def random_sentence(rng: np.random.Generator, min_words: int = 5, max_words: int = 12) -> str:
    """A lower-case sentence without punctuation, `min_words`..`max_words` words long.

    Clauses are joined with conjunctions; samples outside the range are redrawn.
    """
    while True:
        words = clause(rng)
        while len(words) < min_words:
            words += [str(rng.choice(CONJUNCTIONS)), *clause(rng)]
        if len(words) <= max_words:
            return " ".join(words)


def folder_bytes(path: Path) -> int:
    """Total size of the files below `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# The most speakers any make_mini_*.py draws (make_mini_librispeech.py: 28 + 4 + 4), all with
# make_speakers(n, seed=1); make_speakers(n) is a prefix of make_speakers(m) for n < m.
BUNDLED_SPEAKERS, BUNDLED_SEED = 36, 1


def bundled_voices() -> set[tuple[str, str]]:
    """The (accent, variant) pairs of the voices in the bundled mini corpora."""
    return {(s.language, s.variant) for s in make_speakers(BUNDLED_SPEAKERS, BUNDLED_SEED)}


def make_unbundled_speakers(n: int, seed: int) -> list[Speaker]:
    """`n` distinct speakers like make_speakers's, none with the (accent, variant) voice of a
    bundled mini corpus: for calibration corpora that judge a default on voices it was never
    tuned on. Genders alternate m, f, m, ...; (accent, variant) pairs are unique."""
    rng = rng_for(seed, "unbundled speakers")
    used = bundled_voices()
    pairs = {g: [(lang, v) for v in variants for lang in LANGUAGES if (lang, v) not in used]
             for g, variants in (("m", MALE_VARIANTS), ("f", FEMALE_VARIANTS))}
    order = {}
    for gender, pool in pairs.items():
        shuffled = [pool[i] for i in rng.permutation(len(pool))]
        # spread the variants: one comes back (with another accent) only after every variant was taken
        rank = [sum(q[1] == p[1] for q in shuffled[:k]) for k, p in enumerate(shuffled)]
        order[gender] = [p for _, p in sorted(zip(rank, shuffled), key=lambda rp: rp[0])]
    counts = {"m": (n + 1) // 2, "f": n // 2}
    if any(counts[g] > len(order[g]) for g in counts):
        raise ValueError(f"{n} speakers: more than the unbundled voices of one gender")
    speakers = []
    for i in range(n):
        gender = "mf"[i % 2]
        language, variant = order[gender][i // 2]
        speakers.append(Speaker(
            language=language, variant=variant, gender=gender,
            pitch=int(rng.integers(25, 76)), speed=int(rng.integers(140, 191)),
            word_gap=int(rng.integers(0, 3)),
        ))
    return speakers
