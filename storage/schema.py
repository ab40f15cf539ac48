"""The InfluxDB storage schema: every measurement, tag key and field name, in one place.

Writers (the ingest), queries (dashboards, rollups, alert rules) and reports (weekly
scorecards) all name what is stored through this module, so a rename is one edit and a
typo is an AttributeError instead of an empty panel. DESIGN.md "InfluxDB schema" is the
specification; where we add to it (``rejected.detail``, ``device_status.state``, ...) the
addition is listed here too.

It lives in ``storage``, below the ingest and the dashboards alike (the dashboards may not
import the ingest). Nothing here imports anything but the contract's enums, so importing it
costs nothing.

Ticket numbers, dossier codes and event ids are fields, never tags (series cardinality).
"""

from __future__ import annotations

from typing import Final

from broker.contract import SatisfactionClass


class Measurement:
    """Measurement names."""

    RATING: Final = "rating"
    TICKET: Final = "ticket"
    # a recall/re-close of a served ticket (same tags and fields as ``ticket``): never counted as served,
    # only read back when the ticket index is rebuilt, so a rating answering the recall still binds to it
    TICKET_RECLOSE: Final = "ticket_reclose"
    DEVICE_STATUS: Final = "device_status"
    REJECTED: Final = "rejected"
    INGEST_STATS: Final = "ingest_stats"
    # daily rollups written by the dashboards' continuous queries (dashboards/rollup.py)
    RATING_1D: Final = "rating_1d"
    TICKET_1D: Final = "ticket_1d"
    REASON_1D: Final = "reason_1d"
    RATING_CENTRE_1D: Final = "rating_centre_1d"
    TICKET_CENTRE_1D: Final = "ticket_centre_1d"
    # one point per newly accepted "Không hài lòng" rating, at ingest arrival time (alerting keys on it)
    ESCALATION: Final = "escalation"
    # a newly accepted "Không hài lòng" that arrived later than integrity.escalate_within_s after its tap
    # (an outage backlog): the escalation's tags plus how late, at arrival time; the lower-severity
    # rule "Không hài lòng nhận muộn" tells it, grouped per centre
    LATE_ESCALATION: Final = "late_escalation"
    # every newly accepted "Không hài lòng" (the escalation's tags), stamped at its TAP time (the
    # corrected rated_at, never later than its arrival): the burst rule counts complaints by when
    # they were tapped, not by when a backlog delivered them
    COMPLAINT: Final = "complaint"
    # national side (national/): one point per centre and service day, stamped local midnight, from the
    # provinces' CentreDay aggregates (broker/federation.py); and the aggregates it refused, with a reason
    AGG_CENTRE_DAY: Final = "agg_centre_day"
    AGG_REJECTED: Final = "agg_rejected"
    # per province, at arrival time: aggregates received in one batch (the "silent > 26 h" alert keys on it)
    AGG_RECEIVED: Final = "agg_received"
    # per province and local day (stamped midnight): how many centres centres.json lists (completeness panel)
    AGG_ROSTER: Final = "agg_roster"
    # the national consumer's own counters (like ingest_stats)
    NATIONAL_STATS: Final = "national_stats"


class Tag:
    """Tag keys (indexed, low cardinality)."""

    PROVINCE: Final = "province"
    CENTRE: Final = "centre"
    COUNTER: Final = "counter"
    OFFICER: Final = "officer"
    SERVICE: Final = "service"
    DEVICE: Final = "device"
    CLASS: Final = "class"
    WALKUP: Final = "walkup"
    REASON: Final = "reason"
    INSTANCE: Final = "instance"
    # escalation only (low volume, so the ticket and display names may be tags there)
    TICKET: Final = "ticket"
    CENTRE_NAME: Final = "centre_name"
    COUNTER_LABEL: Final = "counter_label"
    OFFICER_NAME: Final = "officer_name"
    RATED_LOCAL: Final = "rated_local"
    REASONS: Final = "reasons"
    LATE_BY: Final = "late_by"  # late_escalation: how late it arrived, as a person reads it ("2 giờ 05 phút")


class Field:
    """Field keys (not indexed)."""

    SCORE: Final = "score"
    SCALE: Final = "scale"
    TICKET: Final = "ticket"
    DOSSIER: Final = "dossier"
    REASONS: Final = "reasons"
    EVENT_ID: Final = "event_id"
    RESPONSE_MS: Final = "response_ms"
    INPUT: Final = "input"
    SOURCE: Final = "source"  # a web rating's link source: qr, sms, zalo, terminal-qr
    COMMENT: Final = "comment"  # a web rating's short comment (never shown publicly)
    CLOCK_CORRECTED: Final = "clock_corrected"
    SERVE_S: Final = "serve_s"
    # vendor ticket identity (rating and ticket) when the QMS sends one
    TICKET_ID: Final = "ticket_id"
    # rating: the terminal's claimed officer when the QMS close names another (the tag is the QMS's)
    TERMINAL_OFFICER: Final = "terminal_officer"
    # rating: the QMS close time (ms) the rating was bound to, so a restart rebinds it to the same instance
    CLOSED_AT_MS: Final = "closed_at_ms"
    # rating: hash of the event's content (all but sent_at): a resend with other content is a conflict
    DIGEST: Final = "digest"
    # escalation
    RATED_AT_MS: Final = "rated_at_ms"
    WALKUP: Final = "walkup"
    LATE_S: Final = "late_s"  # late_escalation: arrival - tap, seconds
    # device_status
    ONLINE: Final = "online"
    OUTBOX_DEPTH: Final = "outbox_depth"
    OUTBOX_NEARLY_FULL: Final = "outbox_nearly_full"
    UPTIME_S: Final = "uptime_s"
    CPU_TEMP_C: Final = "cpu_temp_c"
    VERSION: Final = "version"
    STATE: Final = "state"
    # rejected
    TOPIC: Final = "topic"
    PAYLOAD: Final = "payload"
    DETAIL: Final = "detail"
    # rollups: ratings (or tickets) per local day; reason_1d has one field per reason code instead
    N: Final = "n"
    # ingest_stats (gauges and counters of one ingest instance)
    WRITTEN: Final = "written"
    IN_FLIGHT: Final = "in_flight"
    HELD: Final = "held"
    LATE_ESCALATIONS: Final = "late_escalations"  # "Không hài lòng" told late (late_escalation points)
    # agg_centre_day (counts of broker.federation.CentreDay, plus its revision and digest)
    RATED: Final = "rated"
    NOT_SATISFIED: Final = "not_satisfied"
    SATISFIED: Final = "satisfied"
    VERY_SATISFIED: Final = "very_satisfied"
    WALKUPS: Final = "walkups"
    SERVED: Final = "served"
    REVISION: Final = "revision"
    # national_stats
    STORED: Final = "stored"
    DUPLICATES: Final = "duplicates"
    OLDER: Final = "older"
    REFUSED: Final = "refused"
    # agg_roster
    CENTRES: Final = "centres"


# The ``class`` tag's value for the legal class "Không hài lòng".
NOT_SATISFIED: Final = SatisfactionClass.NOT_SATISFIED.value

# Values of the ``walkup`` tag.
WALKUP_TRUE: Final = "true"
WALKUP_FALSE: Final = "false"

# ``rejected.reason`` values of ticket refusals (duplicate or unknown ticket), as one tuple for queries
TICKET_REJECTIONS: Final = ("duplicate_ticket", "unknown_ticket")

# Longest ``rejected.payload`` kept (bytes of the original message, decoded lossily).
MAX_REJECTED_PAYLOAD: Final = 1024

