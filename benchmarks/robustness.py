#!/usr/bin/env python3
"""SI-SNRi of pretrained speaker extractors on the SynthSpeakers test mixtures, re-mixed under
conditions they may meet outside the test set.

Usage::

    python benchmarks/robustness.py pretrained/crossmamba-tse-synthspeakers-8k [more folders]

Every test mixture is scored as generated, and rebuilt from its target, interferer and
enrollment files at its own SNR (:func:`~speechbrain_crossmamba.dataio.mixing.mix_at_snr`,
without the low noise) under each other condition:

- ``test set``: the test mixtures as generated (low white or pink noise);
- ``reverberant``: target and interferer in one synthetic room, RT60 0.3-0.6 s, the
  enrollment in another; the reference is the reverberant target;
- ``babble 10 dB``: babble of 4 other test utterances 10 dB below the two speakers;
- ``speed 0.9`` / ``speed 1.1``: both speakers (and the enrollment) slower or faster;
- ``interferer's enrollment``: the test set with an enrollment of the interferer (lower is
  better: the clue must matter).

Prints a Markdown table: mean SI-SNRi and its 95 % interval over the mixtures; then, per model,
how the scores spread over the mixtures (:func:`spread`): on the test set the share that improve,
improve by more than 5 and 10 dB, the best and the worst; with the interferer's enrollment how
much lower each mixture scores than with its own. The draws are seeded (``--seed``), so a rerun
gives the same mixtures.

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import csv
import glob

import numpy as np
import torch
from speechbrain.dataio.dataio import read_audio

from speechbrain_crossmamba.dataio.augment import babble, reverberate, speed_perturb, synthetic_rir
from speechbrain_crossmamba.dataio.mixing import crop_or_pad, mix_at_snr
from speechbrain_crossmamba.dataio.tse_data import interferer_enrollments
from speechbrain_crossmamba.evaluation import si_snr
from speechbrain_crossmamba.inference import TargetSpeakerExtraction

CONDITIONS = ("test set", "reverberant", "babble 10 dB", "speed 0.9", "speed 1.1", "interferer's enrollment")


def _fit(x, n):
    return x[:n] if len(x) >= n else torch.cat([x, x.new_zeros(n - len(x))])


def make_condition(condition, row, rng, others, interferer_enroll, sample_rate=8000):
    """``(mixture, target, enrollment)`` of one test row under ``condition``."""
    target, enroll = read_audio(row["target_wav"]).float(), read_audio(row["enroll_wav"]).float()
    if condition in ("test set", "interferer's enrollment"):  # the test mixture itself
        enroll = read_audio(interferer_enroll).float() if condition != "test set" else enroll
        return read_audio(row["mix_wav"]).float(), target, enroll
    interferer = read_audio(row["interf_wav"]).float()
    if condition.startswith("speed"):
        speed = float(condition.split()[1])
        target, enroll, interferer = (speed_perturb(x, speed) for x in (target, enroll, interferer))
    interferer = _fit(interferer, len(target))
    noise = noise_db = None
    if condition == "reverberant":
        rt60 = float(rng.uniform(0.3, 0.6))
        target = reverberate(target, synthetic_rir(rng, rt60, sample_rate))
        interferer = reverberate(interferer, synthetic_rir(rng, rt60, sample_rate))
        enroll = reverberate(enroll, synthetic_rir(rng, float(rng.uniform(0.3, 0.6)), sample_rate))
    if condition == "babble 10 dB":
        talkers = [read_audio(others[k]).float() for k in rng.choice(len(others), 4, replace=False)]
        noise, noise_db = babble(talkers, len(target), rng, crop_or_pad), -10.0
    mix, target = mix_at_snr(target, interferer, float(row["snr_db"]), noise=noise, noise_db=noise_db)
    return mix, target, enroll


def evaluate(folder, rows, utterances_csv, seed=0, conditions=CONDITIONS):
    """``{condition: [SI-SNRi per mixture]}`` for the model in ``folder``."""
    model = TargetSpeakerExtraction.from_hparams(source=folder)
    by_id = {r["ID"]: r for r in rows}
    inter = interferer_enrollments(by_id, utterances_csv, seed=seed)
    with open(utterances_csv, newline="") as f:
        utterances = list(csv.DictReader(f))
    scores = {c: [] for c in conditions}
    for k, row in enumerate(rows):
        rng = np.random.default_rng((seed, k))
        used = {row["target_wav"], row["interf_wav"], row["enroll_wav"]}
        others = [u["wav"] for u in utterances if u["wav"] not in used]
        for condition in conditions:
            mix, target, enroll = make_condition(condition, row, rng, others, inter[row["ID"]])
            est = model.extract_batch(mix[None], clue=enroll[None])
            gain = si_snr(est, target[None]) - si_snr(mix[None], target[None])
            scores[condition].append(float(gain))
    return scores


def spread(scores):
    """Lines on the spread of ``scores`` (:func:`evaluate`'s) over the mixtures.

    Example
    -------
    >>> lines = spread({"test set": [12.0, 6.0, -1.0, 3.0], "interferer's enrollment": [-12.0, -5.0, -2.0, -8.0]})
    >>> print("\\n".join(lines))
    test set: 3 of 4 mixtures improve (75.0 %), 2 by more than 5 dB (50.0 %), 1 by more than 10 dB (25.0 %); best +12.00 dB, worst -1.00 dB
    interferer's enrollment: 11.75 dB lower than with the target's on average (same mixtures); at least 10 dB lower on 3 of 4 (75.0 %)
    """
    lines = []
    if "test set" in scores:
        x = np.asarray(scores["test set"])
        share = lambda k: f"{k} of {len(x)}" if k != len(x) else f"all {k}"  # noqa: E731
        lines.append(f"test set: {share((x > 0).sum())} mixtures improve ({100 * (x > 0).mean():.1f} %), "
                     f"{(x > 5).sum()} by more than 5 dB ({100 * (x > 5).mean():.1f} %), {(x > 10).sum()} by more "
                     f"than 10 dB ({100 * (x > 10).mean():.1f} %); best {x.max():+.2f} dB, worst {x.min():+.2f} dB")
        if "interferer's enrollment" in scores:
            drop = x - np.asarray(scores["interferer's enrollment"])
            lines.append(f"interferer's enrollment: {drop.mean():.2f} dB lower than with the target's on average "
                         f"(same mixtures); at least 10 dB lower on {(drop >= 10).sum()} of {len(drop)} "
                         f"({100 * (drop >= 10).mean():.1f} %)")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="pretrained/ folders (enrollment clue)")
    parser.add_argument("--data", help="SynthSpeakers folder (default: data/SynthSpeakers_*)")
    parser.add_argument("--limit", type=int, default=None, help="first N test mixtures only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                        metavar="NAME", help=f"a subset of: {', '.join(repr(c) for c in CONDITIONS)}")
    args = parser.parse_args(argv)
    data = args.data or sorted(glob.glob("data/SynthSpeakers_*"))[0]
    with open(f"{data}/test.csv", newline="") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    print(f"{len(rows)} mixtures of {data}/test.csv, seed {args.seed}\n")
    print("| model | " + " | ".join(args.conditions) + " |")
    print("|---" * (len(args.conditions) + 1) + "|")
    spreads = {}
    for folder in args.models:
        scores = evaluate(folder, rows, f"{data}/test_utts.csv", args.seed, args.conditions)
        cells = []
        for c in args.conditions:
            x = np.asarray(scores[c])
            cells.append(f"{x.mean():+.2f} ± {1.96 * x.std(ddof=1) / np.sqrt(len(x)):.2f}")
        print(f"| {folder} | " + " | ".join(cells) + " |", flush=True)
        spreads[folder] = spread(scores)
    for folder, lines in spreads.items():
        if lines:
            print(f"\n{folder}:\n" + "\n".join(f"- {line}" for line in lines))


if __name__ == "__main__":
    main()
