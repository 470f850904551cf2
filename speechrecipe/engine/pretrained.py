"""Pretrained transfer (after SpeechBrain's Pretrainer): the `pretrained:` section, collected and loaded.

Each entry maps a loadable name to a source:

    pretrained:
      upstream: /models/wav2vec2_base.pt          # short form: the source only
      downstream:
        source: exp/asv_previous                  # a file; a folder holding downstream.ckpt; a speechrecipe
        checkpoint: valid_best                    #   target_dir (valid_best, last or step-N); a Hugging Face folder
        strict: false                             # false: load what fits and report missing/unexpected keys
        prefix: {"classifier.": "head."}          # rename source keys by prefix before loading
        allow_unmatched: false                    # true: loading no tensor, or a prefix matching no key, is intended
        hook: mylab.loading:load_downstream       # load with hook(module, path) instead
        condition: true                           # false (or a module:function(conf) returning false) skips it
        format: auto                              # auto | speechrecipe | state_dict | huggingface | fairseq

A name is `model` (the whole task), `upstream`, `featurizer`, `downstream`, or any module path in the
task (`downstream.head`). Sources are first collected into target_dir/pretrained/ as symlinks named by
the key (copies where links are impossible), then loaded from there. Nothing here imports torch at
module level; `transformers` and `fairseq` are imported only for their formats.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from speechrecipe.errors import ConfigError, RunFailure
from speechrecipe.fileio import atomic_write_text

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+://")  # https://, s3://, hf://
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # owner/name, as Hugging Face and torch.hub name models
ENTRY_KEYS = ("source", "checkpoint", "strict", "prefix", "hook", "condition", "format", "allow_unmatched")
FORMATS = ("auto", "speechrecipe", "state_dict", "huggingface", "fairseq")
SHOWN = 5  # keys shown per kind in a report line


@dataclass
class Entry:
    """One `pretrained:` entry."""

    name: str
    source: Path
    checkpoint: str = "valid_best"
    strict: bool = True
    prefix: dict[str, str] = field(default_factory=dict)
    hook: str | None = None
    condition: Any = True
    format: str = "auto"
    allow_unmatched: bool = False
    written: str = ""  # the source as written (Path() folds a URL's "//")


def parse(section: DictConfig | dict | None) -> list[Entry]:
    """The section's entries, checked (types, formats, hook syntax); ConfigError names the key."""
    data = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section or {})
    entries = []
    for name, value in data.items():
        key = f"pretrained.{name}"
        if isinstance(value, str):
            value = {"source": value}
        if isinstance(value, dict) and value and not set(value) & set(ENTRY_KEYS):
            _refuse_nested_module_path(str(name), value)
        if not isinstance(value, dict) or "source" not in value:
            raise ConfigError(f"{key}: give a source path, or a mapping with `source` (and {', '.join(ENTRY_KEYS[1:])})")
        for option in value:
            if option not in ENTRY_KEYS:
                raise ConfigError(f"{key}.{option}: unknown key; an entry takes {', '.join(ENTRY_KEYS)}")
        entry = Entry(name=str(name), source=Path(str(value["source"])).expanduser(),
                      checkpoint=str(value.get("checkpoint", "valid_best")), strict=value.get("strict", True),
                      prefix=value.get("prefix") or {}, hook=value.get("hook"), condition=value.get("condition", True),
                      format=str(value.get("format", "auto")), allow_unmatched=value.get("allow_unmatched", False),
                      written=str(value["source"]))
        _check(entry, key)
        entries.append(entry)
    return entries


def _refuse_nested_module_path(name: str, value: dict) -> None:
    """`pretrained.downstream.heads.0=PATH` on the command line nests mappings (downstream: {heads: {0: PATH}}), but
    a module path is one key: name it and say how to write it."""
    path, inner = [name], value
    while isinstance(inner, dict) and len(inner) == 1 and not set(inner) & set(ENTRY_KEYS):
        key, inner = next(iter(inner.items()))
        path.append(str(key))
    if not (isinstance(inner, str) or (isinstance(inner, dict) and set(inner) & set(ENTRY_KEYS))):
        return  # not a module path written with dots: parse's own message
    module = ".".join(path)
    source = inner if isinstance(inner, str) else inner.get("source", "PATH")
    raise ConfigError(f"pretrained.{module}: a module path is one key, but written with dots on the command line "
                      f"it became nested keys; write 'pretrained={{{module}: {source}}}' (quoted), or "
                      f"'{module}: {source}' under pretrained: in a -c file")


