"""The federation's wire contract: one daily aggregate per centre, from a province to the nation.

Raw ratings never leave a province (DESIGN.md "Beyond one province"). What crosses is a
:class:`CentreDay`: the counts of one centre's service day -- rated tickets by legal class,
walk-ups, served tickets -- with a revision and a digest of the counts. No ticket, officer,
counter, device, reason or comment is in it.

Topics. The province's publisher writes ``fed/<centre>/<day>`` on its own broker; the
province broker's bridge (broker/mosquitto/federation.py) maps the local prefix ``fed/`` to
the remote ``national/<province>/``, so the national broker sees
``national/<province>/<centre>/<day>``. The province in the topic is therefore the bridge's
identity (the national ACL lets ``fed.<province>`` write only under its own prefix), and the
national consumer checks that the payload says the same.

Revisions. ``revision`` is the publisher's wall clock in epoch ms when it computed the
message (strictly increasing within one publisher run): a province that loses all its state
still publishes higher revisions than before, so the nation keeps the newest counts. The
consumer's rule: a higher revision replaces, an equal one with the same digest is a harmless
duplicate, an equal one with other counts is refused (``revision_conflict``), a lower one is
ignored (a late copy of something already superseded).

The digest is the first 32 hex digits of SHA-256 over the canonical counts (not the
revision): the consumer recomputes it, so a payload edited on the way is refused
(``bad_digest``), and two revisions with the same counts are recognisably the same.

Like broker/contract.py this runs anywhere (stdlib + pydantic) and parses through the same
:func:`broker.contract.parse_payload`, so refusals carry the same stable reason codes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from broker.kernel.settings import ConfigError, read_config_text

from .contract import ID_PATTERN, MAX_EPOCH_MS, ContractError, Id, _Message, parse_payload, validate_id

# What the province publisher writes locally; the bridge replaces it with national/<province>/.
LOCAL_PREFIX = "fed"
NATIONAL_PREFIX = "national"
# every aggregate of every province, as the national consumer subscribes to it
NATIONAL_FILTER = f"{NATIONAL_PREFIX}/+/+/+"
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DAY_RE = re.compile(DAY_PATTERN)
_ID_RE = re.compile(ID_PATTERN)
DIGEST_HEX = 32
# the counts the digest covers, in this order (the canonical form below)
COUNT_FIELDS = ("rated", "not_satisfied", "satisfied", "very_satisfied", "walkups", "served")

Count = Annotated[int, Field(ge=0, le=10_000_000, description="A count of one centre's day")]
Day = Annotated[str, Field(pattern=DAY_PATTERN, description="The centre's service day, local, YYYY-MM-DD")]


def validate_day(value: str) -> str:
    """``value`` if it is a real calendar day written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DAY_RE.match(value):
        raise ContractError("bad_day", f"day {value!r} must be YYYY-MM-DD", field="day")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise ContractError("bad_day", f"day {value!r} is not a calendar day", field="day") from None
    return value


def centre_day_digest(province: str, centre: str, day: str, counts: tuple[int, ...]) -> str:
    """SHA-256 (first 32 hex) of ``province|centre|day|rated|not_satisfied|...|served``."""
    text = "|".join((province, centre, day, *(str(c) for c in counts)))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:DIGEST_HEX]


class CentreDay(_Message):
    """One centre's service day, as the province counted it (schema version ``v: 1``)."""

    province: Id = Field(description="Province id; must equal the province in the national topic")
    centre: Id = Field(description="Centre id; must be one of the province's centres")
    day: Day = Field(description="Service day in the centre's local time, YYYY-MM-DD")
    revision: int = Field(ge=1, le=MAX_EPOCH_MS, description="Publisher's wall clock (epoch ms) when computed; "
                          "higher replaces lower")
    rated: Count = Field(description="Rated tickets (ratings bound to a ticket; walk-ups excluded)")
    not_satisfied: Count = Field(description="Rated tickets in the class Không hài lòng")
    satisfied: Count = Field(description="Rated tickets in the class Hài lòng (including Bình thường)")
    very_satisfied: Count = Field(description="Rated tickets in the class Rất hài lòng")
    walkups: Count = Field(description="Walk-up ratings (no ticket; never in the ratio)")
    served: Count = Field(description="Tickets served (closed) that day")
    digest: Annotated[str, Field(pattern=rf"^[0-9a-f]{{{DIGEST_HEX}}}$")] = Field(
        description="centre_day_digest of province, centre, day and the counts")

    @model_validator(mode="after")
    def _check(self) -> CentreDay:
        validate_day(self.day)
        if self.not_satisfied + self.satisfied + self.very_satisfied != self.rated:
            raise ValueError("rated: must equal not_satisfied + satisfied + very_satisfied")
        return self

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in COUNT_FIELDS)

    def expected_digest(self) -> str:
        return centre_day_digest(self.province, self.centre, self.day, self.counts)

    @classmethod
    def build(cls, province: str, centre: str, day: str, revision: int, *, rated: int, not_satisfied: int,
              satisfied: int, very_satisfied: int, walkups: int, served: int) -> CentreDay:
        counts = (rated, not_satisfied, satisfied, very_satisfied, walkups, served)
        return cls(v=1, province=province, centre=centre, day=day, revision=revision, rated=rated,
                   not_satisfied=not_satisfied, satisfied=satisfied, very_satisfied=very_satisfied,
                   walkups=walkups, served=served, digest=centre_day_digest(province, centre, day, counts))


