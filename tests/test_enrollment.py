"""Training sets of the real-corpus recipes: random enrollments, dynamic mixing with recorded
noise, and how ``prepare_datasets`` hands them their inputs."""

import os

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_crossmamba.dataio.enrollment import RandomEnrollmentDataset, enrollment_train_set
from speechbrain_crossmamba.dataio.mixing import DynamicMixDataset
from speechbrain_crossmamba.training import prepare_datasets

RATE = 8000


def _wav(folder, name, signal):
    path = os.path.join(folder, name + ".wav")
    soundfile.write(path, np.asarray(signal, dtype=np.float32), RATE)
    return path


def _csv(folder, name, header, rows):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


@pytest.fixture
def corpus(tmp_path):
    """Speakers a (4 utterances, one short) and b (2 utterances); each utterance is a constant
    level that names it, so an enrollment tells which file it came from."""
    folder = str(tmp_path)
    lengths = {"a1": 1.0, "a2": 1.0, "a3": 1.0, "a4": 0.25, "b1": 1.0, "b2": 1.0}
    level = {u: 0.1 * (k + 1) for k, u in enumerate(lengths)}
    paths = {u: _wav(folder, u, np.full(int(s * RATE), level[u])) for u, s in lengths.items()}
    utts = _csv(folder, "utts.csv", ["ID", "duration", "wav", "spk_id"],
                [[u, s, paths[u], u[0]] for u, s in lengths.items()])
    rng = np.random.default_rng(0)
    target = rng.uniform(-0.3, 0.3, RATE)
    mix = _wav(folder, "mix", 2 * target)
    rows = [["m_s1", 1.0, mix, _wav(folder, "t", target), "a", "a1"]]
    mixtures = _csv(folder, "mix.csv", ["ID", "duration", "mix_wav", "target_wav", "spk_id", "target_utt"], rows)
    return {"utts": utts, "mixtures": mixtures, "level": level, "folder": folder}


def _source(enroll, level):
    value = float(enroll[len(enroll) // 2])
    return min(level, key=lambda u: abs(level[u] - value))


def test_random_enrollment_is_another_long_utterance_of_the_speaker_each_epoch(corpus):
    ds = RandomEnrollmentDataset(corpus["mixtures"], corpus["utts"], enroll_seconds=0.5, seed=3)
    sources = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["enroll_sig"].shape == (RATE // 2,)  # exactly enroll_seconds
        sources.add(_source(item["enroll_sig"], corpus["level"]))
    # never the target utterance a1, never the short a4, never speaker b; both others drawn
    assert sources == {"a2", "a3"}
    ds.set_epoch(5)
    again = RandomEnrollmentDataset(corpus["mixtures"], corpus["utts"], enroll_seconds=0.5, seed=3)
    again.set_epoch(5)
    assert torch.equal(ds[0]["enroll_sig"], again[0]["enroll_sig"])


def test_segment_crop_keeps_mixture_and_target_aligned(corpus):
    ds = RandomEnrollmentDataset(corpus["mixtures"], corpus["utts"], enroll_seconds=0.5, segment_seconds=0.3)
    starts = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[0]
        assert item["mix_sig"].shape == item["target_sig"].shape == (int(0.3 * RATE),)
        assert torch.allclose(item["mix_sig"], 2 * item["target_sig"], atol=1e-4)
        starts.add(round(float(item["target_sig"][0]), 4))
    assert len(starts) > 1  # the offset is drawn, not fixed


def test_rows_without_a_long_enough_enrollment_are_left_out(corpus):
    with pytest.raises(ValueError, match="no row has another utterance of its speaker of 2.0 s or more"):
        RandomEnrollmentDataset(corpus["mixtures"], corpus["utts"], enroll_seconds=2.0)


def test_dynamic_mixing_drops_short_enrollments_and_uses_recorded_noise(corpus):
    folder = corpus["folder"]
    t = np.arange(RATE) / RATE
    noise = _csv(folder, "noise.csv", ["ID", "duration", "wav"],
                 [["n1", 1.0, _wav(folder, "n1", 0.5 * np.sin(2 * np.pi * 3000 * t))]])
    ds = enrollment_train_set(
        corpus["mixtures"], corpus["utts"], noise_csv=noise, dynamic_mixing=True,
        enroll_seconds=0.5, segment_seconds=0.5, noise_db=[0.0, 0.0], sample_rate=RATE,
    )
    assert isinstance(ds, DynamicMixDataset)
    for index in range(len(ds)):
        item = ds[index]
        assert item["enroll_sig"].shape == (RATE // 2,)  # never the 0.25 s utterance, whole
        residual = (item["mix_sig"] - item["target_sig"]).numpy()
        spectrum = np.abs(np.fft.rfft(residual))
        tone = spectrum[int(3000 * len(residual) / RATE)]
        assert tone > 0.3 * spectrum.max()  # the 3 kHz noise file is in the mixture
    # a4 (0.25 s) is no enrollment, but still a target: a1..a3 remain its enrollments
    assert len(ds) == 6


def test_static_mode_is_random_enrollment(corpus):
    ds = enrollment_train_set(corpus["mixtures"], corpus["utts"], enroll_seconds=0.5)
    assert isinstance(ds, RandomEnrollmentDataset)


def test_prepare_datasets_excludes_bad_rows_of_every_train_csv_and_passes_none(corpus, caplog):
    folder = corpus["folder"]
    with open(corpus["utts"], "a") as f:
        f.write(f"gone,1.0,{folder}/gone.wav,a\n")
    with open(corpus["mixtures"], "a") as f:
        f.write(f"bad_s1,1.0,{folder}/missing.wav,{folder}/t.wav,a,a2\n")
    received = {}

    def train_set(**kwargs):
        received.update(kwargs)
        return kwargs

    hparams = {
        "prepare_data": lambda: {"train": corpus["mixtures"], "train_utts": corpus["utts"],
                                 "train_noise": None, "valid": corpus["mixtures"], "test": corpus["mixtures"]},
        "train_inputs": {"mixtures_csv": "train", "utterances_csv": "train_utts", "noise_csv": "train_noise"},
        "train_set": train_set,
        "eval_set": lambda path, exclude: sorted(exclude),
        "sample_rate": RATE,
        "skip_bad_files": True,
    }
    datasets = prepare_datasets(hparams)
    assert received["noise_csv"] is None
    assert received["exclude"] == {"gone", "bad_s1"}  # from both CSVs
    assert datasets["valid"] == ["bad_s1"]
    assert "gone.wav" in caplog.text
