"""Streaming extraction with ONNX Runtime: the graphs of :func:`~.onnx_export.export_onnx`.

:class:`OnnxStreamingExtractor` reads the JSON contract (or the graph's metadata), encodes the
clue once with the clue graph, and runs the chunk graph on each chunk, feeding every state
output back as the next call's input. It has the interface of
:class:`~speechbrain_crossmamba.lobes.models.streaming_tse.StreamingExtractor` that
:func:`~speechbrain_crossmamba.inference.streaming.simulate_stream` drives (``init_state``,
``forward_chunk``, ``flush``), so ``speechbrain-crossmamba stream-onnx`` prints the same
latency percentiles as ``stream``, and its outputs equal the PyTorch model's chunk for chunk.

It needs the ``[onnx]`` extra (``onnxruntime``); without it, a one-line error names it.

Authors
 * speechbrain-crossmamba contributors
"""

import importlib
import json
import os

import numpy as np
import torch

METADATA_KEY = "speechbrain_crossmamba"
EXTRA = "pip install 'speechbrain-crossmamba[onnx]'"


def require_onnx(module, purpose):
    """Imports ``module``, or raises a one-line ``RuntimeError`` naming the extra to install.

    Arguments
    ---------
    module : str
        The module to import.
    purpose : str
        What needs it, used in the error message.

    Returns
    -------
    module
        The imported module.

    Example
    -------
    >>> require_onnx("no_such_onnx_module", "the ONNX runner")
    Traceback (most recent call last):
     ...
    RuntimeError: the ONNX runner needs no_such_onnx_module, from the optional [onnx] extra: pip install 'speechbrain-crossmamba[onnx]'
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"{purpose} needs {module}, from the optional [onnx] extra: {EXTRA}"
        ) from None


def load_spec(path):
    """The JSON contract of an export: from ``model.json``, or from the metadata of ``model.onnx``.

    Arguments
    ---------
    path : str
        ``model.json`` or ``model.onnx``.

    Returns
    -------
    tuple
        The contract (a dict) and the folder of the graphs.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no exported model at {path}")
    folder = os.path.dirname(os.path.abspath(path))
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f), folder
    onnx = require_onnx("onnx", "reading an ONNX model")
    meta = {
        p.key: p.value
        for p in onnx.load(path, load_external_data=False).metadata_props
    }
    if METADATA_KEY not in meta:
        raise ValueError(
            f"{path} was not exported by speechbrain-crossmamba export-onnx (no metadata)"
        )
    return json.loads(meta[METADATA_KEY]), folder


