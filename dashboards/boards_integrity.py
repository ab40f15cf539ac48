"""The integrity board: patterns worth a supervisor's look (DESIGN.md "Integrity rules").

Every ratio here comes from ONE query whose counts are filled with 0 (``fill(0)`` in a daily
subquery, then summed), never from a Grafana ``merge`` of two queries: a query that matches
nothing for a row (no fast press, no ticket-bound rating) leaves the merged cell undefined and
Grafana shows NaN. So 0 % shows as 0 % and a walk-up-only counter as 100 %.
"""

from __future__ import annotations

from storage.schema import TICKET_REJECTIONS, WALKUP_FALSE, Field, Measurement, Tag

from .channels import IS_WEB
from .grafana import Dashboard, Panel, Target, binary, filter_at_least, merge, organize, sort_by
from .queries import LABELS, RATED, RATING_KEYS, null_safe, raw, tag_filters
from .settings import DashboardSettings
from .variables import tag_variables

M, T, F = Measurement, Tag, Field
FAST_MS = 1000
NOT_WALKUP = f"\"{T.WALKUP}\" = '{WALKUP_FALSE}'"


def _tags(group: tuple[str, ...]) -> str:
    return ", ".join(f'"{g}"' for g in group)


def filled_counts(counts: dict[str, str], group: tuple[str, ...], where: str = "", source: str = "") -> str:
    """``alias -> aggregate`` per ``group``, each 0 (not null) when nothing matched.

    InfluxQL fills empty aggregates only under GROUP BY time, so the counts are taken per day
    with fill(0) and summed; ``source`` replaces the measurement with a subquery.
    """
    cond = f" AND {where}" if where else ""
    inner = ", ".join(f'{agg} AS "{alias}"' for alias, agg in counts.items())
    outer = ", ".join(f'sum("{alias}") AS "{alias}"' for alias in counts)
    src = source or f'"{M.RATING}" WHERE $timeFilter{cond}{tag_filters(RATING_KEYS)}'
    return (f"SELECT {outer} FROM (SELECT {inner} FROM {src} GROUP BY time(1d), {_tags(group)} fill(0))"
            f" GROUP BY {_tags(group)}")


def walkup_panel() -> Panel:
    # the ticket field exists exactly on ticket-bound ratings (walk-ups have none)
    q = filled_counts({"all": f'count("{F.SCORE}")', "ticketed": f'count("{F.TICKET}")'}, (T.CENTRE, T.COUNTER))
    return Panel(
        "integrity.walkup", "table", "Tỷ lệ đánh giá không có vé theo quầy",
        "Share of walk-up ratings (no ticket) per counter; they never count in an officer's score.",
        (Target("A", q),),
        (binary("all", "-", "ticketed", "walkup"), binary("walkup", "/", "all", "walkup_share"),
         sort_by("walkup_share"),
         organize({"centre": "Trung tâm", "counter": "Quầy", "all": "Tất cả", "walkup": "Không vé",
                   "walkup_share": "Tỷ lệ không vé"}, exclude=("Time", "ticketed"))), width=12,
        percent=("Tỷ lệ không vé",))


def fast_panel() -> Panel:
    group = (T.CENTRE, T.COUNTER, T.OFFICER)
    # 1 when response_ms < 1000 (an integer >= 0), else 0: floor(2000 / (r + 1001))
    raw = (f'(SELECT "{F.SCORE}", floor({2 * FAST_MS} / ("{F.RESPONSE_MS}" + {FAST_MS + 1})) AS "fast" '
           f'FROM "{M.RATING}" WHERE $timeFilter AND {NOT_WALKUP}{tag_filters(RATING_KEYS)} GROUP BY {_tags(group)})')
    q = filled_counts({RATED: f'count("{F.SCORE}")', "fast": 'sum("fast")'}, group, source=f"{raw} WHERE $timeFilter")
    return Panel(
        "integrity.fast", "table", "Đánh giá trong vòng 1 giây sau khi đóng vé",
        "Ratings pressed less than 1 s after the ticket closed, per counter and officer.",
        (Target("A", q),),
        (binary("fast", "/", RATED, "fast_share"), sort_by("fast_share"),
         organize({"centre": "Trung tâm", "counter": "Quầy", "officer": "Cán bộ", RATED: LABELS[RATED],
                   "fast": "Dưới 1 giây", "fast_share": "Tỷ lệ dưới 1 giây"})), width=12,
        percent=("Tỷ lệ dưới 1 giây",))


def top_runs_panel(s: DashboardSettings) -> Panel:
    n = s.top_run_length
    group = (T.CENTRE, T.OFFICER)  # an officer's own run: a shift change at the counter breaks it
    top = f'SELECT "{F.SCORE}" / "{F.SCALE}" AS "top" FROM "{M.RATING}" WHERE $timeFilter{tag_filters(RATING_KEYS)}'
    runs = (f'SELECT count("moving_average") AS "runs" FROM (SELECT moving_average("top", {n}) '
            f'FROM ({top}) GROUP BY {_tags(group)}) WHERE "moving_average" = 1 GROUP BY {_tags(group)}')
    return Panel(
        "integrity.top_runs", "table", f"Chuỗi ≥ {n} lượt Rất hài lòng liên tiếp theo cán bộ",
        f"Per officer: windows of {n} consecutive ratings that are all the top score "
        f"(a run of L top scores gives L - {n} + 1 windows).", (Target("A", runs),),
        (organize({"centre": "Trung tâm", "officer": "Cán bộ", "runs": "Số cửa sổ"}),), width=12)


