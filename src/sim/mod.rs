//! Simulated peers on loopback — a cloud (HTTPS with a throwaway CA), a HIS (JSON or SOAP) and a
//! PACS — for `prefront demo` and for the integration tests, which run against the same code so
//! the demo stays honest.

pub mod pki;
pub mod upstream;

pub use pki::{Pki, PkiFiles};
pub use upstream::{Answer, OutageSwitch, Recorded, Upstream};

/// Why a simulator could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulator: {0}")]
pub struct SimError(pub String);
