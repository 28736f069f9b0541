//! What the integration tests share: the binary as a child with deadlines (`proc`), the
//! one-space Cloud site and an LLM that holds its answers until the test lets them go
//! (`fakes`), and the stateful-site environment of the plan and ownership tests (`labels`).

#![allow(dead_code)]

pub mod fakes;
pub mod labels;
pub mod net;
pub mod proc;

pub use proc::{BIN, OutputBounded, Running};

/// Every test that runs the binary waits for it with a deadline: no `.output()`, `.wait()`
/// or `.wait_with_output()` of a child outside this harness, where a hung child would hold
/// CI until its time limit. (Reads the sources: a new test file that forgets is caught.)
#[test]
fn every_wait_on_a_child_has_a_deadline() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    let mut unbounded = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if [".output()", ".wait()", ".wait_with_output()"]
                .iter()
                .any(|w| code.contains(w))
            {
                unbounded.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        unbounded.is_empty(),
        "use harness::OutputBounded / harness::Running instead:\n{}",
        unbounded.join("\n")
    );
}