def disagreement_panel() -> Panel:
    group = (T.CENTRE, T.COUNTER, T.OFFICER)
    q = filled_counts({RATED: f'count("{F.SCORE}")', "disagree": f'count("{F.TERMINAL_OFFICER}")'}, group,
                      where=NOT_WALKUP)
    return Panel(
        "integrity.disagreement", "table", "Cán bộ trên thiết bị khác với hệ thống xếp hàng",
        "Ticket-bound ratings whose terminal named another officer than the queue system's close "
        "(credited to the QMS officer, shown here per counter and credited officer).",
        (Target("A", q),),
        (filter_at_least("disagree", 1), binary("disagree", "/", RATED, "disagree_share"),
         sort_by("disagree_share"),
         organize({"centre": "Trung tâm", "counter": "Quầy", "officer": "Cán bộ (theo QMS)", RATED: LABELS[RATED],
                   "disagree": "Khác cán bộ", "disagree_share": "Tỷ lệ khác"})), width=12,
        percent=("Tỷ lệ khác",))


def ticket_rejections_panel() -> Panel:
    # counter and device are tags of `rejected` (never parsed from the stored payload text)
    group = (T.CENTRE, T.COUNTER, T.DEVICE, T.REASON)
    q = (f'SELECT count("{F.TOPIC}") AS "n" FROM "{M.REJECTED}" WHERE $timeFilter AND '
         f'"{T.REASON}" =~ /^({"|".join(TICKET_REJECTIONS)})$/{tag_filters(RATING_KEYS)} GROUP BY {_tags(group)}')
    return Panel(
        "integrity.ticket_rejections", "table", "Vé trùng / vé không rõ theo quầy",
        "duplicate_ticket and unknown_ticket rejections per counter and terminal.",
        (Target("A", q),),
        (sort_by("n"), organize({"centre": "Trung tâm", "counter": "Quầy", "device": "Thiết bị", "reason": "Lý do",
                                 "n": "Số lần"})), width=12,
        value_text=(("duplicate_ticket", "Vé đã được đánh giá"), ("unknown_ticket", "Vé không khớp vé đã đóng")))


# how a web rating's link reached the citizen (RatingEvent.source); "unknown" = the link did not say
WEB_SOURCES: tuple[tuple[str, str], ...] = (("qr", "QR trên phiếu"), ("sms", "SMS"), ("zalo", "Zalo"),
                                            ("terminal-qr", "QR trên máy đánh giá"))
UNKNOWN_SOURCE = "unknown"
# why the ingest refused a web rating, as a supervisor reads it: every reason code the ingest writes on a
# ``rejected`` point (its rule refusals and the contract's), so no cell of the panel shows a bare code
WEB_REFUSAL_TEXT: tuple[tuple[str, str], ...] = (
    ("link_expired", "Liên kết đã hết hạn"),
    ("duplicate_ticket", "Vé đã được đánh giá (tại quầy hoặc qua web)"),
    ("unknown_ticket", "Vé không khớp vé đã đóng"),
    ("conflicting_event", "Cùng mã đánh giá, nội dung khác"),
    ("hold_budget_exceeded", "Quá nhiều đánh giá chờ vé đóng"),
    ("absurd_timestamp", "Thời gian không hợp lệ"),
    ("unknown_counter", "Quầy không có trong danh mục"),
    ("wrong_centre", "Sai trung tâm"),
    ("unknown_device", "Thiết bị không có trong danh mục"),
    ("retired_device", "Thiết bị đã ngừng sử dụng"),
    ("officer_mismatch", "Cán bộ không khớp"),
    ("outside_window", "Ngoài thời gian cho phép đánh giá"),
    ("walkup_not_allowed", "Không cho phép đánh giá không có vé"),
    ("malformed_json", "Bản tin không đọc được"),
    ("invalid_field", "Trường dữ liệu không hợp lệ"),
    ("payload_too_large", "Bản tin quá lớn"),
    ("bad_topic", "Chủ đề MQTT không hợp lệ"),
    ("topic_mismatch", "Chủ đề không khớp nội dung"),
    ("bad_id", "Mã không hợp lệ"),
    ("bad_day", "Ngày không hợp lệ"),
    ("write_rejected", "Cơ sở dữ liệu từ chối ghi"),
    ("wrong_counter", "Sai quầy"),
    ("unsupported_version", "Phiên bản bản tin không được hỗ trợ"),
)


