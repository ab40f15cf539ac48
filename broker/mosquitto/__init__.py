"""How Mosquitto enforces the registry: mosquitto.conf, passwd, ACL and certificates, rendered from the fleet."""
