"""The one place that merges config layers and validates them. Imports no torch.

Layers, lowest first: the package defaults (`conf/<problem>.yaml`), each `-c FILE`,
then `key=value` overrides. The defaults are the schema: a key absent from them is
refused, except inside mappings named `conf`, which pass keyword arguments to a
torch class (optimizer, scheduler) and stay open, and the top-level `pretrained:`.
"""
from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from speechrecipe.errors import ConfigError
from speechrecipe.fileio import atomic_write_text

OPEN_SECTION = "conf"
# open at the top level: `pretrained:` maps loadable names (checked by engine/pretrained.py before any stage)
OPEN_TOP_SECTIONS = ("pretrained",)
MISSING = "???"
BASE_KEY = "_base_"  # in a default YAML: the schema it extends (a built-in conf name, or a path beside it)


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("asset"):
        OmegaConf.register_resolver("asset", _asset_resolver)


def _asset_resolver(rel: str) -> str:
    return str(asset_path(rel))


def asset_path(rel: str) -> Path:
    """Absolute path of a file bundled under speechrecipe/assets."""
    return Path(str(resources.files("speechrecipe") / "assets" / rel))


def default_config_path(conf_name: str) -> Path:
    """conf/<conf_name>.yaml: installed as speechrecipe/conf/ (a wheel), or conf/ beside the package (the source tree)."""
    here = Path(__file__).resolve().parent
    for base in (here / "conf", here.parent / "conf"):
        path = base / f"{conf_name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(f"no default config {conf_name}.yaml for problem '{conf_name}' in {here / 'conf'} or {here.parent / 'conf'}")


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top")
    return cfg


def _yaml_problem(err: Exception) -> str:
    """One line: what is wrong and where (the parser's own message spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def load_schema(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    """A default YAML; with `_base_: NAME`, the schema NAME (conf/NAME.yaml, or a file beside this one)
    with this file's keys and values on top."""
    schema = _load_yaml(path)
    base = schema.pop(BASE_KEY, None)
    if base is None:
        return schema
    if not isinstance(base, str):
        raise ConfigError(f"{path}: {BASE_KEY} must name a schema (e.g. trainer), got {base!r}")
    base_path = path.parent / base if base.endswith((".yaml", ".yml")) else default_config_path(base)
    if base_path.resolve() in seen:
        raise ConfigError(f"{path}: {BASE_KEY}: {base} extends itself")
    base_schema = load_schema(base_path, (*seen, path.resolve()))
    _drop_other_class_arguments(base_schema, OmegaConf.to_container(schema, resolve=False))
    return OmegaConf.merge(base_schema, schema)


def check_declared(path: Path, sections: Iterable[str], engine_keys: Iterable[str], owner: str) -> None:
    """A problem's default YAML holds the engine's sections (conf/trainer.yaml) with their keys, and only the
    sections and engine-section keys its class declares (config_sections, engine_keys) besides."""
    sections, engine_keys = tuple(sections), tuple(engine_keys)
    engine = OmegaConf.to_container(load_schema(default_config_path("trainer")), resolve=False)
    mine = OmegaConf.to_container(load_schema(path), resolve=False)
    for key in mine:
        if key not in engine and key not in sections:
            raise ConfigError(f"{path}: section {key} is neither one of the engine's (conf/trainer.yaml) nor one "
                              f"{owner} declares in config_sections{_suggest(key, [*engine, *sections])}")
    for key in mine:
        if key in engine and key not in OPEN_TOP_SECTIONS:
            _check_engine_keys(path, engine[key], mine[key], f"{key}.", engine_keys, owner)


