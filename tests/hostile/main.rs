//! Hostile input, over real sockets, one test per category. Every row is sent, byte for byte,
//! by a raw TCP (or TLS) client to a gateway running in-process between a mock cloud, HIS and
//! PACS; see `harness.rs` for what each row is checked for.

#[path = "../support/mod.rs"]
mod support;

mod bodies;
mod controls;
mod framing;
mod harness;
mod his_answers;
mod links;
mod oversize;
mod paths;
mod signatures;
mod soap;
