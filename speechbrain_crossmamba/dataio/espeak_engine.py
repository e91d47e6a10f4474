"""The eSpeak NG engine: a small ctypes wrapper around the speech synthesiser.

The shared library and its data come from the ``espeakng-loader`` wheel (PyPI), which is
a runtime dependency only: the engine (GPL-3) is loaded with :mod:`ctypes` and never
bundled; the audio it produces is ours. Synthesis is synchronous and returns a float32
numpy array at eSpeak's own rate (22.05 kHz).

eSpeak NG holds global state, so one process has one engine (:func:`get_engine`). Its
output depends on the call history; for bit-exact reproducible corpora synthesise in a
fresh process in a fixed order (see :mod:`speechbrain_crossmamba.dataio.synth_speakers`).
Everything here is re-exported by :mod:`.espeak`, with the voice-file helpers.

Authors
 * speechbrain-crossmamba contributors
"""

import ctypes
import os
import threading

import numpy as np

MISSING_MESSAGE = "SynthSpeakers needs eSpeak NG: pip install espeakng-loader"
SAMPLE_RATE = 22050

# espeak_AUDIO_OUTPUT, espeak_PARAMETER and flag values of speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_PARAMS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_ENGINE = None
_ENGINE_LOCK = threading.Lock()


class EspeakNotAvailable(ImportError):
    """Raised when the ``espeakng-loader`` package (eSpeak NG) cannot be imported.

    Example
    -------
    >>> (
    ...     issubclass(EspeakNotAvailable, ImportError),
    ...     str(EspeakNotAvailable(MISSING_MESSAGE)),
    ... )
    (True, 'SynthSpeakers needs eSpeak NG: pip install espeakng-loader')
    """


def espeak_paths():
    """Returns ``(library_path, data_path)`` of the eSpeak NG shipped by ``espeakng-loader``.

    Raises :class:`EspeakNotAvailable` with a one-line message when it is not installed.

    Returns
    -------
    tuple of str
        The shared library's path and the ``espeak-ng-data`` folder.

    Example
    -------
    >>> lib, data = espeak_paths()
    >>> os.path.isdir(os.path.join(data, "voices"))
    True
    """
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakNotAvailable(MISSING_MESSAGE) from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


