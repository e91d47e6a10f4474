"""Tests of the training-data variety: speed perturbation, synthetic rooms, babble noise, and
their use in dynamic mixing.

Authors
 * speechbrain-crossmamba contributors
"""

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_crossmamba.dataio import mixing
from speechbrain_crossmamba.dataio.augment import speed_perturb, synthetic_rir
from speechbrain_crossmamba.dataio.mixing import DynamicMixDataset

SR = 8000


def _peak_hz(x):
    spec = np.abs(np.fft.rfft(np.asarray(x, dtype=np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec)) * SR / len(x)


def test_speed_perturb_scales_pitch_and_duration():
    t = torch.arange(SR, dtype=torch.float64) / SR
    tone = torch.sin(2 * np.pi * 200.0 * t).float()
    fast, slow = speed_perturb(tone, 1.1), speed_perturb(tone, 0.9)
    assert len(fast) == round(SR / 1.1) and len(slow) == round(SR / 0.9)
    assert abs(_peak_hz(fast) - 220.0) < 3 and abs(_peak_hz(slow) - 180.0) < 3


@pytest.mark.parametrize("rt60", [0.2, 0.5])
def test_synthetic_rir_has_the_drawn_rt60(rt60):
    """Schroeder backward integration: the -5 to -25 dB decay, extrapolated to 60 dB."""
    h = synthetic_rir(np.random.default_rng(1), rt60, SR, max_seconds=1.0).astype(np.float64)
    energy = np.cumsum(h[::-1] ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0])
    t5, t25 = np.argmax(edc < -5), np.argmax(edc < -25)
    measured = 3.0 * (t25 - t5) / SR
    assert abs(measured - rt60) < 0.25 * rt60


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    """Six harmonic 'voices' (three speakers, two utterances each), 1.5 s each."""
    d = tmp_path_factory.mktemp("augment")
    lines = ["ID,duration,wav,spk_id"]
    t = np.arange(int(1.5 * SR)) / SR
    for k in range(6):
        f0 = 110.0 * (1 + k // 2)
        wav = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * 0.2
        wav *= 1 + 0.5 * np.sin(2 * np.pi * 3 * t + k)
        path = d / f"u{k}.wav"
        soundfile.write(path, wav.astype(np.float32), SR)
        lines.append(f"u{k},1.5,{path},s{k // 2}")
    csv = d / "utts.csv"
    csv.write_text("\n".join(lines) + "\n")
    return str(csv)


def _dataset(csv, **options):
    return DynamicMixDataset(csv, segment_seconds=1.0, enroll_seconds=0.5, epoch_size=8, seed=3, **options)


ALL = {
    "speed_range": (0.9, 1.1),
    "reverb_prob": 1.0,
    "noise_db": (-25.0, -20.0),
    "noise_colors": ("brown", "babble"),
}


def test_augmented_mixtures_are_reproducible_and_keep_the_snr(
    utterances, monkeypatch
):
    plain, aug, twin = _dataset(utterances), _dataset(utterances, **ALL), _dataset(utterances, **ALL)
    no_noise = _dataset(utterances, speed_range=(0.9, 1.1), reverb_prob=1.0)
    drawn, mix_at_snr = [], mixing.mix_at_snr  # the SNRs the items ask for

    def spy(target, interferer, snr_db, **kwargs):
        drawn.append(snr_db)
        return mix_at_snr(target, interferer, snr_db, **kwargs)

    monkeypatch.setattr(mixing, "mix_at_snr", spy)
    snrs = []
    for i in range(len(aug)):
        item = aug[i]
        assert item["mix_sig"].shape == item["target_sig"].shape == (SR,)
        assert len(item["enroll_sig"]) <= SR // 2 and torch.isfinite(item["mix_sig"]).all()
        assert all(torch.equal(item[k], twin[i][k]) for k in ("mix_sig", "target_sig", "enroll_sig"))
        assert not torch.equal(item["target_sig"], plain[i]["target_sig"])
        # the reference stays exact: mix - target is the interferer alone, at the drawn SNR
        clean = no_noise[i]
        snrs.append(drawn[-1])
        target = clean["target_sig"].double()
        rest = clean["mix_sig"].double() - target
        snr = 10 * torch.log10(target.pow(2).mean() / rest.pow(2).mean())
        assert abs(float(snr) - snrs[-1]) < 0.01, (float(snr), snrs[-1])
    # drawn from snr_range, not one value for all
    assert all(-5 <= x <= 5 for x in snrs) and max(snrs) - min(snrs) > 3


def test_reverberation_spreads_the_target(utterances):
    """A reverberant target has energy where the dry one is silent (its zero padding)."""
    short = _dataset(utterances, reverb_prob=0.0)
    short.segment = int(2.0 * SR)  # segment longer than the 1.5 s utterances: zero-padded
    wet = _dataset(utterances, reverb_prob=1.0, rt60_range=(0.5, 0.5))
    wet.segment = short.segment
    gained = 0
    for i in range(4):
        dry_t, wet_t = short[i]["target_sig"], wet[i]["target_sig"]
        silent = dry_t == 0
        gained += int(wet_t[silent].abs().sum() > 0)
    assert gained >= 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"noise_colors": ("white", "violet")}, "noise_colors must be among white, pink, brown, babble"),
        ({"speed_range": (1.2, 0.8)}, "speed_range must be"),
        ({"reverb_prob": 1.5}, r"reverb_prob must be in \[0, 1\]"),
    ],
)
def test_bad_augmentation_options_are_one_line_errors(utterances, options, message):
    with pytest.raises(ValueError, match=message):
        _dataset(utterances, **options)


def test_an_enrollment_crop_is_never_silent(tmp_path):
    """Utterances that are mostly digital silence: a random crop would often be all zeros,
    which the model refuses; the crop moves onto the sound instead."""
    lines = ["ID,duration,wav,spk_id"]
    for k in range(4):
        wav = np.zeros(4 * SR, np.float32)
        wav[SR : SR + SR // 10] = 0.3 * np.sin(np.arange(SR // 10) * (0.1 + 0.05 * k))
        soundfile.write(tmp_path / f"u{k}.wav", wav, SR)
        lines.append(f"u{k},4.0,{tmp_path / f'u{k}.wav'},s{k // 2}")
    (tmp_path / "utts.csv").write_text("\n".join(lines) + "\n")
    ds = DynamicMixDataset(str(tmp_path / "utts.csv"), segment_seconds=1.0, enroll_seconds=0.5,
                           epoch_size=24, seed=0)
    enrollments = [ds[i]["enroll_sig"] for i in range(len(ds))]
    assert all(len(e) == SR // 2 and e.abs().any() for e in enrollments)
