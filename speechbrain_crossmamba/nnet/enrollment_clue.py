"""Clue encoders of enrollment speech: the target speaker's voice as a clue vector.

- :class:`EnrollmentEncoder`: the enrollment through the mixture's own encoder and a small
  residual conv network, pooled over its valid frames;
- :class:`SpeakerEmbedding`: SpeechBrain's ``ECAPA_TDNN`` on ``Fbank``, which
  ``train_speaker.py`` can pretrain for speaker verification;
- :class:`SpeakerEmbeddingClue`: a :class:`SpeakerEmbedding` and a linear map to the clue size.

Both clue encoders check their enrollments with :func:`checked_enrollment` (shape, finite
values, minimum length, silence). They are re-exported by :mod:`.clue`, where the other clue
encoders and the query maker live.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn

from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import (
    ECAPA_TDNN,
    AttentiveStatisticsPooling,
)
from speechbrain_crossmamba.checks import check_lengths, check_waveform


def count_frames(encoder, num_samples):
    """Frames a SpeechBrain ``dual_path.Encoder`` gives for ``num_samples``.

    Arguments
    ---------
    encoder : speechbrain.lobes.models.dual_path.Encoder
        The encoder.
    num_samples : int or torch.Tensor
        Sample counts.

    Returns
    -------
    int or torch.Tensor
        Frame counts.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> count_frames(Encoder(kernel_size=16, out_channels=8), 8000)
    999
    """
    kernel, stride = encoder.conv1d.kernel_size[0], encoder.conv1d.stride[0]
    return (num_samples - kernel) // stride + 1


def checked_enrollment(wav, lengths, sample_rate, min_seconds):
    """Checks an enrollment batch; returns it, its lengths in samples and its validity mask.

    A NaN/Inf, a wrong shape, an enrollment shorter than ``min_seconds`` or a silent one
    raises a one-line ``ValueError`` naming the problem.

    Arguments
    ---------
    wav : torch.Tensor
        Enrollments [B, T] (or [B, 1, T]).
    lengths : torch.Tensor or None
        Relative lengths (B,).
    sample_rate : int
        Their sampling rate.
    min_seconds : float
        Shortest accepted enrollment.

    Returns
    -------
    tuple of torch.Tensor
        ``wav`` [B, T], lengths in samples [B] and the validity mask [B, T] (bool).

    Example
    -------
    >>> wav, samples, valid = checked_enrollment(
    ...     torch.ones(2, 8000), torch.tensor([1.0, 0.5]), 8000, 0.5
    ... )
    >>> samples.tolist(), valid.sum(1).tolist()
    ([8000, 4000], [8000, 4000])
    """
    min_samples = round(min_seconds * sample_rate)
    wav = check_waveform(wav, "enrollment")
    lengths = check_lengths(lengths, wav.shape[0], "enrollment")
    samples = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
    if lengths is not None:
        samples = torch.round(lengths * wav.shape[1]).long()
    if int(samples.min()) < min_samples:
        raise ValueError(
            f"enrollment is {int(samples.min()) / sample_rate:.2f} s long; the minimum "
            f"is {min_seconds:.2f} s ({min_samples} samples at {sample_rate} Hz)"
        )
    valid = (
        torch.arange(wav.shape[1], device=wav.device)[None] < samples[:, None]
    )
    if not bool((wav.abs() * valid).amax(dim=1).gt(0).all()):
        raise ValueError("enrollment is silent (all zeros); it carries no clue")
    return wav, samples, valid


class EnrollmentEncoder(nn.Module):
    """Encodes enrollment speech into a clue vector ``[B, d_clue]``.

    The waveform goes through the mixture's encoder (pass the same ``dual_path.Encoder`` object,
    so the two share weights), a per-frame LayerNorm, a small residual conv network, and a pooling
    over valid frames: masked mean (default) or attentive statistics pooling. Padding never counts,
    so a padded batch gives the same vectors as each enrollment alone.

    Arguments
    ---------
    encoder : speechbrain.lobes.models.dual_path.Encoder
        The mixture's encoder (shared).
    in_channels : int
        Channels of the encoder output.
    d_clue : int
        Size of the clue vector.
    hidden : int
        Channels of the conv network.
    num_layers : int
        Residual conv layers (kernel 3) after the 1x1 input conv.
    pooling : str
        ``"mean"`` (masked mean) or ``"attentive"`` (attentive statistics pooling).
    sample_rate : int
        Sample rate of the enrollment, used for the minimum length.
    min_seconds : float
        Shortest accepted enrollment; shorter ones raise a ``ValueError``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder
    >>> enc = EnrollmentEncoder(Encoder(16, 32), 32, d_clue=24, hidden=32)
    >>> enc(torch.randn(2, 8000), lengths=torch.tensor([1.0, 0.75])).shape
    torch.Size([2, 24])
    """

    def __init__(
        self,
        encoder,
        in_channels,
        d_clue,
        hidden=128,
        num_layers=2,
        pooling="mean",
        sample_rate=8000,
        min_seconds=0.5,
    ):
        super().__init__()
        if pooling not in ("mean", "attentive"):
            raise ValueError(
                f"pooling must be 'mean' or 'attentive', got {pooling!r}"
            )
        self.encoder, self.pooling = encoder, pooling
        self.sample_rate, self.min_seconds = sample_rate, min_seconds
        self.norm = nn.LayerNorm(in_channels)
        self.inp = nn.Conv1d(in_channels, hidden, 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(num_layers)
        )
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(num_layers + 1))
        if pooling == "attentive":
            self.pool = AttentiveStatisticsPooling(
                hidden, attention_channels=hidden // 2
            )
            hidden = 2 * hidden
        self.out = nn.Linear(hidden, d_clue)

    def forward(self, wav, lengths=None):
        """Checks and encodes enrollments.

        Arguments
        ---------
        wav : torch.Tensor
            Enrollment waveforms [B, T].
        lengths : torch.Tensor, optional
            Relative lengths (B,).

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
        wav, samples, valid = checked_enrollment(
            wav, lengths, self.sample_rate, self.min_seconds
        )
        return self.embed(wav * valid, samples)

    def embed(self, wav, samples=None):
        """The clue of checked enrollments; no checks: the traceable part of :meth:`forward` (ONNX).

        Arguments
        ---------
        wav : torch.Tensor
            Enrollments [B, T], zero after ``samples``.
        samples : torch.Tensor, optional
            Valid samples [B]; every sample is valid when None.

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
        feats = self.encoder(wav)
        mask, frames = 1.0, None
        if samples is not None:
            frames = count_frames(self.encoder, samples).clamp(min=1)
            mask = (
                torch.arange(feats.shape[-1], device=wav.device)[None]
                < frames[:, None]
            )
            mask = mask[:, None, :].to(feats.dtype)
        h = self.acts[0](
            self.inp(self.norm(feats.transpose(1, 2)).transpose(1, 2))
        )
        for conv, act in zip(self.convs, self.acts[1:]):
            h = h + act(
                conv(h * mask)
            )  # zero padding first: same as an unpadded conv
        if self.pooling == "mean":
            pooled = (
                h.mean(-1)
                if frames is None
                else (h * mask).sum(-1) / mask.sum(-1)
            )
        else:
            rel = (
                None if frames is None else frames.to(h.dtype) / feats.shape[-1]
            )
            pooled = self.pool(h, lengths=rel)[..., 0]
        return self.out(pooled)


class SpeakerEmbedding(nn.Module):
    """A speaker embedding ``[B, embedding_size]``: SpeechBrain's ``ECAPA_TDNN`` on ``Fbank``.

    The part of :class:`SpeakerEmbeddingClue` that ``train_speaker.py`` pretrains for speaker
    verification (``AdditiveAngularMargin`` over the training speakers). The filterbank is
    mean-normalised over the valid frames of each enrollment and the padding is zeroed; ECAPA's
    pooling uses the relative lengths (its convolutions still see the zeros at a padded end).
    ECAPA's batch norms need training batches of two or more.

    Arguments
    ---------
    sample_rate : int
        Sample rate of the enrollment.
    n_mels : int
        Mel bands of the filterbank.
    channels : int
        Channels of the SE-Res2Net blocks (a multiple of 8); the last layer has 3x.
    embedding_size : int
        Size of the embedding.
    min_seconds : float
        Shortest accepted enrollment; shorter ones raise a ``ValueError``.

    Example
    -------
    >>> SpeakerEmbedding(channels=32, embedding_size=16)(
    ...     torch.randn(2, 8000)
    ... ).shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        sample_rate=8000,
        n_mels=40,
        channels=128,
        embedding_size=128,
        min_seconds=0.5,
    ):
        super().__init__()
        if channels % 8:
            raise ValueError(
                f"channels must be a multiple of 8 (Res2Net scale 8), got {channels}"
            )
        self.config = {
            "sample_rate": sample_rate,
            "n_mels": n_mels,
            "channels": channels,
            "embedding_size": embedding_size,
        }
        self.min_seconds = min_seconds
        self.fbank = Fbank(sample_rate=sample_rate, n_mels=n_mels)
        self.ecapa = ECAPA_TDNN(
            n_mels,
            lin_neurons=embedding_size,
            channels=[channels] * 4 + [3 * channels],
            attention_channels=max(channels // 2, 8),
            se_channels=max(channels // 2, 8),
        )

    def forward(self, wav, lengths=None):
        """The speaker embeddings of enrollments.

        Arguments
        ---------
        wav : torch.Tensor
            Enrollment waveforms [B, T].
        lengths : torch.Tensor, optional
            Relative lengths (B,).

        Returns
        -------
        torch.Tensor
            [B, embedding_size].
        """
        rate = self.config["sample_rate"]
        wav, samples, valid = checked_enrollment(
            wav, lengths, rate, self.min_seconds
        )
        if self.training and wav.shape[0] < 2:
            raise ValueError(
                "the ECAPA speaker clue trains on batches of 2 or more (batch norm); "
                "use batch_size >= 2 and drop_last: True in the train loader"
            )
        feats = self.fbank(wav * valid)
        rel = samples.to(feats.dtype) / wav.shape[1]
        frames = (
            torch.arange(feats.shape[1], device=wav.device)[None]
            < (rel * feats.shape[1]).ceil()[:, None]
        )
        mean = (feats * frames[..., None]).sum(1, keepdim=True) / frames.sum(1)[
            :, None, None
        ]
        return self.ecapa((feats - mean) * frames[..., None], lengths=rel)[:, 0]


class SpeakerEmbeddingClue(nn.Module):
    """Encodes enrollment speech into a clue vector ``[B, d_clue]`` with a :class:`SpeakerEmbedding`.

    ``embedding_model`` (ECAPA_TDNN on Fbank) can be pretrained on its own, so that the clue
    knows speakers before extraction starts (``python train_speaker.py
    hparams/ecapa_synthspeakers.yaml``); a TSE run loads it with ``speaker_embedding_ckpt``.
    A linear map gives the clue size.

    Arguments
    ---------
    d_clue : int
        Size of the clue vector.
    sample_rate, n_mels, channels, embedding_size, min_seconds
        Those of :class:`SpeakerEmbedding`.

    Example
    -------
    >>> clue = SpeakerEmbeddingClue(d_clue=24, channels=32, embedding_size=16)
    >>> clue(torch.randn(2, 8000), lengths=torch.tensor([1.0, 0.75])).shape
    torch.Size([2, 24])
    """

    def __init__(
        self,
        d_clue,
        sample_rate=8000,
        n_mels=40,
        channels=128,
        embedding_size=128,
        min_seconds=0.5,
    ):
        super().__init__()
        self.embedding_model = SpeakerEmbedding(
            sample_rate, n_mels, channels, embedding_size, min_seconds
        )
        self.out = nn.Linear(embedding_size, d_clue)

    def forward(self, wav, lengths=None):
        """The clue of enrollments.

        Arguments
        ---------
        wav : torch.Tensor
            Enrollment waveforms [B, T].
        lengths : torch.Tensor, optional
            Relative lengths (B,).

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
        return self.out(self.embedding_model(wav, lengths))
