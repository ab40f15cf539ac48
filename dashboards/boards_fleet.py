"""The fleet health board: which terminals are online, last seen, outbox depth, rejections.

Moved out of boards.py (one board, one module); ``boards.all_dashboards`` imports it.
"""

from __future__ import annotations

from broker.contract import QMS_BRIDGE_DEVICE
from storage.schema import Field, Measurement, Tag

from .grafana import Dashboard, Panel, Target, organize
from .queries import ONLINE_TEXT, count_query, group_clause, tag_filters
from .settings import DashboardSettings
from .variables import tag_variables

M, T, F = Measurement, Tag, Field
KEYS = (T.CENTRE, T.DEVICE)
QMS_TIME_FROM = "7d"  # a bridge quiet since Friday must still be listed on Monday morning
# the bridge's state (qms_bridge/health.py; "offline" is its last will) as a supervisor reads it
QMS_STATE_TEXT: tuple[tuple[str, str], ...] = (
    ("ok", "Hoạt động"), ("database_unreachable", "Mất kết nối CSDL hệ thống xếp hàng"),
    ("mapping_error", "Lỗi ánh xạ dữ liệu"), ("database_error", "Lỗi truy vấn CSDL"),
    ("broker_unreachable", "Mất kết nối broker"), ("offline", "Ngoại tuyến"))


def qms_panels() -> tuple[Panel, Panel]:
    """The QMS bridges: their retained status (stored by the ingest as device ``qms-bridge``) and the
    last ticket close each centre's queue system sent (what the "bridge quiet" alert watches)."""
    centre = tag_filters((T.CENTRE,))
    bridge = Panel(
        "fleet.qms_bridge", "table", "Cầu nối QMS: trạng thái",
        "Last status of each centre's QMS bridge (ok, database_unreachable, broker_unreachable, offline) "
        "and when it was last heard (it reports every minute).",
        (Target("A", f'SELECT last("{F.STATE}") AS "state" FROM "{M.DEVICE_STATUS}" WHERE $timeFilter AND '
                     f'"{T.DEVICE}" = \'{QMS_BRIDGE_DEVICE}\'{centre} GROUP BY "{T.CENTRE}"'),),
        (organize({"Time": "Lần cuối thấy", "centre": "Trung tâm", "state": "Trạng thái"}, exclude=()),),
        time_from=QMS_TIME_FROM, width=12, height=6, times=("Lần cuối thấy",), value_text=QMS_STATE_TEXT)
    last = Panel(
        "fleet.qms_last_event", "table", "Cầu nối QMS: vé đóng gần nhất",
        "The last ticket close each centre's queue system sent: a bridge quiet during opening hours raises "
        "the alert hl-qms-quiet (QMS bridge quiet during opening hours).",
        (Target("A", f'SELECT last("{F.TICKET}") AS "ticket" FROM "{M.TICKET}" WHERE $timeFilter{centre} '
                     f'GROUP BY "{T.CENTRE}"'),),
        (organize({"Time": "Vé đóng gần nhất", "centre": "Trung tâm", "ticket": "Số vé"}, exclude=()),),
        time_from=QMS_TIME_FROM, width=12, height=6, times=("Vé đóng gần nhất",))
    return bridge, last


def fleet_health(s: DashboardSettings) -> Dashboard:
    last_online = (f'SELECT last("{F.ONLINE}") AS "online" FROM "{M.DEVICE_STATUS}" WHERE $timeFilter'
                   + tag_filters(KEYS))

    def online_count(key: str, title: str, state: str) -> Panel:
        # by centre and device: every centre's QMS bridge reports as device "qms-bridge"
        q = (f'SELECT count("online") AS "devices" FROM ({last_online} GROUP BY "{T.CENTRE}", "{T.DEVICE}") '
             f'WHERE "online" = {state}')
        return Panel(key, "stat", title, f"Terminals and QMS bridges whose last status says online={state}.",
                     (Target("A", q),),
                     value_field="devices", width=6, height=5)

    return Dashboard(
        "hl-fleet", "Sức khỏe thiết bị",
        "Fleet health: online/offline, last seen, outbox depth, version, rejected messages by reason, "
        "QMS bridges (status, last ticket close).",
        (
            online_count("fleet.online", "Thiết bị trực tuyến", "true"),
            online_count("fleet.offline", "Thiết bị ngoại tuyến", "false"),
            Panel("fleet.status", "table", "Trạng thái thiết bị",
                  "Latest online state, outbox depth, version and uptime per terminal.",
                  (Target("A", f'SELECT last("{F.ONLINE}") AS "online", last("{F.OUTBOX_DEPTH}") AS "outbox_depth", '
                               f'last("{F.VERSION}") AS "version", last("{F.UPTIME_S}") AS "uptime_s" '
                               f'FROM "{M.DEVICE_STATUS}" WHERE $timeFilter' + tag_filters(KEYS)
                          + group_clause(KEYS)),),
                  (organize({"centre": "Trung tâm", "device": "Thiết bị", "online": "Trực tuyến",
                             "outbox_depth": "Hàng đợi", "version": "Phiên bản", "uptime_s": "Thời gian chạy (s)"}),),
                  width=12, value_text=ONLINE_TEXT),
            Panel("fleet.last_seen", "table", "Lần cuối thấy", "When each terminal last reported its status.",
                  (Target("A", last_online + group_clause(KEYS)),),
                  (organize({"Time": "Lần cuối thấy", "centre": "Trung tâm", "device": "Thiết bị",
                             "online": "Trực tuyến"}, exclude=()),), width=12, times=("Lần cuối thấy",),
                  value_text=ONLINE_TEXT),
            Panel("fleet.outbox", "timeseries", "Độ sâu hàng đợi outbox",
                  "Largest outbox depth per terminal per interval: ratings waiting to be sent.",
                  (Target("A", f'SELECT max("{F.OUTBOX_DEPTH}") FROM "{M.DEVICE_STATUS}" WHERE $timeFilter'
                          + tag_filters(KEYS) + ' GROUP BY time($__interval), "device" fill(none)',
                          fmt="time_series", alias="$tag_device"),), width=12),
            Panel("fleet.rejected", "barchart", "Bản tin bị từ chối theo lý do",
                  "Messages the ingest rejected, by reason code (never silently dropped).",
                  (Target("A", count_query(M.REJECTED, F.TOPIC, "n", (T.CENTRE,), group=(T.REASON,))),),
                  (organize({"reason": "Lý do", "n": "Số bản tin"}),), width=12),
            *qms_panels(),
        ),
        tag_variables(M.DEVICE_STATUS, KEYS), time_from="now-24h", timezone=s.timezone)
