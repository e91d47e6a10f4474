"""GPU check of CrossMamba in one run of a few minutes: scan backends' agreement, one layer
against cross-attention, and the paper-size CrossMamba-TSE against Transformer-TSE.

1. **Agreement**: the selective-scan backends ``triton``, ``torch`` and ``cuda`` (mamba-ssm,
   where it imports), forward output and the gradients of u, delta, A, B, C, D, z and
   delta_bias (delta_softplus on), against the float64 ``ref`` loop, at the scan shapes of the
   default model (``hparams/crossmamba_tse.yaml``: N=64, expand 2, d_state 16 -> d=128, n=16;
   K=50 chunks of 16 ms frames, batch 4 of 2 s: intra-chunk b=48, L=50, inter-chunk b=200, L=12)
   and of the paper-size model (``hparams/models/tse_paper.yaml``: N=256 -> d=512, n=16; K=250
   at 1000 frames/s, 4 s: intra b=34, L=250, inter b=250, L=34; single path 8 s: L=8000 and
   32 s: L=32000), in fp32 and with bf16 activations (u, delta, B, C, z; A, D, delta_bias stay
   fp32, as under autocast). The ``ref`` loop is sequential and would take minutes at L=32000:
   there the oracle is the fp32 ``torch`` backend (it takes no fp64), which is itself checked
   against ``ref`` at the other shapes. A backend that cannot run is a ``skipped`` /
   ``unavailable`` row, one that raises an ``error`` row; ``ok`` compares the errors with
   ``TOLERANCES`` (information, the run never stops on it).
2. **Layer**: one bidirectional CrossMamba layer (``BiCrossMambaBlock``, d_model 256, d_state 16,
   as ``benchmarks/scan.py``) against one cross-attention fusion (``CrossAttentionFusion``,
   8 heads, no feed-forward: query = clue, key = value = mixture, PyTorch's fused attention) at
   batch 1, L = 1k, 2k, ..., 64k, in fp32 and under bf16 autocast: forward (inference mode) and
   forward+backward, median time and peak memory. A size that runs out of memory is an ``oom``
   row and the larger sizes of that case are skipped.
3. **Models**: paper-size CrossMamba-TSE and Transformer-TSE (``benchmarks/models.py``'s
   ``load_model``, ``hparams/models/tse_paper.yaml``), dual-path host (the paper's) then
   single-path host, on 2, 4, 8, 16 and 32 s of 8 kHz audio with a 2 s enrollment: inference
   (batch 1) and one training step (forward, MSE, backward, Adam; batch ``--train-batch``),
   median time and peak memory. The paper reports CrossMamba-TSE over 40 % faster at inference.

Timing: CUDA events around each call after warm-up, median of up to ``--reps`` calls (see
``gpu_check_helpers.measure``). A time budget (``--budget-s``) ends the sections at 30 %, 60 %
and 100 % of it: no case starts that is predicted (from the last size) to end later; those rows
say ``skipped``. The outputs (``gpu_check.json``: machine, per-row numbers; ``gpu_check.md``:
the tables) are written after every section and at exit, whatever fails. Section 1 needs only
torch (and triton); sections 2 and 3 also need speechbrain and hyperpyyaml: where they do not
import, that section is one line under "Errors" and the others still run.

Usage::

    python benchmarks/gpu_check.py --out DIR      # one GPU: ends by --budget-s (420 s) + a case
    python benchmarks/gpu_check.py --device cpu --quick --out DIR   # dry run, tiny shapes
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --device cpu --quick   # + triton (~1 min)
"""

import argparse
import os
import sys
import time

T_START = time.perf_counter()
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [p for p in (HERE, os.path.dirname(HERE)) if p not in sys.path]
from gpu_check_helpers import (  # noqa: E402  (benchmarks/ is not a package)
    Budget,
    machine_info,
    measure,
    one_line,
    write_outputs,
)
from gpu_check_scan import SCAN_SHAPES, agreement  # noqa: E402
from gpu_check_speed import layer, models  # noqa: E402

from speechbrain_crossmamba.nnet import selective_scan as ss  # noqa: E402

PLANS = {  # what each mode runs
    "full": dict(
        scan_shapes=SCAN_SHAPES,
        d_model=256,
        lengths=[1024 * 2**k for k in range(7)],  # 1k ... 64k
        size="paper",
        overrides="",
        seconds=[2.0, 4.0, 8.0, 16.0, 32.0],
        enroll_samples=None,  # models.make_inputs': 2 s
        reps=7,
        max_case_s=4.0,
    ),
    "quick": dict(
        scan_shapes=[
            ("tiny chunks", 3, 8, 4, 20, "ref"),
            ("tiny single-path", 1, 16, 4, 150, "ref"),
            ("tiny long", 1, 16, 4, 400, "torch"),
        ],
        d_model=16,
        lengths=[32, 64],
        size="cpu",
        overrides="N: 16\nN_encoder: 16\nnum_layers: 1\nenroll_hidden: 16\n"
        "d_ffn: 32\nkernel_size: 32\nK: 20\nsp_layers: 2\nsp_fusion_layers: [0, 1]\n",
        seconds=[0.25, 0.5],
        enroll_samples=4000,
        reps=2,
        max_case_s=0.1,
    ),
}
SHARES = {"agreement": 0.3, "layer": 0.6, "models": 1.0}  # of the budget
SECTIONS = {
    "agreement": lambda run: agreement(run, SHARES["agreement"]),
    "layer": lambda run: layer(run, SHARES["layer"]),
    "models": lambda run: models(run, SHARES["models"]),
}


