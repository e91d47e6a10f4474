"""Benchmark of the selective scan and of one CrossMamba layer against cross-attention.

Prints tables and writes a JSON file. Every figure is measured in this run; speed-ups are
ratios against a baseline measured in the same run, since machines are noisy.

Part 1 (scan): forward, and forward+backward, of the fused C++ ``"cpu"`` backend against the
pure-PyTorch ``"torch"`` backend, n=16, at single-path shapes (b=1, d=256-512, L=250-4000;
b=4 and b=8 at L=1000-4000) and at the dual-path shapes of the CPU-size models (b=80, d=128,
L=100 intra-chunk; b=400, d=128, L=20 inter-chunk): median and p95 time of ``--reps`` calls
after one untimed full-size warm-up call, peak extra memory (the case's own VmHWM, in a fresh
process per case) and max relative error of the output and every gradient against the float64
``"ref"`` loop. At b=1, L <= 1000 it also times ``"ref"`` and a ``naive`` fp32 loop
that indexes every step inside autograd (mamba-ssm's ``selective_scan_ref``), O(L^2) backward.

Part 2 (layer): one bidirectional CrossMamba layer (d_model 256, each scan backend) against one
``torch.nn.MultiheadAttention`` cross-attention layer (8 heads, query length = key length
= L, ``need_weights=False`` so it runs PyTorch's fused attention) at inference, for L from
250 to 16,000: median (and p95) time after a warm-up call, ratio of medians, and the log-log
slope of time against L above L=1000.

Usage::

    python benchmarks/scan.py                 # full run (~13 min on 2 cores)
    python benchmarks/scan.py --quick         # small subset (~1 min)
    python benchmarks/scan.py --out results.json
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from models import (  # benchmarks/models.py, next to this file
    _peak_rss_mb,
    _reset_peak_rss,
    _rss_mb,
)

from speechbrain_crossmamba.nnet.cross_mamba import BiCrossMambaBlock
from speechbrain_crossmamba.nnet.selective_scan import selective_scan

SHAPES = [(1, 256, 250), (1, 256, 1000), (1, 512, 1000), (1, 512, 2000), (1, 512, 4000),
          (4, 512, 1000), (8, 128, 4000), (80, 128, 100), (400, 128, 20)]  # (b, d, L)
QUICK_SHAPES = [(1, 256, 250), (1, 512, 1000), (80, 128, 100)]


def scan_inputs(d, L, n=16, b=1, dtype=torch.float32, seed=0):
    """Inputs as a Mamba layer produces them (softplus Δ, S4D-real A)."""
    g = torch.Generator().manual_seed(seed)
    inputs = dict(
        u=torch.randn(b, d, L, generator=g),
        delta=torch.randn(b, d, L, generator=g) - 3.0,
        A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
        B=torch.randn(b, n, L, generator=g),
        C=torch.randn(b, n, L, generator=g),
        D=torch.ones(d),
        z=torch.randn(b, d, L, generator=g),
        delta_bias=torch.zeros(d),
    )
    return {k: v.to(dtype) for k, v in inputs.items()}


def naive_scan(u, delta, A, B, C, D, z, delta_bias, **_):
    """Baseline: a per-step indexed loop in fp32, as mamba-ssm's ``selective_scan_ref`` does."""
    delta = torch.nn.functional.softplus(delta + delta_bias[:, None])
    dA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    dBu = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        h = dA[:, :, i] * h + dBu[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, i]))
    y = torch.stack(ys, dim=2) + D[:, None] * u
    return y * torch.nn.functional.silu(z)


def run_scan(backend, inputs, train):
    leaves = {k: v.detach().requires_grad_(train) for k, v in inputs.items()}
    if backend == "naive":
        y = naive_scan(**leaves)
    else:
        y = selective_scan(**leaves, delta_softplus=True, backend=backend)
    grads = {}
    if train:
        y.backward(torch.ones_like(y))
        grads = {k: v.grad for k, v in leaves.items()}
    return y.detach(), grads


def measure_case(case):
    """Runs in a fresh process: time, peak extra memory and error of one scan case.

    The first full-size call is a warm-up (allocations, thread pool, lazy set-up) and is not
    timed; ``reps`` calls are timed after it (median and p95). Peak memory is this process's own
    high-water mark (VmHWM, ``models._peak_rss_mb``; ``ru_maxrss`` would carry the parent's peak
    into this child) over its RSS before the warm-up, the mark reset there (``_reset_peak_rss``).
    """
    torch.manual_seed(0)
    run_scan(case["backend"], scan_inputs(8, 16), case["train"])  # lazy runtime set-up
    inputs = scan_inputs(case["d"], case["L"], b=case["b"])
    _reset_peak_rss()
    base = _rss_mb()
    y, grads = run_scan(case["backend"], inputs, case["train"])  # warm-up, not timed
    times = []
    for _ in range(case["reps"]):
        t0 = time.perf_counter()
        run_scan(case["backend"], inputs, case["train"])
        times.append(1e3 * (time.perf_counter() - t0))
    peak = _peak_rss_mb() - base
    ref_inputs = scan_inputs(case["d"], case["L"], b=case["b"], dtype=torch.float64)
    y64, grads64 = run_scan("ref", ref_inputs, case["train"])
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()  # noqa: E731
    errors = {"y": rel(y, y64)}
    errors.update({f"d{k}": rel(g, grads64[k]) for k, g in grads.items()})
    return dict(case, ms=statistics.median(times), p95_ms=float(np.percentile(times, 95)),
                times_ms=times, peak_mb=max(peak, 0.0), errors=errors)


