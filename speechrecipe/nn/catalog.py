"""Upstream names and where their options live in `build_upstream` (imports no torch)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

SPECTRAL = ("fbank", "mfcc")
SSL = ("wav2vec2", "hubert", "wavlm")  # torchaudio.models; options in build_upstream.ssl
UPSTREAM_NAMES = SPECTRAL + SSL


def upstream_options(conf: DictConfig) -> dict:
    """The keyword arguments of build_upstream.name: its own section, or `ssl` for the SSL models."""
    section = "ssl" if conf.name in SSL else conf.name
    options = conf.get(section, None)
    return OmegaConf.to_container(options, resolve=True) if options is not None else {}


def check_upstream(conf: DictConfig) -> None:
    """Before any stage: an SSL upstream's size and torchaudio options (imports torchaudio only then)."""
    if conf.get("name") in SSL and "ssl" in conf:
        from speechrecipe.nn.ssl_upstream import check_options, factory

        factory(str(conf.name), str(conf.ssl.size))
        check_options(str(conf.name), str(conf.ssl.size), upstream_options(conf).get("conf") or {})
