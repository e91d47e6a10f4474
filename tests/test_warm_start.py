"""The warm start: two-output models, identity-start fusion points, and the separation stage."""

import csv
import glob
import math
import os
import re

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataio import read_audio
from speechbrain.inference.interfaces import Pretrained

from speechbrain_crossmamba.dataio.tse_data import interferer_enrollments
from speechbrain_crossmamba.evaluation import utterance_metrics
from speechbrain_crossmamba.training import TSEBrain, main
from test_training import TINY_MODEL, tiny_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "hparams", "models", "tse.yaml")
FUSIONS = ["crossmamba", "attention", "mamba", "concat", "film", "add", "multiply"]


def _extractor(**choices):
    sizes = {"N": 16, "N_encoder": 16, "num_layers": 1, "enroll_hidden": 16, "d_ffn": 32, "d_state": 4}
    hp = load_hyperpyyaml(open(MODEL), {**sizes, **choices})
    return hp["extractor"].eval()


@pytest.mark.parametrize("host", ["dualpath", "singlepath"])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_gated_fusion_starts_as_the_separation_model(host, fusion):
    """At initialisation the clue changes nothing and output 0 is the clue-free separation;
    once the gates open, the clue changes the output (so the test could see a leak)."""
    torch.manual_seed(0)
    model = _extractor(host=host, fusion_variant=fusion, num_spks=2, fusion_gate=True)
    mix, clue_a = torch.randn(2, 8000), torch.randn(2, 8000)
    clue_b = torch.sin(torch.arange(8000) * 0.3).repeat(2, 1)  # a tone: unlike noise once pooled
    with torch.no_grad():
        separated = model.separate(mix)
        assert separated.shape == (2, 2, 8000)
        assert torch.equal(model(mix, clue_a), separated[:, 0])
        assert torch.equal(model(mix, clue_b, all_outputs=True), separated)
        for name, param in model.named_parameters():
            if name.endswith(".gate"):
                param.fill_(1.0)
        # bitwise equal if the clue did not reach the output (at init its effect is small)
        assert not torch.equal(model(mix, clue_a), model(mix, clue_b))


def test_separate_keeps_padding_out():
    torch.manual_seed(0)
    model = _extractor(num_spks=2, fusion_gate=True)
    short, long = torch.randn(6000), torch.randn(8000)
    batch = torch.stack([torch.nn.functional.pad(short, (0, 2000)), long])
    with torch.no_grad():
        both = model.separate(batch, lengths=torch.tensor([0.75, 1.0]))
        alone = model.separate(short[None])
    assert torch.allclose(both[0, :, :6000], alone[0], atol=1e-4)
    assert both[0, :, 6000:].abs().max() == 0


def test_one_output_model_has_no_separation_outputs():
    model = _extractor()
    assert model(torch.randn(1, 8000), torch.randn(1, 8000)).shape == (1, 8000)
    assert model.separate(torch.randn(1, 8000)).shape == (1, 1, 8000)
    with pytest.raises(ValueError, match="no clue given"):
        model(torch.randn(1, 8000), None)


def _log(out):
    return open(os.path.join(out, "train_log.txt")).read()


def test_warm_start_runs_separation_then_extraction_and_exports_the_extractor(tmp_path):
    out = str(tmp_path / "run")
    extra = ["--warm_start_epochs=1", "--rest_loss_weight=1.0"]
    main(tiny_args(out, str(tmp_path / "data"), epochs=2, extra=extra))
    log = _log(out)
    assert "epoch: 1," in log and "stage: separation" in log.splitlines()[0]
    assert "valid sep-si-snri" in log.splitlines()[0]
    assert "stage: extraction" in log.splitlines()[1] and "valid si-snri" in log.splitlines()[1]
    assert "Epoch loaded: 2" in log  # the test uses an extraction checkpoint, never a separation one
    rows = list(csv.DictReader(open(os.path.join(out, "test_results.csv"))))
    assert rows[-1]["ID"] == "avg" and math.isfinite(float(rows[-1]["si-snri"]))
    folder = os.path.join(out, "pretrained")
    model = Pretrained.from_hparams(source=folder, savedir=folder)
    wav = model.mods.extractor(torch.randn(1, 8000), torch.randn(1, 8000))
    assert wav.shape == (1, 8000) and torch.isfinite(wav).all()
    # the wrong-clue column is the exported model run on an enrollment of the interferer
    (corpus,) = glob.glob(os.path.join(str(tmp_path / "data"), "SynthSpeakers_*"))
    test_rows = {r["ID"]: r for r in csv.DictReader(open(os.path.join(corpus, "test.csv")))}
    other = interferer_enrollments(test_rows, os.path.join(corpus, "test_utts.csv"))
    first = rows[0]
    mix, target = (read_audio(test_rows[first["ID"]][k]) for k in ("mix_wav", "target_wav"))
    with torch.no_grad():
        est = model.mods.extractor(mix[None], read_audio(other[first["ID"]])[None])[0]
    want = utterance_metrics(est, target, mix)["si-snri"]
    assert float(first["si-snri-interferer-clue"]) == pytest.approx(want, abs=1e-3)
    assert other[first["ID"]] != test_rows[first["ID"]]["interf_wav"]  # another utterance


class Interrupted(Exception):
    pass