def _check(entry: Entry, key: str) -> None:
    for option in ("strict", "allow_unmatched"):
        if not isinstance(getattr(entry, option), bool):
            raise ConfigError(f"{key}.{option}: {getattr(entry, option)!r} must be true or false")
    if entry.format not in FORMATS:
        raise ConfigError(f"{key}.format: {entry.format!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(entry.prefix, dict) or not all(isinstance(v, str) for v in entry.prefix.values()):
        raise ConfigError(f"{key}.prefix: a mapping of source key prefix to model key prefix, e.g. {{classifier.: head.}}")
    for option in ("hook", "condition"):
        value = getattr(entry, option)
        if isinstance(value, str) and value.count(":") != 1:
            raise ConfigError(f"{key}.{option}: {value!r} must be module:function")
    if not isinstance(entry.condition, (bool, str)):
        raise ConfigError(f"{key}.condition: {entry.condition!r} must be true, false or module:function")


def check(section: DictConfig | None) -> None:
    """Before any stage: the entries parse, their sources exist and their hooks and conditions import as functions
    (unless skipped by a false condition)."""
    for entry in parse(section):
        if entry.condition is False:
            continue
        for option in ("hook", "condition"):
            if isinstance(getattr(entry, option), str):
                _import(getattr(entry, option), entry, option)
        if not entry.source.exists():
            key = f"pretrained.{entry.name}.source"
            if _URL.match(entry.written):
                raise ConfigError(f"{key}: {entry.written} is a URL; URLs and hub ids are not loaded: download the files "
                                  "first and give their path")
            hint = ("; if it is a hub id: URLs and hub ids are not loaded, download the files first and give their path"
                    if _HUB_ID.fullmatch(str(entry.source)) else "")
            raise ConfigError(f"{key}: {entry.source} does not exist{hint}")


# ----- collect ---------------------------------------------------------------------------------
def resolve_source(entry: Entry) -> Path:
    """The file (or Hugging Face folder) an entry points at."""
    source = entry.source
    if source.is_file():
        return source
    if not source.is_dir():
        raise RunFailure(f"pretrained.{entry.name}: {source} does not exist")
    from speechrecipe.engine import checkpoint as ckpt

    if (source / "checkpoints").is_dir():  # another speechrecipe target_dir
        found = ckpt.resolve(source / "checkpoints", entry.checkpoint)
        if found is None:
            have = ", ".join(ckpt.list_checkpoints(source / "checkpoints")) or "none"
            raise RunFailure(f"pretrained.{entry.name}: {source} has no checkpoint {entry.checkpoint!r} "
                             f"(it has: {have}); set pretrained.{entry.name}.checkpoint")
        return found
    if (source / f"{entry.name}.ckpt").is_file():
        return source / f"{entry.name}.ckpt"
    if (source / "config.json").is_file():  # a Hugging Face model folder
        return source
    raise RunFailure(f"pretrained.{entry.name}: {source} holds neither {entry.name}.ckpt, a checkpoints/ folder "
                     "(speechrecipe target_dir) nor config.json (Hugging Face model)")


def collect(entries: list[Entry], into: Path) -> dict[str, Path]:
    """Link each entry's source into `into` as <name>.ckpt (<name>/ for a folder); copy where links fail.
    A link already pointing at the source is kept; another is replaced atomically (torchrun ranks may race)."""
    into.mkdir(parents=True, exist_ok=True)
    collected = {}
    for entry in entries:
        source = resolve_source(entry).resolve()
        link = into / (entry.name if source.is_dir() else f"{entry.name}.ckpt")
        if not (link.is_symlink() and link.resolve() == source):
            _place(source, link)
        collected[entry.name] = link
    return collected


def _place(source: Path, link: Path) -> None:
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        os.symlink(source, temporary, target_is_directory=source.is_dir())
    except OSError:  # no symlinks on this file system: a copy
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, temporary)
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)  # an earlier copy of a folder
    elif link.is_symlink() and temporary.is_dir() and not temporary.is_symlink():
        link.unlink()  # a folder cannot be renamed over a link
    os.replace(temporary, link)


