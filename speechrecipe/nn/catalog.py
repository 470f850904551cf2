"""Upstream names and where their options live in `build_upstream` (imports no torch)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from speechrecipe.data.batch_keys import PRECOMPUTED  # noqa: F401 - features dumped by dump-feature (data owns the name)

SPECTRAL = ("fbank", "mfcc")
SSL = ("wav2vec2", "hubert", "wavlm")  # torchaudio.models; options in build_upstream.ssl
UPSTREAM_NAMES = SPECTRAL + SSL
SSL_SAMPLE_RATE = 16000  # what wav2vec2, HuBERT and WavLM were trained on


def upstream_options(conf: DictConfig) -> dict:
    """The keyword arguments of build_upstream.name: its own section, or `ssl` for the SSL models."""
    section = "ssl" if conf.name in SSL else conf.name
    options = conf.get(section, None)
    return OmegaConf.to_container(options, resolve=True) if options is not None else {}


def check_upstream(conf: DictConfig) -> None:
    """Before any stage: an SSL upstream's size, torchaudio options and the 16 kHz audio it expects
    (`conf` is the whole config; imports torchaudio only for an SSL upstream)."""
    upstream = conf.get("build_upstream")
    if upstream is None or upstream.get("name") not in SSL or "ssl" not in upstream:
        return
    from speechrecipe.errors import ConfigError
    from speechrecipe.nn.ssl_upstream import check_options, factory

    factory(str(upstream.name), str(upstream.ssl.size))
    check_options(str(upstream.name), str(upstream.ssl.size), upstream_options(upstream).get("conf") or {})
    rate = OmegaConf.select(conf, "build_dataset.sample_rate")
    if rate is not None and int(rate) != SSL_SAMPLE_RATE:
        raise ConfigError(f"build_dataset.sample_rate: {rate}; {upstream.name} takes {SSL_SAMPLE_RATE} Hz audio, "
                          f"set build_dataset.sample_rate={SSL_SAMPLE_RATE}")
