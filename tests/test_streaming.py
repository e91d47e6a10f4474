"""The streaming host: chunked == offline, causality, a fixed-size state, training, the CLI."""

import csv
import itertools
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from hyperpyyaml import load_hyperpyyaml
from test_training import HPARAMS, ROOT, tiny_args

from speechbrain_crossmamba.inference import TargetSpeakerExtraction
from speechbrain_crossmamba.nnet.streaming import state_numel
from speechbrain_crossmamba.training import main

MODEL_FILE = os.path.join(HPARAMS, "models", "streaming_tse.yaml")
TINY = {"N": 16, "N_encoder": 16, "encoder_layers": 3, "decoder_layers": 2, "d_ffn": 32,
        "d_state": 8, "enroll_hidden": 16, "num_classes": 10}
TINY_STREAMING = "--model={N: 16, N_encoder: 16, encoder_layers: 3, decoder_layers: 1, d_ffn: 32}"
RATE = 8000


def _model(decoder="crossmamba", clue="label", **sizes):
    torch.manual_seed(0)
    overrides = {**TINY, "decoder_variant": decoder, "clue_variant": clue, **sizes}
    with open(MODEL_FILE) as f:
        return load_hyperpyyaml(f, overrides)["extractor"].eval()


def _signal(seconds, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, int(seconds * RATE), generator=g)


def _stream(model, mix, clue, sizes):
    """Streams ``mix`` in chunks of the given sizes (cycled); returns the concatenated output."""
    chunks, start, i = [], 0, 0
    while start < mix.shape[1]:
        chunks.append(mix[:, start : start + sizes[i % len(sizes)]])
        start, i = start + sizes[i % len(sizes)], i + 1
    return torch.cat(list(model.extract_stream(chunks, clue)), dim=1)


@pytest.mark.parametrize("decoder", ["crossmamba", "attention"])
def test_ten_seconds_chunk_by_chunk_equal_offline(decoder):
    model = _model(decoder, context_frames=300)
    mix, label = _signal(10), torch.tensor([4])
    with torch.no_grad():
        offline = model(mix, label)
    assert offline.shape == mix.shape and offline.abs().max() > 1e-3
    for sizes in ([64], [128], [256], [100], [1, 513, 7, 64, 0, 2000]):  # 100 does not divide 80000
        streamed = _stream(model, mix, label, sizes)
        assert streamed.shape == offline.shape, sizes
        torch.testing.assert_close(streamed, offline, rtol=1e-4, atol=1e-5, msg=f"chunks {sizes}")


@pytest.mark.parametrize("length", [5, 16, 17, 1001])
def test_short_and_odd_lengths_stream_like_offline(length):
    model = _model()
    mix, label = _signal(1)[:, :length], torch.tensor([1])
    with torch.no_grad():
        offline = model(mix, label)
    torch.testing.assert_close(_stream(model, mix, label, [3]), offline, rtol=1e-4, atol=1e-5)


def test_enrollment_clue_streams_like_offline():
    model = _model(clue="enrollment")
    mix, enrollment = _signal(3), _signal(2, seed=1)
    with torch.no_grad():
        offline = model(mix, enrollment)
    torch.testing.assert_close(_stream(model, mix, enrollment, [160]), offline, rtol=1e-4, atol=1e-5)


def _tone(hz, seconds=1.0):
    t = torch.arange(int(seconds * RATE)) / RATE
    return 0.3 * torch.sin(2 * torch.pi * hz * t)[None]


# two clues per kind, far apart: other classes; enrollments of other spectra (a low and a
# high tone: two white-noise enrollments pool to nearly the same clue vector)
CLUE_PAIRS = {
    "label": lambda: (torch.tensor([3]), torch.tensor([7])),
    "enrollment": lambda: (_tone(150), _tone(1800)),
}


