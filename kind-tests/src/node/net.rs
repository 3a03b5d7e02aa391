//! The node's fixed network and cgroup names. One local node runs on a machine at a time: kube-proxy's
//! iptables chains, the bridge and the cgroup root are machine-wide.

/// The Linux bridge the CNI plugin attaches pods to.
pub const BRIDGE: &str = "kubevigil0";
/// The bridge's own address: the pods' gateway, the node's InternalIP (the kubelet listens here)
/// and where the control plane serves pods (the `kubernetes` Service's endpoint).
pub const BRIDGE_IP: &str = "10.244.0.1";
/// The node's pod subnet, on the bridge.
pub const POD_SUBNET: &str = "10.244.0.0/24";
/// The cluster's pod range: `unreachable` on the host outside the bridge's subnet.
pub const POD_RANGE: &str = "10.244.0.0/16";
/// The Service range (kube-apiserver's `--service-cluster-ip-range`): `unreachable` on the host,
/// so a ClusterIP without a kube-proxy rule fails here instead of taking the default route.
pub const SERVICE_RANGE: &str = "10.96.0.0/16";
/// The pods' DNS server: an address of the service range without a Service, so lookups fail
/// locally (no cluster DNS runs; nothing kubevigil runs resolves names).
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// The cgroup (in every v1 hierarchy) under which the kubelet puts every pod.
pub const CGROUP_ROOT: &str = "kubevigil";
/// The filter chain that rejects any pod packet routed anywhere but the bridge or the host.
pub const EGRESS_CHAIN: &str = "KUBEVIGIL-EGRESS";
/// The registry every image pull is sent to: a closed loopback port (nothing is ever pulled).
pub const CLOSED_REGISTRY: &str = "http://127.0.0.1:1";
/// Host sysctls the node may change (the kubelet's kernel defaults, forwarding turned on by the
/// bridge plugin, kube-proxy's route_localnet and conntrack settings); saved at boot, restored at
/// `down`, and compared by the clean-stop check.
pub const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];
/// Prefixes of the iptables chains the node's components create (kube-proxy, the kubelet, the CNI
/// plugins, the egress guard).
pub const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-", "KUBEVIGIL-"];
