"""Tests of the WSJ0-2mix TSE data preparation (``recipes/WSJ0Mix/tse/prepare_wsj0mix_tse.py``).

The fixture builders :func:`make_wsj0_2mix` and :func:`make_wsj0_2mix_extr` write tiny trees in the
exact on-disk layouts of WSJ0-2mix and WSJ0-2mix-extr (noise instead of speech); other tests may
import them.

Authors
 * speechbrain-crossmamba contributors
"""

import csv
import json
import logging
import os
import re
import zlib

import numpy as np
import pytest
import soundfile
from recipe_helpers import load_prepare, train_tiny

prep = load_prepare("WSJ0Mix", "prepare_wsj0mix_tse")

SUBSETS = ("tr", "cv", "tt")
SPEAKERS = ("01a", "22g", "40n", "050", "442")  # WSJ-like speaker ids (3 characters)
# Mixtures of every subset: (speaker, utterance index, speaker, utterance index, SNR as written).
# Names mix decimal formats (MATLAB vs Python generators); utterance (1, 0) is in two mixtures,
# with different lengths, so it must never enroll itself and train_utts keeps the longer file.
MIXTURES = (
    (0, 0, 1, 0, "0.97482"),
    (2, 0, 3, 0, "-1.2"),
    (4, 0, 0, 1, "2.0145"),
    (1, 1, 2, 1, "0"),
    (3, 1, 4, 1, "-3.54"),
    (0, 2, 1, 0, "1.5"),
)
_SUBSET_LETTER = {"tr": "c", "cv": "d", "tt": "o"}
_LIST_DIR = {"tr": "si_tr_s", "cv": "si_tr_s", "tt": "si_et_05"}


def utt_id(subset, speaker, index):
    """The WSJ-like utterance id of a speaker's ``index``-th utterance in ``subset``.

    Example: ``utt_id("tr", 0, 1) == "01ac011b"`` (speaker ``01a``).
    """
    return f"{SPEAKERS[speaker]}{_SUBSET_LETTER[subset]}01{index}{chr(97 + index)}"


def _neg(snr):
    if snr == "0":
        return "0"
    return snr[1:] if snr.startswith("-") else "-" + snr


def _rate(version):
    match = re.search(r"wav(\d+)k", version)
    return 1000 * int(match.group(1)) if match else 8000


def _signal(utt, n):
    rng = np.random.default_rng(zlib.crc32(utt.encode()))
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


def _write(path, wav, rate):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, wav, rate, subtype="PCM_16")


def _utterances(subset):
    """Utterance ids of ``subset`` by speaker index: {speaker: [utt, ...]}."""
    out = {}
    for a, i, b, j, _ in MIXTURES:
        for spk, k in ((a, i), (b, j)):
            utt = utt_id(subset, spk, k)
            if utt not in out.setdefault(spk, []):
                out[spk].append(utt)
    return {spk: sorted(utts) for spk, utts in out.items()}