def _check_engine_keys(path: Path, engine: Any, mine: Any, prefix: str, declared: tuple[str, ...], owner: str) -> None:
    if not (isinstance(engine, dict) and isinstance(mine, dict)):
        return
    for key, value in mine.items():
        dotted = f"{prefix}{key}"
        if any(under(dotted, d) for d in declared) or key == OPEN_SECTION:
            continue
        if key not in engine:
            candidates = [f"{prefix}{k}" for k in engine] + [d for d in declared if d.startswith(prefix)]
            raise ConfigError(f"{path}: {dotted} is not a key of the engine's {prefix[:-1]} section (conf/trainer.yaml)"
                              f"{_suggest(dotted, candidates)}; a key {owner} adds there is named in its engine_keys")
        _check_engine_keys(path, engine[key], value, f"{dotted}.", declared, owner)


def _parse_overrides(overrides: Iterable[str]) -> DictConfig:
    items = list(overrides)
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}': expected key=value, e.g. train.total_steps=2000")
    try:
        return OmegaConf.from_dotlist(items)
    except OmegaConfBaseException as err:
        raise ConfigError(f"overrides: {str(err).splitlines()[0]}") from None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (dict, DictConfig)):
        return "mapping"
    if isinstance(value, (list, ListConfig)):
        return "list"
    return type(value).__name__


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _compatible(default: Any, value: Any) -> bool:
    if default is None or value is None or default == MISSING or value == MISSING:
        return True
    if _is_interpolation(value) or _is_interpolation(default):
        return True  # checked again after resolution
    want, got = _type_name(default), _type_name(value)
    return want == got or (want == "float" and got == "int")


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to `word`, ignoring case, or None."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def _suggest(key: str, candidates: list[str]) -> str:
    close = closest(key, candidates)
    return f"; did you mean {close}?" if close else ""


def _validate_layer(schema: dict, layer: dict, source: str, prefix: str = "") -> None:
    """Refuse keys the schema lacks and values of the wrong type, naming the source."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            candidates = list(flatten(schema, prefix)) + [f"{prefix}{k}" for k in schema]
            raise ConfigError(f"{dotted}: unknown key ({source}){_suggest(dotted, candidates)}")
        default = schema[key]
        if not _compatible(default, value):
            raise ConfigError(
                f"{dotted}: expected {_type_name(default)}, got {_type_name(value)} {value!r} ({source})"
            )
        is_open = key == OPEN_SECTION or (not prefix and key in OPEN_TOP_SECTIONS)
        if isinstance(default, dict) and isinstance(value, dict) and not is_open:
            _validate_layer(default, value, source, f"{dotted}.")


def flatten(cfg: DictConfig | dict, prefix: str = "", resolve: bool = True) -> dict[str, Any]:
    """{dotted.key: leaf value}; lists are leaves."""
    data = OmegaConf.to_container(cfg, resolve=resolve) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{dotted}.", resolve))
        else:
            out[dotted] = value
    return out


def _drop_other_class_arguments(merged: DictConfig, layer: dict, prefix: str = "") -> None:
    """Where `layer` chooses another class by `name`, forget the `conf:` arguments of the class it replaces:
    a `conf:` mapping belongs to the class named beside it (StepLR's step_size means nothing to CosineAnnealingLR)."""
    for key, value in layer.items():
        if not isinstance(value, dict):
            continue
        section = f"{prefix}{key}"
        current = OmegaConf.select(merged, section, default=None)
        if isinstance(current, DictConfig) and OPEN_SECTION in current and "name" in value \
                and value["name"] != current.get("name"):
            OmegaConf.update(merged, f"{section}.{OPEN_SECTION}", {}, merge=False)
        _drop_other_class_arguments(merged, value, f"{section}.")


def _missing_keys(cfg: DictConfig) -> list[str]:
    return [k for k, v in flatten(cfg, resolve=False).items() if v == MISSING]


def load_config(
    schema_file: str | Path, files: Iterable[Path] = (), overrides: Iterable[str] = ()
) -> DictConfig:
    """Merge defaults, files and overrides; validate; return the resolved config.

    `schema_file` is the default YAML (a Path, see Problem.config_path) or a built-in problem's conf name.
    """
    _register_resolvers()
    schema = load_schema(schema_file if isinstance(schema_file, Path) else default_config_path(schema_file))
    layers = [(str(p), _load_yaml(Path(p))) for p in files]
    layers.append(("override", _parse_overrides(overrides)))
    merged = schema.copy()
    schema_data = OmegaConf.to_container(schema, resolve=False)
    for source, layer in layers:
        data = OmegaConf.to_container(layer, resolve=False)
        _validate_layer(schema_data, data, source)
        _drop_other_class_arguments(merged, data)
        merged = OmegaConf.merge(merged, layer)
        for key in [k for k, v in flatten(data, resolve=False).items() if v == MISSING]:
            OmegaConf.update(merged, key, MISSING, merge=False)  # a layer may demand a value
    missing = _missing_keys(merged)
    if missing:
        raise ConfigError(
            "missing required values: " + ", ".join(missing) + " (set each with key=value or -c FILE)"
        )
    try:
        resolved = OmegaConf.create(OmegaConf.to_container(merged, resolve=True))
    except OmegaConfBaseException as err:
        raise ConfigError(f"config: {str(err).splitlines()[0]}") from None
    _keep_references(merged, resolved)
    _check_resolved_types(OmegaConf.to_container(schema, resolve=True), resolved)
    return resolved


def _keep_references(merged: DictConfig, resolved: DictConfig) -> None:
    """Leave `key: ${train.total_steps}` a reference in the resolved config (it still reads as the number): stage
    records then see a schedule that follows train.total_steps, which may change on resume, not a changed number."""
    for key, value in flatten(merged, resolve=False).items():
        follows = _REFERENCE.fullmatch(value) if isinstance(value, str) else None
        if follows and follows.group(1) in FOLLOWED:
            OmegaConf.update(resolved, key, value, merge=False)


def _check_resolved_types(schema: dict, resolved: DictConfig) -> None:
    schema_flat = flatten(schema)
    for key, value in flatten(resolved).items():
        default = schema_flat.get(key)
        if key in schema_flat and not _compatible(default, value):
            raise ConfigError(f"{key}: expected {_type_name(default)}, got {_type_name(value)} {value!r}")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, sort_keys=False)


