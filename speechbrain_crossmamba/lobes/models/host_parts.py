"""What the mask networks (hosts) of :class:`~.extractor.TargetExtractor` share.

- :func:`build` and :func:`choose`: modules from YAML specs (``!new:`` or ``!name:``) and
  one-line variant switches;
- :func:`run_sequence_model` and :func:`masked_norm`: padding masks for the sequence models
  that take one and for global layer norms;
- :func:`layer_indices`, :class:`FusionPoint` and :func:`fusion_points`: where the clue meets
  a host, and how (a query maker, a fusion module and an optional ReZero gate).

They are re-exported by :mod:`.extractor` (YAMLs name
``speechbrain_crossmamba.lobes.models.extractor.choose``).

Authors
 * speechbrain-crossmamba contributors
"""

import copy
import inspect

import torch
import torch.nn as nn

from speechbrain.lobes.models.dual_path import GlobalLayerNorm
from speechbrain_crossmamba.nnet.clue import QueryMaker


def build(spec):
    """A fresh module from ``spec``: a deep copy of a module, or a call of a factory.

    YAML can give either ``!new:`` (a module, copied per use, as SpeechBrain's
    ``Dual_Path_Model`` does) or ``!name:`` (a factory; nothing is built until chosen).

    Arguments
    ---------
    spec : nn.Module or callable
        A module or a factory.

    Returns
    -------
    nn.Module
        The new module.

    Example
    -------
    >>> a = nn.Linear(2, 2)
    >>> build(a) is a
    False
    >>> build(lambda: nn.Identity())
    Identity()
    """
    if isinstance(spec, nn.Module):
        return copy.deepcopy(spec)
    if callable(spec):
        return spec()
    raise TypeError(
        f"expected a module or a factory (YAML !new: or !name:), got {spec!r}"
    )


def choose(choice, options):
    """Returns ``options[choice]``, for one-line variant switches in YAML.

    With ``!name:`` entries as options, only the chosen module is ever built::

        fusion_variant: crossmamba   # crossmamba | attention | mamba | concat | film
        fusion: !apply:speechbrain_crossmamba.lobes.models.extractor.choose
            - !ref <fusion_variant>
            - crossmamba: !ref <fusion_crossmamba>
              attention: !ref <fusion_attention>

    Arguments
    ---------
    choice : str
        The key.
    options : dict
        The variants.

    Returns
    -------
    object
        The chosen option (a ``ValueError`` for an unknown key).

    Example
    -------
    >>> choose("b", {"a": 1, "b": 2})
    2
    >>> choose("c", {"a": 1, "b": 2})
    Traceback (most recent call last):
    ...
    ValueError: unknown choice 'c'; expected one of: a, b
    """
    if choice not in options:
        raise ValueError(
            f"unknown choice {choice!r}; expected one of: {', '.join(options)}"
        )
    return options[choice]


def run_sequence_model(model, x, mask):
    """Runs ``model(x)``, passing ``mask=`` [B, L] when the model accepts one.

    Arguments
    ---------
    model : nn.Module
        A sequence model over ``x`` [B, L, N].
    x : torch.Tensor
        Its input.
    mask : torch.Tensor or None
        [B, L] bool, True on valid frames.

    Returns
    -------
    torch.Tensor
        The model's output.
    """
    if (
        mask is not None
        and "mask" in inspect.signature(model.forward).parameters
    ):
        return model(x, mask=mask)
    return model(x)


def masked_norm(norm, x, mask):
    """Applies ``norm`` to ``x``; a global layer norm only counts valid frames.

    Global norms are SpeechBrain's ``GlobalLayerNorm`` ("gln") and ``GroupNorm(1, N)``
    ("ln"); the others ("cln") work per frame and need no mask.

    Arguments
    ---------
    norm : nn.Module
        The norm (from SpeechBrain's ``select_norm``).
    x : torch.Tensor
        [B, N, *] features.
    mask : torch.Tensor or None
        Float [B, 1, *] of valid frames.

    Returns
    -------
    torch.Tensor
        The normalised features, shaped as ``x``.

    Example
    -------
    >>> x, m = torch.randn(1, 4, 10), torch.ones(1, 1, 10)
    >>> norm = GlobalLayerNorm(4, shape=3)
    >>> torch.allclose(masked_norm(norm, x, m), norm(x), atol=1e-5)
    True
    >>> norm = nn.GroupNorm(1, 4)
    >>> torch.allclose(masked_norm(norm, x, m), norm(x), atol=1e-5)
    True
    """
    is_global = isinstance(norm, GlobalLayerNorm)
    is_global |= (
        isinstance(norm, nn.GroupNorm) and norm.num_groups == 1
    )  # select_norm("ln")
    if mask is None or not is_global:
        return norm(x)
    dims = tuple(range(1, x.dim()))
    count = mask.sum(dims, keepdim=True) * x.shape[1]
    mean = (x * mask).sum(dims, keepdim=True) / count
    var = ((x - mean) * mask).pow(2).sum(dims, keepdim=True) / count
    out = (x - mean) / torch.sqrt(var + norm.eps)
    if norm.weight is None:
        return out
    shape = (-1,) + (1,) * (x.dim() - 2)
    return norm.weight.reshape(shape) * out + norm.bias.reshape(shape)


