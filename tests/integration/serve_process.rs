//! The `serve` binary as a child process on loopback, for the scenario tests.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use alloy_sysext_automation::server::signature::sign;

use crate::common::cli;
use crate::http::{Response, request};

pub const SECRET: &str = "test webhook secret";

/// The server binary, running until dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        // A port found free may be taken before the server binds it (by another test's
        // connection, or another process): then another one is tried.
        for _ in 0..4 {
            match Server::try_start_on(free_port(), data_dir, env) {
                Ok(server) => return server,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("the server did not come up; its log:\n{log}"),
            }
        }
        Server::start_on(free_port(), data_dir, env)
    }

    /// Starts on `port` (from [`free_port`]), for a test that must know it beforehand.
    pub fn start_on(port: u16, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::try_start_on(port, data_dir, env)
            .unwrap_or_else(|log| panic!("the server did not come up; its log:\n{log}"))
    }

    /// Starts on `port`, or gives the log of the run when the server exits or does not
    /// answer in time.
    fn try_start_on(port: u16, data_dir: &Path, env: &[(&str, &str)]) -> Result<Server, String> {
        // The log of every run in this data directory, kept for a failing test to show.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("test-server.log"))
            .unwrap();
        let mut command = cli();
        command
            .arg("serve")
            .env("PORT", port.to_string())
            .env("DATA_DIR", data_dir)
            .env("LOG_FORMAT", "json")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the server starts");
        let mut server = Server {
            child,
            port,
            data_dir: data_dir.to_owned(),
        };
        let log = || fs::read_to_string(data_dir.join("test-server.log")).unwrap_or_default();
        // Generous: with the whole suite running on two cores, a start can wait long for CPU.
        let deadline = Instant::now() + Duration::from_secs(90);
        while request(port, "GET", "/healthz", &[], b"").is_err() {
            if Instant::now() >= deadline || matches!(server.child.try_wait(), Ok(Some(_))) {
                return Err(log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn with_secret(data_dir: &Path) -> Server {
        Server::start(data_dir, &[("WEBHOOK_SECRET", SECRET)])
    }

    pub fn deliver(&self, id: &str, event: &str, body: &[u8]) -> Response {
        let signature = sign(SECRET, body);
        self.post_webhook(
            &[
                ("X-GitHub-Delivery", id),
                ("X-GitHub-Event", event),
                ("X-Hub-Signature-256", &signature),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    }

    pub fn post_webhook(&self, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.port, "POST", "/api/github/webhooks", headers, body).unwrap()
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], b"").unwrap()
    }

    /// Sends SIGTERM (how containers and Fly.io stop the server) without waiting.
    pub fn send_sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `limit` for the process to exit, failing with its log if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {limit:?}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (30 s at most, as `fly.toml`'s `kill_timeout`) for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit(Duration::from_secs(30))
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .unwrap_or_else(|| panic!("no VmHWM in {status}"));
        let kib: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed: {status}");
    }

    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.data_dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every fixture payload: (event, file name, body).
pub fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-webhooks");
    let mut all = Vec::new();
    for event in fs::read_dir(&root).unwrap() {
        let event = event.unwrap().path();
        if !event.is_dir() {
            continue;
        }
        for file in fs::read_dir(&event).unwrap() {
            let file = file.unwrap().path();
            all.push((
                event.file_name().unwrap().to_string_lossy().into_owned(),
                file.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&file).unwrap(),
            ));
        }
    }
    all.sort();
    assert!(all.len() > 40, "the fixtures are missing");
    all
}

impl Server {
    /// Everything the server has logged in this data directory.
    pub fn log(&self) -> String {
        fs::read_to_string(self.data_dir.join("test-server.log")).unwrap_or_default()
    }

    /// Waits until `check` holds, failing with the server's log after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
