//! Interleaved rounds: a scenario and its baseline timed in alternating
//! rounds, compared by the median of their rounds.
//!
//! Servers on a shared machine drift (the same call measured a minute apart
//! differs by a quarter), so instead of criterion's "all of ours, then all
//! of the baseline", the benches against a server (OpenBao, moto,
//! PostgreSQL) time each pair round by round, flipping the order every
//! round.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `iters` calls of `op`, one after another, and returns the wall time.
pub fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, op: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            op().await;
        }
        start.elapsed()
    })
}

/// The median of `v` (the upper one of an even count).
///
/// # Panics
/// When `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// How many rounds a comparison runs, and about how many operations each
/// side makes per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rounds {
    /// Rounds per side.
    pub rounds: usize,
    /// Operations per side and round: a call of `n` operations is made
    /// `ops_per_round / n` times (at least once) per round.
    pub ops_per_round: u64,
}

impl Rounds {
    /// Runs one warm-up call of each side, then [`Rounds::rounds`] rounds in
    /// alternating order. Each side is a future factory and the number of
    /// operations one of its futures makes (a cached get costs a thousandth
    /// of an uncached one: timing one of each would measure the clock).
    /// Returns the medians of the rounds in nanoseconds per operation,
    /// `(ours, baseline)`.
    pub fn compare<O, OF, B, BF>(
        &self,
        rt: &tokio::runtime::Runtime,
        (ours, ours_ops): (O, u64),
        (baseline, baseline_ops): (B, u64),
    ) -> (f64, f64)
    where
        O: Fn() -> OF,
        OF: Future<Output = ()>,
        B: Fn() -> BF,
        BF: Future<Output = ()>,
    {
        timed(rt, 1, &ours);
        timed(rt, 1, &baseline);
        let calls = |ops: u64| (self.ops_per_round / ops.max(1)).max(1);
        let (ours_calls, baseline_calls) = (calls(ours_ops), calls(baseline_ops));
        let per_op = |d: Duration, calls: u64, ops: u64| d.as_nanos() as f64 / (calls * ops.max(1)) as f64;
        let time_ours = || per_op(timed(rt, ours_calls, &ours), ours_calls, ours_ops);
        let time_baseline = || per_op(timed(rt, baseline_calls, &baseline), baseline_calls, baseline_ops);
        let (mut o, mut b) = (Vec::new(), Vec::new());
        for round in 0..self.rounds.max(1) {
            if round % 2 == 0 {
                o.push(time_ours());
                b.push(time_baseline());
            } else {
                b.push(time_baseline());
                o.push(time_ours());
            }
        }
        (median(o), median(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_makes_about_ops_per_round_operations_per_side_and_round() {
        use std::cell::Cell;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let rounds = Rounds { rounds: 3, ops_per_round: 4 };
        let (ours_calls, baseline_calls) = (Cell::new(0), Cell::new(0));
        let (ours, baseline) = rounds.compare(
            &rt,
            (|| async { ours_calls.set(ours_calls.get() + 1) }, 1),
            (|| async { baseline_calls.set(baseline_calls.get() + 1) }, 2),
        );
        // One warm-up call each, then 4 calls of one operation, or 2 of two, per round.
        assert_eq!((ours_calls.get(), baseline_calls.get()), (1 + 3 * 4, 1 + 3 * 2));
        assert!(ours.is_finite() && ours >= 0.0 && baseline.is_finite() && baseline >= 0.0);
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
