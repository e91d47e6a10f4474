"""ONNX export of the streaming host: ONNX Runtime against PyTorch, fixed shapes, the CLI."""

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import soundfile
import torch
from test_streaming import CLUE_PAIRS, RATE, _model, _rel, _signal
from test_training import ROOT

from speechbrain_crossmamba.inference.onnx_export import export_onnx
from speechbrain_crossmamba.inference.onnx_stream import OnnxStreamingExtractor, load_spec

CLUES = {"label": lambda: torch.tensor([3]), "enrollment": lambda: _signal(1.0, seed=5)}


@pytest.fixture(scope="module", params=[("crossmamba", "label"), ("attention", "enrollment"),
                                        ("crossmamba", "enrollment"), ("attention", "label")])  # fmt: skip
def exported(request, tmp_path_factory):
    decoder, clue = request.param
    model = _model(decoder, clue, context_frames=300)
    path = str(tmp_path_factory.mktemp("onnx") / "model.onnx")
    spec = export_onnx(model, 8, path)
    return model, path, spec, CLUES[clue]()


def test_onnx_runtime_equals_forward_chunk_over_ten_seconds(exported):
    model, path, spec, clue = exported
    runner = OnnxStreamingExtractor(path)
    assert spec["chunk_samples"] == runner.chunk_samples == 64
    # the export worked on a copy: the caller's model keeps its fast backends (and its mode)
    assert {m.scan_backend for m in model.modules() if hasattr(m, "scan_backend")} <= {"auto"}
    assert not model.training
    mix = _signal(10.0, seed=1)
    with torch.no_grad():
        ref_state, state = model.init_state(clue), runner.init_state(clue)
        for i, chunk in enumerate(mix.split(64, dim=1)):
            ref, ref_state = model.forward_chunk(chunk, ref_state)
            got, state = runner.forward_chunk(chunk, state)
            assert got.shape == ref.shape, i
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4, msg=f"chunk {i}")
        assert ref.abs().max() > 1e-3  # the outputs compared are not all zeros
        tail, ref_tail = runner.flush(state), model.flush(ref_state)
    assert tail.shape == ref_tail.shape  # the whole output has the input's length
    hop = model.stride  # flush: the last hop may differ (see OnnxStreamingExtractor.flush)
    torch.testing.assert_close(tail[:, :-hop], ref_tail[:, :-hop], rtol=0, atol=1e-4)


def test_the_clue_graph_equals_the_clue_encoder_at_any_enrollment_length(exported):
    model, path, spec, clue = exported
    runner = OnnxStreamingExtractor(path)
    clues = [clue] if spec["clue"]["input"] == "labels" else [_signal(s, seed=6) for s in (0.6, 2.3)]
    for c in clues:
        with torch.no_grad():
            ref = model.encode_clue(c).numpy()
        np.testing.assert_allclose(runner.encode_clue(c), ref, atol=1e-5, rtol=0)


def _graphs_follow_the_clue(model, path, clue_a, clue_b):
    """ONNX Runtime == PyTorch also holds if the clue were lost on the way (a clue graph
    folded to a constant, a chunk graph that leaves its clue input unused): both would then
    give one output for every clue. Here two far-apart clues give clue vectors and streams
    over 1e-2 apart (relative), while the runner given clue A matches PyTorch given A within
    1e-4 (ONNX Runtime's float rounding; measured under 1e-6)."""
    runner = OnnxStreamingExtractor(path)
    with torch.no_grad():
        ref_a, ref_b = model.encode_clue(clue_a), model.encode_clue(clue_b)
    got_a, got_b = (
        torch.from_numpy(runner.encode_clue(c)) for c in (clue_a, clue_b)
    )
    assert _rel(got_a, ref_a) < 1e-4 and _rel(got_b, ref_b) < 1e-4
    assert _rel(got_a, ref_b) > 1e-2 and _rel(got_b, got_a) > 1e-2
    mix = _signal(1.0, seed=1)
    out_a, out_b = (
        runner.forward_chunk(mix, runner.init_state(c))[0]
        for c in (clue_a, clue_b)
    )
    n = out_a.shape[1]  # every whole chunk's output (the flush's may differ)
    with torch.no_grad():
        offline_a, offline_b = (model(mix, c)[:, :n] for c in (clue_a, clue_b))
    assert n > RATE // 2 and offline_a.abs().max() > 1e-3
    assert _rel(out_a, offline_a) < 1e-4 and _rel(out_b, offline_b) < 1e-4
    assert _rel(out_a, offline_b) > 1e-2 and _rel(out_a, out_b) > 1e-2


