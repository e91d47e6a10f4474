"""The paper's comparison, reproduced on this machine: quality, speed and memory of every fusion.

One command trains every fusion variant (CrossMamba, cross-attention, plain Mamba, concat,
FiLM) with the same seed, data and wall-clock budget on both offline tasks (SynthSpeakers with
an enrollment clue, SynthEvents with a label clue), through the shared recipe
(``speechbrain_crossmamba.training.main``: the best validation checkpoint is tested), then:

- **quality**: SI-SNRi and SDRi on the fixed test sets, mean and 95 % confidence interval over
  mixtures (normal approximation, 1.96 standard errors);
- **size**: parameters, and MACs per second of audio counted by ``torch.utils.flop_counter``
  (matrix products and convolutions; the elementwise work of the pure-PyTorch scan is not
  counted, so Mamba models are under-counted);
- **speed and memory**: each trained speaker model at inference on 2, 4, 8, 16 and 32 s (batch 1,
  median of ``--reps`` runs after a warm-up, each case in a fresh process): real-time factor,
  peak memory above the loaded model, and time relative to the Transformer host measured in
  the same run;
- **fusion alone**: one fusion layer of each variant against the number of frames L.

Writes ``docs/results.md`` (tables, the machine, the command) and PNG plots next to it. The
paper's targets are reported, never asserted. Usage::

    python benchmarks/paper_table.py                     # default budget: < 1 h on 2 CPU cores
    python benchmarks/paper_table.py --budget 10         # minutes of training per model
    python benchmarks/paper_table.py --variants CrossMamba-TSE Transformer-TSE --lengths 2 8
    python benchmarks/paper_table.py --budget 5 --batch_size=8   # other --key=value: recipe overrides
"""

import argparse
import csv
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import torch
from models import _peak_rss_mb, count_parameters  # benchmarks/models.py, next to this file
from scan import _median_ms, slope  # benchmarks/scan.py

from speechbrain_crossmamba.lobes.models import CONFIGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"speakers": "hparams/crossmamba_tse.yaml", "events": "hparams/crossmamba_tse_label.yaml"}
BASELINE = "Transformer-TSE"
FUSION_LENGTHS = (250, 1000, 4000, 16000)


def mean_ci(values):
    """Mean and the half-width of its 95 % confidence interval (1.96 standard errors).

    Example
    -------
    >>> [round(v, 3) for v in mean_ci([1.0, 3.0])]
    [2.0, 1.96]
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, 1.96 * statistics.stdev(values) / math.sqrt(len(values))


def macs_per_second(model, clue, sample_rate, seconds=1.0):
    """MACs of one forward on ``seconds`` of audio, per second, by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    mixture = torch.randn(1, int(seconds * sample_rate))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(mixture, clue)
    return counter.get_total_flops() / 2 / seconds


def train_one(task, variant, args, data_folder):
    """Trains and tests one variant on one task; returns its quality and size row."""
    from speechbrain_crossmamba.training import main

    block, fusion = CONFIGS[variant]
    out = os.path.join(args.work, task, variant)
    shutil.rmtree(out, ignore_errors=True)  # same start for every variant: no resume
    argv = [
        os.path.join(ROOT, TASKS[task]), f"--output_folder={out}", f"--data_folder={data_folder}",
        f"--block_variant={block}", f"--fusion_variant={fusion}", f"--seed={args.seed}",
        f"--max_train_minutes={args.budget}", "--number_of_epochs=100000",
        f"--epoch_size={args.epoch_size}", f"--n_valid_mixtures={args.n_valid}",
        f"--n_test_mixtures={args.n_test}", "--n_examples=0", "--noprogressbar", *args.train_args,
    ]
    t0 = time.perf_counter()
    brain = main(argv)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "test_results.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["ID"] != "avg"]
    extractor = brain.modules.extractor.eval()
    classes = getattr(brain.hparams, "classes", None)  # a label task's clue is over its classes
    clue = _clue(brain.hparams.sample_rate, len(classes) if classes else None)
    row = {"task": task, "variant": variant, "epochs": brain.hparams.epoch_counter.current,
           "mixtures_seen": brain.hparams.epoch_counter.current * args.epoch_size,
           "params_m": count_parameters(extractor)[0] / 1e6, "wall_s": wall, "n_test": len(rows),
           "gmacs_per_s": macs_per_second(extractor, clue, brain.hparams.sample_rate) / 1e9,
           "pretrained": os.path.join(out, "pretrained")}
    for key in ("si-snri", "sdri"):
        row[key], row[key + "_ci"] = mean_ci([float(r[key]) for r in rows])
    print(f"[{task}] {variant}: SI-SNRi {row['si-snri']:.2f} ± {row['si-snri_ci']:.2f} dB, "
          f"SDRi {row['sdri']:.2f} ± {row['sdri_ci']:.2f} dB, {row['epochs']} epochs", flush=True)
    return row


