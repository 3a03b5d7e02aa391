//! The kubevigil controller: watches workloads, RBAC objects and ServiceAccounts and turns each
//! relevant change into a short-lived scan Job.

pub mod cli;
