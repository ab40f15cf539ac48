"""String field values reach InfluxDB 1.6.7 exactly as sent (line protocol escapes only `"` and `\\`)."""

from __future__ import annotations

import pytest

from hailong.localstack import InfluxServer
from storage.connection import InfluxConnection
from storage.influxql import InfluxQL
from storage.lineproto import Point
from storage.writer import make_writer

AWKWARD = [
    "một\ndòng mới",                # newline inside a value (issue 12, item 9)
    "crlf\r\nand\ttab",
    "trailing backslash \\",
    'quote " and \\" escaped quote',
    "literal backslash-n \\n not a newline",
    "comma, equals= space",
    "emoji 😞 and NUL-free control \x07",
    "\n",
]


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_string_fields_stored_exactly(request: pytest.FixtureRequest, influx_server: InfluxServer,
                                      influx_db: InfluxQL, api: str) -> None:
    # v2: influxdb-client through the /api/v2/write proxy the suite uses for 1.6.7
    url = influx_server.url if api == "v1" else request.getfixturevalue("v2proxy").url
    writer = make_writer(InfluxConnection(url=url, api=api, database=influx_db.database))
    try:
        points = [Point("rejected", {"reason": "t", "centre": f"c{i}"}, {"payload": v, "n": i}, 1_000_000_000 + i)
                  for i, v in enumerate(AWKWARD)]
        writer.write([p.to_line() for p in points])
    finally:
        writer.close()
    rows = influx_db.rows('SELECT "payload", "n" FROM "rejected"')
    got = {int(r["n"]): r["payload"] for r in rows}
    assert got == dict(enumerate(AWKWARD))


def test_newline_is_not_escaped_in_the_line() -> None:
    line = Point("m", {"t": "x"}, {"f": "a\nb"}, 1).to_line()
    assert line == 'm,t=x f="a\nb" 1'
