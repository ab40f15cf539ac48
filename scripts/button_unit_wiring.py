"""Draw the accessible button unit's wiring diagram from its spec (docs/device.md).

    python scripts/button_unit_wiring.py [--device dn-q01] [--out docs/screens/button_unit_wiring.png]

The pins are the device's in deploy/example-fleet/devices.toml (score_N, led_N, buzzer,
served), the labels the terminal's own (device/i18n/vi.toml), the order the screen's:
best to worst, left to right. Each button carries its raised shape mark.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch, Polygon, Rectangle  # noqa: E402

from device.i18n import load_catalogue  # noqa: E402

# raised shape per level, best first (a 3-level unit uses the first two and the cross)
SHAPES = {5: ("circle", "triangle", "square", "cross", "diamond"), 4: ("circle", "triangle", "square", "cross"),
          3: ("circle", "triangle", "cross")}
SHAPE_NAMES = {"circle": "tròn", "triangle": "tam giác", "square": "vuông", "cross": "chữ X", "diamond": "thoi"}
WIRE = {"button": "#1f5fbf", "led": "#c0392b", "buzzer": "#7d3c98", "gnd": "#222222"}


def shape(ax: plt.Axes, kind: str, x: float, y: float, r: float) -> None:
    kw = {"facecolor": "#333333", "edgecolor": "none", "zorder": 5}
    if kind == "circle":
        ax.add_patch(Circle((x, y), r * 0.55, **kw))
    elif kind == "triangle":
        ax.add_patch(Polygon([(x - r * 0.6, y - r * 0.45), (x + r * 0.6, y - r * 0.45), (x, y + r * 0.6)], **kw))
    elif kind == "square":
        ax.add_patch(Rectangle((x - r * 0.48, y - r * 0.48), r * 0.96, r * 0.96, **kw))
    elif kind == "diamond":
        ax.add_patch(Polygon([(x, y - r * 0.65), (x + r * 0.5, y), (x, y + r * 0.65), (x - r * 0.5, y)], **kw))
    else:  # cross
        for sx in (1, -1):
            ax.plot([x - r * 0.5, x + r * 0.5], [y - sx * r * 0.5, y + sx * r * 0.5], color="#333333", lw=7,
                    solid_capstyle="round", zorder=5)


def draw(pins: dict[str, int], out: Path, device: str) -> None:
    scores = sorted((int(k.split("_")[1]) for k in pins if k.startswith("score_")), reverse=True)
    scale = max(scores)
    labels = [s.replace("\u00a0", " ") for s in load_catalogue("vi").levels(scale)]
    fig, ax = plt.subplots(figsize=(13, 8.6), dpi=110)
    ax.set_xlim(0, 130)
    ax.set_ylim(-4, 82)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(2, 81, f"Bộ nút đánh giá (button unit) - {device}: {scale} levels, best to worst left to right",
            fontsize=14, weight="bold", va="top")
    # the unit's front plate
    ax.add_patch(FancyBboxPatch((4, 43), 100, 28, boxstyle="round,pad=0.6", facecolor="#f4f1ea",
                                edgecolor="#555555", lw=1.5))
    xs = [4 + 100 * (i + 0.5) / len(scores) for i in range(len(scores))]
    gpio_y, gnd_y = 14, 6
    # the Pi's header, as the terminals used
    ax.add_patch(FancyBboxPatch((4, -2), 122, 20, boxstyle="round,pad=0.4", facecolor="#e8f3e8",
                                edgecolor="#2e7d32", lw=1.5))
    ax.text(6, 0.5, "Raspberry Pi 40-pin header (BCM numbers; buttons use the internal pull-up)", fontsize=9.5,
            va="center", color="#2e7d32")
    ax.plot([6, 124], [gnd_y, gnd_y], color=WIRE["gnd"], lw=2.5)
    ax.text(125, gnd_y, "GND", fontsize=9, va="center", ha="left", weight="bold")

    def terminal(x: float, name: str, color: str) -> None:
        ax.add_patch(Rectangle((x - 2.6, gpio_y - 1.6), 5.2, 3.2, facecolor="white", edgecolor=color, lw=1.5,
                               zorder=4))
        ax.text(x, gpio_y, name, fontsize=8, ha="center", va="center", zorder=6)

    for i, (score, x, label) in enumerate(zip(scores, xs, labels, strict=True)):
        kind = SHAPES[scale][i]
        # button with its raised mark
        ax.add_patch(Circle((x - 4, 52), 6.5, facecolor="#d9d4c7", edgecolor="#333333", lw=2, zorder=3))
        shape(ax, kind, x - 4, 52, 6.5)
        ax.text(x - 4, 38.5, f"{label}\n(score {score}, mark: {SHAPE_NAMES[kind]})", fontsize=9, ha="center",
                va="center", zorder=8, bbox={"facecolor": "white", "edgecolor": "#bbbbbb", "boxstyle": "round"})
        # its LED above it
        if f"led_{score}" in pins:
            ax.add_patch(Circle((x - 4, 65.5), 1.6, facecolor="#ffd54f", edgecolor="#8d6e00", lw=1.5, zorder=3))
            ax.text(x - 1.8, 67.4, "LED", fontsize=8)
            lx = x + 5
            ax.plot([x - 4, lx, lx], [65.5, 65.5, gpio_y + 1.6], color=WIRE["led"], lw=1.6)
            ax.add_patch(Rectangle((lx - 0.9, 27), 1.8, 5, facecolor="white", edgecolor=WIRE["led"], lw=1.3,
                                   zorder=4))
            ax.text(lx + 1.3, 29.5, "330 Ω", fontsize=7.5, va="center")
            terminal(lx, f"GPIO{pins[f'led_{score}']}", WIRE["led"])
            ax.plot([x - 5.2, x - 5.2], [64.5, gnd_y], color=WIRE["gnd"], lw=0.9, ls=(0, (2, 2)))
        # button: pin to ground
        bx = x - 1
        ax.plot([x - 4 + 4.5, bx, bx], [48, 40, gpio_y + 1.6], color=WIRE["button"], lw=1.8)
        terminal(bx, f"GPIO{pins[f'score_{score}']}", WIRE["button"])
        ax.plot([x - 8.5, x - 8.5], [47.5, gnd_y], color=WIRE["gnd"], lw=1.2)
    if "buzzer" in pins:
        bzx = 116
        ax.add_patch(Circle((bzx, 56), 4.2, facecolor="#444444", edgecolor="#111111", lw=1.5, zorder=3))
        ax.add_patch(Circle((bzx, 56), 1.0, facecolor="#999999", edgecolor="none", zorder=4))
        ax.text(bzx, 62.5, "buzzer\n(optional)", fontsize=8.5, ha="center")
        ax.plot([bzx + 2, bzx + 2], [52, gpio_y + 1.6], color=WIRE["buzzer"], lw=1.8)
        terminal(bzx + 2, f"GPIO{pins['buzzer']}", WIRE["buzzer"])
        ax.plot([bzx - 2, bzx - 2], [52, gnd_y], color=WIRE["gnd"], lw=1.2)
    if "served" in pins:
        ax.text(116, 30, f"officer's 'served'\nbutton: GPIO{pins['served']}\nto GND (counter side)",
                fontsize=8, ha="center", va="center", zorder=8,
                bbox={"facecolor": "white", "edgecolor": "#bbbbbb", "boxstyle": "round"})
    legend = [("button: GPIO to GND when pressed", WIRE["button"]), ("LED: GPIO - 330 Ω - LED - GND", WIRE["led"]),
              ("buzzer: GPIO - buzzer - GND", WIRE["buzzer"]), ("ground", WIRE["gnd"])]
    for i, (text, color) in enumerate(legend):
        ax.plot([4 + i * 32, 8 + i * 32], [75.5, 75.5], color=color, lw=2.2)
        ax.text(9 + i * 32, 75.5, text, fontsize=8.2, va="center")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="dn-q01")
    ap.add_argument("--fleet", type=Path, default=ROOT / "deploy" / "example-fleet")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screens" / "button_unit_wiring.png")
    args = ap.parse_args()
    devices = tomllib.loads((args.fleet / "devices.toml").read_text(encoding="utf-8"))["device"]
    pins = devices[args.device].get("pins", {})
    if not any(k.startswith("score_") for k in pins):
        raise SystemExit(f"device {args.device} has no button pins in {args.fleet / 'devices.toml'}")
    draw(pins, args.out, args.device)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
