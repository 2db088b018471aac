//! Integration tests for redshift-exporter: the real binary, started as a subprocess, against a real
//! PostgreSQL over TCP. The harness lives in [`support`]; each other module covers one topic.

mod support;

mod archive;
mod archive_lifecycle;
mod archive_s3;
#[cfg(feature = "aws")]
mod aws_login;
#[cfg(feature = "aws")]
mod aws_moto;
mod browser;
mod cli;
mod databases;
mod demo;
mod detection;
mod docs;
mod endpoints;
mod fleet;
mod hardening_archive;
mod hardening_faults;
mod hardening_reload;
mod hardening_results;
mod hardening_secrets;
mod hardening_security;
mod hardening_web;
mod harness;
mod mapping;
mod pack;
mod pages;
mod phase;
mod prometheus;
mod reload;
mod resilience;
mod scheduling;
mod scheduling_model;
mod sha256;
mod streaming;
mod tls;
