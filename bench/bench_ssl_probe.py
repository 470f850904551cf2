"""Frozen SSL probe side by side with s3prl: SUPERB ASV on a frozen wav2vec2-base, on the fly, from a dump, and in s3prl.

    .venv/bin/python bench/bench_ssl_probe.py --check-only                 # the folder + the hidden-state check
    .venv/bin/python bench/bench_ssl_probe.py --low 1 --high 2 --dump-low 2 --dump-high 12

1. A wav2vec2-base-sized Hugging Face folder with random weights (seeded; nothing can be downloaded here, and the
   work per second of audio is that of trained weights): `Wav2Vec2Model(Wav2Vec2Config()).save_pretrained` and
   `Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained`, outside the repository (--folder).
2. The same folder through speechrecipe's `pretrained.upstream` (Hugging Face format, torchaudio's import) with
   `build_upstream.ssl.normalize_waveform=true` (the feature extractor's do_normalize, which s3prl's wrapper applies):
   every hidden state against transformers' own model on the same audio, and against s3prl's `hf_wav2vec2_custom`
   upstream run in its own venv (--s3prl-venv), printed as the largest absolute difference per comparison.
3. SUPERB ASV, an update = s3prl's (gradient_accumulate 5 x batch 10): speechrecipe on the fly
   (`-c recipes/voxceleb1/asv.yaml`, s3prl's crops, plus the upstream overrides), speechrecipe from a dump
   (`speechrecipe run dump-feature` with the same upstream, then `build_upstream.name=precomputed`), and s3prl 0.4.18
   (`hf_wav2vec2_custom` with the folder, S3PRL_SHIM_FAST=1). The runs alternate (on the fly LOW, dump DUMP_LOW,
   s3prl LOW, then the HIGH runs); each time is the wall time of the training stage's process, so
   (HIGH - LOW) / (t_HIGH - t_LOW) cancels start-up. The dump is timed once (wall time of the whole command) and its
   size read from disk; the wall time to N updates including the dump is extrapolated from the measured rates.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_s3prl import MINI, REPO, S3PRL_SCRIPT, S3PRL_VENV, Ours, S3prl  # noqa: E402

UPSTREAM = ["build_upstream.name=wav2vec2", "build_upstream.ssl.size=base", "build_upstream.ssl.normalize_waveform=true"]
SUPERB_ASV_UPDATES = 200_000  # recipes/superb/asv.yaml train.total_steps
VOXCELEB1_HOURS = 352.0       # VoxCeleb1 (dev + test), what asv/sid dump


# ----- 1. the folder -------------------------------------------------------------------------------
def make_folder(folder: Path, seed: int = 0) -> Path:
    """A wav2vec2-base-sized Hugging Face folder with random weights (seeded) and its feature extractor."""
    if (folder / "preprocessor_config.json").is_file():
        return folder
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)  # base: 12 layers, 768 wide
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


# ----- 2. the same hidden states ------------------------------------------------------------------
S3PRL_HIDDEN = """
import sys, torch, s3prl.hub as hub
wav = torch.load(sys.argv[2])
model = getattr(hub, "hf_wav2vec2_custom")(sys.argv[1]).eval()
with torch.no_grad():
    hidden = model([wav])["hidden_states"]
torch.save([h[0] for h in hidden], sys.argv[3])
"""


def check_hidden_states(folder: Path, s3prl_venv: Path, work: Path, seconds: float = 3.0) -> dict:
    """Largest |difference| of every hidden state: speechrecipe (pretrained.upstream=folder, normalize_waveform)
    against transformers (the feature extractor, then the model) and s3prl's hf_wav2vec2_custom upstream."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from speechrecipe.engine import pretrained
    from speechrecipe.nn.ssl_upstream import SSLUpstream

    torch.manual_seed(1)
    wav = (0.1 * torch.randn(int(16000 * seconds)) + 0.05).float()  # an offset and a scale the normalisation removes
    holder = torch.nn.Module()
    holder.upstream = SSLUpstream("wav2vec2", "base", normalize_waveform=True)
    [loaded] = pretrained.apply({"upstream": str(folder)}, holder, work / "pretrained")
    with torch.no_grad():
        ours, _ = holder.upstream.eval()(wav[None], torch.tensor([wav.numel()]))
        ours = [h[0] for h in ours]
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
        inputs = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
        hf = Wav2Vec2Model.from_pretrained(folder).eval()
        theirs = [h[0] for h in hf(inputs.input_values, output_hidden_states=True).hidden_states]
    result = {"format": loaded["format"], "layers": len(ours), "frames": int(ours[0].shape[0]),
              "max_abs_diff_transformers": max(float((a - b).abs().max()) for a, b in zip(ours, theirs)),
              "max_abs_transformers": max(float(b.abs().max()) for b in theirs)}
    assert len(ours) == len(theirs) == 13
    python = s3prl_venv / "bin" / "python"
    if python.exists():
        torch.save(wav, work / "wav.pt")
        subprocess.run([str(python), "-W", "ignore", "-c", S3PRL_HIDDEN, str(folder), str(work / "wav.pt"),
                        str(work / "s3prl_hidden.pt")], check=True, capture_output=True, env={**os.environ, "S3PRL_SHIM_FAST": "1"})
        s3prl = torch.load(work / "s3prl_hidden.pt")
        assert len(s3prl) == len(ours), (len(s3prl), len(ours))
        result["max_abs_diff_s3prl"] = max(float((a - b[: a.shape[0]]).abs().max()) for a, b in zip(ours, s3prl))
        result["s3prl_frames"] = int(s3prl[0].shape[0])
    return result


