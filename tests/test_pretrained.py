"""Pretrained transfer (`pretrained:`, engine/pretrained.py): checkpoints the tests make are collected into
target_dir/pretrained/ and loaded fully, partially with a report, with prefix mapping, by a hook, or
skipped by a condition; from a file, a folder with <name>.ckpt, a previous target_dir and a Hugging Face
folder; bad sources are one line naming the key and the file."""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from speechrecipe.engine import pretrained
from speechrecipe.errors import ConfigError, RunFailure
from speechrecipe.nn.featurizer import Featurizer
from speechrecipe.nn.ssl_upstream import SSLUpstream

FIXTURES = Path(__file__).parent / "fixtures"
TINY_YAML = FIXTURES / "tiny_wav2vec2.yaml"
TINY = OmegaConf.to_container(OmegaConf.load(TINY_YAML).build_upstream.ssl.conf)


class Task(nn.Module):
    """The shape of a speechrecipe task: upstream, featurizer, downstream."""

    def __init__(self, seed: int, classes: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.upstream = SSLUpstream("wav2vec2", "custom", dict(TINY), init_seed=seed)
        self.featurizer = Featurizer(self.upstream.num_layers, 32)
        self.downstream = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, classes))
        with torch.no_grad():
            self.featurizer.weights.normal_()


def section(**entries) -> dict:
    return entries


def equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)


