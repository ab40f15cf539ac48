"""The terminal's spoken clips, generated at provisioning time (``hailong fleet provision --audio``).

Each spoken clip (device/audio.py names them) is espeak-ng's Vietnamese voice saying the
catalogue's text, written as a WAV (mono, 22.05 kHz, 16-bit). The "not now" sound is two
falling tones made here. The provisioning machine needs Debian's ``espeak-ng``
(scripts/install-system-deps.sh); the Pi does not.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
import wave
from array import array
from functools import cache
from pathlib import Path

from device.audio import CHANNELS, NOT_NOW, RATE, clip_texts
from device.config import Voice
from device.i18n import load_catalogue

ESPEAK_SPEED_WPM = 145  # espeak's default 175 is quick for an elderly citizen at a busy counter
ESPEAK_TIMEOUT_S = 60


class SoundError(Exception):
    """The clips cannot be made on this machine (no espeak-ng, a voice that fails)."""


def espeak(voice: Voice, text: str) -> bytes:
    """``text`` spoken by espeak-ng's ``voice`` as WAV bytes."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise SoundError("espeak-ng is not installed on this machine (apt-get install espeak-ng); "
                         "--audio needs it to make the spoken clips")
    with tempfile.TemporaryDirectory(prefix="hailong-voice-") as tmp:
        out = Path(tmp) / "clip.wav"
        proc = subprocess.run([binary, "-v", voice, "-s", str(ESPEAK_SPEED_WPM), "-w", str(out), "--", text],
                              capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise SoundError(f"espeak-ng -v {voice} failed (exit {proc.returncode}): "
                             f"{proc.stderr.decode(errors='replace').strip()}")
        return out.read_bytes()


def tones(freqs: tuple[float, ...] = (660.0, 440.0), tone_s: float = 0.14, gap_s: float = 0.06,
          level: float = 0.5) -> bytes:
    """A WAV of short sine tones with soft edges (no click): the "not now" sound."""
    samples = array("h")
    fade = int(0.01 * RATE)
    for f in freqs:
        n = int(tone_s * RATE)
        for i in range(n):
            env = min(1.0, i / fade, (n - 1 - i) / fade)
            samples.append(round(level * 32767 * env * math.sin(2 * math.pi * f * i / RATE)))
        samples.extend([0] * int(gap_s * RATE))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(CHANNELS)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


@cache
def clips(voice: Voice) -> dict[str, bytes]:
    """Every clip the terminal plays, name -> WAV bytes (made once per voice and process)."""
    out = {name: espeak(voice, text) for name, text in clip_texts(load_catalogue("vi")).items()}
    out[NOT_NOW] = tones()
    return out


def write_clips(voice: Voice, folder: Path) -> list[Path]:
    """The clips as ``folder/<name>.wav`` (for a terminal set up by hand, and for tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in clips(voice).items():
        (folder / f"{name}.wav").write_bytes(data)
        paths.append(folder / f"{name}.wav")
    return paths