def test_the_graphs_follow_the_clue(exported):
    """The label and enrollment graphs: see ``_graphs_follow_the_clue``."""
    model, path, spec, _ = exported
    kind = "label" if spec["clue"]["input"] == "labels" else "enrollment"
    _graphs_follow_the_clue(model, path, *CLUE_PAIRS[kind]())


def test_the_vector_clue_graph_follows_the_clue(tmp_path):
    """The third clue input an export takes: an external vector (e.g. a speaker embedding).
    The attention decoder: its export takes a third of the CrossMamba decoder's time."""
    model = _model("attention", "vector", context_frames=300)
    path = str(tmp_path / "model.onnx")
    spec = export_onnx(model, 8, path, verify_chunks=0)
    assert spec["clue"]["input"] == "vector" and spec["clue"]["d_in"] == 192
    g = torch.Generator().manual_seed(5)
    _graphs_follow_the_clue(model, path, *torch.randn(2, 1, 192, generator=g))


def test_every_graph_input_has_a_fixed_shape_and_the_state_keeps_it(exported):
    _, path, spec, clue = exported
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [t["name"] for t in spec["inputs"]]
    for graph_input, declared in zip(session.get_inputs(), spec["inputs"]):
        assert graph_input.shape == declared["shape"], graph_input.name  # all ints: no symbolic dims
    runner = OnnxStreamingExtractor(path)
    state = runner.init_state(clue)
    shapes = {k: v.shape for k, v in state["graph"].items()}
    for _ in range(30):
        _, state = runner.forward_chunk(_signal(0.008 * 7, seed=2), state)  # 7 chunks at a time
    assert {k: v.shape for k, v in state["graph"].items()} == shapes
    names = [s["input"] for s in spec["state"]]
    assert names[:3] == ["buffer", "tail", "frames"] and [s["output"] for s in spec["state"]] == [
        n + ".next" for n in names]  # fmt: skip
    layer_states = {"CausalCrossMambaLayer": ["conv", "ssm"],
                    "CausalCrossAttentionLayer": ["keys", "values", "valid"]}[spec["decoder"]]
    assert [n for n in names if n.startswith("layer0.")] == [f"layer0.{s}" for s in layer_states]


def test_the_contract_is_in_the_graph_metadata_and_beside_it(exported):
    _, path, spec, _ = exported
    from_graph, _ = load_spec(path)
    with open(path[:-5] + ".json") as f:
        beside = json.load(f)
    assert from_graph == beside
    assert beside["output_delay_samples"] == 8 and beside["sample_rate"] == RATE
    for graph in (path, path[:-5] + ".clue.onnx"):
        onnx.checker.check_model(onnx.load(graph))
        assert not any(n.domain not in ("", "ai.onnx") for n in onnx.load(graph).graph.node)


def test_frame_mask_makes_leading_frames_inert():
    for decoder in ("crossmamba", "attention"):
        net = _model(decoder, context_frames=20).masknet
        x, clue = torch.randn(1, 16, 30), torch.randn(1, 16)
        pad = torch.randn(1, 16, 2)
        mask = torch.tensor([[False, False] + [True] * 12])
        with torch.no_grad():
            ref, ref_state = net.forward_chunk(x[..., :12], clue, net.init_state(1, fixed=True))
            got, state = net.forward_chunk(torch.cat([pad, x[..., :12]], -1), clue,
                                           net.init_state(1, fixed=True), mask)  # fmt: skip
            torch.testing.assert_close(got[..., 2:], ref, atol=1e-5, rtol=0)
            assert got[..., :2].abs().max() == 0  # masked frames add nothing to the output
            ref, _ = net.forward_chunk(x[..., 12:], clue, ref_state)
            got, _ = net.forward_chunk(x[..., 12:], clue, state)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_export_refuses_an_attention_cache_that_grows(tmp_path):
    with pytest.raises(ValueError, match="^a fixed-size attention state needs a context window"):
        export_onnx(_model("attention", context_frames=None), 8, str(tmp_path / "m.onnx"))


