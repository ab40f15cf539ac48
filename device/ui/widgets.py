"""Reusable widgets: the face icon, rating tiles, reason chips, buttons. Their look is in kv/widgets.kv.

No animation anywhere: the idle screen must cost nothing on a Pi, and a
pressed control changes colour in the very next frame (touch feedback).
"""

from __future__ import annotations

from typing import Any

from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from broker.ratingscale import faces

from .textfit import fit_text


class FaceIcon(Widget):
    """A round face drawn with canvas instructions; ``curve`` +1 smiles, -1 frowns.

    Neighbouring levels differ in shape, not only in mouth curve and colour, so they read in
    greyscale and to a colour-blind citizen (tests/device/test_ui.py compares every
    neighbouring pair of every scale in a greyscale screenshot). Each level has its own eyes
    (``eyes``: closed smiling arcs, round dots, flat dashes, squeezed > <), optional sad brows
    (``brows``) and a mouth: a line bent by ``curve``, or, at the scale's ends, a filled open
    mouth (``open_mouth``: a laugh at the top, a wail at the bottom).
    """

    face_rgba = ListProperty([0.5, 0.5, 0.5, 1])
    curve = NumericProperty(0.0)
    open_mouth = BooleanProperty(False)
    eyes = StringProperty("dots")   # theme.LevelStyle.eyes
    brows = BooleanProperty(False)  # sad brows, inner ends raised
    mouth_points = ListProperty([])  # line mouth (empty when open)
    mouth_mesh = ListProperty([])    # open mouth: triangle-fan vertices x, y, u, v (empty when a line)
    mouth_indices = ListProperty([])
    eye_dots = BooleanProperty(True)  # round eyes drawn as ellipses; otherwise eye_left/eye_right lines
    eye_left = ListProperty([])
    eye_right = ListProperty([])
    eye_width = NumericProperty(2)  # line eyes: flat dashes are drawn bolder, so they read as eyes
    brow_left = ListProperty([])
    brow_right = ListProperty([])
    radius = NumericProperty(10)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.bind(pos=self._shape, size=self._shape, curve=self._shape, open_mouth=self._shape, eyes=self._shape,
                  brows=self._shape)
        self._shape()

    def _shape(self, *_a: object) -> None:
        r = max(4.0, min(self.width, self.height) / 2 - 2)
        self.radius = r
        cx, cy = self.center
        self.eye_dots = self.eyes == "dots"
        self.eye_width = max(2.0, r * (0.1 if self.eyes == "dashes" else 0.07))
        self.eye_left, self.eye_right = (faces.eye(self.eyes, cx, cy, r, side) for side in (-1, 1))
        # the geometry is the shared one (broker/ratingscale/faces.py): the web page draws the same faces
        # raised inner brows: sadness, readable without colour
        self.brow_left, self.brow_right = faces.brows(cx, cy, r) if self.brows else ([], [])
        if self.open_mouth:
            outline = faces.open_mouth(self.curve, cx, cy, r)
            mx = sum(p[0] for p in outline) / len(outline)
            my = sum(p[1] for p in outline) / len(outline)
            fan = [(mx, my), *outline, outline[0]]
            self.mouth_mesh = [v for x, y in fan for v in (x, y, 0.0, 0.0)]
            self.mouth_indices = list(range(len(fan)))
            self.mouth_points = []
            return
        self.mouth_points = faces.mouth_line(self.curve, cx, cy, r)
        self.mouth_mesh, self.mouth_indices = [], []


class FitLabel(Label):
    """A label cut only at ordinary spaces (NBSP joins a word), font shrunk to fit its box.

    ``natural_font`` is the size this label alone would take; a row of labels (the rating
    tiles) sets every member's ``font_cap`` to the smallest natural size so the row reads
    as one size. Kivy never wraps the text itself (``text_size`` stays None): the lines are
    the ones computed here. Refitting runs on Kivy's main thread (a Clock trigger).
    """

    source = StringProperty("")
    max_font = NumericProperty(24)
    min_font = NumericProperty(12)
    max_lines = NumericProperty(2)
    one_line_down_to = NumericProperty(1.0)
    inset = NumericProperty(0)         # horizontal margin kept free on each side
    font_cap = NumericProperty(0)      # 0: no cap
    natural_font = NumericProperty(0)  # set by the fit; read by the row
    fitted = ObjectProperty(None, allownone=True)  # the last textfit.Fit (tests read its lines)

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._refit_soon = Clock.create_trigger(lambda _dt: self.refit(), -1)
        self.bind(source=self._refit_soon, size=self._refit_soon, max_font=self._refit_soon,
                  font_cap=self._refit_soon, max_lines=self._refit_soon, bold=self._refit_soon)
        self._refit_soon()

    def _measure(self, text: str, font: float) -> float:
        key = (text, font, self.bold, self.font_name)
        width = _WIDTHS.get(key)
        if width is None:
            width = float(CoreLabel(font_size=font, bold=self.bold, font_name=self.font_name).get_extents(text)[0])
            if len(_WIDTHS) > 4096:
                _WIDTHS.clear()
            _WIDTHS[key] = width
        return width

    def refit(self) -> None:
        args = (self.source, self.width - 2 * self.inset, self.height)
        natural = fit_text(*args, self.max_font, self.min_font, int(self.max_lines), self._measure,
                           self.one_line_down_to)
        self.natural_font = natural.font_size
        fit = natural
        if 0 < self.font_cap < natural.font_size:
            fit = fit_text(*args, self.font_cap, self.min_font, int(self.max_lines), self._measure, 1.0)
        self.fitted = fit
        self.font_size = fit.font_size
        self.text = fit.text


_WIDTHS: dict[tuple[str, float, bool, str], float] = {}


class LevelTile(ButtonBehavior, BoxLayout):
    """One rating level: colour + face + text label, one large target."""

    score = NumericProperty(0)
    text = StringProperty("")
    tile_hex = StringProperty("#FFFFFF")
    face_rgba = ListProperty([0.5, 0.5, 0.5, 1])
    curve = NumericProperty(0.0)
    open_mouth = BooleanProperty(False)
    eyes = StringProperty("dots")
    brows = BooleanProperty(False)


class Chip(ButtonBehavior, Label):
    """A reason the citizen can toggle on or off."""

    code = StringProperty("")
    chosen = BooleanProperty(False)


class BigButton(ButtonBehavior, Label):
    """A large text button ("Gửi", "Bỏ qua", the language toggle)."""

    bg_hex = StringProperty("#E4E4E4")
    fg_hex = StringProperty("#111111")
    edge_hex = StringProperty("")  # visible edge (WCAG 1.4.11) when the fill alone is too close to the page
    edge_width = NumericProperty(0)