def make_wsj0_2mix(root, version="wav8k/min", seconds=1.0):
    """Writes a tiny plain WSJ0-2mix tree: ``<root>/2speakers/<version>/{tr,cv,tt}/{mix,s1,s2}/``.

    Every subset has the mixtures of ``MIXTURES`` (5 speakers, 2-3 utterances each, names
    ``<utt1>_<snr1>_<utt2>_<snr2>.wav`` with mixed decimal formats); mixture ``i`` lasts
    ``seconds * (1 + 0.1 i)``. Mono 16-bit PCM at the version's rate. The list files
    ``<root>/mix_2_spk_{tr,cv,tt}.txt`` (``<path1> <snr> <path2> <-snr>``, SNRs with 6 decimals,
    unlike the file names) are written too. Returns ``root``.
    """
    rate = _rate(version)
    for subset in SUBSETS:
        folder = os.path.join(root, "2speakers", version, subset)
        lines = []
        for index, (a, i, b, j, snr) in enumerate(MIXTURES):
            u1, u2 = utt_id(subset, a, i), utt_id(subset, b, j)
            name = f"{u1}_{snr}_{u2}_{_neg(snr)}"
            n = round(seconds * (1 + 0.1 * index) * rate)
            s1, s2 = _signal(u1, n), _signal(u2, n)
            _write(os.path.join(folder, "s1", name + ".wav"), s1, rate)
            _write(os.path.join(folder, "s2", name + ".wav"), s2, rate)
            _write(os.path.join(folder, "mix", name + ".wav"), s1 + s2, rate)
            p1 = f"wsj0/{_LIST_DIR[subset]}/{u1[:3]}/{u1}.wav"
            p2 = f"wsj0/{_LIST_DIR[subset]}/{u2[:3]}/{u2}.wav"
            lines.append(f"{p1} {float(snr):.6f} {p2} {-float(snr):.6f}\n")
        with open(os.path.join(root, f"mix_2_spk_{subset}.txt"), "w") as f:
            f.writelines(lines)
    return root


def make_wsj0_2mix_extr(root, version="wav8k/min", seconds=1.0):
    """Writes a tiny WSJ0-2mix-extr tree: ``wsj0_2mix_extr/<version>/{tr,cv,tt}/{mix,s1,aux}/``.

    Each mixture of ``MIXTURES`` appears twice, once per target (swapped, as in SpEx's lists),
    named ``<target>_<snr>_<interferer>_<-snr>_<auxID>.wav``; ``s1`` is the target's source and
    ``aux`` (``seconds * 1.25`` long) another utterance of the target speaker. The list files
    ``<root>/mix_2_spk_{tr,cv,tt}_extr.txt`` (``<target> <snr1> <interferer> <snr2> <aux>``) are
    written too. Returns ``root``.
    """
    rate = _rate(version)
    for subset in SUBSETS:
        folder = os.path.join(root, "wsj0_2mix_extr", version, subset)
        utts = _utterances(subset)
        lines = []
        for index, (a, i, b, j, snr) in enumerate(MIXTURES):
            n = round(seconds * (1 + 0.1 * index) * rate)
            pair = ((a, i, snr), (b, j, _neg(snr)))
            mix = _signal(utt_id(subset, a, i), n) + _signal(utt_id(subset, b, j), n)
            for (t, ti, tsnr), (o, oi, osnr) in (pair, pair[::-1]):
                target, other = utt_id(subset, t, ti), utt_id(subset, o, oi)
                own = utts[t]
                aux = own[(own.index(target) + 1) % len(own)]
                name = f"{target}_{tsnr}_{other}_{osnr}_{aux}"
                _write(os.path.join(folder, "mix", name + ".wav"), mix, rate)
                _write(os.path.join(folder, "s1", name + ".wav"), _signal(target, n), rate)
                aux_wav = _signal(aux, round(seconds * 1.25 * rate))
                _write(os.path.join(folder, "aux", name + ".wav"), aux_wav, rate)
                paths = [f"wsj0/{_LIST_DIR[subset]}/{u[:3]}/{u}.wav" for u in (target, other, aux)]
                tsnr_f, osnr_f = float(tsnr), float(osnr)
                lines.append(f"{paths[0]} {tsnr_f:.6f} {paths[1]} {osnr_f:.6f} {paths[2]}\n")
        with open(os.path.join(root, f"mix_2_spk_{subset}_extr.txt"), "w") as f:
            f.writelines(lines)
    return root


MIX_COLUMNS = "ID duration mix_wav target_wav enroll_wav spk_id target_utt enroll_utt".split()
KEYS = {"train": "tr", "valid": "cv", "test": "tt"}


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _names(folder):
    return sorted(f[:-4] for f in os.listdir(os.path.join(folder, "mix")) if f.endswith(".wav"))


