//! Integration tests for redshift-exporter: the real binary, started as a subprocess, against a real
//! PostgreSQL over TCP. The harness lives in [`support`]; each other module covers one topic.

mod support;

mod archive;
mod cli;
mod endpoints;
mod harness;
mod mapping;
mod pack;
mod resilience;
mod scheduling;
mod streaming;
mod tls;