def save_checkpoint(task: nn.Module, path: Path) -> Path:
    """A speechrecipe checkpoint as the trainer writes it (the frozen upstream referenced by its digest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 1, "run_id": "x", "counters": {}, "model": task.state_dict()}, path)
    return path


def test_a_whole_model_from_a_speechrecipe_checkpoint_file(tmp_path):
    source, target = Task(1), Task(2)
    path = save_checkpoint(source, tmp_path / "src" / "step-5.ckpt")
    # the frozen upstream is not in the checkpoint: it comes from its own source, loaded first
    torch.save(source.upstream.model.state_dict(), tmp_path / "wav2vec2.pt")
    report = pretrained.apply(section(model=str(path), upstream=str(tmp_path / "wav2vec2.pt")), target, tmp_path / "pretrained")
    assert equal(source.downstream, target.downstream) and equal(source.featurizer, target.featurizer)
    assert all(torch.equal(a, b) for a, b in zip(source.upstream.model.state_dict().values(), target.upstream.model.state_dict().values()))
    assert [r["name"] for r in report] == ["upstream", "model"] and report[1]["missing"] == report[1]["unexpected"] == []
    assert (tmp_path / "pretrained" / "model.ckpt").resolve() == path.resolve()  # collected as a link named by the key
    assert json.loads((tmp_path / "pretrained" / "report.json").read_text()) == report


def test_a_model_whose_frozen_upstream_differs_is_refused_with_one_line(tmp_path):
    path = save_checkpoint(Task(1), tmp_path / "a.ckpt")
    with pytest.raises(RunFailure, match=r"pretrained\.model: .*a\.ckpt was trained on a frozen upstream"):
        pretrained.apply(section(model=str(path)), Task(2), tmp_path / "pretrained")


def test_a_torchaudio_state_dict_into_the_upstream(tmp_path):
    source, target = Task(1), Task(2)
    torch.save(source.upstream.model.state_dict(), tmp_path / "w2v.pt")
    before = {k: v.clone() for k, v in target.downstream.state_dict().items()}
    [report] = pretrained.apply(section(upstream=str(tmp_path / "w2v.pt")), target, tmp_path / "pretrained")
    assert report["format"] == "state_dict"
    assert source.upstream.weights_digest() == target.upstream.weights_digest()
    assert all(torch.equal(v, before[k]) for k, v in target.downstream.state_dict().items())  # nothing else touched


def test_partial_loading_reports_missing_and_unexpected_keys_and_strict_names_the_key_and_file(tmp_path, caplog):
    source = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    state = source.state_dict()
    state.pop("2.bias")
    state["extra.weight"] = torch.ones(2)
    torch.save(state, tmp_path / "down.pt")
    target = Task(2)
    with pytest.raises(RunFailure, match=r"pretrained\.downstream: 1 missing key\(s\) in .*down\.pt, e\.g\. 2\.bias; set "):
        pretrained.apply(section(downstream=str(tmp_path / "down.pt")), target, tmp_path / "pretrained")
    caplog.set_level("INFO")
    [report] = pretrained.apply(section(downstream={"source": str(tmp_path / "down.pt"), "strict": False}), target,
                                tmp_path / "pretrained")
    assert report["missing"] == ["2.bias"] and report["unexpected"] == ["extra.weight"] and report["loaded"] == 3
    assert torch.equal(target.downstream[0].weight, source[0].weight) and torch.equal(target.downstream[2].weight, source[2].weight)
    assert not torch.equal(target.downstream[2].bias, source[2].bias)
    assert "1 missing: 2.bias; 1 unexpected: extra.weight" in caplog.text


def test_a_wrong_shape_is_one_line_naming_the_key_and_the_file(tmp_path):
    torch.save(nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5)).state_dict(), tmp_path / "five.pt")
    with pytest.raises(RunFailure, match=r"pretrained\.downstream: 2\.weight has shape \[5, 16\] in .*five\.pt but \[3, 16\]"):
        pretrained.apply(section(downstream={"source": str(tmp_path / "five.pt"), "strict": False}), Task(2), tmp_path / "p")


def test_key_prefixes_are_mapped_and_a_module_path_is_a_loadable(tmp_path):
    source = nn.Module()
    source.classifier = nn.Linear(16, 3)
    torch.save(source.state_dict(), tmp_path / "head.pt")
    target = Task(2)
    pretrained.apply(section(**{"downstream.2": {"source": str(tmp_path / "head.pt"), "prefix": {"classifier.": ""}}}),
                     target, tmp_path / "pretrained")
    assert torch.equal(target.downstream[2].weight, source.classifier.weight)
    assert torch.equal(target.downstream[2].bias, source.classifier.bias)


def test_a_folder_holding_name_ckpt_and_a_previous_target_dir(tmp_path):
    source = Task(1)
    folder = tmp_path / "models"
    folder.mkdir()
    torch.save(source.downstream.state_dict(), folder / "downstream.ckpt")
    target = Task(2)
    pretrained.apply(section(downstream=str(folder)), target, tmp_path / "pretrained")
    assert equal(source.downstream, target.downstream)
    previous = tmp_path / "exp_previous"
    save_checkpoint(source, previous / "checkpoints" / "valid_best.ckpt")
    other = Task(1)
    with torch.no_grad():
        other.featurizer.weights.add_(1.0)
    save_checkpoint(other, previous / "checkpoints" / "step-7.ckpt")
    for name, expected in (("valid_best", source), ("step-7", other)):
        target = Task(1)
        pretrained.apply(section(featurizer={"source": str(previous), "checkpoint": name}), target, tmp_path / "pretrained")
        assert equal(expected.featurizer, target.featurizer), name
    with pytest.raises(RunFailure, match=r"has no checkpoint 'step-9' \(it has: valid_best, step-7\)"):
        pretrained.apply(section(featurizer={"source": str(previous), "checkpoint": "step-9"}), Task(1), tmp_path / "p")


HOOKS = '''
import torch
CALLS = []

def load_scaled(module, path):
    CALLS.append(str(path))
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(0.5)

def never(conf):
    return False
'''


def test_a_custom_load_hook_and_conditions(tmp_path, monkeypatch):
    (tmp_path / "mylab_hooks.py").write_text(HOOKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "anything.bin").write_bytes(b"not a torch file")
    target = Task(2)
    before = target.featurizer.weights.clone()
    report = pretrained.apply(section(downstream={"source": str(tmp_path / "anything.bin"), "hook": "mylab_hooks:load_scaled"},
                                      featurizer={"source": str(tmp_path / "anything.bin"), "condition": "mylab_hooks:never"},
                                      upstream={"source": str(tmp_path / "missing.pt"), "condition": False}),
                              target, tmp_path / "pretrained")
    assert [r["name"] for r in report] == ["downstream"]
    assert sys.modules["mylab_hooks"].CALLS == [str(tmp_path / "pretrained" / "downstream.ckpt")]
    assert all(bool((p == 0.5).all()) for p in target.downstream.parameters())
    assert torch.equal(target.featurizer.weights, before)


def test_bad_entries_are_one_config_line():
    with pytest.raises(ConfigError, match=r"pretrained\.upstream\.strict: 'yes' must be true or false"):
        pretrained.parse({"upstream": {"source": "x", "strict": "yes"}})
    with pytest.raises(ConfigError, match=r"pretrained\.upstream\.sorce: unknown key"):
        pretrained.parse({"upstream": {"sorce": "x", "source": "y"}})
    with pytest.raises(ConfigError, match=r"pretrained\.upstream\.hook: 'nohook' must be module:function"):
        pretrained.parse({"upstream": {"source": "x", "hook": "nohook"}})
    with pytest.raises(ConfigError, match=r"pretrained\.upstream\.source: /no/such\.pt does not exist"):
        pretrained.check(OmegaConf.create({"upstream": "/no/such.pt"}))
    with pytest.raises(ConfigError, match=r"the model has no module 'decoder'"):
        pretrained.target_module(Task(1), "decoder")


def test_a_missing_source_stops_the_cli_before_any_work(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", "pretrained.upstream=/no/such/wav2vec2.pt")
    assert result.exit_code == 2
    assert "pretrained.upstream.source: /no/such/wav2vec2.pt does not exist" in result.stderr
    assert not (tmp_path / "exp" / "records").exists()


@pytest.mark.e2e
def test_transfer_from_a_previous_run_into_a_new_one_through_the_cli(cli, tmp_path):
    """Train A; start B from A's valid_best (the whole model) with lr 0: B's weights equal A's."""
    common = ["-c", str(TINY_YAML), "train.num_workers=0", "build_batch_sampler.batch_size=8", "build_dataset.max_secs=0.8",
              "--stop", "2", "train.eval_step=3", "train.save_step=3",
              "build_downstream.name=probe"]  # no batch norm: with lr 0 nothing moves, running statistics included
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli("run", "ks", "--target-dir", first, *common, "train.total_steps=3").exit_code == 0
    result = cli("run", "ks", "--target-dir", second, *common, "train.total_steps=1", "build_optimizer.conf.lr=0.0",
                 "train.use_scheduler=false",  # ks's one-cycle schedule would set a rate of its own
                 "build_optimizer.conf.weight_decay=0.0", f"pretrained.model={first}", "seed=7",
                 "build_upstream.ssl.init_seed=1337")  # another seed, but the same (frozen, random) upstream as A
    assert result.exit_code == 0, result.stderr
    a = torch.load(first / "checkpoints" / "valid_best.ckpt", weights_only=True)["model"]
    b = torch.load(second / "checkpoints" / "step-1.ckpt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for key in a:  # the frozen upstream is referenced by the same digest; every other tensor was transferred
        assert a[key] == b[key] if isinstance(a[key], str) else torch.equal(a[key], b[key]), key
    assert (second / "pretrained" / "model.ckpt").resolve() == (first / "checkpoints" / "valid_best.ckpt").resolve()


def tiny_hugging_face_model(folder: Path):
    """A Hugging Face Wav2Vec2Model with tiny_wav2vec2.yaml's architecture, saved to `folder`."""
    import transformers  # the [hf] extra: `make install` installs it, so this test runs in `make test`, never skipped
    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=[32] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2], conv_stride=[5, 2, 2, 2, 2, 2, 2],
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="group", do_stable_layer_norm=False)
    torch.manual_seed(5)
    hf = transformers.Wav2Vec2Model(config).eval()
    hf.save_pretrained(folder)
    return hf


