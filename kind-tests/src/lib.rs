//! End-to-end test support: the local real cluster (control plane and a real node), kubectl and
//! helm, and the scaffold of the scenario tests.
//!
//! - [`cluster`]: boots etcd, kube-apiserver and kube-controller-manager (the Go `controlplane`
//!   binary) with a generated PKI ([`certs`]) and writes a kubeconfig; stops them again.
//! - [`node`]: the node: containerd, runc, the CNI bridge, kubelet and kube-proxy, kubevigil's
//!   images imported, and the host changes `down` undoes.
//! - [`tools`]: kubectl and helm from `scripts/tools.sh`.
//! - [`scenario`]: `TestCluster::shared()`, `with_temp_ns`, bounded waits.
//! - [`release`]: kubevigil installed by its chart, one release per scenario.
//! - [`pipeline`]: helpers of the pipeline scenarios (Deployments, a scan-Job watch, kubectl get).
//! - [`chaos`]: the chaos scenario: seeded plan, fault injection, the convergence invariant.
//! - [`security`]: what the runtime enforces on a process, read from `/proc` (the probe's
//!   `inspect`).
//! - [`bench`]: `kv-bench`, the cluster benchmark (figures, not pass/fail).
//!
//! The binary `local-cluster` (`up`, `down`, `status`, `check-clean`, `forward`) wraps
//! [`cluster`]; `scripts/cluster.sh up|down` builds everything and calls it.

pub mod bench;
pub mod certs;
pub mod chaos;
pub mod cluster;
pub mod node;
pub mod openreports;
pub mod pipeline;
pub mod procs;
pub mod release;
pub mod scenario;
pub mod security;
pub mod tools;