def scan_table(shapes, reps, slow_baselines=True):
    rows = []
    for train in (False, True):
        for b, d, L in shapes:
            for backend in ("cpu", "torch", "ref", "naive"):
                slow = backend in ("ref", "naive")
                if slow and not (slow_baselines and b == 1 and L <= 1000):
                    continue
                case = dict(backend=backend, b=b, d=d, L=L, train=train,
                            reps=(1 if backend == "naive" else 2) if slow else reps)
                out = subprocess.run(
                    [sys.executable, __file__, "--case", json.dumps(case)],
                    capture_output=True, text=True, check=True,
                )
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                r = rows[-1]
                print(
                    f"{'fwd+bwd' if train else 'fwd':8s} b={b:<4d} d={d:<4d} L={L:<5d} "
                    f"{backend:6s} {r['ms']:10.1f} ms (p95 {r['p95_ms']:.1f}, {r['reps']} runs)"
                    f"  peak {r['peak_mb']:8.1f} MB"
                    f"  max rel err {max(r['errors'].values()):.1e}",
                    flush=True,
                )
    return rows


def timed_ms(fn, reps):
    """Median and p95 (ms) of ``reps`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), float(np.percentile(times, 95))


def slope(lengths, times, above=1000):
    pts = [(math.log(L), math.log(t)) for L, t in zip(lengths, times) if L > above]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def layer_table(lengths, reps, d_model=256, backends=("cpu", "torch")):
    torch.manual_seed(0)
    cross_mamba = BiCrossMambaBlock(d_model).eval()
    attention = torch.nn.MultiheadAttention(d_model, 8, batch_first=True).eval()
    rows = []
    for L in lengths:
        x, clue = torch.randn(1, L, d_model), torch.randn(1, L, d_model)
        n = reps if L <= 4000 else max(1, reps // 2)
        row = dict(L=L, reps=n)
        with torch.inference_mode():
            row["attention_ms"], row["attention_p95_ms"] = timed_ms(
                lambda: attention(clue, x, x, need_weights=False), n)
            for backend in backends:
                for block in (cross_mamba.forward_block, cross_mamba.backward_block):
                    block.mixer.scan_backend = block.mixer.conv_backend = backend
                t, row[f"crossmamba_{backend}_p95_ms"] = timed_ms(lambda: cross_mamba(x, clue), n)
                row[f"crossmamba_{backend}_ms"] = t
                row[f"speedup_{backend}"] = row["attention_ms"] / t
        rows.append(row)
        cells = "  ".join(f"CrossMamba[{b}] {row[f'crossmamba_{b}_ms']:8.1f} ms "
                          f"({row[f'speedup_{b}']:4.2f}x)" for b in backends)
        print(f"L={L:<6d} attention {row['attention_ms']:8.1f} ms  {cells}  "
              "(x: attention / CrossMamba)", flush=True)
    Ls = [r["L"] for r in rows]
    slopes = {"attention": slope(Ls, [r["attention_ms"] for r in rows])}
    for b in backends:
        slopes[f"crossmamba_{b}"] = slope(Ls, [r[f"crossmamba_{b}_ms"] for r in rows])
    print("log-log slope above L=1000: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
    return rows, slopes


def summary(scan_rows):
    """Speed-ups of "cpu" against "torch" (and of both against "ref", "naive"), same run."""
    by = {(r["train"], r["b"], r["d"], r["L"], r["backend"]): r for r in scan_rows}
    out = []
    for (train, b, d, L, backend), r in by.items():
        if backend != "cpu":
            continue
        row = dict(pass_="fwd+bwd" if train else "fwd", b=b, d=d, L=L, cpu_ms=r["ms"],
                   cpu_peak_mb=r["peak_mb"])
        for base in ("torch", "ref", "naive"):
            if (train, b, d, L, base) in by:
                row[f"{base}_ms"] = by[(train, b, d, L, base)]["ms"]
                row[f"cpu_vs_{base}"] = row[f"{base}_ms"] / r["ms"]
        row["torch_peak_mb"] = by[(train, b, d, L, "torch")]["peak_mb"]
        out.append(row)
        ratios = "  ".join(f"{k[4:]} {v:6.1f}x" for k, v in row.items() if k.startswith("cpu_vs"))
        print(f"| {row['pass_']} | {b} | {d} | {L} | {row['torch_ms']:.1f} | {r['ms']:.1f} "
              f"| {row['cpu_vs_torch']:.2f}x | {row['torch_peak_mb']:.0f} / {r['peak_mb']:.0f} |"
              f"  {ratios}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subset")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--out", default="benchmarks/out/scan.json", help="JSON output")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return
    shapes = QUICK_SHAPES if args.quick else SHAPES
    layer_lengths = [250, 1000, 2000] if args.quick else [250, 1000, 2000, 4000, 8000, 16000]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, load {os.getloadavg()[0]:.2f}")
    print("\n== selective scan, n=16 ==")
    scan_rows = scan_table(shapes, args.reps, slow_baselines=not args.quick)
    print("\n== 'cpu' against 'torch' (ratio of medians measured in this run) ==")
    print("| pass | b | d | L | torch (ms) | cpu (ms) | torch / cpu | peak MB torch / cpu |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = summary(scan_rows)
    print("\n== one bidirectional CrossMamba layer vs cross-attention, d_model=256, inference ==")
    layer_rows, slopes = layer_table(layer_lengths, args.reps)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(command=" ".join(["python", *sys.argv]), date=time.strftime("%Y-%m-%d"),
                       machine=platform.processor() or platform.machine(),
                       torch=torch.__version__, threads=torch.get_num_threads(), reps=args.reps,
                       scan=scan_rows, speedups=ratios, layer=layer_rows, slopes=slopes), f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
