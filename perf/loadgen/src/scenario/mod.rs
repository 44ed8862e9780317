//! Scenarios: each one sets up connections, drives load and reports. New scenarios go here
//! and get a subcommand in `main.rs`.

pub mod fanout;
