"""A device process for the durability test: commits ratings T-0..T-{total-1} to its outbox and drains it.

Run as ``python -m tests.device.durability_worker CONFIG TOTAL INTERVAL_S``. It is
SIGKILLed at random points and restarted; it resumes from the outbox's persistent
seq, so rating n always has ticket T-n and is generated exactly once.
"""

from __future__ import annotations

import logging
import sys
import time

from device.config import load_device_config
from device.link import DeviceLink
from device.outbox import Outbox
from device.state import RatingDraft


def main() -> None:
    cfg_path, total, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    logging.basicConfig(level=logging.WARNING)
    cfg = load_device_config(cfg_path)
    outbox = Outbox(cfg.outbox.path, device=cfg.device_id, centre=cfg.centre, counter=cfg.counter)
    link = DeviceLink(cfg.mqtt, device=cfg.device_id, centre=cfg.centre, counter=cfg.counter, outbox=outbox,
                      heartbeat_s=cfg.heartbeat_s).start()
    deadline = time.monotonic() + 120  # bounded, even if the test that started us vanished
    while time.monotonic() < deadline:
        n = outbox.next_seq
        if n < total:
            now = time.time_ns() // 1_000_000
            outbox.commit(RatingDraft(officer="cb01", ticket=f"T-{n}", service=None, dossier=None, closed_at=now,
                                      scale=4, score=1 + n % 4, reasons=(), input="button", rated_at=now,
                                      mono_ms=time.monotonic_ns() // 1_000_000))
            link.kick()
        time.sleep(interval)
    link.stop()


if __name__ == "__main__":
    main()
