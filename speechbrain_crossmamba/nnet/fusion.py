"""The fusion zoo: modules that inject a clue sequence into mixture features.

All share one interface, ``forward(x, clue, mask=None) -> x'``: ``x`` is the mixture ``[B, L, N]``,
``clue`` a query sequence ``[B, L, C]`` of the same length (see ``QueryMaker``), and ``mask``
an optional ``[B, L]`` of valid frames. So any of them can be swapped for another in YAML.

- :class:`CrossMambaFusion`: the paper's module, C (query) from the clue.
- :class:`CrossAttentionFusion`: the Transformer baseline, query = clue, key/value = mixture.
- :class:`MambaFusion`: "vanilla Mamba", clue added or concatenated, then self-Mamba layers.
- :class:`ConcatFusion`, :class:`AddFusion`, :class:`MultiplyFusion`, :class:`FiLMFusion`:
  the SpeakerBeam / WeSep family.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain.nnet.attention import (
    MultiheadAttention,
    PositionalwiseFeedForward,
)
from speechbrain_crossmamba.nnet.cross_mamba import SBCrossMambaBlock
from speechbrain_crossmamba.nnet.mamba import SBMambaBlock
from speechbrain_crossmamba.nnet.transformer import key_padding_mask


def check_pair(x, clue, d_clue):
    """Checks that a clue sequence meets the mixture ``x``: same batch, same length, size.

    Arguments
    ---------
    x : torch.Tensor
        Mixture features [B, L, N].
    clue : torch.Tensor
        Clue sequence [B, L, C].
    d_clue : int
        The clue size C the fusion expects.

    Example
    -------
    >>> check_pair(torch.zeros(2, 10, 4), torch.zeros(2, 9, 3), 3)
    Traceback (most recent call last):
    ...
    ValueError: clue sequence has 9 frames but the mixture features have 10
    """
    if clue.dim() != 3:
        raise ValueError(
            f"clue must be a sequence [B, L, C], got shape {tuple(clue.shape)}"
        )
    if clue.shape[0] != x.shape[0]:
        raise ValueError(
            f"clue batch size {clue.shape[0]} does not match mixture {x.shape[0]}"
        )
    if clue.shape[1] != x.shape[1]:
        raise ValueError(
            f"clue sequence has {clue.shape[1]} frames but the mixture features have {x.shape[1]}"
        )
    if clue.shape[2] != d_clue:
        raise ValueError(
            f"clue has {clue.shape[2]} features, the fusion expects d_clue={d_clue}"
        )


class CrossMambaFusion(SBCrossMambaBlock):
    """CrossMamba fusion (the paper's module): ``num_layers`` (bi)directional CrossMamba blocks.

    Arguments
    ---------
    num_layers, d_model, d_clue, **kwargs
        Those of :class:`SBCrossMambaBlock`.

    Example
    -------
    >>> fusion = CrossMambaFusion(num_layers=1, d_model=16, d_clue=8, d_state=4)
    >>> fusion(torch.randn(2, 30, 16), torch.randn(2, 30, 8)).shape
    torch.Size([2, 30, 16])
    """

    def __init__(self, num_layers, d_model, d_clue=None, **kwargs):
        super().__init__(num_layers, d_model, d_clue=d_clue, **kwargs)
        self.d_clue = d_model if d_clue is None else d_clue

    def forward(self, x, clue, mask=None):
        """Fuses ``clue`` into ``x`` (see the module docstring).

        Arguments
        ---------
        x, clue, mask
            The mixture [B, L, N], the clue [B, L, C] and the valid frames [B, L] (optional).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        check_pair(x, clue, self.d_clue)
        return super().forward(x, clue, mask=mask)


class CrossAttentionFusion(nn.Module):
    """Cross-attention fusion (the Transformer baseline): query = clue, key/value = mixture.

    ``x' = LN(x + MHA(q=W·clue, k=x, v=x))``, then optionally ``LN(x' + FFN(x'))``. With a vector
    clue, use the ``modulate`` query maker: a broadcast query is the same at every frame, so
    attention would add the same vector everywhere.

    Arguments
    ---------
    d_model : int
        Mixture feature size N.
    d_clue : int
        Clue size C (projected to N when it differs).
    nhead : int
        Attention heads (SpeechBrain's ``MultiheadAttention``).
    d_ffn : int
        Feed-forward size; 0 for none.
    dropout : float
        Dropout rate.

    Example
    -------
    >>> fusion = CrossAttentionFusion(d_model=16, d_clue=8, nhead=4, d_ffn=32)
    >>> fusion(torch.randn(2, 30, 16), torch.randn(2, 30, 8)).shape
    torch.Size([2, 30, 16])
    """

    def __init__(self, d_model, d_clue=None, nhead=8, d_ffn=0, dropout=0.0):
        super().__init__()
        self.d_clue = d_model if d_clue is None else d_clue
        self.query = (
            nn.Linear(self.d_clue, d_model)
            if self.d_clue != d_model
            else nn.Identity()
        )
        self.attn = MultiheadAttention(nhead, d_model, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = (
            PositionalwiseFeedForward(
                d_ffn, input_size=d_model, dropout=dropout
            )
            if d_ffn
            else None
        )
        self.norm_ffn = nn.LayerNorm(d_model) if d_ffn else None

    def forward(self, x, clue, mask=None):
        """Fuses ``clue`` into ``x`` (see the module docstring).

        Arguments
        ---------
        x, clue, mask
            The mixture [B, L, N], the clue [B, L, C] and the valid frames [B, L] (optional).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        check_pair(x, clue, self.d_clue)
        out = self.attn(
            self.query(clue),
            x,
            x,
            key_padding_mask=key_padding_mask(mask),
            return_attn_weights=False,
        )
        x = self.norm(x + out)
        if self.ffn is not None:
            x = self.norm_ffn(x + self.ffn(x))
        return x


class MambaFusion(nn.Module):
    """The "vanilla Mamba" baseline: combine clue and mixture, then self-Mamba layers.

    Arguments
    ---------
    d_model : int
        Mixture feature size N.
    d_clue : int
        Clue size C.
    combine : str
        ``"add"`` (``x + W·clue``) or ``"concat"`` (``W·[x; clue]``).
    num_layers : int
        Self-Mamba layers after the combination.
    **mamba_kwargs
        Passed to :class:`SBMambaBlock` (``d_state``, ``bidirectional``, ...).

    Example
    -------
    >>> fusion = MambaFusion(d_model=16, d_clue=8, combine="concat", d_state=4)
    >>> fusion(torch.randn(2, 30, 16), torch.randn(2, 30, 8)).shape
    torch.Size([2, 30, 16])
    """

    def __init__(
        self, d_model, d_clue=None, combine="add", num_layers=1, **mamba_kwargs
    ):
        super().__init__()
        self.d_clue = d_model if d_clue is None else d_clue
        if combine not in ("add", "concat"):
            raise ValueError(
                f"combine must be 'add' or 'concat', got {combine!r}"
            )
        self.combine = (
            ConcatFusion(d_model, d_clue)
            if combine == "concat"
            else AddFusion(d_model, d_clue)
        )
        self.mamba = SBMambaBlock(num_layers, d_model, **mamba_kwargs)

    def forward(self, x, clue, mask=None):
        """Fuses ``clue`` into ``x`` (see the module docstring).

        Arguments
        ---------
        x, clue, mask
            The mixture [B, L, N], the clue [B, L, C] and the valid frames [B, L] (optional).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        return self.mamba(self.combine(x, clue), mask=mask)


class _FrameFusion(nn.Module):
    """Base of the per-frame fusions: one linear map of the clue (or of [x; clue])."""

    def __init__(self, d_model, d_clue=None, d_in=None, d_out=None):
        super().__init__()
        self.d_clue = d_model if d_clue is None else d_clue
        self.proj = nn.Linear(d_in or self.d_clue, d_out or d_model)

    def forward(self, x, clue, mask=None):
        """Fuses ``clue`` into ``x`` (see the module docstring).

        Arguments
        ---------
        x, clue, mask
            The mixture [B, L, N], the clue [B, L, C] and the valid frames [B, L] (optional).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        check_pair(x, clue, self.d_clue)
        return self.fuse(x, clue)


class AddFusion(_FrameFusion):
    """``x + W·clue``.

    Arguments
    ---------
    d_model, d_clue : int
        Mixture and clue sizes (``d_clue`` defaults to ``d_model``).

    Example
    -------
    >>> AddFusion(16, 8)(torch.randn(2, 5, 16), torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 16])
    """

    def fuse(self, x, clue):
        """The fusion of checked inputs.

        Arguments
        ---------
        x, clue : torch.Tensor
            The mixture [B, L, N] and the clue [B, L, C].

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        return x + self.proj(clue)


class MultiplyFusion(_FrameFusion):
    """``x ⊙ W·clue`` (SpeakerBeam's multiplicative adaptation).

    Arguments
    ---------
    d_model, d_clue : int
        Mixture and clue sizes (``d_clue`` defaults to ``d_model``).

    Example
    -------
    >>> MultiplyFusion(16, 8)(torch.randn(2, 5, 16), torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 16])
    """

    def fuse(self, x, clue):
        """The fusion of checked inputs.

        Arguments
        ---------
        x, clue : torch.Tensor
            The mixture [B, L, N] and the clue [B, L, C].

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        return x * self.proj(clue)


class ConcatFusion(_FrameFusion):
    """``W·[x; clue]``, back to the mixture's size.

    Arguments
    ---------
    d_model, d_clue : int
        Mixture and clue sizes (``d_clue`` defaults to ``d_model``).

    Example
    -------
    >>> ConcatFusion(16, 8)(torch.randn(2, 5, 16), torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model, d_clue=None):
        d_clue = d_model if d_clue is None else d_clue
        super().__init__(d_model, d_clue, d_in=d_model + d_clue)

    def fuse(self, x, clue):
        """The fusion of checked inputs.

        Arguments
        ---------
        x, clue : torch.Tensor
            The mixture [B, L, N] and the clue [B, L, C].

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        return self.proj(torch.cat([x, clue], dim=-1))


class FiLMFusion(_FrameFusion):
    """Feature-wise linear modulation: ``(1 + γ(clue)) ⊙ x + β(clue)`` (identity-centred).

    Arguments
    ---------
    d_model, d_clue : int
        Mixture and clue sizes (``d_clue`` defaults to ``d_model``).

    Example
    -------
    >>> FiLMFusion(16, 8)(torch.randn(2, 5, 16), torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model, d_clue=None):
        super().__init__(d_model, d_clue, d_out=2 * d_model)

    def fuse(self, x, clue):
        """The fusion of checked inputs.

        Arguments
        ---------
        x, clue : torch.Tensor
            The mixture [B, L, N] and the clue [B, L, C].

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        gamma, beta = self.proj(clue).chunk(2, dim=-1)
        return (1 + gamma) * x + beta
