"""Reusable widgets: the face icon, rating tiles, reason chips, buttons. Their look is in kv/widgets.kv.

No animation anywhere: the idle screen must cost nothing on a Pi, and a
pressed control changes colour in the very next frame (touch feedback).
"""

from __future__ import annotations

from typing import Any

from kivy.properties import BooleanProperty, ListProperty, NumericProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget


class FaceIcon(Widget):
    """A round face drawn with canvas instructions; ``curve`` +1 smiles, -1 frowns."""

    face_rgba = ListProperty([0.5, 0.5, 0.5, 1])
    curve = NumericProperty(0.0)
    mouth_points = ListProperty([])
    radius = NumericProperty(10)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.bind(pos=self._shape, size=self._shape, curve=self._shape)
        self._shape()

    def _shape(self, *_a: object) -> None:
        r = max(4.0, min(self.width, self.height) / 2 - 2)
        self.radius = r
        cx, cy = self.center
        half = 0.45 * r
        pts: list[float] = []
        for i in range(13):
            x = -half + 2 * half * i / 12
            # corners rise above the middle for a smile, drop below it for a frown
            y = -0.3 * r + self.curve * 0.22 * r * ((x / half) ** 2 - 0.5)
            pts += [cx + x, cy + y]
        self.mouth_points = pts


class LevelTile(ButtonBehavior, BoxLayout):
    """One rating level: colour + face + text label, one large target."""

    score = NumericProperty(0)
    text = StringProperty("")
    tile_hex = StringProperty("#FFFFFF")
    face_rgba = ListProperty([0.5, 0.5, 0.5, 1])
    curve = NumericProperty(0.0)


class Chip(ButtonBehavior, Label):
    """A reason the citizen can toggle on or off."""

    code = StringProperty("")
    chosen = BooleanProperty(False)


class BigButton(ButtonBehavior, Label):
    """A large text button ("Gửi", "Bỏ qua", the language toggle)."""

    bg_hex = StringProperty("#E4E4E4")
    fg_hex = StringProperty("#111111")