def web_sources_panel() -> Panel:
    """Web ratings per centre and link source; "unknown" is what no source accounts for (all - the known)."""
    base = f"{NOT_WALKUP} AND {IS_WEB}"
    group = (T.CENTRE,)

    def q(alias: str, where: str) -> str:
        return (f'SELECT count("{F.SCORE}") AS "{raw(alias)}" FROM "{M.RATING}" WHERE $timeFilter AND {where}'
                f'{tag_filters(RATING_KEYS)} GROUP BY {_tags(group)}')

    codes = [code for code, _ in WEB_SOURCES]
    targets = [Target("A", q("web_all", base))] + [
        Target(chr(ord("B") + i), q(code, f"{base} AND \"{F.SOURCE}\" = '{code}'")) for i, code in enumerate(codes)]
    known = []  # running sum of the known sources
    for i, code in enumerate(codes[1:], start=1):
        known.append(binary(codes[0] if i == 1 else f"known{i - 1}", "+", code, f"known{i}"))
    return Panel(
        "integrity.web_sources", "table", "Đánh giá qua web theo nguồn liên kết",
        "Web ratings accepted per centre by how the link reached the citizen: QR printed on the queue slip, SMS, "
        "Zalo, QR shown by the terminal after its prompt timed out; unknown = the link did not say.",
        tuple(targets),
        (merge(), *null_safe("web_all", *codes), *known, binary("web_all", "-", f"known{len(codes) - 1}",
                                                                UNKNOWN_SOURCE),
         sort_by("web_all"),
         organize({T.CENTRE: "Trung tâm", **dict(WEB_SOURCES), UNKNOWN_SOURCE: "Không rõ", "web_all": "Tổng"},
                  exclude=("Time", *(raw(c) for c in ("web_all", *codes)),
                           *(f"known{i}" for i in range(1, len(codes)))),
                  order=(T.CENTRE, *codes, UNKNOWN_SOURCE, "web_all"))),
        width=12)


def web_refusals_panel() -> Panel:
    group = (T.CENTRE, T.REASON)
    q = (f'SELECT count("{F.TOPIC}") AS "n" FROM "{M.REJECTED}" WHERE $timeFilter AND {IS_WEB}'
         f"{tag_filters(RATING_KEYS)} GROUP BY {_tags(group)}")
    return Panel(
        "integrity.web_refusals", "table", "Đánh giá qua web bị từ chối theo lý do",
        "Web ratings the ingest refused, per centre and reason: link_expired (after the link's expiry or the web "
        "window after the close), duplicate_ticket (the ticket was already rated at the counter or on the web: "
        "first wins), unknown_ticket (no matching ticket close), and the rest.",
        (Target("A", q),),
        (sort_by("n"), organize({"centre": "Trung tâm", "reason": "Lý do", "n": "Số lần"}, exclude=("Time",))),
        width=12, value_text=WEB_REFUSAL_TEXT)


def late_panel() -> Panel:
    """The "Không hài lòng" that arrived after integrity.escalate_within_s (an outage backlog): told by the
    alert "Không hài lòng nhận muộn" and listed here, newest arrival first."""
    cols = (T.CENTRE_NAME, T.COUNTER_LABEL, T.OFFICER, T.OFFICER_NAME, T.TICKET, T.RATED_LOCAL, T.LATE_BY)
    q = (f'SELECT "{F.LATE_S}", ' + ", ".join(f'"{c}"' for c in cols) + f' FROM "{M.LATE_ESCALATION}" '
         f"WHERE $timeFilter{tag_filters(RATING_KEYS)} ORDER BY time DESC LIMIT 200")
    return Panel(
        "integrity.late", "table", "Không hài lòng nhận muộn",
        "'Not satisfied' ratings that reached the server later than the live-escalation limit after they were "
        "tapped (a terminal's backlog after an outage): not paged as urgent, told by the lower-severity alert "
        "hl-not-satisfied-late (one message per centre) and counted in ingest_stats.late_escalations.",
        (Target("A", q),),
        (organize({"Time": "Thời điểm nhận", T.CENTRE_NAME: "Trung tâm", T.COUNTER_LABEL: "Quầy",
                   T.OFFICER: "Mã cán bộ", T.OFFICER_NAME: "Cán bộ", T.TICKET: "Vé", T.RATED_LOCAL: "Đánh giá lúc",
                   T.LATE_BY: "Nhận muộn"},
                  exclude=(F.LATE_S,)),),
        width=24, no_value="—", times=("Thời điểm nhận",))


def integrity(s: DashboardSettings) -> Dashboard:
    return Dashboard(
        "hl-integrity", "Tính toàn vẹn dữ liệu",
        "Integrity: walk-up share, ratings within 1 s of ticket close, long top-score runs per officer, "
        "terminal/QMS officer disagreement, duplicate/unknown-ticket rejections, 'not satisfied' told late, "
        "web ratings per link source and web refusals per reason.",
        (walkup_panel(), fast_panel(), top_runs_panel(s), disagreement_panel(), ticket_rejections_panel(),
         late_panel(), web_sources_panel(), web_refusals_panel()),
        tag_variables(M.RATING, RATING_KEYS), timezone=s.timezone)
