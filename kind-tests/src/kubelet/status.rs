//! The pod status the kubelet reports, kept as plain values and turned into a strategic-merge
//! patch of `pods/status`.
//!
//! Container states are written with explicit `null`s for the other two states, so that a merge
//! never leaves `running` and `terminated` set together.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::env::LOOPBACK;

/// One state of a container.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not running yet, or waiting to restart.
    Waiting {
        /// `ContainerCreating`, `CrashLoopBackOff`, `PodInitializing`, ...
        reason: String,
        /// Details.
        message: Option<String>,
    },
    /// Running since `started`.
    Running {
        /// Start time.
        started: Timestamp,
    },
    /// Exited.
    Terminated {
        /// Exit code (128 + signal when killed by a signal).
        exit_code: i32,
        /// The signal, if one ended it.
        signal: Option<i32>,
        /// `Completed`, `Error`, `StartError`.
        reason: String,
        /// Details.
        message: Option<String>,
        /// Start time.
        started: Option<Timestamp>,
        /// End time.
        finished: Timestamp,
        /// The container ID it had.
        container_id: Option<String>,
    },
}

fn time(ts: Timestamp) -> Value {
    serde_json::to_value(Time(ts)).unwrap_or(Value::Null)
}

impl State {
    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("waiting".into(), Value::Null);
        map.insert("running".into(), Value::Null);
        map.insert("terminated".into(), Value::Null);
        match self {
            State::Waiting { reason, message } => {
                map.insert(
                    "waiting".into(),
                    json!({ "reason": reason, "message": message }),
                );
            }
            State::Running { started } => {
                map.insert("running".into(), json!({ "startedAt": time(*started) }));
            }
            State::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started,
                finished,
                container_id,
            } => {
                let mut t = json!({
                    "exitCode": exit_code,
                    "reason": reason,
                    "finishedAt": time(*finished),
                });
                if let Some(sig) = signal {
                    t["signal"] = json!(sig);
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                if let Some(s) = started {
                    t["startedAt"] = time(*s);
                }
                if let Some(id) = container_id {
                    t["containerID"] = json!(id);
                }
                map.insert("terminated".into(), t);
            }
        }
        Value::Object(map)
    }

    /// The exit code, when terminated.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// The status of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerState {
    /// Container name.
    pub name: String,
    /// Image as in the spec.
    pub image: String,
    /// The local binary the image maps to (reported as `imageID`).
    pub image_id: String,
    /// Current state.
    pub state: State,
    /// The previous termination, after a restart.
    pub last: Option<State>,
    /// How often it was restarted.
    pub restart_count: i32,
    /// `local://<pid>` of the current or last process.
    pub container_id: Option<String>,
}

impl ContainerState {
    /// A container that has not started yet.
    pub fn new(name: &str, image: &str, image_id: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: image_id.to_owned(),
            state: State::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            },
            last: None,
            restart_count: 0,
            container_id: None,
        }
    }

    /// Whether it runs now.
    pub fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.running(),
            "started": self.running(),
            "restartCount": self.restart_count,
            "state": self.state.to_json(),
            "lastState": match &self.last {
                Some(last) => last.to_json(),
                None => json!({ "waiting": null, "running": null, "terminated": null }),
            },
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

/// Pod phases.
pub mod phase {
    /// Not all containers started.
    pub const PENDING: &str = "Pending";
    /// Containers started.
    pub const RUNNING: &str = "Running";
    /// All containers exited 0 and will not restart.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Some container failed and will not restart.
    pub const FAILED: &str = "Failed";
}

/// The whole pod status the kubelet owns.
#[derive(Debug, Clone)]
pub struct PodState {
    /// Phase.
    pub phase: &'static str,
    /// Pod-level reason (e.g. `UnknownImage`).
    pub reason: Option<String>,
    /// Pod-level message.
    pub message: Option<String>,
    /// When the kubelet accepted the pod.
    pub start_time: Timestamp,
    /// Volumes are ready (`PodReadyToStartContainers`).
    pub sandbox_ready: bool,
    /// Init containers, in order.
    pub init: Vec<ContainerState>,
    /// Regular containers, in order.
    pub containers: Vec<ContainerState>,
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl PodState {
    /// A pending pod with these init and regular containers.
    pub fn new(init: Vec<ContainerState>, containers: Vec<ContainerState>) -> Self {
        Self {
            phase: phase::PENDING,
            reason: None,
            message: None,
            start_time: Timestamp::now(),
            sandbox_ready: false,
            init,
            containers,
            transitions: BTreeMap::new(),
        }
    }

    /// Whether the phase is terminal.
    pub fn is_terminal(&self) -> bool {
        self.phase == phase::SUCCEEDED || self.phase == phase::FAILED
    }

    /// Every init container exited 0.
    pub fn initialized(&self) -> bool {
        self.init.iter().all(|c| c.state.exit_code() == Some(0))
    }

    /// The container named `name` (init or regular).
    pub fn container_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.init
            .iter_mut()
            .chain(self.containers.iter_mut())
            .find(|c| c.name == name)
    }

