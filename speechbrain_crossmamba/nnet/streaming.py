"""Causal layers with an explicit, fixed-size streaming state (the streaming host's parts).

Every layer here has three entry points:

- ``forward(...)``: the whole sequence at once (training, offline use);
- ``init_state(batch_size, device)``: the state before the first frame;
- ``forward_chunk(..., state, mask=None) -> (output, new state)``: the next chunk of a stream.
  Chunks of any lengths, fed in order, give the output of ``forward`` on the whole sequence.
  Frames where ``mask`` [B, l] is False are inert: they leave the state as it would be had the
  stream started after them (a fixed-shape graph that always takes ``l`` frames uses it for
  the frames before the stream's first sample).

:class:`CausalConvStack` is Waveformer's dilated causal convolution encoder. The decoder layers
update a query sequence ``q`` (the clue ⊙ the encoder output) from the encoder output ``mem``:
:class:`CausalCrossMambaLayer` (C from ``q``; x, z, Δ, B from ``mem``; state of fixed size) and
:class:`CausalCrossAttentionLayer`, the baseline (query ``q``, key and value ``mem``), whose state
is the key/value cache: it grows with the stream unless a ``context`` window bounds it. They
live in :mod:`.causal_decoder` and are re-exported here, with :func:`window_mask`.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechbrain_crossmamba.nnet.causal_decoder import (  # noqa: F401
    CausalCrossAttentionLayer,
    CausalCrossMambaLayer,
    window_mask,
)


def state_numel(state):
    """Number of tensor elements in a (nested) streaming state: its size.

    Arguments
    ---------
    state : torch.Tensor, dict, list or tuple
        The state; other leaves count 0.

    Returns
    -------
    int
        The number of elements.

    Example
    -------
    >>> state_numel(
    ...     {"a": torch.zeros(2, 3), "b": [torch.zeros(4), (torch.zeros(1), 7)]}
    ... )
    11
    """
    if torch.is_tensor(state):
        return state.numel()
    if isinstance(state, dict):
        return sum(state_numel(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_numel(v) for v in state)
    return 0


class CausalConvStack(nn.Module):
    """Dilated causal convolutions with residuals, Waveformer's encoder: ``[B, C, L] -> [B, C, L]``.

    Layer ``i``: ``x + W_pw · ReLU(LN(DWConv_k,2^i(x)))``: a depthwise conv of kernel ``k`` and
    dilation ``2^i`` that sees only past frames, a per-frame LayerNorm (causal, unlike a global
    norm), a ReLU and a pointwise conv. The receptive field is ``1 + (k - 1)(2^layers - 1)``
    frames; the state is each layer's last ``(k - 1) · 2^i`` input frames.

    Arguments
    ---------
    channels : int
        Channels C.
    num_layers : int
        Layers; dilations 1, 2, 4, ..., 2^(num_layers - 1).
    kernel_size : int
        Kernel of the dilated convs.

    Example
    -------
    >>> stack = CausalConvStack(8, num_layers=3)
    >>> x = torch.randn(2, 8, 40)
    >>> state = stack.init_state(2)
    >>> a, state = stack.forward_chunk(x[..., :13], state)
    >>> b, state = stack.forward_chunk(x[..., 13:], state)
    >>> torch.allclose(torch.cat([a, b], -1), stack(x), atol=1e-5)
    True
    """

    def __init__(self, channels, num_layers=8, kernel_size=3):
        super().__init__()
        self.channels = channels
        self.context = [(kernel_size - 1) * 2**i for i in range(num_layers)]
        self.convs = nn.ModuleList(
            nn.Conv1d(
                channels, channels, kernel_size, dilation=2**i, groups=channels
            )
            for i in range(num_layers)
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(channels) for _ in range(num_layers)
        )
        self.pointwise = nn.ModuleList(
            nn.Conv1d(channels, channels, 1) for _ in range(num_layers)
        )

    def _residual(self, i, y):
        y = self.norms[i](y.transpose(1, 2)).transpose(1, 2)
        return self.pointwise[i](F.relu(y))

    def forward(self, x):
        """Runs the stack; output frame t depends on input frames <= t only.

        Arguments
        ---------
        x : torch.Tensor
            [B, C, L].

        Returns
        -------
        torch.Tensor
            [B, C, L].
        """
        for i, conv in enumerate(self.convs):
            x = x + self._residual(i, conv(F.pad(x, (self.context[i], 0))))
        return x

    def init_state(self, batch_size, device=None):
        """Zero state: one history per layer.

        Arguments
        ---------
        batch_size : int
            Streams in the batch.
        device : torch.device, optional
            Where the state lives.

        Returns
        -------
        list of torch.Tensor
            [B, (k - 1) · 2^i, C] per layer (time-major).
        """
        return [
            torch.zeros(batch_size, p, self.channels, device=device)
            for p in self.context
        ]

    def forward_chunk(self, x, state, mask=None):
        """The next chunk of a stream.

        The chunk runs time-major ([B, l, C]: per-frame norms and pointwise convs as matrix
        products, no transposes), which made the exported chunk graph faster than channel-major
        (docs/streaming.md, "What it took to make the graph fast").

        Arguments
        ---------
        x : torch.Tensor
            The chunk [B, C, l].
        state : list of torch.Tensor
            From :meth:`init_state` or the previous chunk.
        mask : torch.Tensor, optional
            [B, l] bool (False: inert); may only mark frames before every valid one: they are
            zeroed at every layer, and so enter the histories as the zeros of the initial state.

        Returns
        -------
        tuple
            Output [B, C, l] and the new state.
        """
        keep = None if mask is None else mask[:, :, None].to(x.dtype)
        h, new_state = x.transpose(1, 2), []
        for i, conv in enumerate(self.convs):
            h = h if keep is None else h * keep
            full = torch.cat(
                [state[i].to(h.dtype), h], dim=1
            )  # [B, history + l, C]
            d, length = conv.dilation[0], h.shape[1]
            w = conv.weight[:, 0]  # [C, k]
            y = full[:, :length] * w[:, 0]
            for j in range(1, w.shape[1]):
                y = y.addcmul(full[:, j * d : j * d + length], w[:, j])
            y = F.relu(self.norms[i](y + conv.bias))
            h = h + F.linear(
                y, self.pointwise[i].weight[:, :, 0], self.pointwise[i].bias
            )
            new_state.append(full[:, full.shape[1] - self.context[i] :])
        h = h if keep is None else h * keep
        return h.transpose(1, 2), new_state