def _clue(sample_rate, num_classes=None, seconds=2.0):
    """A 2 s random enrollment [1, T], or a one-hot label [1, num_classes] for a label model."""
    if num_classes:
        return torch.nn.functional.one_hot(torch.tensor([3]), num_classes).float()
    return torch.randn(1, int(seconds * sample_rate), generator=torch.Generator().manual_seed(1))


def _load_trained(folder):
    """The trained extractor of a ``pretrained/`` folder (its YAML and weights), in eval mode."""
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(folder, "hyperparams.yaml")) as f:
        model = load_hyperpyyaml(f)["extractor"]
    model.load_state_dict(torch.load(os.path.join(folder, "extractor.ckpt")))
    return model.eval()


def measure_case(case):
    """Runs in a fresh process: one trained model on ``seconds`` of audio (median, peak RSS)."""
    torch.set_num_threads(case["threads"])
    model = _load_trained(case["pretrained"])
    rate = model.sample_rate
    mixture = torch.randn(1, int(case["seconds"] * rate), generator=torch.Generator().manual_seed(0))
    clue = _clue(rate)
    with torch.inference_mode():
        base = _peak_rss_mb()
        ms = _median_ms(lambda: model(mixture, clue), case["reps"])
    return dict(case, ms=ms, rtf=ms / 1e3 / case["seconds"], extra_mb=max(_peak_rss_mb() - base, 0.0))


def speed_table(rows, args):
    """Times every trained speaker model at every length, each case in its own process."""
    cases = []
    for row in rows:
        for seconds in args.lengths:
            case = {"variant": row["variant"], "pretrained": row["pretrained"], "seconds": seconds,
                    "reps": args.reps, "threads": args.threads}
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--case", json.dumps(case)],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"timing {row['variant']} at {seconds} s failed: {out.stderr[-500:]}")
            cases.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {row['variant']:16s} {seconds:4g} s  {cases[-1]['ms']:9.1f} ms  "
                  f"RTF {cases[-1]['rtf']:.3f}  +{cases[-1]['extra_mb']:.0f} MB", flush=True)
    base = {c["seconds"]: c["ms"] for c in cases if c["variant"] == BASELINE}
    for c in cases:
        c["vs_baseline"] = base[c["seconds"]] / c["ms"] if c["seconds"] in base else float("nan")
    return cases


def fusion_table(rows, args):
    """One fusion point of each trained speaker model (the first: query and fusion layer) against
    the number of frames L, with the model's enrollment embedding as the clue."""
    out = []
    for row in rows:
        model = _load_trained(row["pretrained"])
        fusion = next(m for name, m in model.named_modules() if name.endswith("fusions"))
        layer = next(iter(fusion.values()))
        with torch.inference_mode():
            clue = model.encode_clue(_clue(model.sample_rate), None)
            for L in args.fusion_lengths:
                x = torch.randn(1, L, clue.shape[-1])
                ms = _median_ms(lambda: layer(x, clue), args.reps)
                out.append({"variant": row["variant"], "L": L, "ms": ms})
    return out


def plot(quality, cases, fusion, folder):
    """PNG plots: quality per variant, time and memory against audio length (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(10, 3.5), squeeze=False)
    for ax, task in zip(axes[0], TASKS):
        rows = [r for r in quality if r["task"] == task]
        ax.bar([r["variant"] for r in rows], [r["si-snri"] for r in rows],
               yerr=[r["si-snri_ci"] for r in rows], capsize=4)
        ax.set_title(f"{task}: SI-SNRi (dB), 95 % CI")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "quality.png"), dpi=110)
    for key, name, label in (("ms", "time.png", "time (ms)"), ("extra_mb", "memory.png", "peak memory (MB)")):
        if not cases:
            break
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for variant in dict.fromkeys(c["variant"] for c in cases):
            pts = [(c["seconds"], max(c[key], 1e-3)) for c in cases if c["variant"] == variant]
            fitted = slope(*zip(*pts), above=0) if key == "ms" else None
            ax.loglog(*zip(*pts), marker="o", label=variant + (f" (slope {fitted:.2f})" if fitted else ""))
        ax.set_xlabel("audio (s)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, name), dpi=110)
    plt.close("all")


def targets(quality, cases):
    """The paper's claims as (claim, measured, met) rows; None where a variant was not run."""
    by = {(r["task"], r["variant"]): r["si-snri"] for r in quality}
    rows = []
    for task in TASKS:
        cm, tr, mb = (by.get((task, v)) for v in ("CrossMamba-TSE", BASELINE, "Mamba-TSE"))
        if cm is not None and tr is not None:
            rows.append((f"{task}: CrossMamba >= Transformer - 0.3 dB", f"{cm - tr:+.2f} dB", cm >= tr - 0.3))
        if cm is not None and mb is not None:
            rows.append((f"{task}: CrossMamba >= Mamba + 1 dB", f"{cm - mb:+.2f} dB", cm >= mb + 1.0))
    cm8 = [c for c in cases if c["variant"] == "CrossMamba-TSE" and c["seconds"] == 8]
    if cm8 and not math.isnan(cm8[0]["vs_baseline"]):
        rows.append(("CrossMamba >= 1.4x faster than Transformer at 8 s", f"{cm8[0]['vs_baseline']:.2f}x",
                     cm8[0]["vs_baseline"] >= 1.4))
    cm = [(c["seconds"], c["ms"]) for c in cases if c["variant"] == "CrossMamba-TSE"]
    if len(cm) >= 2:
        fitted = slope(*zip(*cm), above=0)
        rows.append(("CrossMamba time slope against length <= 1.1", f"{fitted:.2f}", fitted <= 1.1))
    return rows