# ----- 3. the runs --------------------------------------------------------------------------------
class OnTheFly(Ours):
    """speechrecipe, the recipe with the SSL upstream computed in every batch (frozen)."""

    def __init__(self, work: Path, corpus: Path, accumulate: int, extra: list[str]):
        super().__init__(work, corpus, accumulate)
        self.extra = extra

    def command(self, target: Path, steps: int, *stages: str) -> list[str]:
        return super().command(target, steps, *stages) + self.extra


class S3prlSSL(S3prl):
    """s3prl's SuperbASV stage 2 with hf_wav2vec2_custom loading the folder (the set-up run, stages 0-4, uses fbank:
    its outputs, the split and the speaker table, do not depend on the upstream)."""

    def __init__(self, work: Path, corpus: Path, script: Path, venv: Path, accumulate: int, folder: Path):
        setup = work / "setup" / "exp"
        if all((setup / name).is_file() for name in self.SETUP_FILES):  # stages 0-1 of a set-up run are enough
            self.work, self.script, self.venv, self.accumulate, self.setup_dir = work, script, venv, accumulate, setup.parent
            self.eer = "(set-up run not scored)"
        else:
            super().__init__(work, corpus, script, venv, accumulate)
        self.folder = folder

    def train_seconds(self, steps: int) -> float:
        real_run = subprocess.run

        def with_upstream(command, **kwargs):  # the parent's stage-2 command line, with the SSL upstream
            if "s3prl.main" in command:
                at = command.index("--build_upstream.name")
                command = [*command[:at + 1], "hf_wav2vec2_custom", "--build_upstream.path_or_url", str(self.folder),
                           *command[at + 2:]]
            return real_run(command, **kwargs)

        subprocess.run = with_upstream
        try:
            return super().train_seconds(steps)
        finally:
            subprocess.run = real_run


def dump(corpus: Path, folder: Path, target: Path, dtype: str) -> dict:
    """`speechrecipe run dump-feature` of the corpus (every utterance asv reads) with the upstream: wall time, bytes."""
    command = [sys.executable, "-m", "speechrecipe", "run", "dump-feature", "--target-dir", str(target),
               "prepare_data.corpus=voxceleb1", f"prepare_data.dataset_root={corpus}", "prepare_data.check_audio=header",
               *UPSTREAM, f"pretrained.upstream={folder}", f"dump.dtype={dtype}"]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - began
    features = target / "features"
    size = sum(p.stat().st_size for p in features.rglob("*") if p.is_file())
    summary = json.loads((target / "results" / "results.json").read_text())
    return {"command": " ".join(command[1:]), "wall_s": seconds, "bytes": size, "summary": summary}


def audio_seconds(corpus: Path) -> float:
    import soundfile as sf

    return sum(sf.info(str(p)).duration for p in corpus.rglob("*") if p.suffix in (".wav", ".flac"))


