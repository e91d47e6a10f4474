"""The Mamba (S6) mixer in SpeechBrain style, with its streaming state.

:class:`MambaMixer` follows the reference formulation (Gu & Dao, 2023): in_proj, a causal
depthwise conv, x_proj, dt_proj with its special initialisation, S4D-real ``A_log``, ``D``, the
``silu(z)`` gate and out_proj. The scan itself is :func:`selective_scan`. Padded frames are
made inert (``MASKED_DELTA``), and ``forward_chunk`` continues a stream from a fixed-size
state. The blocks built on it are in :mod:`.mamba`, which re-exports the mixer.

Authors
 * speechbrain-crossmamba contributors
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from speechbrain_crossmamba.nnet.causal_conv import causal_conv1d
from speechbrain_crossmamba.nnet.selective_scan import (
    hidden_attention,
    selective_scan,
)

# softplus(MASKED_DELTA + any bias) is 0.0 in fp32 (below 2e-38 in the cpu kernel, whose exp
# clamps at -87): with the input also zeroed, a padded frame leaves the state unchanged.
MASKED_DELTA = -1e4
#: the initialisations of dt_proj's weight (mamba-ssm's ``dt_init``)
DT_INITS = ("random", "constant")


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
    dt_init : str
        Initialisation of dt_proj's weight: ``"random"``, uniform in ±``dt_scale``·dt_rank^-0.5,
        or ``"constant"``, all equal to ``dt_scale``·dt_rank^-0.5 (as mamba-ssm's ``Mamba``).
    dt_scale : float
        Scale of that initialisation.
    dt_init_floor : float
        Lower bound of the initial step size.
    conv_bias : bool
        Whether the causal conv has a bias.
    bias : bool
        Whether in_proj and out_proj have biases.
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
    >>> mixer = MambaMixer(
    ...     32, d_state=8, bias=True, conv_bias=False, dt_init="constant"
    ... )
    >>> mixer.conv1d.bias is None, mixer(x).shape
    (True, torch.Size([2, 50, 32]))
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
        dt_init="random",
        dt_scale=1.0,
        dt_init_floor=1e-4,
        conv_bias=True,
        bias=False,
        scan_backend="auto",
        conv_backend="auto",
    ):
        super().__init__()
        if dt_init not in DT_INITS:
            raise ValueError(
                f"dt_init must be one of {DT_INITS}, got {dt_init!r}"
            )
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = (
            math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        )
        self.scan_backend, self.conv_backend = scan_backend, conv_backend
        di = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * di, bias=bias)
        self.conv1d = nn.Conv1d(
            di, di, d_conv, groups=di, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(
            di, self.dt_rank + self.states_from_x * d_state, bias=False
        )
        self.dt_proj = nn.Linear(self.dt_rank, di, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(
                di, 1
            )
        )
        self.D = nn.Parameter(torch.ones(di))
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(di, d_model, bias=bias)
        self._init_dt(dt_min, dt_max, dt_init_floor, dt_init, dt_scale)

    def _init_dt(self, dt_min, dt_max, floor, init="random", scale=1.0):
        """dt_proj weights ~ U(±s) ("random") or = s ("constant"), s = scale·dt_rank^-0.5;
        bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max], at least ``floor``."""
        std = self.dt_rank**-0.5 * scale
        if init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        log_dt = torch.rand(self.d_inner) * (
            math.log(dt_max) - math.log(dt_min)
        )
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
            x,
            weight,
            self.conv1d.bias,
            "silu",
            history=history,
            backend=self.conv_backend,
        )

    def ssm_inputs(self, hidden, clue=None, mask=None, history=None):
        """Returns the keyword arguments of :func:`selective_scan` for this layer.

        Padded frames (``mask`` False) are made inert: zero input and zero Δ' (the raw Δ is set
        to ``MASKED_DELTA``, whose softplus is 0 in fp32, so the softplus stays fused in the
        scan), so the state passes through them unchanged and they do not leak into valid frames. With
        ``history`` (the conv inputs of the previous ``d_conv - 1`` frames, when streaming)
        the conv continues from it instead of zero padding, and the dict also holds the next
        ``"history"``.

        Arguments
        ---------
        hidden : torch.Tensor
            Mixture frames [B, L, d_model].
        clue : torch.Tensor, optional
            Clue frames [B, L, d_clue] (CrossMamba's C; unused by Mamba).
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.
        history : torch.Tensor, optional
            Conv inputs of the previous frames [B, d_inner, d_conv - 1].

        Returns
        -------
        dict
            ``u``, ``delta``, ``A``, ``B``, ``C``, ``D``, ``z``, ``delta_bias``,
            ``delta_softplus`` (and ``history``).
        """
        # x and z as two products with the halves of in_proj's weight: each comes out as a
        # contiguous (B, L, d_inner), and backward adds two products instead of assembling
        # the gradient of a (B, L, 2·d_inner) output from transposed halves (a cat and a copy).
        wx, wz = self.in_proj.weight.chunk(2, dim=0)
        bx, bz = (
            (None, None)
            if self.in_proj.bias is None
            else self.in_proj.bias.chunk(2)
        )
        x = F.linear(hidden, wx, bx).transpose(1, 2)
        z = F.linear(hidden, wz, bz).transpose(1, 2)
        m = None if mask is None else mask[:, None, :].to(x.dtype)
        # (in place where the tensor is fresh and no backward needs it: fewer temporaries)
        if m is not None:
            x = x.mul_(m)
        if history is not None:
            full = torch.cat([history.to(x.dtype), x], dim=-1)
            x, history = (
                self._conv(x, history),
                full[..., full.shape[-1] - history.shape[-1] :],
            )
        else:
            x = self._conv(x)
        if m is not None:
            x = x.mul_(m)
        dt, B, C = self._project(self.x_proj(x.transpose(1, 2)), clue)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        if (
            m is not None
        ):  # softplus(MASKED_DELTA + bias) is 0: the padded frame is inert
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
        """Mixes a sequence.

        Arguments
        ---------
        hidden : torch.Tensor
            [B, L, d_model].
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, d_model].
        """
        return self._mix(hidden, None, mask)

    def _mix(self, hidden, clue, mask):
        y = selective_scan(
            **self.ssm_inputs(hidden, clue, mask), backend=self.scan_backend
        )
        return self.out_proj(y.transpose(1, 2))

    def hidden_attention(self, hidden, clue=None, mask=None):
        """Dense hidden-attention matrix α (B, d_inner, L, L) of this layer (short inputs).

        For CrossMamba, row t is how the clue's query at frame t attends to the mixture
        frames s ≤ t, so that ``y = α·u + D⊙u`` before the gate. Memory is O(B·d·n·L²).

        Arguments
        ---------
        hidden, clue, mask
            As in :meth:`ssm_inputs`.

        Returns
        -------
        torch.Tensor
            α (B, d_inner, L, L), float64.

        Example
        -------
        >>> from speechbrain_crossmamba.nnet.cross_mamba import CrossMambaMixer
        >>> mixer = CrossMambaMixer(d_model=8, d_state=4)
        >>> mixer.hidden_attention(
        ...     torch.randn(1, 6, 8), clue=torch.randn(1, 6, 8)
        ... ).shape
        torch.Size([1, 16, 6, 6])
        """
        inp = self.ssm_inputs(hidden, clue, mask)
        return hidden_attention(
            inp["delta"],
            inp["A"],
            inp["B"],
            inp["C"],
            inp["delta_bias"],
            inp["delta_softplus"],
        )

    def init_state(self, batch_size, device=None):
        """Zero streaming state.

        Arguments
        ---------
        batch_size : int
            Streams in the batch.
        device : torch.device, optional
            Where the state lives.

        Returns
        -------
        tuple of torch.Tensor
            Conv history (B, d_inner, d_conv - 1) and SSM state (B, d_inner, n).
        """
        history = torch.zeros(
            batch_size, self.d_inner, self.d_conv - 1, device=device
        )
        return history, torch.zeros(
            batch_size, self.d_inner, self.d_state, device=device
        )

    def forward_chunk(self, hidden, state, clue=None, mask=None):
        """Mixes the next chunk of a stream from ``state``.

        The state has a fixed size whatever the stream's length, and chunks of any sizes, fed
        in order from :meth:`init_state`, give the output of ``forward`` on the whole sequence.

        Arguments
        ---------
        hidden : torch.Tensor
            The chunk [B, l, d_model].
        state : tuple of torch.Tensor
            From :meth:`init_state` or the previous chunk.
        clue : torch.Tensor, optional
            The chunk's clue frames [B, l, d_clue] (CrossMamba).
        mask : torch.Tensor, optional
            [B, l] bool; False frames are inert, as in ``forward``: the SSM state passes them
            unchanged and the conv history holds zeros for them (their outputs are meaningless).

        Returns
        -------
        tuple
            Output [B, l, d_model] and the new state.

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
            **inputs,
            initial_state=ssm,
            return_last_state=True,
            backend=self.scan_backend,
        )
        return self.out_proj(y.transpose(1, 2)), (history, ssm)

    def step(self, hidden_t, state, clue_t=None):
        """One recurrent step.

        Arguments
        ---------
        hidden_t : torch.Tensor
            One frame [B, d_model].
        state : tuple of torch.Tensor
            From :meth:`init_state` or the previous step.
        clue_t : torch.Tensor, optional
            The clue frame [B, d_clue] (CrossMamba).

        Returns
        -------
        tuple
            Output [B, d_model] and the new state.
        """
        clue = None if clue_t is None else clue_t[:, None]
        y, state = self.forward_chunk(hidden_t[:, None], state=state, clue=clue)
        return y[:, 0], state
