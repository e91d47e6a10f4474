"""Benchmark of the selective scan and of one CrossMamba layer against cross-attention.

Prints tables and writes a JSON file. Every figure is measured in this run; speed-ups are
ratios against a baseline measured in the same run, since machines are noisy.

Part 1 (scan): forward, and forward+backward, of the ``"torch"`` backend against ``"ref"``
(float64 loop) at b=1, n=16, d in {256, 512}, L in {250, 1000, 4000}: median time, peak
extra memory (RSS, measured in a fresh process per case) and max relative error against
float64. For L <= 1000 it also times a ``naive`` fp32 loop that indexes every step inside
autograd (the algorithm of mamba-ssm's ``selective_scan_ref``), whose backward is O(L^2).

Part 2 (layer): one bidirectional CrossMamba layer (d_model 256) against one
``torch.nn.MultiheadAttention`` cross-attention layer (8 heads, query length = key length
= L, ``need_weights=False`` so it runs PyTorch's fused attention) at inference, for L from
250 to 16,000: median time, ratio, and the log-log slope of time against L above L=1000.

Usage::

    python benchmarks/scan.py                 # full run (~10 min on 2 cores)
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

import torch

from speechbrain_crossmamba.nnet.cross_mamba import BiCrossMambaBlock
from speechbrain_crossmamba.nnet.selective_scan import selective_scan


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


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_case(case):
    """Runs in a fresh process: time, peak extra memory and error of one scan case."""
    torch.manual_seed(0)
    run_scan(case["backend"], scan_inputs(8, 16), case["train"])  # lazy runtime set-up
    inputs = scan_inputs(case["d"], case["L"])
    base = _rss_mb()
    t0 = time.perf_counter()
    y, grads = run_scan(case["backend"], inputs, case["train"])
    first = time.perf_counter() - t0
    peak = _peak_rss_mb() - base
    times = [first]
    for _ in range(case["reps"] - 1):
        t0 = time.perf_counter()
        run_scan(case["backend"], inputs, case["train"])
        times.append(time.perf_counter() - t0)
    y64, grads64 = run_scan("ref", scan_inputs(case["d"], case["L"], dtype=torch.float64), case["train"])
    rel = lambda a, b: ((a.double() - b).abs().max() / b.abs().max()).item()  # noqa: E731
    errors = {"y": rel(y, y64)}
    errors.update({f"d{k}": rel(g, grads64[k]) for k, g in grads.items()})
    return dict(case, ms=1e3 * statistics.median(times), peak_mb=max(peak, 0.0), errors=errors)


def scan_table(dims, lengths, reps):
    rows = []
    for train in (False, True):
        for d in dims:
            for L in lengths:
                for backend in ("torch", "ref", "naive"):
                    if backend == "naive" and L > 1000:
                        continue
                    case = dict(backend=backend, d=d, L=L, train=train, reps=reps)
                    if backend != "torch":
                        case["reps"] = 1 if (L >= 4000 or backend == "naive") else 2
                    out = subprocess.run(
                        [sys.executable, __file__, "--case", json.dumps(case)],
                        capture_output=True, text=True, check=True,
                    )
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    r = rows[-1]
                    print(
                        f"{'fwd+bwd' if train else 'fwd':8s} d={d:<4d} L={L:<5d} {backend:6s}"
                        f" {r['ms']:10.1f} ms  peak {r['peak_mb']:8.1f} MB"
                        f"  max rel err {max(r['errors'].values()):.1e}",
                        flush=True,
                    )
    return rows


def _median_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def slope(lengths, times, above=1000):
    pts = [(math.log(L), math.log(t)) for L, t in zip(lengths, times) if L > above]
    if len(pts) < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def layer_table(lengths, reps, d_model=256):
    torch.manual_seed(0)
    cross_mamba = BiCrossMambaBlock(d_model).eval()
    attention = torch.nn.MultiheadAttention(d_model, 8, batch_first=True).eval()
    rows = []
    for L in lengths:
        x, clue = torch.randn(1, L, d_model), torch.randn(1, L, d_model)
        n = reps if L <= 4000 else max(1, reps // 2)
        with torch.inference_mode():
            t_cm = _median_ms(lambda: cross_mamba(x, clue), n)
            t_at = _median_ms(lambda: attention(clue, x, x, need_weights=False), n)
        rows.append(dict(L=L, crossmamba_ms=t_cm, attention_ms=t_at, speedup=t_at / t_cm))
        print(f"L={L:<6d} CrossMamba {t_cm:9.1f} ms  attention {t_at:9.1f} ms  "
              f"attention/CrossMamba {t_at / t_cm:5.2f}x", flush=True)
    Ls = [r["L"] for r in rows]
    slopes = {
        "crossmamba": slope(Ls, [r["crossmamba_ms"] for r in rows]),
        "attention": slope(Ls, [r["attention_ms"] for r in rows]),
    }
    print(f"log-log slope above L=1000: CrossMamba {slopes['crossmamba']:.2f}, "
          f"attention {slopes['attention']:.2f}")
    return rows, slopes


def summary(scan_rows):
    """Speed-ups of "torch" against "ref" and "naive" at each (pass, d, L), same run."""
    by = {(r["train"], r["d"], r["L"], r["backend"]): r for r in scan_rows}
    out = []
    for (train, d, L, backend), r in by.items():
        if backend != "torch":
            continue
        row = dict(pass_="fwd+bwd" if train else "fwd", d=d, L=L, torch_ms=r["ms"])
        for base in ("ref", "naive"):
            if (train, d, L, base) in by:
                row[f"vs_{base}"] = by[(train, d, L, base)]["ms"] / r["ms"]
        out.append(row)
        ratios = "  ".join(f"{k} {v:6.1f}x" for k, v in row.items() if k.startswith("vs_"))
        print(f"{row['pass_']:8s} d={d:<4d} L={L:<5d} torch {r['ms']:8.1f} ms  {ratios}")
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
    dims, lengths = ([256], [250, 1000]) if args.quick else ([256, 512], [250, 1000, 4000])
    layer_lengths = [250, 1000, 2000] if args.quick else [250, 1000, 2000, 4000, 8000, 16000]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print("\n== selective scan, b=1, n=16 ==")
    scan_rows = scan_table(dims, lengths, args.reps)
    print("\n== speed-up of 'torch' (ratio of times measured in this run) ==")
    ratios = summary(scan_rows)
    print("\n== one bidirectional CrossMamba layer vs cross-attention, d_model=256, inference ==")
    layer_rows, slopes = layer_table(layer_lengths, args.reps)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(torch=torch.__version__, threads=torch.get_num_threads(),
                       scan=scan_rows, speedups=ratios, layer=layer_rows, slopes=slopes), f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
