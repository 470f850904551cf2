"""What the ks default model (TC-ResNet8 with augmentation) costs against SUPERB's linear probe.

    .venv/bin/python bench/bench_ks_default.py --num-clips 1200 --steps 100 --repeats 2

On the synthetic Speech Commands tree of bench_ks.py, runs `speechrecipe run ks --stop 2` with the
defaults and with the previous defaults (the probe: 80 fbank bins, a 256-unit projection, mean pooling,
a linear layer, no augmentation), alternating (probe, default, probe, default, ...) so both see the same
machine load, each run in its own process. Averages utt_per_s and data_wait over the log windows after
the first. Prints one Markdown row per run and the default model's parameters and multiply-accumulates
per second of audio (convolutions and linear layers, counted with forward hooks on a 1 s clip).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ks import PROBE, build_tree, run_case  # noqa: E402
CASES = {"probe (previous default)": PROBE, "TC-ResNet8 + augmentation (default)": []}


def model_cost() -> tuple[int, int]:
    """(parameters, multiply-accumulates for 1 s of audio) of the default ks downstream."""
    import torch
    from torch import nn

    from speechrecipe.config import load_config
    from speechrecipe.nn.classifiers import build_classifier

    conf = load_config("ks")
    model = build_classifier(conf.build_downstream, conf.build_upstream.fbank.n_mels, [12]).eval()
    frames = 1 + (16000 - 400) // 160  # 25 ms windows every 10 ms, no centre padding
    macs = 0

    def count(module: nn.Module, args, out: torch.Tensor) -> None:
        nonlocal macs
        per_output = module.in_features if isinstance(module, nn.Linear) else module.weight[0].numel()
        macs += out.numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, frames, conf.build_upstream.fbank.n_mels), torch.tensor([frames]))
    for hook in hooks:
        hook.remove()
    return sum(p.numel() for p in model.parameters()), macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-clips", type=int, default=1200)
    parser.add_argument("--steps", type=int, default=100, help="updates per run (batch size 32)")
    parser.add_argument("--log-step", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_ks_default_"))
    rows = []
    try:
        build_tree(work / "sc", args.num_clips)
        for i in range(args.repeats):
            for name, overrides in CASES.items():
                target = work / f"exp-{i}-{len(rows)}"
                rows.append((name, run_case(work / "sc", target, "pack:0:2", args.steps, args.log_step, "cpu", overrides)))
    finally:
        shutil.rmtree(work)
    print("| run | model | utterances/s | data wait |")
    print("|---|---|---|---|")
    for i, (name, r) in enumerate(rows):
        print(f"| {i + 1} | {name} | {r['utt_per_s']:,.0f} | {100 * r['data_wait']:.1f} % |")
    for name in CASES:
        rates = [r["utt_per_s"] for n, r in rows if n == name]
        print(f"{name}: mean {sum(rates) / len(rates):,.0f} utt/s")
    params, macs = model_cost()
    print(f"default model: {params:,} parameters, {macs / 1e6:.2f} M multiply-accumulates per second of audio")
    print(f"(load average after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", file=sys.stderr)


if __name__ == "__main__":
    main()
