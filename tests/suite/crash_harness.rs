//! Issue 12: the project's crash test (`tools/crashtest`), short version. It SIGKILLs a
//! real `featstore serve` 24 times (while it opens, right after, during loads, during
//! activations, rollbacks and drops, with pushes in flight), runs every fault scenario
//! once (a full disk and failing fsyncs below the store, through the LD_PRELOAD shim
//! it compiles with the machine's C compiler), and checks every invariant after each
//! kill; any broken one fails this test with the harness's report. The long version is
//! `featstore-crashtest --long` (README, "Crash testing").

use std::process::Command;

#[test]
fn the_short_crash_test_breaks_no_invariant() {
    let work = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_featstore-crashtest"))
        .args(["--seed", "20261201", "--kills", "24", "--fault-every", "3"])
        .args(["--recovery-wait", "3s", "--duration", "240s"])
        .arg("--featstore")
        .arg(env!("CARGO_BIN_EXE_featstore"))
        .arg("--work")
        .arg(work.path())
        .output()
        .expect("run featstore-crashtest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Keep the data directory, server logs and ops log for a look.
        let kept = work.keep();
        let log = std::fs::read_to_string(kept.join("ops.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "the crash test failed ({}); evidence kept in {}:\n{stdout}\n{stderr}\nend of ops.log:\n{}",
            output.status,
            kept.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    assert!(stdout.contains(", 0 violations"), "{stdout}");
    assert!(stdout.contains("fault episodes:"), "{stdout}");
}
