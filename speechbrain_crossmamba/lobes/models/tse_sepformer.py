"""A clue-conditioned SepFormer: SpeechBrain's ``Dual_Path_Model`` with fusion points.

The model reuses ``Dual_Path_Model`` (its bottleneck, segmentation, dual computation blocks,
overlap-add and gated output) and adds, at configurable places of each dual-path layer, a
:class:`~speechbrain_crossmamba.lobes.models.extractor.FusionPoint`: a query maker and any
fusion module of ``nnet.fusion``. It predicts one mask (``num_spks=1``), or with
``num_spks=2`` the target's and the rest's (the warm start: separation first, then the clue).

- ``fusion_at="intra"``: the clue meets each chunk (K frames) before the intra-chunk model.
- ``fusion_at="inter"``: the clue meets the chunk axis (S chunks) before the inter-chunk model,
  AV-SepFormer's position, where a 25 fps clue lines up with the chunks.
- ``fusion_at="both"``, and ``fusion_layers="all" | "first" | [indices]``.

Padding masks reach the sequence models that accept ``mask=`` (``SBMambaBlock``,
``TransformerBlock``) and the global layer norms, so a padded batch gives each item the same
output as that item alone.

Authors
 * speechbrain-crossmamba contributors
"""

import torch

from speechbrain.lobes.models.dual_path import Dual_Path_Model
from speechbrain_crossmamba.lobes.models.host_parts import (
    build,
    fusion_points,
    layer_indices,
    masked_norm,
    run_sequence_model,
)
from speechbrain_crossmamba.nnet.cross_mamba import align_clue

POSITIONS = {
    "intra": ("intra",),
    "inter": ("inter",),
    "both": ("intra", "inter"),
}


