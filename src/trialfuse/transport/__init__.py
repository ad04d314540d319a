"""How work reaches a device worker: the protocol, the process pool, and the worker's server."""
