//! Prints a chaos plan (debugging aid).
#![allow(missing_docs)]
use kind_tests::chaos::plan::{Plan, Step};
fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let plan = Plan::generate(seed, 300, "kubevigil.local/probe:dev");
    for s in &plan.steps {
        match s {
            Step::Op(op) => println!(
                "{op} {}",
                match &op.action {
                    kind_tests::chaos::plan::Action::Create(b) => b.to_string(),
                    kind_tests::chaos::plan::Action::Update { patch, .. } => patch.to_string(),
                    _ => String::new(),
                }
            ),
            Step::Fault { before_op, fault } => println!("FAULT before {before_op}: {fault:?}"),
        }
    }
}
