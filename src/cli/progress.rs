//! Progress on a terminal: a spinner per build step and a bar for downloads. Off a terminal
//! (CI logs, pipes) nothing is drawn.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use alloy_sysext_automation::artifacts::{BuildProgress, BuildStep};
use indicatif::{ProgressBar, ProgressStyle};

/// Draws progress on stderr when it is a terminal.
pub struct TerminalProgress {
    enabled: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Self {
        TerminalProgress {
            enabled: std::io::stderr().is_terminal(),
            current: Mutex::new(None),
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
}

impl BuildProgress for TerminalProgress {
    fn step(&self, step: BuildStep) {
        self.spinner(step.describe());
    }
}
