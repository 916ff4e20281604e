//! Progress on stdout for the long commands (`migrate`, the rotations),
//! drawn only when stdout is a terminal: a script or a log file gets the
//! result line alone.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether progress is drawn: only on a terminal.
pub(crate) fn wanted(stdout_is_terminal: bool) -> bool {
    stdout_is_terminal
}

/// A spinner with `message`, the elapsed time and a count (`{pos}`), or
/// `None` when stdout is not a terminal.
pub(crate) fn spinner(message: &'static str) -> Option<ProgressBar> {
    if !wanted(std::io::stdout().is_terminal()) {
        return None;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
    let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}] {human_pos}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

/// Turns `bar` into a bar of `total` items.
pub(crate) fn set_total(bar: &ProgressBar, total: u64) {
    if bar.length() != Some(total) {
        bar.set_length(total);
        let style = ProgressStyle::with_template("{msg} [{elapsed}] {wide_bar} {human_pos}/{human_len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
    }
}

/// Clears the progress line, so the result line prints in its place.
pub(crate) fn finish(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_drawn_only_on_a_terminal() {
        assert!(wanted(true));
        assert!(!wanted(false));
    }
}