def extrapolate(rates: dict[str, float], dump_s: float, hours: float, dump_rate_h_per_s: float) -> list[str]:
    """Wall time to N updates (hours), the dump included for the dump row, on the corpus measured and on VoxCeleb1."""
    lines = ["| N updates | s3prl | speechrecipe on the fly | speechrecipe from a dump, mini (dump %.0f s) | "
             "from a dump, VoxCeleb1 (dump %.1f h, extrapolated) |" % (dump_s, VOXCELEB1_HOURS / dump_rate_h_per_s / 3600),
             "|---|---|---|---|---|"]
    vox_dump = VOXCELEB1_HOURS / dump_rate_h_per_s
    for n in (100, 1_000, 10_000, 50_000, SUPERB_ASV_UPDATES):
        lines.append(f"| {n:,} | {n / rates['s3prl'] / 3600:.2f} h | {n / rates['fly'] / 3600:.2f} h | "
                     f"{(dump_s + n / rates['dump']) / 3600:.2f} h | {(vox_dump + n / rates['dump']) / 3600:.1f} h |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/w2v2-base-random"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_ssl_probe"))
    parser.add_argument("--corpus", type=Path, default=MINI)
    parser.add_argument("--s3prl-venv", type=Path, default=S3PRL_VENV)
    parser.add_argument("--accumulate", type=int, default=5, help="batches of 10 per update (5: s3prl's)")
    parser.add_argument("--low", type=int, default=1, help="updates of the short on-the-fly and s3prl runs")
    parser.add_argument("--high", type=int, default=2)
    parser.add_argument("--dump-low", type=int, default=2, help="updates of the short run from the dump")
    parser.add_argument("--dump-high", type=int, default=12)
    parser.add_argument("--systems", default="fly,dump,s3prl")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--skip-check", action="store_true", help="no hidden-state check (done by an earlier run)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict = {"began": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": [os.getloadavg()[0]]}
    folder = make_folder(args.folder)
    if not args.skip_check:
        report["hidden_states"] = check_hidden_states(folder, args.s3prl_venv, args.work)
        print(json.dumps(report["hidden_states"]), flush=True)
    if args.check_only:
        return
    systems = args.systems.split(",")
    out = args.work / f"report-{'-'.join(systems)}.json"
    report["command"] = sys.argv
    dump_dir = args.work / "dump"
    if "dump" in systems:
        if not (dump_dir / "results" / "results.json").is_file():
            report["dump"] = dump(args.corpus, folder, dump_dir, "float16")
            (args.work / "dump.json").write_text(json.dumps(report["dump"], indent=1))
        report["dump"] = json.loads((args.work / "dump.json").read_text())
        report["load"].append(os.getloadavg()[0])
        print(f"dump: {report['dump']['wall_s']:.0f} s, {report['dump']['bytes'] / 1e6:.1f} MB "
              f"(load {report['load'][-1]:.1f})", file=sys.stderr, flush=True)
    runners = {
        "fly": (OnTheFly(args.work / "fly", args.corpus, args.accumulate, [*UPSTREAM, f"pretrained.upstream={folder}"]),
                args.low, args.high),
        "dump": (OnTheFly(args.work / "fromdump", args.corpus, args.accumulate,
                          ["build_upstream.name=precomputed", f"build_upstream.precomputed.path={dump_dir}"]),
                 args.dump_low, args.dump_high),
        "s3prl": (S3prlSSL(args.work / "s3prl", args.corpus, S3PRL_SCRIPT, args.s3prl_venv, args.accumulate, folder)
                  if "s3prl" in systems else None, args.low, args.high),
    }
    times: dict[str, dict[int, float]] = {s: {} for s in systems}
    for which in (1, 2):
        for system in systems:
            runner, low, high = runners[system]
            steps = low if which == 1 else high
            times[system][steps] = runner.train_seconds(steps)
            report["load"].append(os.getloadavg()[0])
            print(f"{system} {steps} updates: {times[system][steps]:.1f} s (load {report['load'][-1]:.1f})",
                  file=sys.stderr, flush=True)
            report["times"] = times
            out.write_text(json.dumps(report, indent=1))
    rates = {s: (runners[s][2] - runners[s][1]) / (times[s][runners[s][2]] - times[s][runners[s][1]]) for s in systems}
    report["rates"] = rates
    out.write_text(json.dumps(report, indent=1))
    print(f"\n{report['began']}, {os.cpu_count()} cores, load average during the runs "
          f"{min(report['load']):.1f}-{max(report['load']):.1f}\n")
    base = rates.get("s3prl")
    print("| system | updates/s | s/update | ratio to s3prl |\n|---|---|---|---|")
    for system, rate in rates.items():
        print(f"| {system} | {rate:.4f} | {1 / rate:.1f} | {rate / base:.1f}x |" if base else f"| {system} | {rate:.4f} | {1 / rate:.1f} | |")
    if base and "dump" in rates:
        print(f"\nfrom dump / s3prl: {rates['dump'] / base:.1f}x")
    if "dump" in report and len(rates) == 3:
        hours = audio_seconds(args.corpus) / 3600
        rate = hours / report["dump"]["wall_s"]
        print(f"\ndump: {report['dump']['wall_s']:.0f} s for {hours * 60:.1f} min of audio, {report['dump']['bytes'] / 1e6:.1f} MB "
              f"float16 = {report['dump']['bytes'] / hours / 1e9:.2f} GB per hour of audio (float32: twice)\n")
        # in s3prl's updates of 5 batches (with --accumulate 1 a measured update is one batch; the optimizer step is
        # a few ms beside a batch's seconds, so 5 batches cost 5 times one)
        per_update = {k: v * args.accumulate / 5 for k, v in rates.items()}
        print("\n(wall time to N updates of 5 batches of 10)\n" + "\n".join(extrapolate(per_update, report["dump"]["wall_s"], hours, rate)))


if __name__ == "__main__":
    main()
