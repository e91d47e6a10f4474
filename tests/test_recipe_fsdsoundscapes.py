"""FSDSoundScapes preparation: CSVs, targets, Waveformer selection, rendering, resuming, errors.

:func:`make_fsdsoundscapes` builds a tiny corpus in the real layout (valid scaper JAMS specs,
``gt_events.csv``, FSDKaggle2018 foregrounds, TAU backgrounds); :func:`prerender` writes what
rendering would, so the CSV logic is tested without scaper. Rendering is tested with a fake
``scaper`` module, and with the real one when it and SoX are installed.
"""

import csv
import importlib.util
import json
import os
import re
import shutil
import sys
import types
import zlib

import numpy as np
import pytest
import soundfile as sf
import torch
from recipe_helpers import extract_with_pretrained, load_prepare, train_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
prep = load_prepare("FSDSoundScapes", "prepare_fsdsoundscapes")

# Per split and sample index: (label, event_time, event_duration) as fractions of the clip,
# sorted by time (as JAMS keeps them). train/10 has two Meow events; indices 2 and 10 check
# that samples are sorted as numbers.
SAMPLES = {
    "train": {
        "2": [("Bark", 0.1, 0.3), ("Cough", 0.4, 0.3)],
        "10": [("Meow", 0.05, 0.2), ("Bark", 0.3, 0.3), ("Knock", 0.5, 0.3), ("Meow", 0.6, 0.2)],
    },
    "val": {
        "0": [("Gong", 0.1, 0.4), ("Chime", 0.3, 0.3)],
        "1": [("Hi-hat", 0.1, 0.2), ("Applause", 0.2, 0.5)],
    },
    "test": {"0": [("Violin_or_fiddle", 0.1, 0.5), ("Hi-hat", 0.2, 0.2), ("Bark", 0.5, 0.3)]},
}
SCENES = {"development": ("park", "street_traffic"), "evaluation": ("airport",)}
ORIGINAL = "/original/FSDSoundScapes"  # where the specs say the sources were at generation time


def _distinct(events):
    return list(dict.fromkeys(label for label, _, _ in events))


