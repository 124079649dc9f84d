//! Transcript (golden) tests: a script of inputs with the expected outputs
//! interleaved as `< …` lines. `UPDATE_EXPECT=1` rewrites the expectations.

use std::path::Path;

/// Runs every `*.txt` script in `dir` through `run` and compares the result
/// with the file, or rewrites the file when `UPDATE_EXPECT=1`.
pub(crate) fn check_dir(dir: &str, run: impl Fn(&str) -> String) {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no transcripts in {dir}");
    let mut failures = Vec::new();
    for path in entries {
        let script = std::fs::read_to_string(&path).expect("read transcript");
        let actual = run(&script);
        if actual == script {
            continue;
        }
        if update {
            std::fs::write(&path, &actual).expect("write transcript");
        } else {
            failures.push(diff(&path, &script, &actual));
        }
    }
    assert!(
        failures.is_empty(),
        "transcripts differ (rerun with UPDATE_EXPECT=1 to accept):\n{}",
        failures.join("\n")
    );
}

fn diff(path: &Path, expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    format!(
        "{}: first difference at line {}\n  expected: {:?}\n  actual:   {:?}",
        path.display(),
        first + 1,
        e.get(first),
        a.get(first)
    )
}
