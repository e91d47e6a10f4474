"""CrossMamba layers: a selective scan whose query ``C`` comes from a clue.

Mamba's scan is a hidden attention, ``y_t = Σ_{s≤t} C_t·(Π exp(Δ_k A))·Δ_s B_s·x_s``, in
which ``C`` plays the query, ``(Δ, B)`` the key and ``x`` the value. CrossMamba
(Wu et al., ICASSP 2025, arXiv 2409.04803) computes ``C`` from the clue and ``Δ, B, x``
and the gate ``z`` from the mixture: cross-attention-like fusion at linear cost.

Authors
 * speechbrain-crossmamba contributors
"""

import torch  # noqa: F401  (used by the doctest examples)
import torch.nn as nn
import torch.nn.functional as F

from speechbrain_crossmamba.nnet.mamba import (
    Bidirectional,
    MambaBlock,
    MambaMixer,
    lengths_to_mask,
)


def align_clue(clue, length, interpolate=False):
    """Checks that a clue sequence [B, Lc, C] has ``length`` frames, or interpolates it.

    Arguments
    ---------
    clue : torch.Tensor
        Clue sequence, [B, Lc, C].
    length : int
        Length of the mixture sequence it meets.
    interpolate : bool
        Linearly interpolate the clue to ``length`` frames instead of raising.

    Returns
    -------
    torch.Tensor
        [B, length, C].

    Example
    -------
    >>> align_clue(torch.randn(2, 25, 8), 100, interpolate=True).shape
    torch.Size([2, 100, 8])
    """
    if clue.dim() != 3:
        raise ValueError(
            f"clue must be a sequence [B, L, C], got shape {tuple(clue.shape)}"
        )
    if clue.shape[1] == length:
        return clue
    if not interpolate:
        raise ValueError(
            f"clue has {clue.shape[1]} frames but the mixture has {length}; "
            "pass interpolate_clue=True to interpolate the clue to the mixture's length"
        )
    out = F.interpolate(
        clue.transpose(1, 2), size=length, mode="linear", align_corners=True
    )
    return out.transpose(1, 2)


