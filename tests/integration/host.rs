//! A host as the images' users run one: `systemd-sysupdate` 257 from a Debian trixie root
//! (`scripts/host-root` makes it once, under `/var/cache`), run with `chroot` in a throwaway
//! overlay of that root, and configured as `ghost.bu` configures real hosts: the signing key
//! merged into the import keyring by ghost.bu's own merge script, and a transfer definition
//! pointing at the base URL under test.
//!
//! The host shares the tests' network namespace, so it reaches the server and the bucket on
//! loopback like any client.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{dir_listing, fixture, run_ok};

/// Where `scripts/host-root` keeps the root unless `SYSUPDATE_HOST_ROOT` says otherwise.
const DEFAULT_ROOT: &str = "/var/cache/alloy-sysext-automation/trixie-root";

/// The base URL ghost.bu's transfer definition names, replaced by the one under test.
const GHOST_BASE_URL: &str = "https://ghost-sysext-images.separationofconcerns.dev/";

/// Which transfer definition the host is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `/etc/sysupdate.alloy.d/alloy.conf`, exactly as ghost.bu writes it.
    GhostBu,
    /// `/etc/sysupdate.alloy.d/alloy.transfer`, as the README shows it
    /// (`examples/sysupdate/alloy.transfer`).
    Readme,
    /// The README's transfer for hosts that take the signed dm-verity image instead
    /// (`examples/sysupdate/alloy-ddi.transfer`), installed under the same name.
    ReadmeDdi,
}

/// The README's transfer definition, with `@BASE_URL@` where the base URL goes.
pub fn readme_transfer() -> String {
    example_transfer("alloy.transfer")
}

/// The transfer definition `examples/sysupdate/{name}`.
fn example_transfer(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/sysupdate")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The contents ghost.bu gives the file at `path` (a `storage.files` entry with `inline:`).
pub fn ghost_bu_file(path: &str) -> String {
    let text = fs::read_to_string(fixture("real-world/ghost.bu")).unwrap();
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|line| line.trim() == format!("- path: {path}"))
        .unwrap_or_else(|| panic!("ghost.bu has no file {path}"));
    lines
        .by_ref()
        .find(|line| line.trim() == "inline: |")
        .unwrap_or_else(|| panic!("ghost.bu's {path} is not inline"));
    let body: Vec<&str> = lines
        .take_while(|line| line.is_empty() || line.starts_with("          "))
        .collect();
    let mut contents: String = body
        .iter()
        .map(|line| line.strip_prefix("          ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    contents = contents.trim_end().to_owned();
    contents.push('\n');
    contents
}

/// The prefix of a host's directory, by which mounts left by a killed test run are found.
const HOST_DIR_PREFIX: &str = "alloy-host-";

/// The longest a `systemd-sysupdate` run or a setup command may take before it is killed.
const COMMAND_DEADLINE_SECONDS: &str = "300";

/// A throwaway host: an overlay of the cached root with its own `/proc` and a `/dev` of its
/// own (a tmpfs with the few device nodes sysupdate opens, never the machine's `/dev`),
/// unmounted and removed when dropped.
pub struct Host {
    /// The host's `/`, as seen from the tests.
    pub root: PathBuf,
    mounts: Vec<PathBuf>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let unmounted = unmount_all(self.mounts.iter().rev());
        if !unmounted {
            // Removing the directory would cross into whatever is still mounted there.
            if let Some(dir) = self.dir.take() {
                eprintln!("left {} mounted: unmount it by hand", dir.keep().display());
            }
        }
    }
}

/// Unmounts each of `mounts` in order; true when all are gone.
fn unmount_all<'a>(mounts: impl Iterator<Item = &'a PathBuf>) -> bool {
    let mut all = true;
    for mount in mounts {
        let status = Command::new("umount").arg("--lazy").arg(mount).status();
        all &= status.is_ok_and(|s| s.success());
    }
    all
}

/// Unmounts what hosts of an earlier, killed test run left mounted (their drop never ran).
/// Runs once per test process, before its first host exists.
fn unmount_leftovers() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let tmp = std::env::temp_dir();
        let prefix = tmp.join(HOST_DIR_PREFIX);
        let prefix = prefix.to_string_lossy();
        let mut stale: Vec<PathBuf> = mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(prefix.as_ref()))
            .map(PathBuf::from)
            .collect();
        // Deepest first: /proc and /dev before the overlay they are in.
        stale.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
        unmount_all(stale.iter());
    });
}

