//! Joins the benches' scenario manifests with criterion's estimates and any
//! extra rows (peak RSS, server load), then writes `target/bench/summary.json`
//! and `summary.md`, and prints the table.

use std::path::{Path, PathBuf};

use credstore_benches::out_dir;
use credstore_benches::summary::{markdown, Better, Row, Scenario};

fn criterion_home() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion")))
}

/// The median time of one criterion iteration, in nanoseconds.
fn median_ns(group: &str, function: &str) -> Option<f64> {
    let path = criterion_home().join(group).join(function).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn main() {
    let out = out_dir();
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for path in json_files(&out.join("scenarios")) {
        let s: Scenario =
            serde_json::from_slice(&std::fs::read(&path).expect("read scenario")).expect("scenario json");
        match (median_ns(&s.group, "ours"), median_ns(&s.group, "baseline")) {
            (Some(ours), Some(base)) => {
                let per = s.ops_per_iter.max(1) as f64;
                rows.push(Row::new(
                    Better::Lower,
                    s.scenario,
                    "ns/op",
                    ours / per,
                    base / per,
                    s.baseline_name,
                    s.goal,
                ));
            }
            _ => missing.push(s.group),
        }
    }
    for path in json_files(&out.join("extra")) {
        let extra: Vec<Row> =
            serde_json::from_slice(&std::fs::read(&path).expect("read extra")).expect("rows json");
        rows.extend(extra);
    }
    std::fs::write(out.join("summary.json"), serde_json::to_vec_pretty(&rows).unwrap())
        .expect("write summary.json");
    let table = markdown(&rows);
    std::fs::write(out.join("summary.md"), &table).expect("write summary.md");
    print!("{table}");
    for group in &missing {
        eprintln!("summarize: no criterion estimates for {group} (not run this time)");
    }
    let missed: Vec<&Row> = rows.iter().filter(|r| !r.meets_goal()).collect();
    eprintln!(
        "summarize: {} rows, {} below goal, written to {}",
        rows.len(),
        missed.len(),
        out.join("summary.json").display()
    );
}
