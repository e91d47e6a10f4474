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

The modules that are traced, :class:`ChunkGraph` and :class:`ClueGraph`, are in
:mod:`.onnx_graphs` and re-exported here.

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

from speechbrain_crossmamba.inference.onnx_graphs import (  # noqa: F401
    ChunkGraph,
    ClueGraph,
)
from speechbrain_crossmamba.inference.onnx_stream import (
    METADATA_KEY,
    OnnxStreamingExtractor,
    require_onnx,
)

OPSET = 18


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

    Returns
    -------
    dict
        The JSON contract as written (and ``verified_max_abs_diff`` when verified).

    Example: see :class:`~speechbrain_crossmamba.inference.onnx_stream.OnnxStreamingExtractor`.
    """
    for name in ("onnxscript", "onnx"):
        require_onnx(name, "the ONNX export")
    classes = None
    if hasattr(model, "streaming_extractor"):
        classes = model.hparams.__dict__.get("classes")
        model = model.streaming_extractor
    if not hasattr(model, "init_state") or not hasattr(
        model.masknet, "forward_chunk"
    ):
        raise ValueError(
            f"{type(model).__name__} is not a streaming model; export a StreamingExtractor"
        )
    reference = (
        copy.deepcopy(model).cpu().eval()
    )  # the caller's model is left as it is
    model = copy.deepcopy(reference)
    for mixer in (m for m in model.modules() if hasattr(m, "scan_backend")):
        mixer.scan_backend = mixer.conv_backend = (
            "torch"  # plain operators, no custom kernels
        )
    rate, hop = model.sample_rate, model.stride
    chunk = max(1, round(chunk_ms * rate / 1000 / hop)) * hop
    graph, clue_graph = (
        ChunkGraph(model, chunk).eval(),
        ClueGraph(model.clue_encoder).eval(),
    )
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
        clue_program = _export(
            clue_graph, (clue_in,), [clue_graph.kind], ["clue"], dynamic
        )
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
        "outputs": [
            _tensor_spec(n, t) for n, t in zip(names_out, (args[0], *args[2:]))
        ],
        "state": [
            {"input": n, "output": n + ".next", "init": "zeros"} for n in state
        ],
    }
    _save(chunk_program, paths["chunk"], spec)
    _save(clue_program, paths["clue"], spec)
    with open(paths["json"], "w") as f:
        json.dump(spec, f, indent=1)
    if verify_chunks:
        spec["verified_max_abs_diff"] = verify(
            reference, paths["json"], clue_in, verify_chunks
        )
    return spec


def export_paths(out):
    """The chunk graph, clue graph and JSON that :func:`export_onnx` writes for ``out``.

    Arguments
    ---------
    out : str
        Path of the chunk graph (``.onnx`` optional).

    Returns
    -------
    dict
        ``chunk``, ``clue`` and ``json`` paths.

    Example
    -------
    >>> export_paths("deploy/model.onnx")
    {'chunk': 'deploy/model.onnx', 'clue': 'deploy/model.clue.onnx', 'json': 'deploy/model.json'}
    """
    base = out[:-5] if out.endswith(".onnx") else out
    return {
        "chunk": base + ".onnx",
        "clue": base + ".clue.onnx",
        "json": base + ".json",
    }


def _tensor_spec(name, tensor):
    dtype = {
        torch.float32: "float32",
        torch.int64: "int64",
        torch.bool: "bool",
    }[tensor.dtype]
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
    difference of their outputs, and raises a ``RuntimeError`` if it is over 1e-3.

    Arguments
    ---------
    model : StreamingExtractor
        The PyTorch model that was exported.
    json_path : str
        The export's JSON.
    clue_input : torch.Tensor
        A clue input of batch 1 (see :meth:`ClueGraph.example`).
    chunks : int
        Chunks to stream.

    Returns
    -------
    float
        The largest absolute difference.
    """
    runner = OnnxStreamingExtractor(json_path)
    g = torch.Generator().manual_seed(0)
    mix = 0.3 * torch.randn(1, chunks * runner.chunk_samples, generator=g)
    worst = 0.0
    with torch.no_grad():
        ref_state, state = (
            model.init_state(clue_input),
            runner.init_state(clue_input),
        )
        for piece in mix.split(runner.chunk_samples, dim=1):
            ref, ref_state = model.forward_chunk(piece, ref_state)
            got, state = runner.forward_chunk(piece, state)
            if ref.shape[1]:
                worst = max(worst, float((got - ref).abs().max()))
    if worst > 1e-3:
        raise RuntimeError(
            f"the exported graph differs from PyTorch by {worst:.2e} (over 1e-3)"
        )
    return worst