    /// Succeeded when every regular container exited 0, else Failed.
    pub fn terminal_phase(&self) -> &'static str {
        if self
            .containers
            .iter()
            .all(|c| c.state.exit_code() == Some(0))
        {
            phase::SUCCEEDED
        } else {
            phase::FAILED
        }
    }

    fn condition(&mut self, type_: &'static str, status: bool, reason: Option<&str>) -> Value {
        let now = Timestamp::now();
        let entry = self.transitions.entry(type_).or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        let mut c = json!({
            "type": type_,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": time(entry.1),
        });
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    }

    /// The strategic-merge patch body for `pods/status`.
    pub fn to_patch(&mut self) -> Value {
        let terminal = self.is_terminal();
        let all_running =
            !self.containers.is_empty() && self.containers.iter().all(ContainerState::running);
        let ready_reason = if terminal {
            Some("PodCompleted")
        } else if all_running {
            None
        } else {
            Some("ContainersNotReady")
        };
        let sandbox_ready = self.sandbox_ready && !terminal;
        let initialized = self.initialized();
        let conditions = vec![
            self.condition("PodReadyToStartContainers", sandbox_ready, None),
            self.condition(
                "Initialized",
                initialized,
                (!initialized).then_some("ContainersNotInitialized"),
            ),
            self.condition("ContainersReady", all_running && !terminal, ready_reason),
            self.condition("Ready", all_running && !terminal, ready_reason),
            self.condition("PodScheduled", true, None),
        ];
        let mut status = json!({
            "phase": self.phase,
            "hostIP": LOOPBACK,
            "hostIPs": [{ "ip": LOOPBACK }],
            "podIP": LOOPBACK,
            "podIPs": [{ "ip": LOOPBACK }],
            "startTime": time(self.start_time),
            "conditions": conditions,
            "containerStatuses": self.containers.iter().map(ContainerState::to_json).collect::<Vec<_>>(),
            "reason": self.reason,
            "message": self.message,
        });
        if !self.init.is_empty() {
            status["initContainerStatuses"] = self
                .init
                .iter()
                .map(ContainerState::to_json)
                .collect::<Vec<_>>()
                .into();
        }
        json!({ "status": status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started: None,
            finished: Timestamp::now(),
            container_id: Some("local://1".into()),
        }
    }

    #[test]
    fn states_name_the_other_two_as_null() {
        let v = terminated(3).to_json();
        assert_eq!(v["running"], Value::Null);
        assert_eq!(v["waiting"], Value::Null);
        assert_eq!(v["terminated"]["exitCode"], 3);
        assert_eq!(v["terminated"]["reason"], "Error");
    }

    #[test]
    fn running_pod_is_ready() {
        let mut pod = PodState::new(vec![], vec![ContainerState::new("c", "img", "local")]);
        pod.sandbox_ready = true;
        pod.phase = phase::RUNNING;
        pod.containers[0].state = State::Running {
            started: Timestamp::now(),
        };
        let patch = pod.to_patch();
        let s = &patch["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "127.0.0.1");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert!(s.get("initContainerStatuses").is_none());
    }

    #[test]
    fn terminal_phase_follows_exit_codes() {
        let mut pod = PodState::new(
            vec![],
            vec![
                ContainerState::new("a", "img", "local"),
                ContainerState::new("b", "img", "local"),
            ],
        );
        pod.containers[0].state = terminated(0);
        pod.containers[1].state = terminated(0);
        assert_eq!(pod.terminal_phase(), phase::SUCCEEDED);
        pod.containers[1].state = terminated(1);
        assert_eq!(pod.terminal_phase(), phase::FAILED);
        pod.phase = phase::FAILED;
        let patch = pod.to_patch();
        let ready = patch["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "PodCompleted");
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let mut pod = PodState::new(vec![], vec![ContainerState::new("c", "img", "local")]);
        let first = pod.to_patch()["status"]["conditions"][0]["lastTransitionTime"].clone();
        let again = pod.to_patch()["status"]["conditions"][0]["lastTransitionTime"].clone();
        assert_eq!(first, again);
    }
}
