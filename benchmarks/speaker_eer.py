#!/usr/bin/env python3
"""Speaker-verification EER of trained clue encoders on the unseen test speakers.

Usage::

    python benchmarks/speaker_eer.py results/crossmamba_tse/1234/pretrained [more folders]
    python benchmarks/speaker_eer.py pretrained/<name> --utterances data/SynthSpeakers_*/test_utts.csv

Each folder is a ``pretrained/`` export with an enrollment clue; its embedding is
``extractor.encode_clue``. Every pair of the split's utterances is a trial (cosine score). The
first row is a reference without training: the time-averaged log-Mel filterbank (SpeechBrain's
``Fbank``), which says how far plain spectral colour already tells the voices apart.

Authors
 * speechbrain-crossmamba contributors
"""

import argparse
import glob

import torch
from speechbrain.inference.interfaces import Pretrained
from speechbrain.lobes.features import Fbank

from speechbrain_crossmamba.evaluation import speaker_eer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="pretrained/ folders (enrollment clue)")
    parser.add_argument("--utterances", help="utterance CSV (default: data/SynthSpeakers_*/test_utts.csv)")
    args = parser.parse_args(argv)
    utterances = args.utterances or sorted(glob.glob("data/SynthSpeakers_*/test_utts.csv"))[0]
    print(f"trials: every pair of {utterances}")
    fbank = Fbank(n_mels=40, sample_rate=8000)
    reference = speaker_eer(lambda w: fbank(w).mean(1), utterances)
    print(f"| mean log-Mel filterbank (no training) | {100 * reference:.1f} % |")
    for folder in args.models:
        model = Pretrained.from_hparams(source=folder, savedir=folder)
        extractor = model.mods.extractor.eval()
        eer = speaker_eer(lambda w: extractor.encode_clue(w, torch.ones(1)), utterances)
        print(f"| {folder} | {100 * eer:.1f} % |")


if __name__ == "__main__":
    main()
