//! `--replay` of a recording made by the real probe (`testdata/storm-40.tcptrace`: `tcptrace
//! record --lport 47012` around a 40-connection `tcp-storm`, its four close modes in turn): no
//! root needed, outputs exact and repeatable, damaged files refused with one line.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use serde_json::{Value, json};

use crate::support::tcptrace_bin;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/e2e/testdata/storm-40.tcptrace"
);

fn tcptrace(args: &[&str]) -> Output {
    Command::new(tcptrace_bin())
        .args(args)
        .output()
        .expect("run tcptrace")
}

fn final_object(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().expect("a final object")).unwrap()
}

fn count(object: &Value, from: &str, to: &str, abnormal: bool) -> u64 {
    object["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["from"] == from && r["to"] == to && r["abnormal"] == abnormal)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// Compares a whole output with `testdata/NAME`; `UPDATE_GOLDEN=1` rewrites it (review the
/// diff).
fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        expected == actual,
        "{name} differs from {}:\n{}",
        path.display(),
        String::from_utf8_lossy(actual)
    );
}

/// Whole outputs from the recorded bytes: the times of day are the recording host's, the rest
/// comes from the kernel's timestamps, so every byte is fixed.
#[test]
fn golden_outputs_of_a_recording() {
    for (name, args) in [
        ("storm-40.trace.txt", &["trace"][..]),
        ("storm-40.trace.time.txt", &["trace", "-T"][..]),
        ("storm-40.trace.wide.txt", &["trace", "--wide"][..]),
        ("storm-40.trace.jsonl", &["trace", "--json"][..]),
        ("storm-40.transitions.txt", &["transitions"][..]),
        ("storm-40.transitions.jsonl", &["transitions", "--json"][..]),
        // With an interval, one object per recorded reading (every second), then the final.
        (
            "storm-40.transitions.interval.jsonl",
            &["transitions", "--json", "--interval", "1"][..],
        ),
    ] {
        let output = tcptrace(&[args, &["--replay", FIXTURE]].concat());
        assert!(output.status.success(), "{name}: {output:?}");
        golden(name, &output.stdout);
    }
    for (name, args) in [
        ("causes.trace.jsonl", &["trace", "--json"][..]),
        ("causes.transitions.txt", &["transitions"][..]),
        ("causes.transitions.jsonl", &["transitions", "--json"][..]),
    ] {
        let output = tcptrace(&[args, &["--replay", CAUSES]].concat());
        assert!(output.status.success(), "{name}: {output:?}");
        golden(name, &output.stdout);
    }
}

/// A recording of event ABI 3 on Linux 6.18 (`testdata/causes.tcptrace`: `tcptrace record
/// --lport` of the ports of `testdata/causes-workload/scenarios.py`, run in a network
/// namespace of its own): each cause once, told from the recorded close details and the reset
/// reasons' names the file carries.
const CAUSES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/testdata/causes.tcptrace");

#[test]
fn a_recording_of_the_causes_replays_them_with_their_timers_and_reasons() {
    let output = tcptrace(&["transitions", "--json", "--replay", CAUSES]);
    assert!(output.status.success(), "{output:?}");
    let last = final_object(&output);
    let abnormal = |path: &str, from: &str| {
        last["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == path && r["from"] == from && r["abnormal"] == true)
            .unwrap_or_else(|| panic!("no {path} {from}->CLOSE in {last}"))
            .clone()
    };
    let syn_sent = abnormal("client", "SYN_SENT");
    assert_eq!(
        syn_sent["cause"],
        serde_json::json!({"refused": 1, "timeout": 1, "connect_abandoned": 1}),
        "{syn_sent}"
    );
    assert_eq!(syn_sent["timers"], serde_json::json!({"syn_retries": 1}));
    let established = abnormal("client", "ESTABLISHED");
    assert_eq!(
        established["cause"],
        serde_json::json!({"reset_sent": 1, "keepalive_timeout": 1}),
        "{established}"
    );
    // The reason's name comes from the file, not from the replaying kernel.
    assert_eq!(
        established["reset_reasons"],
        serde_json::json!({"tcp_state": 1})
    );
    assert_eq!(
        abnormal("server", "ESTABLISHED")["cause"],
        serde_json::json!({"reset_received": 2})
    );
    // trace --json shows the kernel's facts of each close.
    let output = tcptrace(&["trace", "--json", "--replay", CAUSES]);
    let errors: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["to"] == "CLOSE" && l["from"] != "LISTEN")
        .map(|l| l["close"]["error"].clone())
        .collect();
    assert_eq!(
        errors,
        // In the kernel's order: refused, abandoned, the abort's two sides (the aborting one
        // with no error), the keepalive's two sides, the SYN retries.
        [
            json!("ECONNREFUSED"),
            Value::Null,
            Value::Null,
            json!("ECONNRESET"),
            json!("ETIMEDOUT"),
            json!("ECONNRESET"),
            json!("ETIMEDOUT"),
        ],
        "{errors:?}"
    );
}