@pytest.mark.e2e
def test_a_hugging_face_wav2vec2_folder_is_imported_through_torchaudio(tmp_path):
    hf = tiny_hugging_face_model(tmp_path / "hf_tiny")
    target = Task(2)
    [report] = pretrained.apply(section(upstream=str(tmp_path / "hf_tiny")), target, tmp_path / "pretrained")
    assert report["format"] == "huggingface" and report["missing"] == []
    assert (tmp_path / "pretrained" / "upstream").is_symlink()
    wav = 0.1 * torch.randn(1, 8000)
    with torch.no_grad():
        expected = hf(wav, output_hidden_states=True).hidden_states
    hidden, _ = target.upstream.eval()(wav, torch.tensor([8000]))
    assert len(hidden) == len(expected) == 3
    for ours, theirs in zip(hidden, expected):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_sources_are_copied_where_links_are_impossible_and_a_second_collect_keeps_the_link(tmp_path, monkeypatch):
    source = Task(1)
    torch.save(source.downstream.state_dict(), tmp_path / "down.pt")
    entries = pretrained.parse({"downstream": str(tmp_path / "down.pt")})
    link = pretrained.collect(entries, tmp_path / "linked")["downstream"]
    assert link.is_symlink() and pretrained.collect(entries, tmp_path / "linked")["downstream"].is_symlink()

    def no_links(*_args, **_kwargs):
        raise OSError("links not supported")

    monkeypatch.setattr("os.symlink", no_links)
    target = Task(2)
    pretrained.apply({"downstream": str(tmp_path / "down.pt")}, target, tmp_path / "copied")
    copied = tmp_path / "copied" / "downstream.ckpt"
    assert copied.is_file() and not copied.is_symlink() and copied.read_bytes() == (tmp_path / "down.pt").read_bytes()
    assert equal(source.downstream, target.downstream)
    assert sorted(p.name for p in (tmp_path / "copied").iterdir()) == ["downstream.ckpt", "report.json"]