def save_config(cfg: DictConfig, path: Path) -> None:
    """Write the resolved config atomically."""
    atomic_write_text(path, to_yaml(cfg))


def load_saved_config(path: Path) -> DictConfig | None:
    return OmegaConf.load(path) if path.is_file() else None


def diff(old: DictConfig, new: DictConfig) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every leaf that differs."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


ALL = "*"  # in select's prefixes: every key


def under(key: str, prefix: str) -> bool:
    """`key` is `prefix` or lies below it (dotted); ALL holds every key."""
    return prefix == ALL or key == prefix or key.startswith(prefix + ".")


def select(cfg: DictConfig, prefixes: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The leaves under any of `prefixes` (dotted, or ALL), minus those under any of `exclude`.

    A leaf that only repeats another selected key (`total_steps: ${train.total_steps}`) is kept as that
    reference, not its value: the key it follows speaks for it, so a schedule whose length follows
    train.total_steps may change on resume exactly when train.total_steps may.
    """
    prefixes, exclude = tuple(prefixes), tuple(exclude)

    def chosen(key: str) -> bool:
        return any(under(key, p) for p in prefixes)

    raw = flatten(cfg, resolve=False)
    out = {}
    for key, value in flatten(cfg).items():
        if chosen(key) and not any(under(key, e) for e in exclude):
            follows = _REFERENCE.fullmatch(raw[key]) if isinstance(raw.get(key), str) else None
            out[key] = raw[key] if follows and chosen(follows.group(1)) else value
    return out


_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")  # ${section.key}: another key of the config, nothing else
FOLLOWED = ("train.total_steps",)  # keys that others may follow as `${key}` and stay references to (_keep_references)
