//! Progress on a terminal: a spinner per build step and a bar for downloads. Off a terminal
//! (CI logs, pipes) nothing is drawn.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy_sysext_automation::artifacts::{BuildProgress, BuildStep};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws progress on stderr when it is a terminal.
pub struct TerminalProgress {
    enabled: bool,
    current: Mutex<Option<ProgressBar>>,
    /// Each build step and when it started, for the summary.
    steps: Mutex<Vec<(BuildStep, Instant)>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        TerminalProgress {
            enabled: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
            steps: Mutex::new(Vec::new()),
        }
    }

    fn replace(&self, bar: Option<ProgressBar>) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = current.take() {
            previous.finish_and_clear();
        }
        *current = bar;
    }

    /// Starts a spinner with `message`.
    pub fn spinner(&self, message: &str) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("the template is valid"),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        self.replace(Some(bar));
    }

    /// Starts a byte-count bar for a download of `total` bytes (0 if unknown).
    pub fn download(&self, message: &str, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        self.replace(Some(bar));
    }

    /// Moves the download bar to `done` of `total` bytes.
    pub fn bytes(&self, done: u64, total: u64) {
        if let Some(bar) = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if total > 0 {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    }

    /// Clears whatever is drawn.
    pub fn finish(&self) {
        self.replace(None);
    }

    /// How long each build step took, up to `end`, as `extract 0.6s, compress 12.0s, ...`.
    pub fn step_times(&self, end: Instant) -> String {
        let steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        let ends = steps.iter().skip(1).map(|(_, start)| *start).chain([end]);
        steps
            .iter()
            .zip(ends)
            .map(|((step, start), end)| {
                format!("{} {:.1}s", step.name(), (end - *start).as_secs_f64())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl BuildProgress for TerminalProgress {
    fn step(&self, step: BuildStep) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((step, Instant::now()));
        self.spinner(step.describe());
    }
}