@pytest.mark.e2e
def test_a_hugging_face_upstream_trains_and_evaluates_frozen_through_the_cli(cli, tmp_path):
    """Stages 2-4 with pretrained.upstream = a Hugging Face folder: the checkpoints refer to exactly its weights,
    and stage 3 (a fresh task) loads them again before the checkpoint."""
    tiny_hugging_face_model(tmp_path / "hf_tiny")
    target = tmp_path / "exp"
    result = cli("run", "ks", "--target-dir", target, "-c", str(TINY_YAML), f"pretrained.upstream={tmp_path / 'hf_tiny'}",
                 "train.num_workers=0", "build_batch_sampler.batch_size=8", "build_dataset.max_secs=0.8",
                 "train.total_steps=2", "train.eval_step=2", "train.save_step=2", "evaluate.test_ckpt_steps=[valid_best]")
    assert result.exit_code == 0, result.stderr
    imported = Task(9)
    pretrained.apply(section(upstream=str(tmp_path / "hf_tiny")), imported, tmp_path / "check")
    saved = torch.load(target / "checkpoints" / "valid_best.ckpt", weights_only=True)["model"]
    assert saved["upstream.frozen_weights_sha256"] == imported.upstream.weights_digest()
    assert json.loads((target / "pretrained" / "report.json").read_text())[0]["format"] == "huggingface"
    assert json.loads((target / "results" / "results.json").read_text())["test"]["checkpoint"] == "valid_best"


