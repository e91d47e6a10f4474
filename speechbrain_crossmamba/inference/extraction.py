"""Pretrained target extraction: ``TargetSpeakerExtraction.from_hparams(source)``.

One class serves both clue kinds: a speaker model takes an enrollment utterance, a label model
(``clue_variant: label`` in its ``hyperparams.yaml``, with ``classes``) takes class names.

Authors
 * speechbrain-crossmamba contributors
"""

import logging
import os

import soundfile
import torch

from speechbrain.inference.interfaces import Pretrained
from speechbrain_crossmamba.checks import is_hub_id

logger = logging.getLogger(__name__)


class TargetSpeakerExtraction(Pretrained):
    """Extracts a target speaker (or sound class) from a mixture.

    Long inputs (over ``window_seconds``) are processed in overlapping windows with the same clue
    and recombined by overlap-add with complementary Hann fades, so memory stays bounded. Every
    window starts on the model's grid (see :meth:`window_grids`), so its frames (and dual-path
    chunks) are those of one pass over the whole input.

    Example
    -------
    >>> import tempfile
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from speechbrain_crossmamba.export import export_pretrained
    >>> hp = load_hyperpyyaml(
    ...     open("hparams/models/tse.yaml"), {"N": 16, "num_layers": 1}
    ... )
    >>> folder = tempfile.mkdtemp()
    >>> export_pretrained(
    ...     hp["extractor"], hp, "hparams/models/tse.yaml", folder
    ... )
    >>> model = TargetSpeakerExtraction.from_hparams(
    ...     source=folder, savedir=folder
    ... )
    >>> model.extract_batch(
    ...     torch.randn(2, 8000), clue=torch.randn(2, 8000)
    ... ).shape
    torch.Size([2, 8000])
    """

    MODULES_NEEDED = ["extractor"]
    window_seconds = 10.0
    overlap_seconds = 1.0

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """SpeechBrain's ``from_hparams``, but a local path that does not exist is an error.

        Only ``owner/name`` goes to the hub (one slash, and no local folder named ``owner``);
        any other source is a local folder, which must exist and hold ``hparams_file``, so a
        mistyped path (``results/run/1234/pretrained``, ``pretrained/<typo>``) fails with one
        line instead of a hub lookup.

        Arguments
        ---------
        source : str
            A pretrained folder or a hub id.
        hparams_file : str
            The hyperparameter file in it.
        **kwargs
            Passed to SpeechBrain's ``from_hparams`` (e.g. ``savedir``, ``run_opts``).

        Returns
        -------
        TargetSpeakerExtraction
            The loaded model.
        """
        source = str(source)
        if not is_hub_id(source):
            folder = os.path.expanduser(source)
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"no pretrained folder at {source}")
            if not os.path.isfile(os.path.join(folder, hparams_file)):
                raise FileNotFoundError(
                    f"no {hparams_file} in model folder {source}"
                )
            source = os.path.abspath(folder)
            kwargs.setdefault("savedir", source)
        model = super().from_hparams(
            source, hparams_file=hparams_file, **kwargs
        )
        missing = [
            name for name in cls.MODULES_NEEDED if name not in model.mods
        ]
        if missing:
            raise ValueError(
                f"{source}: hyperparams.yaml lacks modules {missing}"
            )
        return model

    @property
    def sample_rate(self):
        """The model's sampling rate."""
        return self.mods.extractor.sample_rate

    @property
    def label_clue(self):
        """True for a class-label model, False for an enrollment model."""
        return getattr(self.hparams, "clue_variant", "enrollment") == "label"

    def labels_to_clue(self, labels):
        """Class names to the multi-hot clue of a label model.

        Arguments
        ---------
        labels : list of str or str
            Class names (a list or a space-separated string).

        Returns
        -------
        torch.Tensor
            ``[1, K]`` multi-hot clue.
        """
        from speechbrain_crossmamba.dataio.synth_events import (
            labels_to_multihot,
        )

        classes = getattr(self.hparams, "classes", None)
        if not classes:
            raise ValueError(
                "this label model has no class names in its hyperparams.yaml"
            )
        return labels_to_multihot(labels, classes)[None]

    def extract_batch(self, mix, mix_lens=None, clue=None, clue_lens=None):
        """Extracts the targets of a batch at the model's rate.

        int16 arrays are scaled to [-1, 1); float64 becomes float32; integer label indices stay.

        Arguments
        ---------
        mix : torch.Tensor or numpy.ndarray
            Mixtures [B, T] (or one, [T]).
        mix_lens : torch.Tensor, optional
            Relative lengths (B,).
        clue : torch.Tensor or numpy.ndarray
            An enrollment batch [B, T_e] or a label clue [B, K].
        clue_lens : torch.Tensor, optional
            Relative lengths of the enrollments (B,).

        Returns
        -------
        torch.Tensor
            The estimates [B, T], on the CPU.
        """
        if clue is None:
            raise ValueError(
                "no clue given: pass an enrollment (or labels for a label model)"
            )
        mix, clue = _as_float(mix, "mixture"), _as_float(clue, "clue")
        mix = mix[None] if mix.dim() == 1 else mix
        clue = clue[None] if clue.dim() == 1 else clue
        if mix.shape[-1] <= round(self.window_seconds * self.sample_rate):
            return self._run(mix, mix_lens, clue, clue_lens)
        if mix_lens is not None and bool((mix_lens < 1).any()):
            raise ValueError(
                "long inputs are windowed one length at a time: pass equal lengths"
            )
        return self._windowed(mix, clue, clue_lens)

    def _run(self, mix, mix_lens, clue, clue_lens):
        with torch.no_grad():
            dev = self.device
            move = lambda t: None if t is None else t.to(dev)  # noqa: E731
            out = self.mods.extractor(
                move(mix), move(clue), move(mix_lens), move(clue_lens)
            )
        return out.float().cpu()

    def window_grids(self):
        """The steps a window start may take, coarsest first: the chunk hop of a dual-path
        mask network (``K // 2`` encoder frames), then the encoder's hop.

        A window that starts off them frames its signal with another phase than one pass over
        the whole input does (and chunks it otherwise): on the shipped 16 ms models, a window
        moved off the grid differs from that pass about 20 dB below the estimate, one on it
        about 25 dB below (the context it lacks).

        Returns
        -------
        tuple of int
            Grid steps in samples.
        """
        extractor = self.mods.extractor
        hop = int(getattr(extractor, "stride", 1))
        K = getattr(extractor.masknet, "K", None)
        return (hop * (K // 2), hop) if K and K // 2 > 1 else (hop,)

    def _windowed(self, mix, clue, clue_lens):
        T = mix.shape[-1]
        win = round(self.window_seconds * self.sample_rate)
        fade = min(round(self.overlap_seconds * self.sample_rate), win // 2)
        windows = window_bounds(T, win, fade, self.window_grids())
        out = torch.zeros(mix.shape[0], T)
        weight = torch.zeros(T)
        ramp = (
            torch.hann_window(2 * fade, periodic=False)[:fade]
            if fade
            else torch.ones(0)
        )
        for i, (s, end) in enumerate(windows):
            piece = self._run(mix[:, s:end], None, clue, clue_lens)
            w = torch.ones(piece.shape[-1])
            if i > 0 and fade:
                w[:fade] = ramp
            if i < len(windows) - 1 and fade:
                w[-fade:] = ramp.flip(0)
            out[:, s:end] += piece * w
            weight[s:end] += w
        return out / weight.clamp(min=1e-8)

    def load_audio(self, path, name="mixture"):
        """Reads any-rate, any-channel audio as mono at the model's rate.

        Arguments
        ---------
        path : str
            The audio file.
        name : str
            What it is, used in error messages.

        Returns
        -------
        torch.Tensor
            ``[T]`` float32.
        """
        return read_audio(path, self.sample_rate, name)

    def extract_file(
        self, mixture_path, enrollment_path=None, label=None, savedir=None
    ):
        """Extracts the target from a file; returns [T] at the model's rate.

        Give ``enrollment_path`` to an enrollment model, ``label`` (names) to a label model.
        With ``savedir``, also writes ``<savedir>/<mixture name>_estimate.wav``.

        Arguments
        ---------
        mixture_path : str
            The mixture file (any rate and channel count).
        enrollment_path : str, optional
            Enrollment of the target speaker.
        label : list of str or str, optional
            Class names of the target.
        savedir : str, optional
            Folder to write the estimate to.

        Returns
        -------
        torch.Tensor
            The estimate [T].
        """
        clue = self.make_clue(enrollment_path, label)
        estimate = self.extract_batch(
            self.load_audio(mixture_path)[None], None, clue
        )[0]
        if savedir is not None:
            from speechbrain_crossmamba.evaluation import write_wav

            os.makedirs(savedir, exist_ok=True)
            name = (
                os.path.splitext(os.path.basename(mixture_path))[0]
                + "_estimate.wav"
            )
            write_wav(os.path.join(savedir, name), estimate, self.sample_rate)
        return estimate

    def make_clue(self, enrollment_path=None, label=None):
        """The model's clue batch of one, from an enrollment file or class names (one of them).

        Arguments
        ---------
        enrollment_path : str, optional
            Enrollment file, for an enrollment model.
        label : list of str or str, optional
            Class names, for a label model.

        Returns
        -------
        torch.Tensor
            ``[1, T_e]`` enrollment or ``[1, K]`` multi-hot.
        """
        if enrollment_path is not None and label is not None:
            raise ValueError(
                "give one clue: an enrollment or a label, not both"
            )
        if self.label_clue:
            if label is None:
                raise ValueError(
                    "this model extracts by class label: pass label=<name(s)>"
                )
            return self.labels_to_clue(label)
        if enrollment_path is None:
            raise ValueError(
                "this model extracts by enrollment: pass enrollment_path"
            )
        return self.load_audio(enrollment_path, "enrollment")[None]

    @property
    def streaming_extractor(self):
        """The extractor, if it can stream (a causal model of ``models/streaming_tse.yaml``)."""
        extractor = self.mods.extractor
        if not hasattr(extractor, "extract_stream"):
            raise ValueError(
                f"this model ({type(extractor.masknet).__name__}) is not causal and cannot stream: "
                "train one from hparams/models/streaming_tse.yaml"
            )
        return extractor

    def extract_stream(self, chunks, clue, clue_lens=None):
        """Extracts the target of a stream of mixture chunks (each [l] or [1, l], at the model's
        rate) given a clue batch of one (``make_clue``); yields output chunks on the CPU whose
        concatenation equals :meth:`extract_batch` of the whole signal, up to float rounding.

        Arguments
        ---------
        chunks : iterable of torch.Tensor
            The mixture chunks.
        clue : torch.Tensor
            The clue batch of one (see :meth:`make_clue`).
        clue_lens : torch.Tensor, optional
            Relative length of the enrollment.

        Yields
        ------
        torch.Tensor
            ``[1, l']`` output chunks on the CPU: one per input chunk, then the rest.
        """
        extractor = self.streaming_extractor
        clue = _as_float(clue, "clue")
        clue = (clue[None] if clue.dim() == 1 else clue).to(self.device)
        chunks = (_as_float(c, "mixture chunk").to(self.device) for c in chunks)
        for out in extractor.extract_stream(chunks, clue, clue_lens):
            yield out.float().cpu()

    def forward(self, mix, clue, mix_lens=None, clue_lens=None):
        """Same as :meth:`extract_batch`.

        Arguments
        ---------
        mix, clue, mix_lens, clue_lens
            Those of :meth:`extract_batch`.

        Returns
        -------
        torch.Tensor
            The estimates [B, T].
        """
        return self.extract_batch(mix, mix_lens, clue, clue_lens)


def window_bounds(length, window, overlap, grids=(1,)):
    """The ``(start, end)`` of the windows that cover ``length`` samples.

    Windows of ``window`` samples start every ``window - overlap`` samples, rounded down to
    the coarsest of ``grids`` that fits in it; the last one starts at the last grid point
    that leaves it at least ``window`` samples, and runs to the end (it is longer than
    ``window`` by less than a grid step). Consecutive windows overlap by ``overlap`` samples
    or more, and every start is on the grid.

    Arguments
    ---------
    length : int
        Samples of the input.
    window, overlap : int
        Samples of a window and of the overlap of two consecutive windows.
    grids : tuple of int
        Steps the starts may take, coarsest first.

    Returns
    -------
    list of (int, int)
        The windows, in order.

    Example
    -------
    >>> window_bounds(
    ...     186400, 80000, 8000, grids=(1600, 64)
    ... )  # 23.3 s, 10 s windows at 8 kHz
    [(0, 80000), (72000, 152000), (105600, 186400)]
    >>> window_bounds(100000, 80000, 8000)
    [(0, 80000), (20000, 100000)]
    """
    most = max(window - overlap, 1)
    grid = next((g for g in grids if g <= most), 1)
    hop = most // grid * grid
    last = max(length - window, 0) // grid * grid
    starts = list(range(0, last, hop)) + [last]
    return [(s, s + window) for s in starts[:-1]] + [(last, length)]


def _as_float(x, name):
    """int16 PCM -> float in [-1, 1); any float -> float32; other integers (class indices) kept."""
    x = torch.as_tensor(x)
    if x.dtype == torch.int16:
        return x.float() / 32768.0
    if x.is_floating_point():
        return x.float()
    if x.dtype in (torch.int32, torch.int64):
        return x
    raise ValueError(f"{name} has unsupported dtype {x.dtype}")


def read_audio(path, sample_rate, name="mixture"):
    """Reads any-rate, any-channel audio as mono at ``sample_rate`` ([T] float32); a missing,
    unreadable or empty file raises a one-line error naming it.

    Arguments
    ---------
    path : str
        The audio file.
    sample_rate : int
        The rate to resample to.
    name : str
        What it is, used in error messages.

    Returns
    -------
    torch.Tensor
        ``[T]`` float32.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name} file not found: {path}")
    try:
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as error:
        raise ValueError(
            f"{name} file is not readable audio: {path} ({str(error).splitlines()[0]})"
        )
    if data.shape[0] == 0:
        raise ValueError(f"{name} file is empty: {path}")
    wav = torch.from_numpy(data.T.copy())
    if wav.shape[0] > 1:
        logger.warning(
            "%s has %d channels: downmixed to mono", path, wav.shape[0]
        )
    wav = wav.mean(0)
    if rate != sample_rate:
        import torchaudio

        wav = torchaudio.functional.resample(wav, rate, sample_rate)
    return wav
