"""The service outbox (broker/mqtt/outbox.py) off the commit path: WAL checkpoints run on their own thread and
connection, so the WAL stays bounded although no commit checkpoints; acks commit without their own fsync and what
they leave behind is exactly what was not acked, after a close and a reopen."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from broker.mqtt.outbox import CHECKPOINT_EVERY_S, Outbox


@dataclass(frozen=True)
class Msg:
    counter: str = "q1"

    def to_json(self) -> bytes:
        return b'{"v":1,' + b'"x":"' + b"r" * 600 + b'"}'


@dataclass(frozen=True)
class Item:
    event_id: str
    topic: str = "hl/v1/c/web/rating"
    event: Msg = Msg()


def wal(path: Path) -> int:
    p = path.with_name(path.name + "-wal")
    return p.stat().st_size if p.exists() else 0


def test_the_wal_is_checkpointed_off_the_commit_path_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    try:
        sizes = []
        for r in range(3):
            for i in range(200):  # one commit per event, as a quiet service does
                eid = f"e{r}-{i}"
                assert box.enqueue([Item(eid)]).new == (eid,)
                if i % 2:
                    box.acked(eid)
            sizes.append(wal(path))
            time.sleep(CHECKPOINT_EVERY_S * 2.5)  # the checkpointer's turn
        # 600 commits of several pages each; without a checkpoint the WAL would hold all of them (~3 x round 1)
        assert sizes[0] > 0 and max(sizes) <= sizes[0] * 1.5, sizes
        assert box.depth() == 300
    finally:
        box.close()
    again = Outbox(path)
    try:
        left = {p.event_id for p in again.pending(limit=2000)}
        assert left == {f"e{r}-{i}" for r in range(3) for i in range(0, 200, 2)}
        assert all(again.seen(f"e{r}-{i}") for r in range(3) for i in range(200))
        assert again.enqueue([Item("e0-1")]).duplicates == ("e0-1",)  # acked, still known: never queued twice
    finally:
        again.close()