# ----- load --------------------------------------------------------------------------------------
def apply(section: DictConfig | None, task: "nn.Module", into: Path, conf: DictConfig | None = None) -> list[dict]:
    """Collect and load every entry into `task`; returns (and writes to into/report.json) what was loaded."""
    # the upstream first: a `model` saved with a frozen upstream is checked against the loaded one
    entries = sorted((e for e in parse(section) if _wanted(e, conf)), key=lambda e: e.name.split(".")[0] != "upstream")
    _warn_random_frozen_upstreams(task, entries)
    if not entries:
        return []
    links = collect(entries, into)
    report = [load_entry(entry, links[entry.name], task) for entry in entries]
    from speechrecipe.engine import distributed

    if distributed.world().main:
        atomic_write_text(into / "report.json", json.dumps(report, indent=1) + "\n")
    return report


def _warn_random_frozen_upstreams(task: "nn.Module", entries: list[Entry]) -> None:
    """A frozen base or large SSL upstream that no entry loads keeps its random initialisation: say so."""
    from speechrecipe.nn.ssl_upstream import SSLUpstream

    for path, module in task.named_modules():
        if not isinstance(module, SSLUpstream) or module.size == "custom" or module.finetune_after is not None:
            continue
        if not any(e.name == "model" or f"{path}.".startswith(f"{e.name}.") or e.name.startswith(f"{path}.") for e in entries):
            log.warning("%s: the frozen %s %s upstream keeps its random initialisation (build_upstream.ssl.init_seed): "
                        "no pretrained: entry loads it; give pretrained.%s=<its weights>, or build_upstream.ssl.finetune=true "
                        "to train it", path, module.kind, module.size, path)


def _wanted(entry: Entry, conf: DictConfig | None) -> bool:
    wanted = entry.condition if isinstance(entry.condition, bool) else bool(_import(entry.condition, entry, "condition")(conf))
    if not wanted:
        log.info("pretrained.%s: skipped (condition is false)", entry.name)
    return wanted


def _import(spec: str, entry: Entry, option: str):
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"pretrained.{entry.name}.{option}: cannot import {spec} ({err})") from None
    if not callable(found):
        raise ConfigError(f"pretrained.{entry.name}.{option}: {spec} is a {type(found).__name__}, not a function; "
                          "give module:function")
    return found


def target_module(task: "nn.Module", name: str) -> "nn.Module":
    """The module a loadable name means: the whole task for `model`, else a module path in it."""
    if name == "model":
        return task
    try:
        return task.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in task.named_children())
        raise ConfigError(f"pretrained.{name}: the model has no module {name!r}; use model, {children} "
                          "or a module path inside one of them") from None


def load_entry(entry: Entry, path: Path, task: "nn.Module") -> dict:
    """Load one collected source into its module; the report of what matched."""
    module = target_module(task, entry.name)
    if entry.hook:
        _import(entry.hook, entry, "hook")(module, path)
        log.info("pretrained.%s: loaded from %s by %s", entry.name, path, entry.hook)
        return {"name": entry.name, "source": str(path), "hook": entry.hook}
    state, module, kind = read_state(entry, path, module)
    unused = [old for old in entry.prefix if not any(k.startswith(old) for k in state)]
    if unused and not entry.allow_unmatched:
        tops = ", ".join(sorted({k.split(".")[0] + "." for k in state})[:SHOWN]) or "no keys"
        raise RunFailure(f"pretrained.{entry.name}.prefix: {unused[0]!r} matches no key in {path.resolve()} (its keys "
                         f"start with {tops}); fix the prefix, or set pretrained.{entry.name}.allow_unmatched=true "
                         "if that is intended")
    state = {_rename(k, entry.prefix): v for k, v in state.items()}
    report = transfer(state, module, entry, path.resolve())  # messages name the source, not the link
    report["format"] = kind
    return report