def _rel(a, b):
    """The relative distance of ``a`` from ``b``: 0 for equal outputs."""
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("clue", ["label", "enrollment"])
@pytest.mark.parametrize("decoder", ["crossmamba", "attention"])
def test_the_stream_follows_its_clue(decoder, clue, monkeypatch):
    """Chunked == offline also holds for a host that ignores its clue (both outputs would be
    the same for every clue). Here the stream given clue A equals the offline output for A
    (float rounding: under 1e-5 relative) and is far from the offline output for B (over 1e-2:
    a thousand times that; measured 0.05 to 1.1). The control, the clue zeroed where the host
    takes it (the query W·e ⊙ mem, its only way in), fails the second check: B's output is
    A's. The streaming host has no fusion gates: an untrained model already uses its clue."""
    model = _model(decoder, clue, context_frames=300)
    mix, (clue_a, clue_b) = _signal(1), CLUE_PAIRS[clue]()
    with torch.no_grad():
        offline_a, offline_b = model(mix, clue_a), model(mix, clue_b)
    streamed = _stream(model, mix, clue_a, [400])
    same, other = _rel(streamed, offline_a), _rel(streamed, offline_b)
    assert same < 1e-5 and other > 1e-2, (same, other)
    query = model.masknet.query.forward
    zeroed = lambda c, x: query(torch.zeros_like(c), x)  # noqa: E731
    monkeypatch.setattr(model.masknet.query, "forward", zeroed)
    with torch.no_grad():  # the control: the clue ignored, A's output is B's
        assert _rel(model(mix, clue_a), model(mix, clue_b)) < 1e-5


def test_padded_batch_items_equal_their_outputs_alone():
    model = _model()
    a, b = _signal(1.0), _signal(0.6, seed=3)
    batch = torch.cat([a, torch.nn.functional.pad(b, (0, a.shape[1] - b.shape[1]))])
    labels = torch.tensor([1, 5])
    with torch.no_grad():
        out = model(batch, labels, lengths=torch.tensor([1.0, b.shape[1] / a.shape[1]]))
        alone = model(b, labels[1:])
    torch.testing.assert_close(out[1, : b.shape[1]], alone[0], rtol=1e-4, atol=1e-5)
    assert out[1, b.shape[1] :].abs().max() == 0


@pytest.mark.parametrize("decoder", ["crossmamba", "attention"])
def test_causality_the_future_does_not_change_the_past(decoder):
    model = _model(decoder)
    mix, label = _signal(2), torch.tensor([2])
    t0 = 9000
    changed = mix.clone()
    changed[:, t0:] = torch.randn(1, mix.shape[1] - t0)
    with torch.no_grad():
        a, b = model(mix, label), model(changed, label)
    past = t0 - model.latency_samples  # the decoder's overlap-add reaches back this far
    torch.testing.assert_close(a[:, :past], b[:, :past], rtol=0, atol=1e-6)
    assert (a[:, past:] - b[:, past:]).abs().max() > 1e-3  # the test would see a leak


def test_crossmamba_state_is_fixed_in_size_attention_cache_grows_or_is_windowed():
    label = torch.tensor([0])
    sizes = {}
    for name, model in (
        ("crossmamba", _model("crossmamba")),
        ("window", _model("attention", context_frames=200)),
        ("unbounded", _model("attention", context_frames=None)),
    ):
        state = model.init_state(label)
        trace = []
        with torch.no_grad():
            for chunk in _signal(12).split(128, dim=1):  # 12 s, 750 chunks of 16 ms
                _, state = model.forward_chunk(chunk, state)
                trace.append(state_numel(state))
        sizes[name] = trace
    assert len(set(sizes["crossmamba"][1:])) == 1  # after the first chunk fills the input buffer
    first = model.init_state(label)
    _, second = model.forward_chunk(_signal(0.1), first)
    assert first["received"] == 0 and first["frames"] == 0 and second["frames"] == 99
    assert len(set(sizes["window"][20:])) == 1  # once the 200-frame window is full
    growth = np.diff(sizes["unbounded"])
    assert (growth > 0).all() and sizes["unbounded"][-1] > 20 * sizes["unbounded"][10]