def layer_indices(spec, num_layers):
    """Which layers get a fusion: ``"all"``, ``"first"``, or a list of indices.

    Arguments
    ---------
    spec : str or list of int
        ``"all"``, ``"first"`` or indices.
    num_layers : int
        Layers of the host.

    Returns
    -------
    list of int
        The layer indices.

    Example
    -------
    >>> layer_indices("first", 4), layer_indices([1, 3], 4)
    ([0], [1, 3])
    """
    if spec == "all":
        return list(range(num_layers))
    if spec == "first":
        return [0]
    idx = [int(i) for i in spec]
    if not idx or any(i < 0 or i >= num_layers for i in idx):
        raise ValueError(
            f"fusion layers {spec!r} must be 'all', 'first' or indices < {num_layers}"
        )
    return idx


class FusionPoint(nn.Module):
    """A query maker and a fusion module at one place of a host model.

    ``forward(x, clue, mask)``: the clue (vector or sequence, already on ``x``'s rows) becomes
    a query sequence on ``x``'s axis, then the fusion module injects it into ``x``. Without a
    clue (``clue=None``: the separation stage of a warm start) the point passes ``x`` through.

    With ``gate=True`` the point returns ``x + g * (fusion(x, q) - x)`` with a learned scalar
    ``g = gate_scale * theta``, ``theta`` starting at 0 (ReZero): whatever the fusion module, the
    point starts as the identity, so a model warm-started on separation keeps what it learned
    when the clue is switched on. Adam moves ``theta`` by about the learning rate per step
    whatever its gradient, so ``gate_scale`` sets how fast the gate can open (at lr 1e-3 and
    scale 1, a gate needs about 1,000 steps to reach 1).

    Arguments
    ---------
    fusion : nn.Module
        The fusion module, ``fusion(x, q, mask=) -> x'``.
    query : QueryMaker, optional
        Makes the query from the clue; ``QueryMaker("broadcast")`` when None.
    gate : bool
        Add the ReZero gate.
    gate_scale : float
        Scale of the gate parameter.

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.fusion import FiLMFusion
    >>> point = FusionPoint(FiLMFusion(16, 8))
    >>> point(torch.randn(2, 30, 16), torch.randn(2, 8)).shape
    torch.Size([2, 30, 16])
    >>> x = torch.randn(2, 30, 16)
    >>> torch.equal(
    ...     FusionPoint(FiLMFusion(16, 8), gate=True)(x, torch.randn(2, 8)), x
    ... )
    True
    """

    def __init__(self, fusion, query=None, gate=False, gate_scale=1.0):
        super().__init__()
        self.fusion = fusion
        self.query = QueryMaker("broadcast") if query is None else query
        self.gate = nn.Parameter(torch.zeros(1)) if gate else None
        self.gate_scale = float(gate_scale)

    def forward(self, x, clue, mask=None):
        """Injects the clue into ``x`` (passes ``x`` through without a clue).

        Arguments
        ---------
        x : torch.Tensor
            [B, L, N] sequence.
        clue : torch.Tensor or None
            [B, C] vector or [B, Lc, C] sequence clue.
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        if clue is None:
            return x
        fused = self.fusion(x, self.query(clue, x), mask=mask)
        if self.gate is None:
            return fused
        return x + (self.gate_scale * self.gate).to(x.dtype) * (fused - x)


def fusion_points(fusion, query, keys, gate=False, gate_scale=1.0):
    """One :class:`FusionPoint` per key, each with its own copy of ``fusion`` and ``query``.

    Arguments
    ---------
    fusion, query : nn.Module or callable
        Built per point (see :func:`build`); ``query`` may be None.
    keys : iterable of str
        The names of the points.
    gate, gate_scale
        Those of :class:`FusionPoint`.

    Returns
    -------
    nn.ModuleDict
        ``key -> FusionPoint``.
    """
    points = {}
    for key in keys:
        points[key] = FusionPoint(
            build(fusion),
            None if query is None else build(query),
            gate,
            gate_scale,
        )
    return nn.ModuleDict(points)
