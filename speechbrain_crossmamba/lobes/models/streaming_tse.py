"""A causal, streaming target extractor in the Waveformer style (the paper's second host).

Waveformer (Veluri et al., ICASSP 2023) extracts a target sound in real time: a learned
filterbank, a dilated causal convolution encoder, and a Transformer decoder whose query is the
clue embedding ⊙ the encoder output and whose key and value are the encoder output. Here the
decoder is unidirectional CrossMamba (C from the query; x, z, Δ, B from the encoder output), or
for the baseline causal cross-attention with a context window.

:class:`StreamingExtractor` runs offline (``forward``, for training, as every extractor) and in a
stream (:meth:`~StreamingExtractor.extract_stream`), with an explicit state. With the CrossMamba
decoder the state has a fixed size: conv buffers and the SSM state of every layer. The streamed
output equals the offline output. The algorithmic latency is the chunk plus one filterbank
kernel minus one hop (the decoder's overlap-add).

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain_crossmamba.checks import check_finite
from speechbrain_crossmamba.lobes.models.extractor import TargetExtractor
from speechbrain_crossmamba.lobes.models.host_parts import build


class TSECausalModel(nn.Module):
    """Causal mask network: ``(feats [B, N_enc, F], clue [B, C], mask) -> mask [B, N_enc, F]``.

    ``mem = W_in · ConvStack(feats)``; ``q = query(clue, mem)`` (``W·e ⊙ mem_t``); ``q`` goes
    through the decoder layers with ``mem`` as key and value; the mask is ``ReLU(W_out · q)``.
    Every part is causal, so output frame t depends on input frames <= t only.

    Arguments
    ---------
    in_channels : int
        Channels of the filterbank N_enc.
    d_model : int
        Size of the decoder N.
    encoder : CausalConvStack
        The dilated causal conv encoder over the filterbank output.
    layer : nn.Module or factory
        One decoder layer (``CausalCrossMambaLayer`` or ``CausalCrossAttentionLayer``), copied
        ``num_layers`` times.
    num_layers : int
        Decoder layers.
    query : QueryMaker
        Makes the query from a clue vector (``modulate``: Waveformer's ``W·e ⊙ mem``).

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.streaming import (
    ...     CausalConvStack,
    ...     CausalCrossMambaLayer,
    ... )
    >>> from speechbrain_crossmamba.nnet.clue import QueryMaker
    >>> net = TSECausalModel(
    ...     16,
    ...     8,
    ...     CausalConvStack(16, 2),
    ...     CausalCrossMambaLayer(8, d_state=4),
    ...     num_layers=2,
    ...     query=QueryMaker("modulate", d_clue=6, d_model=8),
    ... )
    >>> net(torch.randn(2, 16, 50), torch.randn(2, 6)).shape
    torch.Size([2, 16, 50])
    """

    def __init__(self, in_channels, d_model, encoder, layer, num_layers, query):
        super().__init__()
        self.encoder = encoder
        self.proj_in = nn.Linear(in_channels, d_model)
        self.layers = nn.ModuleList(build(layer) for _ in range(num_layers))
        self.query = query
        self.proj_out = nn.Linear(d_model, in_channels)

    def _mask(self, q):
        return torch.relu(self.proj_out(q)).transpose(1, 2)

    def forward(self, x, clue, mask=None):
        """The mask of a whole signal.

        Arguments
        ---------
        x : torch.Tensor
            Filterbank output [B, N_enc, F].
        clue : torch.Tensor
            Clue vector [B, C].
        mask : torch.Tensor, optional
            Unused: a causal model never lets padding at the end reach a valid frame.

        Returns
        -------
        torch.Tensor
            The mask [B, N_enc, F].
        """
        if clue.dim() != 2:
            raise ValueError(
                "the streaming host takes a vector clue (label, enrollment or embedding), "
                f"got shape {tuple(clue.shape)}"
            )
        mem = self.proj_in(self.encoder(x).transpose(1, 2))
        q = self.query(clue, mem)
        for layer in self.layers:
            q = layer(q, mem)
        return self._mask(q)

    def init_state(self, batch_size, device=None, fixed=False):
        """Zero state: the encoder's conv histories and every decoder layer's state.

        Arguments
        ---------
        batch_size : int
            Streams in the batch.
        device : torch.device, optional
            Where the state lives.
        fixed : bool
            A state of a size that never changes (for a fixed-shape graph).

        Returns
        -------
        dict
            ``encoder`` and ``layers`` states.
        """
        layers = [
            layer.init_state(batch_size, device, fixed=fixed)
            for layer in self.layers
        ]
        return {
            "encoder": self.encoder.init_state(batch_size, device),
            "layers": layers,
        }

    def forward_chunk(self, x, clue, state, frame_mask=None):
        """The next frames of a stream.

        Arguments
        ---------
        x : torch.Tensor
            Filterbank frames [B, N_enc, l].
        clue : torch.Tensor
            Clue vector [B, C].
        state : dict
            From :meth:`init_state` or the previous call.
        frame_mask : torch.Tensor, optional
            [B, l] bool; False frames (only before every valid frame) are inert: the state is
            as if the stream began after them, and their mask is 0.

        Returns
        -------
        tuple
            The mask [B, N_enc, l] and the new state.
        """
        enc, enc_state = self.encoder.forward_chunk(
            x, state["encoder"], frame_mask
        )
        mem = self.proj_in(enc.transpose(1, 2))
        q, layer_states = self.query(clue, mem), []
        for layer, layer_state in zip(self.layers, state["layers"]):
            q, layer_state = layer.forward_chunk(
                q, mem, layer_state, frame_mask
            )
            layer_states.append(layer_state)
        est = self._mask(q)
        if frame_mask is not None:
            est = est * frame_mask[:, None, :].to(est.dtype)
        return est, {"encoder": enc_state, "layers": layer_states}


class StreamingExtractor(TargetExtractor):
    """A :class:`TargetExtractor` with a causal mask network, that can also run in a stream.

    Arguments
    ---------
    encoder, masknet, decoder, clue_encoder, sample_rate
        Those of :class:`TargetExtractor`; ``masknet`` must be causal and streamable
        (:class:`TSECausalModel`), and the clue encoder must give a vector.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain_crossmamba.nnet.clue import LabelEncoder, QueryMaker
    >>> from speechbrain_crossmamba.nnet.streaming import (
    ...     CausalConvStack,
    ...     CausalCrossMambaLayer,
    ... )
    >>> masknet = TSECausalModel(
    ...     16,
    ...     8,
    ...     CausalConvStack(16, 2),
    ...     CausalCrossMambaLayer(8, d_state=4),
    ...     2,
    ...     QueryMaker("modulate", d_clue=8, d_model=8),
    ... )
    >>> model = StreamingExtractor(
    ...     Encoder(16, 16),
    ...     masknet,
    ...     Decoder(16, 1, 16, stride=8, bias=False),
    ...     LabelEncoder(num_classes=5, d_clue=8),
    ... )
    >>> mix, label = torch.randn(1, 1000), torch.tensor([3])
    >>> chunks = mix.split(64, dim=1)  # 8 ms at 8 kHz
    >>> streamed = torch.cat(list(model.extract_stream(chunks, label)), dim=1)
    >>> torch.allclose(streamed, model(mix, label), atol=1e-5)
    True
    """

    def __init__(
        self, encoder, masknet, decoder, clue_encoder, sample_rate=8000
    ):
        super().__init__(encoder, masknet, decoder, clue_encoder, sample_rate)
        if not hasattr(self.masknet, "forward_chunk"):
            raise ValueError(
                f"{type(self.masknet).__name__} cannot stream: the streaming extractor needs a "
                "causal mask network with init_state and forward_chunk (TSECausalModel)"
            )

    @property
    def latency_samples(self):
        """Algorithmic latency beyond the chunk, in samples: the overlap-add of the decoder."""
        return self.kernel - self.stride

    def init_state(self, clue, clue_lengths=None):
        """The state before the first sample: the encoded clue, the mask network's state,
        the input not yet made into frames, and the overlap-add tail of the output.

        Arguments
        ---------
        clue : torch.Tensor
            The clue of the stream, as ``forward`` takes it.
        clue_lengths : torch.Tensor, optional
            Relative lengths of enrollment clues.

        Returns
        -------
        dict
            The state.
        """
        clue = self.encode_clue(clue, clue_lengths)
        if clue.dim() != 2:
            raise ValueError(
                f"the streaming host takes a vector clue, got shape {tuple(clue.shape)}"
            )
        batch, device = clue.shape[0], clue.device
        return {
            "clue": clue,
            "masknet": self.masknet.init_state(batch, device),
            "buffer": torch.zeros(batch, 0, device=device),
            "tail": torch.zeros(
                batch, self.kernel - self.stride, device=device
            ),
            "frames": 0,  # frames made so far
            "received": 0,  # samples received so far
        }

    def _frames(self, segment, state, frame_mask=None):
        """Runs the frames of ``segment`` (a whole number of hops plus the kernel overlap);
        returns the output samples they make final (masked frames add nothing to them)."""
        feats = self.encoder(segment)
        est, masknet_state = self.masknet.forward_chunk(
            feats, state["clue"], state["masknet"], frame_mask
        )
        wav = self.decoder(feats * est).reshape(segment.shape[0], -1)
        overlap = self.kernel - self.stride
        wav = torch.cat(
            [wav[:, :overlap] + state["tail"], wav[:, overlap:]], dim=1
        )
        m = feats.shape[-1]
        state.update(masknet=masknet_state, tail=wav[:, m * self.stride :])
        state["frames"] += m
        return wav[:, : m * self.stride]

    def forward_chunk(self, chunk, state):
        """Takes the next samples of the stream.

        The state passed in is left as it was. Over a stream, the outputs of
        :meth:`forward_chunk` then :meth:`flush` concatenate to ``forward`` of the whole signal.

        Arguments
        ---------
        chunk : torch.Tensor
            The next samples [B, l] (or [l]), floating point.
        state : dict
            From :meth:`init_state` or the previous call.

        Returns
        -------
        tuple
            The output samples made final by the chunk ([B, l'], possibly empty) and the new
            state.
        """
        if not torch.is_tensor(chunk) or not chunk.is_floating_point():
            raise ValueError(
                "a chunk must be a floating-point tensor (scale int16 PCM by 1/32768)"
            )
        chunk = chunk[None] if chunk.dim() == 1 else chunk
        if chunk.dim() != 2 or chunk.shape[0] != state["buffer"].shape[0]:
            raise ValueError(
                f"a chunk must be mono [batch={state['buffer'].shape[0]}, samples], "
                f"got shape {tuple(chunk.shape)}"
            )
        check_finite(chunk, "mixture chunk")
        state = dict(state)  # every entry is replaced, never changed in place
        buffer = torch.cat([state["buffer"], chunk.to(state["buffer"])], dim=1)
        state["received"] += chunk.shape[1]
        m = (
            0
            if buffer.shape[1] < self.kernel
            else (buffer.shape[1] - self.kernel) // self.stride + 1
        )
        out = buffer.new_zeros(buffer.shape[0], 0)
        if m:
            out = self._frames(
                buffer[:, : (m - 1) * self.stride + self.kernel], state
            )
            buffer = buffer[:, m * self.stride :]
        state["buffer"] = buffer
        return out, state

    def flush(self, state):
        """Ends the stream: pads the last frame with zeros, as ``forward`` does, and returns the
        rest of the output, so that the whole output has the input's length.

        Arguments
        ---------
        state : dict
            The state after the last chunk.

        Returns
        -------
        torch.Tensor
            The last output samples [B, l'].
        """
        state, total = dict(state), state["received"]
        if total == 0:
            raise ValueError(
                "the mixture stream is empty: no samples were given"
            )
        emitted = state["frames"] * self.stride
        needed = int(self.frames(total)) - state["frames"]
        out = state["buffer"].new_zeros(state["buffer"].shape[0], 0)
        if needed > 0:
            pad = (
                (needed - 1) * self.stride
                + self.kernel
                - state["buffer"].shape[1]
            )
            out = self._frames(
                torch.nn.functional.pad(state["buffer"], (0, pad)), state
            )
        return torch.cat([out, state["tail"]], dim=1)[:, : total - emitted]

    @torch.no_grad()
    def extract_stream(self, chunk_iterator, clue, clue_lengths=None):
        """Extracts the target from a stream of mixture chunks; yields output chunks.

        Arguments
        ---------
        chunk_iterator : iterable of torch.Tensor
            Mixture chunks [B, l] (or [l]) of any, possibly varying, sizes.
        clue : torch.Tensor
            The clue of the whole stream, as ``forward`` takes it (labels, enrollment, vector).
        clue_lengths : torch.Tensor, optional
            Relative lengths of enrollment clues.

        Yields
        ------
        torch.Tensor
            One output [B, l'] per input chunk: the samples it made final (empty while the
            first frame is incomplete), then the rest at the end. Their concatenation equals
            ``forward`` on the whole signal, up to float rounding.
        """
        state = self.init_state(clue, clue_lengths)
        for chunk in chunk_iterator:
            out, state = self.forward_chunk(chunk, state)
            yield out
        yield self.flush(state)
