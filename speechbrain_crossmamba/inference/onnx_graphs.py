"""The modules :func:`~speechbrain_crossmamba.inference.onnx_export.export_onnx` traces to ONNX.

- :class:`ChunkGraph`: one chunk of a stream of a ``StreamingExtractor`` as a function of
  tensors only, ``(chunk [1, C], clue [1, D], *state) -> (out [1, C], *next state)``, every
  input and output of a fixed shape;
- :class:`ClueGraph`: the traceable part of a label, enrollment or vector clue encoder,
  clue input -> clue vector [1, D].

Both are re-exported by :mod:`.onnx_export`.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain_crossmamba.nnet.clue import (
    EnrollmentEncoder,
    LabelEncoder,
    VectorClue,
)


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
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/streaming_tse.yaml"),
    ...     {"N": 8, "N_encoder": 8, "encoder_layers": 2, "decoder_layers": 1},
    ... )
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
            raise ValueError(
                f"cannot export: the filterbank kernel {kernel} is not a multiple of its hop {hop}"
            )
        if chunk_samples < hop or chunk_samples % hop:
            raise ValueError(
                f"a chunk must be a positive multiple of the hop ({hop} samples), got {chunk_samples}"
            )
        self.chunk, self.overlap = chunk_samples, kernel - hop
        self.frames, self.pad_frames = (
            chunk_samples // hop,
            (kernel - hop) // hop,
        )
        masknet = extractor.masknet.init_state(1, fixed=True)
        self.names = ["buffer", "tail", "frames"] + [
            f"encoder{i}" for i in range(len(masknet["encoder"]))
        ]
        for i, (layer, state) in enumerate(
            zip(extractor.masknet.layers, masknet["layers"])
        ):
            self.names += [
                f"layer{i}.{name}" for name in layer.state_names[: len(state)]
            ]
        self._layer_sizes = [len(state) for state in masknet["layers"]]

    def initial_state(self):
        """The state before the first sample, by name, in the graph's input order (all zeros).

        Returns
        -------
        dict
            ``name -> tensor``, in the order of :attr:`names`.
        """
        masknet = self.extractor.masknet.init_state(1, fixed=True)
        zeros = torch.zeros(1, self.overlap)
        flat = [
            zeros,
            zeros.clone(),
            torch.zeros(1, dtype=torch.long),
            *masknet["encoder"],
        ]
        flat += [t for state in masknet["layers"] for t in state]
        return dict(zip(self.names, flat))

    def forward(self, chunk, clue, *state):
        """Runs one chunk.

        Arguments
        ---------
        chunk : torch.Tensor
            The next ``[1, chunk_samples]`` samples.
        clue : torch.Tensor
            The encoded clue ``[1, D]``.
        *state : torch.Tensor
            The state tensors, in the order of :attr:`names`.

        Returns
        -------
        tuple of torch.Tensor
            The output samples ``[1, chunk_samples]``, then the next state, in the same order.
        """
        buffer, tail, frames = state[:3]
        n_enc = len(self.extractor.masknet.encoder.context)
        layers, rest = [], list(state[3 + n_enc :])
        for size in self._layer_sizes:
            layers.append(tuple(rest[:size]))
            rest = rest[size:]
        window = torch.cat([buffer, chunk], dim=1)
        index = frames + torch.arange(
            self.frames, device=chunk.device
        )  # frames since the start
        valid = (index >= self.pad_frames)[
            None
        ]  # the first call's first frames precede it
        inner = {"clue": clue, "tail": tail, "frames": 0,
                 "masknet": {"encoder": list(state[3 : 3 + n_enc]), "layers": layers}}  # fmt: skip
        out = self.extractor._frames(window, inner, valid)
        new = [window[:, window.shape[1] - self.overlap :], inner["tail"],
               torch.clamp(frames + self.frames, max=self.pad_frames)]  # fmt: skip
        new += inner["masknet"]["encoder"] + [
            t for s in inner["masknet"]["layers"] for t in s
        ]
        return (out, *new)


class ClueGraph(nn.Module):
    """The clue encoder's traceable part: label multi-hot, enrollment or vector -> clue [1, D].

    The checks of the clue encoders (known class, enrollment length, silence, finite values)
    are done by the runner before it calls the graph.

    Arguments
    ---------
    clue_encoder : LabelEncoder, EnrollmentEncoder or VectorClue
        The clue encoder of the streaming model.
    """

    KINDS = {
        LabelEncoder: "labels",
        EnrollmentEncoder: "enrollment",
        VectorClue: "vector",
    }

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
        """Encodes a clue.

        Arguments
        ---------
        x : torch.Tensor
            ``[1, K]`` multi-hot, ``[1, T]`` enrollment or ``[1, d_in]`` vector.

        Returns
        -------
        torch.Tensor
            The clue ``[1, D]``.
        """
        return self.encoder.embed(x)

    def example(self, sample_rate):
        """An input of the right shape: one class, 1 s of enrollment, or a vector.

        Arguments
        ---------
        sample_rate : int
            Sampling rate of the model (the enrollment's length).

        Returns
        -------
        torch.Tensor
            A random input of batch 1.
        """
        if self.kind == "labels":
            return torch.nn.functional.one_hot(
                torch.tensor([0]), self.encoder.num_classes
            ).float()
        if self.kind == "enrollment":
            return 0.1 * torch.randn(1, sample_rate)
        return torch.randn(1, self.encoder.d_in)