def local_topic(centre: str, day: str) -> str:
    """Where the province's publisher writes (its own broker): ``fed/<centre>/<day>``."""
    return f"{LOCAL_PREFIX}/{validate_id(centre, 'centre')}/{validate_day(day)}"


def national_topic(province: str, centre: str, day: str) -> str:
    """The same message on the national broker: ``national/<province>/<centre>/<day>``."""
    return f"{NATIONAL_PREFIX}/{validate_id(province, 'province')}/{validate_id(centre, 'centre')}/{validate_day(day)}"


def province_prefix(province: str) -> str:
    """The bridge's remote prefix, trailing slash included (Mosquitto refuses and loses it without)."""
    return f"{NATIONAL_PREFIX}/{validate_id(province, 'province')}/"


@dataclass(frozen=True, slots=True)
class NationalTopic:
    province: str
    centre: str
    day: str


def parse_national_topic(topic: str) -> NationalTopic:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != NATIONAL_PREFIX:
        raise ContractError("bad_topic", f"topic {topic!r} is not {NATIONAL_PREFIX}/<province>/<centre>/<day>")
    _, province, centre, day = parts
    if not _ID_RE.match(province) or not _ID_RE.match(centre):
        raise ContractError("bad_topic", f"topic {topic!r}: province and centre must match {ID_PATTERN}")
    try:
        validate_day(day)
    except ContractError as exc:
        raise ContractError("bad_topic", f"topic {topic!r}: {exc.message}", field="day") from None
    return NationalTopic(province, centre, day)


def parse_centre_day(payload: bytes | str) -> CentreDay:
    return parse_payload(CentreDay, payload)


def check_centre_day(topic: NationalTopic, msg: CentreDay) -> None:
    """The payload names what its topic names, and its digest is that of its counts."""
    for name in ("province", "centre", "day"):
        if getattr(msg, name) != getattr(topic, name):
            raise ContractError("topic_mismatch", f"payload {name} {getattr(msg, name)!r} != topic {name} "
                                f"{getattr(topic, name)!r}", name)
    if msg.digest != msg.expected_digest():
        raise ContractError("bad_digest", f"digest {msg.digest} is not that of the counts "
                            f"({msg.expected_digest()})", "digest")


Verdict = Literal["store", "duplicate", "older", "conflict"]


def revision_verdict(stored: tuple[int, str] | None, msg: CentreDay) -> Verdict:
    """What the national side does with ``msg`` given the (revision, digest) it holds for that centre-day."""
    if stored is None or msg.revision > stored[0]:
        return "store"
    if msg.revision < stored[0]:
        return "older"
    return "duplicate" if msg.digest == stored[1] else "conflict"


# --------------------------------------------------------------------------- the accepted centres
# centres.json, rendered by `hailong national render` (broker/mosquitto/national.py) from
# provinces.toml and read by the national consumer: {"v": 1, "centres": {"<centre>": "<province>"}}.
# A centre id is unique nationally (the render refuses the same id in two provinces).


def load_centres(path: Path) -> dict[str, str]:
    """centre -> province; every problem is a ConfigError naming the file and the key."""
    text = read_config_text(path, "file not found (render it with `hailong national render`)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(path, None, f"cannot read: {exc}") from None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("centres"), dict):
        raise ConfigError(path, "centres", 'expected {"v": 1, "centres": {"<centre>": "<province>"}}')
    out: dict[str, str] = {}
    for centre, province in data["centres"].items():
        if not _ID_RE.match(centre) or not isinstance(province, str) or not _ID_RE.match(province):
            raise ConfigError(path, f"centres.{centre}", f"centre and province must match {ID_PATTERN}")
        out[centre] = province
    return out


def dump_centres(centres: dict[str, str]) -> str:
    return json.dumps({"v": 1, "centres": dict(sorted(centres.items()))}, indent=1, ensure_ascii=False) + "\n"
