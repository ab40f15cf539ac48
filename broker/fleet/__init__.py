"""The fleet registry and its credentials: which identities the wire admits (devices, centres, counters, officers)."""
