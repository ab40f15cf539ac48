"""The web rating service: citizens rate a served ticket later from a phone (docs/web-rating.md).

A program of its own beside the QMS bridge: it imports broker (contract, links, MQTT session,
outbox) and never the terminal, the ingest or the bridge.
"""
