//! End-to-end test support: the local real control plane, the process kubelet, kubectl and helm.