class Run:
    """What the sections share: arguments, plan, device, budget, report, scan backend.

    Arguments
    ---------
    args : argparse.Namespace
        From :func:`parse_args`.
    """

    def __init__(self, args):
        script = __name__ == "__main__"  # then the budget counts the imports
        self.budget = Budget(args.budget_s, T_START if script else None)
        self.args = args
        self.plan = PLANS["quick" if args.quick else "full"]
        self.max_case_s = args.max_case_s or self.plan["max_case_s"]
        self.device = torch.device(args.device)
        self.report = {"quick": args.quick, "budget_s": args.budget_s}
        self.report.update(complete=False, errors=[], elapsed_s=0.0)
        self.backend = None

    def measure(self, fn):
        """:func:`gpu_check_helpers.measure` with this run's repeats."""
        reps = self.args.reps or self.plan["reps"]
        return measure(fn, self.device, reps, self.max_case_s)

    def resolve_backend(self):
        """The scan backend of the timings: the requested one if usable, else ``"auto"``."""
        requested = self.args.scan_backend
        info = {"requested": requested, "used": requested}
        try:
            info["resolved"] = ss.resolve_backend(requested, self.device)
        except Exception as err:  # e.g. "triton" before it is in BACKENDS
            info.update(
                used="auto", resolved=ss.resolve_backend("auto", self.device)
            )
            info["note"] = (
                f"{requested!r} is unusable ({one_line(err)}): 'auto'"
            )
        self.backend = info["used"]
        return info


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--device", choices=["cuda", "cpu"], default="cuda")
    add("--quick", action="store_true", help="tiny shapes, 2 reps: a dry run")
    add("--budget-s", type=float, default=420.0, help="time budget (s)")
    add("--out", default=os.environ.get("OUT") or "results/gpu_check")
    add("--scan-backend", default="auto", help="scan backend of the timings")
    add("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    add("--reps", type=int, help="timed calls per case (default 7, quick 2)")
    add("--max-case-s", type=float, help="rough seconds of timed calls a case")
    add("--train-batch", type=int, default=1, help="training step batch")
    return p.parse_args(argv)


def main(argv=None):
    """Runs the sections, writing the outputs after each and at the end.

    Arguments
    ---------
    argv : list of str, optional
        The command line (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0, or 1 when a section (or the set-up) failed: see the report's ``errors``.
    """
    args = parse_args(argv)
    run, threads = Run(args), torch.get_num_threads()
    if args.quick and run.device.type == "cpu":
        torch.set_num_threads(1)  # a dry run: no fight over busy cores
    report = run.report
    argv = sys.argv[1:] if argv is None else argv
    report.update(command=[sys.executable, __file__, *argv], args=vars(args))
    for key in ("agreement", "layer", "layer_pairs", "models", "model_pairs"):
        report[key] = []
    report["agreement_note"] = (
        "max abs: max |got - oracle| over y and the gradients; rel: that over max "
        "|oracle|. Oracle ref: the float64 loop on the same values; torch: the fp32 "
        "torch backend."
    )
    try:
        report["machine"] = machine_info(run.device)
        if run.device.type == "cuda" and report["machine"]["gpu"] is None:
            raise RuntimeError("--device cuda, but CUDA is not available")
        report["scan_backend"] = run.resolve_backend()
        for name in args.sections:
            t0 = time.perf_counter()
            try:
                SECTIONS[name](run)
            except Exception as err:  # the next section still runs
                report["errors"].append(f"section {name}: {one_line(err)}")
            report[f"{name}_s"] = time.perf_counter() - t0
            report["elapsed_s"] = run.budget.elapsed()
            write_outputs(args.out, report)
            print(f"{name}: {report[f'{name}_s']:.1f} s", flush=True)
        report["complete"] = True
    except BaseException as err:
        report["errors"].append(f"stopped: {one_line(err)}")
        if not isinstance(err, Exception):
            raise
    finally:
        torch.set_num_threads(threads)
        report.setdefault("machine", {"device": args.device})
        report["elapsed_s"] = run.budget.elapsed()
        paths = write_outputs(args.out, report)
        print(f"wrote {paths[0]} and {paths[1]} ({report['elapsed_s']:.1f} s)")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
