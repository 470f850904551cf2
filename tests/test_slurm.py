"""Issue 29: recipes/slurm/ against a real Slurm: a single-node cluster (slurmctld and slurmd on this machine,
munge) started here as root, a tiny asv recipe submitted with recipes/slurm/one_node.sbatch and preempted once
mid-training, either by `scontrol requeue` or by SIGUSR1 (`scancel --signal=USR1`: speechrecipe saves and exits 75,
the script requeues the job itself); the job's results against an uninterrupted run.

Slurm holds a requeued job two minutes or more (reason BeginTime); the test releases it in a later whole second
than the one in which the old job's credential was revoked (see the wait in the test). Needs root and Debian's
slurm-wlm and munge (.ci/run installs them); `make test-slurm` runs this file alone.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from helpers import assert_identical, final_state

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "recipes" / "slurm"
TINY = REPO / "tests" / "fixtures" / "tiny_asv.yaml"
RECIPE = ["asv", "-c", str(TINY), "train.save_step=2", "train.log_step=2"]


def test_the_batch_scripts_parse():
    for script in sorted(SCRIPTS.glob("*.sbatch")):
        subprocess.run(["bash", "-n", str(script)], check=True)
        assert "#SBATCH --requeue" in script.read_text() and "#SBATCH --signal=USR1@" in script.read_text()


def slurm_missing() -> str | None:
    if os.geteuid() != 0:
        return "starts slurmctld and slurmd as root"
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(b) is None]
    return f"needs {', '.join(missing)} (apt-get install slurm-wlm munge; .ci/run does)" if missing else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Slurm cluster on this machine: {"env": environment for its commands, "folder": its files}."""
    why = slurm_missing()
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("slurm")
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        subprocess.run(["munged", "--force"], check=True, capture_output=True)
    host, port = socket.gethostname().split(".")[0], random.Random(os.getpid()).randrange(20000, 30000, 2)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 3 // 4
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=speechrecipe-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        f"SlurmctldPort={port}", f"SlurmdPort={port + 1}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory", "JobCompType=jobcomp/none",
        "AccountingStorageType=accounting_storage/none", "MpiDefault=none", "ReturnToService=2", "KillWait=30",
        "JobRequeue=1", f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True)
    subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True)
    try:
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout:
            assert time.time() < deadline, (folder / "slurmctld.log").read_text()[-2000:]
            time.sleep(0.5)
        yield {"env": env, "folder": folder}
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        for daemon in ("slurmd", "slurmctld"):
            pid = folder / f"{daemon}.pid"
            if pid.is_file():
                subprocess.run(["kill", pid.read_text().strip()], capture_output=True)


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "PREEMPTED"}


def job_fields(env: dict, job: str) -> dict[str, str]:
    """`scontrol show job -o`'s KEY=VALUE fields (JobState, Reason, Restarts, EligibleTime, ...); {} when the
    controller did not answer. Unlike squeue, scontrol keeps a finished job (MinJobAge, 300 s): its final state."""
    result = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True)
    return dict(f.split("=", 1) for f in result.stdout.split() if "=" in f) if result.returncode == 0 else {}


def seconds_until(stamp: str) -> float:
    try:
        return datetime.fromisoformat(stamp).timestamp() - time.time()
    except ValueError:  # "Unknown", "None"
        return 0.0


def report(cluster: dict, output: Path, job: str) -> str:
    """For an assertion: the job's state, its output, and the end of both daemons' logs."""
    fields = job_fields(cluster["env"], job)
    state = " ".join(f"{k}={fields.get(k)}" for k in ("JobState", "Reason", "Restarts", "ExitCode", "EligibleTime"))
    logs = "".join(f"\n--- {name} (end)\n" + "".join((cluster["folder"] / name).read_text().splitlines(True)[-25:])
                   for name in ("slurmctld.log", "slurmd.log"))
    job_output = output.read_text() if output.is_file() else "(none)"
    return f"job {job}: {state}\n--- {output.name}\n{job_output}{logs}"


def test_the_batch_scripts_are_accepted_by_sbatch(cluster):
    for script, extra in (("one_node.sbatch", []), ("multi_node.sbatch", ["--nodes=1", "--gpus-per-node=0"])):
        result = subprocess.run(["sbatch", "--test-only", "--cpus-per-task=1", *extra,
                                 "--export=ALL,TARGET_DIR=x,CACHE_DIR=y", str(SCRIPTS / script), "asv"],
                                env=cluster["env"], capture_output=True, text=True)
        assert result.returncode == 0 and "to start at" in result.stderr, result.stderr


