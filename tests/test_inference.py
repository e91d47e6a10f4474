"""The pretrained interface and the command line, on folders written by tiny training runs."""

import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from test_training import ROOT, tiny_args

from speechbrain_crossmamba.inference import TargetSpeakerExtraction
from speechbrain_crossmamba.training import main


@pytest.fixture(scope="module")
def speaker_data(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory, speaker_data):
    out = str(tmp_path_factory.mktemp("spk"))
    # no warm start: the one tiny epoch trains extraction, so the fusion points use the clue (a
    # warm-start separation epoch would leave every fusion gate at 0 and the clue unused)
    main(tiny_args(out, speaker_data, extra=["--warm_start_epochs=0"]))
    return os.path.join(out, "pretrained")


def test_the_enrollment_reaches_the_output_in_one_pass_windows_and_the_cli(speaker_model, tmp_path):
    """The control every speaker test here relies on: another enrollment, another output."""
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    torch.manual_seed(0)
    t = torch.arange(8000) / 8000  # two enrollments of other spectra: a low and a high tone
    enr_a, enr_b = 0.3 * torch.sin(2 * torch.pi * 150 * t)[None], 0.3 * torch.sin(2 * torch.pi * 1800 * t)[None]
    mix = torch.randn(1, 24000) * 0.1

    def change(a, b):  # relative; exactly 0.0 when the clue is dropped (CPU runs are bitwise
        return ((a - b).norm() / a.norm()).item()  # repeatable); this tiny model moves ~1e-4

    assert change(model.extract_batch(mix, clue=enr_a), model.extract_batch(mix, clue=enr_b)) > 1e-5
    model.window_seconds, model.overlap_seconds = 1.0, 0.25
    assert change(model.extract_batch(mix, clue=enr_a), model.extract_batch(mix, clue=enr_b)) > 1e-5
    outs = []
    for name, enr in (("a", enr_a), ("b", enr_b)):
        cmd = [sys.executable, "-m", "speechbrain_crossmamba", "extract", "--model", speaker_model,
               "--mixture", _wav(tmp_path / "m.wav", mix[0].numpy()), "--enrollment",
               _wav(tmp_path / f"e{name}.wav", enr[0].numpy()), "--out", str(tmp_path / f"{name}.wav")]
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        outs.append(torch.from_numpy(soundfile.read(str(tmp_path / f"{name}.wav"), dtype="float32")[0]))
    assert change(*outs) > 1e-5


@pytest.fixture(scope="module")
def label_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lab"))
    main(tiny_args(out, str(tmp_path_factory.mktemp("ev")), yaml="crossmamba_tse_label.yaml"))
    return os.path.join(out, "pretrained")


def _wav(path, signal, rate=8000, subtype=None):
    soundfile.write(str(path), np.asarray(signal, dtype=np.float32).T, rate, subtype=subtype)
    return str(path)


def _noise(seconds, rate=8000, seed=0):
    return 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))


def test_from_hparams_on_a_trained_folder(speaker_model, tmp_path):
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    est = model.extract_file(_wav(tmp_path / "m.wav", _noise(1.5)), _wav(tmp_path / "e.wav", _noise(1, seed=1)),
                             savedir=str(tmp_path / "out"))
    assert est.shape == (12000,) and torch.isfinite(est).all()
    assert soundfile.info(str(tmp_path / "out" / "m_estimate.wav")).samplerate == 8000


