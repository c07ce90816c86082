//! The TLS crypto provider of Ananta's HTTP clients (feature `rustls`).
//!
//! Ananta builds `reqwest` with rustls and the *ring* provider, so a cold build compiles no C
//! crypto library. rustls needs one process-wide provider; every Ananta client installs ring
//! before it builds its `reqwest::Client`, unless the host installed a provider first (then that
//! one is kept).
//!
//! A host that builds its **own** `reqwest::Client` in the same process, without enabling a
//! provider feature of `reqwest` itself, calls [`install_default_provider`] first; otherwise
//! `reqwest` panics with "No rustls crypto provider is configured".
//!
//! ```
//! ananta_core::tls::install_default_provider();
//! assert!(rustls::crypto::CryptoProvider::get_default().is_some());
//! ```

/// Installs *ring* as the process's rustls crypto provider, unless one is installed already.
/// Cheap and idempotent.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: that one stays, which is the goal.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
