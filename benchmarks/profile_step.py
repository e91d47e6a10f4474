"""Profiles one training step (or one inference) of a target extractor with ``torch.profiler``.

Prints the operators that take the most self CPU time, so that the next thing to fuse or
replace is measured, not guessed. The model is built like ``benchmarks/models.py`` builds it.

Usage::

    python benchmarks/profile_step.py --config CrossMamba-TSE --overrides "kernel_size: 32"
    python benchmarks/profile_step.py --config CrossMamba-TSE --backend torch --infer --seconds 8
"""

import argparse
import time

import torch
from models import ENROLL_SECONDS, SAMPLE_RATE, load_model, set_backend
from torch.profiler import ProfilerActivity, profile

from speechbrain_crossmamba.lobes.models import CONFIGS


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="CrossMamba-TSE")
    parser.add_argument("--size", choices=["cpu", "paper"], default="cpu")
    parser.add_argument("--host", choices=["dualpath", "singlepath"], default="dualpath")
    parser.add_argument("--backend", choices=["auto", "cpu", "torch"], default="auto")
    parser.add_argument("--overrides", default="", help='e.g. "kernel_size: 32"')
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--infer", action="store_true", help="profile inference (batch 1)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps, after one warm-up")
    parser.add_argument("--rows", type=int, default=25, help="operators shown")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.size, args.host, args.config, "enrollment", args.overrides)
    set_backend(model, args.backend)
    b = 1 if args.infer else args.batch
    mixture = torch.randn(b, int(args.seconds * SAMPLE_RATE))
    clue = torch.randn(b, int(ENROLL_SECONDS * SAMPLE_RATE))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        if args.infer:
            with torch.inference_mode():
                model.eval()(mixture, clue)
            return
        opt.zero_grad()
        model.train()(mixture, clue).pow(2).mean().backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    ms = 1e3 * (time.perf_counter() - t0) / args.steps
    print(f"{args.config} [{args.backend}] {'inference' if args.infer else 'training step'}, "
          f"batch {b} x {args.seconds:g} s: {ms:.0f} ms per step under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
