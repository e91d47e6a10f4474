"""Time and peak memory of a pretrained extractor on one long input: windowed (the default) and in
one pass.

The input is the SynthSpeakers test mixtures joined end to end up to ``--seconds`` (8 kHz), with
the first one's enrollment; the time does not depend on what is said. Each mode runs in a fresh
process: it loads the model (``TargetSpeakerExtraction.from_hparams``), extracts 1 s once
untimed (lazy set-up), then extracts the whole input ``--repeats`` times through
``extract_batch``: the median and range of those times, and the process's peak RSS (VmHWM, as
``/usr/bin/time -v`` reports it: torch, the model and the extraction together). *windowed*:
the model's ``window_seconds`` (10 s windows, 1 s cross-fades); *one pass*: the whole input at
once.

Usage::

    python benchmarks/long_audio.py                                   # 60 s, the README's figure
    python benchmarks/long_audio.py --model pretrained/crossmamba-tse-synthspeakers-8k --seconds 120
"""

import argparse
import csv
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from models import (
    _peak_rss_mb,
    machine_stamp,
)  # benchmarks/models.py, next to this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("windowed", "one pass")


def long_input(data, seconds):
    """The test mixtures of ``data`` joined up to ``seconds`` [T], and the first one's enrollment [T_e]."""
    from speechbrain.dataio.dataio import read_audio

    with open(os.path.join(data, "test.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    parts, total, want = [], 0, int(seconds * 8000)
    for row in rows:
        parts.append(read_audio(row["mix_wav"]).float())
        total += len(parts[-1])
        if total >= want:
            break
    if total < want:
        raise RuntimeError(
            f"{data}/test.csv holds {total / 8000:.0f} s of mixtures, fewer than {seconds:g} s"
        )
    return torch.cat(parts)[:want], read_audio(rows[0]["enroll_wav"]).float()


def measure(case):
    """Runs in a fresh process: one mode on the long input; returns its times and peak RSS."""
    from speechbrain_crossmamba.inference import TargetSpeakerExtraction

    torch.set_num_threads(case["threads"])
    model = TargetSpeakerExtraction.from_hparams(source=case["model"])
    if case["mode"] == "one pass":
        model.window_seconds = (
            case["seconds"] + 1.0
        )  # longer than the input: no windows
    mix, enroll = long_input(case["data"], case["seconds"])
    model.extract_batch(
        mix[None, :8000], clue=enroll[None]
    )  # lazy set-up, not timed
    times = []
    for _ in range(case["repeats"]):
        t0 = time.perf_counter()
        out = model.extract_batch(mix[None], clue=enroll[None])
        times.append(time.perf_counter() - t0)
    assert out.shape[-1] == mix.shape[-1]
    params = sum(p.numel() for p in model.mods.extractor.parameters())
    return dict(
        case,
        s=statistics.median(times),
        times_s=times,
        peak_mb=_peak_rss_mb(),
        params=params,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="pretrained/crossmamba-tse-realvoices-8k"
    )
    parser.add_argument(
        "--data", help="SynthSpeakers folder (default: data/SynthSpeakers_*)"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed extractions per mode (median)",
    )
    parser.add_argument(
        "--threads", type=int, default=len(os.sched_getaffinity(0))
    )
    parser.add_argument(
        "--out",
        default=os.path.join(ROOT, "benchmarks", "out", "long_audio.json"),
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(json.loads(args.case))))
        return
    data = (
        args.data
        or sorted(glob.glob(os.path.join(ROOT, "data", "SynthSpeakers_*")))[0]
    )
    stamp = machine_stamp()
    print(
        f"{args.model}, {args.seconds:g} s at 8 kHz, {args.threads} threads; {stamp['device']}, "
        f"torch {stamp['torch']}, {stamp['date']}\n"
    )
    print(
        "| mode | time (s), median of {} | range | real-time factor | peak RSS of the process (GB) |".format(
            args.repeats
        )
    )
    print("|---|---:|---:|---:|---:|")
    rows = []
    for mode in MODES:
        case = {
            "model": args.model,
            "data": data,
            "seconds": args.seconds,
            "mode": mode,
            "repeats": args.repeats,
            "threads": args.threads,
        }
        out = subprocess.run(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--case",
                json.dumps(case),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"| {mode} | {r['s']:.2f} | {min(r['times_s']):.2f}-{max(r['times_s']):.2f} | "
            f"{r['s'] / args.seconds:.3f} | {r['peak_mb'] / 1024:.2f} |",
            flush=True,
        )
    print(f"\n{rows[0]['params']:,} parameters (the extractor)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"stamp": stamp, "rows": rows}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
