"""Low-score reason codes shown as the terminal showed them: Grafana value mappings from the one catalogue.

A rating stores its reasons as one comma list in one string field (``thoi_gian_cho,thai_do``, in the order
the citizen tapped them). A Grafana value mapping replaces a whole cell, and a regex mapping can only
reuse text of the cell itself (``value.replace(regex, text)``), so no single mapping can translate the
codes one by one. Instead there is one regex mapping per SET of codes: it matches a list of exactly that
many items containing every code of the set (the contract forbids a code twice, so that is set equality,
in any tap order) and the cell reads the set's labels in catalogue order ("Thái độ cán bộ, Thời gian chờ
lâu"). The labels are broker.ratingscale's, the words the terminal and the web page showed the citizen.

Every set of up to :data:`ALL_SETS_UP_TO` configured codes is covered (63 mappings for the 6 default
codes); with more codes configured, every set of up to :data:`LARGEST_SET` of them (a citizen rarely ticks
more), and a longer list shows its codes.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any

from broker import ratingscale
from broker.contract import REASON_PATTERN

ALL_SETS_UP_TO = 8  # codes configured: 2^8 - 1 = 255 mappings at most
LARGEST_SET = 3  # beyond that many codes configured, sets of at most this many


def reason_text(codes: tuple[str, ...] | list[str], language: str = "vi") -> str:
    """The labels of ``codes`` in catalogue order (then any others in the given order), joined by ", "."""
    order = {c: i for i, c in enumerate(ratingscale.REASON_CODES)}
    ranked = sorted(codes, key=lambda c: (order.get(c, len(order)), list(codes).index(c)))
    return ", ".join(ratingscale.reason_label(language, c) for c in ranked)


def _set_pattern(members: tuple[str, ...]) -> str:
    # Grafana anchors a pattern without slashes (^...$): every member present as a whole item, and exactly
    # len(members) items
    present = "".join(f"(?=(?:.*,)?{c}(?:,|$))" for c in members)
    return present + "[^,]+" + ("(?:,[^,]+)" + (f"{{{len(members) - 1}}}" if len(members) > 2 else "")
                                if len(members) > 1 else "")


def reason_mappings(codes: tuple[str, ...] | list[str], language: str = "vi") -> list[dict[str, Any]]:
    """Regex value mappings turning a stored reason list of ``codes`` into the catalogue's labels."""
    for c in codes:
        if not re.fullmatch(REASON_PATTERN, c):
            raise ValueError(f"reason code {c!r} does not match {REASON_PATTERN}")
    largest = len(codes) if len(codes) <= ALL_SETS_UP_TO else LARGEST_SET
    out: list[dict[str, Any]] = []
    for size in range(1, largest + 1):
        for members in combinations(codes, size):
            text = reason_text(members, language).replace("$", "$$")  # the text is a JS replacement string
            out.append({"type": "regex", "options": {"pattern": _set_pattern(members),
                                                     "result": {"text": text, "index": len(out)}}})
    return out
