//! The client side of the HTTP API: [`RemoteAgent`], through which a hub reaches a worker
//! behind HTTP, and [`HubClient`], through which a worker registers with its hub and keeps
//! its registration alive (the original Ananta's heartbeat). Both share one transport
//! (`transport`: base URLs, the shared secret, calls, error mapping, backoff).
//!
//! The error answers they map are listed in the [`http` module](crate::http#errors-of-the-clients).

mod agent;
mod hub;
#[cfg(test)]
mod tests;
mod transport;

pub use agent::RemoteAgent;
pub use hub::HubClient;