def test_bad_streaming_input_one_line_errors():
    model = _model()
    state = model.init_state(torch.tensor([1]))
    with pytest.raises(ValueError, match=r"^a chunk must be mono \[batch=1, samples\], got shape \(1, 2, 64\)$"):
        model.forward_chunk(torch.zeros(1, 2, 64), state)
    with pytest.raises(ValueError, match=r"^a chunk must be a floating-point tensor \(scale int16"):
        model.forward_chunk(torch.zeros(1, 64, dtype=torch.int16), state)
    with pytest.raises(ValueError, match="^mixture chunk contains NaN or Inf values$"):
        model.forward_chunk(torch.full((1, 64), float("nan")), state)
    with pytest.raises(ValueError, match="^the mixture stream is empty"):
        list(model.extract_stream([], torch.tensor([1])))
    with pytest.raises(ValueError, match="out of range for 10 classes"):
        list(model.extract_stream([torch.zeros(64)], torch.tensor([12])))
    with pytest.raises(ValueError, match="^the streaming host takes a vector clue"):
        model.masknet(torch.zeros(1, 16, 10), torch.zeros(1, 10, 16))


def test_non_causal_masknet_is_refused():
    from speechbrain_crossmamba.lobes.models.streaming_tse import StreamingExtractor

    with open(os.path.join(HPARAMS, "models", "tse.yaml")) as f:
        hp = load_hyperpyyaml(f, {"N": 8, "N_encoder": 8, "num_layers": 1, "clue_variant": "label"})
    with pytest.raises(ValueError, match="TSEDualPathModel cannot stream"):
        StreamingExtractor(hp["encoder"], hp["extractor"].masknet, hp["decoder"], hp["clue_label"]())


