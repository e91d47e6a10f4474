#!/usr/bin/env python3
"""Plots validation curves of training runs from their ``train_log.txt`` files.

Usage::

    python benchmarks/training_curves.py results/exp/a results/exp/b --out docs/training/x.png
    python benchmarks/training_curves.py results/exp/a --x steps --labels "warm start"

Each run is an output folder (or its ``train_log.txt``). The curve is the valid SI-SNRi per
epoch against the training minutes (or optimizer steps) that ``TSEBrain`` logs; separation
epochs of a warm start (``sep-si-snri``: the better of the two outputs) are drawn dashed.
Also prints each run's table: epoch, stage, steps, minutes, valid SI-SNRi.

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import os
import re

FIELD = re.compile(r"([a-z][a-z_ -]*?): (separation|extraction|[-+0-9.e]+)")


def read_log(path):
    """The epoch lines of a ``train_log.txt`` as dicts (numbers as floats).

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train_log.txt")
    >>> _ = open(path, "w").write("epoch: 1, lr: 1.00e-03, stage: separation, steps: 200, "
    ...     "minutes: 0.5 - train loss: 3.1 - valid sep-si-snr: 1.0, valid sep-si-snri: 2.5\\n")
    >>> row = read_log(path)[0]
    >>> row["stage"], row["steps"], row["valid sep-si-snri"]
    ('separation', 200.0, 2.5)
    """
    rows = []
    for line in open(path, encoding="utf-8"):
        if not line.startswith("epoch:"):
            continue
        row = {}
        for key, value in FIELD.findall(line.replace(" - ", ", ")):
            row[key.strip()] = value if value in ("separation", "extraction") else float(value)
        rows.append(row)
    return rows


def curve(rows, x="minutes"):
    """``(xs, ys, separating)`` of the valid SI-SNRi of each epoch."""
    xs, ys, sep = [], [], []
    for row in rows:
        value = row.get("valid si-snri", row.get("valid sep-si-snri"))
        if value is None or x not in row:
            continue
        xs.append(row[x])
        ys.append(value)
        sep.append("valid sep-si-snri" in row)
    return xs, ys, sep


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="output folders or train_log.txt files")
    parser.add_argument("--labels", nargs="*", help="one label per run (default: folder names)")
    parser.add_argument("--x", choices=["minutes", "steps", "epoch"], default="minutes")
    parser.add_argument("--out", help="PNG to write (default: show nothing, print tables)")
    parser.add_argument("--title", default="valid SI-SNRi")
    args = parser.parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    curves = []
    for run, label in zip(args.runs, labels):
        path = run if run.endswith(".txt") else os.path.join(run, "train_log.txt")
        rows = read_log(path)
        print(f"## {label} ({path})")
        for row in rows:
            value = row.get("valid si-snri", row.get("valid sep-si-snri"))
            print(f"  epoch {int(row['epoch']):3d}  {row.get('stage', '-'):10s}  "
                  f"steps {row.get('steps', float('nan')):6.0f}  min {row.get('minutes', float('nan')):6.2f}  "
                  f"valid SI-SNRi {value:6.2f} dB")
        curves.append((label, curve(rows, args.x)))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, (xs, ys, sep) in curves:
            line = ax.plot(xs, ys, marker=".", label=label)[0]
            split = [i for i, s in enumerate(sep) if s]
            if split:  # separation epochs dashed, in the same colour
                ax.plot(xs[: split[-1] + 1], ys[: split[-1] + 1], "--", color=line.get_color(), lw=2.5, alpha=0.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel({"minutes": "training minutes", "steps": "optimizer steps", "epoch": "epoch"}[args.x])
        ax.set_ylabel("valid SI-SNRi (dB)")
        ax.set_title(args.title + "\n(dashed: warm-start separation epochs, the better output)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        fig.savefig(args.out, dpi=100)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