class TSEDualPathModel(Dual_Path_Model):
    """Dual-path mask network conditioned on a clue: ``(feats, clue, mask) -> mask``.

    Arguments
    ---------
    in_channels : int
        Channels of the encoder output.
    out_channels : int
        Channels inside the dual-path blocks (N).
    intra_model, inter_model : nn.Module or factory
        Sequence models ``[B, L, N] -> [B, L, N]`` (``SBMambaBlock``, ``TransformerBlock``,
        SpeechBrain's ``SBTransformerBlock``...), copied for each layer.
    fusion : nn.Module or factory
        A fusion module of ``nnet.fusion``, copied for each fusion point.
    query : QueryMaker or factory, optional
        How a vector clue becomes a query sequence (default: broadcast).
    fusion_at : str
        ``"intra"``, ``"inter"`` or ``"both"``.
    fusion_layers : str or list
        ``"all"``, ``"first"`` or a list of layer indices.
    num_spks : int
        Masks predicted: 1, or 2 (the target first, then the rest of the mixture), as
        SpeechBrain's ``Dual_Path_Model`` (``[B, N, L]`` for 1, ``[B, num_spks, N, L]`` else).
    fusion_gate : bool
        Zero-initialised gates on the fusion points: the model starts clue-blind, as the
        identity at every fusion point (see ``FusionPoint``).
    gate_scale : float
        How fast the gates can open (see ``FusionPoint``).
    num_layers, norm, K, max_length
        As SpeechBrain's ``Dual_Path_Model``.
    skip_around_intra, linear_layer_after_inter_intra, use_global_pos_enc
        As SpeechBrain's ``Dual_Path_Model``.

    Example
    -------
    >>> from speechbrain_crossmamba.nnet.mamba import SBMambaBlock
    >>> from speechbrain_crossmamba.nnet.fusion import CrossMambaFusion
    >>> block = SBMambaBlock(1, 16, d_state=4)
    >>> net = TSEDualPathModel(
    ...     32,
    ...     16,
    ...     block,
    ...     block,
    ...     CrossMambaFusion(1, 16, 8, d_state=4),
    ...     num_layers=2,
    ...     K=20,
    ...     fusion_at="both",
    ... )
    >>> net(torch.randn(2, 32, 100), torch.randn(2, 8)).shape
    torch.Size([2, 32, 100])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        intra_model,
        inter_model,
        fusion,
        query=None,
        fusion_at="intra",
        fusion_layers="all",
        num_spks=1,
        fusion_gate=False,
        gate_scale=1.0,
        num_layers=1,
        norm="ln",
        K=200,
        skip_around_intra=True,
        linear_layer_after_inter_intra=True,
        use_global_pos_enc=False,
        max_length=20000,
    ):
        if fusion_at not in POSITIONS:
            raise ValueError(
                f"fusion_at must be 'intra', 'inter' or 'both', got {fusion_at!r}"
            )
        super().__init__(
            in_channels,
            out_channels,
            build(intra_model),
            build(inter_model),
            num_layers=num_layers,
            norm=norm,
            K=K,
            num_spks=num_spks,
            skip_around_intra=skip_around_intra,
            linear_layer_after_inter_intra=linear_layer_after_inter_intra,
            use_global_pos_enc=use_global_pos_enc,
            max_length=max_length,
        )
        keys = [
            f"{i}_{w}"
            for i in layer_indices(fusion_layers, num_layers)
            for w in POSITIONS[fusion_at]
        ]
        self.fusions = fusion_points(
            fusion, query, keys, gate=fusion_gate, gate_scale=gate_scale
        )

    def _clue_rows(self, clue, where, frames, K, S):
        """The clue on the rows of the intra ([B*S, K]) or inter ([B*K, S]) sequences."""
        if (
            clue is None
        ):  # plain separation: the fusion points pass their input through
            return None
        if (
            clue.dim() == 2
        ):  # a vector: the query maker broadcasts it along the axis
            return clue.repeat_interleave(S if where == "intra" else K, dim=0)
        if where == "inter":  # a sequence meets the chunk axis
            return align_clue(clue, S, interpolate=True).repeat_interleave(
                K, dim=0
            )
        seq = align_clue(clue, frames, interpolate=True).transpose(1, 2)
        seg, _ = self._Segmentation(seq, self.K)  # [B, C, K, S]
        return seg.permute(0, 3, 2, 1).reshape(-1, K, seg.shape[1])

    def _path(self, i, where, block, rows, clue, frames, K, S, mask):
        """Fusion point (if any), sequence model and linear layer on the intra or inter rows."""
        key = f"{i}_{where}"
        if key in self.fusions:
            rows = self.fusions[key](
                rows, self._clue_rows(clue, where, frames, K, S), mask
            )
        rows = run_sequence_model(getattr(block, f"{where}_mdl"), rows, mask)
        if block.linear_layer_after_inter_intra:
            rows = getattr(block, f"{where}_linear")(rows)
        return rows

    def _dual_block(self, i, block, x, clue, frames, mask):
        """SpeechBrain's ``Dual_Computation_Block`` with fusion points and padding masks.

        ``mask`` [B, 1, K, S] marks the valid frames of the chunks (chunk padding is invalid).
        """
        B, N, K, S = x.shape
        m_intra = mask[:, 0].transpose(1, 2).reshape(B * S, K) > 0.5
        m_inter = mask[:, 0].reshape(B * K, S) > 0.5
        intra = x.permute(0, 3, 2, 1).reshape(B * S, K, N)
        intra = self._path(
            i, "intra", block, intra, clue, frames, K, S, m_intra
        )
        intra = intra.reshape(B, S, K, N).permute(0, 3, 2, 1)
        if block.norm is not None:
            intra = masked_norm(block.intra_norm, intra, mask)
        if block.skip_around_intra:
            intra = intra + x
        inter = intra.permute(0, 2, 3, 1).reshape(B * K, S, N)
        inter = self._path(
            i, "inter", block, inter, clue, frames, K, S, m_inter
        )
        inter = inter.reshape(B, K, S, N).permute(0, 3, 1, 2)
        if block.norm is not None:
            inter = masked_norm(block.inter_norm, inter, mask)
        return inter + intra

    def forward(self, x, clue, mask=None):
        """Estimates the target's mask.

        Arguments
        ---------
        x : torch.Tensor
            Encoded mixture [B, in_channels, L].
        clue : torch.Tensor or None
            Encoded clue, a vector [B, C] or a sequence [B, Lc, C]; None bypasses the fusion
            points (plain separation).
        mask : torch.Tensor, optional
            Valid frames [B, L] (bool).

        Returns
        -------
        torch.Tensor
            The mask [B, in_channels, L], or [B, num_spks, in_channels, L].
        """
        B, _, frames = x.shape
        if (
            mask is None
        ):  # chunk padding must never count, with or without batch padding
            mask = torch.ones(B, frames, dtype=torch.bool, device=x.device)
        fmask = mask[:, None, :].to(x.dtype)
        x = self.conv1d(masked_norm(self.norm, x, fmask))
        if self.use_global_pos_enc:
            x = self.pos_enc(x.transpose(1, -1)).transpose(1, -1) + x * (
                x.size(1) ** 0.5
            )
        x, gap = self._Segmentation(x, self.K)
        seg_mask = self._Segmentation(fmask, self.K)[0]
        for i, block in enumerate(self.dual_mdl):
            x = self._dual_block(i, block, x, clue, frames, seg_mask)
        x = self.conv2d(self.prelu(x))  # [B, N * spks, K, S]
        x = x.reshape(B * self.num_spks, -1, *x.shape[2:])
        x = self._over_add(x, gap)
        x = self.end_conv1x1(self.output(x) * self.output_gate(x))
        x = self.activation(x)
        return (
            x
            if self.num_spks == 1
            else x.reshape(B, self.num_spks, *x.shape[1:])
        )
