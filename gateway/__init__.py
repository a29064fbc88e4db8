"""The gateway: WebSocket and REST edges around a sans-I/O Discord Gateway v10 core."""