def _rename(key: str, prefix: dict[str, str]) -> str:
    for old, new in prefix.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def read_state(entry: Entry, path: Path, module: "nn.Module") -> tuple[dict, "nn.Module", str]:
    """(state dict, the module it is for, format) from a source file or folder."""
    from speechrecipe.nn.ssl_upstream import SSLUpstream

    kind = entry.format
    if kind == "auto":
        kind = "huggingface" if path.is_dir() else _sniff(path, entry)
    inner = module.model if isinstance(module, SSLUpstream) else None
    if kind == "huggingface":
        return _huggingface_state(path, entry), _need(inner, entry, kind), kind
    if kind == "fairseq":
        return _fairseq_state(path, entry), _need(inner, entry, kind), kind
    data = _torch_load(path, entry)
    if kind == "speechrecipe" or _is_checkpoint(data):
        if not _is_checkpoint(data):
            raise RunFailure(f"pretrained.{entry.name}: {path} is not a speechrecipe checkpoint (no 'model' state)")
        return _select(data["model"], entry, path), module, "speechrecipe"
    if not isinstance(data, dict):
        raise RunFailure(f"pretrained.{entry.name}: {path} holds a {type(data).__name__}, not a state dict")
    if inner is not None and not any(k.startswith("model.") for k in data):
        return data, inner, "state_dict"  # a torchaudio model's own state dict
    return data, module, "state_dict"


def _need(inner, entry: Entry, kind: str):
    if inner is None:
        raise ConfigError(f"pretrained.{entry.name}: a {kind} model loads only into a wav2vec2/hubert/wavlm upstream "
                          "(name it `upstream`)")
    return inner


FAIRSEQ_MODULES = ("fairseq", "argparse", "omegaconf")  # what a fairseq checkpoint's pickle refers to (args, cfg)


