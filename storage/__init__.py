"""What is stored and how it is read: the InfluxDB schema, the connection model, the InfluxQL
query client and line protocol. Shared by every writer (the ingest, rollups, the national
consumer), the dashboards and the reports; it imports nothing above broker.kernel."""