KS_ONE_UPDATE = ["train.num_workers=0", "build_batch_sampler.batch_size=8", "build_dataset.max_secs=0.8",
                 "build_downstream.name=probe", "--stop", "2", "train.total_steps=1", "train.eval_step=1", "train.save_step=1"]


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["loads_nothing", "prefix_matches_nothing"])
def test_an_entry_that_would_load_nothing_is_refused_unless_it_says_so(cli, tmp_path, case):
    if case == "loads_nothing":  # strict: false over names the downstream does not have
        torch.save({"classifier.weight": torch.ones(3, 32)}, tmp_path / "source.pt")
        entry, options = "downstream", ["pretrained.downstream.strict=false"]
        refusal = f"error: pretrained.downstream: no tensor of {tmp_path / 'source.pt'} matches the module's keys (1 unexpected"
    else:  # a prefix map that renames nothing
        torch.save(Task(1).upstream.model.state_dict(), tmp_path / "source.pt")
        entry, options = "upstream", ["pretrained.upstream.prefix={classifier.: head.}"]
        refusal = f"error: pretrained.upstream.prefix: 'classifier.' matches no key in {tmp_path / 'source.pt'}"
    args = ["run", "ks", "--target-dir", tmp_path / "exp", "-c", TINY_YAML, *KS_ONE_UPDATE,
            f"pretrained.{entry}.source={tmp_path / 'source.pt'}", *options]
    result = cli(*args)
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1].startswith(refusal), result.stderr
    assert "allow_unmatched=true" in result.stderr and not (tmp_path / "exp" / "checkpoints" / "step-1.ckpt").exists()
    result = cli(*args, f"pretrained.{entry}.allow_unmatched=true")
    assert result.exit_code == 0, result.stderr
    (report,) = json.loads((tmp_path / "exp" / "pretrained" / "report.json").read_text())
    expected = 0 if case == "loads_nothing" else len(torch.load(tmp_path / "source.pt", weights_only=True))
    assert report["name"] == entry and report["loaded"] == expected


RANDOM_FROZEN = "upstream: the frozen wav2vec2 base upstream keeps its random initialisation"


@pytest.mark.e2e
def test_a_frozen_random_base_upstream_trains_with_a_warning(cli, tmp_path):
    result = cli("run", "ks", "--target-dir", tmp_path / "base", "build_upstream.name=wav2vec2", *KS_ONE_UPDATE)
    assert result.exit_code == 0, result.stderr
    assert f"{RANDOM_FROZEN} (build_upstream.ssl.init_seed): no pretrained: entry loads it" in result.stderr
    assert RANDOM_FROZEN in (tmp_path / "base" / "log.txt").read_text()
    # a custom architecture (tests, experiments) is not warned about
    result = cli("run", "ks", "--target-dir", tmp_path / "custom", "-c", TINY_YAML, *KS_ONE_UPDATE)
    assert result.exit_code == 0 and "keeps its random initialisation" not in result.stderr


UNREADABLE = {  # a file a weights-only load refuses: what the one line says it is (never "fairseq", nor a loader)
    "empty": (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    "text": (lambda path: path.write_text("wav2vec2 weights: see the README\n"), "is a text file (it begins 'wav2vec2 weights"),
    "pickle": (lambda path: torch.save({"saved": datetime.date(2026, 12, 4), "w": torch.ones(2)}, path),
               "holds Python objects besides tensors (datetime.date), which speechrecipe does not unpickle"),
    "truncated": (lambda path: path.write_bytes(save_bytes({"w": torch.ones(2)})[:300]), "is a damaged zip archive"),
}


def save_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_file_that_is_no_checkpoint_says_what_it_is_not_and_suggests_no_unpickling(cli, tmp_path, case):
    make, what = UNREADABLE[case]
    make(tmp_path / "weights.pt")
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", "-c", TINY_YAML, *KS_ONE_UPDATE,
                 f"pretrained.upstream={tmp_path / 'weights.pt'}")
    line = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 1 and line.startswith(f"error: pretrained.upstream: {tmp_path / 'weights.pt'} {what}"), line
    assert "a state dict of tensors" in line
    assert not any(word in result.stderr for word in ("fairseq", "weights_only=False", "trust"))
    assert not list((tmp_path / "exp" / "checkpoints").glob("*.ckpt"))


