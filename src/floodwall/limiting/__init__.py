"""Rate limiting: the per-request check, the deny cache, the local fallback, live limits,
route limits and the circuit breaker."""