def _sniff(path: Path, entry: Entry) -> str:
    """torch (a speechrecipe checkpoint or a state dict: told apart by its keys) or fairseq, told by what its pickle
    refers to, read by opcode; anything else is refused naming what the file is not (nothing is unpickled)."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return "torch"
    except Exception:  # noqa: BLE001 - any failure: look at the file without unpickling it
        pass
    if any(name.split(".")[0] in FAIRSEQ_MODULES for name in _pickle_globals(path) or ()):
        return "fairseq"
    raise RunFailure(_unreadable(path, entry))


def _torch_load(path: Path, entry: Entry) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure means the file cannot be used
        raise RunFailure(_unreadable(path, entry)) from None


def _unreadable(path: Path, entry: Entry) -> str:
    """One line saying what a file a weights-only load refuses is not; it names no loader that would unpickle it
    (torch's own message suggests weights_only=False)."""
    with open(path, "rb") as f:
        head = f.read(64)
    found = _pickle_globals(path)
    if not head:
        what = "is empty (0 bytes)"
    elif found is None and head.startswith(b"PK\x03\x04"):
        what = "is a damaged zip archive (truncated?), not a readable torch file"
    elif found is None and _is_text(head):
        what = f"is a text file (it begins {head.decode(errors='replace').splitlines()[0][:40]!r}), not a torch file"
    elif found is None:
        what = "is not a torch file (neither a torch.save zip archive nor a pickle)"
    elif foreign := sorted(n for n in found if n.split(".")[0] not in ("torch", "collections", "builtins", "_codecs")):
        what = (f"holds Python objects besides tensors ({', '.join(foreign[:3])}), which speechrecipe does not unpickle: "
                "neither a speechrecipe checkpoint nor a state dict of tensors")
    else:
        what = "is a torch file that cannot be read (truncated or damaged)"
    return (f"pretrained.{entry.name}: {path.resolve()} {what}; give a speechrecipe checkpoint, a state dict of tensors "
            "(torch.save(module.state_dict())) or a Hugging Face model folder")


def _is_text(head: bytes) -> bool:
    try:
        return all(c.isprintable() or c.isspace() for c in head.decode())
    except UnicodeDecodeError:  # (or a character cut at byte 64: binary enough)
        return False


def _pickle_globals(path: Path) -> set[str] | None:
    """The `module.name`s a torch file's pickle refers to, read by opcode (nothing is imported or run); None
    where it holds no pickle (a torch.save zip archive's data.pkl, or a legacy file's first pickles)."""
    import io
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                return None
            stream = io.BytesIO(archive.read(pickles[0]))
            return _globals_of(stream, pickletools, count=1)
    with open(path, "rb") as f:
        if f.read(1) != b"\x80":  # a pickle of protocol 2 or more starts with PROTO
            return None
        f.seek(0)
        return _globals_of(f, pickletools, count=4)  # legacy torch.save: magic number, version, sys info, data


def _globals_of(stream, pickletools, count: int) -> set[str] | None:
    found: set[str] = set()
    for _ in range(count):
        recent: list = []  # the values pushed, strings only (enough for STACK_GLOBAL's module and name)
        memo: dict = {}
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    found.add(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(recent) >= 2 and None not in recent[-2:]:
                    found.add(f"{recent[-2]}.{recent[-1]}")
                elif op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                    memo[len(memo) if op.name == "MEMOIZE" else arg] = recent[-1] if recent else None
                    continue
                recent.append(memo.get(arg) if op.name in ("GET", "BINGET", "LONG_BINGET")
                              else arg if isinstance(arg, str) and "UNICODE" in op.name else None)
                if op.name == "STOP":
                    break
        except Exception:  # noqa: BLE001 - not (or no longer) a pickle
            return found or None
    return found


def _is_checkpoint(data: Any) -> bool:
    return isinstance(data, dict) and "format" in data and isinstance(data.get("model"), dict)


def _select(state: dict, entry: Entry, path: Path) -> dict:
    """The part of a task's state dict that belongs to the loadable (all of it for `model`)."""
    if entry.name == "model":
        return dict(state)
    head = entry.name + "."
    found = {k[len(head):]: v for k, v in state.items() if k.startswith(head)}
    if not found:
        tops = sorted({k.split(".")[0] for k in state})
        raise RunFailure(f"pretrained.{entry.name}: {path} holds no {entry.name} weights (it has: {', '.join(tops)})")
    return found


def _huggingface_state(path: Path, entry: Entry) -> dict:
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"pretrained.{entry.name}: {path} is a Hugging Face model; pip install transformers "
                          "(the optional extra speechrecipe[hf]) to import it") from None
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    hf_model = transformers.AutoModel.from_pretrained(str(path))
    return import_huggingface_model(hf_model).state_dict()


def _fairseq_state(path: Path, entry: Entry) -> dict:
    try:
        from fairseq import checkpoint_utils
    except ImportError:
        raise ConfigError(f"pretrained.{entry.name}: {path} is a fairseq checkpoint; install fairseq to import it, "
                          "or convert it to a torchaudio state dict") from None
    from torchaudio.models.wav2vec2.utils import import_fairseq_model

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return import_fairseq_model(models[0]).state_dict()


def transfer(state: dict, module: "nn.Module", entry: Entry, path: Path) -> dict:
    """Copy `state` into `module`: strict (every key, every shape) or partial with a printed report."""
    from speechrecipe.nn.ssl_upstream import expand_references, full_state_dict

    state = expand_references(state, module, f"pretrained.{entry.name}", path)
    with full_state_dict(module):
        own = module.state_dict()
    import torch

    not_tensors = [k for k in state if k in own and not torch.is_tensor(state[k])]
    if not_tensors:
        k = not_tensors[0]
        raise RunFailure(f"pretrained.{entry.name}: {k} is a {type(state[k]).__name__} in {path}, not a tensor "
                         f"(and {len(not_tensors) - 1} more); give a state dict of tensors")
    wrong_shape = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong_shape:
        k = wrong_shape[0]
        raise RunFailure(f"pretrained.{entry.name}: {k} has shape {list(state[k].shape)} in {path} but "
                         f"{list(own[k].shape)} in the model (and {len(wrong_shape) - 1} more); the architectures differ")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if entry.strict and (missing or unexpected):
        kind, keys = ("missing", missing) if missing else ("unexpected", unexpected)
        raise RunFailure(f"pretrained.{entry.name}: {len(keys)} {kind} key(s) in {path}, e.g. {keys[0]}; "
                         f"set pretrained.{entry.name}.strict=false to load the rest, or map names with prefix")
    loaded = len(state) - len(unexpected)
    if loaded == 0 and not entry.allow_unmatched:
        raise RunFailure(f"pretrained.{entry.name}: no tensor of {path} matches the module's keys ({_keys('unexpected', unexpected)}); "
                         f"map names with prefix, or set pretrained.{entry.name}.allow_unmatched=true if loading nothing "
                         "is intended")
    with torch.no_grad(), full_state_dict(module):
        module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    log.info("pretrained.%s: %d tensors loaded from %s%s", entry.name, loaded, path,
             "" if entry.strict else f"; {_keys('missing', missing)}; {_keys('unexpected', unexpected)}")
    return {"name": entry.name, "source": str(path), "loaded": loaded, "missing": missing, "unexpected": unexpected}


def _keys(kind: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN]) + (f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else "")
    return f"{len(keys)} {kind}" + (f": {shown}" if keys else "")
