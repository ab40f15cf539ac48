"""MQTT: the connection settings, the one paho session every publisher uses, and the ingest's
lean consumer (no paho) with its packet codec."""
