"""The admin HTTP API, driven over httpx's ASGI transport, on every store.

Each test runs on the in-memory store, on fakeredis and on a real redis-server (the
``store`` fixture). App exceptions are not re-raised by the transport: a crash is what a
real server would send, a 500, and the tests say that it must never happen.
"""
