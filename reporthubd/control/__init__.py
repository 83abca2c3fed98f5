"""The control plane: an aiohttp server inside the daemon, on the daemon's event loop."""