@pytest.mark.e2e
def test_a_state_entry_that_is_no_tensor_is_one_line_naming_it(cli, tmp_path):
    state = Task(1).upstream.model.state_dict()
    state["encoder.feature_projection.projection.weight"] = "see the paper"
    torch.save(state, tmp_path / "weights.pt")
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", "-c", TINY_YAML, *KS_ONE_UPDATE,
                 f"pretrained.upstream={tmp_path / 'weights.pt'}")
    assert result.exit_code == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: pretrained.upstream: encoder.feature_projection.projection.weight is a str in {tmp_path / 'weights.pt'}, "
        "not a tensor (and 0 more); give a state dict of tensors")


@pytest.mark.e2e
def test_a_fairseq_checkpoint_is_told_by_what_its_pickle_refers_to(cli, tmp_path):
    if importlib.util.find_spec("fairseq") is not None:
        pytest.skip("fairseq is installed: the file would be handed to it")
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {"w": torch.ones(2)}}, tmp_path / "fairseq.pt")
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", "-c", TINY_YAML, *KS_ONE_UPDATE,
                 f"pretrained.upstream={tmp_path / 'fairseq.pt'}")
    assert result.exit_code == 2 and "is a fairseq checkpoint; install fairseq to import it" in result.stderr


@pytest.mark.parametrize("source, line", [
    ("https://huggingface.co/facebook/wav2vec2-base/resolve/main/pytorch_model.bin",
     "error: pretrained.upstream.source: https://huggingface.co/facebook/wav2vec2-base/resolve/main/pytorch_model.bin "
     "is a URL; URLs and hub ids are not loaded: download the files first and give their path"),
    ("facebook/wav2vec2-base", "error: pretrained.upstream.source: facebook/wav2vec2-base does not exist; if it is a hub id: "
     "URLs and hub ids are not loaded, download the files first and give their path"),
])
def test_a_url_or_hub_id_source_says_it_is_not_downloaded_before_any_work(cli, tmp_path, source, line):
    result = cli("run", "ks", "--target-dir", tmp_path / "exp", f"pretrained.upstream={source}")
    assert result.exit_code == 2 and result.stderr.strip() == line
    assert not (tmp_path / "exp").exists()


def test_a_module_path_written_with_dots_on_the_command_line_says_how_to_write_it(cli, tmp_path):
    """Issue 23.8: `pretrained.downstream.heads.0=PATH` nests mappings; the line names the module path and the fix."""
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"")
    target = tmp_path / "exp"
    target.mkdir()
    (target / "notes.txt").write_text("kept")
    for written in ([f"pretrained.downstream.heads.0={weights}"],
                    [f"pretrained.downstream.heads.0.source={weights}", "pretrained.downstream.heads.0.strict=false"]):
        result = cli("run", "ks", "--target-dir", target, *written)
        assert result.exit_code == 2
        assert result.stderr.strip() == (
            "error: pretrained.downstream.heads.0: a module path is one key, but written with dots on the command line "
            f"it became nested keys; write 'pretrained={{downstream.heads.0: {weights}}}' (quoted), or "
            f"'downstream.heads.0: {weights}' under pretrained: in a -c file")
        assert [p.name for p in target.iterdir()] == ["notes.txt"]
    # the form the line suggests is one key
    result = cli("config", "ks", f"pretrained={{downstream.heads.0: {weights}}}")
    assert result.exit_code == 0, result.stderr
    assert "  downstream.heads.0: " in result.stdout


def test_a_hook_or_condition_that_is_not_a_function_is_one_config_line_before_any_work(cli, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    for option in ("hook", "condition"):
        result = cli("config", "ks", f"pretrained.downstream.source={tmp_path / 'weights.pt'}", f"pretrained.downstream.{option}=os:sep")
        assert result.exit_code == 2
        assert result.stderr.strip() == f"error: pretrained.downstream.{option}: os:sep is a str, not a function; give module:function"
