"""What operators see: metrics, telemetry, the request log, top offenders."""
