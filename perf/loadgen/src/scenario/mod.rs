//! Scenarios: each one sets up connections, drives load and reports. New scenarios go here
//! and get a subcommand in `main.rs`.

pub mod alltoall;
pub mod churn;
pub mod common;
pub mod delivery;
pub mod delivery_report;
pub mod fanout;
pub mod idle;
pub mod manyrooms;
pub mod node_report;
pub mod nodes;
pub mod recovery;
pub mod soak;
