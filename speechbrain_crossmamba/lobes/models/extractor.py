"""The target extractor: waveform and clue in, target waveform out; and what its hosts share.

:class:`TargetExtractor` wraps a SpeechBrain ``dual_path.Encoder``, a clue encoder, a clue-aware
mask network (``TSEDualPathModel`` or ``TSESinglePathModel``) and a ``dual_path.Decoder``. It
checks its inputs, keeps padded frames out of every valid one, and returns the estimate with
the mixture's length.

Authors
 * speechbrain-crossmamba contributors
"""

import copy
import inspect

import torch
import torch.nn as nn
from speechbrain.lobes.models.dual_path import GlobalLayerNorm

from speechbrain_crossmamba.checks import check_lengths, check_same_batch, check_waveform
from speechbrain_crossmamba.nnet.clue import QueryMaker


def build(spec):
    """A fresh module from ``spec``: a deep copy of a module, or a call of a factory.

    YAML can give either ``!new:`` (a module, copied per use, as SpeechBrain's
    ``Dual_Path_Model`` does) or ``!name:`` (a factory; nothing is built until chosen).

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
    raise TypeError(f"expected a module or a factory (YAML !new: or !name:), got {spec!r}")


def choose(choice, options):
    """Returns ``options[choice]``, for one-line variant switches in YAML.

    With ``!name:`` entries as options, only the chosen module is ever built::

        fusion_variant: crossmamba   # crossmamba | attention | mamba | concat | film
        fusion: !apply:speechbrain_crossmamba.lobes.models.extractor.choose
            - !ref <fusion_variant>
            - crossmamba: !ref <fusion_crossmamba>
              attention: !ref <fusion_attention>

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
        raise ValueError(f"unknown choice {choice!r}; expected one of: {', '.join(options)}")
    return options[choice]


def run_sequence_model(model, x, mask):
    """Runs ``model(x)``, passing ``mask=`` [B, L] when the model accepts one."""
    if mask is not None and "mask" in inspect.signature(model.forward).parameters:
        return model(x, mask=mask)
    return model(x)


def masked_norm(norm, x, mask):
    """Applies ``norm`` to ``x`` [B, N, ...]; a global layer norm only counts valid frames.

    ``mask`` is a float [B, 1, ...] of valid frames (or None). Global norms are SpeechBrain's
    ``GlobalLayerNorm`` ("gln") and ``GroupNorm(1, N)`` ("ln"); the others ("cln") work per
    frame and need no mask.

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
    is_global |= isinstance(norm, nn.GroupNorm) and norm.num_groups == 1  # select_norm("ln")
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
        raise ValueError(f"fusion layers {spec!r} must be 'all', 'first' or indices < {num_layers}")
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

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.fusion import FiLMFusion
    >>> point = FusionPoint(FiLMFusion(16, 8))
    >>> point(torch.randn(2, 30, 16), torch.randn(2, 8)).shape
    torch.Size([2, 30, 16])
    >>> x = torch.randn(2, 30, 16)
    >>> torch.equal(FusionPoint(FiLMFusion(16, 8), gate=True)(x, torch.randn(2, 8)), x)
    True
    """

    def __init__(self, fusion, query=None, gate=False, gate_scale=1.0):
        super().__init__()
        self.fusion = fusion
        self.query = QueryMaker("broadcast") if query is None else query
        self.gate = nn.Parameter(torch.zeros(1)) if gate else None
        self.gate_scale = float(gate_scale)

    def forward(self, x, clue, mask=None):
        if clue is None:
            return x
        fused = self.fusion(x, self.query(clue, x), mask=mask)
        if self.gate is None:
            return fused
        return x + (self.gate_scale * self.gate).to(x.dtype) * (fused - x)


def fusion_points(fusion, query, keys, gate=False, gate_scale=1.0):
    """One :class:`FusionPoint` per key, each with its own copy of ``fusion`` and ``query``."""
    points = {}
    for key in keys:
        points[key] = FusionPoint(build(fusion), None if query is None else build(query), gate, gate_scale)
    return nn.ModuleDict(points)


