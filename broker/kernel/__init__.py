"""Shared machinery every hailong process uses: settings and secrets, the MQTT session, systemd notify."""
