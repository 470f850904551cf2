"""Bad input and a hostile environment end in ONE clear line and the right exit code, through the real
CLI: YAML syntax errors, values out of range (config, --dry-run and run alike), a malformed problem,
a misspelled test-set key, --device cuda without CUDA, a symlink loop in the corpus, empty or repeated
trials, a read-only target_dir, a full disk at start and during a checkpoint, a file in the working
folder named like a dependency, progress output in a pipe."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MINI_VOX = REPO / "speechrecipe" / "assets" / "mini" / "voxceleb1"
TINY = Path(__file__).parent / "fixtures" / "tiny_asv.yaml"
QUICK = ("-c", str(TINY), "train.total_steps=4", "train.log_step=2", "train.save_step=2", "train.eval_step=4")


def one_line(result_stderr: str) -> str:
    """The single error line of a failed command; nothing else that looks like a failure."""
    errors = [line for line in result_stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result_stderr
    assert "Traceback" not in result_stderr and "Logging error" not in result_stderr, result_stderr
    return errors[0]


def speechrecipe(*args, cwd: Path | None = None, fsize: int | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (`python -m speechrecipe`), optionally with a file-size limit (a full disk)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "speechrecipe", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600, preexec_fn=limit if fsize is not None else None)


@pytest.mark.parametrize("command", ["run", "config", "stages"])
def test_yaml_syntax_error_is_one_line_exit_2(cli, tmp_path, command):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  total_steps: [1,\n")
    extra = ["--target-dir", tmp_path / "exp"] if command == "run" else []
    result = cli(command, "asv", "-c", bad, *extra)
    assert result.exit_code == 2
    assert one_line(result.stderr) == f"error: {bad}: not valid YAML (line 3, column 1: did not find expected node content)"


@pytest.mark.parametrize("how", [("config",), ("run", "--dry-run"), ("run",)])
def test_values_out_of_range_are_refused_alike_by_config_dry_run_and_run(cli, tmp_path, how):
    target = tmp_path / "exp"
    extra = ["--target-dir", target] if how[0] == "run" else []
    for override, line in (
        ("train.total_steps=0", "train.total_steps: 0 is out of range; expected a value in [1, inf)"),
        ("train.save_step=-1", "train.save_step: -1 is out of range; expected a value in [1, inf)"),
        ("build_batch_sampler.batch_size=0", "build_batch_sampler.batch_size: 0 is out of range; expected a value in [1, inf)"),
        ("train.eval_step=null", "train.eval_step: null is not allowed; expected a value in [1, inf)"),
    ):
        result = cli(*how, "asv", *extra, override)
        assert result.exit_code == 2 and one_line(result.stderr) == f"error: {line}"
    assert not target.exists()  # refused before any work


def test_config_refuses_what_run_refuses_for_the_optimizer_class(cli):
    result = cli("config", "asv", "build_optimizer.name=Adamm")
    assert result.exit_code == 2 and "build_optimizer.name: 'Adamm' is not a class in torch.optim; did you mean Adam?" in one_line(result.stderr)


def test_switching_scheduler_class_drops_the_old_class_arguments(cli):
    result = cli("config", "asv", "build_scheduler.name=CosineAnnealingLR", "build_scheduler.conf.T_max=10")
    assert result.exit_code == 0, result.stderr
    assert "build_scheduler:\n  name: CosineAnnealingLR\n  conf:\n    T_max: 10\n" in result.stdout
    # the same class keeps the shipped arguments; only the given ones change
    result = cli("config", "asv", "build_scheduler.conf.gamma=0.1")
    assert "  name: StepLR\n  conf:\n    step_size: 1000\n    gamma: 0.1\n" in result.stdout


@pytest.mark.parametrize("spec", [":ASV", "asv:", "my module:X", "a..b:C"])
def test_malformed_problem_is_one_line(cli, spec):
    result = cli("config", spec)
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith(f"error: problem '{spec}': expected a built-in name, package.module:Class")


def test_misspelled_test_set_key_names_it(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "prepare_data.test_sets=[{nme: o, trial_file: veri_test2.txt}]")
    assert result.exit_code == 2
    assert one_line(result.stderr) == "error: prepare_data.test_sets[0].nme: unknown key; did you mean name?"


def test_device_cuda_without_cuda_is_refused_before_any_stage(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for extra in (["--dry-run"], []):
        result = cli("run", "asv", "--target-dir", tmp_path / "exp", "--device", "cuda", *extra)
        assert result.exit_code == 2 and one_line(result.stderr).startswith("error: --device cuda: no CUDA device")
    assert not (tmp_path / "exp").exists()


@pytest.mark.e2e
def test_symlink_loops_in_the_corpus_are_listed_in_bad_audio(cli, tmp_path):
    corpus = Path(shutil.copytree(MINI_VOX, tmp_path / "vox"))
    speaker = corpus / "wav" / "id10001"
    (speaker / "loop").symlink_to(speaker, target_is_directory=True)  # a folder loop: scanned once
    (speaker / "fi7YOBJS3GD" / "00099.wav").symlink_to(speaker / "fi7YOBJS3GD" / "00099.wav")  # points at itself
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache", *QUICK,
                 f"prepare_data.dataset_root={corpus}", "--stop", "0")
    assert result.exit_code == 0, result.stderr
    assert f"skipping {speaker / 'loop'}: a link back to a folder already scanned (a loop)" in result.stderr
    (report,) = (tmp_path / "cache" / "asv").glob("*/bad_audio.tsv")
    assert f"{speaker / 'fi7YOBJS3GD' / '00099.wav'}\tbroken or looping symbolic link" in report.read_text().splitlines()


@pytest.mark.e2e
def test_empty_trial_list_is_refused_and_repeated_trials_scored_once(cli, tmp_path):
    corpus = Path(shutil.copytree(MINI_VOX, tmp_path / "vox"))
    (corpus / "empty.txt").write_text("\n")
    common = ("--cache-dir", tmp_path / "cache", *QUICK, f"prepare_data.dataset_root={corpus}", "--stop", "0")
    result = cli("run", "asv", "--target-dir", tmp_path / "a", *common,
                 "prepare_data.test_sets=[{name: e, trial_file: empty.txt}]")
    assert result.exit_code == 1
    assert one_line(result.stderr).startswith(f"error: {corpus / 'empty.txt'}: holds no trials")
    lines = (corpus / "veri_test2.txt").read_text().splitlines()
    (corpus / "twice.txt").write_text("\n".join(lines + lines[:5]) + "\n")
    result = cli("run", "asv", "--target-dir", tmp_path / "b", *common, "prepare_data.test_sets=[{name: t, trial_file: twice.txt}]")
    assert result.exit_code == 0, result.stderr
    assert f"{corpus / 'twice.txt'}: 5 repeated trial lines left out (each pair is scored once)" in result.stderr
    (trials,) = (tmp_path / "cache" / "asv").glob("*/trials_t.tsv")
    assert len(trials.read_text().splitlines()) == len(set(lines))


def test_read_only_target_dir_is_one_line(cli, tmp_path):
    target = tmp_path / "exp"
    target.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the folder immutable instead
        if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
    else:
        target.chmod(0o555)
    try:
        result = cli("run", "asv", "--target-dir", target, *QUICK, "--stop", "0")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(target)])
        target.chmod(0o755)
    assert result.exit_code == 1
    line = one_line(result.stderr)
    assert line.startswith(f"error: {target}: cannot write there (") and "choose another --target-dir" in line
    assert "log.txt" not in line


@pytest.mark.e2e
def test_full_disk_at_start_is_one_line_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "exp"
    result = speechrecipe("run", "asv", "--target-dir", target, "--cache-dir", tmp_path / "cache", *QUICK, fsize=1500)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith(f"error: {target / 'config.yaml'}: File too large;")
    assert not list(target.glob("*.tmp"))


def test_unwritable_log_is_one_warning_not_a_traceback(cli, tmp_path):
    target = tmp_path / "exp"
    target.mkdir()
    (target / "log.txt").symlink_to("/dev/full")  # every write: No space left on device
    result = cli("run", "asv", "--target-dir", target, "--cache-dir", tmp_path / "cache", *QUICK, "--stop", "0")
    assert result.exit_code == 0, result.stderr
    assert "Logging error" not in result.stderr and "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "cannot write" in line]
    assert warnings == [f"warning: {target / 'log.txt'}: cannot write (No space left on device); logging to the console only"]


@pytest.mark.e2e
def test_full_disk_during_a_checkpoint_is_one_line(cli, tmp_path):
    target, cache = tmp_path / "exp", tmp_path / "cache"
    assert cli("run", "asv", "--target-dir", target, "--cache-dir", cache, *QUICK, "--stop", "1").exit_code == 0
    result = speechrecipe("run", "asv", "--target-dir", target, "--cache-dir", cache, *QUICK, "--start", "2", fsize=200_000)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"error: could not write {target / 'checkpoints' / 'step-2.ckpt'}: File too large;"), line
    assert "enforce fail" not in result.stderr
    assert not list((target / "checkpoints").glob("*.tmp"))


@pytest.mark.e2e
def test_a_module_in_the_working_folder_cannot_shadow_a_dependency(tmp_path):
    marker = tmp_path / "shadowed"
    (tmp_path / "tqdm.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit('the shadow ran')\n")
    result = speechrecipe("run", "asv", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache", *QUICK,
                          "--stop", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


@pytest.mark.e2e
def test_progress_in_a_pipe_is_plain_lines_every_log_step(cli, tmp_path):
    result = cli("run", "asv", "--target-dir", tmp_path / "exp", "--cache-dir", tmp_path / "cache", *QUICK, "--stop", "2")
    assert result.exit_code == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr
    train = [line for line in result.stderr.splitlines() if line.startswith("train: step ")]
    assert [line.split(",")[0] for line in train] == ["train: step 2/4 (50%)", "train: step 4/4 (100%)"]
    assert all("loss=" in line for line in train)
