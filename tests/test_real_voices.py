"""RealVoices: the corpus of real recorded speech, built here from fake package sources (the
Debian packages are optional), and its use by the recipes and the benchmark."""

import csv
import json
import logging
import os

import numpy as np
import pytest

from speechbrain_crossmamba.dataio import real_voices, real_voices_build, voice_clips, voice_packages
from speechbrain_crossmamba.dataio.real_voices import (
    cut_utterances,
    normalise,
    prepare_real_voices,
    prepare_tse_speakers,
)

RATE = 11025


def _line(seed, seconds=5.0, pauses=2):
    """A 'recorded line': harmonic bursts with pauses between them, at 11025 Hz."""
    rng = np.random.default_rng(seed)
    f0 = 90 + 20 * seed
    parts = []
    for _ in range(pauses + 1):
        t = np.arange(int(RATE * seconds / (pauses + 1))) / RATE
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (0.05 + 0.3 * rng.random())
        parts += [voiced, np.zeros(int(0.4 * RATE))]
    return np.concatenate(parts).astype(np.float32) + rng.normal(0, 1e-4, sum(map(len, parts))).astype(np.float32)


def _fake_source(name, speakers, files=6):
    def reader():
        return [(f"{name}_{spk}", f"{spk}/{k}.ogg", lambda s=(i, k): (_line(s[0] * 10 + s[1]), RATE))
                for i, spk in enumerate(speakers) for k in range(files)]
    return reader


@pytest.fixture
def fake_packages(monkeypatch):
    """Three fake sources: 'alpha' (3 speakers), 'beta' (3) installed, 'gamma' not."""
    sources = {
        "alpha": ("pkg-alpha", "main", "GPL-2", _fake_source("alpha", ["a", "b", "c"])),
        "beta": ("pkg-beta", "non-free", "CC BY-NC-SA 2.5", _fake_source("beta", ["d", "e", "f"])),
        "gamma": ("pkg-gamma", "main", "GPL-2", lambda: []),
    }
    versions = {"pkg-alpha": "1.0-1", "pkg-beta": "2.0-3"}
    monkeypatch.setattr(real_voices, "SOURCES", sources)
    monkeypatch.setattr(real_voices_build, "SOURCES", sources)  # read by _build
    monkeypatch.setattr(real_voices, "package_version", versions.get)
    return sources


SPLITS = {"valid_speakers": ["alpha_a", "beta_d"], "test_speakers": ["alpha_b", "beta_e"],
          "n_valid_mixtures": 4, "n_test_mixtures": 6, "min_utterances_per_speaker": 2}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cut_utterances_splits_at_pauses_and_drops_short_pieces():
    line = _line(0, seconds=6.0, pauses=2)  # three 2 s bursts, 0.4 s pauses
    cuts = cut_utterances(line, RATE, min_seconds=1.5, max_seconds=3.0)
    assert len(cuts) == 3
    assert all(1.9 * RATE < b - a < 2.3 * RATE for a, b in cuts)
    assert len(cut_utterances(line, RATE, min_seconds=1.5, max_seconds=7.0)) == 1
    assert cut_utterances(line, RATE, min_seconds=2.5, max_seconds=2.0) == []  # only 2 s pieces
    assert cut_utterances(np.zeros(10, np.float32), RATE) == []


def test_normalise_sets_the_speech_level_whatever_the_recording_level():
    quiet, loud = _line(1) * 0.01, _line(1) * 3.0
    a, b = normalise(quiet, RATE), normalise(loud, RATE)
    assert np.allclose(a, b, atol=1e-6)
    assert np.abs(a).max() <= real_voices.PEAK + 1e-6


