#!/usr/bin/env python3
"""Target speaker extraction on held-out REAL voices: the RealVoices test mixtures.

Usage::

    python benchmarks/real_voices.py pretrained/crossmamba-tse-synthspeakers-8k [more folders]
    python benchmarks/real_voices.py results/crossmamba_tse/1234/pretrained --limit 50 --json out.json

The mixtures are the RealVoices test split (``dataio/real_voices.py``): two-speaker mixtures
of real recorded speakers that no training or valid split holds (both Czech Fish Fillets
voices and two Drascula characters by default), -5..+5 dB, low white or pink noise, the
enrollment another utterance of the target. For each model it prints, per (target,
interferer) voice pair and over all mixtures:

- SI-SNRi and SDRi of the extraction;
- SI-SNRi with the **interferer's** enrollment (lower is better: the clue must matter);
- the better of the model's two separated outputs (``separate()``, no clue; an oracle picks
  the output closer to the target): whether the separator itself works on these voices.

Without the Debian packages of the test speakers it prints one ``skipped: install ...`` line
and exits 0. The telephony prompts ``asterisk-core-sounds-*`` are never used here.

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
from speechbrain.dataio.dataio import read_audio

from speechbrain_crossmamba.dataio.real_voices import INSTALL_HINT, TEST_SPEAKERS, prepare_real_voices
from speechbrain_crossmamba.dataio.tse_data import interferer_enrollments
from speechbrain_crossmamba.dataio.voice_packages import SOURCES, package_version
from speechbrain_crossmamba.evaluation import si_snr, utterance_metrics
from speechbrain_crossmamba.inference import TargetSpeakerExtraction

COLUMNS = ("si-snri", "sdri", "si-snri-interferer-clue", "best-separated-si-snri")


def missing_test_packages():
    """The Debian packages of the default test speakers that are not installed (a speaker ID
    is ``<source>_<voice>``)."""
    packages = {SOURCES[s][0] for s in SOURCES for spk in TEST_SPEAKERS if spk.startswith(s + "_")}
    return sorted(p for p in packages if package_version(p) is None)


def _speaker_of(utterances_csv):
    """``{wav path: speaker ID}`` of an utterance CSV."""
    with open(utterances_csv, newline="") as f:
        return {u["wav"]: u["spk_id"] for u in csv.DictReader(f)}


def evaluate(folder, rows, utterances_csv, seed=0):
    """``[{pair, si-snri, sdri, si-snri-interferer-clue, best-separated-si-snri}]``, one per
    mixture, for the model in ``folder``."""
    model = TargetSpeakerExtraction.from_hparams(source=folder)
    extractor = model.mods.extractor
    two_outputs = getattr(extractor.masknet, "num_spks", 1) > 1
    inter = interferer_enrollments({r["ID"]: r for r in rows}, utterances_csv, seed=seed)
    speaker_of = _speaker_of(utterances_csv)
    out = []
    for row in rows:
        mix, target = read_audio(row["mix_wav"]).float(), read_audio(row["target_wav"]).float()
        enroll, wrong = read_audio(row["enroll_wav"]).float(), read_audio(inter[row["ID"]]).float()
        est = model.extract_batch(mix[None], clue=enroll[None])[0]
        result = {"ID": row["ID"], "pair": f"{row['target_spk']} / {speaker_of[row['interf_wav']]}"}
        metrics = utterance_metrics(est, target, mix)
        result.update({"si-snri": metrics["si-snri"], "sdri": metrics["sdri"]})
        mix_snr = metrics["si-snr"] - metrics["si-snri"]
        est_wrong = model.extract_batch(mix[None], clue=wrong[None])
        result["si-snri-interferer-clue"] = si_snr(est_wrong, target[None]).item() - mix_snr
        if two_outputs:
            with torch.no_grad():
                both = extractor.separate(mix[None])[0]
            best = max(si_snr(both[k][None], target[None]).item() for k in range(both.shape[0]))
            result["best-separated-si-snri"] = best - mix_snr
        out.append(result)
    return out


def summary(results):
    """``{pair or 'all': {column: mean}}`` with the mixture counts."""
    groups = {"all": results}
    for r in results:
        groups.setdefault(r["pair"], []).append(r)
    table = {}
    for name, rows in groups.items():
        table[name] = {"n": len(rows)}
        for c in COLUMNS:
            values = [r[c] for r in rows if c in r]
            if values:
                table[name][c] = float(np.mean(values))
                if name == "all":
                    table[name][c + "-ci95"] = float(1.96 * np.std(values, ddof=1) / np.sqrt(len(values)))
    return table


def write_examples(rows, utterances_csv, folder, count=6, speakers=("fillets_cs_small", "fillets_cs_big")):
    """Copies ``count`` test mixtures whose two voices are both in ``speakers`` (by default the
    GPL-2 Czech Fish Fillets voices, which may be redistributed) into ``folder``, with their
    target, enrollment and an enrollment of the interferer, and lists them in
    ``examples.csv`` (what ``tests/test_pretrained.py`` reads)."""
    import shutil

    speaker_of = _speaker_of(utterances_csv)
    inter = interferer_enrollments({r["ID"]: r for r in rows}, utterances_csv)
    chosen = [r for r in rows if r["target_spk"] in speakers and speaker_of[r["interf_wav"]] in speakers]
    os.makedirs(folder, exist_ok=True)
    lines = ["ID,mix_wav,target_wav,enroll_wav,interferer_enroll_wav,snr_db"]
    for row in chosen[:count]:
        names = []
        for kind, path in (("mix", row["mix_wav"]), ("target", row["target_wav"]), ("enroll", row["enroll_wav"]),
                           ("interferer_enroll", inter[row["ID"]])):
            names.append(f"{row['ID']}_{kind}.wav")
            shutil.copyfile(path, os.path.join(folder, names[-1]))
        lines.append(",".join([row["ID"], *names, row["snr_db"]]))
    with open(os.path.join(folder, "examples.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines) - 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="pretrained/ folders (enrollment clue)")
    parser.add_argument("--data_folder", default="data", help="where RealVoices is made once")
    parser.add_argument("--limit", type=int, default=None, help="first N test mixtures only")
    parser.add_argument("--seed", type=int, default=0, help="picks the interferer's enrollment")
    parser.add_argument("--json", help="also write the per-model summaries here")
    parser.add_argument("--examples", metavar="FOLDER", help="only copy 6 Czech Fish Fillets test mixtures here")
    args = parser.parse_args(argv)
    missing = missing_test_packages()
    if missing:
        print(f"skipped: install {' '.join(missing)} ({INSTALL_HINT})")
        return 0
    paths = prepare_real_voices(args.data_folder)
    with open(paths["test"], newline="") as f:
        rows = list(csv.DictReader(f))[: args.limit]
    if args.examples:
        print(f"{write_examples(rows, paths['test_utts'], args.examples)} examples written to {args.examples}")
        return 0
    print(f"{len(rows)} mixtures of {paths['test']} (held-out real speakers: {', '.join(TEST_SPEAKERS)})\n")
    report = {}
    for folder in args.models:
        table = summary(evaluate(folder, rows, paths["test_utts"], args.seed))
        report[folder] = table
        print(f"### {folder}\n")
        print("| voice pair (target / interferer) | n | " + " | ".join(COLUMNS) + " |")
        print("|---" * (len(COLUMNS) + 2) + "|")
        for name in sorted(table, key=lambda k: (k == "all", k)):
            cells = [f"{table[name][c]:+.2f}" if c in table[name] else "" for c in COLUMNS]
            if name == "all":
                cells = [cell + (f" ± {table[name][c + '-ci95']:.2f}" if cell else "") for cell, c in zip(cells, COLUMNS)]
            print(f"| {'**all**' if name == 'all' else name} | {table[name]['n']} | " + " | ".join(cells) + " |")
        print()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"test_csv": paths["test"], "mixtures": len(rows), "models": report}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