def _duration(path):
    info = soundfile.info(path)
    return info.frames / info.samplerate


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = make_wsj0_2mix(str(tmp_path_factory.mktemp("plain")))
    save = str(tmp_path_factory.mktemp("plain_save"))
    return root, save, prep.prepare_wsj0mix_tse(root, save, seed=1)


@pytest.fixture(scope="module")
def extr(tmp_path_factory):
    root = make_wsj0_2mix_extr(str(tmp_path_factory.mktemp("extr")))
    save = str(tmp_path_factory.mktemp("extr_save"))
    return root, save, prep.prepare_wsj0mix_tse(root, save)


def test_fixture_list_files(plain, extr):
    with open(os.path.join(plain[0], "mix_2_spk_tt.txt")) as f:
        lines = [line.split() for line in f]
    assert len(lines) == len(MIXTURES) and {len(line) for line in lines} == {4}
    with open(os.path.join(extr[0], "mix_2_spk_tt_extr.txt")) as f:
        lines = [line.split() for line in f]
    assert len(lines) == 2 * len(MIXTURES) and {len(line) for line in lines} == {5}


def test_parse_name():
    fields = prep.parse_name("01aa010b_-0.97482_22gc010a_0.97482")
    assert fields["utt1"] == "01aa010b" and fields["snr1"] == "-0.97482"
    assert prep.parse_name("01aa010b_2_22gc010a_-2")["snr2"] == "-2"
    assert prep.parse_name("01aa010b_1.2_22gc010a_-1.2_01ac0101") is None
    assert prep.parse_name("01aa010b_1.2_22gc010a_-1.2_01ac0101", "wsj0_2mix_extr")["aux"]
    assert prep.parse_name("01aa010b_x_22gc010a_-1.2") is None


def test_plain_rows(plain):
    root, _, paths = plain
    assert set(paths) == {"train", "train_utts", "valid", "test"}
    for key, subset in KEYS.items():
        folder = os.path.join(root, "2speakers", "wav8k", "min", subset)
        header, rows = _rows(paths[key])
        assert header == MIX_COLUMNS
        names = _names(folder)
        assert len(rows) == 2 * len(names)  # both targets of every mixture
        assert {r["ID"] for r in rows} == {f"{n}_{s}" for n in names for s in ("s1", "s2")}
        for row in rows:
            name, source = row["ID"].rsplit("_", 1)
            fields = prep.parse_name(name)
            assert row["mix_wav"] == os.path.join(folder, "mix", name + ".wav")
            assert row["target_wav"] == os.path.join(folder, source, name + ".wav")
            assert row["target_utt"] == fields["utt" + source[1]]
            assert row["spk_id"] == row["target_utt"][:3]
            assert float(row["duration"]) == pytest.approx(_duration(row["mix_wav"]), abs=1e-4)
            # Enrollment: the target speaker's clean source in another mixture of the subset.
            enroll_dir, enroll_file = os.path.split(row["enroll_wav"])
            assert os.path.dirname(enroll_dir) == folder
            assert os.path.basename(enroll_dir) in ("s1", "s2")
            assert os.path.isfile(row["enroll_wav"])
            enroll_name = enroll_file[:-4]
            assert enroll_name != name
            enroll_fields = prep.parse_name(enroll_name)
            assert row["enroll_utt"] == enroll_fields["utt" + os.path.basename(enroll_dir)[1]]
            assert row["enroll_utt"][:3] == row["spk_id"]
            assert row["enroll_utt"] != row["target_utt"]


def test_plain_protocol_warning(tmp_path, caplog):
    root = make_wsj0_2mix(str(tmp_path / "data"), seconds=0.2)
    with caplog.at_level(logging.INFO):
        prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not WSJ0-2mix-extr's protocol" in warnings[0]
    assert any("layout wsj0_2mix)" in r.getMessage() for r in caplog.records)