class CrossMambaMixer(MambaMixer):
    """The CrossMamba mixer: x, z, Δ and B from the mixture, C from the clue.

    The clue path is ``q_proj(in_proj_q(clue))`` (both without bias, no conv, no
    activation). D-skip and gate use the mixture; the output has the mixture's length.

    Arguments
    ---------
    d_model : int
        Mixture feature size (input and output).
    d_clue : int, optional
        Clue feature size (default ``d_model``).
    **kwargs
        As :class:`MambaMixer`.

    Example
    -------
    >>> mixer = CrossMambaMixer(d_model=32, d_state=8)
    >>> x, clue = torch.randn(2, 40, 32), torch.randn(2, 40, 32)
    >>> mixer(x, clue).shape
    torch.Size([2, 40, 32])
    """

    states_from_x = 1

    def __init__(self, d_model, d_clue=None, **kwargs):
        super().__init__(d_model, **kwargs)
        self.d_clue = d_model if d_clue is None else d_clue
        self.in_proj_q = nn.Linear(self.d_clue, self.d_inner, bias=False)
        self.q_proj = nn.Linear(self.d_inner, self.d_state, bias=False)

    def _project(self, x_dbl, clue):
        dt, B = x_dbl.split([self.dt_rank, self.d_state], dim=-1)
        return dt, B, self.q_proj(self.in_proj_q(clue))

    def ssm_inputs(self, hidden, clue=None, mask=None, history=None):
        """:meth:`MambaMixer.ssm_inputs`, with C from ``clue`` (required, of the mixture's length).

        Arguments
        ---------
        hidden, clue, mask, history
            As in :meth:`MambaMixer.ssm_inputs`.

        Returns
        -------
        dict
            The keyword arguments of ``selective_scan``.
        """
        if clue is None:
            raise ValueError("CrossMamba needs a clue (the query); got None")
        align_clue(clue, hidden.shape[1])  # raises on a length mismatch
        if clue.shape[0] != hidden.shape[0]:
            raise ValueError(
                f"clue batch {clue.shape[0]} does not match mixture batch {hidden.shape[0]}"
            )
        return super().ssm_inputs(hidden, clue, mask, history)

    def forward(self, hidden, clue, mask=None):
        """Mixes the mixture with C from the clue.

        Arguments
        ---------
        hidden : torch.Tensor
            Mixture [B, L, d_model].
        clue : torch.Tensor
            Clue [B, L, d_clue].
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, d_model].
        """
        return self._mix(hidden, clue, mask)

    def forward_chunk(self, hidden, clue, state, mask=None):
        """The next chunk of a stream, with its clue frames (see :meth:`MambaMixer.forward_chunk`).

        Arguments
        ---------
        hidden : torch.Tensor
            Mixture chunk [B, l, d_model].
        clue : torch.Tensor
            Clue frames [B, l, d_clue].
        state : tuple of torch.Tensor
            From ``init_state`` or the previous chunk.
        mask : torch.Tensor, optional
            [B, l] bool, True on valid frames.

        Returns
        -------
        tuple
            Output [B, l, d_model] and the new state.
        """
        return super().forward_chunk(hidden, state, clue=clue, mask=mask)

    def step(self, hidden_t, clue_t, state):
        """One recurrent step with a clue frame (see :meth:`MambaMixer.step`).

        Arguments
        ---------
        hidden_t : torch.Tensor
            Mixture frame [B, d_model].
        clue_t : torch.Tensor
            Clue frame [B, d_clue].
        state : tuple of torch.Tensor
            From ``init_state`` or the previous step.

        Returns
        -------
        tuple
            Output [B, d_model] and the new state.
        """
        return super().step(hidden_t, state, clue_t=clue_t)


class CrossMambaBlock(MambaBlock):
    """CrossMamba block: separate RMSNorms for mixture and clue; the residual is the mixture.

    Arguments
    ---------
    d_model : int
        Mixture feature size.
    d_clue : int, optional
        Clue feature size (default ``d_model``).
    norm_epsilon : float
        Epsilon of the RMSNorms.
    **mixer_kwargs
        Passed to :class:`CrossMambaMixer`.

    Example
    -------
    >>> block = CrossMambaBlock(d_model=16, d_clue=8, d_state=4)
    >>> block(torch.randn(2, 30, 16), torch.randn(2, 30, 8)).shape
    torch.Size([2, 30, 16])
    """

    mixer_class = CrossMambaMixer

    def __init__(self, d_model, d_clue=None, norm_epsilon=1e-5, **mixer_kwargs):
        super().__init__(
            d_model, norm_epsilon=norm_epsilon, d_clue=d_clue, **mixer_kwargs
        )
        self.norm_clue = nn.RMSNorm(self.mixer.d_clue, eps=norm_epsilon)

    def forward(self, x, clue, mask=None):
        """Applies the block.

        Arguments
        ---------
        x : torch.Tensor
            Mixture [B, L, d_model].
        clue : torch.Tensor
            Clue [B, L, d_clue].
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, d_model].
        """
        return x + self.mixer(self.norm(x), self.norm_clue(clue), mask=mask)

    def step(self, x_t, clue_t, state):
        """One recurrent step of the causal block.

        Arguments
        ---------
        x_t, clue_t, state
            As in :meth:`CrossMambaMixer.step`.

        Returns
        -------
        tuple
            Output [B, d_model] and the new state.
        """
        y, state = self.mixer.step(
            self.norm(x_t), self.norm_clue(clue_t), state
        )
        return x_t + y, state


