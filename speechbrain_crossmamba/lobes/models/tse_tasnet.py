"""A single-path clue-conditioned mask network in the Mamba-TasNet style.

A dual-path model keeps every sequence short (K frames, or L/K chunks), where attention is
cheap. This host runs its layers over the *whole* frame sequence, where the linear cost of
(Cross)Mamba pays off: encoder, bottleneck, ``num_layers`` sequence layers with fusion points
before the chosen ones, then the mask. Its Transformer twin (``block: TransformerBlock``,
``fusion: CrossAttentionFusion``) is the quadratic baseline.

Authors
 * speechbrain-crossmamba contributors
"""

import torch  # noqa: F401  (used by the doctest example)
import torch.nn as nn

from speechbrain.lobes.models.dual_path import select_norm
from speechbrain_crossmamba.lobes.models.host_parts import (
    build,
    fusion_points,
    layer_indices,
    masked_norm,
    run_sequence_model,
)


class TSESinglePathModel(nn.Module):
    """Single-path mask network conditioned on a clue: ``(feats, clue, mask) -> mask``.

    Arguments
    ---------
    in_channels : int
        Channels of the encoder output.
    out_channels : int
        Channels of the sequence layers (N).
    block : nn.Module or factory
        One sequence layer ``[B, L, N] -> [B, L, N]`` (e.g. ``SBMambaBlock(num_layers=1, ...)``),
        copied ``num_layers`` times.
    num_layers : int
        Number of sequence layers.
    fusion : nn.Module or factory
        A fusion module of ``nnet.fusion``, copied for each fusion point.
    query : QueryMaker or factory, optional
        How a vector clue becomes a query sequence (default: broadcast).
    fusion_layers : str or list
        Layers preceded by a fusion point: ``"all"``, ``"first"`` or indices.
    norm : str
        Input norm (``"ln"`` global, ``"cln"`` per frame), as SpeechBrain's ``select_norm``.
    num_spks : int
        Masks predicted: 1 (``[B, N, L]``), or 2, the target first (``[B, 2, N, L]``).
    fusion_gate : bool
        Zero-initialised gates on the fusion points (see ``FusionPoint``).
    gate_scale : float
        How fast the gates can open (see ``FusionPoint``).

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.mamba import SBMambaBlock
    >>> from speechbrain_crossmamba.nnet.fusion import CrossMambaFusion
    >>> net = TSESinglePathModel(
    ...     32,
    ...     16,
    ...     SBMambaBlock(1, 16, d_state=4),
    ...     num_layers=2,
    ...     fusion=CrossMambaFusion(1, 16, 8, d_state=4),
    ...     fusion_layers="first",
    ... )
    >>> net(torch.randn(2, 32, 100), torch.randn(2, 8)).shape
    torch.Size([2, 32, 100])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        block,
        num_layers,
        fusion,
        query=None,
        fusion_layers="all",
        norm="ln",
        num_spks=1,
        fusion_gate=False,
        gate_scale=1.0,
    ):
        super().__init__()
        self.norm = select_norm(norm, in_channels, 3)
        self.conv1d = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.layers = nn.ModuleList(build(block) for _ in range(num_layers))
        keys = map(str, layer_indices(fusion_layers, num_layers))
        self.fusions = fusion_points(
            fusion, query, keys, gate=fusion_gate, gate_scale=gate_scale
        )
        self.num_spks = num_spks
        self.prelu = nn.PReLU()
        self.mask_conv = nn.Conv1d(out_channels, in_channels * num_spks, 1)
        self.activation = nn.ReLU()

    def forward(self, x, clue, mask=None):
        """Predicts the masks.

        Arguments
        ---------
        x : torch.Tensor
            Encoder output [B, in_channels, L].
        clue : torch.Tensor or None
            Encoded clue [B, C] or [B, Lc, C]; None bypasses the fusion points.
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, in_channels, L], or [B, num_spks, in_channels, L].
        """
        fmask = None if mask is None else mask[:, None, :].to(x.dtype)
        x = self.conv1d(masked_norm(self.norm, x, fmask)).transpose(1, 2)
        for i, layer in enumerate(self.layers):
            if str(i) in self.fusions:
                x = self.fusions[str(i)](x, clue, mask)
            x = run_sequence_model(layer, x, mask)
        x = self.activation(self.mask_conv(self.prelu(x.transpose(1, 2))))
        return (
            x
            if self.num_spks == 1
            else x.reshape(x.shape[0], self.num_spks, -1, x.shape[-1])
        )
