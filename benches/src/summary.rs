//! The machine-readable summary: `target/bench/summary.json`.

use serde::{Deserialize, Serialize};

/// One line of the summary: our figure, the baseline's, and their ratio.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// What was measured, e.g. `memory get, 8 tasks, 1000 keys, 32 B`.
    pub scenario: String,
    /// The unit of `ours` and `baseline`, e.g. `ns/op` or `MiB peak RSS`.
    pub metric: String,
    /// Our figure.
    pub ours: f64,
    /// The baseline's figure, measured in the same run.
    pub baseline: f64,
    /// What the baseline is.
    pub baseline_name: String,
    /// `ours` over `baseline`, oriented so that higher is better (for a
    /// time or a size, `baseline / ours`).
    pub ratio: f64,
    /// The ratio we aim for, if there is one.
    pub goal: Option<f64>,
    /// An absolute bound on `ours`, in `metric`, for the few figures whose
    /// goal is a number rather than a ratio (a p99 lag of at most 100 ms):
    /// the baseline is then context, measured in the same run all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

/// Which way a figure improves, and so how [`Row::ratio`] is oriented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Time and memory: the ratio is `baseline / ours`.
    Lower,
    /// Throughput: the ratio is `ours / baseline`.
    Higher,
}

impl Row {
    /// A row for a figure that improves the way `better` says, with the
    /// ratio oriented so that higher is better.
    pub fn new(
        better: Better,
        scenario: impl Into<String>,
        metric: impl Into<String>,
        ours: f64,
        baseline: f64,
        baseline_name: impl Into<String>,
        goal: Option<f64>,
    ) -> Self {
        let (num, den) = match better {
            Better::Lower => (baseline, ours),
            Better::Higher => (ours, baseline),
        };
        Self {
            scenario: scenario.into(),
            metric: metric.into(),
            ours,
            baseline,
            baseline_name: baseline_name.into(),
            ratio: if den > 0.0 { num / den } else { 0.0 },
            goal,
            limit: None,
        }
    }

    /// The row with an absolute bound on `ours` ([`Row::limit`]): a figure
    /// where lower is better must stay at or below it.
    pub fn with_limit(mut self, limit: f64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The p99 and p50 rows of a latency measured in samples (ms): `ours`
    /// against `baseline`, each labelled by `label` and `baseline_name`
    /// given `"p99"` or `"p50"`; the p99 held to `p99_limit` ms.
    pub fn p99_and_p50(
        label: impl Fn(&str) -> String,
        ours: &[f64],
        baseline: &[f64],
        baseline_name: impl Fn(&str) -> String,
        p99_limit: f64,
    ) -> Vec<Row> {
        let row = |p: &str, q: f64| {
            Row::new(
                Better::Lower,
                label(p),
                "ms",
                quantile(ours, q),
                quantile(baseline, q),
                baseline_name(p),
                None,
            )
        };
        vec![row("p99", 0.99).with_limit(p99_limit), row("p50", 0.5)]
    }

    /// Whether the ratio reaches the goal and `ours` stays within the limit
    /// (true when there is neither).
    pub fn meets_goal(&self) -> bool {
        self.goal.is_none_or(|g| self.ratio >= g) && self.limit.is_none_or(|l| self.ours <= l)
    }
}

/// Renders rows as a markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | metric | ours | baseline | baseline is | ratio (higher is better) | goal |\n|---|---|---:|---:|---|---:|---:|\n",
    );
    for r in rows {
        let mark = if r.meets_goal() { "✓" } else { "✗" };
        let goal = match (r.goal, r.limit) {
            (Some(g), None) => format!("≥ {g} {mark}"),
            (None, Some(l)) => format!("ours ≤ {l} {} {mark}", r.metric),
            (Some(g), Some(l)) => format!("≥ {g}, ours ≤ {l} {} {mark}", r.metric),
            (None, None) => "-".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {} |\n",
            r.scenario,
            r.metric,
            fmt_num(r.ours),
            fmt_num(r.baseline),
            r.baseline_name,
            r.ratio,
            goal
        ));
    }
    out
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_oriented_higher_is_better() {
        let t = Row::new(Better::Lower, "s", "ns/op", 50.0, 100.0, "map", Some(0.8));
        assert_eq!(t.ratio, 2.0);
        assert!(t.meets_goal());
        let r = Row::new(Better::Higher, "s", "req/s", 50.0, 100.0, "bao", Some(1.0));
        assert_eq!(r.ratio, 0.5);
        assert!(!r.meets_goal());
        let md = markdown(&[t, r]);
        assert!(md.contains("≥ 0.8 ✓") && md.contains("≥ 1 ✗"), "{md}");
    }

    #[test]
    fn an_absolute_limit_bounds_ours_whatever_the_ratio() {
        let within = Row::new(Better::Lower, "lag p99", "ms", 40.0, 2.0, "a read", None).with_limit(100.0);
        assert!(within.meets_goal());
        let over = Row::new(Better::Lower, "lag p99", "ms", 140.0, 2.0, "a read", None).with_limit(100.0);
        assert!(!over.meets_goal());
        let md = markdown(&[within, over]);
        assert!(md.contains("ours ≤ 100 ms ✓") && md.contains("ours ≤ 100 ms ✗"), "{md}");
        // Rows written before the limit existed still read.
        let old: Row = serde_json::from_str(
            r#"{"scenario":"s","metric":"ms","ours":1.0,"baseline":2.0,"baseline_name":"b","ratio":2.0,"goal":null}"#,
        )
        .unwrap();
        assert_eq!(old.limit, None);
    }
}

/// How a criterion group becomes a [`Row`]: written by each bench next to
/// its results (`target/bench/scenarios/<group>.json`) and read by the
/// `summarize` binary, which takes the `ours` and `baseline` times of the
/// group from criterion's estimates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scenario {
    /// The criterion group id.
    pub group: String,
    /// The human label.
    pub scenario: String,
    /// Operations one criterion iteration performs (to report ns per op).
    pub ops_per_iter: u64,
    /// What the `baseline` function is.
    pub baseline_name: String,
    /// The ratio aimed for.
    pub goal: Option<f64>,
}

impl Scenario {
    /// Writes the manifest for `summarize`.
    ///
    /// # Panics
    /// When the output folder cannot be written: a bench run without its
    /// summary is useless.
    pub fn register(&self) {
        let dir = crate::bench_out_dir().join("scenarios");
        std::fs::create_dir_all(&dir).expect("create target/bench/scenarios");
        let json = serde_json::to_vec_pretty(self).expect("serialize scenario");
        std::fs::write(dir.join(format!("{}.json", self.group)), json).expect("write scenario");
    }
}

/// The `q` quantile (0 to 1) of `v`, nearest rank below.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q) as usize]
}