def test_plain_same_seed_same_csvs_other_seed_differs(plain, tmp_path):
    root, _, paths = plain
    again = prep.prepare_wsj0mix_tse(root, str(tmp_path / "again"), seed=1)
    other = prep.prepare_wsj0mix_tse(root, str(tmp_path / "other"), seed=2)
    differs = False
    for key in paths:
        with open(paths[key]) as a, open(again[key]) as b:
            assert a.read() == b.read()
        _, rows1 = _rows(paths[key])
        _, rows2 = _rows(other[key])
        if key == "train_utts":
            assert rows1 == rows2
            continue
        assert [r["ID"] for r in rows1] == [r["ID"] for r in rows2]
        assert [r["target_wav"] for r in rows1] == [r["target_wav"] for r in rows2]
        differs |= any(r1["enroll_wav"] != r2["enroll_wav"] for r1, r2 in zip(rows1, rows2))
    assert differs


def test_plain_drops_rows_without_enrollment(tmp_path, caplog):
    root = make_wsj0_2mix(str(tmp_path / "data"), seconds=0.2)
    folder = os.path.join(root, "2speakers", "wav8k", "min", "cv")
    a, i, b, j, snr = MIXTURES[3]  # the only other utterances of speakers 1 and 2
    gone = f"{utt_id('cv', a, i)}_{snr}_{utt_id('cv', b, j)}_{_neg(snr)}.wav"
    full = prep.prepare_wsj0mix_tse(root, str(tmp_path / "full"))
    for source in ("mix", "s1", "s2"):
        os.remove(os.path.join(folder, source, gone))
    with caplog.at_level(logging.WARNING):
        paths = prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))
    _, rows = _rows(paths["valid"])
    # Dropped: speaker 2's only utterance, and utterance (1, 0) in both of its mixtures.
    assert len(rows) == 2 * (len(MIXTURES) - 1) - 3
    assert not any(r["target_utt"] in (utt_id("cv", 2, 0), utt_id("cv", 1, 0)) for r in rows)
    assert any("cv: dropped 3" in r.getMessage() for r in caplog.records)
    # The draws do not depend on the other rows: speakers 0, 3 and 4 keep their enrollments.
    _, full_rows = _rows(full["valid"])
    kept = {SPEAKERS[0], SPEAKERS[3], SPEAKERS[4]}
    before = {r["ID"]: r["enroll_wav"] for r in full_rows if r["spk_id"] in kept}
    assert before == {r["ID"]: r["enroll_wav"] for r in rows if r["spk_id"] in kept}


def test_plain_train_utts(plain):
    root, _, paths = plain
    folder = os.path.join(root, "2speakers", "wav8k", "min", "tr")
    expected = {}
    for name in _names(folder):
        fields = prep.parse_name(name)
        for source, utt in (("s1", fields["utt1"]), ("s2", fields["utt2"])):
            path = os.path.join(folder, source, name + ".wav")
            if utt not in expected or _duration(path) > _duration(expected[utt]):
                expected[utt] = path
    header, rows = _rows(paths["train_utts"])
    assert header == ["ID", "duration", "wav", "spk_id"]
    assert {r["ID"]: r["wav"] for r in rows} == expected
    assert len(rows) == len(expected) == sum(len(u) for u in _utterances("tr").values())
    for row in rows:
        assert row["spk_id"] == row["ID"][:3]
        assert float(row["duration"]) == pytest.approx(_duration(row["wav"]), abs=1e-4)
    # Utterance (1, 0) is in mixtures 0 and 5; the longer file (mixture 5's s2) is kept.
    (row,) = [r for r in rows if r["ID"] == utt_id("tr", 1, 0)]
    assert os.path.basename(os.path.dirname(row["wav"])) == "s2"
    assert float(row["duration"]) == pytest.approx(1.5)