@pytest.mark.parametrize(
    "source", ["{tmp}/nope", "results/no_such_run/1234/pretrained", "pretrained/no-such-model", "model"]
)
def test_missing_local_folder_is_an_error_not_a_hub_id(tmp_path, monkeypatch, source):
    """Absolute, relative and mistyped folders fail with one line, before any hub lookup."""
    from speechbrain.inference.interfaces import Pretrained

    monkeypatch.chdir(tmp_path)
    os.makedirs("pretrained")  # as in a checkout: pretrained/<typo> is a folder, not owner/name
    hub = []
    monkeypatch.setattr(Pretrained, "from_hparams", classmethod(lambda cls, s, **kw: hub.append(s)))
    source = source.format(tmp=tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^no pretrained folder at {re.escape(source)}$"):
        TargetSpeakerExtraction.from_hparams(source=source)
    assert hub == []


def test_hub_ids_stay_owner_name(tmp_path, monkeypatch):
    from speechbrain.inference.interfaces import Pretrained

    monkeypatch.chdir(tmp_path)
    hub = []

    def fake(cls, source, **kwargs):
        hub.append(source)
        raise RuntimeError("offline")

    monkeypatch.setattr(Pretrained, "from_hparams", classmethod(fake))
    with pytest.raises(RuntimeError, match="offline"):
        TargetSpeakerExtraction.from_hparams(source="someone/crossmamba-tse")
    assert hub == ["someone/crossmamba-tse"]


def test_resampling_and_downmixing(speaker_model, tmp_path, caplog):
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    stereo = np.stack([_noise(1, 16000), _noise(1, 16000, seed=2)])
    with caplog.at_level(logging.WARNING):
        est = model.extract_file(_wav(tmp_path / "m.wav", stereo, 16000), _wav(tmp_path / "e.wav", _noise(1, 44100), 44100))
    assert est.shape == (8000,)
    assert "downmixed to mono" in caplog.text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.wav"), "mixture file not found"),
        (lambda p: (p / "t.wav").write_text("not audio") and str(p / "t.wav"), "not readable audio"),
        (lambda p: _wav(p / "empty.wav", np.zeros(0)), "mixture file is empty"),
        (lambda p: _wav(p / "nan.wav", np.full(8000, np.nan), subtype="FLOAT"), "NaN"),
    ],
)
def test_bad_mixture_files(speaker_model, tmp_path, make, message):
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    with pytest.raises(ValueError if "found" not in message else FileNotFoundError, match=message):
        model.extract_file(make(tmp_path), _wav(tmp_path / "e.wav", _noise(1)))


def test_bad_clues(speaker_model, label_model, tmp_path):
    spk = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    mix, enr = _wav(tmp_path / "m.wav", _noise(1)), _wav(tmp_path / "e.wav", _noise(1))
    with pytest.raises(ValueError, match="pass enrollment_path"):
        spk.extract_file(mix)
    with pytest.raises(ValueError, match="not both"):
        spk.extract_file(mix, enr, label="siren")
    with pytest.raises(ValueError, match="enrollment is 0.10 s long; the minimum is 0.50 s"):
        spk.extract_file(mix, _wav(tmp_path / "short.wav", _noise(0.1)))
    with pytest.raises(ValueError, match="no clue given"):
        spk.extract_batch(torch.randn(1, 8000))
    lab = TargetSpeakerExtraction.from_hparams(source=label_model)
    with pytest.raises(ValueError, match="unknown label 'violin'"):
        lab.extract_file(mix, label="violin")
    assert lab.extract_file(mix, label="siren tone").shape == (8000,)


def test_extract_by_label_on_the_command_line(label_model, speaker_model, tmp_path, monkeypatch, capsys):
    """``extract --label``: the class named reaches the output (another class, another output;
    compared before the 16-bit file, whose steps are larger than this tiny model's change), the
    command returns what the Python interface does, and a speaker model given a label in place
    of an enrollment is told, in one line, to pass ``--enrollment``."""
    from speechbrain_crossmamba import cli

    written = {}
    monkeypatch.setattr(cli, "_write", lambda path, wav, rate: written.update({path: wav.clone()}))
    mix = _wav(tmp_path / "m.wav", _noise(1))
    for label in ("siren", "knock"):
        assert cli.main(["extract", "--model", label_model, "--mixture", mix, "--label", label,
                         "--out", label]) == 0
    a, b = written["siren"], written["knock"]
    assert ((a - b).norm() / a.norm()).item() > 1e-5  # exactly 0.0 with the label dropped
    api = TargetSpeakerExtraction.from_hparams(source=label_model).extract_file(mix, label="siren")
    assert torch.equal(a, api)
    capsys.readouterr()
    assert cli.main(["extract", "--model", speaker_model, "--mixture", mix, "--label", "siren", "--out", "x"]) == 2
    assert capsys.readouterr().err == (
        "speechbrain-crossmamba: error: this model extracts by enrollment: pass --enrollment\n"
    )


def test_silence_int16_and_float64(speaker_model):
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    enr = torch.randn(1, 8000)
    silent = model.extract_batch(torch.zeros(1, 8000), clue=enr)
    assert torch.equal(silent, torch.zeros(1, 8000))
    pcm = (np.random.default_rng(0).standard_normal((1, 8000)) * 3000).astype(np.int16)
    a = model.extract_batch(pcm, clue=enr)
    b = model.extract_batch(pcm.astype(np.float64) / 32768.0, clue=enr)
    assert torch.allclose(a, b, atol=1e-5)


