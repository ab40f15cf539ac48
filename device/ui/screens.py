"""One Screen class per terminal state; each fills its .kv layout from a :class:`View`."""

from __future__ import annotations

from kivy.properties import ObjectProperty, StringProperty
from kivy.uix.screenmanager import Screen

from ..i18n import Catalogue
from ..state import View
from .textfit import NBSP
from .theme import level_style, rgba
from .widgets import Chip, FitLabel, LevelTile


def unbroken(text: str) -> str:
    """A name or counter label kept on one line ("Nguyễn Văn An", "Quầy 3" are never cut)."""
    return text.replace(" ", NBSP)


def who_text(view: View, cat: Catalogue) -> str:
    """ "Quầy 3 - Cán bộ Nguyễn Văn An": the counter and the officer the citizen is rating
    (the QMS close's officer when known, else the one logged in at the terminal)."""
    counter = unbroken(view.counter_label)
    name = view.rated_officer_name or view.officer_name
    return cat.text("prompt.who", counter=counter, officer=unbroken(name)) if name else counter


class TerminalScreen(Screen):
    def update(self, view: View, cat: Catalogue, device: str) -> None:
        top = self.ids.get("top")
        if top is not None:
            top.title = view.centre_name
            top.lang_text = cat.text("switch_to")
            assist = top.ids.get("assist")
            if assist is not None:
                top.assist_on = view.assist
                top.assist_text = cat.text("assist.off" if view.assist else "assist.on")
                # a terminal without the citizen's button has none at all (not a hidden, zero-width one)
                if view.assist_offered and assist.parent is None:
                    top.add_widget(assist, index=0)
                elif not view.assist_offered and assist.parent is not None:
                    top.remove_widget(assist)


class IdleScreen(TerminalScreen):
    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        self.ids.counter.text = view.counter_label
        self.ids.officer.text = cat.text("idle.officer", name=view.officer_name or cat.text("idle.no_officer_name"))
        self.ids.serving.text = cat.text("idle.serving", ticket=view.serving_ticket) if view.serving_ticket else ""
        self.ids.hint.source = cat.text("idle.waiting")


class PromptScreen(TerminalScreen):
    countdown_fmt = StringProperty("")
    _built: tuple[int, str] | None = None

    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        self.countdown_fmt = cat.text("countdown")
        self.ids.title.source = cat.text("prompt.title")
        self.ids.who.source = who_text(view, cat)
        self.ids.ticket.text = (cat.text("prompt.ticket", ticket=view.prompt_ticket) if view.prompt_ticket
                                else cat.text("prompt.walkup"))
        if self._built != (view.scale, cat.language):  # rebuilt only when scale or language changes
            self._built = (view.scale, cat.language)
            box = self.ids.tiles
            box.clear_widgets()
            for i, label in enumerate(cat.levels(view.scale)):
                score = view.scale - i  # best first, left to right
                style = level_style(score, view.scale)
                tile = LevelTile(score=score, text=label, tile_hex=style.tile, face_rgba=list(rgba(style.face)),
                                 curve=style.curve, open_mouth=style.open_mouth, eyes=style.eyes, brows=style.brows)
                tile.bind(on_release=lambda t: self.manager.press(int(t.score)))
                tile.ids.label.bind(natural_font=self._same_font)
                box.add_widget(tile)

    def _same_font(self, *_a: object) -> None:
        """Every tile label at the size of the one that needs the smallest (a row reads as one size)."""
        labels = self.tile_labels()
        fonts = [lb.natural_font for lb in labels if lb.natural_font > 0]
        cap = min(fonts) if len(fonts) == len(labels) else 0
        for lb in labels:
            lb.font_cap = cap

    def tile_labels(self) -> list[FitLabel]:
        return [t.ids.label for t in self.ids.tiles.children]

    def tile(self, score: int) -> LevelTile:
        return next(t for t in self.ids.tiles.children if t.score == score)


class ReasonsScreen(TerminalScreen):
    countdown_fmt = StringProperty("")
    _built: tuple[tuple[str, ...], str] | None = None

    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        self.countdown_fmt = cat.text("countdown")
        self.ids.title.source = cat.text("reasons.title")
        self.ids.send.text = cat.text("reasons.send")
        self.ids.skip.text = cat.text("reasons.skip")
        self.ids.back.text = cat.text("reasons.back")
        grid = self.ids.chips
        if self._built != (view.reasons_offered, cat.language):
            self._built = (view.reasons_offered, cat.language)
            grid.clear_widgets()
            grid.cols = 3 if len(view.reasons_offered) <= 6 else 4
            for code in view.reasons_offered:
                chip = Chip(code=code, text=cat.reason(code))
                chip.bind(on_release=lambda c: self.manager.toggle_reason(c.code))
                grid.add_widget(chip)
        for chip in grid.children:
            chip.chosen = chip.code in view.reasons_chosen

    def chip(self, code: str) -> Chip:
        return next(c for c in self.ids.chips.children if c.code == code)


class ThanksScreen(TerminalScreen):
    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        self.ids.title.text = cat.text("thanks.title")
        self.ids.subtitle.source = cat.text("thanks.subtitle")
        score = view.score or view.scale
        style = level_style(score, view.scale)
        # confirms what was recorded: the face and the words of the level the citizen chose
        self.ids.chosen.text = cat.text("thanks.chosen", label=cat.levels(view.scale)[view.scale - score])
        self.ids.who.source = who_text(view, cat)
        self.ids.face.face_rgba = list(rgba(style.face))
        self.ids.face.curve = style.curve
        self.ids.face.open_mouth = style.open_mouth
        self.ids.face.eyes = style.eyes
        self.ids.face.brows = style.brows


class OutOfServiceScreen(TerminalScreen):
    """In the terminal's language only: what is wrong, what a technician does, the device id and a
    short code. The reason's detail (exception text, a file path) is in the log, never drawn."""

    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        self.ids.title.source = cat.text("oos.title")
        reason = view.oos_reason or "no_config"
        self.ids.message.source = cat.text(f"oos.{reason}.message", counter=unbroken(view.counter_label))
        self.ids.fix.source = cat.text(f"oos.{reason}.fix")
        self.ids.device.text = cat.text("oos.device", device=device or cat.text("oos.unknown_device"))
        self.ids.code.text = cat.text("oos.code", code=view.oos_code) if view.oos_code else ""


class LaterScreen(TerminalScreen):
    """"Quét mã để đánh giá sau": the QR code of the unrated ticket's rating link (made on this terminal,
    device/ui/qr.py), the ticket number, who served it, and how long the link stays valid."""

    qr_texture = ObjectProperty(None, allownone=True)
    url = StringProperty("")

    @staticmethod
    def qr_side(width: float, height: float, texture: object) -> float:
        """The QR's side: the largest whole number of pixels per module that fits, so every module is drawn
        the same size (a camera reads even modules best)."""
        room = min(width, height)
        modules = getattr(texture, "width", 0)
        return float(int(room // modules) * modules) if modules and room >= modules else room

    def update(self, view: View, cat: Catalogue, device: str) -> None:
        super().update(view, cat, device)
        if view.later_url and view.later_url != self.url:  # a texture per link, not per redraw
            from .qr import qr_texture

            self.url = view.later_url
            self.qr_texture = qr_texture(view.later_url)
        self.ids.title.source = cat.text("later.title")
        self.ids.ticket.text = cat.text("prompt.ticket", ticket=view.later_ticket) if view.later_ticket else ""
        self.ids.who.source = who_text(view, cat)
        self.ids.hint.source = cat.text("later.hint")
        self.ids.valid.source = cat.text("later.valid", days=view.later_days)
