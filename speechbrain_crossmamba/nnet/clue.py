"""Clue encoders, and the query makers that put a clue on the axis it meets.

A clue tells the extractor what to extract. Four kinds are supported (enrollment speech has two
encoders):

- :class:`EnrollmentEncoder`: enrollment speech, encoded with the mixture's own encoder and a
  small network, then pooled to a vector;
- :class:`SpeakerEmbeddingClue`: enrollment speech through SpeechBrain's ``ECAPA_TDNN`` on
  ``Fbank``, which can be pretrained for speaker verification first;
- :class:`LabelEncoder`: a class label (one-hot index or multi-hot vector), as in Waveformer;
- :class:`VectorClue`: an external vector, e.g. a speaker embedding computed elsewhere;
- :class:`SequenceClue`: a time-aligned sequence, e.g. lip embeddings at 25 fps.

All have ``forward(clue, lengths=None)`` and return ``[B, d_clue]`` (vector clues) or
``[B, Lc, d_clue]`` (sequences). :class:`QueryMaker` then turns either into a sequence with the
length of the features it meets (``broadcast`` or Waveformer's ``modulate``).

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, AttentiveStatisticsPooling

from speechbrain_crossmamba.checks import check_finite, check_lengths, check_waveform
from speechbrain_crossmamba.nnet.cross_mamba import align_clue


def count_frames(encoder, num_samples):
    """Frames a SpeechBrain ``dual_path.Encoder`` gives for ``num_samples`` (int or tensor).

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

    Example
    -------
    >>> wav, samples, valid = checked_enrollment(torch.ones(2, 8000), torch.tensor([1.0, 0.5]), 8000, 0.5)
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
    valid = torch.arange(wav.shape[1], device=wav.device)[None] < samples[:, None]
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
            raise ValueError(f"pooling must be 'mean' or 'attentive', got {pooling!r}")
        self.encoder, self.pooling = encoder, pooling
        self.sample_rate, self.min_seconds = sample_rate, min_seconds
        self.norm = nn.LayerNorm(in_channels)
        self.inp = nn.Conv1d(in_channels, hidden, 1)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(num_layers))
        self.acts = nn.ModuleList(nn.PReLU() for _ in range(num_layers + 1))
        if pooling == "attentive":
            self.pool = AttentiveStatisticsPooling(hidden, attention_channels=hidden // 2)
            hidden = 2 * hidden
        self.out = nn.Linear(hidden, d_clue)

    def forward(self, wav, lengths=None):
        """``wav`` [B, T] enrollment, ``lengths`` relative lengths (B,) -> [B, d_clue]."""
        wav, samples, valid = checked_enrollment(wav, lengths, self.sample_rate, self.min_seconds)
        return self.embed(wav * valid, samples)

    def embed(self, wav, samples=None):
        """The clue of checked enrollments ``wav`` [B, T], zero after ``samples`` [B] (None:
        every sample is valid). No checks: the traceable part of :meth:`forward` (ONNX)."""
        feats = self.encoder(wav)
        mask, frames = 1.0, None
        if samples is not None:
            frames = count_frames(self.encoder, samples).clamp(min=1)
            mask = (torch.arange(feats.shape[-1], device=wav.device)[None] < frames[:, None])
            mask = mask[:, None, :].to(feats.dtype)
        h = self.acts[0](self.inp(self.norm(feats.transpose(1, 2)).transpose(1, 2)))
        for conv, act in zip(self.convs, self.acts[1:]):
            h = h + act(conv(h * mask))  # zero padding first: same as an unpadded conv
        if self.pooling == "mean":
            pooled = h.mean(-1) if frames is None else (h * mask).sum(-1) / mask.sum(-1)
        else:
            rel = None if frames is None else frames.to(h.dtype) / feats.shape[-1]
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
    >>> SpeakerEmbedding(channels=32, embedding_size=16)(torch.randn(2, 8000)).shape
    torch.Size([2, 16])
    """

    def __init__(self, sample_rate=8000, n_mels=40, channels=128, embedding_size=128, min_seconds=0.5):
        super().__init__()
        if channels % 8:
            raise ValueError(f"channels must be a multiple of 8 (Res2Net scale 8), got {channels}")
        self.config = {"sample_rate": sample_rate, "n_mels": n_mels, "channels": channels,
                       "embedding_size": embedding_size}
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
        """``wav`` [B, T] enrollment, ``lengths`` relative lengths (B,) -> [B, embedding_size]."""
        rate = self.config["sample_rate"]
        wav, samples, valid = checked_enrollment(wav, lengths, rate, self.min_seconds)
        if self.training and wav.shape[0] < 2:
            raise ValueError("the ECAPA speaker clue trains on batches of 2 or more (batch norm); "
                             "use batch_size >= 2 and drop_last: True in the train loader")
        feats = self.fbank(wav * valid)
        rel = samples.to(feats.dtype) / wav.shape[1]
        frames = torch.arange(feats.shape[1], device=wav.device)[None] < (rel * feats.shape[1]).ceil()[:, None]
        mean = (feats * frames[..., None]).sum(1, keepdim=True) / frames.sum(1)[:, None, None]
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

    def __init__(self, d_clue, sample_rate=8000, n_mels=40, channels=128, embedding_size=128, min_seconds=0.5):
        super().__init__()
        self.embedding_model = SpeakerEmbedding(sample_rate, n_mels, channels, embedding_size, min_seconds)
        self.out = nn.Linear(embedding_size, d_clue)

    def forward(self, wav, lengths=None):
        """``wav`` [B, T] enrollment, ``lengths`` relative lengths (B,) -> [B, d_clue]."""
        return self.out(self.embedding_model(wav, lengths))


class LabelEncoder(nn.Module):
    """Embeds a class label (index ``[B]`` or multi-hot ``[B, K]``) as in Waveformer.

    Arguments
    ---------
    num_classes : int
        Number of classes K.
    d_clue : int
        Size of the clue vector.
    hidden : int
        Width of the two-layer embedding MLP.

    Example
    -------
    >>> enc = LabelEncoder(num_classes=41, d_clue=16)
    >>> enc(torch.tensor([3, 40])).shape
    torch.Size([2, 16])
    >>> enc(torch.tensor([41]))
    Traceback (most recent call last):
    ...
    ValueError: class index 41 is out of range for 41 classes (valid: 0..40)
    """

    def __init__(self, num_classes, d_clue, hidden=256):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Sequential(
            nn.Linear(num_classes, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, d_clue), nn.LayerNorm(d_clue), nn.ReLU(),
        )  # fmt: skip

    def multi_hot(self, labels):
        """Turns indices [B] or multi-hot [B, K] into a checked float multi-hot [B, K]."""
        K = self.num_classes
        if not labels.is_floating_point():
            if labels.dim() != 1:
                raise ValueError(f"class indices must be [batch], got shape {tuple(labels.shape)}")
            bad = labels[(labels < 0) | (labels >= K)]
            if bad.numel():
                raise ValueError(
                    f"class index {int(bad[0])} is out of range for {K} classes (valid: 0..{K - 1})"
                )
            return F.one_hot(labels, K).float()
        if labels.dim() != 2 or labels.shape[1] != K:
            raise ValueError(f"a multi-hot label must be [batch, {K}], got {tuple(labels.shape)}")
        check_finite(labels, "label vector")
        if not bool((labels != 0).any(dim=1).all()):
            raise ValueError("a multi-hot label has no active class")
        return labels

    def forward(self, labels, lengths=None):
        """``labels`` [B] (int) or [B, K] (float) -> [B, d_clue]; ``lengths`` is ignored."""
        return self.embed(self.multi_hot(labels))


class VectorClue(nn.Module):
    """Projects an external clue vector of a declared size, e.g. a speaker embedding.

    Arguments
    ---------
    d_in : int
        Declared size of the incoming vector; other sizes raise a ``ValueError``.
    d_clue : int
        Output size.
    normalize : bool
        L2-normalise the vector first (usual for speaker embeddings).

    Example
    -------
    >>> VectorClue(192, 64)(torch.randn(2, 192)).shape
    torch.Size([2, 64])
    """

    def __init__(self, d_in, d_clue, normalize=True):
        super().__init__()
        self.d_in, self.normalize = d_in, normalize
        self.proj = nn.Linear(d_in, d_clue)

    def forward(self, vec, lengths=None):
        """``vec`` [B, d_in] (or [B, 1, d_in]) -> [B, d_clue]; ``lengths`` is ignored."""
        if vec.dim() == 3 and vec.shape[1] == 1:
            vec = vec[:, 0]
        if vec.dim() != 2 or vec.shape[1] != self.d_in:
            raise ValueError(f"clue vector must be [batch, {self.d_in}], got {tuple(vec.shape)}")
        check_finite(vec, "clue vector")
        return self.embed(vec)

    def embed(self, vec):
        """The clue of a checked vector [B, d_in] (no checks: traceable, for ONNX)."""
        return self.proj(F.normalize(vec, dim=-1) if self.normalize else vec)


class SequenceClue(nn.Module):
    """Projects a time-aligned clue sequence, e.g. lip-video embeddings at 25 fps.

    The sequence keeps its own rate here; :class:`QueryMaker` interpolates it to the axis it
    meets (encoder frames, or the chunk axis of a dual-path model).

    Example
    -------
    >>> SequenceClue(512, 64)(torch.randn(2, 75, 512)).shape
    torch.Size([2, 75, 64])
    """

    def __init__(self, d_in, d_clue):
        super().__init__()
        self.d_in = d_in
        self.proj = nn.Linear(d_in, d_clue)

    def forward(self, seq, lengths=None):
        """``seq`` [B, Lc, d_in] -> [B, Lc, d_clue]; ``lengths`` is ignored."""
        if seq.dim() != 3 or seq.shape[2] != self.d_in or seq.shape[1] == 0:
            raise ValueError(
                f"clue sequence must be [batch, frames>0, {self.d_in}], got {tuple(seq.shape)}"
            )
        check_finite(seq, "clue sequence")
        return self.proj(seq)


class QueryMaker(nn.Module):
    """Turns a clue (vector or sequence) into a query sequence on the axis of ``x``.

    - ``broadcast``: repeat a vector along time (a sequence is interpolated to ``x``'s length);
      the output size is ``d_clue``.
    - ``modulate``: Waveformer's query, ``q_t = W·e ⊙ x_t``: time-varying and mixture-dependent;
      the output size is ``d_model``.

    Arguments
    ---------
    mode : str
        ``"broadcast"`` or ``"modulate"``.
    d_clue : int
        Clue size.
    d_model : int
        Size of ``x`` (needed by ``modulate``).

    Example
    -------
    >>> q = QueryMaker("modulate", d_clue=8, d_model=16)
    >>> q(torch.randn(2, 8), torch.randn(2, 50, 16)).shape
    torch.Size([2, 50, 16])
    >>> QueryMaker("broadcast", 8)(torch.randn(2, 10, 8), torch.randn(2, 50, 16)).shape
    torch.Size([2, 50, 8])
    """

    def __init__(self, mode="broadcast", d_clue=None, d_model=None):
        super().__init__()
        if mode not in ("broadcast", "modulate"):
            raise ValueError(f"query mode must be 'broadcast' or 'modulate', got {mode!r}")
        self.mode = mode
        self.out_dim = d_model if mode == "modulate" else d_clue
        self.proj = nn.Linear(d_clue, d_model, bias=False) if mode == "modulate" else None

    def forward(self, clue, x):
        """``clue`` [B, C] or [B, Lc, C]; ``x`` [B, L, N] -> query [B, L, out_dim]."""
        if clue.dim() == 2:
            clue = clue[:, None, :].expand(-1, x.shape[1], -1)
        else:
            clue = align_clue(clue, x.shape[1], interpolate=True)
        return self.proj(clue) * x if self.mode == "modulate" else clue
