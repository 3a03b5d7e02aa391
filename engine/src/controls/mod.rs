//! The controls, one small unit each, grouped by what they inspect. Controls use the engine;
//! they never use each other or the catalog.

pub mod pod_security;
pub mod rbac;
pub mod relations;
pub mod workload_config;
