"""The national side of the federation: the consumer that stores the provinces' daily aggregates.

A program of its own, beside the ingest (import-linter: it never imports ingest/, device/ or
qms_bridge/, and they never import it). docs/national.md describes the topology.
"""