def write_report(path, quality, cases, fusion, machine, args):
    """``docs/results.md``: the command, the machine, the tables and the plots."""
    lines = ["# The paper's comparison, measured here", "",
             f"Command: `{machine['command']}`  ", f"Machine: {machine['device']}; torch {machine['torch']}, "
             f"{args.threads} threads; {machine['date']}.  ",
             f"Training budget: {args.budget} min per model, seed {args.seed}, epochs of {args.epoch_size} "
             f"mixtures; test sets of {args.n_test} mixtures. MACs: `torch.utils.flop_counter` "
             "(matrix products and convolutions only: the pure-PyTorch scan's elementwise work is not counted).",
             "", "## Quality (fixed test sets, mean ± 95 % CI over mixtures)", "",
             "| task | variant | SI-SNRi (dB) | SDRi (dB) | epochs | mixtures seen | params (M) | GMACs / s audio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in quality:
        lines.append(f"| {r['task']} | {r['variant']} | {r['si-snri']:.2f} ± {r['si-snri_ci']:.2f} "
                     f"| {r['sdri']:.2f} ± {r['sdri_ci']:.2f} | {r['epochs']} | {r['mixtures_seen']} "
                     f"| {r['params_m']:.3f} | {r['gmacs_per_s']:.2f} |")
    lines += ["", f"## Inference speed and memory (speaker models, batch 1, median of {args.reps})", "",
              f"Time ratio: {BASELINE} time / this model's time, same run (> 1: faster than the Transformer).",
              "", "| variant | audio (s) | time (ms) | real-time factor | peak memory (MB) | vs Transformer |",
              "|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        lines.append(f"| {c['variant']} | {c['seconds']:g} | {c['ms']:.1f} | {c['rtf']:.3f} "
                     f"| {c['extra_mb']:.0f} | {c['vs_baseline']:.2f}x |")
    lines += ["", "## Fusion layer alone (one layer, batch 1, median)", "",
              "| variant | " + " | ".join(f"L={L}" for L in args.fusion_lengths) + " |",
              "|---|" + "---:|" * len(args.fusion_lengths)]
    for variant in dict.fromkeys(f["variant"] for f in fusion):
        ms = [f["ms"] for f in fusion if f["variant"] == variant]
        lines.append(f"| {variant} | " + " | ".join(f"{t:.2f} ms" for t in ms) + " |")
    lines += ["", "## The paper's claims", "", "| claim | measured | met |", "|---|---:|---|"]
    lines += [f"| {claim} | {value} | {'yes' if met else 'no'} |" for claim, value, met in targets(quality, cases)]
    lines += ["", "![quality](quality.png) ![time](time.png) ![memory](memory.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=2.5, help="training minutes per model (default 2.5)")
    parser.add_argument("--variants", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--lengths", nargs="+", type=float, default=[2, 4, 8, 16, 32])
    parser.add_argument("--fusion-lengths", nargs="+", type=int, default=list(FUSION_LENGTHS))
    parser.add_argument("--reps", type=int, default=3, help="timed runs per case (median)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--epoch-size", type=int, default=100, help="mixtures per training epoch")
    parser.add_argument("--n-valid", type=int, default=40, help="validation mixtures")
    parser.add_argument("--n-test", type=int, default=200, help="test mixtures")
    parser.add_argument("--data", default=os.path.join(ROOT, "data"), help="synthetic corpora folder")
    parser.add_argument("--work", default=os.path.join(ROOT, "results", "paper_table"), help="runs folder")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs"), help="report folder")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args, args.train_args = parser.parse_known_args()  # the rest: recipe overrides (--key=value)
    if args.case:
        print(json.dumps(measure_case(json.loads(args.case))))
        return
    if BASELINE not in args.variants:
        args.variants.append(BASELINE)  # every ratio is against it
    machine = {"command": shlex.join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
               "device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"}
    quality = [train_one(task, v, args, args.data) for task in args.tasks for v in args.variants]
    speakers = [r for r in quality if r["task"] == "speakers"]  # timed: the enrollment models
    print("\n== inference ==", flush=True)
    cases = speed_table(speakers, args)
    fusion = fusion_table(speakers, args)
    os.makedirs(args.out, exist_ok=True)
    plot(quality, cases, fusion, args.out)
    write_report(os.path.join(args.out, "results.md"), quality, cases, fusion, machine, args)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "quality": quality, "speed": cases, "fusion": fusion}, f, indent=1)
    print(f"\nwrote {os.path.join(args.out, 'results.md')}")


if __name__ == "__main__":
    main()