def _tone(name, seconds, sample_rate, amplitude):
    """A deterministic test signal: a partial-rich tone plus a little noise."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    freq = 150 + zlib.crc32(name.encode()) % 900
    signal = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2.7 * freq * t)
    return amplitude * (0.75 * signal + 0.05 * rng.standard_normal(len(t)))


def make_fsdsoundscapes(root, seconds=1.0, sample_rate=44100):
    """Builds a tiny FSDSoundScapes corpus under ``root`` and returns its ``FSDSoundScapes`` folder.

    Layout as the real one: ``jams/{train,val,test}/<index>/{mixture.jams,gt_events.csv}`` (the
    samples of :data:`SAMPLES`), ``FSDKaggle2018/<split>/<label>/<label>_<split>.wav`` and
    ``TAU-acoustic-sounds/TAU-urban-acoustic-scenes-2019-<set>/<scene>/<scene>-1.wav``, all mono
    16-bit WAV of ``seconds`` at ``sample_rate``. The specs are scaper JAMS (namespace
    ``scaper``) whose source paths point to another machine, as shipped specs do: rendering
    must re-root them with ``fg_path`` / ``bg_path``.
    """
    corpus = os.path.join(root, "FSDSoundScapes")
    for tau_set, scenes in SCENES.items():
        for scene in scenes:
            folder = os.path.join(corpus, "TAU-acoustic-sounds", f"TAU-urban-acoustic-scenes-2019-{tau_set}", scene)
            os.makedirs(folder, exist_ok=True)
            sf.write(os.path.join(folder, f"{scene}-1.wav"), _tone(scene, seconds, sample_rate, 0.05),
                     sample_rate, subtype="PCM_16")
    for split, samples in SAMPLES.items():
        tau_set = prep.BACKGROUND_SETS[split]
        for position, (index, events) in enumerate(samples.items()):
            scene = SCENES[tau_set][position % len(SCENES[tau_set])]
            bg_file = f"{ORIGINAL}/TAU-acoustic-sounds/TAU-urban-acoustic-scenes-2019-{tau_set}/{scene}/{scene}-1.wav"
            observations = [_observation(scene, bg_file, 0.0, 0.0, seconds, "background")]
            for label, start, length in events:
                name = f"{label}_{split}"
                folder = os.path.join(corpus, "FSDKaggle2018", split, label)
                if not os.path.isdir(folder):
                    os.makedirs(folder)
                    sf.write(os.path.join(folder, name + ".wav"), _tone(name, seconds, sample_rate, 0.2),
                             sample_rate, subtype="PCM_16")
                source = f"{ORIGINAL}/FSDKaggle2018/{split}/{label}/{name}.wav"
                observations.append(
                    _observation(label, source, 0.0, start * seconds, length * seconds, "foreground")
                )
            sample = os.path.join(corpus, "jams", split, index)
            os.makedirs(sample)
            with open(os.path.join(sample, "mixture.jams"), "w") as f:
                json.dump(_jams(observations, seconds, sample_rate, split, tau_set), f, indent=1)
            with open(os.path.join(sample, "gt_events.csv"), "w") as f:  # pandas-style, index first
                f.write("\tlabel\tevent_time\tevent_duration\tsnr\n")
                for i, (label, start, length) in enumerate(events):
                    f.write(f"{i}\t{label}\t{start * seconds}\t{length * seconds}\t6.0\n")
    return corpus


def _observation(label, source_file, source_time, event_time, event_duration, role):
    value = {
        "label": label, "source_file": source_file, "source_time": source_time,
        "event_time": event_time, "event_duration": event_duration,
        "snr": 0.0 if role == "background" else 6.0, "role": role,
        "pitch_shift": None, "time_stretch": None,
    }
    return {"time": event_time, "duration": event_duration, "value": value, "confidence": 1.0}


def _jams(observations, seconds, sample_rate, split, tau_set):
    """A JAMS document holding one scaper annotation, with the sandbox generate_from_jams reads."""
    sandbox = {
        "duration": seconds, "original_duration": seconds,
        "fg_path": f"{ORIGINAL}/FSDKaggle2018/{split}",
        "bg_path": f"{ORIGINAL}/TAU-acoustic-sounds/TAU-urban-acoustic-scenes-2019-{tau_set}",
        "protected_labels": [], "sr": sample_rate, "ref_db": -50, "n_channels": 1,
        "fade_in_len": 0.01, "fade_out_len": 0.01, "reverb": None, "fix_clipping": True,
        "peak_normalization": False, "quick_pitch_time": False,
        "n_events": len(observations) - 1, "allowed_labels": [],
    }
    curator = {"name": "", "email": ""}
    metadata = {
        "curator": curator, "annotator": {}, "version": "", "corpus": "", "annotation_tools": "",
        "annotation_rules": "", "validation": "", "data_source": "scaper",
    }
    annotation = {
        "annotation_metadata": metadata, "namespace": "scaper", "data": observations,
        "sandbox": {"scaper": sandbox}, "time": 0, "duration": seconds,
    }
    file_metadata = {
        "title": "", "artist": "", "release": "", "duration": seconds, "identifiers": {},
        "jams_version": "0.3.5",
    }
    return {"annotations": [annotation], "file_metadata": file_metadata, "sandbox": {}}


def _place_events(jams_path, fg_path, bg_path):
    """What scaper renders from a fixture spec, without loudness or fades: (sr, [(value, audio)])."""
    with open(jams_path) as f:
        annotation = next(a for a in json.load(f)["annotations"] if a["namespace"] == "scaper")
    box = annotation["sandbox"]["scaper"]
    sample_rate, length = box["sr"], int(box["duration"] * box["sr"])
    placed = []
    for observation in annotation["data"]:
        value = observation["value"]
        folder = fg_path if value["role"] == "foreground" else bg_path
        parent = os.path.basename(os.path.dirname(value["source_file"]))
        audio, _ = sf.read(os.path.join(folder, parent, os.path.basename(value["source_file"])))
        first = int(value["source_time"] * sample_rate)
        clip = audio[first : first + int(value["event_duration"] * sample_rate)]
        start = int(value["event_time"] * sample_rate)
        track = np.zeros(length)
        track[start : start + len(clip)] = clip[: length - start]
        placed.append((value, track))
    return sample_rate, placed


def _source_folders(corpus, split):
    tau = f"TAU-urban-acoustic-scenes-2019-{prep.BACKGROUND_SETS[split]}"
    return os.path.join(corpus, "FSDKaggle2018", split), os.path.join(corpus, "TAU-acoustic-sounds", tau)


def prerender(root, save_folder):
    """Writes what rendering writes (``mixture.wav``, ``<label>.wav``, ``done``) for the corpus
    of :func:`make_fsdsoundscapes` under ``root``; the mixture is exactly the sum of the label
    files and a background (in 16-bit integers). Returns ``{(split, index): background}``."""
    corpus = os.path.join(root, "FSDSoundScapes")
    backgrounds = {}
    for split, samples in SAMPLES.items():
        for index in samples:
            jams_path = os.path.join(corpus, "jams", split, index, "mixture.jams")
            sample_rate, placed = _place_events(jams_path, *_source_folders(corpus, split))
            tracks, background = {}, 0
            for value, audio in placed:
                if value["role"] == "background":
                    background = background + audio
                else:
                    tracks[value["label"]] = tracks.get(value["label"], 0) + audio
            background = prep._to_pcm16(background).astype(np.int32)
            tracks = {label: prep._to_pcm16(audio).astype(np.int32) for label, audio in tracks.items()}
            folder = os.path.join(save_folder, "wav", split, index)
            os.makedirs(folder, exist_ok=True)
            mixture = background + sum(tracks.values())
            sf.write(os.path.join(folder, "mixture.wav"), mixture.astype(np.int16), sample_rate, subtype="PCM_16")
            for label, track in tracks.items():
                sf.write(os.path.join(folder, f"{label}.wav"), track.astype(np.int16), sample_rate, subtype="PCM_16")
            open(os.path.join(folder, "done"), "w").close()
            backgrounds[(split, index)] = background
    return backgrounds


class FakeScaper:
    """Stands in for ``scaper``: ``generate_from_jams`` places the fixture's sources (scaled by
    ``gain``, with ``channels`` channels) and returns scaper's 4-tuple with a JAMS-like object.
    With ``cancel``, the background is -0.9 x the foregrounds: a quiet mixture of loud events."""

    def __init__(self, gain=1.0, channels=1, cancel=False):
        self.gain, self.channels, self.cancel, self.calls = gain, channels, cancel, []
        self.module = types.ModuleType("scaper")
        self.module.generate_from_jams = self.generate_from_jams

    def generate_from_jams(self, jams_infile, audio_outfile=None, fg_path=None, bg_path=None, **kwargs):
        self.calls.append(jams_infile)
        sample_rate, placed = _place_events(jams_infile, fg_path, bg_path)
        events = [np.repeat(self.gain * audio[:, None], self.channels, axis=1) for _, audio in placed]
        if self.cancel:
            events[0] = -0.9 * sum(events[1:])
        annotation = types.SimpleNamespace(
            data=[types.SimpleNamespace(value=value) for value, _ in placed],
            sandbox=types.SimpleNamespace(scaper={"sr": sample_rate}),
        )
        jam = types.SimpleNamespace(search=lambda namespace: [annotation] if namespace == "scaper" else [])
        return sum(events), jam, [], events


@pytest.fixture
def corpus(tmp_path):
    return make_fsdsoundscapes(str(tmp_path / "data"), seconds=1.0, sample_rate=16000)


@pytest.fixture
def no_scaper(monkeypatch):
    monkeypatch.setitem(sys.modules, "scaper", None)  # "import scaper" raises ImportError


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == prep.CSV_COLUMNS
        return list(reader)


def read_text(path):
    with open(path) as f:
        return f.read()


def read_int(path):
    return sf.read(path, dtype="int16")[0].astype(np.int32)


def check_rows(rows, save, split):
    for row in rows:
        labels = row["labels"].split()
        index = row["ID"].split("_")[1]
        assert row["ID"] == f"{split}_{index}_{'+'.join(labels)}"
        vector = [int(v) for v in row["label_vector"].split()]
        assert vector == prep.labels_to_vector(labels) and sum(vector) == len(labels)
        assert [prep.CLASSES[i] for i, v in enumerate(vector) if v] == sorted(labels, key=prep.CLASSES.index)
        assert row["mix_wav"] == os.path.join(save, "wav", split, index, "mixture.wav")
        assert float(row["duration"]) == pytest.approx(1.0)
        folder = os.path.dirname(row["mix_wav"])
        expected = sum(read_int(os.path.join(folder, f"{label}.wav")) for label in labels)
        np.testing.assert_array_equal(read_int(row["target_wav"]), expected)
        if len(labels) > 1:
            assert os.path.basename(row["target_wav"]) == f"target_{'+'.join(labels)}.wav"
        else:
            assert os.path.basename(row["target_wav"]) == f"{labels[0]}.wav"


def test_classes_and_label_vector():
    assert len(prep.CLASSES) == 41 and len(set(prep.CLASSES)) == 41
    assert prep.CLASSES[0] == "Acoustic_guitar" and prep.CLASSES[2] == "Bark"
    assert prep.CLASSES[23] == "Hi-hat" and prep.CLASSES[40] == "Writing"
    vector = prep.labels_to_vector(["Writing", "Bark"])
    assert vector[2] == vector[40] == 1 and sum(vector) == 2
    assert prep.labels_to_vector("Bark Writing") == vector
    with pytest.raises(ValueError, match="Purr"):
        prep.labels_to_vector(["Bark", "Purr"])


def test_fixture_specs_hold_what_generate_from_jams_reads(corpus):
    path = os.path.join(corpus, "jams", "train", "10", "mixture.jams")
    with open(path) as f:
        (annotation,) = json.load(f)["annotations"]
    assert annotation["namespace"] == "scaper"
    assert {"original_duration", "duration", "fg_path", "bg_path", "protected_labels", "sr", "ref_db",
            "n_channels", "fade_in_len", "fade_out_len", "reverb", "fix_clipping",
            "peak_normalization", "quick_pitch_time"} <= set(annotation["sandbox"]["scaper"])
    for observation in annotation["data"]:
        assert {"label", "source_file", "source_time", "event_time", "event_duration", "snr", "role",
                "pitch_shift", "time_stretch"} <= set(observation["value"])
    if importlib.util.find_spec("jams") is not None:  # schema validation, where jams is installed
        import jams

        assert len(jams.load(path).search(namespace="scaper")[0].data) == 5


def test_csvs_from_prerendered_outputs(corpus, tmp_path, no_scaper):
    data, save = os.path.dirname(corpus), str(tmp_path / "save")
    prerender(data, save)
    shutil.rmtree(os.path.join(corpus, "FSDKaggle2018"))  # rendered samples need no sources
    shutil.rmtree(os.path.join(corpus, "TAU-acoustic-sounds"))
    csvs = prep.prepare_fsdsoundscapes(data, save)
    assert csvs == {
        key: os.path.join(save, f"fsdsoundscapes_{split}.csv") for split, key in prep.SPLITS
    }
    train = read_rows(csvs["train"])
    assert [row["ID"] for row in train] == [  # sorted by index as numbers, one row per label
        "train_2_Bark", "train_2_Cough", "train_10_Meow", "train_10_Bark", "train_10_Knock",
    ]
    assert [row["labels"] for row in read_rows(csvs["valid"])] == ["Gong", "Hi-hat"]
    assert [row["labels"] for row in read_rows(csvs["test"])] == ["Violin_or_fiddle"]
    bark = next(row for row in train if row["ID"] == "train_10_Bark")
    assert bark["label_vector"].split()[2] == "1" and bark["label_vector"].count("1") == 1
    for split, key in prep.SPLITS:
        check_rows(read_rows(csvs[key]), save, split)
    assert not [n for n in os.listdir(save) if n.endswith(".part")]


def test_multi_target_rows_follow_waveformer_and_seed(corpus, tmp_path, no_scaper):
    data, save = os.path.dirname(corpus), str(tmp_path / "save")
    prerender(data, save)
    csvs = prep.prepare_fsdsoundscapes(data, save, max_num_targets=2, seed=7)
    # val: sample i gets the first (i % 2) + 1 labels; test: the first 2
    assert [row["labels"] for row in read_rows(csvs["valid"])] == ["Gong", "Hi-hat Applause"]
    assert [row["labels"] for row in read_rows(csvs["test"])] == ["Violin_or_fiddle Hi-hat"]
    train = read_rows(csvs["train"])
    multi = [row for row in train if "+" in row["ID"]]
    assert len(train) == 5 + 2 and multi[0]["ID"] == "train_2_Bark+Cough"
    assert multi[1]["ID"].startswith("train_10_") and len(multi[1]["labels"].split()) == 2
    for split, key in prep.SPLITS:
        check_rows(read_rows(csvs[key]), save, split)
    contents = {key: read_text(path) for key, path in csvs.items()}
    prep.prepare_fsdsoundscapes(data, save, max_num_targets=2, seed=7)
    assert {key: read_text(path) for key, path in csvs.items()} == contents
    # subsets: 2..max labels, in order of appearance, drawn per sample whatever its position
    labels = _distinct(SAMPLES["train"]["10"])
    sizes = set()
    for seed in range(20):
        sets = prep._target_sets("train", 1, "10", labels, 3, seed)
        assert sets[:3] == [[label] for label in labels] and len(sets) == 4
        assert sets[3] == [label for label in labels if label in sets[3]]
        assert sets == prep._target_sets("train", 5, "10", labels, 3, seed)
        sizes.add(len(sets[3]))
    assert sizes == {2, 3}


def test_render_sample_sums_labels_and_scales_all_alike(corpus, tmp_path, monkeypatch):
    jams_path = os.path.join(corpus, "jams", "train", "10", "mixture.jams")
    fg_path, bg_path = _source_folders(corpus, "train")
    _, placed = _place_events(jams_path, fg_path, bg_path)
    background = placed[0][1]
    meow = placed[1][1] + placed[4][1]  # the two Meow events
    for gain in (1.0, 4.0):
        fake = FakeScaper(gain=gain)
        monkeypatch.setitem(sys.modules, "scaper", fake.module)
        out = str(tmp_path / f"gain{gain}")
        info = prep.render_sample(jams_path, fg_path, bg_path, out)
        assert fake.calls == [jams_path] and info["labels"] == ["Meow", "Bark", "Knock"]
        assert sorted(os.listdir(out)) == ["Bark.wav", "Knock.wav", "Meow.wav", "done", "mixture.wav"]
        assert sf.info(os.path.join(out, "mixture.wav")).subtype == "PCM_16"
        scale = info["scale"]
        tracks = np.stack([meow, placed[2][1], placed[3][1]])
        peak = gain * max(np.abs(sum(a for _, a in placed)).max(), np.clip(tracks, 0, None).sum(0).max(),
                          np.clip(-tracks, 0, None).sum(0).max())
        assert peak > 1 if gain > 1 else peak < 1
        assert scale == (pytest.approx(32767 / 32768 / peak) if gain > 1 else 1.0)
        read = {name: sf.read(os.path.join(out, name + ".wav"))[0] for name in ("mixture", "Meow", "Bark")}
        lsb = 1.5 / 32768
        np.testing.assert_allclose(read["Meow"], scale * gain * meow, atol=lsb)
        np.testing.assert_allclose(read["Bark"], scale * gain * placed[2][1], atol=lsb)
        everything = sum(audio for _, audio in placed)
        np.testing.assert_allclose(read["mixture"], scale * gain * everything, atol=lsb)
        labels_sum = sum(sf.read(os.path.join(out, f"{l}.wav"))[0] for l in ("Meow", "Bark", "Knock"))
        np.testing.assert_allclose(read["mixture"] - labels_sum, scale * gain * background, atol=4 * lsb)
        assert np.abs(read["mixture"]).max() <= 1.0 and np.abs(labels_sum).max() <= 1.0
    # a quiet mixture of events whose sum would clip: scaled so that no target clips
    monkeypatch.setitem(sys.modules, "scaper", FakeScaper(gain=4.0, cancel=True).module)
    info = prep.render_sample(jams_path, fg_path, bg_path, str(tmp_path / "cancel"))
    labels_sum = sum(sf.read(str(tmp_path / "cancel" / f"{label}.wav"))[0] for label in info["labels"])
    assert info["scale"] < 1.0 and np.abs(labels_sum).max() == pytest.approx(1.0, abs=3 / 32768)
    assert np.abs(sf.read(str(tmp_path / "cancel" / "mixture.wav"))[0]).max() < 0.2


def test_prepare_renders_missing_samples_once_and_resumes(corpus, tmp_path, monkeypatch):
    data, save = os.path.dirname(corpus), str(tmp_path / "save")
    fake = FakeScaper()
    monkeypatch.setitem(sys.modules, "scaper", fake.module)
    csvs = prep.prepare_fsdsoundscapes(data, save, max_num_targets=2)
    assert len(fake.calls) == 5
    assert os.path.isfile(os.path.join(save, "wav", "val", "1", "done"))
    for split, key in prep.SPLITS:
        check_rows(read_rows(csvs[key]), save, split)
    prep.prepare_fsdsoundscapes(data, save, max_num_targets=2)
    assert len(fake.calls) == 5  # nothing rendered again
    os.remove(os.path.join(save, "wav", "test", "0", "done"))  # as if killed while rendering it
    prep.prepare_fsdsoundscapes(data, save, max_num_targets=2)
    assert fake.calls[5:] == [os.path.join(corpus, "jams", "test", "0", "mixture.jams")]


def _sox_available():
    return importlib.util.find_spec("soxbindings") is not None or shutil.which("sox") is not None


@pytest.mark.skipif(
    importlib.util.find_spec("scaper") is None or not _sox_available(),
    reason="real rendering needs scaper and SoX (soxbindings or the sox program): "
    "pip install -r recipes/FSDSoundScapes/tse/extra_requirements.txt",
)
def test_real_scaper_rendering(corpus, tmp_path):
    import scaper

    jams_path = os.path.join(corpus, "jams", "train", "10", "mixture.jams")
    fg_path, bg_path = _source_folders(corpus, "train")
    out = str(tmp_path / "out")
    info = prep.render_sample(jams_path, fg_path, bg_path, out)
    assert info["sample_rate"] == 16000 and sorted(info["labels"]) == ["Bark", "Knock", "Meow"]
    _, jam, _, events = scaper.generate_from_jams(jams_path, fg_path=fg_path, bg_path=bg_path)
    roles = [obs.value["role"] for obs in jam.search(namespace="scaper")[0].data]
    background = sum(e[:, 0] for e, role in zip(events, roles) if role == "background")
    mixture = sf.read(os.path.join(out, "mixture.wav"))[0]
    labels_sum = sum(sf.read(os.path.join(out, f"{label}.wav"))[0] for label in info["labels"])
    np.testing.assert_allclose(mixture - labels_sum, info["scale"] * background, atol=5 / 32768)
    assert np.abs(labels_sum).max() > 1e-3


def test_missing_folders(corpus, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no/such/folder"):
        prep.prepare_fsdsoundscapes(str(tmp_path / "no" / "such" / "folder"), str(tmp_path / "s"))
    tau = os.path.join(corpus, "TAU-acoustic-sounds", "TAU-urban-acoustic-scenes-2019-evaluation")
    shutil.rmtree(tau)
    fake = FakeScaper()
    monkeypatch.setitem(sys.modules, "scaper", fake.module)
    with pytest.raises(FileNotFoundError, match="TAU-urban-acoustic-scenes-2019-evaluation"):
        prep.prepare_fsdsoundscapes(corpus, str(tmp_path / "s"))  # the corpus folder itself works too
    assert fake.calls == []  # checked before rendering anything
    shutil.rmtree(os.path.join(corpus, "jams", "val"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(corpus, "jams", "val"))):
        prep.prepare_fsdsoundscapes(corpus, str(tmp_path / "s"))


def test_bad_event_lists(corpus, tmp_path, no_scaper):
    data, save = os.path.dirname(corpus), str(tmp_path / "save")
    prerender(data, save)
    events = os.path.join(corpus, "jams", "val", "1", "gt_events.csv")
    with open(events, "w") as f:
        f.write("\tclass\tevent_time\n0\tBark\t0.1\n")
    with pytest.raises(ValueError, match=re.escape(events) + ".*label"):
        prep.prepare_fsdsoundscapes(data, save)
    with open(events, "w") as f:
        f.write("label\tevent_time\nBark\t0.1\nPurr\t0.2\n")
    with pytest.raises(ValueError, match=re.escape(events) + ".*Purr"):
        prep.prepare_fsdsoundscapes(data, save)
    os.remove(events)
    with pytest.raises(ValueError, match=re.escape(events)):
        prep.prepare_fsdsoundscapes(data, save)


def test_missing_scaper_and_stereo(corpus, tmp_path, monkeypatch, no_scaper):
    with pytest.raises(ImportError) as error:
        prep.prepare_fsdsoundscapes(os.path.dirname(corpus), str(tmp_path / "save"))
    assert str(error.value) == (
        "rendering FSDSoundScapes needs scaper: "
        "pip install -r recipes/FSDSoundScapes/tse/extra_requirements.txt"
    )
    monkeypatch.setitem(sys.modules, "scaper", FakeScaper(channels=2).module)
    jams_path = os.path.join(corpus, "jams", "test", "0", "mixture.jams")
    with pytest.raises(ValueError, match=re.escape(jams_path) + ".*2 channels"):
        prep.render_sample(jams_path, *_source_folders(corpus, "test"), str(tmp_path / "out"))


@pytest.mark.parametrize("yaml", ["crossmamba_tse.yaml", "streaming_crossmamba.yaml"])
def test_one_tiny_epoch_through_train_py(tmp_path, no_scaper, yaml):
    root, rendered = str(tmp_path / "data"), str(tmp_path / "rendered")
    make_fsdsoundscapes(root, seconds=1.0, sample_rate=44100)
    prerender(root, rendered)  # rendered once, outside data_folder, and only read by the run
    before = sorted(os.walk(root))
    out = str(tmp_path / "run")
    train_tiny("FSDSoundScapes", root, out, yaml, extra=[f"--prepared_folder={rendered}"])
    assert sorted(os.walk(root)) == before and sorted(os.listdir(rendered)) == ["wav"]
    mixture = read_rows(os.path.join(out, "data", "fsdsoundscapes_test.csv"))[0]["mix_wav"]
    assert mixture.startswith(rendered)
    model, estimate = extract_with_pretrained(out, mixture, label="Bark")  # class names were exported
    assert model.sample_rate == 44100 and estimate.shape == (44100,) and bool(estimate.isfinite().all())
    if yaml.startswith("streaming"):  # 8 ms chunks at 44.1 kHz: 352.8 samples, so 353, which does not divide 44100
        chunks = model.load_audio(mixture).split(353)
        streamed = torch.cat(list(model.extract_stream(chunks, model.make_clue(label="Bark"))), dim=1)[0]
        torch.testing.assert_close(streamed, estimate, rtol=1e-4, atol=1e-5)
