"""Spoken prompts and sounds, so a citizen who cannot see the screen can rate alone.

The clips are WAV files named after what they say (:data:`SPEECH`, one ``level-<name>``
per rating label, and the ``not-now`` tone). They are generated at provisioning time
from espeak-ng's Vietnamese voice (firmware_config/sounds.py) into ``[audio] dir``; a
recorded WAV with the same name in ``[audio] recorded_dir`` replaces the generated one.

What is played, and when (:class:`Speaker`):

- a prompt for a closed ticket: the question, then the level names best first (the order
  of the tiles and buttons, left to right);
- the reasons screen: its question;
- "Cảm ơn Quý khách, Quý khách đã chọn" + the level chosen;
- a press too early (no ticket closed yet): "please wait for the ticket";
- a press after rating: the "not now" tone + "already rated"; any other refused press: the tone.

A new sequence cuts the one playing (the citizen who taps during the question hears the
thanks at once). The caller (Kivy's main thread, or the headless loop) only hands the
sequence's names to the speaker's own thread, which copies the samples into SDL2's audio
queue (``SDL_QueueAudio``, the SDL2 that Kivy ships, through ctypes); SDL's audio thread
plays them. Nobody on the tap's path waits for sound or for that copy. (Kivy's SoundLoader
needs Kivy's clock, which a button-only unit does not run, and only tells the end of a clip
at its next poll; the queue plays a sequence gap-free.)
Clips are decoded, converted to one output format and scaled to ``volume`` once, at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from broker.kernel.settings import ConfigError

from .config import AudioSettings
from .i18n import Catalogue
from .state import Outcome, PressFeedback, State, View

log = logging.getLogger("hailong.device.audio")

QUESTION, REASONS, THANKS, WAIT, ALREADY, NOT_NOW = "question", "reasons", "thanks", "wait", "already", "not-now"
SPEECH = (QUESTION, REASONS, THANKS, WAIT, ALREADY)  # spoken clips whose text is in the catalogue's [audio]
TONES = (NOT_NOW,)  # sounds, no words

# The one output format: what espeak-ng writes (mono, 22.05 kHz, 16-bit). Recorded files are converted.
RATE, CHANNELS = 22050, 1
AUDIO_S16LSB = 0x8010
SDL_INIT_AUDIO = 0x10
REOPEN_S = 30.0  # a speaker unplugged at start (USB) is looked for again at most this often


def spoken(text: str) -> str:
    """Catalogue text as said: no-break spaces (they only keep screen lines whole) become spaces."""
    return text.replace("\u00a0", " ")


def level_clip(label: str) -> str:
    """``level-<label without diacritics>``: "Rất hài lòng" -> ``level-rat-hai-long``."""
    plain = unicodedata.normalize("NFD", spoken(label).replace("đ", "d").replace("Đ", "D"))
    ascii_ = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    return "level-" + "-".join("".join(c if c.isalnum() else " " for c in ascii_).split())


def clip_texts(cat: Catalogue) -> dict[str, str]:
    """Every spoken clip's name -> its text (the level names of all scales, once each)."""
    texts = {name: spoken(cat.text(f"audio.{name}")) for name in SPEECH}
    for scale in (3, 4, 5):
        for label in cat.levels(scale):
            texts[level_clip(label)] = spoken(label)
    return texts


def clip_names(cat: Catalogue) -> list[str]:
    return [*clip_texts(cat), *TONES]


def clip_path(settings: AudioSettings, name: str) -> Path:
    """The recorded clip when there is one, else the generated one."""
    recorded = settings.recorded_dir / f"{name}.wav"
    return recorded if recorded.is_file() else settings.dir / f"{name}.wav"


def clips_problem(settings: AudioSettings, cat: Catalogue) -> str | None:
    """Why the clips cannot be played (for a config error at start), or None."""
    missing = [clip_path(settings, n) for n in clip_names(cat) if not clip_path(settings, n).is_file()]
    if not missing:
        return None
    return (f"clips missing: {', '.join(str(p) for p in missing)} "
            "(made by `hailong fleet provision --audio`; see docs/device.md, 'Spoken prompts and sounds')")


def check_clips(settings: AudioSettings, config_path: Path | str | None) -> None:
    """Stop at start, naming the file and key, when spoken prompts are on and a clip is missing."""
    from .i18n import load_catalogue

    if settings.enabled and (problem := clips_problem(settings, load_catalogue("vi"))):
        raise ConfigError(config_path, "audio.dir", problem)