def test_command_line_end_to_end(speaker_model, tmp_path):
    mix, enr = _wav(tmp_path / "m.wav", _noise(1)), _wav(tmp_path / "e.wav", _noise(1))
    cmd = [sys.executable, "-m", "speechbrain_crossmamba", "extract", "--model", speaker_model,
           "--mixture", mix, "--enrollment", enr, "--out", str(tmp_path / "est.wav"),
           "--plot", str(tmp_path / "est.png")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert soundfile.info(str(tmp_path / "est.wav")).frames == 8000
    assert os.path.getsize(tmp_path / "est.png") > 1000
    bad = subprocess.run([*cmd[:7], str(tmp_path / "nope.wav"), *cmd[8:]], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("speechbrain-crossmamba: error: mixture file not found")


def test_console_entry_point_and_a_missing_model_folder(tmp_path):
    """The installed ``speechbrain-crossmamba`` command: a mistyped model folder is one line."""
    import shutil

    exe = shutil.which("speechbrain-crossmamba", path=os.path.dirname(sys.executable))
    assert exe, "the console script is not installed next to this Python (pip install -e .)"
    mix = _wav(tmp_path / "m.wav", _noise(1))
    cmd = [exe, "extract", "--model", "results/no_such_run/1234/pretrained", "--mixture", mix,
           "--enrollment", mix, "--out", str(tmp_path / "est.wav")]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()
    assert len(last) == 1 and last[0] == (
        "speechbrain-crossmamba: error: no pretrained folder at results/no_such_run/1234/pretrained"
    )


def test_robustness_benchmark_rebuilds_each_condition_and_scores_the_model(
    speaker_model, speaker_data, capsys, monkeypatch
):
    """``benchmarks/robustness.py`` on a tiny model: each condition is the mixture it names (at
    the row's SNR, slower, reverberant, the interferer's enrollment), and the table reports the
    model's own SI-SNRi of every mixture."""
    import csv
    import glob

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import robustness

    from speechbrain_crossmamba.evaluation import si_snr

    data = glob.glob(os.path.join(speaker_data, "SynthSpeakers_*"))[0]
    with open(os.path.join(data, "test.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(data, "test_utts.csv")) as f:
        spk = {u["wav"]: u["spk_id"] for u in csv.DictReader(f)}
    row, rng = rows[0], np.random.default_rng(0)
    inter = robustness.interferer_enrollments({r["ID"]: r for r in rows}, os.path.join(data, "test_utts.csv"))
    others = [w for w in spk if w not in (row["target_wav"], row["interf_wav"], row["enroll_wav"])]
    built = {c: robustness.make_condition(c, row, rng, others, inter[row["ID"]]) for c in robustness.CONDITIONS}
    target = robustness.read_audio(row["target_wav"])
    for condition in ("speed 0.9", "reverberant", "speed 1.1"):
        mix, tgt, _ = built[condition]
        realised = 10 * torch.log10(tgt.pow(2).sum() / (mix - tgt).pow(2).sum())
        assert abs(realised.item() - float(row["snr_db"])) < 0.01, condition
    assert abs(len(built["speed 0.9"][1]) - len(target) / 0.9) <= 2
    assert not torch.allclose(built["reverberant"][1], built["test set"][1][: len(built["reverberant"][1])])
    assert spk[inter[row["ID"]]] == spk[row["interf_wav"]] != row["target_spk"]
    assert inter[row["ID"]] != row["interf_wav"]  # another utterance of the interferer
    assert torch.equal(built["interferer's enrollment"][2], robustness.read_audio(inter[row["ID"]]).float())

    robustness.main([speaker_model, "--data", data, "--conditions", "test set", "interferer's enrollment"])
    table = capsys.readouterr().out
    model = TargetSpeakerExtraction.from_hparams(source=speaker_model)
    gains = {}
    for condition in ("test set", "interferer's enrollment"):
        scores = []
        for k, r in enumerate(rows):
            mix, tgt, enr = robustness.make_condition(condition, r, None, [], inter[r["ID"]])
            est = model.extract_batch(mix[None], clue=enr[None])
            scores.append(float(si_snr(est, tgt[None]) - si_snr(mix[None], tgt[None])))
        gains[condition] = np.asarray(scores)
    cells = re.search(r"^\| .*pretrained \| (.*) \|$", table, re.M).group(1).split(" | ")
    assert [float(c.split(" ± ")[0]) for c in cells] == pytest.approx(
        [round(gains[c].mean(), 2) for c in gains], abs=0.006
    )
    assert f"test set: {(gains['test set'] > 0).sum()} of {len(rows)} mixtures improve" in table or (
        f"test set: all {len(rows)} mixtures improve" in table
    )
