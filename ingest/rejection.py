"""Rule rejections: a well-formed message that the ingest's business rules refuse.

Distinct from :class:`broker.contract.ContractError`, which says a payload or topic is
malformed. A ``RuleRejection`` says the payload was fine but the registry (unknown device,
wrong centre or counter), the ticket rules (duplicate, unknown, outside the window) or the
clock rules (absurd timestamp) refuse it. Both end as a ``rejected`` point with a stable
``reason`` string; keeping them apart lets the stats, the logs and the dashboards tell
"a device sends garbage" from "a device sends well-formed data we may not count".
"""

from __future__ import annotations

from broker.contract import Refusal


class RuleRejection(Refusal):
    """A business-rule refusal of a valid message, with a stable reason code."""
