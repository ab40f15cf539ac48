"""Broker user names of the services (not terminals): one rule, used by the Mosquitto
renderer (passwd and ACL), the ingest's worker supervisor and the QMS bridge.

Service user names contain a dot, which ``broker.contract.ID_PATTERN`` forbids, so a device
can never be registered under a service's name. The broker forces every client id to the
username, so each identity owns exactly one persistent session: two ingest instances, or two
worker processes of one instance, need two users.
"""

from __future__ import annotations

INGEST_USER = "svc.ingest"
ADMIN_USER = "svc.admin"
QMS_USER_PREFIX = "svc.qms."
# The web rating service (web/): publishes citizens' phone ratings on hl/v1/<centre>/web/rating
WEB_USER = "svc.web"


def qms_user(centre: str) -> str:
    """The QMS bridge of one centre."""
    return f"{QMS_USER_PREFIX}{centre}"


def ingest_instance_users(instances: int = 1) -> list[str]:
    """One broker user per ingest instance: ``svc.ingest`` (the first), ``svc.ingest.2`` ... ``svc.ingest.N``."""
    return [INGEST_USER] + [f"{INGEST_USER}.{i}" for i in range(2, instances + 1)]


def worker_user(instance_user: str, index: int) -> str:
    """Worker ``index`` of an ingest instance (ingest/workers.py): the first keeps the instance's user."""
    return instance_user if index == 0 else f"{instance_user}.w{index}"


def ingest_users(instances: int = 1, workers: int = 1) -> list[str]:
    """Every ingest user: each instance's own, then its worker processes' (each its own session)."""
    return [worker_user(u, k) for u in ingest_instance_users(instances) for k in range(workers)]