def test_corpus_splits_by_speaker_records_packages_and_reports_missing_ones(tmp_path, fake_packages, caplog):
    with caplog.at_level(logging.WARNING):
        paths = prepare_real_voices(str(tmp_path), sources=["alpha", "beta", "gamma"], **SPLITS)
    assert [r.getMessage() for r in caplog.records] == [
        "RealVoices: pkg-gamma is not installed, skipped (install: sudo bash tools/install_voices.sh)"
    ]
    speakers = {split: {r["spk_id"] for r in _rows(paths[f"{split}_utts"])} for split in ("train", "valid", "test")}
    assert speakers == {"train": {"alpha_c", "beta_f"}, "valid": {"alpha_a", "beta_d"}, "test": {"alpha_b", "beta_e"}}
    manifest = json.load(open(paths["manifest"]))
    assert manifest["packages"]["beta"] == {"package": "pkg-beta", "version": "2.0-3", "section": "non-free",
                                            "licence": "CC BY-NC-SA 2.5"}
    assert "gamma" not in manifest["packages"]
    for split, n in (("valid", 4), ("test", 6)):
        rows = _rows(paths[split])
        assert len(rows) == n
        for row in rows:  # the target, its enrollment and the interferer come from this split
            assert row["target_spk"] in speakers[split]
            assert f"/{split}/{row['target_spk']}/" in row["enroll_wav"]
            assert f"/{split}/" in row["interf_wav"] and f"/{row['target_spk']}/" not in row["interf_wav"]
    import soundfile

    for row in _rows(paths["train_utts"]):
        wav, rate = soundfile.read(row["wav"])
        assert rate == 8000 and 1.5 <= len(wav) / rate <= 8.1
        assert np.abs(wav).max() <= real_voices.PEAK + 1e-3


def test_corpus_is_reproducible_and_rebuilt_when_incomplete(tmp_path, fake_packages):
    first = prepare_real_voices(str(tmp_path / "a"), sources=["alpha", "beta"], **SPLITS)
    again = prepare_real_voices(str(tmp_path / "b"), sources=["alpha", "beta"], **SPLITS)
    digest = [json.load(open(p["manifest"]))["digest"] for p in (first, again)]
    assert digest[0] == digest[1]
    os.remove(first["test"])  # a killed build
    assert prepare_real_voices(str(tmp_path / "a"), sources=["alpha", "beta"], **SPLITS) == first
    assert json.load(open(first["manifest"]))["digest"] == digest[0]
    other = prepare_real_voices(str(tmp_path / "a"), sources=["alpha", "beta"], **dict(SPLITS, seed=5))
    assert other["manifest"] != first["manifest"]


def test_no_installed_package_and_overlapping_splits_are_one_line_errors(tmp_path, fake_packages):
    with pytest.raises(RuntimeError, match="none of the packages is installed; install: sudo bash tools/install_voices.sh"):
        prepare_real_voices(str(tmp_path), sources=["gamma"])
    with pytest.raises(ValueError, match="must be disjoint"):
        prepare_real_voices(str(tmp_path), valid_speakers=["x"], test_speakers=["x"])


def test_tse_speakers_union_for_training_and_real_speakers_for_evaluation(tmp_path, fake_packages):
    import functools

    synth_dir = tmp_path / "synth"
    synth_dir.mkdir()
    synth_paths = {}
    for split in ("train", "valid", "test"):
        synth_paths[f"{split}_utts"] = str(synth_dir / f"{split}_utts.csv")
        with open(synth_paths[f"{split}_utts"], "w") as f:
            f.write(f"ID,duration,wav,spk_id\nsyn_{split}_0,1.0,/x.wav,{split}000\n")
    synth_paths.update(valid=str(synth_dir / "valid.csv"), test=str(synth_dir / "test.csv"))
    real = functools.partial(prepare_real_voices, str(tmp_path), sources=["alpha", "beta"], **SPLITS)
    both = prepare_tse_speakers(str(tmp_path), lambda: synth_paths, real, ["espeak", "real"], "real")
    speakers = {r["spk_id"] for r in _rows(both["train_utts"])}
    assert speakers == {"train000", "alpha_c", "beta_f"}
    assert both["test"] == real()["test"] and both["valid_utts"] == real()["valid_utts"]
    auto = prepare_tse_speakers(str(tmp_path), lambda: synth_paths, real, "auto", "auto")
    assert auto == both
    only = prepare_tse_speakers(str(tmp_path), lambda: synth_paths, real, ["espeak"], "espeak")
    assert only == dict(synth_paths, train_utts=synth_paths["train_utts"])


def test_auto_without_real_voices_is_espeak_and_asking_for_them_is_one_line(tmp_path, fake_packages, monkeypatch):
    import functools

    monkeypatch.setattr(real_voices, "package_version", lambda package: None)
    for name, (package, section, licence, _) in list(fake_packages.items()):  # and no files
        fake_packages[name] = (package, section, licence, lambda: [])
    synth = {"train_utts": "t.csv", "valid": "v.csv", "test": "e.csv", "valid_utts": "vu.csv", "test_utts": "eu.csv"}
    real = functools.partial(prepare_real_voices, str(tmp_path), sources=["alpha", "beta"])
    assert prepare_tse_speakers(str(tmp_path), lambda: synth, real, "auto", "auto") == synth
    with pytest.raises(ValueError, match="^RealVoices: none of the packages is installed; install: .*install_voices.sh$"):
        prepare_tse_speakers(str(tmp_path), lambda: synth, real, ["real"], "espeak")


