"""QMS bridge: a queue system's webhook or database -> QmsEvents on hl/v1/{centre}/qms/{counter}.

Modules: config (qms.toml), mapping (vendor record -> event, deterministic ids),
webhook (HTTP callback and /healthz), sql (incremental polling), outbox (SQLite),
publisher (MQTT QoS 1), health, service (composition), cli (`hailong qms bridge`).
"""
