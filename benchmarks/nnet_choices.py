"""The timings behind the constants and the choices that ``speechbrain_crossmamba/nnet`` comments
describe, measured in this run (a comment quotes this command, not a number typed once).

1. ``causal_conv.depthwise_conv`` (shifted products) against ``conv1d`` on a streaming chunk's
   input (C=64, k=3, 8 output frames).
2. ``_scan_torch._BLOCK_ELEMENTS``: the ``torch`` scan, forward+backward, b=1, d=512, n=16, at
   L=1000-8000, with its block buffer at 2**20 elements (the default) and at 2**18.
3. ``_scan_torch._SLICE_ELEMENTS``: the ``torch`` scan, forward+backward, at b=250, d=512, n=16,
   L=9 (a dual-path model's inter-chunk axis), in one piece and in slices of 16, 28 (the default)
   and 64 rows.

Each timing is the median (and p95) of ``--reps`` calls after one untimed warm-up call, on
``--threads`` threads (default: the usable cores).

Usage::

    python benchmarks/nnet_choices.py              # about 1 min on 2 cores
"""

import argparse

import torch
from models import machine_stamp  # benchmarks/models.py, next to this file
from scan import (
    scan_inputs,  # benchmarks/scan.py, next to this file
    timed_ms,  # benchmarks/scan.py
)

from speechbrain_crossmamba.nnet import _scan_torch
from speechbrain_crossmamba.nnet.causal_conv import depthwise_conv
from speechbrain_crossmamba.nnet.selective_scan import selective_scan


def torch_scan_step(inputs):
    """One forward+backward of the ``torch`` scan backend on ``inputs``."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    y = selective_scan(**leaves, delta_softplus=True, backend="torch")
    y.backward(torch.ones_like(y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reps",
        type=int,
        default=20,
        help="timed calls per figure (median, p95)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stamp = machine_stamp()
    print(
        f"{stamp['device']}, {torch.get_num_threads()} threads, torch {stamp['torch']}, {stamp['date']}; "
        f"median (p95) of {args.reps} calls after a warm-up\n"
    )

    x, w = torch.randn(1, 64, 10), torch.randn(64, 3)
    with torch.inference_mode():
        shifted = timed_ms(lambda: depthwise_conv(x, w), 50 * args.reps)
        conv = timed_ms(
            lambda: torch.nn.functional.conv1d(x, w[:, None], groups=64),
            50 * args.reps,
        )
    print(
        f"1. depthwise conv, C=64, k=3, 8 output frames: depthwise_conv {1e3 * shifted[0]:.0f} us "
        f"({1e3 * shifted[1]:.0f}), conv1d {1e3 * conv[0]:.0f} us ({1e3 * conv[1]:.0f}): "
        f"conv1d / depthwise_conv {conv[0] / shifted[0]:.2f}x"
    )

    default = _scan_torch._BLOCK_ELEMENTS
    for L in (1000, 4000, 8000):
        inputs = scan_inputs(512, L)
        cells = []
        for elements in (default, 2**18):
            _scan_torch._BLOCK_ELEMENTS = elements
            cells.append(
                timed_ms(
                    lambda: torch_scan_step(inputs), max(3, args.reps // 4)
                )
            )
        _scan_torch._BLOCK_ELEMENTS = default
        print(
            f"2. torch scan fwd+bwd, b=1, d=512, L={L}: block 2**{default.bit_length() - 1} "
            f"{cells[0][0]:.1f} ms ({cells[0][1]:.1f}), 2**18 {cells[1][0]:.1f} ms ({cells[1][1]:.1f}): "
            f"2**18 / default {cells[1][0] / cells[0][0]:.2f}x"
        )

    default = _scan_torch._SLICE_ELEMENTS
    inputs = scan_inputs(512, 9, b=250)
    per_row = 512 * 16 * 9
    cells = []
    for rows in (250, 16, default // per_row, 64):
        _scan_torch._SLICE_ELEMENTS = rows * per_row
        cells.append(
            (
                rows,
                timed_ms(
                    lambda: torch_scan_step(inputs), max(3, args.reps // 4)
                ),
            )
        )
    _scan_torch._SLICE_ELEMENTS = default
    print(
        "3. torch scan fwd+bwd, b=250, d=512, L=9: "
        + ", ".join(
            f"{'one piece' if rows == 250 else f'slices of {rows} rows'} {ms:.0f} ms ({p95:.0f})"
            for rows, (ms, p95) in cells
        )
        + f" (default: slices of {default // per_row} rows)"
    )


if __name__ == "__main__":
    main()
