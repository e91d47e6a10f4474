"""Mamba layers in SpeechBrain style: the mixer, its residual block, a bidirectional wrapper,
and ``SBMambaBlock``, a drop-in for SpeechBrain's ``SBTransformerBlock``.

The mixer follows the reference formulation (Gu & Dao, 2023): in_proj, a causal depthwise
conv, x_proj, dt_proj with its special initialisation, S4D-real ``A_log``, ``D``, the
``silu(z)`` gate and out_proj. The scan itself is :func:`selective_scan`. The mixer lives in
:mod:`.mamba_mixer` and is re-exported here, with ``MASKED_DELTA``; this module holds the
blocks and stacks built on it.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain.dataio.dataio import length_to_mask
from speechbrain_crossmamba.checks import check_lengths
from speechbrain_crossmamba.nnet.mamba_mixer import (  # noqa: F401
    MASKED_DELTA,
    MambaMixer,
)


def lengths_to_mask(lengths, max_len):
    """Turns SpeechBrain relative lengths (B,) in [0, 1] into a boolean mask (B, max_len).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths (B,).
    max_len : int
        Frames of the mask.

    Returns
    -------
    torch.Tensor or None
        (B, max_len), True on valid frames; None when ``lengths`` is None.

    Example
    -------
    >>> lengths_to_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    if lengths is None:
        return None
    check_lengths(lengths, lengths.shape[0] if lengths.dim() else 0, "padding")
    return length_to_mask(
        torch.round(lengths * max_len), max_len=max_len
    ).bool()


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba block: ``x + mixer(RMSNorm(x))``.

    Arguments
    ---------
    d_model : int
        Feature size.
    norm_epsilon : float
        Epsilon of the RMSNorm.
    **mixer_kwargs
        Passed to the mixer (:class:`MambaMixer`).

    Example
    -------
    >>> block = MambaBlock(d_model=16, d_state=4)
    >>> block(torch.randn(3, 20, 16)).shape
    torch.Size([3, 20, 16])
    """

    mixer_class = MambaMixer

    def __init__(self, d_model, norm_epsilon=1e-5, **mixer_kwargs):
        super().__init__()
        self.norm = nn.RMSNorm(d_model, eps=norm_epsilon)
        self.mixer = self.mixer_class(d_model, **mixer_kwargs)

    def forward(self, x, mask=None):
        """Applies the block.

        Arguments
        ---------
        x : torch.Tensor
            [B, L, d_model].
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, d_model].
        """
        return x + self.mixer(self.norm(x), mask=mask)


class Bidirectional(nn.Module):
    """Runs ``forward_block`` on the sequence and ``backward_block`` on it flipped in time.

    Every positional argument after ``x`` (for example a clue sequence) and the ``mask``
    are flipped along with it, the second output is flipped back, and the two are merged.

    Arguments
    ---------
    forward_block, backward_block : torch.nn.Module
        Two independent blocks, called as ``block(x, *seqs, mask=mask)``.
    merge : str
        ``"sum"`` (as the CrossMamba reference module: each direction adds its own residual,
        so the sum carries the input twice) or ``"mean"`` (the input once; scale-stable
        when many bidirectional layers are stacked).

    Example
    -------
    >>> bi = Bidirectional(MambaBlock(8, d_state=4), MambaBlock(8, d_state=4))
    >>> bi(torch.randn(2, 10, 8)).shape
    torch.Size([2, 10, 8])
    """

    def __init__(self, forward_block, backward_block, merge="sum"):
        super().__init__()
        if merge not in ("sum", "mean"):
            raise ValueError(f"merge must be 'sum' or 'mean', got {merge!r}")
        self.forward_block, self.backward_block, self.merge = (
            forward_block,
            backward_block,
            merge,
        )

    def forward(self, x, *seqs, mask=None):
        """Runs both directions and merges them.

        Arguments
        ---------
        x : torch.Tensor
            [B, L, N].
        *seqs : torch.Tensor
            Further [B, L, ...] sequences the blocks take (e.g. a clue).
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        fwd = self.forward_block(x, *seqs, mask=mask)
        flipped = [s.flip(1) for s in seqs]
        bmask = None if mask is None else mask.flip(1)
        bwd = self.backward_block(x.flip(1), *flipped, mask=bmask).flip(1)
        out = fwd + bwd
        return out if self.merge == "sum" else 0.5 * out


class BiMambaBlock(Bidirectional):
    """Bidirectional Mamba block: two independent :class:`MambaBlock` s, flip-and-merge.

    Arguments
    ---------
    d_model : int
        Feature size.
    merge : str
        ``"sum"`` or ``"mean"`` (see :class:`Bidirectional`).
    **block_kwargs
        Passed to both :class:`MambaBlock` s.

    Example
    -------
    >>> BiMambaBlock(16, d_state=4)(torch.randn(2, 12, 16)).shape
    torch.Size([2, 12, 16])
    """

    def __init__(self, d_model, merge="sum", **block_kwargs):
        super().__init__(
            MambaBlock(d_model, **block_kwargs),
            MambaBlock(d_model, **block_kwargs),
            merge,
        )


class SBMambaBlock(nn.Module):
    """A stack of Mamba blocks, a drop-in for SpeechBrain's ``SBTransformerBlock``.

    Takes ``[B, L, N]`` and returns ``[B, L, N]``, so it can be the ``intra_model`` or
    ``inter_model`` of ``speechbrain.lobes.models.dual_path.Dual_Path_Model``.

    Arguments
    ---------
    num_layers : int
        Number of (bidirectional) Mamba blocks.
    d_model : int
        Feature size N.
    d_state, d_conv, expand : int
        Mixer sizes (see :class:`MambaMixer`).
    bidirectional : bool
        Use :class:`BiMambaBlock` (non-causal) instead of :class:`MambaBlock` (causal).
    merge : str
        How the two directions are merged, ``"mean"`` or ``"sum"`` (see :class:`Bidirectional`).
    norm_epsilon : float
        Epsilon of the RMSNorms.
    final_norm : bool
        Apply an RMSNorm to the output, as Mamba's ``norm_f``.
    **mixer_kwargs
        Passed to :class:`MambaMixer` (``dt_rank``, ``scan_backend``, ...).

    Example
    -------
    >>> block = SBMambaBlock(num_layers=2, d_model=16, d_state=4)
    >>> x = torch.randn(3, 25, 16)
    >>> block(x).shape
    torch.Size([3, 25, 16])
    >>> block(x, lengths=torch.tensor([1.0, 0.8, 0.5])).shape
    torch.Size([3, 25, 16])
    """

    def __init__(
        self,
        num_layers,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        bidirectional=True,
        merge="mean",
        norm_epsilon=1e-5,
        final_norm=True,
        **mixer_kwargs,
    ):
        super().__init__()
        kw = dict(
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            norm_epsilon=norm_epsilon,
        )
        kw.update(mixer_kwargs)
        self.layers = nn.ModuleList(
            BiMambaBlock(d_model, merge=merge, **kw)
            if bidirectional
            else MambaBlock(d_model, **kw)
            for _ in range(num_layers)
        )
        self.norm = (
            nn.RMSNorm(d_model, eps=norm_epsilon)
            if final_norm
            else nn.Identity()
        )

    def forward(self, x, lengths=None, mask=None):
        """Applies the stack.

        Arguments
        ---------
        x : torch.Tensor
            [B, L, N].
        lengths : torch.Tensor, optional
            Relative lengths (B,), SpeechBrain style.
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames (instead of ``lengths``).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        if mask is None:
            mask = lengths_to_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, mask=mask)
        return self.norm(x)
