//! The two edges of the `scan-job` binary around the control engine (`kubevigil-engine`):
//! offline manifest scans (`manifests`, `offline`, `output`) and in-cluster scans (`cluster`),
//! with the command line (`cli`) on top, and `convert` (`scan-job exceptions convert`).

pub mod cli;
pub mod cluster;
pub mod convert;
pub mod manifests;
pub mod offline;
pub mod output;
