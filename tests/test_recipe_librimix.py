"""Tests of the LibriMix TSE recipe (Libri2Mix) on a tiny fixture tree in the real layout.

``make_libri2mix`` and ``make_enroll_map`` build that tree and SpeakerBeam-style enrollment lists;
other recipe tests reuse them.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import itertools
import json
import logging
import math
import os
import re
import shutil

import numpy as np
import pytest
import soundfile
from recipe_helpers import assert_one_line_error, extract_with_pretrained, load_prepare, run_recipe, train_tiny

GEN_PREFIX = "/gen/machine/LibriMix/Libri2Mix"
N_SPEAKERS = 5
N_UTTS = 3
MIXTURE_COLUMNS = ["ID", "duration", "mix_wav", "target_wav", "enroll_wav", "spk_id", "target_utt", "enroll_utt"]


prep = load_prepare("LibriMix", "prepare_libri2mix_tse")


def _sample_rate(version):
    return {"wav8k": 8000, "wav16k": 16000}[version.split("/")[0]]


def fixture_mixtures(subset):
    """The fixture's mixtures of one subset: ``[(mixture_ID, utt1, utt2)]``.

    Each subset has its own 5 speakers with 3 utterances each; every pair of speakers makes one
    mixture (10 mixtures), a speaker's appearances cycling over its utterances (0, 1, 2, 0), so
    every speaker has at least 2 utterances per subset and one utterance occurs in 2 mixtures.
    """
    k = ("train-100", "train-360", "dev", "test").index(subset)
    speakers = [f"{100 + 10 * k + i}" for i in range(N_SPEAKERS)]
    seen = [0] * N_SPEAKERS
    mixtures = []
    for a, b in itertools.combinations(range(N_SPEAKERS), 2):
        utts = []
        for i in (a, b):
            utts.append(f"{speakers[i]}-{2000 + 10 * k + i}-{seen[i] % N_UTTS:04d}")
            seen[i] += 1
        mixtures.append((f"{utts[0]}_{utts[1]}", utts[0], utts[1]))
    return mixtures


def _utterance_signal(utt, n_samples_max):
    """A fixed signal per utterance, 75 % to 100 % of ``n_samples_max`` long."""
    speaker, chapter, index = (int(x) for x in utt.split("-"))
    rng = np.random.default_rng([speaker, chapter, index])
    length = int(n_samples_max * (0.75 + 0.05 * ((speaker + 3 * index) % 6)))
    return 0.05 * rng.standard_normal(length)


def make_libri2mix(
    root, version="wav8k/min", original_id_column=False, subsets=("train-100", "dev", "test"), seconds=1.0
):
    """Builds a tiny Libri2Mix tree under ``root`` in the layout of the LibriMix generator.

    ``<root>/Libri2Mix/<version>/<subset>/{s1,s2,noise,mix_clean,mix_both}/<mixture_ID>.wav``
    (mono 16-bit PCM at the version's rate) and
    ``<root>/Libri2Mix/<version>/metadata/mixture_<subset>_<mix_clean|mix_both>.csv`` whose paths
    are absolute under a fake generation prefix (``/gen/machine/LibriMix/Libri2Mix/...``), as on
    the machine that generated the corpus.

    Arguments
    ---------
    root : str or path
        Where to build (created if needed).
    version : str
        ``wav8k/min``, ``wav16k/max``, ...
    original_id_column : bool
        If True, the metadata has the newer generator's ``original_mixture_ID`` second column.
    subsets : tuple
        The subsets to build; each has 10 mixtures of its own 5 speakers (see ``fixture_mixtures``).
    seconds : float
        Longest utterance length; utterances are 75 % to 100 % of it.

    Returns
    -------
    str
        ``root``.
    """
    root = str(root)
    sample_rate = _sample_rate(version)
    version_dir = os.path.join(root, "Libri2Mix", *version.split("/"))
    os.makedirs(os.path.join(version_dir, "metadata"), exist_ok=True)
    for subset in subsets:
        for folder in ("s1", "s2", "noise", "mix_clean", "mix_both"):
            os.makedirs(os.path.join(version_dir, subset, folder), exist_ok=True)
        tables = {"mix_clean": [], "mix_both": []}
        for n, (mixture_id, utt1, utt2) in enumerate(fixture_mixtures(subset)):
            x1 = _utterance_signal(utt1, int(seconds * sample_rate))
            x2 = _utterance_signal(utt2, int(seconds * sample_rate))
            length = min(len(x1), len(x2)) if version.endswith("min") else max(len(x1), len(x2))
            s1 = np.pad(x1[:length], (0, length - len(x1[:length])))
            s2 = np.pad(x2[:length], (0, length - len(x2[:length])))
            noise = 0.02 * np.random.default_rng([n, len(subset)]).standard_normal(length)
            audio = {"s1": s1, "s2": s2, "noise": noise, "mix_clean": s1 + s2, "mix_both": s1 + s2 + noise}
            gen = {}
            for folder, signal in audio.items():
                relative = f"{subset}/{folder}/{mixture_id}.wav"
                soundfile.write(os.path.join(version_dir, relative), signal, sample_rate, subtype="PCM_16")
                gen[folder] = f"{GEN_PREFIX}/{version}/{relative}"
            for mix_type, table in tables.items():
                row = [mixture_id] + ([mixture_id] if original_id_column else [])
                row += [gen[mix_type], gen["s1"], gen["s2"]]
                row += [gen["noise"]] if mix_type != "mix_clean" else []
                table.append(row + [length])
        for mix_type, rows in tables.items():
            header = ["mixture_ID"] + (["original_mixture_ID"] if original_id_column else [])
            header += ["mixture_path", "source_1_path", "source_2_path"]
            header += ["noise_path"] if mix_type != "mix_clean" else []
            header += ["length"]
            path = os.path.join(version_dir, "metadata", f"mixture_{subset}_{mix_type}.csv")
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(header)
                writer.writerows(rows)
    return root


def make_enroll_map(root, subset, path, version="wav8k/min"):
    """Writes a valid SpeakerBeam ``map_mixture2enrollment`` for one subset of the fixture.

    Two lines per mixture (``<mixture_ID> <target_utterance_ID> <s1|s2>/<other_mixture_ID>``):
    the enrollment is the target speaker's first other utterance, in another mixture, in sorted
    order of the mixtures in ``<subset>/s1``.

    Returns
    -------
    str
        ``path`` (its folder is created if needed).
    """
    subset_dir = os.path.join(str(root), "Libri2Mix", *version.split("/"), subset)
    mixtures = sorted(n[:-4] for n in os.listdir(os.path.join(subset_dir, "s1")) if n.endswith(".wav"))
    lines = []
    for mixture in mixtures:
        for target in mixture.split("_"):
            speaker = target.split("-")[0]
            enroll = next(
                f"s{slot + 1}/{other}"
                for other in mixtures
                for slot, utt in enumerate(other.split("_"))
                if other != mixture and utt != target and utt.split("-")[0] == speaker
            )
            lines.append(f"{mixture} {target} {enroll}\n")
    os.makedirs(os.path.dirname(os.path.abspath(str(path))), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(lines)
    return str(path)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f))


def _version_dir(root, version="wav8k/min"):
    return os.path.join(os.path.abspath(root), "Libri2Mix", *version.split("/"))


def _metadata(root, subset, mix_type="mix_both"):
    return os.path.join(_version_dir(root), "metadata", f"mixture_{subset}_{mix_type}.csv")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_libri2mix(tmp_path_factory.mktemp("l2m"))


@pytest.mark.parametrize("original_id_column", [False, True])
def test_rows_follow_metadata_and_seeded_protocol(tmp_path, original_id_column):
    root = make_libri2mix(tmp_path / "data", original_id_column=original_id_column)
    out = prep.prepare_libri2mix_tse(root, str(tmp_path / "save"), mix_type="mix_both")
    assert sorted(out) == ["test", "train", "train_noise", "train_utts", "valid"]
    assert all(os.path.isfile(p) for p in out.values())
    version_dir = _version_dir(root)
    for key, subset in (("train", "train-100"), ("valid", "dev"), ("test", "test")):
        assert os.path.basename(out[key]) == f"libri2mix_{subset}_mix_both.csv"
        assert _header(out[key]) == MIXTURE_COLUMNS
        rows = _rows(out[key])
        mixtures = {m: (u1, u2) for m, u1, u2 in fixture_mixtures(subset)}
        assert sorted(r["ID"] for r in rows) == sorted(f"{m}_{s}" for m in mixtures for s in ("s1", "s2"))
        for row in rows:
            mixture, slot = row["ID"].rsplit("_", 1)
            subset_dir = os.path.join(version_dir, subset)
            assert row["target_utt"] == mixtures[mixture][int(slot[1]) - 1]
            assert row["target_wav"] == os.path.join(subset_dir, slot, mixture + ".wav")
            assert row["mix_wav"] == os.path.join(subset_dir, "mix_both", mixture + ".wav")
            assert row["spk_id"] == row["target_utt"].split("-")[0]
            assert row["enroll_utt"].split("-")[0] == row["spk_id"]
            assert row["enroll_utt"] != row["target_utt"]
            enroll_slot, enroll_name = row["enroll_wav"].split(os.sep)[-2:]
            other = enroll_name[:-4]
            assert os.path.dirname(os.path.dirname(row["enroll_wav"])) == subset_dir
            assert other != mixture and other in mixtures
            assert mixtures[other][int(enroll_slot[1]) - 1] == row["enroll_utt"]
            for column in ("mix_wav", "target_wav", "enroll_wav"):
                assert row[column].startswith(version_dir + os.sep) and os.path.isfile(row[column])
            assert float(row["duration"]) == soundfile.info(row["mix_wav"]).frames / 8000


def test_same_seed_same_lists_other_seed_differs_order_independent(tmp_path, tree):
    a = prep.prepare_libri2mix_tse(tree, str(tmp_path / "a"), seed=3)
    b = prep.prepare_libri2mix_tse(tree, str(tmp_path / "b"), seed=3)
    c = prep.prepare_libri2mix_tse(tree, str(tmp_path / "c"), seed=4)
    for key in ("train", "valid", "test", "train_utts"):
        with open(a[key], "rb") as fa, open(b[key], "rb") as fb:
            assert fa.read() == fb.read()
    enrollments = {key: {r["ID"]: r["enroll_wav"] for r in _rows(a[key])} for key in ("train", "test")}
    assert any(r["enroll_wav"] != enrollments["train"][r["ID"]] for r in _rows(c["train"]))

    # the draw of a row does not depend on the other rows' order
    root = make_libri2mix(tmp_path / "shuffled", subsets=("train-100",))
    for subset in ("dev", "test"):
        shutil.copytree(os.path.join(_version_dir(tree), subset), os.path.join(_version_dir(root), subset))
        shutil.copy(_metadata(tree, subset), _metadata(root, subset))
    with open(_metadata(root, "train-100")) as f:
        lines = f.readlines()
    with open(_metadata(root, "train-100"), "w") as f:
        f.writelines(lines[:1] + lines[:0:-1])
    d = prep.prepare_libri2mix_tse(root, str(tmp_path / "d"), seed=3)
    reordered = {r["ID"]: r["enroll_wav"].replace(_version_dir(root), _version_dir(tree)) for r in _rows(d["train"])}
    assert list(reordered) != list(enrollments["train"]) and reordered == enrollments["train"]


def test_enroll_seconds_prefers_long_enough_files(tmp_path, tree):
    out = prep.prepare_libri2mix_tse(tree, str(tmp_path), mix_type="mix_clean", enroll_seconds=0.85)
    rows = _rows(out["train"])
    duration = {r["target_wav"]: float(r["duration"]) for r in rows}
    assert min(duration.values()) < 0.85 < max(duration.values())
    for row in rows:
        long_ones = [
            wav
            for r in rows
            if r["target_utt"] != row["target_utt"] and r["spk_id"] == row["spk_id"] and r["ID"][:-3] != row["ID"][:-3]
            for wav in [r["target_wav"]]
            if duration[wav] >= 0.85
        ]
        assert row["enroll_wav"] in long_ones or not long_ones


def test_mix_clean_utts_and_noise_lists(tmp_path, tree):
    clean = prep.prepare_libri2mix_tse(tree, str(tmp_path / "clean"), mix_type="mix_clean")
    assert clean["train_noise"] is None
    assert all(r["mix_wav"].split(os.sep)[-2] == "mix_clean" for r in _rows(clean["test"]))
    assert not any("noise" in name for name in os.listdir(tmp_path / "clean"))

    both = prep.prepare_libri2mix_tse(tree, str(tmp_path / "both"), mix_type="mix_both")
    assert _header(both["train_noise"]) == ["ID", "duration", "wav"]
    noise = _rows(both["train_noise"])
    assert [r["ID"] for r in noise] == [m for m, _, _ in fixture_mixtures("train-100")]
    assert all(r["wav"] == os.path.join(_version_dir(tree), "train-100", "noise", r["ID"] + ".wav") for r in noise)

    assert _header(both["train_utts"]) == ["ID", "duration", "wav", "spk_id"]
    utts = _rows(both["train_utts"])
    occurrences = {}
    for mixture, u1, u2 in fixture_mixtures("train-100"):
        for slot, utt in (("s1", u1), ("s2", u2)):
            path = os.path.join(_version_dir(tree), "train-100", slot, mixture + ".wav")
            occurrences.setdefault(utt, []).append((soundfile.info(path).frames / 8000, path))
    assert sorted(r["ID"] for r in utts) == sorted(occurrences) and len(utts) == N_SPEAKERS * N_UTTS
    assert any(len(v) > 1 for v in occurrences.values())
    for row in utts:
        assert row["spk_id"] == row["ID"].split("-")[0]
        assert (float(row["duration"]), row["wav"]) in occurrences[row["ID"]]
        assert float(row["duration"]) == max(d for d, _ in occurrences[row["ID"]])


def _map_expectation(map_path, version_dir, subset):
    with open(map_path) as f:
        lines = [line.split() for line in f if line.strip()]
    return [(m, t, os.path.join(version_dir, subset, e + ".wav")) for m, t, e in lines]


def _as_map(rows):
    return [(r["ID"].rsplit("_", 1)[0], r["target_utt"], r["enroll_wav"]) for r in rows]


def test_enroll_map_folder_reproduced_exactly(tmp_path, tree, caplog):
    maps = tmp_path / "maps"
    make_enroll_map(tree, "dev", maps / "dev" / "map_mixture2enrollment")
    test_map = make_enroll_map(tree, "test", maps / "test" / "map_mixture2enrollment")
    with open(test_map) as f:
        lines = f.readlines()
    mixture, target, _ = lines[1].split()  # a self-enrollment line: the target utterance itself
    slot = "s1" if mixture.split("_")[0] == target else "s2"
    lines[1] = f"{mixture} {target} {slot}/{mixture}\n"
    with open(test_map, "w") as f:
        f.writelines(lines)
    with caplog.at_level(logging.WARNING):
        out = prep.prepare_libri2mix_tse(tree, str(tmp_path / "save"), enroll_map=str(maps))
    assert not any("not directly comparable" in r.getMessage() for r in caplog.records)
    for key, subset in (("valid", "dev"), ("test", "test")):
        rows = _rows(out[key])
        assert _as_map(rows) == _map_expectation(maps / subset / "map_mixture2enrollment", _version_dir(tree), subset)
        for row in rows:
            mixture = row["ID"].rsplit("_", 1)[0]
            assert row["ID"] == f"{mixture}_s{mixture.split('_').index(row['target_utt']) + 1}"
            enroll_slot, enroll_name = row["enroll_wav"].split(os.sep)[-2:]
            assert row["enroll_utt"] == enroll_name[:-4].split("_")[int(enroll_slot[1]) - 1]
    self_row = _rows(out["test"])[1]
    assert self_row["enroll_utt"] == self_row["target_utt"] and self_row["enroll_wav"] == self_row["target_wav"]
    assert all(r["enroll_utt"] != r["target_utt"] for r in _rows(out["train"]))


def test_enroll_map_file_is_test_list_in_its_order(tmp_path, tree, caplog):
    test_map = make_enroll_map(tree, "test", tmp_path / "map_mixture2enrollment")
    with open(test_map) as f:
        lines = f.readlines()
    with open(test_map, "w") as f:
        f.writelines(lines[::-1])
    with caplog.at_level(logging.WARNING):
        out = prep.prepare_libri2mix_tse(tree, str(tmp_path / "save"), enroll_map=test_map)
    assert _as_map(_rows(out["test"])) == _map_expectation(test_map, _version_dir(tree), "test")
    assert all(r["enroll_utt"] != r["target_utt"] for r in _rows(out["valid"]))
    warnings = [r.getMessage() for r in caplog.records if "not directly comparable" in r.getMessage()]
    assert len(warnings) == 1 and "dev" in warnings[0] and "test" not in warnings[0]


def test_libri2mix_folder_itself_and_backslash_paths(tmp_path):
    root = make_libri2mix(tmp_path / "data")
    with open(_metadata(root, "dev")) as f:
        text = f.read()
    with open(_metadata(root, "dev"), "w") as f:
        f.write(text.replace(GEN_PREFIX + "/", "C:\\gen\\Libri2Mix\\").replace("/", "\\"))
    out = prep.prepare_libri2mix_tse(os.path.join(root, "Libri2Mix"), str(tmp_path / "save"))
    for row in _rows(out["valid"]):
        assert row["mix_wav"].startswith(_version_dir(root)) and os.path.isfile(row["mix_wav"])
        assert os.path.isfile(row["target_wav"]) and os.path.isfile(row["enroll_wav"])


def test_speakers_without_other_utterance_are_dropped(tmp_path, caplog):
    root = make_libri2mix(tmp_path / "data")
    with open(_metadata(root, "train-100")) as f:
        lines = f.readlines()
    with open(_metadata(root, "train-100"), "w") as f:
        f.writelines(lines[:3])  # speaker 0 with speakers 1 and 2: only speaker 0 has two utterances
    with caplog.at_level(logging.WARNING):
        out = prep.prepare_libri2mix_tse(root, str(tmp_path / "save"))
    rows = _rows(out["train"])
    assert [r["spk_id"] for r in rows] == ["100", "100"]
    assert any("dropped 2 of 4" in r.getMessage() for r in caplog.records)
    assert len(_rows(out["train_utts"])) == 4


def test_errors_are_one_line_and_name_the_culprit(tmp_path, tree):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        prep.prepare_libri2mix_tse(missing, str(tmp_path / "s0"))
    with pytest.raises(ValueError, match="unknown mix_type 'mix_loud'"):
        prep.prepare_libri2mix_tse(tree, str(tmp_path / "s1"), mix_type="mix_loud")
    with pytest.raises(ValueError, match="unknown mix_type 'mix_single'; use one of mix_clean, mix_both"):
        prep.prepare_libri2mix_tse(tree, str(tmp_path / "s1"), mix_type="mix_single")  # no interferer

    root = make_libri2mix(tmp_path / "data", subsets=("train-100", "dev"))
    with pytest.raises(FileNotFoundError, match=re.escape(os.path.join(_version_dir(root), "test"))):
        prep.prepare_libri2mix_tse(root, str(tmp_path / "s2"))
    make_libri2mix(root, subsets=("test",))
    os.remove(_metadata(root, "test", "mix_clean"))
    with pytest.raises(FileNotFoundError, match=re.escape(_metadata(root, "test", "mix_clean"))):
        prep.prepare_libri2mix_tse(root, str(tmp_path / "s3"), mix_type="mix_clean")

    metadata = _metadata(root, "dev")
    with open(metadata) as f:
        text = f.read()
    with open(metadata, "w") as f:
        f.write(text.replace("source_2_path", "source2", 1))
    with pytest.raises(ValueError) as error:
        prep.prepare_libri2mix_tse(root, str(tmp_path / "s4"))
    assert metadata in str(error.value) and "source_2_path" in str(error.value) and "\n" not in str(error.value)
    with open(metadata, "w") as f:
        f.write(text.split("\n", 1)[1])  # no header at all
    with pytest.raises(ValueError, match=re.escape(metadata) + ".*mixture_ID.*length"):
        prep.prepare_libri2mix_tse(root, str(tmp_path / "s5"))


def test_map_errors_name_file_and_line(tmp_path, tree):
    map_path = make_enroll_map(tree, "test", tmp_path / "map")
    with open(map_path) as f:
        lines = f.readlines()
    mixture, target, _ = lines[2].split()
    other_mixture = fixture_mixtures("test")[-1][0]
    absent = os.path.join(_version_dir(tree), "test", "s1", "1-2-3_4-5-6.wav")
    cases = [
        (f"{mixture} {target} s1/1-2-3_4-5-6\n", FileNotFoundError, f"line 3: enrollment file not found: {absent}"),
        (f"{mixture} {target}\n", ValueError, "line 3: expected"),
        (f"1-2-3_4-5-6 {target} s1/{mixture}\n", ValueError, "line 3: mixture 1-2-3_4-5-6 is not in the test metadata"),
        (f"{other_mixture} {target} s1/{mixture}\n", ValueError, f"line 3: target utterance {target} is not in"),
    ]
    for line, error_type, message in cases:
        with open(map_path, "w") as f:
            f.writelines(lines[:2] + [line] + lines[3:])
        with pytest.raises(error_type) as error:
            prep.prepare_libri2mix_tse(tree, str(tmp_path / "save"), enroll_map=map_path)
        assert str(error.value).startswith(f"{map_path} {message}")


def test_second_call_skips_and_changed_argument_rewrites(tmp_path, tree):
    save = str(tmp_path / "save")
    out = prep.prepare_libri2mix_tse(tree, save)
    with open(os.path.join(save, "libri2mix_tse_options.json")) as f:
        assert json.load(f)["seed"] == 1
    for path in out.values():
        os.utime(path, ns=(0, 0))
    assert prep.prepare_libri2mix_tse(tree, save) == out
    assert all(os.stat(p).st_mtime_ns == 0 for p in out.values())
    assert not any(name.endswith(".tmp") for name in os.listdir(save))

    again = prep.prepare_libri2mix_tse(tree, save, seed=2)
    assert again == out and all(os.stat(p).st_mtime_ns != 0 for p in out.values())

    # a run that failed half-way (here on the test map, after the train list) is never reused
    with open(out["train"], "rb") as f:
        seed_2_train = f.read()
    bad_map = tmp_path / "map"
    bad_map.write_text("not a map\n")
    with pytest.raises(ValueError, match="line 1"):
        prep.prepare_libri2mix_tse(tree, save, seed=5, enroll_map=str(bad_map))
    with open(out["train"], "rb") as f:
        assert f.read() != seed_2_train
    prep.prepare_libri2mix_tse(tree, save, seed=2)
    with open(out["train"], "rb") as f:
        assert f.read() == seed_2_train

    # an interrupted run (no options file) is never reused
    os.remove(os.path.join(save, "libri2mix_tse_options.json"))
    for path in out.values():
        os.utime(path, ns=(0, 0))
    prep.prepare_libri2mix_tse(tree, save, seed=2)
    assert all(os.stat(p).st_mtime_ns != 0 for p in out.values())


@pytest.mark.parametrize(
    "extra", [[], ["--dynamic_mixing=True", "--segment_seconds=0.5"]], ids=["prepared", "dynamic_mixing"]
)
def test_one_tiny_epoch_through_train_py(tmp_path, extra):
    root = make_libri2mix(str(tmp_path / "LibriMix"), seconds=1.0)
    out = str(tmp_path / "run")
    avg = train_tiny("LibriMix", root, out, extra=["--enroll_seconds=0.5", *extra])
    assert math.isfinite(float(avg["si-snri"]))  # a number: no NaN, no inf
    rows = _rows(os.path.join(out, "data", "libri2mix_test_mix_both.csv"))
    assert len(rows) == 2 * len(fixture_mixtures("test"))
    model, estimate = extract_with_pretrained(out, rows[0]["mix_wav"], enrollment_path=rows[0]["enroll_wav"])
    length = soundfile.info(rows[0]["mix_wav"]).frames
    assert model.sample_rate == 8000 and estimate.shape == (length,) and bool(estimate.isfinite().all())


def test_train_py_errors_are_one_line(tmp_path):
    assert_one_line_error(run_recipe("LibriMix", [f"--output_folder={tmp_path}"]), "data_folder")
    # a size the model does not have (no attention heads in a Mamba model)
    proc = run_recipe("LibriMix", [f"--data_folder={tmp_path}", f"--output_folder={tmp_path}", "--nhead=2"])
    assert_one_line_error(proc, "nhead")
    missing = str(tmp_path / "nowhere")
    proc = run_recipe("LibriMix", [f"--data_folder={missing}", f"--output_folder={tmp_path}"])
    assert_one_line_error(proc, "data error", missing)
