"""SynthEvents: bit-exact mixtures, splits, targets, clues, the prepared sets and the train set."""

import csv
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch

from speechbrain_crossmamba.dataio import synth_events
from speechbrain_crossmamba.dataio.sound_classes import render_event
from speechbrain_crossmamba.dataio.synth_events import (
    CLASSES,
    SynthEventsTrainSet,
    _render_mixture,
    labels_to_multihot,
    make_mixture,
    prepare_synth_events,
)

SHORT = {"seconds": 1.0}
SMALL_SET = {"n_valid_mixtures": 3, "n_test_mixtures": 2, "seconds": 1.0}


def test_classes():
    assert len(CLASSES) == 10 and len(set(CLASSES)) == 10
    assert {"tone", "chirp", "bell", "knock", "formant_vowel"} <= set(CLASSES)


def test_bit_exact_per_seed_and_index():
    a, b = make_mixture(5, 3, **SHORT), make_mixture(5, 3, **SHORT)
    np.testing.assert_array_equal(a["mix"], b["mix"])
    np.testing.assert_array_equal(a["target"], b["target"])
    assert a["labels"] == b["labels"] and a["classes_present"] == b["classes_present"]
    assert not np.array_equal(a["mix"], make_mixture(6, 3, **SHORT)["mix"])
    assert not np.array_equal(a["mix"], make_mixture(5, 4, **SHORT)["mix"])


def test_independent_of_call_history_and_global_rng():
    first = make_mixture(11, 7, **SHORT)["mix"]
    np.random.seed(0)
    torch.manual_seed(0)
    for i in range(3):
        make_mixture(99, i, **SHORT)
    np.random.rand(10)
    np.testing.assert_array_equal(first, make_mixture(11, 7, **SHORT)["mix"])


def test_splits_and_epochs_do_not_coincide():
    mixes = [
        make_mixture(1, 0, split="train", **SHORT)["mix"],
        make_mixture(1, 0, split="valid", **SHORT)["mix"],
        make_mixture(1, 0, split="test", **SHORT)["mix"],
        make_mixture(1, 0, split="train", epoch=1, **SHORT)["mix"],
    ]
    for i in range(len(mixes)):
        for j in range(i + 1, len(mixes)):
            assert not np.array_equal(mixes[i], mixes[j])


def test_two_to_four_distinct_classes_and_target_labels():
    counts = set()
    for index in range(30):
        m = make_mixture(2, index, seconds=0.75)
        present = m["classes_present"]
        counts.add(len(present))
        assert len(set(present)) == len(present) and set(present) <= set(CLASSES)
        assert present == sorted(present, key=CLASSES.index)
        assert 1 <= len(m["labels"]) <= 2 and set(m["labels"]) <= set(present)
        assert m["mix"].dtype == np.float32 and m["target"].dtype == np.float32
        assert m["mix"].shape == m["target"].shape == (6000,)
        assert np.abs(m["mix"]).max() <= 0.9 + 1e-6 and np.abs(m["target"]).max() <= 0.9 + 1e-6
    assert counts == {2, 3, 4}


def test_target_is_the_sum_of_the_target_class_events():
    for index in range(8):
        parts = _render_mixture(3, index, 1.0, 8000, 2, 4, 0.5, "valid", 0)
        events, rows, noise = parts["events"], parts["target_rows"], parts["noise"]
        np.testing.assert_allclose(parts["target"], events[rows].sum(0), atol=1e-6)
        np.testing.assert_allclose(parts["mix"], events.sum(0) + noise, atol=1e-6)
        rest = parts["mix"] - parts["target"]
        assert np.abs(parts["target"]).max() > 0.05
        others = np.delete(events, rows, axis=0)
        assert len(others) >= 1 and np.abs(others.sum(0)).max() > 0.05
        assert np.abs(rest).max() > 0.05
        # the background is 15 to 30 dB below the events (as active-time RMS)
        spans = [np.flatnonzero(e)[[0, -1]] for e in events]
        event_rms = [np.sqrt(np.mean(e[a : b + 1] ** 2)) for e, (a, b) in zip(events, spans)]
        below = 20 * np.log10(np.mean(event_rms) / np.sqrt(np.mean(noise**2)))
        assert 14.0 < below < 31.0
        # event gains lie within 6 dB of each other
        assert 20 * np.log10(max(event_rms) / min(event_rms)) <= 6.0 + 0.1


def test_multi_target_probability():
    def n_labels(p, count=12, **kw):
        return [
            len(make_mixture(4, i, seconds=0.5, multi_target_prob=p, **kw)["labels"])
            for i in range(count)
        ]

    assert set(n_labels(0.0)) == {1}
    assert set(n_labels(1.0)) == {2}
    for i in range(6):
        m = make_mixture(4, i, seconds=0.5, multi_target_prob=1.0)
        assert len(m["classes_present"]) >= 3
    assert set(n_labels(1.0, max_events=2)) == {1}
    share = np.mean(np.array(n_labels(0.25, count=80)) == 2)
    assert 0.1 < share < 0.45


def test_bad_arguments():
    with pytest.raises(ValueError, match="^unknown split 'dev'; known: train, valid, test$"):
        make_mixture(0, 0, split="dev")
    with pytest.raises(ValueError, match="seed must be a non-negative integer; got -1"):
        make_mixture(-1, 0)
    with pytest.raises(ValueError, match="min_events <= max_events"):
        make_mixture(0, 0, min_events=3, max_events=2)
    with pytest.raises(ValueError, match="sample_rate must be at least 4000 Hz"):
        make_mixture(0, 0, sample_rate=2000)


