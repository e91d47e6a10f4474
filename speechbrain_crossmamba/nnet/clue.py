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

The two enrollment encoders live in :mod:`.enrollment_clue` and are re-exported here, so
``speechbrain_crossmamba.nnet.clue.EnrollmentEncoder`` and the others keep their paths.

Authors
 * speechbrain-crossmamba contributors
"""

import torch  # noqa: F401  (used by the doctest examples)
import torch.nn as nn
import torch.nn.functional as F

from speechbrain_crossmamba.checks import check_finite
from speechbrain_crossmamba.nnet.cross_mamba import align_clue
from speechbrain_crossmamba.nnet.enrollment_clue import (  # noqa: F401
    EnrollmentEncoder,
    SpeakerEmbedding,
    SpeakerEmbeddingClue,
    checked_enrollment,
    count_frames,
)


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
        """Turns indices or multi-hot labels into a checked float multi-hot.

        Arguments
        ---------
        labels : torch.Tensor
            Class indices [B] (integer) or multi-hot [B, K] (float).

        Returns
        -------
        torch.Tensor
            [B, K] float multi-hot.
        """
        K = self.num_classes
        if not labels.is_floating_point():
            if labels.dim() != 1:
                raise ValueError(
                    f"class indices must be [batch], got shape {tuple(labels.shape)}"
                )
            bad = labels[(labels < 0) | (labels >= K)]
            if bad.numel():
                raise ValueError(
                    f"class index {int(bad[0])} is out of range for {K} classes (valid: 0..{K - 1})"
                )
            return F.one_hot(labels, K).float()
        if labels.dim() != 2 or labels.shape[1] != K:
            raise ValueError(
                f"a multi-hot label must be [batch, {K}], got {tuple(labels.shape)}"
            )
        check_finite(labels, "label vector")
        if not bool((labels != 0).any(dim=1).all()):
            raise ValueError("a multi-hot label has no active class")
        return labels

    def forward(self, labels, lengths=None):
        """Embeds labels.

        Arguments
        ---------
        labels : torch.Tensor
            Class indices [B] (integer) or multi-hot [B, K] (float).
        lengths : torch.Tensor, optional
            Ignored (the clue has no padding).

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
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
        """Checks and projects clue vectors.

        Arguments
        ---------
        vec : torch.Tensor
            [B, d_in] (or [B, 1, d_in]).
        lengths : torch.Tensor, optional
            Ignored (the clue has no padding).

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
        if vec.dim() == 3 and vec.shape[1] == 1:
            vec = vec[:, 0]
        if vec.dim() != 2 or vec.shape[1] != self.d_in:
            raise ValueError(
                f"clue vector must be [batch, {self.d_in}], got {tuple(vec.shape)}"
            )
        check_finite(vec, "clue vector")
        return self.embed(vec)

    def embed(self, vec):
        """The clue of checked vectors (no checks: traceable, for ONNX).

        Arguments
        ---------
        vec : torch.Tensor
            [B, d_in].

        Returns
        -------
        torch.Tensor
            The clue [B, d_clue].
        """
        return self.proj(F.normalize(vec, dim=-1) if self.normalize else vec)


class SequenceClue(nn.Module):
    """Projects a time-aligned clue sequence, e.g. lip-video embeddings at 25 fps.

    The sequence keeps its own rate here; :class:`QueryMaker` interpolates it to the axis it
    meets (encoder frames, or the chunk axis of a dual-path model).

    Arguments
    ---------
    d_in : int
        Size of the incoming frames; other sizes raise a ``ValueError``.
    d_clue : int
        Output size.

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
        """Checks and projects clue sequences.

        Arguments
        ---------
        seq : torch.Tensor
            [B, Lc, d_in].
        lengths : torch.Tensor, optional
            Ignored (unused).

        Returns
        -------
        torch.Tensor
            [B, Lc, d_clue].
        """
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
    >>> QueryMaker("broadcast", 8)(
    ...     torch.randn(2, 10, 8), torch.randn(2, 50, 16)
    ... ).shape
    torch.Size([2, 50, 8])
    """

    def __init__(self, mode="broadcast", d_clue=None, d_model=None):
        super().__init__()
        if mode not in ("broadcast", "modulate"):
            raise ValueError(
                f"query mode must be 'broadcast' or 'modulate', got {mode!r}"
            )
        self.mode = mode
        self.out_dim = d_model if mode == "modulate" else d_clue
        self.proj = (
            nn.Linear(d_clue, d_model, bias=False)
            if mode == "modulate"
            else None
        )

    def forward(self, clue, x):
        """The query on the axis of ``x``.

        Arguments
        ---------
        clue : torch.Tensor
            [B, C] vector or [B, Lc, C] sequence (interpolated to L).
        x : torch.Tensor
            The features it meets, [B, L, N].

        Returns
        -------
        torch.Tensor
            The query [B, L, out_dim].
        """
        if clue.dim() == 2:
            clue = clue[:, None, :].expand(-1, x.shape[1], -1)
        else:
            clue = align_clue(clue, x.shape[1], interpolate=True)
        return self.proj(clue) * x if self.mode == "modulate" else clue
