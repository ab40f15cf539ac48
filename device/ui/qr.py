"""A QR code drawn on the terminal: made here (segno, no network), uploaded as a Kivy texture.

One texel per module plus the 4-module quiet zone; the texture is magnified with ``nearest`` filtering so
the modules stay sharp squares at any size. RGBA, so no row is padded whatever the symbol's width (an
RGB upload of an odd width would shear the code with GL's default 4-byte row alignment).
Kivy textures are made on the main thread only (:meth:`device.ui.screens.LaterScreen.update`).
"""

from __future__ import annotations

import segno
from kivy.graphics.texture import Texture

QUIET_ZONE = 4  # modules of white around the symbol: what ISO/IEC 18004 asks for a reliable scan
_DARK, _LIGHT = b"\x11\x11\x11\xff", b"\xff\xff\xff\xff"  # theme.INK on white: the contrast a camera needs


def qr_rows(text: str) -> list[list[bool]]:
    """The symbol's modules, quiet zone included, top row first (True: dark). Error correction M, like
    the slips (``hailong web link --qr``): a scuffed or glare-lit screen still scans."""
    code = segno.make(text, error="m", micro=False)
    return [[bool(v) for v in row] for row in code.matrix_iter(scale=1, border=QUIET_ZONE)]


def qr_texture(text: str) -> Texture:
    rows = qr_rows(text)
    side = len(rows)
    # Kivy's texture origin is the bottom-left corner: rows go bottom-up
    buf = b"".join(_DARK if dark else _LIGHT for row in reversed(rows) for dark in row)
    tex = Texture.create(size=(side, side), colorfmt="rgba")
    tex.blit_buffer(buf, colorfmt="rgba", bufferfmt="ubyte")
    tex.mag_filter = "nearest"
    tex.min_filter = "nearest"
    return tex