impl Host {
    /// A fresh host: nothing installed, no key trusted, no transfer definition.
    pub fn new() -> Host {
        let lower = std::env::var_os("SYSUPDATE_HOST_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        assert!(
            lower.join("usr/lib/systemd/systemd-sysupdate").exists(),
            "no host root at {} with systemd-sysupdate: run scripts/host-root (scripts/test does)",
            lower.display()
        );
        unmount_leftovers();
        let dir = tempfile::Builder::new()
            .prefix(HOST_DIR_PREFIX)
            .tempdir()
            .unwrap();
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for path in [&upper, &work, &root] {
            fs::create_dir(path).unwrap();
        }
        let mut host = Host {
            root: root.clone(),
            mounts: Vec::new(),
            dir: Some(dir),
        };
        run_ok(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                ))
                .arg(&root),
        );
        host.mounts.push(root.clone());
        run_ok(
            Command::new("mount")
                .args(["-t", "proc", "proc"])
                .arg(root.join("proc")),
        );
        host.mounts.push(root.join("proc"));
        let dev = root.join("dev");
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs"])
                .arg(&dev),
        );
        host.mounts.push(dev.clone());
        for (name, minor) in [
            ("null", "3"),
            ("zero", "5"),
            ("random", "8"),
            ("urandom", "9"),
        ] {
            run_ok(
                Command::new("mknod")
                    .args(["-m", "666"])
                    .arg(dev.join(name))
                    .args(["c", "1", minor]),
            );
        }
        host
    }

    /// Gives the host the machine's loop devices (`/dev/loop-control` and `/dev/loop0` to
    /// `/dev/loop255`), which systemd's image tools need to open a disk image. The host
    /// gets nothing else of the machine's `/dev`.
    pub fn add_loop_devices(&self) {
        run_ok(
            Command::new("sh")
                .arg("-c")
                .arg(
                    "cd \"$1\" && mknod -m 660 loop-control c 10 237 && \
                     for minor in $(seq 0 255); do mknod -m 660 \"loop$minor\" b 7 \"$minor\" || exit 1; done",
                )
                .arg("sh")
                .arg(self.path("/dev")),
        );
    }

    /// The path of the host's `path` (absolute on the host), seen from the tests.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Writes the host's file `path`.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Runs `program` with `args` on the host (in its root, with a clean environment),
    /// killed if it runs past the deadline.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command
            .args(["--kill-after=10", COMMAND_DEADLINE_SECONDS, "chroot"])
            .arg(&self.root)
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("SYSTEMD_LOG_COLOR", "0")
            .env("SYSTEMD_COLORS", "0");
        command
    }

    /// Trusts `public_key` (armored) as ghost.bu does: the key at
    /// `/etc/systemd/alloy-sysext.gpg.pub`, merged into the import keyring by ghost.bu's
    /// `sysupdate-merge-keyring.sh`.
    pub fn trust(&self, public_key: &Path) {
        self.write(
            "/etc/systemd/alloy-sysext.gpg.pub",
            fs::read(public_key).unwrap(),
        );
        let script = "/opt/bin/sysupdate-merge-keyring.sh";
        self.write(script, ghost_bu_file(script));
        fs::set_permissions(self.path(script), fs::Permissions::from_mode(0o755)).unwrap();
        run_ok(&mut self.command(script, &[]));
    }

    /// Installs the transfer definition `transfer`, reading images from `base_url`.
    pub fn configure(&self, transfer: Transfer, base_url: &str) {
        let base_url = format!("{}/", base_url.trim_end_matches('/'));
        match transfer {
            Transfer::GhostBu => {
                let path = "/etc/sysupdate.alloy.d/alloy.conf";
                let contents = ghost_bu_file(path);
                assert!(contents.contains(GHOST_BASE_URL), "{contents}");
                self.write(path, contents.replace(GHOST_BASE_URL, &base_url));
            }
            Transfer::Readme | Transfer::ReadmeDdi => {
                let contents = example_transfer(match transfer {
                    Transfer::ReadmeDdi => "alloy-ddi.transfer",
                    _ => "alloy.transfer",
                });
                assert!(contents.contains("@BASE_URL@"), "{contents}");
                self.write(
                    "/etc/sysupdate.alloy.d/alloy.transfer",
                    contents.replace("@BASE_URL@", &base_url),
                );
            }
        }
    }

    /// `systemd-sysupdate --component=alloy <verb>`, as the host's timer runs it.
    pub fn sysupdate(&self, verb: &str) -> Sysupdate {
        let output = self
            .command(
                "/usr/lib/systemd/systemd-sysupdate",
                &["--component=alloy", verb],
            )
            .output()
            .expect("chroot runs");
        // `timeout` answers 124 when it stopped the program, 137 when it had to kill it.
        assert!(
            !matches!(output.status.code(), Some(124 | 137)),
            "systemd-sysupdate {verb} ran past {COMMAND_DEADLINE_SECONDS} s: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Sysupdate {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The image files in `/opt/extensions/alloy/`, sorted (a download in progress, a
    /// dot file, is listed too: none may be left behind).
    pub fn installed(&self) -> Vec<String> {
        dir_listing(&self.path("/opt/extensions/alloy"))
    }

    /// Where `/etc/extensions/alloy.raw` points, resolved on the host, if it exists.
    pub fn current(&self) -> Option<String> {
        let link = self.path("/etc/extensions/alloy.raw");
        let target = fs::read_link(&link).ok()?;
        let resolved = link.parent().unwrap().join(target);
        let resolved = fs::canonicalize(resolved).ok()?;
        Some(format!(
            "/{}",
            resolved.strip_prefix(&self.root).unwrap().display()
        ))
    }

    /// The bytes of the host's file `path`.
    pub fn read(&self, path: &str) -> Vec<u8> {
        fs::read(self.path(path)).unwrap_or_else(|e| panic!("the host's {path}: {e}"))
    }

    /// What is on the host that an update may change: the installed files, their bytes,
    /// and the current symlink.
    pub fn state(&self) -> (Vec<(String, Vec<u8>)>, Option<String>) {
        let files = self
            .installed()
            .into_iter()
            .map(|name| {
                let bytes = self.read(&format!("/opt/extensions/alloy/{name}"));
                (name, bytes)
            })
            .collect();
        (files, self.current())
    }
}

/// How one `systemd-sysupdate` run ended.
#[derive(Debug)]
pub struct Sysupdate {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Sysupdate {
    /// Both streams, for a failing assertion to show.
    pub fn output(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }

    /// The versions `list` shows, with their columns (`1.17.1 ✓ candidate`, …), one per
    /// line, without the header.
    pub fn listed(&self) -> Vec<String> {
        self.stdout
            .lines()
            .skip(1)
            .map(|line| {
                line.trim_start_matches(|c: char| !c.is_ascii_digit())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|line| !line.is_empty())
            .collect()
    }
}
