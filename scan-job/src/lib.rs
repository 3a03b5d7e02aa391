//! The two edges of the `scan-job` binary around the control engine (`kubevigil-engine`):
//! offline manifest scans (`manifests`, `offline`, `output`) and in-cluster scans (`cluster`),
//! with the command line (`cli`) on top.

pub mod cli;
pub mod cluster;
pub mod manifests;
pub mod offline;
pub mod output;
