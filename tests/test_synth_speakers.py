"""Tests of the SynthSpeakers corpus (tiny configs) and of dynamic mixing.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import hashlib
import os
import sys

import numpy as np
import pytest
import soundfile
import torch

from speechbrain_crossmamba.dataio import espeak
from speechbrain_crossmamba.dataio.mixing import DynamicMixDataset
from speechbrain_crossmamba.dataio.synth_speakers import (
    MIX_HEADER,
    UTT_HEADER,
    prepare_synth_speakers,
)

TINY = {
    "n_train_speakers": 3,
    "n_valid_speakers": 2,
    "n_test_speakers": 2,
    "utterances_per_speaker": 3,
    "n_valid_mixtures": 4,
    "n_test_mixtures": 4,
}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _hashes(paths):
    """Hashes of all WAVs of a corpus, keyed by their path relative to the corpus folder."""
    root = os.path.dirname(paths["train_utts"])
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".wav"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare_synth_speakers(str(tmp_path_factory.mktemp("a")), seed=7, **TINY)


def test_same_seed_same_wavs_other_seed_differs(corpus, tmp_path):
    again = prepare_synth_speakers(str(tmp_path / "b"), seed=7, **TINY)
    assert again["train_utts"] != corpus["train_utts"]
    first = _hashes(corpus)
    assert len(first) == 7 * 3 + 2 * 2 * 4 and first == _hashes(again)
    other = _hashes(prepare_synth_speakers(str(tmp_path / "c"), seed=8, **TINY))
    assert set(other) == set(first)
    assert all(other[k] != first[k] for k in first)


def test_csv_columns_files_and_format(corpus):
    for split in ("train", "valid", "test"):
        rows = _rows(corpus[f"{split}_utts"])
        assert list(rows[0]) == UTT_HEADER and len(rows) == {"train": 9}.get(split, 6)
        for row in rows:
            info = soundfile.info(row["wav"])
            assert os.path.isabs(row["wav"]) and info.samplerate == 8000 and info.channels == 1
            assert abs(info.frames / 8000 - float(row["duration"])) < 1e-3
            assert info.subtype == "PCM_16" and 0.5 < info.duration < 10
            wav = soundfile.read(row["wav"])[0]
            assert np.abs(wav).max() < 0.6 and np.mean(wav == 0) < 0.5
    for split in ("valid", "test"):
        rows = _rows(corpus[split])
        assert list(rows[0]) == MIX_HEADER and len(rows) == 4
        for row in rows:
            mix, sr = soundfile.read(row["mix_wav"])
            target, _ = soundfile.read(row["target_wav"])
            assert sr == 8000 and mix.shape == target.shape and mix.ndim == 1
            assert abs(len(mix) / 8000 - float(row["duration"])) < 1e-3
            assert np.abs(mix).max() <= 0.91 and -5 <= float(row["snr_db"]) <= 5


def test_speakers_disjoint_and_enrollment(corpus):
    speakers = {
        s: {r["spk_id"] for r in _rows(corpus[f"{s}_utts"])} for s in ("train", "valid", "test")
    }
    assert [len(v) for v in speakers.values()] == [3, 2, 2]
    assert not (
        speakers["train"] & speakers["valid"]
        or speakers["train"] & speakers["test"]
        or speakers["valid"] & speakers["test"]
    )
    for split in ("valid", "test"):
        spk_of = {r["wav"]: r["spk_id"] for r in _rows(corpus[f"{split}_utts"])}
        for row in _rows(corpus[split]):
            assert spk_of[row["enroll_wav"]] == row["target_spk"] != spk_of[row["interf_wav"]]
            # the target is the start of a source utterance, which must not be the enrollment
            target = soundfile.read(row["target_wav"])[0]
            enroll = soundfile.read(row["enroll_wav"])[0][: len(target)]
            assert len(enroll) < len(target) or abs(np.corrcoef(target, enroll)[0, 1]) < 0.9


def test_second_call_is_a_noop(corpus, tmp_path):
    root = os.path.dirname(corpus["train_utts"])
    stamp = os.stat(os.path.join(root, "manifest.json")).st_mtime_ns
    assert prepare_synth_speakers(os.path.dirname(root), seed=7, **TINY) == corpus
    assert os.stat(os.path.join(root, "manifest.json")).st_mtime_ns == stamp


def test_interrupted_run_regenerates_identically(corpus, tmp_path):
    folder = os.path.join(str(tmp_path), os.path.basename(os.path.dirname(corpus["train_utts"])))
    os.makedirs(folder + ".partial/wavs")
    with open(folder + ".partial/wavs/junk.wav", "wb") as f:
        f.write(b"junk")
    paths = prepare_synth_speakers(str(tmp_path), seed=7, **TINY)
    assert os.path.dirname(paths["train_utts"]) == folder and not os.path.exists(
        folder + ".partial"
    )
    assert _hashes(paths) == _hashes(corpus)


def test_moved_corpus_gets_its_paths_rewritten(corpus, tmp_path):
    import shutil

    root = os.path.dirname(corpus["train_utts"])
    moved = os.path.join(str(tmp_path), os.path.basename(root))
    shutil.copytree(root, moved)
    paths = prepare_synth_speakers(str(tmp_path), seed=7, **TINY)
    assert all(r["wav"].startswith(moved + os.sep) for r in _rows(paths["train_utts"]))
    assert all(r["mix_wav"].startswith(moved + os.sep) for r in _rows(paths["test"]))


def test_missing_espeak_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(
        ImportError, match="^SynthSpeakers needs eSpeak NG: pip install espeakng-loader$"
    ):
        prepare_synth_speakers(str(tmp_path), seed=3, **TINY)
    with pytest.raises(espeak.EspeakNotAvailable):
        espeak.espeak_paths()
    assert not os.listdir(tmp_path)


def test_dynamic_mix_is_deterministic_and_fixed_size(corpus):
    def make(preload=True):
        return DynamicMixDataset(
            corpus["train_utts"],
            segment_seconds=1.0,
            enroll_seconds=0.5,
            noise_db=(-30, -20),
            seed=5,
            epoch_size=6,
            preload=preload,
        )

    ds, other = make(), make()
    spk_of = {r["ID"]: r["spk_id"] for r in _rows(corpus["train_utts"])}
    items = [ds[i] for i in range(len(ds))]
    for i, item in enumerate(items):
        assert item["mix_sig"].shape == item["target_sig"].shape == (8000,)
        assert item["mix_sig"].dtype == torch.float32 and 0 < len(item["enroll_sig"]) <= 4000
        twin = other[i]
        assert twin["id"] == item["id"]
        assert all(torch.equal(twin[k], item[k]) for k in ("mix_sig", "target_sig", "enroll_sig"))
        parts = item["id"].split("_")  # e<epoch>_<index>_<target utt>_<interferer utt>
        assert spk_of["_".join(parts[2:4])] != spk_of["_".join(parts[4:6])]
    assert [other[i]["id"] for i in (4, 0)] == [items[4]["id"], items[0]["id"]]  # order-free
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["mix_sig"], items[0]["mix_sig"])
    lazy = make(preload=False)
    assert torch.equal(lazy[3]["mix_sig"], items[3]["mix_sig"])


def test_dynamic_mix_exclude_and_errors(corpus):
    rows = _rows(corpus["train_utts"])
    ds = DynamicMixDataset(corpus["train_utts"], exclude={rows[0]["ID"]}, segment_seconds=0.5)
    assert len(ds) == len(rows) - 1
    assert all(rows[0]["ID"] not in ds[i]["id"] for i in range(len(ds)))
    with pytest.raises(ValueError, match="wrong sample rate 8000 Hz, expected 16000 Hz"):
        DynamicMixDataset(corpus["train_utts"], sample_rate=16000)
    with pytest.raises(IndexError):
        ds[len(ds)]
