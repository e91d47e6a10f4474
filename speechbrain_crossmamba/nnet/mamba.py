"""Mamba layers in SpeechBrain style: the mixer, its residual block, a bidirectional wrapper,
and ``SBMambaBlock``, a drop-in for SpeechBrain's ``SBTransformerBlock``.

The mixer follows the reference formulation (Gu & Dao, 2023): in_proj, a causal depthwise
conv, x_proj, dt_proj with its special initialisation, S4D-real ``A_log``, ``D``, the
``silu(z)`` gate and out_proj. The scan itself is :func:`selective_scan`.

Authors
 * speechbrain-crossmamba contributors
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from speechbrain.dataio.dataio import length_to_mask

from speechbrain_crossmamba.checks import check_lengths
from speechbrain_crossmamba.nnet.causal_conv import causal_conv1d
from speechbrain_crossmamba.nnet.selective_scan import hidden_attention, selective_scan


# softplus(MASKED_DELTA + any bias) is 0.0 in fp32 (below 2e-38 in the cpu kernel, whose exp
# clamps at -87): with the input also zeroed, a padded frame leaves the state unchanged.
MASKED_DELTA = -1e4


def lengths_to_mask(lengths, max_len):
    """Turns SpeechBrain relative lengths (B,) in [0, 1] into a boolean mask (B, max_len).

    Example
    -------
    >>> lengths_to_mask(torch.tensor([1.0, 0.5]), 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    """
    if lengths is None:
        return None
    check_lengths(lengths, lengths.shape[0] if lengths.dim() else 0, "padding")
    return length_to_mask(torch.round(lengths * max_len), max_len=max_len).bool()


class MambaMixer(nn.Module):
    """The Mamba (S6) mixer: ``[B, L, d_model] -> [B, L, d_model]``.

    Arguments
    ---------
    d_model : int
        Input and output size.
    d_state : int
        SSM state size n.
    d_conv : int
        Kernel size of the causal depthwise convolution.
    expand : int
        d_inner = expand * d_model.
    dt_rank : int or "auto"
        Rank of the Δ projection; "auto" is ceil(d_model / 16).
    dt_min, dt_max : float
        Range of the initial step size softplus(dt_bias), sampled log-uniformly.
    dt_init_floor : float
        Lower bound of the initial step size.
    scan_backend : str
        Backend of :func:`selective_scan` ("auto", "cuda", "cpu", "torch", "ref").
    conv_backend : str
        Backend of the causal conv, :func:`causal_conv1d` ("auto", "cuda", "cpu", "torch").

    Example
    -------
    >>> mixer = MambaMixer(d_model=32, d_state=8)
    >>> x = torch.randn(2, 50, 32)
    >>> mixer(x).shape
    torch.Size([2, 50, 32])
    """

    #: how many of (B, C) x_proj produces; CrossMamba takes C from the clue instead
    states_from_x = 2

    def __init__(
        self,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        dt_min=0.001,
        dt_max=0.1,
        dt_init_floor=1e-4,
        scan_backend="auto",
        conv_backend="auto",
    ):
        super().__init__()
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend, self.conv_backend = scan_backend, conv_backend
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(di, self.dt_rank + self.states_from_x * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1)
        )
        self.D = nn.Parameter(torch.ones(di))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(di, d_model, bias=False)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    def _init_dt(self, dt_min, dt_max, floor):
        """dt_proj weights ~ U(±dt_rank^-0.5); bias = softplus^-1(dt), dt log-uniform."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
        dt = torch.exp(log_dt + math.log(dt_min)).clamp(min=floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    def _project(self, x_dbl, clue):
        """Splits x_proj's output into (dt, B, C); CrossMamba overrides where C comes from."""
        return x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)

    def _conv(self, x, history=None):
        """Causal depthwise conv and SiLU over (B, d_inner, L), from ``history`` if given."""
        weight = self.conv1d.weight[:, 0]
        return causal_conv1d(
            x, weight, self.conv1d.bias, "silu", history=history, backend=self.conv_backend
        )

    def ssm_inputs(self, hidden, clue=None, mask=None, history=None):
        """Returns the keyword arguments of :func:`selective_scan` for this layer.

        Padded frames (``mask`` False) are made inert: zero input and zero Δ' (the raw Δ is set
        to ``MASKED_DELTA``, whose softplus is 0 in fp32, so the softplus stays fused in the
        scan), so the state passes through them unchanged and they do not leak into valid frames. With
        ``history`` (the conv inputs of the previous ``d_conv - 1`` frames, when streaming)
        the conv continues from it instead of zero padding, and the dict also holds the next
        ``"history"``.
        """
        # x and z as two products with the halves of in_proj's weight: each comes out as a
        # contiguous (B, L, d_inner), and backward adds two products instead of assembling
        # the gradient of a (B, L, 2·d_inner) output from transposed halves (a cat and a copy).
        wx, wz = self.in_proj.weight.chunk(2, dim=0)
        x = F.linear(hidden, wx).transpose(1, 2)
        z = F.linear(hidden, wz).transpose(1, 2)
        m = None if mask is None else mask[:, None, :].to(x.dtype)
        # (in place where the tensor is fresh and no backward needs it: fewer temporaries)
        if m is not None:
            x = x.mul_(m)
        if history is not None:
            full = torch.cat([history.to(x.dtype), x], dim=-1)
            x, history = self._conv(x, history), full[..., full.shape[-1] - history.shape[-1] :]
        else:
            x = self._conv(x)
        if m is not None:
            x = x.mul_(m)
        dt, B, C = self._project(self.x_proj(x.transpose(1, 2)), clue)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        if m is not None:  # softplus(MASKED_DELTA + bias) is 0: the padded frame is inert
            delta = delta.masked_fill_(~mask[:, None, :], MASKED_DELTA)
        return dict(
            u=x,
            delta=delta,
            A=-torch.exp(self.A_log.float()),
            B=B.transpose(1, 2),
            C=C.transpose(1, 2),
            D=self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            **({} if history is None else {"history": history}),
        )

    def forward(self, hidden, mask=None):
        """Mixes ``hidden`` [B, L, d_model]; ``mask`` [B, L] marks valid frames (True)."""
        return self._mix(hidden, None, mask)

    def _mix(self, hidden, clue, mask):
        y = selective_scan(**self.ssm_inputs(hidden, clue, mask), backend=self.scan_backend)
        return self.out_proj(y.transpose(1, 2))

    def hidden_attention(self, hidden, clue=None, mask=None):
        """Dense hidden-attention matrix α (B, d_inner, L, L) of this layer (short inputs).

        For CrossMamba, row t is how the clue's query at frame t attends to the mixture
        frames s ≤ t, so that ``y = α·u + D⊙u`` before the gate. Memory is O(B·d·n·L²).

        Example
        -------
        >>> from speechbrain_crossmamba.nnet.cross_mamba import CrossMambaMixer
        >>> mixer = CrossMambaMixer(d_model=8, d_state=4)
        >>> mixer.hidden_attention(torch.randn(1, 6, 8), clue=torch.randn(1, 6, 8)).shape
        torch.Size([1, 16, 6, 6])
        """
        inp = self.ssm_inputs(hidden, clue, mask)
        return hidden_attention(
            inp["delta"], inp["A"], inp["B"], inp["C"], inp["delta_bias"], inp["delta_softplus"]
        )

    def init_state(self, batch_size, device=None):
        """Zero streaming state: (conv history (B, d_inner, d_conv - 1), SSM state (B, d_inner, n))."""
        history = torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device)
        return history, torch.zeros(batch_size, self.d_inner, self.d_state, device=device)

    def forward_chunk(self, hidden, state, clue=None, mask=None):
        """Mixes the next chunk ``hidden`` [B, l, d_model] of a stream from ``state``.

        Returns (output [B, l, d_model], new state). The state has a fixed size whatever the
        stream's length, and chunks of any sizes, fed in order from :meth:`init_state`, give
        the output of ``forward`` on the whole sequence. Frames where ``mask`` [B, l] is False
        are inert, as in ``forward``: the SSM state passes them unchanged and the conv history
        holds zeros for them (their own outputs are meaningless).

        Example
        -------
        >>> mixer = MambaMixer(d_model=16, d_state=4)
        >>> x = torch.randn(2, 30, 16)
        >>> state = mixer.init_state(2)
        >>> a, state = mixer.forward_chunk(x[:, :7], state)
        >>> b, state = mixer.forward_chunk(x[:, 7:], state)
        >>> torch.allclose(torch.cat([a, b], 1), mixer(x), atol=1e-5)
        True
        """
        history, ssm = state
        inputs = self.ssm_inputs(hidden, clue, mask, history=history)
        history = inputs.pop("history")
        y, ssm = selective_scan(
            **inputs, initial_state=ssm, return_last_state=True, backend=self.scan_backend
        )
        return self.out_proj(y.transpose(1, 2)), (history, ssm)

    def step(self, hidden_t, state, clue_t=None):
        """One recurrent step: ``hidden_t`` [B, d_model] -> (output [B, d_model], new state)."""
        clue = None if clue_t is None else clue_t[:, None]
        y, state = self.forward_chunk(hidden_t[:, None], state=state, clue=clue)
        return y[:, 0], state


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba block: ``x + mixer(RMSNorm(x))``.

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
        self.forward_block, self.backward_block, self.merge = forward_block, backward_block, merge

    def forward(self, x, *seqs, mask=None):
        fwd = self.forward_block(x, *seqs, mask=mask)
        flipped = [s.flip(1) for s in seqs]
        bmask = None if mask is None else mask.flip(1)
        bwd = self.backward_block(x.flip(1), *flipped, mask=bmask).flip(1)
        out = fwd + bwd
        return out if self.merge == "sum" else 0.5 * out


class BiMambaBlock(Bidirectional):
    """Bidirectional Mamba block: two independent :class:`MambaBlock` s, flip-and-merge.

    Example
    -------
    >>> BiMambaBlock(16, d_state=4)(torch.randn(2, 12, 16)).shape
    torch.Size([2, 12, 16])
    """

    def __init__(self, d_model, merge="sum", **block_kwargs):
        super().__init__(
            MambaBlock(d_model, **block_kwargs), MambaBlock(d_model, **block_kwargs), merge
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
        kw = dict(d_state=d_state, d_conv=d_conv, expand=expand, norm_epsilon=norm_epsilon)
        kw.update(mixer_kwargs)
        self.layers = nn.ModuleList(
            BiMambaBlock(d_model, merge=merge, **kw) if bidirectional else MambaBlock(d_model, **kw)
            for _ in range(num_layers)
        )
        self.norm = nn.RMSNorm(d_model, eps=norm_epsilon) if final_norm else nn.Identity()

    def forward(self, x, lengths=None, mask=None):
        """``x`` [B, L, N]; relative ``lengths`` (B,), SpeechBrain style, or a ``mask`` [B, L]."""
        if mask is None:
            mask = lengths_to_mask(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, mask=mask)
        return self.norm(x)