def test_runner_checks_the_clue_in_one_line(exported):
    _, path, spec, clue = exported
    runner = OnnxStreamingExtractor(path)
    if spec["clue"]["input"] == "enrollment":
        with pytest.raises(ValueError, match=r"^enrollment is 0.01 s long; the minimum is 0.50 s$"):
            runner.init_state(_signal(0.01))
        with pytest.raises(ValueError, match="^enrollment is silent"):
            runner.init_state(torch.zeros(1, RATE))
    else:
        with pytest.raises(ValueError, match=r"^a class index must be one of 0\.\.9, got \[12\]$"):
            runner.init_state(torch.tensor([12]))
    with pytest.raises(ValueError, match="^the mixture chunk holds NaN or Inf$"):
        state = runner.init_state(clue)
        runner.forward_chunk(torch.full((1, 64), float("nan")), state)


def _pretrained(folder):
    from speechbrain_crossmamba.export import export_pretrained
    from test_streaming import MODEL_FILE, TINY
    from hyperpyyaml import load_hyperpyyaml

    with open(MODEL_FILE) as f:
        hp = load_hyperpyyaml(f, {**TINY, "num_classes": 3})
    export_pretrained(hp["extractor"], hp, MODEL_FILE, folder, extra={"classes": ["siren", "bell", "dog"]})


def _cli(*args, prelude=""):
    code = f"import sys; {prelude}from speechbrain_crossmamba.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_export_and_stream_commands_give_the_pytorch_stream(tmp_path):
    model_dir, out = str(tmp_path / "pretrained"), str(tmp_path / "onnx" / "model.onnx")
    _pretrained(model_dir)
    mix = str(tmp_path / "mix.wav")
    soundfile.write(mix, _signal(2.0)[0].numpy(), RATE)
    run = _cli("export-onnx", "--model", model_dir, "--chunk-ms", "16", "--out", out)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("128 samples per chunk (16.00 ms at 8000 Hz), 10 state tensors")
    assert run.stdout.split("\n")[1:4] == [out, out[:-5] + ".clue.onnx", out[:-5] + ".json"]
    torch_cmd = ["stream", "--model", model_dir, "--chunk-ms", "16"]
    for engine, cmd in (("onnx", ["stream-onnx", "--onnx", out]), ("torch", torch_cmd)):
        run = _cli(*cmd, "--mixture", mix, "--label", "siren dog", "--out", str(tmp_path / f"{engine}.wav"))
        assert run.returncode == 0, run.stderr[-2000:]
        assert "125 chunks of 16.0 ms; algorithmic latency 17.0 ms" in run.stdout
        assert "per-chunk latency: p50 " in run.stdout
    onnx_wav, rate = soundfile.read(str(tmp_path / "onnx.wav"), dtype="float32")
    torch_wav, _ = soundfile.read(str(tmp_path / "torch.wav"), dtype="float32")
    assert rate == RATE and onnx_wav.shape == torch_wav.shape == (2 * RATE,)
    np.testing.assert_allclose(onnx_wav[:-8], torch_wav[:-8], atol=1e-4)  # 16-bit WAVs
    run = _cli("stream-onnx", "--onnx", out, "--mixture", mix, "--label", "cat")
    assert run.returncode == 2
    assert run.stderr.strip() == ("speechbrain-crossmamba: error: unknown class name(s) ['cat']; "
                                  "known: siren, bell, dog")  # fmt: skip
    run = _cli("stream-onnx", "--onnx", out, "--mixture", mix, "--enrollment", mix)
    assert run.returncode == 2
    assert run.stderr.strip() == ("speechbrain-crossmamba: error: this model takes 'labels' as its "
                                  "clue, not an enrollment")  # fmt: skip


@pytest.mark.parametrize("module", ["onnxruntime", "onnxscript"])
def test_a_missing_extra_is_named_in_one_line(module, tmp_path):
    blocked = f"sys.modules[{module!r}] = None; "
    if module == "onnxruntime":
        run = _cli("stream-onnx", "--onnx", "m.onnx", "--mixture", "x.wav", "--label", "a", prelude=blocked)
    else:
        _pretrained(str(tmp_path / "p"))
        run = _cli("export-onnx", "--model", str(tmp_path / "p"), "--out", "m.onnx", prelude=blocked)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"speechbrain-crossmamba: error: {'the ONNX runner' if module == 'onnxruntime' else 'the ONNX export'} "
        f"needs {module}, from the optional [onnx] extra: pip install 'speechbrain-crossmamba[onnx]'"
    ]
