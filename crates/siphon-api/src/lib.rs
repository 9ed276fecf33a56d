//! siphon's HTTP surfaces, served by `siphon service start --listen ADDR`: the
//! REST API and its OpenAPI document, `/metrics` for Prometheus, health checks,
//! and the web console.

pub mod console;
pub mod metrics;
