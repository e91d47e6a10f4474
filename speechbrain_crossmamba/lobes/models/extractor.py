"""The target extractor: waveform and clue in, target waveform out; and what its hosts share.

:class:`TargetExtractor` wraps a SpeechBrain ``dual_path.Encoder``, a clue encoder, a clue-aware
mask network (``TSEDualPathModel`` or ``TSESinglePathModel``) and a ``dual_path.Decoder``. It
checks its inputs, keeps padded frames out of every valid one, and returns the estimate with
the mixture's length.

What the hosts share (``build``, ``choose``, ``FusionPoint``, ...) lives in
:mod:`.host_parts` and is re-exported here, so YAMLs keep naming
``speechbrain_crossmamba.lobes.models.extractor.choose``.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain_crossmamba.checks import (
    check_lengths,
    check_same_batch,
    check_waveform,
)
from speechbrain_crossmamba.lobes.models.host_parts import (  # noqa: F401
    FusionPoint,
    build,
    choose,
    fusion_points,
    layer_indices,
    masked_norm,
    run_sequence_model,
)


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
    >>> from speechbrain_crossmamba.lobes.models.tse_tasnet import (
    ...     TSESinglePathModel,
    ... )
    >>> from speechbrain_crossmamba.nnet.mamba import SBMambaBlock
    >>> masknet = TSESinglePathModel(
    ...     16, 16, SBMambaBlock(1, 16, d_state=4), 2, FiLMFusion(16, 8)
    ... )
    >>> model = TargetExtractor(
    ...     Encoder(16, 16),
    ...     masknet,
    ...     Decoder(16, 1, 16, stride=8, bias=False),
    ...     LabelEncoder(num_classes=5, d_clue=8),
    ... )
    >>> model(torch.randn(2, 4001), torch.tensor([0, 3])).shape
    torch.Size([2, 4001])
    """

    def __init__(
        self, encoder, masknet, decoder, clue_encoder, sample_rate=8000
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.masknet = masknet if isinstance(masknet, nn.Module) else masknet()
        self.clue_encoder = (
            clue_encoder
            if isinstance(clue_encoder, nn.Module)
            else clue_encoder()
        )
        self.sample_rate = sample_rate
        self.kernel = encoder.conv1d.kernel_size[0]
        self.stride = encoder.conv1d.stride[0]

    def frames(self, samples):
        """Encoder frames needed to cover ``samples`` samples, at least one.

        Arguments
        ---------
        samples : int or torch.Tensor
            Sample counts.

        Returns
        -------
        int or torch.Tensor
            Frame counts.
        """
        excess = samples - self.kernel
        if torch.is_tensor(excess):
            return (-(-excess.clamp(min=0) // self.stride)) + 1
        return -(-max(excess, 0) // self.stride) + 1

    def encode_clue(self, clue, clue_lengths=None):
        """Runs the clue encoder.

        Arguments
        ---------
        clue : torch.Tensor
            The clue, as the clue encoder takes it (a ``ValueError`` when None).
        clue_lengths : torch.Tensor, optional
            Relative lengths of enrollment clues.

        Returns
        -------
        torch.Tensor
            A vector [B, C] or a sequence [B, Lc, C].
        """
        if clue is None:
            raise ValueError(
                "no clue given: pass the enrollment, label or embedding of the target"
            )
        return self.clue_encoder(clue, lengths=clue_lengths)

    def forward(
        self,
        mix,
        clue,
        lengths=None,
        clue_lengths=None,
        all_outputs=False,
        return_clue=False,
    ):
        """Estimates the target.

        Arguments
        ---------
        mix : torch.Tensor
            Mixture waveforms [B, T] (or [B, 1, T]).
        clue : torch.Tensor
            The clue, as the clue encoder takes it (enrollment [B, T_e], labels [B], etc.); None
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
        torch.Tensor or tuple
            The estimated target, [B, T] (or [B, S, T] with ``all_outputs``); with
            ``return_clue``, (estimate, encoded clue).
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

        Arguments
        ---------
        mix : torch.Tensor
            Mixture waveforms [B, T].
        lengths : torch.Tensor, optional
            Relative lengths (B,).

        Returns
        -------
        torch.Tensor
            [B, S, T], one output per source.

        Example
        -------
        >>> from hyperpyyaml import load_hyperpyyaml
        >>> hp = load_hyperpyyaml(
        ...     open("hparams/models/tse.yaml"), {"N": 16, "num_spks": 2}
        ... )
        >>> hp["extractor"].separate(torch.randn(2, 4000)).shape
        torch.Size([2, 2, 4000])
        """
        return self.forward(mix, None, lengths, all_outputs=True)

    def _run(self, mix, clue, lengths):
        """Encoder, mask network (clue None: no fusion) and decoder: [B, T] -> [B, S, T]."""
        B, T = mix.shape
        lengths = check_lengths(lengths, B, "mixture")
        total = self.frames(T)
        padded = torch.nn.functional.pad(
            mix, (0, (total - 1) * self.stride + self.kernel - T)
        )
        mask = None
        if lengths is not None:
            samples = torch.round(lengths * T).long()
            mask = (
                torch.arange(total, device=mix.device)[None]
                < self.frames(samples)[:, None]
            )
            padded = padded * (
                torch.arange(padded.shape[1], device=mix.device)[None]
                < samples[:, None]
            )
        feats = self.encoder(padded)
        est = self.masknet(feats, clue, mask)
        if est.dim() == 3:  # one output
            est = est[:, None]
        if (
            mask is not None
        ):  # frames past a mixture's end (partly real) must not leak back
            est = est * mask[:, None, None, :]
        S = est.shape[1]
        masked = (feats[:, None] * est).reshape(B * S, *feats.shape[1:])
        out = self.decoder(masked).reshape(B, S, -1)[..., :T]
        if lengths is not None:
            out = out * (
                torch.arange(T, device=mix.device)[None, None]
                < samples[:, None, None]
            )
        return out