def test_package_formats():
    wav, rate = voice_packages.drascula_raw(bytes(32) + bytes([128, 192, 64]) + bytes(64))
    assert rate == 11025 and wav.tolist() == [0.0, 0.5, -0.5]
    with pytest.raises(ValueError, match="no QTBL"):
        voice_packages.fotaq_table(b"RIFF" + bytes(40))


def test_benchmark_skips_in_one_line_without_the_test_speakers(monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_voices_benchmark", "benchmarks/real_voices.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "package_version", lambda package: None)
    assert bench.main(["some/model"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == ("skipped: install drascula fillets-ng-data-cs (sudo bash tools/install_voices.sh)")


def test_klettres_joins_the_clips_of_each_language_and_kind(tmp_path, monkeypatch):
    """KLettres' clips (any rate) become recordings of one speaker per language and kind."""
    import soundfile

    for lang, kind, rate, n in (("xx", "alpha", 44100, 10), ("xx", "syllab", 22050, 3), ("yy", "alpha", 48000, 2)):
        folder = tmp_path / lang / kind
        folder.mkdir(parents=True)
        for k in range(n):
            tone = 0.1 * np.sin(np.arange(rate // 2) * 0.05)  # 0.5 s of sound in 1.5 s of silence
            soundfile.write(str(folder / f"{k:02d}.ogg"), np.concatenate([0 * tone, tone, 0 * tone, 0 * tone]), rate)
    (tmp_path / "icons").mkdir()  # other folders of the package are not languages
    monkeypatch.setattr(voice_clips, "KLETTRES_DIR", str(tmp_path))
    items = voice_packages.SOURCES["klettres"][3]()
    per_speaker = {}
    for speaker, key, _ in items:
        per_speaker.setdefault(speaker, []).append(key)
    assert per_speaker == {
        "klettres_xx_alpha": ["xx/alpha/0000", "xx/alpha/0008"],
        "klettres_xx_syllab": ["xx/syllab/0000"],
        "klettres_yy_alpha": ["yy/alpha/0000"],
    }
    wav, rate = items[0][2]()  # 8 clips trimmed to their 0.5 s of sound (+ 50 ms margins), 0.3 s apart
    assert rate == voice_clips.CLIP_RATE and abs(len(wav) / rate - 8 * 0.9) < 0.06  # Vorbis and resampling blur the edges
    assert len(cut_utterances(wav, rate, min_seconds=1.0)) >= 1


def test_ktuberling_is_one_speaker_per_language_in_any_of_its_formats(tmp_path, monkeypatch):
    """KTuberling mixes Ogg, Opus and WAV clips in one folder; sr@latin & co. repeat sr."""
    import soundfile

    tone = 0.1 * np.sin(np.arange(24000) * 0.05)  # 0.5 s at 48 kHz, in 1 s of silence
    clip = np.concatenate([0 * tone, tone, 0 * tone])
    for lang, names in (("xx", ["a.ogg", "b.opus", "c.wav", "d.txt"]), ("sr", ["a.wav"]), ("sr@latin", ["a.wav"])):
        (tmp_path / lang).mkdir()
        for name in names:
            if name.endswith(".txt"):
                (tmp_path / lang / name).write_text("not a clip")
            else:
                fmt = {"ogg": "OGG", "opus": "OGG", "wav": "WAV"}[name[-3:].replace("pus", "ogg")]
                sub = "OPUS" if name.endswith(".opus") else None
                soundfile.write(str(tmp_path / lang / name), clip, 48000, format=fmt, subtype=sub)
    monkeypatch.setattr(voice_clips, "KTUBERLING_DIR", str(tmp_path))
    items = voice_packages.SOURCES["ktuberling"][3]()
    assert [(speaker, key) for speaker, key, _ in items] == [("ktuberling_sr", "sr/0000"), ("ktuberling_xx", "xx/0000")]
    wav, rate = items[1][2]()  # three clips of 0.5 s (+ 50 ms margins), 0.3 s apart
    assert rate == voice_clips.CLIP_RATE and abs(len(wav) / rate - 3 * 0.9) < 0.06