class BiCrossMambaBlock(Bidirectional):
    """Bidirectional CrossMamba: one block on (mixture, clue), one on both flipped in time.

    With ``merge="sum"`` (default) this is the reference module: each direction adds its own
    residual, so the output carries the mixture twice.

    Arguments
    ---------
    d_model : int
        Mixture feature size.
    merge : str
        ``"sum"`` or ``"mean"`` (see ``Bidirectional``).
    **block_kwargs
        Passed to both :class:`CrossMambaBlock` s.

    Example
    -------
    >>> block = BiCrossMambaBlock(d_model=16, d_state=4)
    >>> block(torch.randn(2, 30, 16), torch.randn(2, 30, 16)).shape
    torch.Size([2, 30, 16])
    """

    def __init__(self, d_model, merge="sum", **block_kwargs):
        super().__init__(
            CrossMambaBlock(d_model, **block_kwargs),
            CrossMambaBlock(d_model, **block_kwargs),
            merge,
        )


class SBCrossMambaBlock(nn.Module):
    """A stack of CrossMamba blocks fusing a clue sequence into a mixture sequence.

    ``forward(x, clue)`` takes the mixture ``[B, L, N]`` and a clue ``[B, L, C]`` of the same
    length, and returns ``[B, L, N]``. A clue of another length raises an error unless
    ``interpolate_clue=True``.

    Arguments
    ---------
    num_layers : int
        Number of CrossMamba blocks; every block reads the same clue.
    d_model : int
        Mixture feature size N.
    d_clue : int, optional
        Clue feature size C (default N).
    d_state, d_conv, expand : int
        Mixer sizes.
    bidirectional : bool
        :class:`BiCrossMambaBlock` (non-causal) or :class:`CrossMambaBlock` (causal).
    merge : str
        Merge of the two directions, ``"mean"`` or ``"sum"`` (see ``Bidirectional``).
    norm_epsilon : float
        Epsilon of the RMSNorms.
    interpolate_clue : bool
        Interpolate a clue of another length to the mixture's length.
    final_norm : bool
        Apply an RMSNorm to the output.
    **mixer_kwargs
        Passed to :class:`CrossMambaMixer` (``dt_rank``, ``scan_backend``, ...).

    Example
    -------
    >>> fusion = SBCrossMambaBlock(
    ...     num_layers=1, d_model=16, d_clue=8, d_state=4
    ... )
    >>> x, clue = torch.randn(2, 30, 16), torch.randn(2, 30, 8)
    >>> fusion(x, clue).shape
    torch.Size([2, 30, 16])
    """

    def __init__(
        self,
        num_layers,
        d_model,
        d_clue=None,
        d_state=16,
        d_conv=4,
        expand=2,
        bidirectional=True,
        merge="mean",
        interpolate_clue=False,
        norm_epsilon=1e-5,
        final_norm=True,
        **mixer_kwargs,
    ):
        super().__init__()
        kw = dict(d_clue=d_clue, d_state=d_state, d_conv=d_conv, expand=expand)
        kw.update(norm_epsilon=norm_epsilon, **mixer_kwargs)
        self.layers = nn.ModuleList(
            BiCrossMambaBlock(d_model, merge=merge, **kw)
            if bidirectional
            else CrossMambaBlock(d_model, **kw)
            for _ in range(num_layers)
        )
        self.interpolate_clue = interpolate_clue
        self.norm = (
            nn.RMSNorm(d_model, eps=norm_epsilon)
            if final_norm
            else nn.Identity()
        )

    def forward(self, x, clue, lengths=None, mask=None):
        """Fuses the clue into the mixture.

        Arguments
        ---------
        x : torch.Tensor
            Mixture [B, L, N].
        clue : torch.Tensor
            Clue [B, Lc, C].
        lengths : torch.Tensor, optional
            Relative lengths (B,).
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames (instead of ``lengths``).

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        clue = align_clue(clue, x.shape[1], self.interpolate_clue)
        if mask is None:
            mask = lengths_to_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, clue, mask=mask)
        return self.norm(x)