# ---------------------------------------------------------------------------------------------- SDL2


class _Spec(ctypes.Structure):
    _fields_ = [("freq", ctypes.c_int), ("format", ctypes.c_uint16), ("channels", ctypes.c_uint8),
                ("silence", ctypes.c_uint8), ("samples", ctypes.c_uint16), ("padding", ctypes.c_uint16),
                ("size", ctypes.c_uint32), ("callback", ctypes.c_void_p), ("userdata", ctypes.c_void_p)]


def _sdl_library() -> ctypes.CDLL:
    """The SDL2 Kivy ships (the same instance as Kivy's window), else the system's libSDL2."""
    spec = importlib.util.find_spec("kivy")  # finds the package without importing Kivy
    if spec is not None and spec.origin is not None:
        libs = Path(spec.origin).parent.parent / "Kivy.libs"
        bundled = sorted(libs.glob("libSDL2-2*.so*"))
        if bundled:
            return ctypes.CDLL(str(bundled[0]))
    return ctypes.CDLL(ctypes.util.find_library("SDL2-2.0") or "libSDL2-2.0.so.0")


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    c = ctypes
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "SDL_InitSubSystem": (c.c_int, [c.c_uint32]),
        "SDL_QuitSubSystem": (None, [c.c_uint32]),
        "SDL_GetError": (c.c_char_p, []),
        "SDL_GetCurrentAudioDriver": (c.c_char_p, []),
        "SDL_GetNumAudioDevices": (c.c_int, [c.c_int]),
        "SDL_GetAudioDeviceName": (c.c_char_p, [c.c_int, c.c_int]),
        "SDL_OpenAudioDevice": (c.c_uint32, [c.c_char_p, c.c_int, c.POINTER(_Spec), c.POINTER(_Spec), c.c_int]),
        "SDL_CloseAudioDevice": (None, [c.c_uint32]),
        "SDL_PauseAudioDevice": (None, [c.c_uint32, c.c_int]),
        "SDL_QueueAudio": (c.c_int, [c.c_uint32, c.c_void_p, c.c_uint32]),
        "SDL_ClearQueuedAudio": (None, [c.c_uint32]),
        "SDL_GetQueuedAudioSize": (c.c_uint32, [c.c_uint32]),
        "SDL_RWFromFile": (c.c_void_p, [c.c_char_p, c.c_char_p]),
        "SDL_LoadWAV_RW": (c.POINTER(_Spec), [c.c_void_p, c.c_int, c.POINTER(_Spec),
                                              c.POINTER(c.POINTER(c.c_uint8)), c.POINTER(c.c_uint32)]),
        "SDL_FreeWAV": (None, [c.POINTER(c.c_uint8)]),
        "SDL_NewAudioStream": (c.c_void_p, [c.c_uint16, c.c_uint8, c.c_int, c.c_uint16, c.c_uint8, c.c_int]),
        "SDL_AudioStreamPut": (c.c_int, [c.c_void_p, c.c_void_p, c.c_int]),
        "SDL_AudioStreamFlush": (c.c_int, [c.c_void_p]),
        "SDL_AudioStreamAvailable": (c.c_int, [c.c_void_p]),
        "SDL_AudioStreamGet": (c.c_int, [c.c_void_p, c.c_void_p, c.c_int]),
        "SDL_FreeAudioStream": (None, [c.c_void_p]),
        "SDL_MixAudioFormat": (None, [c.c_void_p, c.c_void_p, c.c_uint16, c.c_uint32, c.c_int]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


class SdlOutput:
    """One SDL audio device fed from SDL's queue: :meth:`play` returns at once, SDL's thread plays."""

    def __init__(self, output: str | None = None) -> None:
        self.sdl = _bind(_sdl_library())
        self.output = output
        self.device = 0
        self._inited = False
        self._last_try = -1e9

    def _error(self) -> str:
        return (self.sdl.SDL_GetError() or b"").decode(errors="replace")

    def open(self) -> bool:
        """Open the output (honours SDL_AUDIODRIVER); False, logged, when there is none."""
        if self.device:
            return True
        self._last_try = time.monotonic()
        if not self._inited:
            if self.sdl.SDL_InitSubSystem(SDL_INIT_AUDIO) != 0:
                log.error("no audio: SDL audio init failed: %s", self._error())
                return False
            self._inited = True
        want = _Spec(freq=RATE, format=AUDIO_S16LSB, channels=CHANNELS, samples=1024)
        got = _Spec()
        name = self.output.encode() if self.output else None
        # allowed_changes=0: SDL converts to the hardware's format itself, so what we queue is what plays
        self.device = self.sdl.SDL_OpenAudioDevice(name, 0, ctypes.byref(want), ctypes.byref(got), 0)
        if not self.device:
            log.error("no audio: cannot open output %r: %s", self.output or "default", self._error())
            return False
        self.sdl.SDL_PauseAudioDevice(self.device, 0)
        log.info("audio output open (driver %s)", (self.sdl.SDL_GetCurrentAudioDriver() or b"?").decode())
        return True

    def load(self, path: Path, volume: int) -> bytes:
        """A WAV file (any rate, channels, PCM/float/ADPCM SDL reads) as output-format PCM at ``volume`` %."""
        sdl = self.sdl
        rw = sdl.SDL_RWFromFile(str(path).encode(), b"rb")
        spec, buf, n = _Spec(), ctypes.POINTER(ctypes.c_uint8)(), ctypes.c_uint32()
        if not rw or not sdl.SDL_LoadWAV_RW(rw, 1, ctypes.byref(spec), ctypes.byref(buf), ctypes.byref(n)):
            raise ValueError(f"{path}: not a WAV file SDL can read ({self._error()})")
        try:
            stream = sdl.SDL_NewAudioStream(spec.format, spec.channels, spec.freq, AUDIO_S16LSB, CHANNELS, RATE)
            if not stream:
                raise ValueError(f"{path}: cannot convert its audio format ({self._error()})")
            try:
                sdl.SDL_AudioStreamPut(stream, buf, n.value)
                # SDL's resampler keeps its last few ms back even on flush: push 100 ms of silence
                # behind the clip, then cut the output at the clip's own length
                frame = spec.channels * ((spec.format & 0xFF) // 8)
                tail = ctypes.create_string_buffer(spec.channels * (spec.freq // 10) * ((spec.format & 0xFF) // 8))
                sdl.SDL_AudioStreamPut(stream, tail, len(tail))
                sdl.SDL_AudioStreamFlush(stream)
                out = ctypes.create_string_buffer(sdl.SDL_AudioStreamAvailable(stream))
                got = sdl.SDL_AudioStreamGet(stream, out, len(out))
            finally:
                sdl.SDL_FreeAudioStream(stream)
        finally:
            sdl.SDL_FreeWAV(buf)
        frames = n.value // frame if frame else 0
        got = min(got, round(frames * RATE / spec.freq) * 2 * CHANNELS)
        scaled = ctypes.create_string_buffer(got)  # silence, then the clip mixed in at the volume
        sdl.SDL_MixAudioFormat(scaled, out, AUDIO_S16LSB, got, round(volume * 128 / 100))
        return scaled.raw

    def play(self, chunks: Sequence[bytes]) -> None:
        """Cut what is playing and queue ``chunks`` back to back (never waits for the sound)."""
        if not self.device and (time.monotonic() - self._last_try < REOPEN_S or not self.open()):
            return
        self.sdl.SDL_ClearQueuedAudio(self.device)
        for pcm in chunks:
            if self.sdl.SDL_QueueAudio(self.device, pcm, len(pcm)) != 0:
                log.error("audio queue refused a clip: %s", self._error())
                return

    def queued(self) -> int:
        """Bytes still waiting to be played (0 when quiet)."""
        return int(self.sdl.SDL_GetQueuedAudioSize(self.device)) if self.device else 0

    def close(self) -> None:
        if self.device:
            self.sdl.SDL_CloseAudioDevice(self.device)
            self.device = 0
        if self._inited:
            self.sdl.SDL_QuitSubSystem(SDL_INIT_AUDIO)
            self._inited = False


def output_names() -> list[str]:
    """The output devices SDL sees (values for ``[audio] output``)."""
    sdl = _bind(_sdl_library())
    if sdl.SDL_InitSubSystem(SDL_INIT_AUDIO) != 0:
        return []
    try:
        return [(sdl.SDL_GetAudioDeviceName(i, 0) or b"").decode(errors="replace")
                for i in range(max(0, sdl.SDL_GetNumAudioDevices(0)))]
    finally:
        sdl.SDL_QuitSubSystem(SDL_INIT_AUDIO)


# ---------------------------------------------------------------------------------------------- speaker


class Speaker:
    """Turns the terminal's views and judged presses into clip sequences (a listener of both)."""

    def __init__(self, settings: AudioSettings, cat: Catalogue, output: SdlOutput | None = None,
                 defer: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.cat = cat
        # ``defer``: how a sequence reaches the speaker's thread after the caller's work. The terminal
        # passes its dispatch (Kivy: the next frame), so the frame that shows "Cảm ơn" is drawn before
        # another Python thread wakes to compete for the GIL and the CPU; the voice follows a frame later.
        self._defer = defer
        problem = clips_problem(settings, cat)
        if problem:
            raise ValueError(problem)
        self.out = output or SdlOutput(settings.output)
        self.pcm: dict[str, bytes] = {}
        for name in clip_names(cat):
            path = clip_path(settings, name)
            try:
                self.pcm[name] = self.out.load(path, settings.volume)
            except ValueError as exc:
                raise ValueError(f"{'audio.recorded_dir' if path.parent == settings.recorded_dir else 'audio.dir'}: "
                                 f"{exc}") from None
        self.out.open()
        self.played: list[tuple[str, ...]] = []  # every sequence started, for diagnostics and tests
        self._said: tuple[State, str | None] | None = None
        # The UI thread only hands a sequence over: copying it into SDL's queue (up to 0.5 MB, under
        # SDL's device lock) is this thread's work, so a busy machine never adds it to a tap's frame.
        self._want: tuple[str, ...] | None = None
        self._busy = False
        self._deferred = 0  # sequences handed to ``defer`` and not yet to the speaker's thread
        self._cv = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._feed, name="hl-speaker", daemon=True)
        self._worker.start()

    def levels(self, scale: int) -> list[str]:
        return [level_clip(label) for label in self.cat.levels(scale)]

    def on_view(self, view: View) -> None:
        key = (view.state, view.prompt_ticket)
        if key == self._said:
            return
        self._said = key
        if view.state == State.PROMPT and view.prompt_ticket is not None:
            self.play(QUESTION, *self.levels(view.scale))  # best first: the tiles and buttons left to right
        elif view.state == State.REASONS:
            self.play(REASONS)
        elif view.state == State.THANKS and view.score is not None:
            self.play(THANKS, self.levels(view.scale)[view.scale - view.score])

    def on_press(self, press: PressFeedback) -> None:
        if press.outcome == Outcome.TOO_EARLY:
            self.play(WAIT)
        elif press.outcome == Outcome.ALREADY_RATED:
            self.play(NOT_NOW, ALREADY)
        elif press.outcome == Outcome.NOT_NOW:
            self.play(NOT_NOW)

    def play(self, *names: str) -> None:
        """Start ``names`` (cutting what plays); returns at once. Only the latest of several waiting counts."""
        unknown = [n for n in names if n not in self.pcm]
        if unknown:  # a programming error: fail in the caller, not in the feeding thread
            raise KeyError(f"no clip {unknown}")
        with self._cv:
            self.played.append(names)
            if self._defer is not None:
                self._deferred += 1
        if self._defer is not None:
            self._defer(lambda: self._hand_over(names, deferred=True))
        else:
            self._hand_over(names)

    def _hand_over(self, names: tuple[str, ...], deferred: bool = False) -> None:
        with self._cv:
            if deferred:
                self._deferred -= 1
            self._want = names
            self._cv.notify()

    def _feed(self) -> None:
        while True:
            with self._cv:
                while self._want is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                names = self._want
                assert names is not None
                self._want, self._busy = None, True
            try:
                self.out.play([self.pcm[n] for n in names])  # outside the lock: play() never waits on this
            except Exception:
                log.exception("audio playback failed")
            finally:
                with self._cv:
                    self._busy = False

    def idle(self) -> bool:
        """Nothing waiting to be handed to SDL, nothing left in SDL's queue."""
        with self._cv:
            return self._want is None and not self._busy and not self._deferred and self.out.queued() == 0

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._worker.join(5)
        self.out.close()