class OnnxStreamingExtractor:
    """Runs an exported streaming model with ONNX Runtime, chunk by chunk.

    Arguments
    ---------
    path : str
        ``model.onnx`` or ``model.json`` written by :func:`~.onnx_export.export_onnx`.
    threads : int, optional
        Intra-op threads of ONNX Runtime (default: its own choice, one per core).

    Example
    -------
    >>> import tempfile
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from speechbrain_crossmamba.inference.onnx_export import export_onnx
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/streaming_tse.yaml"),
    ...     {"N": 8, "N_encoder": 8, "encoder_layers": 2, "decoder_layers": 1},
    ... )
    >>> model, folder = hp["extractor"].eval(), tempfile.mkdtemp()
    >>> spec = export_onnx(model, 8, folder + "/model.onnx")
    >>> spec["chunk_samples"], [s["input"] for s in spec["state"]][:4]
    (64, ['buffer', 'tail', 'frames', 'encoder0'])
    >>> runner = OnnxStreamingExtractor(folder + "/model.onnx")
    >>> mix, label = torch.randn(1, 640), torch.tensor([2])
    >>> state, ref_state = runner.init_state(label), model.init_state(label)
    >>> out, state = runner.forward_chunk(mix, state)  # ten chunks
    >>> with torch.no_grad():
    ...     ref, ref_state = model.forward_chunk(mix, ref_state)
    >>> out.shape == ref.shape, bool((out - ref).abs().max() < 1e-4)
    (True, True)
    """

    def __init__(self, path, threads=None):
        ort = require_onnx("onnxruntime", "the ONNX runner")
        self.spec, folder = load_spec(path)
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry(
            "session.set_denormal_as_zero", "1"
        )  # decaying SSM states
        if threads:
            opts.intra_op_num_threads = threads
        cpu = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(
            os.path.join(folder, self.spec["chunk_graph"]), opts, providers=cpu
        )
        self.clue_session = ort.InferenceSession(
            os.path.join(folder, self.spec["clue_graph"]), opts, providers=cpu
        )
        expected = [t["name"] for t in self.spec["inputs"]]
        found = [i.name for i in self.session.get_inputs()]
        if found != expected:
            raise RuntimeError(
                f"the chunk graph's inputs {found} are not those of its contract {expected}"
            )
        self.sample_rate = self.spec["sample_rate"]
        self.chunk_samples = self.spec["chunk_samples"]
        self.latency_samples = self.spec[
            "output_delay_samples"
        ]  # the filterbank overlap
        self.clue_kind = self.spec["clue"]["input"]
        self._state = self.spec["inputs"][2:]
        self._outputs = [t["name"] for t in self.spec["outputs"]]

    def labels_to_clue(self, names):
        """Class names to the multi-hot clue.

        Arguments
        ---------
        names : list of str or str
            Class names (a list, or one space-separated string).

        Returns
        -------
        numpy.ndarray
            ``[1, K]`` float32 multi-hot.
        """
        classes = self.spec["clue"].get("classes")
        if self.clue_kind != "labels":
            raise ValueError(
                f"this model takes {self.clue_kind!r} as its clue, not class labels"
            )
        if not classes:
            raise ValueError(
                "this export has no class names; pass class indices"
            )
        names = names.split() if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in classes]
        if unknown or not names:
            raise ValueError(
                f"unknown class name(s) {unknown}; known: {', '.join(classes)}"
            )
        hot = np.zeros((1, len(classes)), dtype=np.float32)
        hot[0, [classes.index(n) for n in names]] = 1.0
        return hot

    def encode_clue(self, clue):
        """Checks a clue of batch one and runs the clue graph on it.

        Arguments
        ---------
        clue : torch.Tensor or numpy.ndarray
            Class indices [1] or multi-hot [1, K]; enrollment [1, T]; vector [1, d].

        Returns
        -------
        numpy.ndarray
            The clue vector [1, D].
        """
        x = np.asarray(clue.numpy() if torch.is_tensor(clue) else clue)
        spec = self.spec["clue"]
        if (
            self.clue_kind == "labels"
            and x.ndim == 1
            and np.issubdtype(x.dtype, np.integer)
        ):
            if x.shape != (1,) or not 0 <= int(x[0]) < spec["num_classes"]:
                raise ValueError(
                    f"a class index must be one of 0..{spec['num_classes'] - 1}, got {x.tolist()}"
                )
            x = np.eye(spec["num_classes"], dtype=np.float32)[x]
        x = x.astype(np.float32)
        if x.ndim == 1:
            x = x[None]
        size = {
            "labels": spec.get("num_classes"),
            "vector": spec.get("d_in"),
        }.get(self.clue_kind)
        if x.ndim != 2 or x.shape[0] != 1 or (size and x.shape[1] != size):
            raise ValueError(
                f"the {self.clue_kind} clue must be [1, {size or 'samples'}], got {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ValueError(f"the {self.clue_kind} clue holds NaN or Inf")
        if self.clue_kind == "labels" and not (x > 0).any():
            raise ValueError("a multi-hot label has no active class")
        if self.clue_kind == "enrollment":
            if x.shape[1] < spec["min_samples"]:
                raise ValueError(
                    f"enrollment is {x.shape[1] / self.sample_rate:.2f} s long; the minimum is "
                    f"{spec['min_samples'] / self.sample_rate:.2f} s"
                )
            if not np.abs(x).max() > 0:
                raise ValueError(
                    "enrollment is silent (all zeros); it carries no clue"
                )
        return self.clue_session.run(None, {self.clue_kind: x})[0]

    def init_state(self, clue, clue_lengths=None):
        """The state before the first sample: the encoded clue, the graph's zero state, and the
        samples received but not yet run.

        Arguments
        ---------
        clue : torch.Tensor or numpy.ndarray
            The clue of batch one (see :meth:`encode_clue`).
        clue_lengths : None
            Must be None (one whole clue).

        Returns
        -------
        dict
            The state.
        """
        if clue_lengths is not None:
            raise ValueError(
                "the ONNX runner takes one whole clue; clue_lengths must be None"
            )
        graph = {
            t["name"]: np.zeros(t["shape"], dtype=t["dtype"])
            for t in self._state
        }
        return {"clue": self.encode_clue(clue), "graph": graph, "pending": np.zeros((1, 0), np.float32),
                "received": 0, "to_drop": self.latency_samples, "emitted": 0}  # fmt: skip

    def _run(self, chunk, state):
        outs = self.session.run(
            self._outputs,
            {"chunk": chunk, "clue": state["clue"], **state["graph"]},
        )
        state["graph"] = dict(zip(state["graph"], outs[1:]))
        out = outs[0][:, state["to_drop"] :]
        state["to_drop"] = max(0, state["to_drop"] - outs[0].shape[1])
        return out

    def forward_chunk(self, chunk, state):
        """Takes the next samples; the graph runs once per whole chunk of ``chunk_samples``.

        Arguments
        ---------
        chunk : torch.Tensor or numpy.ndarray
            The next samples, [l] or [1, l], any length.
        state : dict
            From :meth:`init_state` or the previous call (left as it was).

        Returns
        -------
        tuple
            The output samples made final by the chunk ([1, l'] torch tensor) and the new
            state.
        """
        x = np.asarray(
            chunk.detach().cpu().numpy() if torch.is_tensor(chunk) else chunk,
            np.float32,
        )
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[0] != 1:
            raise ValueError(
                f"a chunk must be mono [1, samples], got shape {list(x.shape)}"
            )
        if not np.isfinite(x).all():
            raise ValueError("the mixture chunk holds NaN or Inf")
        state = dict(state)
        pending = np.concatenate([state["pending"], x], axis=1)
        state["received"] += x.shape[1]
        C, outs = self.chunk_samples, [np.zeros((1, 0), np.float32)]
        while pending.shape[1] >= C:
            outs.append(self._run(pending[:, :C], state))
            pending = pending[:, C:]
        state["pending"] = pending
        out = np.concatenate(outs, axis=1)
        state["emitted"] += out.shape[1]
        return torch.from_numpy(out), state

    def flush(self, state):
        """Ends the stream: runs zeros after it until every received sample has its output, and
        returns that rest (the whole output then has the input's length). The last hop can
        differ from PyTorch's ``flush``, which stops at the last frame that starts in the input.

        Arguments
        ---------
        state : dict
            The state after the last chunk.

        Returns
        -------
        torch.Tensor
            The last output samples [1, l'].
        """
        state = dict(state)
        if state["received"] == 0:
            raise ValueError(
                "the mixture stream is empty: no samples were given"
            )
        pending, outs = state["pending"], [np.zeros((1, 0), np.float32)]
        C, left = self.chunk_samples, state["received"] - state["emitted"]
        while sum(o.shape[1] for o in outs) < left:
            piece = np.zeros((1, C), np.float32)
            piece[:, : pending.shape[1]] = pending
            pending = np.zeros((1, 0), np.float32)
            outs.append(self._run(piece, state))
        return torch.from_numpy(np.concatenate(outs, axis=1)[:, :left])