def _epoch_lines(out):
    """The log's epoch lines without the minutes (the only thing a resume may change)."""
    lines = [line for line in _log(out).splitlines() if line.startswith("epoch:")]
    return [re.sub(r"minutes: [^,]+, ", "", line) for line in lines]


def test_resume_across_the_stage_switch_continues_bit_identically(
    tmp_path, monkeypatch
):
    """A run stopped at the switch (its separation epoch done, by number_of_epochs), resumed
    into extraction, killed two steps into it and resumed again ends with the weights and
    the log of the run that was never stopped: every tensor bitwise equal, every logged
    loss and metric the same. One separation and one extraction epoch of 4 steps each, with
    CrossMamba fusion and Transformer blocks at dropout 0.1: the global random draws (the
    dropout masks) must continue where they were, too."""
    data = str(tmp_path / "data")
    extra = ["--warm_start_epochs=1", "--ckpt_interval_steps=1"]
    extra += ["--ckpt_interval_minutes=0", "--block_variant=transformer"]
    model = TINY_MODEL[:-1] + ", dropout: 0.1}"

    def args(out, epochs):
        args = tiny_args(out, data, epochs=epochs, extra=extra)
        return [model if a == TINY_MODEL else a for a in args]

    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    main(args(whole, 2))
    main(args(parts, 1))  # stops at the switch
    assert _epoch_lines(parts) == _epoch_lines(whole)[:1]
    assert "stage: separation" in _epoch_lines(parts)[0]
    fit_batch, calls = TSEBrain.fit_batch, []

    def dies_in_step_3(self, batch):
        calls.append(self.separating)
        if len(calls) == 3:  # steps 1 and 2 of extraction are checkpointed
            raise Interrupted()
        return fit_batch(self, batch)

    monkeypatch.setattr(TSEBrain, "fit_batch", dies_in_step_3)
    with pytest.raises(Interrupted):
        main(args(parts, 2))
    assert calls == [False] * 3  # resumed in the extraction stage
    calls.clear()
    counted = lambda self, batch: calls.append(1) or fit_batch(self, batch)  # noqa: E731
    monkeypatch.setattr(TSEBrain, "fit_batch", counted)
    main(args(parts, 2))
    assert len(calls) == 2  # steps 3 and 4 only
    assert _epoch_lines(parts) == _epoch_lines(whole)
    assert "stage: extraction" in _epoch_lines(parts)[1]
    path = lambda out, name: os.path.join(out, name)  # noqa: E731
    ckpts = [path(o, "pretrained/extractor.ckpt") for o in (whole, parts)]
    a, b = (torch.load(c) for c in ckpts)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    gates = [k for k in a if k.endswith(".gate")]
    assert any(a[k].abs().sum() > 0 for k in gates)  # extraction was trained
    results = [open(path(o, "test_results.csv")).read() for o in (whole, parts)]
    assert results[0] == results[1]


def test_lr_decay_acts_after_extraction_epochs_and_survives_a_resume(tmp_path):
    """lr_decay multiplies the learning rate after every extraction epoch from lr_decay_from
    on (never after a separation epoch); a resumed run continues from the decayed rate."""
    out, data = str(tmp_path / "run"), str(tmp_path / "data")
    extra = ["--warm_start_epochs=2", "--lr_decay=0.5", "--lr_decay_from=2", "--ckpt_interval_minutes=0"]
    main(tiny_args(out, data, epochs=3, extra=extra))
    main(tiny_args(out, data, epochs=5, extra=extra))  # resumed after epoch 3
    lines = [line for line in _log(out).splitlines() if line.startswith("epoch:")]
    rates = [float(line.split("lr: ")[1].split(",")[0]) for line in lines]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 2.5e-4])
    with pytest.raises(SystemExit, match=r"lr_decay must be in \(0, 1\]"):
        main(tiny_args(out, data, epochs=6, extra=extra[:1] + ["--lr_decay=1.5"]))


def test_warm_start_with_the_label_clue(tmp_path):
    out = str(tmp_path / "run")
    args = tiny_args(out, str(tmp_path / "data"), yaml="crossmamba_tse_label.yaml", epochs=2)
    main(args + ["--warm_start_epochs=1"])
    log = _log(out)
    assert "stage: separation" in log and "stage: extraction" in log


def test_warm_start_needs_two_outputs(tmp_path):
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit, match="needs a two-output model: set num_spks: 2"):
        args = tiny_args(out, str(tmp_path / "data"), extra=["--warm_start_epochs=1"])
        main([TINY_MODEL[:-1] + ", num_spks: 1}" if a == TINY_MODEL else a for a in args])


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_gate_scale_sets_how_fast_a_gate_opens(scale):
    """Adam moves the gate's parameter by about lr per step, so the gate opens scale * lr."""
    from speechbrain_crossmamba.lobes.models.extractor import FusionPoint
    from speechbrain_crossmamba.nnet.fusion import FiLMFusion

    torch.manual_seed(0)
    point = FusionPoint(FiLMFusion(16, 8), gate=True, gate_scale=scale)
    x, clue, want = torch.randn(2, 30, 16), torch.randn(2, 8), torch.randn(2, 30, 16)
    optimizer = torch.optim.Adam(point.parameters(), lr=1e-3)
    ((point(x, clue) - want) ** 2).mean().backward()
    optimizer.step()
    opened = abs(scale * point.gate.item())
    assert opened == pytest.approx(scale * 1e-3, rel=1e-2)