class EspeakEngine:
    """The eSpeak NG library of this process, set up for synchronous synthesis.

    Prefer :func:`get_engine`, which keeps one engine per process.

    Arguments
    ---------
    data_path : str, optional
        An ``espeak-ng-data`` folder (e.g. an overlay with generated voice files);
        the one of ``espeakng-loader`` when None.

    Example
    -------
    >>> engine = get_engine()
    >>> engine.sample_rate
    22050
    """

    def __init__(self, data_path=None):
        lib_path, default_data = espeak_paths()
        self.data_path = os.path.abspath(data_path or default_data)
        self._lib = ctypes.CDLL(lib_path)
        self._set_signatures()
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS,
            0,
            self.data_path.encode(),
            _INITIALIZE_DONT_EXIT,
        )
        if rate <= 0:
            raise RuntimeError(
                f"eSpeak NG failed to initialise with data folder {self.data_path}"
            )
        self.sample_rate = rate
        self._chunks = []
        self._callback = _CALLBACK(
            self._collect
        )  # kept referenced: C holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _set_signatures(self):
        lib = self._lib
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        for name in (
            "espeak_SetVoiceByName",
            "espeak_SetParameter",
            "espeak_Synth",
            "espeak_Synchronize",
        ):
            getattr(lib, name).restype = ctypes.c_int

    def _collect(self, wav, n_samples, events):
        if n_samples > 0 and wav:
            self._chunks.append(
                np.ctypeslib.as_array(wav, shape=(n_samples,)).copy()
            )
        return 0

    @property
    def version(self):
        """The eSpeak NG version string, e.g. ``'1.52-dev'``."""
        return self._lib.espeak_Info(None).decode()

    def set_voice(self, name):
        """Selects a voice: ``"en-us"``, ``"en-us+m3"`` (a ``!v`` variant) or ``"en+myvoice"``.

        A generated voice file ``voices/!v/<variant>`` of the engine's data folder is chosen
        the same way as a shipped variant.

        Arguments
        ---------
        name : str
            The voice name (a ``ValueError`` when eSpeak NG has none of that name).
        """
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(
                f"eSpeak NG has no voice {name!r} (data folder {self.data_path})"
            )

    def set_parameters(
        self, rate=None, pitch=None, pitch_range=None, volume=None
    ):
        """Sets the speaking rate, pitch, pitch range and volume; ``None`` leaves one unchanged.

        Arguments
        ---------
        rate : int, optional
            Words per minute, 80-450.
        pitch, pitch_range : int, optional
            Pitch base and pitch range, 0-100 (50 is the voice's own).
        volume : int, optional
            Volume, 0-200.
        """
        values = {
            "rate": rate,
            "pitch": pitch,
            "range": pitch_range,
            "volume": volume,
        }
        for key, value in values.items():
            if (
                value is not None
                and self._lib.espeak_SetParameter(_PARAMS[key], int(value), 0)
                != 0
            ):
                raise ValueError(f"eSpeak NG rejected {key}={value}")

    def set_random_seed(self, seed):
        """Seeds eSpeak's own random generator (breath noise of some variants).

        Without it, voices with ``breath`` differ from run to run.

        Arguments
        ---------
        seed : int
            The seed.
        """
        self._lib.espeak_ng_SetRandSeed(int(seed))

    def synthesize(self, text, seed=None):
        """Speaks ``text`` with the current voice and parameters.

        Arguments
        ---------
        text : str
            What to say.
        seed : int, optional
            Seeds eSpeak's random generator first (see :meth:`set_random_seed`).

        Returns
        -------
        numpy.ndarray
            float32 waveform in [-1, 1] at ``sample_rate`` (empty when nothing is spoken).
        """
        if seed is not None:
            self.set_random_seed(seed)
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        err = self._lib.espeak_Synth(
            buf, len(data), 0, 1, 0, _CHARS_UTF8, None, None
        )
        if err != 0 or self._lib.espeak_Synchronize() != 0:
            raise RuntimeError(
                f"eSpeak NG synthesis failed (error {err}) for text {text[:40]!r}"
            )
        chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(
            np.float32
        )


def get_engine(data_path=None):
    """Returns this process's eSpeak NG engine, creating it on first use.

    eSpeak NG is one global engine per process; asking for a different ``data_path``
    after the first call raises a ``RuntimeError``.

    Arguments
    ---------
    data_path : str, optional
        ``espeak-ng-data`` folder of the engine (first call only).

    Returns
    -------
    EspeakEngine
        The engine.

    Example
    -------
    >>> get_engine() is get_engine()
    True
    """
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = EspeakEngine(data_path)
        elif (
            data_path is not None
            and os.path.abspath(data_path) != _ENGINE.data_path
        ):
            raise RuntimeError(
                f"eSpeak NG already runs with data folder {_ENGINE.data_path}; one per process"
            )
        return _ENGINE


def synthesize(
    text,
    voice="en-us",
    rate=None,
    pitch=None,
    pitch_range=None,
    data_path=None,
    seed=0,
):
    """Synthesises ``text`` to a float32 numpy array at 22.05 kHz.

    Arguments
    ---------
    text : str
        What to say.
    voice : str
        eSpeak voice name, optionally with a ``+variant`` (a ``!v`` file).
    rate : int, optional
        Words per minute (eSpeak default 175).
    pitch, pitch_range : int, optional
        Pitch base and pitch range, 0-100 (50 is the voice's own).
    data_path : str, optional
        ``espeak-ng-data`` folder for the process's engine (first call only).
    seed : int, optional
        Seed of eSpeak's random generator (breath noise); not reseeded when None.

    Returns
    -------
    numpy.ndarray
        float32 waveform in [-1, 1] at :data:`SAMPLE_RATE`.

    Example
    -------
    >>> wav = synthesize("hello", voice="en-us+m3", rate=170)
    >>> (
    ...     wav.dtype,
    ...     0.2 < len(wav) / SAMPLE_RATE < 2.0,
    ...     float(abs(wav).max()) > 0.05,
    ... )
    (dtype('float32'), True, True)
    """
    engine = get_engine(data_path)
    with _ENGINE_LOCK:
        engine.set_voice(voice)
        engine.set_parameters(rate=rate, pitch=pitch, pitch_range=pitch_range)
        return engine.synthesize(text, seed=seed)
