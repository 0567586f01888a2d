"""libespeak-ng, the C library, bound with ctypes: its one state per process (called on
the worker threads of adapters/tts/espeak.py's engines, never on the event loop).

The library keeps all of its state in C globals and is not thread-safe, so this module
holds the one object that stands for it, ``LIBESPEAK``: loaded and initialized once
(lazily), and every call into it made with its lock held.
"""

from __future__ import annotations

import ctypes
import threading

import espeakng_loader

from engine.runtime.ports.providers import ProviderError

__all__ = [
    "CHARS_UTF8",
    "EE_OK",
    "ENDPAUSE",
    "ESPEAK_SAMPLE_RATE_HZ",
    "LIBESPEAK",
    "PARAM_PITCH",
    "PARAM_RATE",
    "POS_CHARACTER",
    "SynthCallback",
]

ESPEAK_SAMPLE_RATE_HZ = 22_050

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report a missing data dir instead of exit()ing the process
POS_CHARACTER = 1
CHARS_UTF8 = 0x1
ENDPAUSE = 0x1000  # keep the sentence-final pause so consecutive sentences do not run together
PARAM_RATE = 1
PARAM_PITCH = 3
EE_OK = 0
_EE_NOT_FOUND = 2
_CALLBACK_BUFFER_MS = 60  # size of the buffers handed to the callback = our chunk size

SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Libespeak:
    """libespeak-ng's one state in this process (C globals): loaded once, one caller at a
    time (``lock``), the callback of the engine that last synthesized (``owner``, kept
    alive: the C side holds its callback)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: object = None
        self.voice: str | None = None
        self._lib: ctypes.CDLL | None = None

    def library(self) -> ctypes.CDLL:
        """The loaded, initialized library (call with ``lock`` held)."""
        if self._lib is None:
            self._lib = _load_library()
        return self._lib

    def select_voice(self, voice: str) -> bool:
        """Make ``voice`` the library's voice; False if eSpeak has no such voice (lock held)."""
        if voice == self.voice:
            return True  # loading a voice reads files; skip it when nothing changes
        status = self.library().espeak_SetVoiceByName(voice.encode())
        if status == _EE_NOT_FOUND:
            return False
        if status != EE_OK:
            raise ProviderError(f"espeak-ng: espeak_SetVoiceByName returned {status}")
        self.voice = voice
        return True


LIBESPEAK = _Libespeak()


def _load_library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data_path = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as exc:
        raise ProviderError(f"espeak-ng: cannot load the library: {exc}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS,
        _CALLBACK_BUFFER_MS,
        data_path.encode(),
        _INITIALIZE_DONT_EXIT,
    )
    if rate != ESPEAK_SAMPLE_RATE_HZ:
        # -1 is an init failure; any other rate would break what sample_rate_hz promised.
        raise ProviderError(f"espeak-ng: espeak_Initialize returned {rate}")
    return lib
