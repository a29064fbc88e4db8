"""Real services that the tests start on this machine (no Docker here): see cassandra.py."""