def test_multihot():
    vec = labels_to_multihot("bell tone")
    assert vec.shape == (len(CLASSES),) and vec.dtype == torch.float32
    assert set(vec.tolist()) == {0.0, 1.0} and vec.sum() == 2
    assert vec[CLASSES.index("bell")] == 1 and vec[CLASSES.index("tone")] == 1
    assert torch.equal(vec, labels_to_multihot(["tone", "bell"]))
    with pytest.raises(ValueError) as err:
        labels_to_multihot(["tone", "xyz"])
    assert str(err.value) == "unknown label 'xyz'; known: " + ", ".join(CLASSES)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="labels is empty"):
        labels_to_multihot("")


def test_prepare_writes_csvs_and_wavs(tmp_path):
    csvs = prepare_synth_events(tmp_path, seed=7, **SMALL_SET)
    root = tmp_path / "SynthEvents_seed7"
    assert csvs == {"valid": str(root / "valid.csv"), "test": str(root / "test.csv")}
    assert (root / "manifest.json").is_file()
    for split, count in (("valid", 3), ("test", 2)):
        with open(csvs[split], newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == ["ID", "duration", "mix_wav", "target_wav", "labels"]
            rows = list(reader)
        assert len(rows) == count and len({r["ID"] for r in rows}) == count
        for index, row in enumerate(rows):
            assert float(row["duration"]) == 1.0
            expected = make_mixture(7, index, seconds=1.0, split=split)
            assert row["labels"].split() == expected["labels"]
            labels_to_multihot(row["labels"])
            for col, key in (("mix_wav", "mix"), ("target_wav", "target")):
                assert os.path.isabs(row[col]) and os.path.isfile(row[col])
                info = sf.info(row[col])
                assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
                audio, _ = sf.read(row[col], dtype="float32")
                np.testing.assert_allclose(audio, expected[key], atol=1.0 / 32768 + 1e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SynthEvents_seed7"]


def test_prepare_is_idempotent_and_rebuilds_on_new_config(tmp_path, monkeypatch):
    csvs = prepare_synth_events(tmp_path, **SMALL_SET)
    wav = str(tmp_path / "SynthEvents_seed1234" / "valid" / "valid_00000_mix.wav")
    stamp = os.stat(wav).st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("the second call should not generate anything")

    monkeypatch.setattr(synth_events, "make_mixture", fail)
    assert prepare_synth_events(tmp_path, **SMALL_SET) == csvs
    assert os.stat(wav).st_mtime_ns == stamp
    monkeypatch.undo()

    prepare_synth_events(tmp_path, **dict(SMALL_SET, n_valid_mixtures=1))
    with open(csvs["valid"]) as f:
        assert len(f.readlines()) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SynthEvents_seed1234"]


def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    real, calls = synth_events.make_mixture, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synth_events, "make_mixture", flaky)
    with pytest.raises(KeyboardInterrupt):
        prepare_synth_events(tmp_path, **SMALL_SET)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    csvs = prepare_synth_events(tmp_path, **SMALL_SET)
    assert os.path.isfile(csvs["test"])


def test_train_set_items_and_epochs():
    ds = SynthEventsTrainSet(seed=3, epoch_size=5, seconds=0.5)
    assert len(ds) == 5
    item = ds[2]
    assert item["id"] == "train_e0_000002"
    assert item["mix_sig"].shape == item["target_sig"].shape == (4000,)
    assert item["mix_sig"].dtype == torch.float32 and item["label"].shape == (len(CLASSES),)
    expected = make_mixture(3, 2, seconds=0.5, split="train", epoch=0)
    assert torch.equal(item["mix_sig"], torch.from_numpy(expected["mix"]))
    assert torch.equal(item["label"], labels_to_multihot(expected["labels"]))
    assert torch.equal(ds[2]["mix_sig"], item["mix_sig"])
    ds.set_epoch(1)
    assert ds[2]["id"] == "train_e1_000002"
    assert not torch.equal(ds[2]["mix_sig"], item["mix_sig"])
    ds.set_epoch(0)
    assert torch.equal(ds[2]["target_sig"], item["target_sig"])
    with pytest.raises(IndexError):
        ds[5]
    batch = PaddedBatch([ds[0], ds[1]])
    assert batch.mix_sig.data.shape == (2, 4000) and batch.label.data.shape == (2, len(CLASSES))


def _band_spectrum(x, sample_rate=8000):
    frames = x[: len(x) // 256 * 256].reshape(-1, 256) * np.hanning(256)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(256, 1.0 / sample_rate)
    band = np.digitize(freqs, np.geomspace(60, 4000, 17))  # 1..16 inside 60 Hz to 4 kHz
    bands = np.array([power[:, band == b].sum() for b in range(1, 17)])
    return bands / bands.sum()


def test_classes_sound_different_and_events_start_and_end_smoothly():
    spectra = {}
    for name in CLASSES:
        draws = [render_event(name, np.random.default_rng((9, s)), 8000, 8000) for s in range(4)]
        for x in draws:
            assert np.isfinite(x).all() and abs(x[0]) < 1e-3 and abs(x[-1]) < 1e-3
        spectra[name] = np.log(np.mean([_band_spectrum(x) for x in draws], 0) + 1e-4)
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            assert np.abs(spectra[a] - spectra[b]).mean() > 0.3, (a, b)
