//! The kubevigil control engine (the Kubescape workload and RBAC catalog, natively in Rust) and
//! the two edges of the `scan-job` binary: offline manifest scans and in-cluster scans.

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod controls;
pub mod engine;
pub mod manifests;
pub mod offline;
pub mod output;
pub mod report;