@pytest.mark.e2e
# SIGUSR1 was out of the suite for a while: it hung once because the test released the requeued job at once, in the
# second its credential was revoked, and Slurm refused the relaunch (see the wait below; an earlier failure left no
# logs). The `scontrol requeue` case had the same race; its job takes longer to end, so it lost it less often.
@pytest.mark.parametrize("preempt", ["scontrol requeue", "SIGUSR1"])
def test_a_job_preempted_mid_training_ends_with_the_results_of_an_uninterrupted_run(cluster, tmp_path, preempt):
    """`scontrol requeue`: Slurm ends the job and queues it again. SIGUSR1 (what --signal sends before the time
    limit): speechrecipe saves at the current update and exits 75, and the script requeues the job itself."""
    env, cache = cluster["env"], tmp_path / "cache"
    speechrecipe = str(Path(sys.executable).parent / "speechrecipe")
    reference = tmp_path / "reference"
    subprocess.run([speechrecipe, "run", *RECIPE, "--target-dir", str(reference), "--cache-dir", str(cache)],
                   check=True, capture_output=True)

    target = tmp_path / "slurm_run"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", f"--chdir={tmp_path}", f"--output={tmp_path}/job-%j.out",
         f"--export=ALL,TARGET_DIR={target},CACHE_DIR={cache},SPEECHRECIPE={speechrecipe}",
         str(SCRIPTS / "one_node.sbatch"), *RECIPE], env=env, capture_output=True, text=True, check=True)
    job = submitted.stdout.strip().split(";")[0]
    output = tmp_path / f"job-{job}.out"
    deadline = time.time() + 600
    while not (target / "checkpoints" / "step-4.ckpt").is_file():
        state = job_fields(env, job).get("JobState")  # None: the controller did not answer this time
        assert state in ("PENDING", "CONFIGURING", "RUNNING", None), report(cluster, output, job)
        assert time.time() < deadline, "no step-4.ckpt within 600 s\n" + report(cluster, output, job)
        time.sleep(0.1)
    assert not (target / "checkpoints" / "step-24.ckpt").is_file(), "training ended before the preemption"
    if preempt == "SIGUSR1":
        subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    else:
        subprocess.run(["scontrol", "requeue", job], env=env, check=True)
    # Wait for a final state. A requeued job (either way) is held PENDING, reason BeginTime, EligibleTime about two
    # minutes ahead (164 s from requeue to restart here, unreleased): slurmd refuses a launch credential that is not
    # newer, in whole seconds, than the revocation it recorded when the job ended. Released at once, the relaunch
    # could fall in the second of that revocation, and the job ended FAILED without its results ("Killing
    # non-startable batch JobId=N: Job credential revoked" in slurmctld.log, "Job N already killed, do not launch
    # batch job" in slurmd.log). The revocation comes before the job is PENDING again, so the release waits for the
    # next whole second after that is seen.
    while (state := job_fields(env, job)).get("JobState") not in FINAL:
        if state.get("JobState") == "PENDING" and seconds_until(state.get("EligibleTime", "")) > 10:
            time.sleep(1.05 - time.time() % 1)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, capture_output=True)
        assert time.time() < deadline, "the job did not end within 600 s\n" + report(cluster, output, job)
        time.sleep(0.5)
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "1", report(cluster, output, job)
    assert (target / "results" / "results.json").is_file(), report(cluster, output, job)
    out = output.read_text()
    assert "(restart 0)" in out and "(restart 1)" in out, out
    if preempt == "SIGUSR1":
        assert "stopped early and resumable (exit 75): requeueing job" in out, out
    assert "training continues from" in (target / "log.txt").read_text() or "resum" in (target / "log.txt").read_text()
    assert_identical(final_state(target), final_state(reference))
    results = json.loads((target / "results" / "results.json").read_text())
    expected = json.loads((reference / "results" / "results.json").read_text())
    assert results["voxceleb1_o"]["eer"] == expected["voxceleb1_o"]["eer"]
    assert results["voxceleb1_o"]["intervals"] == expected["voxceleb1_o"]["intervals"]
