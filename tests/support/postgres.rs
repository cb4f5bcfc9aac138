//! A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package: `initdb`
//! on a temporary directory and `pg_ctl start` on a free loopback port, as the `postgres`
//! user when the tests run as root (PostgreSQL refuses to run as root). One server per test
//! process, started on first use and stopped when the process exits; each test gets a
//! database of its own.
//!
//! Shared by the library's unit tests (`src/database/testing.rs` includes this file) and
//! the scenario tests (`postgres_server` in `tests/integration/main.rs`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A running PostgreSQL server in a temporary directory.
pub struct PostgresServer {
    bin: PathBuf,
    data: PathBuf,
    root: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The server this test process shares, started on first use.
pub fn shared() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = PostgresServer::start(FastButUnsafe::Yes);
        extern "C" fn stop_at_exit() {
            if let Some(server) = SERVER.get() {
                server.stop();
            }
        }
        // SAFETY: registers a plain function with no arguments, as atexit requires.
        unsafe { libc::atexit(stop_at_exit) };
        server
    })
}

/// Whether the server may lose committed data on a crash of the machine, for speed: tests
/// start many databases and need no durability; benchmarks measure the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastButUnsafe {
    Yes,
    No,
}

impl PostgresServer {
    /// Starts a new server; panics, saying why, when it cannot.
    pub fn start(fast: FastButUnsafe) -> PostgresServer {
        let bin = binaries();
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let root = std::env::temp_dir().join(format!(
            "alloy-sysext-postgres-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("making the PostgreSQL directory");
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&root)
                .status()
                .expect("running chown");
            assert!(status.success(), "chown postgres {} failed", root.display());
        }
        let data = root.join("data");
        let mut server = PostgresServer {
            bin,
            data,
            root,
            port: 0,
            as_postgres,
        };
        server.run(
            "initdb",
            &[
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
                "-D",
                &server.data.display().to_string(),
            ],
        );
        let mut settings = vec![
            "-c listen_addresses=127.0.0.1".to_owned(),
            format!("-c unix_socket_directories={}", server.root.display()),
            "-c max_connections=400".to_owned(),
        ];
        if fast == FastButUnsafe::Yes {
            settings.extend(
                [
                    "fsync=off",
                    "synchronous_commit=off",
                    "full_page_writes=off",
                ]
                .map(|setting| format!("-c {setting}")),
            );
        }
        // The port is free when asked, but another process may take it before the server
        // binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let options = format!("-p {port} {}", settings.join(" "));
            let log = server.root.join("server.log").display().to_string();
            let data = server.data.display().to_string();
            if server.try_run(
                "pg_ctl",
                &[
                    "start", "-w", "-t", "60", "-D", &data, "-l", &log, "-o", &options,
                ],
            ) {
                server.port = port;
                return server;
            }
        }
        let log = std::fs::read_to_string(server.root.join("server.log")).unwrap_or_default();
        panic!("PostgreSQL did not start; its log:\n{log}");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database, and its URL.
    pub fn new_database(&self) -> String {
        static DATABASES: AtomicU64 = AtomicU64::new(0);
        let name = format!("test_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let output = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url("postgres"))
            .args(["-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "CREATE DATABASE {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.url(&name)
    }

    /// The rows `sql` gives in the database at `url`, one line per row, columns separated
    /// by `|` (`psql -At`).
    pub fn query(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                url,
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "{sql} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// Stops the server at once and removes its directory.
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        self.try_run("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &data]);
        let _ = std::fs::remove_dir_all(&self.root);
    }

    fn run(&self, program: &str, args: &[&str]) {
        assert!(
            self.try_run(program, args),
            "{program} {args:?} failed; see the output above"
        );
    }

    fn try_run(&self, program: &str, args: &[&str]) -> bool {
        let program = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|error| panic!("running {}: {error}", program.display()))
            .success()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The directory of the newest PostgreSQL's programs that Debian's package installed.
fn binaries() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): \
             `apt-get install postgresql`, or run the tests with scripts/test, which installs it"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("finding a free loopback port")
}
