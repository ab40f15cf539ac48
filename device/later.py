"""The rating link a terminal offers when its citizen did not rate in time ("Quét mã để đánh giá sau").

When a prompt times out, the terminal shows a QR code of ``https://<host>/r/<token>`` for that very
ticket (docs/web-rating.md): source ``terminal-qr``, the terminal's counter, the vendor ticket id when
the QMS sent one, the service day of the close in the centre's time zone, and the default expiry (end
of that day + ``web_link.valid_days``). It is signed with this counter's own link key
(broker.weblink.terminal_key, provisioned in ``web_link.key_file``), never the centre's: the web
service verifies a terminal link only under the key of the counter it names, so a stolen terminal can
sign links for its own counter only, and the ingest refuses one whose ticket closed elsewhere.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from broker import weblink
from broker.kernel.settings import ConfigError

from .config import DeviceConfig
from .state import BoundTicket


class RatingLinkSigner:
    """Signs the rating link of an unrated ticket with this counter's key (read once, at start)."""

    def __init__(self, config: DeviceConfig, config_path: Path | str | None = None) -> None:
        s = config.web_link
        if not s.enabled or s.base_url is None:
            raise ValueError("[web_link] is not enabled")
        key_name = "web_link.key" if s.key is not None else "web_link.key_file"
        text = s.secret_of("key", config_path, "web_link.")
        if text is None:
            raise ConfigError(config_path, key_name, "web_link.enabled needs this counter's link key")
        try:
            self.key_id, self._key = weblink.parse_terminal_secret(text)
        except ValueError as exc:  # the message never includes the secret
            raise ConfigError(config_path, key_name, str(exc)) from None
        self.base_url = s.base_url
        self.centre, self.counter = config.centre, config.counter
        self.zone = ZoneInfo(s.timezone)
        self.timezone, self.valid_days = s.timezone, s.valid_days

    def link(self, bound: BoundTicket) -> weblink.TicketLink:
        assert bound.ticket is not None and bound.closed_at is not None
        day = dt.datetime.fromtimestamp(bound.closed_at / 1000, self.zone).date()
        return weblink.TicketLink(centre=self.centre, ticket=bound.ticket, day=day,
                                  expires=weblink.default_expiry(day, self.timezone, self.valid_days),
                                  ticket_id=bound.ticket_id, counter=self.counter, source="terminal-qr")

    def __call__(self, bound: BoundTicket) -> str | None:
        """The URL for ``bound``; None for what has no rating link (a walk-up, a manual "served" press)."""
        if bound.ticket is None or bound.closed_at is None:
            return None
        return weblink.url(self.base_url, weblink.sign(self.link(bound), self.key_id, self._key))
