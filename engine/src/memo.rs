//! What the controls evaluating one object share, so that the catalog does not redo the same
//! work once per control: the workload's pod spec with its containers and security contexts
//! (found once instead of by every control, see [`PodView`]), and
//! the findings of rules that several controls run (C-0211 reuses the rules of C-0013, C-0016,
//! C-0017 and C-0057; C-0012 and C-0259 run the same env rule), computed by the first control
//! that needs them.
//!
//! A memo belongs to one evaluation of one object ([`super::Evaluator`] makes a fresh one per
//! object): everything in it is derived from that object and the scan's fixed inventory and
//! inputs, so sharing it cannot change a result. Lookups for any other object are computed, not
//! cached.

use std::cell::RefCell;
use std::fmt;
use std::ptr;
use std::rc::Rc;

use super::control::Finding;
use super::object::K8sObject;
use super::pod_view::PodView;
use super::workload::{PodSpec, pod_labels, pod_spec};

use serde_json::{Map, Value};

/// The findings of one shared rule, by rule name.
type SharedRule = (&'static str, Rc<Vec<Finding>>);

/// Per-object shared state of one evaluation (see the module documentation).
pub struct Memo<'a> {
    /// The object being evaluated, if any.
    object: Option<&'a K8sObject>,
    /// Its pod spec, looked up once.
    pod: Option<PodSpec<'a>>,
    /// The containers and security context of `pod`, looked up once.
    view: Option<PodView<'a>>,
    /// The labels its pods get ([`pod_labels`]), looked up once: the relation controls (Services,
    /// NetworkPolicies) each compare selectors with them.
    pod_labels: Option<&'a Map<String, Value>>,
    /// Findings of shared rules on `object`, by rule name.
    rules: RefCell<Vec<SharedRule>>,
}

impl fmt::Debug for Memo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memo")
            .field("object", &self.object.map(|o| (&o.kind, &o.name)))
            .field("rules", &self.rules.borrow().len())
            .finish()
    }
}

impl<'a> Memo<'a> {
    /// A memo that caches nothing (for triplets, and for evaluating a control directly).
    pub fn none() -> Self {
        Memo {
            object: None,
            pod: None,
            view: None,
            pod_labels: None,
            rules: RefCell::new(Vec::new()),
        }
    }

    /// A memo for the evaluation of `object`.
    pub fn for_object(object: &'a K8sObject) -> Self {
        let pod = pod_spec(object);
        Memo {
            object: Some(object),
            view: pod.map(|p| PodView::of(p.spec)),
            pod,
            pod_labels: pod_labels(object),
            rules: RefCell::new(Vec::new()),
        }
    }

    /// Whether `obj` is the object this memo belongs to (the same object, not an equal one).
    fn owns(&self, obj: &K8sObject) -> bool {
        self.object.is_some_and(|o| ptr::eq(o, obj))
    }

    /// [`pod_spec`] of `obj`, from the memo when `obj` is its object.
    pub fn pod_spec<'s>(&'s self, obj: &'s K8sObject) -> Option<PodSpec<'s>> {
        if self.owns(obj) {
            self.pod.map(|pod| PodSpec {
                view: self.view.as_ref(),
                ..pod
            })
        } else {
            pod_spec(obj)
        }
    }

    /// [`pod_labels`] of `obj`, from the memo when `obj` is its object.
    pub fn pod_labels(&self, obj: &'a K8sObject) -> Option<&'a Map<String, Value>> {
        if self.owns(obj) {
            self.pod_labels
        } else {
            pod_labels(obj)
        }
    }

    /// The findings of `rule` on `obj`: computed by `compute` the first time, then shared.
    /// `rule` must name a computation that depends only on the object, the inventory and the
    /// inputs (the same for every control of the evaluation).
    pub fn findings(
        &self,
        obj: &K8sObject,
        rule: &'static str,
        compute: impl FnOnce() -> Vec<Finding>,
    ) -> Rc<Vec<Finding>> {
        if !self.owns(obj) {
            return Rc::new(compute());
        }
        if let Some((_, found)) = self.rules.borrow().iter().find(|(r, _)| {
            r.len() == rule.len() && (ptr::eq(r.as_ptr(), rule.as_ptr()) || *r == rule)
        }) {
            return Rc::clone(found);
        }
        let computed = Rc::new(compute());
        self.rules.borrow_mut().push((rule, Rc::clone(&computed)));
        computed
    }
}