def test_extr_rows(extr):
    root, _, paths = extr
    for key, subset in KEYS.items():
        folder = os.path.join(root, "wsj0_2mix_extr", "wav8k", "min", subset)
        header, rows = _rows(paths[key])
        assert header == MIX_COLUMNS
        names = _names(folder)
        assert len(names) == 2 * len(MIXTURES)
        assert [r["ID"] for r in rows] == names  # one row per mixture file
        for row in rows:
            name = row["ID"]
            fields = prep.parse_name(name, "wsj0_2mix_extr")
            assert row["mix_wav"] == os.path.join(folder, "mix", name + ".wav")
            assert row["target_wav"] == os.path.join(folder, "s1", name + ".wav")
            assert row["enroll_wav"] == os.path.join(folder, "aux", name + ".wav")
            assert row["target_utt"] == fields["utt1"]
            assert row["enroll_utt"] == fields["aux"]
            assert row["spk_id"] == fields["utt1"][:3] == fields["aux"][:3]
            assert float(row["duration"]) == pytest.approx(_duration(row["mix_wav"]), abs=1e-4)


def test_extr_train_utts(extr):
    root, _, paths = extr
    folder = os.path.join(root, "wsj0_2mix_extr", "wav8k", "min", "tr")
    expected = {}
    for name in _names(folder):
        fields = prep.parse_name(name, "wsj0_2mix_extr")
        for source, utt in (("s1", fields["utt1"]), ("aux", fields["aux"])):
            path = os.path.join(folder, source, name + ".wav")
            if utt not in expected or _duration(path) > _duration(expected[utt]):
                expected[utt] = path
    _, rows = _rows(paths["train_utts"])
    assert {r["ID"]: r["wav"] for r in rows} == expected
    assert all(r["spk_id"] == r["ID"][:3] for r in rows)


def test_extr_drops_aux_of_another_speaker(tmp_path, caplog):
    root = make_wsj0_2mix_extr(str(tmp_path / "data"), seconds=0.2)
    folder = os.path.join(root, "wsj0_2mix_extr", "wav8k", "min", "cv")
    bad = f"{utt_id('cv', 0, 0)}_1.5_{utt_id('cv', 1, 0)}_-1.5_{utt_id('cv', 2, 0)}"
    for source in ("mix", "s1", "aux"):
        _write(os.path.join(folder, source, bad + ".wav"), _signal(bad, 1600), 8000)
    with caplog.at_level(logging.WARNING):
        paths = prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))
    _, rows = _rows(paths["valid"])
    assert len(rows) == 2 * len(MIXTURES) and bad not in {r["ID"] for r in rows}
    assert any("cv: dropped 1 mixtures" in r.getMessage() for r in caplog.records)


def test_extr_preferred_when_both_exist(tmp_path, caplog):
    root = str(tmp_path / "data")
    make_wsj0_2mix(root, seconds=0.2)
    make_wsj0_2mix_extr(root, seconds=0.2)
    with caplog.at_level(logging.INFO):
        paths = prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))
    _, rows = _rows(paths["test"])
    assert all("/wsj0_2mix_extr/" in r["mix_wav"] and "/aux/" in r["enroll_wav"] for r in rows)
    assert any("layout wsj0_2mix_extr" in r.getMessage() for r in caplog.records)
    with open(os.path.join(str(tmp_path / "save"), "wsj0mix_tse_options.json")) as f:
        assert json.load(f)["layout"] == "wsj0_2mix_extr"


def test_data_folder_may_be_the_layout_folder(tmp_path):
    root = str(tmp_path / "data")
    make_wsj0_2mix(root, seconds=0.2)
    make_wsj0_2mix_extr(root, seconds=0.2)
    paths = prep.prepare_wsj0mix_tse(os.path.join(root, "2speakers"), str(tmp_path / "a"))
    _, rows = _rows(paths["valid"])
    assert len(rows) == 2 * len(MIXTURES) and rows[0]["ID"].endswith("_s1")
    paths = prep.prepare_wsj0mix_tse(os.path.join(root, "wsj0_2mix_extr"), str(tmp_path / "b"))
    _, rows = _rows(paths["valid"])
    assert all("/aux/" in r["enroll_wav"] for r in rows)


