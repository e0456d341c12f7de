//! prefront: the hospital's DMZ gateway (前置机) between its HIS and the regional WeChat cloud
//! platform. `run(config, shutdown)` is the whole gateway; the binary only parses arguments.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod buffer;
pub mod catalog;
pub mod certinfo;
pub mod charset;
pub mod clock;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod json;
pub mod listener;
pub mod outcome;
pub mod pacs;
pub mod sd_notify;
pub mod sim;
pub mod soap;
pub mod telemetry;
pub mod trail;
pub mod upstream;
pub mod workers;

pub use app::{preflight, run, Gateway, StartError};
pub use config::Config;
