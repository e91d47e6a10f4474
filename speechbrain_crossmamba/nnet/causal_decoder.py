"""The causal decoder layers of the streaming host, with an explicit streaming state.

A decoder layer updates a query sequence ``q`` (the clue ⊙ the encoder output) from the
encoder output ``mem``, pre-norm: ``q + fuse(norm_q(q), norm_mem(mem))``, then an optional
feed-forward. Two fusions:

- :class:`CausalCrossMambaLayer`: C from ``q``; x, z, Δ, B from ``mem``; a state of fixed size;
- :class:`CausalCrossAttentionLayer`, the baseline (query ``q``, key and value ``mem``), whose
  state is the key/value cache: it grows with the stream unless a ``context`` window bounds it.

Both have the entry points of every streaming layer (``forward``, ``init_state``,
``forward_chunk``; see :mod:`.streaming`, which re-exports them).

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechbrain.nnet.attention import PositionalwiseFeedForward
from speechbrain_crossmamba.nnet.cross_mamba import CrossMambaMixer


class _CausalDecoderLayer(nn.Module):
    """Pre-norm decoder layer: ``q + fuse(norm_q(q), norm_mem(mem))``, then ``q + FFN(norm(q))``.

    Subclasses give ``_fuse(q, mem)``, ``_fuse_chunk(q, mem, state, mask)`` and ``init_state``.
    """

    norm_class = nn.LayerNorm

    def __init__(self, d_model, d_ffn=0, dropout=0.0):
        super().__init__()
        self.d_model = d_model
        self.norm_q, self.norm_mem = (
            self.norm_class(d_model),
            self.norm_class(d_model),
        )
        self.ffn = None
        if d_ffn:
            self.norm_ffn = self.norm_class(d_model)
            self.ffn = PositionalwiseFeedForward(
                d_ffn, input_size=d_model, dropout=dropout
            )

    def _feed_forward(self, q):
        return q if self.ffn is None else q + self.ffn(self.norm_ffn(q))

    def forward(self, q, mem):
        """Applies the layer to whole sequences.

        Arguments
        ---------
        q, mem : torch.Tensor
            Queries and memory (encoder output), both [B, L, d_model].

        Returns
        -------
        torch.Tensor
            The new queries [B, L, d_model].
        """
        return self._feed_forward(
            q + self._fuse(self.norm_q(q), self.norm_mem(mem))
        )

    def forward_chunk(self, q, mem, state, mask=None):
        """The next chunk of a stream.

        Arguments
        ---------
        q, mem : torch.Tensor
            The chunk's queries and memory, [B, l, d_model].
        state : object
            From ``init_state`` or the previous chunk.
        mask : torch.Tensor, optional
            [B, l] bool; False frames do not change the state.

        Returns
        -------
        tuple
            The new queries [B, l, d_model] and the new state.
        """
        fused, state = self._fuse_chunk(
            self.norm_q(q), self.norm_mem(mem), state, mask
        )
        return self._feed_forward(q + fused), state


class CausalCrossMambaLayer(_CausalDecoderLayer):
    """Unidirectional CrossMamba decoder layer: C from the queries; x, z, Δ, B from the memory.

    The state is the mixer's (conv history, SSM state): fixed in size, so a chunk costs the
    same however long the stream has run.

    Arguments
    ---------
    d_model : int
        Size of queries and memory.
    d_ffn : int
        Feed-forward size after the mixer; 0 for none.
    dropout : float
        Feed-forward dropout.
    **mixer_kwargs
        Passed to :class:`~speechbrain_crossmamba.nnet.cross_mamba.CrossMambaMixer`
        (``d_state``, ``d_conv``, ``expand``, ``scan_backend``, ...).

    Example
    -------
    >>> layer = CausalCrossMambaLayer(16, d_ffn=32, d_state=4)
    >>> q, mem = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    >>> state = layer.init_state(2)
    >>> a, state = layer.forward_chunk(q[:, :11], mem[:, :11], state)
    >>> b, state = layer.forward_chunk(q[:, 11:], mem[:, 11:], state)
    >>> torch.allclose(torch.cat([a, b], 1), layer(q, mem), atol=1e-5)
    True
    """

    norm_class = nn.RMSNorm
    state_names = ("conv", "ssm")  # of the state's tensors (ONNX export)

    def __init__(self, d_model, d_ffn=0, dropout=0.0, **mixer_kwargs):
        super().__init__(d_model, d_ffn, dropout)
        self.mixer = CrossMambaMixer(d_model, d_clue=d_model, **mixer_kwargs)

    def _fuse(self, q, mem):
        return self.mixer(mem, q)

    def _fuse_chunk(self, q, mem, state, mask=None):
        return self.mixer.forward_chunk(mem, q, state, mask)

    def init_state(self, batch_size, device=None, fixed=True):
        """Zero (conv history, SSM state) of the mixer: always of a fixed size.

        Arguments
        ---------
        batch_size : int
            Streams in the batch.
        device : torch.device, optional
            Where the state lives.
        fixed : bool
            Ignored (the state is always fixed).

        Returns
        -------
        tuple of torch.Tensor
            See :meth:`~speechbrain_crossmamba.nnet.mamba.MambaMixer.init_state`.
        """
        return self.mixer.init_state(batch_size, device)


def window_mask(num_queries, num_keys, context, device=None):
    """Which keys each query may see: the last ``num_queries`` of ``num_keys`` frames are the
    queries; query ``i`` sees the keys at or before its own frame and, with ``context``, only
    the last ``context`` of them.

    Arguments
    ---------
    num_queries, num_keys : int
        Frames of queries and keys.
    context : int or None
        Keys a query sees (its own included); None: all before it.
    device : torch.device, optional
        Where the mask lives.

    Returns
    -------
    torch.Tensor
        Boolean [num_queries, num_keys] (True = attend).

    Example
    -------
    >>> window_mask(2, 4, context=2).int()
    tensor([[0, 1, 1, 0],
            [0, 0, 1, 1]], dtype=torch.int32)
    """
    offset = num_keys - num_queries
    i = torch.arange(num_queries, device=device)[:, None] + offset
    j = torch.arange(num_keys, device=device)[None, :]
    allowed = j <= i
    if context is not None:
        allowed &= j > i - context
    return allowed


class CausalCrossAttentionLayer(_CausalDecoderLayer):
    """The baseline: causal multi-head cross-attention, query from ``q``, key/value from ``mem``.

    Query frame t attends to memory frames ``t - context < s <= t`` (all ``s <= t`` when
    ``context`` is None). The streaming state is the cache of projected keys and values: it
    holds the whole past without a window, so a chunk's cost grows with the stream, and at most
    ``context - 1`` frames with one. With ``init_state(fixed=True)`` (a window is needed) the
    cache always holds ``context - 1`` frames, with a mask of those that are real: the state
    of a fixed-shape graph (ONNX).

    Arguments
    ---------
    d_model : int
        Size of queries and memory.
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward size after the attention; 0 for none.
    dropout : float
        Dropout of the attention weights and the feed-forward.
    context : int, optional
        Frames a query sees (its own included); None: the whole past.

    Example
    -------
    >>> layer = CausalCrossAttentionLayer(16, nhead=4, context=8)
    >>> q, mem = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    >>> layer(q, mem).shape
    torch.Size([2, 30, 16])
    >>> out, state = layer.forward_chunk(q, mem, layer.init_state(2))
    >>> state[
    ...     0
    ... ].shape  # the key cache [B, heads, context - 1 frames, d_model / heads]
    torch.Size([2, 4, 7, 4])
    >>> fixed = layer.init_state(
    ...     2, fixed=True
    ... )  # (keys, values, which cache frames are real)
    >>> a, fixed = layer.forward_chunk(q[:, :5], mem[:, :5], fixed)
    >>> b, fixed = layer.forward_chunk(q[:, 5:], mem[:, 5:], fixed)
    >>> torch.allclose(torch.cat([a, b], 1), out, atol=1e-5), fixed[2].shape
    (True, torch.Size([2, 7]))
    """

    state_names = (
        "keys",
        "values",
        "valid",
    )  # of the state's tensors (ONNX export)

    def __init__(self, d_model, nhead=4, d_ffn=0, dropout=0.0, context=None):
        super().__init__(d_model, d_ffn, dropout)
        if d_model % nhead:
            raise ValueError(
                f"d_model={d_model} is not divisible by nhead={nhead}"
            )
        if context is not None and context < 1:
            raise ValueError(
                f"context must be a positive number of frames or None, got {context}"
            )
        self.nhead, self.context, self.dropout = nhead, context, dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x):
        B, L, _ = x.shape
        return x.reshape(B, L, self.nhead, -1).transpose(1, 2)

    def _attend(self, q, k, v, key_valid=None):
        mask = window_mask(q.shape[1], k.shape[2], self.context, q.device)
        if (
            key_valid is not None
        ):  # [B, keys]; a query always sees its own frame (no empty row)
            own = torch.eye(q.shape[1], dtype=torch.bool, device=q.device)
            own = F.pad(own, (k.shape[2] - q.shape[1], 0))
            mask = mask & (key_valid[:, None, None, :] | own)
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), k, v, mask, dropout_p=p
        )
        return self.out_proj(out.transpose(1, 2).reshape(q.shape))

    def _keys_values(self, mem):
        return [self._heads(t) for t in self.kv_proj(mem).chunk(2, dim=-1)]

    def _fuse(self, q, mem):
        return self._attend(q, *self._keys_values(mem))

    def _fuse_chunk(self, q, mem, state, mask=None):
        k, v = self._keys_values(mem)
        k, v = torch.cat([state[0], k], dim=2), torch.cat([state[1], v], dim=2)
        if len(state) == 3:  # fixed size: (keys, values, which are real)
            new = (
                torch.ones_like(q[..., 0], dtype=torch.bool)
                if mask is None
                else mask
            )
            valid = torch.cat([state[2], new], dim=1)
            K = state[2].shape[1]
            out = self._attend(q, k, v, valid)
            keep = slice(k.shape[2] - K, None)  # the last K frames
            return out, (k[:, :, keep], v[:, :, keep], valid[:, keep])
        if mask is not None:
            raise ValueError(
                "a frame mask needs the fixed-size state: init_state(..., fixed=True)"
            )
        out = self._attend(q, k, v)
        if self.context is not None:  # keep what the next frames can still see
            start = k.shape[2] - min(k.shape[2], self.context - 1)
            k, v = k[:, :, start:], v[:, :, start:]
        return out, (k, v)

    def init_state(self, batch_size, device=None, fixed=False):
        """Empty key and value caches [B, nhead, 0, d_model / nhead].

        Arguments
        ---------
        batch_size : int
            Streams in the batch.
        device : torch.device, optional
            Where the state lives.
        fixed : bool
            Caches of ``context - 1`` zero frames and their mask [B, context - 1], all False
            (not real), for a fixed-shape graph.

        Returns
        -------
        tuple of torch.Tensor
            ``(keys, values)``, or ``(keys, values, valid)`` with ``fixed``.
        """
        frames = 0
        if fixed:
            if self.context is None:
                raise ValueError(
                    "a fixed-size attention state needs a context window: the cache of the "
                    "whole past grows with the stream (set context_frames)"
                )
            frames = self.context - 1
        empty = torch.zeros(
            batch_size,
            self.nhead,
            frames,
            self.d_model // self.nhead,
            device=device,
        )
        if not fixed:
            return empty, empty.clone()
        return (
            empty,
            empty.clone(),
            torch.zeros(batch_size, frames, dtype=torch.bool, device=device),
        )
