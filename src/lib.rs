//! redshift-exporter: runs health-check SQL against Amazon Redshift (or anything speaking the
//! PostgreSQL wire protocol), exposes each result's rows as Prometheus gauges and archives
//! them as CSV. See ARCHITECTURE.md for the codemap and invariants.
//!
//! Data flows one way: [`config`] → [`schedule`] → [`check`] ([`db`]) → [`sample`] →
//! [`snapshot`] → [`exposition`] / [`http`], and → [`archive`]. [`app`] wires them together;
//! [`cli`] maps command lines to [`app`] calls and results to exit codes.

pub mod app;
pub mod archive;
#[cfg(feature = "aws")]
pub mod aws;
pub mod capability;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod detect;
pub mod discovery;
pub mod emulation;
pub mod exposition;
pub mod http;
pub mod lint;
pub mod logging;
pub mod pgtemp;
pub mod recovery;
pub mod reload;
pub mod rows;
pub mod sample;
pub mod schedule;
pub mod snapshot;
pub mod web_config;
