"""Export of a streaming extractor to ONNX: one chunk per call, the whole state as plain tensors.

:func:`export_onnx` writes three files for a trained streaming model (``StreamingExtractor``)
and one chunk size:

- ``model.onnx``, the chunk graph: ``(chunk [1, C], clue [1, D], *state) -> (out [1, C],
  *next state)``. Every input and output has a fixed shape: the state does not grow with the
  stream (attention decoders need a context window, whose key/value cache is a fixed-size
  buffer with a mask of its real frames);
- ``model.clue.onnx``, the clue graph: the label (multi-hot [1, K]), enrollment ([1, T], any
  length) or vector clue -> the clue vector [1, D], run once per stream;
- ``model.json``, the contract a host needs without Python: sample rate, chunk, delay, the
  clue input and class names, and every state tensor (name, shape, dtype, initial value zero)
  in input order, with the output that feeds it back. The same JSON is in both graphs'
  metadata (key ``speechbrain_crossmamba``).

The graph takes ``C`` samples and returns ``C``. Its output is the PyTorch stream's output
delayed by ``output_delay_samples`` (the filterbank overlap, kernel - hop): frames are whole
hops, so the first call holds one frame that starts before the stream; it is masked, so the
state and the later outputs are exactly those of :meth:`StreamingExtractor.forward_chunk`.
:class:`~speechbrain_crossmamba.inference.onnx_stream.OnnxStreamingExtractor` drops the delay.

The graphs contain only standard ONNX operators: the selective scan is exported from the
``"torch"`` backend, never from a custom kernel.

Authors
 * speechbrain-crossmamba contributors
"""

import contextlib
import copy
import io
import json
import logging
import os
import warnings

import torch
import torch.nn as nn

from speechbrain_crossmamba.inference.onnx_stream import (
    METADATA_KEY,
    OnnxStreamingExtractor,
    require_onnx,
)
from speechbrain_crossmamba.nnet.clue import EnrollmentEncoder, LabelEncoder, VectorClue

OPSET = 18


class ChunkGraph(nn.Module):
    """One chunk of a stream as a function of tensors only: the graph :func:`export_onnx` writes.

    Arguments
    ---------
    extractor : StreamingExtractor
        The model (eval mode).
    chunk_samples : int
        Samples per call: a positive multiple of the filterbank hop.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> hp = load_hyperpyyaml(open("hparams/models/streaming_tse.yaml"),
    ...                       {"N": 8, "N_encoder": 8, "encoder_layers": 2, "decoder_layers": 1})
    >>> model = hp["extractor"].eval()
    >>> graph = ChunkGraph(model, 64)
    >>> state = graph.initial_state()
    >>> list(state)[:4], state["buffer"].shape
    (['buffer', 'tail', 'frames', 'encoder0'], torch.Size([1, 8]))
    >>> clue = model.encode_clue(torch.tensor([2]))
    >>> out, *new = graph(torch.randn(1, 64), clue, *state.values())
    >>> out.shape, len(new) == len(state)
    (torch.Size([1, 64]), True)
    """

    def __init__(self, extractor, chunk_samples):
        super().__init__()
        self.extractor = extractor
        kernel, hop = extractor.kernel, extractor.stride
        if kernel % hop:
            raise ValueError(f"cannot export: the filterbank kernel {kernel} is not a multiple of its hop {hop}")
        if chunk_samples < hop or chunk_samples % hop:
            raise ValueError(f"a chunk must be a positive multiple of the hop ({hop} samples), got {chunk_samples}")
        self.chunk, self.overlap = chunk_samples, kernel - hop
        self.frames, self.pad_frames = chunk_samples // hop, (kernel - hop) // hop
        masknet = extractor.masknet.init_state(1, fixed=True)
        self.names = ["buffer", "tail", "frames"] + [f"encoder{i}" for i in range(len(masknet["encoder"]))]
        for i, (layer, state) in enumerate(zip(extractor.masknet.layers, masknet["layers"])):
            self.names += [f"layer{i}.{name}" for name in layer.state_names[: len(state)]]
        self._layer_sizes = [len(state) for state in masknet["layers"]]

    def initial_state(self):
        """The state before the first sample, by name, in the graph's input order (all zeros)."""
        masknet = self.extractor.masknet.init_state(1, fixed=True)
        zeros = torch.zeros(1, self.overlap)
        flat = [zeros, zeros.clone(), torch.zeros(1, dtype=torch.long), *masknet["encoder"]]
        flat += [t for state in masknet["layers"] for t in state]
        return dict(zip(self.names, flat))

    def forward(self, chunk, clue, *state):
        buffer, tail, frames = state[:3]
        n_enc = len(self.extractor.masknet.encoder.context)
        layers, rest = [], list(state[3 + n_enc :])
        for size in self._layer_sizes:
            layers.append(tuple(rest[:size]))
            rest = rest[size:]
        window = torch.cat([buffer, chunk], dim=1)
        index = frames + torch.arange(self.frames, device=chunk.device)  # frames since the start
        valid = (index >= self.pad_frames)[None]  # the first call's first frames precede it
        inner = {"clue": clue, "tail": tail, "frames": 0,
                 "masknet": {"encoder": list(state[3 : 3 + n_enc]), "layers": layers}}  # fmt: skip
        out = self.extractor._frames(window, inner, valid)
        new = [window[:, window.shape[1] - self.overlap :], inner["tail"],
               torch.clamp(frames + self.frames, max=self.pad_frames)]  # fmt: skip
        new += inner["masknet"]["encoder"] + [t for s in inner["masknet"]["layers"] for t in s]
        return (out, *new)


