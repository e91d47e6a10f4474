"""The shipped model (``pretrained/crossmamba-tse-synthspeakers-8k``): it loads from the clone
and extracts the enrolled speaker from fixed SynthSpeakers test mixtures kept beside it.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import os
from pathlib import Path

import pytest
import torch

from speechbrain_crossmamba.evaluation import si_snr
from speechbrain_crossmamba.inference import TargetSpeakerExtraction

NAME = "crossmamba-tse-synthspeakers-8k"
REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "pretrained" / NAME
# Lower bounds on these six mixtures, about half of what the shipped model scores on them
# (8.1 dB mean SI-SNRi, 25.6 dB lower with the interferer's enrollment; the 20-minute default
# model of README command 1 scores 2.5 dB and fails). The full test set: the model card.
MIN_MEAN_SI_SNRI = 4.0
MIN_CLUE_GAP = 12.0


@pytest.fixture(scope="module")
def model():
    return TargetSpeakerExtraction.from_hparams(source=str(FOLDER))


def _examples():
    with open(FOLDER / "examples" / "examples.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_loads_by_relative_path_without_writing_into_the_folder(monkeypatch):
    before = sorted(os.listdir(FOLDER))
    monkeypatch.chdir(REPO)
    model = TargetSpeakerExtraction.from_hparams(source=f"pretrained/{NAME}")
    assert model.sample_rate == 8000 and not model.label_clue
    assert sorted(os.listdir(FOLDER)) == before


def _si_snri(model, row, enroll_key):
    wav = lambda key: model.load_audio(str(FOLDER / "examples" / row[key]))  # noqa: E731
    mix, target = wav("mix_wav"), wav("target_wav")
    est = model.extract_batch(mix[None], clue=wav(enroll_key)[None])[0]
    assert est.shape == mix.shape and torch.isfinite(est).all()
    return float(si_snr(est[None], target[None]) - si_snr(mix[None], target[None]))


def test_extracts_the_enrolled_speaker_and_follows_the_clue(model):
    rows = _examples()
    own = [_si_snri(model, r, "enroll_wav") for r in rows]
    other = [_si_snri(model, r, "interferer_enroll_wav") for r in rows]
    assert len(rows) == 6
    assert sum(own) / len(own) > MIN_MEAN_SI_SNRI, own
    assert all(x > 0 for x in own), own
    gap = sum(o - i for o, i in zip(own, other)) / len(own)
    assert gap > MIN_CLUE_GAP, (own, other)