def test_simulated_and_real_time_clocks(monkeypatch):
    from types import SimpleNamespace

    from speechbrain_crossmamba.inference import streaming
    from speechbrain_crossmamba.inference.streaming import (
        latency_summary,
        simulate_stream,
    )

    model, mix, label = _model(), _signal(0.2), torch.tensor([1])
    with torch.no_grad():
        offline = model(mix, label)[0]
    # the algorithmic latency is the chunk plus the decoder's overlap-add: the kernel of
    # streaming_tse.yaml (16 samples, hop 8) overlaps 8 samples, 1 ms at 8 kHz
    with open(MODEL_FILE) as f:
        kernel = load_hyperpyyaml(f, TINY)["kernel_size"]
    lookahead_ms = 1000 * (kernel - kernel // 2) / RATE
    assert lookahead_ms == 1.0
    # a model clock, so that every number is exact: a chunk costs `cost` seconds, and
    # sleeping moves the clock on by the time asked for
    clock = {"now": 0.0}
    forward_chunk = model.forward_chunk

    def costly(chunk, state):
        clock["now"] += cost
        return forward_chunk(chunk, state)

    def sleep(seconds):
        clock["now"] += max(0.0, seconds)

    fake = SimpleNamespace(perf_counter=lambda: clock["now"], sleep=sleep)
    monkeypatch.setattr(model, "forward_chunk", costly)
    monkeypatch.setattr(streaming, "time", fake)
    i = np.arange(20)  # 20 chunks of 10 ms; chunk i arrives at 10 (i + 1) ms
    # a chunk faster, then slower than real time
    runs = [(0.004, 4.0 + 0 * i), (0.015, 15.0 + 5.0 * i)]
    for (cost, latency), realtime in itertools.product(runs, (False, True)):
        clock["now"] = 0.0
        run = simulate_stream(model, mix, label, 80, realtime=realtime)
        assert run["chunk_ms"] == 10.0 and run["lookahead_ms"] == lookahead_ms
        compute = np.full(20, 1000 * cost)
        assert np.abs(run["compute_ms"] - compute).max() < 1e-9
        # from arrival to output: the compute, plus the queue behind late chunks
        assert np.abs(run["latency_ms"] - latency).max() < 1e-9
        # real time waits for each chunk: the clock ends at the last one's arrival + latency
        end = 0.2 + latency[-1] / 1000 if realtime else 20 * cost
        assert clock["now"] == pytest.approx(end, abs=1e-9)
        torch.testing.assert_close(run["output"], offline, rtol=1e-4, atol=1e-5)
    assert latency_summary(run).startswith(
        "20 chunks of 10.0 ms; algorithmic latency 11.0 ms (chunk + 1.0 ms"
    )


def _model_lines(path):
    lines = [line for line in open(path) if line.strip() and not line.startswith("#")]
    return [line for line in lines if not re.match(r"(experiment_name|decoder_variant):", line)]


def test_attention_twin_changes_only_the_decoder():
    cm, att = (os.path.join(HPARAMS, f"streaming_{v}_label.yaml") for v in ("crossmamba", "attention"))
    assert _model_lines(cm) == _model_lines(att)
    assert "decoder_variant: attention" in open(att).read()


@pytest.fixture(scope="module")
def streaming_model(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("stream"))
    data = str(tmp_path_factory.mktemp("ev"))
    args = tiny_args(out, data, yaml="streaming_crossmamba_label.yaml")
    args = [TINY_STREAMING if a.startswith("--model=") else a for a in args]
    main(args)
    return out


def test_tiny_training_run_exports_a_streamable_model(streaming_model):
    rows = list(csv.DictReader(open(os.path.join(streaming_model, "test_results.csv"))))
    assert len(rows) == 3 + 1 and all(np.isfinite(float(r["si-snr"])) for r in rows)
    model = TargetSpeakerExtraction.from_hparams(source=os.path.join(streaming_model, "pretrained"))
    mix = _signal(2)[0]
    clue = model.make_clue(label="siren bell")
    offline = model.extract_batch(mix[None], None, clue)[0]
    streamed = torch.cat(list(model.extract_stream(mix.split(128), clue)), dim=1)[0]
    torch.testing.assert_close(streamed, offline, rtol=1e-4, atol=1e-5)


def test_speaker_task_with_enrollment_clue_trains_and_streams(tmp_path):
    out = str(tmp_path / "spk")
    args = tiny_args(out, str(tmp_path / "data"), yaml="streaming_crossmamba_tse.yaml")
    main([TINY_STREAMING if a.startswith("--model=") else a for a in args])
    model = TargetSpeakerExtraction.from_hparams(source=os.path.join(out, "pretrained"))
    assert not model.label_clue
    mix, enrollment = _signal(1.5)[0], _signal(1.0, seed=4)
    offline = model.extract_batch(mix[None], None, enrollment)[0]
    streamed = torch.cat(list(model.extract_stream(mix.split(64), enrollment)), dim=1)[0]
    torch.testing.assert_close(streamed, offline, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"^enrollment is 0.01 s long; the minimum is 0.50 s"):
        list(model.extract_stream(mix.split(64), enrollment[:, :80]))


def test_stream_command_reports_latency_and_writes_the_offline_output(streaming_model, tmp_path):
    mix = tmp_path / "mix.wav"
    soundfile.write(str(mix), _signal(2)[0].numpy(), RATE)
    pretrained = os.path.join(streaming_model, "pretrained")
    cmd = [sys.executable, "-m", "speechbrain_crossmamba", "stream", "--model", pretrained,
           "--mixture", str(mix), "--label", "siren", "--chunk-ms", "16", "--out", str(tmp_path / "s.wav")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.search(r"125 chunks of 16\.0 ms; algorithmic latency 17\.0 ms", run.stdout)
    assert re.search(r"per-chunk latency: p50 [\d.]+ ms, p95 [\d.]+ ms, max [\d.]+ ms", run.stdout)
    model = TargetSpeakerExtraction.from_hparams(source=pretrained)
    offline = model.extract_file(str(mix), label="siren")
    streamed, rate = soundfile.read(str(tmp_path / "s.wav"), dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(streamed, offline.numpy(), atol=1e-4)  # 16-bit WAV


def test_stream_command_refuses_a_non_causal_model(tmp_path):
    from speechbrain_crossmamba.export import export_pretrained

    with open(os.path.join(HPARAMS, "models", "tse.yaml")) as f:
        hp = load_hyperpyyaml(f, {"N": 8, "N_encoder": 8, "num_layers": 1, "clue_variant": "label"})
    folder = str(tmp_path / "offline")
    export_pretrained(hp["extractor"], hp, os.path.join(HPARAMS, "models", "tse.yaml"), folder,
                      extra={"classes": ["a", "b"]})
    mix = tmp_path / "mix.wav"
    soundfile.write(str(mix), _signal(0.5)[0].numpy(), RATE)
    cmd = [sys.executable, "-m", "speechbrain_crossmamba", "stream", "--model", folder,
           "--mixture", str(mix), "--label", "a"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "speechbrain-crossmamba: error: this model (TSEDualPathModel) is not causal and cannot "
        "stream: train one from hparams/models/streaming_tse.yaml"
    )
