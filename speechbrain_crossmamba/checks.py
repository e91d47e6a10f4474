"""Input checks that turn bad audio, clues and model sources into one-line errors.

Every public model entry point validates its inputs here, so that a user sees
``ValueError: mixture must be mono ...`` instead of a shape error deep in a layer, and never
a NaN output.

Authors
 * speechbrain-crossmamba contributors
"""

import os
import re

import torch


def check_finite(x, name):
    """Raises if ``x`` holds NaN or Inf.

    Arguments
    ---------
    x : torch.Tensor
        The tensor to check.
    name : str
        What the tensor is, used in the error message.

    Example
    -------
    >>> check_finite(torch.tensor([float("nan")]), "mixture")
    Traceback (most recent call last):
    ...
    ValueError: mixture contains NaN or Inf values
    """
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_waveform(wav, name, min_samples=1):
    """Checks a batch of mono waveforms ``[B, T]`` and returns it.

    A ``[B, 1, T]`` tensor (one channel) is accepted and squeezed; more channels, an empty
    signal, fewer than ``min_samples`` samples, or NaN/Inf raise a ``ValueError``.

    Arguments
    ---------
    wav : torch.Tensor
        Waveforms, [B, T] or [B, 1, T].
    name : str
        What the signal is ("mixture", "enrollment"), used in the error message.
    min_samples : int
        Shortest accepted signal.

    Returns
    -------
    torch.Tensor
        The waveforms as [B, T].

    Example
    -------
    >>> check_waveform(torch.zeros(2, 1, 100), "mixture").shape
    torch.Size([2, 100])
    >>> check_waveform(torch.zeros(2, 2, 100), "mixture")
    Traceback (most recent call last):
    ...
    ValueError: mixture must be mono [batch, time]; got 2 channels (shape (2, 2, 100))
    """
    if not torch.is_tensor(wav) or not wav.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor [batch, time]"
        )
    if wav.dim() == 3:
        if wav.shape[1] != 1:
            raise ValueError(
                f"{name} must be mono [batch, time]; got {wav.shape[1]} channels "
                f"(shape {tuple(wav.shape)})"
            )
        wav = wav[:, 0]
    if wav.dim() != 2:
        raise ValueError(
            f"{name} must be [batch, time]; got shape {tuple(wav.shape)}"
        )
    if wav.shape[0] == 0 or wav.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(wav.shape)})")
    if wav.shape[1] < min_samples:
        raise ValueError(
            f"{name} has {wav.shape[1]} samples, fewer than the minimum of {min_samples}"
        )
    check_finite(wav, name)
    return wav


def check_lengths(lengths, batch, name):
    """Checks SpeechBrain relative lengths: ``None`` or a (B,) tensor in (0, 1].

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths, one per batch element.
    batch : int
        The batch size the lengths must match.
    name : str
        What the signal is, used in the error message.

    Returns
    -------
    torch.Tensor or None
        ``lengths``, unchanged.

    Example
    -------
    >>> check_lengths(torch.tensor([1.0, 0.0]), 2, "mixture")
    Traceback (most recent call last):
    ...
    ValueError: mixture lengths must be relative lengths in (0, 1], one per batch element
    """
    if lengths is None:
        return None
    if (
        not torch.is_tensor(lengths)
        or lengths.shape != (batch,)
        or not bool(((lengths > 0) & (lengths <= 1)).all())
    ):
        raise ValueError(
            f"{name} lengths must be relative lengths in (0, 1], one per batch element"
        )
    return lengths


def check_same_batch(mixture, clue, clue_name="clue"):
    """Raises if the clue's batch size differs from the mixture's.

    Arguments
    ---------
    mixture : torch.Tensor
        The mixture batch, batch first.
    clue : torch.Tensor
        The clue batch, batch first.
    clue_name : str
        What the clue is, used in the error message.

    Example
    -------
    >>> check_same_batch(torch.zeros(2, 8), torch.zeros(3, 4))
    Traceback (most recent call last):
    ...
    ValueError: clue batch size 3 does not match mixture batch size 2
    """
    if clue.shape[0] != mixture.shape[0]:
        raise ValueError(
            f"{clue_name} batch size {clue.shape[0]} does not match mixture batch size "
            f"{mixture.shape[0]}"
        )


def is_hub_id(source):
    """Whether ``source`` names a hub model (``owner/name``) rather than a local folder.

    Arguments
    ---------
    source : str
        What was given to ``from_hparams``.

    Returns
    -------
    bool
        True for ``owner/name`` when no local folder ``owner`` exists.

    Example
    -------
    >>> is_hub_id("speechbrain/sepformer-wsj02mix")
    True
    >>> [
    ...     is_hub_id(s)
    ...     for s in ("results/run/1234/pretrained", "./model", "~/m", "model")
    ... ]
    [False, False, False, False]
    """
    parts = source.split("/")
    return (
        len(parts) == 2
        and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", p) for p in parts)
        and not os.path.isdir(os.path.expanduser(parts[0]))
    )
