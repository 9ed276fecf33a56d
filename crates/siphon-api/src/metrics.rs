//! Prometheus metrics: what the engine records, and `/metrics` that renders it.