/// The default table fits an 80-column terminal for the recording's IPv4 loopback sockets, and
/// its columns do not move from line to line.
#[test]
fn the_trace_table_fits_80_columns_for_ipv4() {
    let output = tcptrace(&["trace", "--replay", FIXTURE]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let widths: Vec<usize> = text.lines().map(|line| line.chars().count()).collect();
    assert!(widths.len() > 100, "{text}");
    assert!(widths.iter().all(|&w| w == widths[0]), "{widths:?}");
    assert!(widths[0] <= 80, "{} columns:\n{text}", widths[0]);
}

#[test]
fn a_recording_replays_the_storm_exactly_and_repeatably() {
    let first = tcptrace(&["transitions", "--replay", FIXTURE, "--json"]);
    assert!(first.status.success(), "{first:?}");
    let last = final_object(&first);
    // 40 accepted children (10 per close mode: 5, 5, 3 and 3 transitions) and the listener's 2.
    assert_eq!(last["events"], 162);
    assert_eq!(last["lost_events"], 0);
    assert_eq!(count(&last, "LISTEN", "SYN_RECV", false), 40);
    assert_eq!(count(&last, "SYN_RECV", "ESTABLISHED", false), 40);
    assert_eq!(count(&last, "ESTABLISHED", "CLOSE", true), 20);
    let again = tcptrace(&["transitions", "--replay", FIXTURE, "--json"]);
    assert_eq!(
        first.stdout, again.stdout,
        "a replay is byte-for-byte repeatable"
    );
    assert_eq!(
        String::from_utf8_lossy(&first.stderr).lines().last(),
        Some("162 transitions, 0 lost")
    );

    let trace = tcptrace(&["trace", "--replay", FIXTURE, "--json"]);
    assert!(trace.status.success(), "{trace:?}");
    assert_eq!(String::from_utf8_lossy(&trace.stdout).lines().count(), 162);
    // Filters apply when replaying: the storm ran over IPv4.
    let lines = |family: &str| {
        let output = tcptrace(&["trace", "--replay", FIXTURE, "--json", family]);
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    assert_eq!((lines("-4"), lines("-6")), (162, 0));
}

#[test]
fn a_damaged_recording_replays_up_to_the_damage_then_fails_with_one_line() {
    let bytes = std::fs::read(FIXTURE).unwrap();
    let dir = std::env::temp_dir();
    let cut = dir.join(format!("tcptrace-cut-{}.tcptrace", std::process::id()));
    std::fs::write(&cut, &bytes[..3000]).unwrap();
    let output = tcptrace(&["transitions", "--replay", cut.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let error = stderr.lines().last().unwrap();
    assert!(error.starts_with("tcptrace: "), "{stderr}");
    assert!(error.contains("truncated at byte 3000"), "{stderr}");
    // What came before the damage was used.
    assert!(final_object(&output)["events"].as_u64().unwrap() > 0);

    let mut newer = bytes.clone();
    newer[8] = 99;
    std::fs::write(&cut, &newer).unwrap();
    let output = tcptrace(&["trace", "--replay", cut.to_str().unwrap()]);
    let _ = std::fs::remove_file(&cut);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("newer than this tcptrace reads"),
        "{stderr}"
    );
}