def test_other_version(tmp_path):
    root = make_wsj0_2mix(str(tmp_path / "data"), version="wav16k/max", seconds=0.2)
    paths = prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"), version="wav16k/max")
    _, rows = _rows(paths["test"])
    assert all("/wav16k/max/tt/" in r["mix_wav"] for r in rows)
    assert soundfile.info(rows[0]["mix_wav"]).samplerate == 16000
    with pytest.raises(FileNotFoundError, match="wav8k/min"):
        prep.prepare_wsj0mix_tse(root, str(tmp_path / "save8k"))


def test_missing_folder_names_it(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as info:
        prep.prepare_wsj0mix_tse(missing, str(tmp_path / "save"))
    message = str(info.value)
    assert missing in message and "2speakers" in message and "wsj0_2mix_extr" in message
    assert "\n" not in message


def test_mixture_without_partner_names_the_file(tmp_path):
    root = make_wsj0_2mix(str(tmp_path / "data"), seconds=0.2)
    folder = os.path.join(root, "2speakers", "wav8k", "min", "tt")
    missing = os.path.join(folder, "s1", _names(folder)[2] + ".wav")
    os.remove(missing)
    with pytest.raises(ValueError) as info:
        prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))
    assert missing in str(info.value) and "\n" not in str(info.value)

    root = make_wsj0_2mix_extr(str(tmp_path / "extr"), seconds=0.2)
    folder = os.path.join(root, "wsj0_2mix_extr", "wav8k", "min", "cv")
    missing = os.path.join(folder, "aux", _names(folder)[0] + ".wav")
    os.remove(missing)
    with pytest.raises(ValueError, match=re.escape(missing)):
        prep.prepare_wsj0mix_tse(root, str(tmp_path / "save_extr"))


def test_unparsable_name_names_the_file(tmp_path):
    root = make_wsj0_2mix(str(tmp_path / "data"), seconds=0.2)
    folder = os.path.join(root, "2speakers", "wav8k", "min", "cv")
    for source in ("mix", "s1", "s2"):
        _write(os.path.join(folder, source, "mixture_07.wav"), _signal("x", 800), 8000)
    bad = os.path.join(folder, "mix", "mixture_07.wav")
    with pytest.raises(ValueError, match=re.escape(bad)):
        prep.prepare_wsj0mix_tse(root, str(tmp_path / "save"))


def test_skip_when_prepared_and_rewrite_on_changes(tmp_path, caplog):
    root = make_wsj0_2mix(str(tmp_path / "data"), seconds=0.2)
    save = str(tmp_path / "save")
    paths = prep.prepare_wsj0mix_tse(root, save, seed=3)
    assert not [f for f in os.listdir(save) if f.endswith(".tmp")]
    with open(paths["test"], "a") as f:
        f.write("marker\n")
    with caplog.at_level(logging.INFO):
        assert prep.prepare_wsj0mix_tse(root, save, seed=3) == paths
    assert any("skipping" in r.getMessage() for r in caplog.records)
    with open(paths["test"]) as f:
        assert f.read().endswith("marker\n")  # not rewritten
    prep.prepare_wsj0mix_tse(root, save, seed=4)  # another argument: rewritten
    with open(paths["test"]) as f:
        assert "marker" not in f.read()
    with open(os.path.join(save, "wsj0mix_tse_options.json")) as f:
        assert json.load(f)["seed"] == 4
    os.remove(paths["train_utts"])  # an output missing: rewritten
    prep.prepare_wsj0mix_tse(root, save, seed=4)
    assert os.path.isfile(paths["train_utts"])


@pytest.mark.parametrize("make", [make_wsj0_2mix, make_wsj0_2mix_extr])
def test_one_tiny_epoch_through_train_py(tmp_path, make):
    root = str(tmp_path / "wsj0-mix")
    make(root, seconds=1.0)
    train_tiny("WSJ0Mix", root, str(tmp_path / "run"), extra=["--enroll_seconds=0.5"])
