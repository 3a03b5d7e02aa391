//! Full workloads kept from the first reading of small inputs, so that the second reading
//! ([`super::Loaded::for_each_object`]) need not read and parse their YAML again.
//!
//! Parsing YAML is most of an offline scan's time, and a streaming scan reads every input
//! twice. An input whose size fits in what is left of a fixed budget ([`BUDGET`]) keeps each of
//! its workloads as compact JSON (about the size of its YAML, and parsed several times faster);
//! larger inputs are read twice as before. Memory stays bounded by the budget whatever the
//! input: the budget is counted in the bytes actually kept, and an input that overruns it (YAML
//! aliases can expand) gives its copies back and is read again.

use std::collections::HashMap;
use std::ops::Range;

use kubevigil_engine::K8sObject;

/// The most bytes of JSON a scan keeps over all its inputs.
pub const BUDGET: usize = 4 * 1024 * 1024;

/// The full copies of the inputs read so far.
#[derive(Debug, Default)]
pub struct Kept {
    /// The most bytes kept ([`BUDGET`] for a scan; 0, the default, keeps nothing).
    budget: usize,
    /// Bytes kept so far (at most `budget`).
    used: usize,
    /// The input being read, when its copies are being kept: its number and its first object's
    /// read number.
    current: Option<(usize, usize)>,
    /// Per input kept whole: the read numbers of its objects.
    inputs: HashMap<usize, Range<usize>>,
    /// Per read number: the full object as JSON (workloads only; other objects are kept whole
    /// in the index anyway).
    objects: HashMap<usize, Box<[u8]>>,
}

impl Kept {
    /// Keeps up to `budget` bytes.
    pub fn with_budget(budget: usize) -> Self {
        Kept {
            budget,
            ..Kept::default()
        }
    }

    /// Starts input `input` of `size` bytes (`None`: unknown), whose first object will have
    /// read number `first_read`: its objects are kept when it fits in what is left.
    pub fn begin_input(&mut self, input: usize, size: Option<u64>, first_read: usize) {
        let fits = size.is_some_and(|s| s <= (self.budget - self.used) as u64);
        self.current = fits.then_some((input, first_read));
    }

    /// Keeps the full object of read number `read` of the current input, if that input is
    /// being kept; gives the input's copies back when they overrun the budget.
    pub fn keep(&mut self, read: usize, obj: &K8sObject) {
        let Some((_, first)) = self.current else {
            return;
        };
        // The JSON parser refuses more than 128 levels of nesting: such an object (and its
        // input) is read again instead.
        let json = shallow(&obj.value, 100)
            .then(|| serde_json::to_vec(&obj.value))
            .and_then(Result::ok);
        match json {
            Some(json) if json.len() <= self.budget - self.used => {
                self.used += json.len();
                self.objects.insert(read, json.into_boxed_slice());
            }
            _ => {
                self.current = None;
                let dropped: Vec<usize> = self
                    .objects
                    .keys()
                    .copied()
                    .filter(|r| *r >= first)
                    .collect();
                for r in dropped {
                    if let Some(json) = self.objects.remove(&r) {
                        self.used -= json.len();
                    }
                }
            }
        }
    }

    /// Ends the current input; `end_read` is the read number after its last object.
    pub fn end_input(&mut self, end_read: usize) {
        if let Some((input, first)) = self.current.take() {
            self.inputs.insert(input, first..end_read);
        }
    }

    /// The read numbers of input `input`'s objects, when it was kept whole.
    pub fn input(&self, input: usize) -> Option<Range<usize>> {
        self.inputs.get(&input).cloned()
    }

    /// The full object of read number `read`, when it was kept.
    pub fn object(&self, read: usize) -> Option<K8sObject> {
        let json = self.objects.get(&read)?;
        let value = serde_json::from_slice(json).ok()?;
        K8sObject::from_value(value).ok()
    }
}

/// Whether `v` nests at most `levels` arrays and maps deep.
fn shallow(v: &serde_json::Value, levels: usize) -> bool {
    use serde_json::Value;
    match v {
        Value::Array(items) => levels > 0 && items.iter().all(|i| shallow(i, levels - 1)),
        Value::Object(map) => levels > 0 && map.values().all(|i| shallow(i, levels - 1)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(name: &str) -> K8sObject {
        let value = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        });
        K8sObject::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn inputs_are_kept_whole_within_the_budget_or_not_at_all() {
        let one = serde_json::to_vec(&deployment("a").value).map_or(0, |j| j.len());
        let mut kept = Kept::with_budget(3 * one);
        // Input 0 fits and is kept.
        kept.begin_input(0, Some(10), 0);
        kept.keep(0, &deployment("a"));
        kept.end_input(1);
        assert_eq!(kept.input(0), Some(0..1));
        assert_eq!(kept.object(0).map(|o| o.name), Some("a".to_string()));
        // Input 1 says it fits but its copies overrun the rest: given back, read again.
        kept.begin_input(1, Some(10), 1);
        for read in 1..4 {
            kept.keep(read, &deployment("a"));
        }
        kept.end_input(4);
        assert_eq!(kept.input(1), None);
        assert!(kept.object(1).is_none() && kept.object(2).is_none());
        assert_eq!(kept.used, one);
        // Input 2 is larger than what is left; an unknown size is never kept.
        kept.begin_input(2, Some(u64::MAX), 4);
        kept.keep(4, &deployment("b"));
        kept.end_input(5);
        kept.begin_input(3, None, 5);
        kept.end_input(5);
        assert_eq!((kept.input(2), kept.input(3)), (None, None));
        assert!(kept.object(4).is_none());
    }

    #[test]
    fn deep_objects_are_not_kept() {
        let mut deep = serde_json::json!(1);
        for _ in 0..150 {
            deep = serde_json::json!([deep]);
        }
        let mut obj = deployment("d");
        obj.value["spec"]["deep"] = deep;
        let mut kept = Kept::with_budget(BUDGET);
        kept.begin_input(0, Some(10), 0);
        kept.keep(0, &obj);
        kept.end_input(1);
        assert_eq!(kept.input(0), None);
    }
}