class ClueGraph(nn.Module):
    """The clue encoder's traceable part: label multi-hot, enrollment or vector -> clue [1, D].

    The checks of the clue encoders (known class, enrollment length, silence, finite values)
    are done by the runner before it calls the graph.
    """

    KINDS = {LabelEncoder: "labels", EnrollmentEncoder: "enrollment", VectorClue: "vector"}

    def __init__(self, clue_encoder):
        super().__init__()
        kind = self.KINDS.get(type(clue_encoder))
        if kind is None:
            raise ValueError(
                f"cannot export the clue encoder {type(clue_encoder).__name__}: the ONNX export "
                "takes label, enrollment and vector clues"
            )
        self.encoder, self.kind = clue_encoder, kind

    def forward(self, x):
        return self.encoder.embed(x)

    def example(self, sample_rate):
        """An input of the right shape: one class, 1 s of enrollment, or a vector."""
        if self.kind == "labels":
            return torch.nn.functional.one_hot(torch.tensor([0]), self.encoder.num_classes).float()
        if self.kind == "enrollment":
            return 0.1 * torch.randn(1, sample_rate)
        return torch.randn(1, self.encoder.d_in)


def _export(module, args, input_names, output_names, dynamic_shapes=None):
    """``torch.onnx.export`` (dynamo), quiet, then the metadata is added by the caller."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    quiet = contextlib.ExitStack()
    quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
    quiet.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")  # the exporter's own deprecation notices
    with quiet:
        program = torch.onnx.export(
            module, args, input_names=input_names, output_names=output_names,
            dynamic_shapes=dynamic_shapes, opset_version=OPSET, dynamo=True, optimize=True,
            verbose=False,
        )  # fmt: skip
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)
    return program


def _save(program, path, spec):
    onnx = require_onnx("onnx", "the ONNX export")
    model = program.model_proto
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(spec)
    onnx.save(model, path)


def export_onnx(model, chunk_ms, out, verify_chunks=50):
    """Exports a streaming model for one chunk size; returns the JSON contract (a dict).

    Arguments
    ---------
    model : StreamingExtractor or TargetSpeakerExtraction
        A streaming model, or a pretrained interface holding one (its class names are kept).
    chunk_ms : float
        Chunk length; rounded to a whole number of filterbank hops (at least one).
    out : str
        Path of the chunk graph (``.onnx``); the clue graph and the JSON go beside it.
    verify_chunks : int
        Chunks of noise run through ONNX Runtime and PyTorch after the export; a difference
        over 1e-3 raises (0: no check). Its largest difference is ``verified_max_abs_diff``.

    Example: see :class:`~speechbrain_crossmamba.inference.onnx_stream.OnnxStreamingExtractor`.
    """
    for name in ("onnxscript", "onnx"):
        require_onnx(name, "the ONNX export")
    classes = None
    if hasattr(model, "streaming_extractor"):
        classes = model.hparams.__dict__.get("classes")
        model = model.streaming_extractor
    if not hasattr(model, "init_state") or not hasattr(model.masknet, "forward_chunk"):
        raise ValueError(f"{type(model).__name__} is not a streaming model; export a StreamingExtractor")
    reference = copy.deepcopy(model).cpu().eval()  # the caller's model is left as it is
    model = copy.deepcopy(reference)
    for mixer in (m for m in model.modules() if hasattr(m, "scan_backend")):
        mixer.scan_backend = mixer.conv_backend = "torch"  # plain operators, no custom kernels
    rate, hop = model.sample_rate, model.stride
    chunk = max(1, round(chunk_ms * rate / 1000 / hop)) * hop
    graph, clue_graph = ChunkGraph(model, chunk).eval(), ClueGraph(model.clue_encoder).eval()
    paths = export_paths(out)
    os.makedirs(os.path.dirname(os.path.abspath(paths["chunk"])), exist_ok=True)
    with torch.no_grad():
        clue_in = clue_graph.example(rate)
        clue = clue_graph(clue_in)
        state = graph.initial_state()
        args = (torch.zeros(1, chunk), clue, *state.values())
        names_in = ["chunk", "clue", *state]
        names_out = ["out", *(n + ".next" for n in state)]
        chunk_program = _export(graph, args, names_in, names_out)
        dynamic = None
        if clue_graph.kind == "enrollment":
            dynamic = ({1: torch.export.Dim("samples", min=model.kernel)},)
        clue_program = _export(clue_graph, (clue_in,), [clue_graph.kind], ["clue"], dynamic)
    spec = {
        "format": "speechbrain-crossmamba streaming ONNX, version 1",
        "sample_rate": rate,
        "chunk_samples": chunk,
        "chunk_ms": 1000 * chunk / rate,
        "hop_samples": hop,
        "output_delay_samples": graph.overlap,
        "chunk_graph": os.path.basename(paths["chunk"]),
        "clue_graph": os.path.basename(paths["clue"]),
        "clue": _clue_spec(clue_graph, clue.shape[1], classes, rate),
        "decoder": type(model.masknet.layers[0]).__name__,
        "inputs": [_tensor_spec(n, t) for n, t in zip(names_in, args)],
        "outputs": [_tensor_spec(n, t) for n, t in zip(names_out, (args[0], *args[2:]))],
        "state": [{"input": n, "output": n + ".next", "init": "zeros"} for n in state],
    }
    _save(chunk_program, paths["chunk"], spec)
    _save(clue_program, paths["clue"], spec)
    with open(paths["json"], "w") as f:
        json.dump(spec, f, indent=1)
    if verify_chunks:
        spec["verified_max_abs_diff"] = verify(reference, paths["json"], clue_in, verify_chunks)
    return spec


def export_paths(out):
    """The chunk graph, clue graph and JSON that :func:`export_onnx` writes for ``out``.

    Example
    -------
    >>> export_paths("deploy/model.onnx")
    {'chunk': 'deploy/model.onnx', 'clue': 'deploy/model.clue.onnx', 'json': 'deploy/model.json'}
    """
    base = out[:-5] if out.endswith(".onnx") else out
    return {"chunk": base + ".onnx", "clue": base + ".clue.onnx", "json": base + ".json"}


def _tensor_spec(name, tensor):
    dtype = {torch.float32: "float32", torch.int64: "int64", torch.bool: "bool"}[tensor.dtype]
    return {"name": name, "shape": list(tensor.shape), "dtype": dtype}


def _clue_spec(clue_graph, size, classes, rate):
    spec = {"input": clue_graph.kind, "size": size}
    if clue_graph.kind == "labels":
        spec["num_classes"] = clue_graph.encoder.num_classes
        spec["classes"] = list(classes) if classes else None
    elif clue_graph.kind == "enrollment":
        spec["min_samples"] = round(clue_graph.encoder.min_seconds * rate)
    else:
        spec["d_in"] = clue_graph.encoder.d_in
    return spec


def verify(model, json_path, clue_input, chunks):
    """Streams ``chunks`` chunks of noise through ONNX Runtime and PyTorch; returns the largest
    difference of their outputs, and raises a ``RuntimeError`` if it is over 1e-3."""
    runner = OnnxStreamingExtractor(json_path)
    g = torch.Generator().manual_seed(0)
    mix = 0.3 * torch.randn(1, chunks * runner.chunk_samples, generator=g)
    worst = 0.0
    with torch.no_grad():
        ref_state, state = model.init_state(clue_input), runner.init_state(clue_input)
        for piece in mix.split(runner.chunk_samples, dim=1):
            ref, ref_state = model.forward_chunk(piece, ref_state)
            got, state = runner.forward_chunk(piece, state)
            if ref.shape[1]:
                worst = max(worst, float((got - ref).abs().max()))
    if worst > 1e-3:
        raise RuntimeError(f"the exported graph differs from PyTorch by {worst:.2e} (over 1e-3)")
    return worst