class TargetExtractor(nn.Module):
    """Extracts the target given by a clue from a mono mixture: ``[B, T] -> [B, T]``.

    Arguments
    ---------
    encoder : speechbrain.lobes.models.dual_path.Encoder
        Waveform encoder (kernel k, stride k/2).
    masknet : nn.Module or factory
        ``masknet(feats [B, N, F], clue, mask [B, F]) -> mask [B, N, F]``, e.g.
        :class:`~speechbrain_crossmamba.lobes.models.tse_sepformer.TSEDualPathModel`. A factory
        (YAML ``!name:``) is called once.
    decoder : speechbrain.lobes.models.dual_path.Decoder
        Transposed-conv decoder matching the encoder.
    clue_encoder : nn.Module or factory
        ``clue_encoder(clue, lengths) -> [B, C]`` or ``[B, Lc, C]`` (see ``nnet.clue``). A
        factory is called once.
    sample_rate : int
        Sample rate the model works at (informative; interfaces check files against it).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder
    >>> from speechbrain_crossmamba.nnet.clue import LabelEncoder
    >>> from speechbrain_crossmamba.nnet.fusion import FiLMFusion
    >>> from speechbrain_crossmamba.lobes.models.tse_tasnet import TSESinglePathModel
    >>> from speechbrain_crossmamba.nnet.mamba import SBMambaBlock
    >>> masknet = TSESinglePathModel(16, 16, SBMambaBlock(1, 16, d_state=4), 2, FiLMFusion(16, 8))
    >>> model = TargetExtractor(Encoder(16, 16), masknet, Decoder(16, 1, 16, stride=8, bias=False),
    ...                         LabelEncoder(num_classes=5, d_clue=8))
    >>> model(torch.randn(2, 4001), torch.tensor([0, 3])).shape
    torch.Size([2, 4001])
    """

    def __init__(self, encoder, masknet, decoder, clue_encoder, sample_rate=8000):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.masknet = masknet if isinstance(masknet, nn.Module) else masknet()
        self.clue_encoder = clue_encoder if isinstance(clue_encoder, nn.Module) else clue_encoder()
        self.sample_rate = sample_rate
        self.kernel = encoder.conv1d.kernel_size[0]
        self.stride = encoder.conv1d.stride[0]

    def frames(self, samples):
        """Encoder frames needed to cover ``samples`` samples (int or tensor), at least one."""
        excess = samples - self.kernel
        if torch.is_tensor(excess):
            return (-(-excess.clamp(min=0) // self.stride)) + 1
        return -(-max(excess, 0) // self.stride) + 1

    def encode_clue(self, clue, clue_lengths=None):
        """Runs the clue encoder: a vector [B, C] or a sequence [B, Lc, C]."""
        if clue is None:
            raise ValueError("no clue given: pass the enrollment, label or embedding of the target")
        return self.clue_encoder(clue, lengths=clue_lengths)

    def forward(self, mix, clue, lengths=None, clue_lengths=None, all_outputs=False, return_clue=False):
        """Estimates the target.

        Arguments
        ---------
        mix : torch.Tensor
            Mixture waveforms [B, T] (or [B, 1, T]).
        clue : torch.Tensor
            The clue, as the clue encoder takes it (enrollment [B, Te], labels [B], ...); None
            with ``all_outputs`` separates without a clue (:meth:`separate`).
        lengths : torch.Tensor, optional
            Relative lengths (B,) of the mixtures; padding beyond them is ignored and zeroed.
        clue_lengths : torch.Tensor, optional
            Relative lengths of the clues (enrollments).
        all_outputs : bool
            Return every output of a mask network with several (``num_spks`` > 1), [B, S, T]:
            the target first, then the rest of the mixture.
        return_clue : bool
            Also return the encoded clue (for an auxiliary speaker loss, without encoding the
            clue twice).

        Returns
        -------
        torch.Tensor
            The estimated target, [B, T] (or [B, S, T] with ``all_outputs``).
        """
        mix = check_waveform(mix, "mixture")
        if clue is None and all_outputs:  # plain separation: see separate()
            return self._run(mix, None, lengths)
        if torch.is_tensor(clue):
            check_same_batch(mix, clue)
        clue = self.encode_clue(clue, clue_lengths)
        out = self._run(mix, clue, lengths)
        out = out if all_outputs else out[:, 0]
        return (out, clue) if return_clue else out

    def separate(self, mix, lengths=None):
        """Separates without a clue (every fusion point bypassed): [B, T] -> [B, S, T].

        This is the first stage of a warm start (``warm_start_epochs`` in the training YAML):
        a mask network with ``num_spks=2`` learns plain separation with PIT, and the clue then
        picks which output is the target.

        Example
        -------
        >>> from hyperpyyaml import load_hyperpyyaml
        >>> hp = load_hyperpyyaml(open("hparams/models/tse.yaml"), {"N": 16, "num_spks": 2})
        >>> hp["extractor"].separate(torch.randn(2, 4000)).shape
        torch.Size([2, 2, 4000])
        """
        return self.forward(mix, None, lengths, all_outputs=True)

    def _run(self, mix, clue, lengths):
        """Encoder, mask network (clue None: no fusion) and decoder: [B, T] -> [B, S, T]."""
        B, T = mix.shape
        lengths = check_lengths(lengths, B, "mixture")
        total = self.frames(T)
        padded = torch.nn.functional.pad(mix, (0, (total - 1) * self.stride + self.kernel - T))
        mask = None
        if lengths is not None:
            samples = torch.round(lengths * T).long()
            mask = torch.arange(total, device=mix.device)[None] < self.frames(samples)[:, None]
            padded = padded * (torch.arange(padded.shape[1], device=mix.device)[None] < samples[:, None])
        feats = self.encoder(padded)
        est = self.masknet(feats, clue, mask)
        if est.dim() == 3:  # one output
            est = est[:, None]
        if mask is not None:  # frames past a mixture's end (partly real) must not leak back
            est = est * mask[:, None, None, :]
        S = est.shape[1]
        masked = (feats[:, None] * est).reshape(B * S, *feats.shape[1:])
        out = self.decoder(masked).reshape(B, S, -1)[..., :T]
        if lengths is not None:
            out = out * (torch.arange(T, device=mix.device)[None, None] < samples[:, None, None])
        return out
