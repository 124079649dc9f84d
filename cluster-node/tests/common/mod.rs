//! Real IPFS daemons for the connector's tests: js-ipfs started by the
//! project's `e2e/ipfs/ipfs-up.sh` in a temporary directory, stopped by
//! `ipfs-down.sh` when the guard drops (also when a test panics).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

#[cfg(all(feature = "server", feature = "client"))]
pub mod cluster;

use std::path::PathBuf;
use std::process::Command;

/// A port free now, never handed out before by this process, and below the
/// kernel's ephemeral range (32768 and up). Asking the kernel for port 0
/// twice can give the same port twice (the first listener is closed at
/// once: a REST API and a proxy configured on one port), and a peer's own
/// port-0 binds at start could take a port picked at `init`.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 24_000;
    const SPAN: u16 = 8_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (offset.wrapping_add(n) % SPAN);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Where the daemon recipe lives in the project.
pub fn recipe_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/ipfs")
}

/// Daemons started by one `ipfs-up.sh` call; stopped on drop.
pub struct Daemons {
    dir: tempfile::TempDir,
    base: u16,
    n: u16,
}

impl Daemons {
    /// Starts `n` daemons with RPC APIs on `base`, `base + 10`, …. Panics
    /// (never skips) when the daemon is not installed.
    pub fn start(n: u16, base: u16) -> Daemons {
        let recipe = recipe_dir();
        let jsipfs = recipe.join("node_modules/.bin/jsipfs");
        assert!(
            jsipfs.exists(),
            "the IPFS daemon for these tests is not installed ({} is missing): \
             run scripts/ipfs-install.sh first",
            jsipfs.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("kubo-connector-")
            .tempdir()
            .expect("temp dir for the daemons' repos");
        let daemons = Daemons { dir, base, n };
        let out = Command::new(recipe.join("ipfs-up.sh"))
            .arg(n.to_string())
            .arg(daemons.dir.path())
            .arg(base.to_string())
            .output()
            .expect("running ipfs-up.sh");
        assert!(
            out.status.success(),
            "ipfs-up.sh failed: {}\n{}\nlogs: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            daemons.logs()
        );
        daemons
    }

    /// Daemon `i`'s API URL.
    pub fn url(&self, i: u16) -> String {
        assert!(i < self.n, "daemon {i} of {}", self.n);
        format!("http://127.0.0.1:{}", self.base + 10 * i)
    }

    /// Daemon `i`'s API as a multiaddr (as config files give it).
    pub fn multiaddr(&self, i: u16) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.base + 10 * i)
    }

    /// Daemon `i`'s process id (from the pid file `ipfs-up.sh` writes).
    pub fn pid(&self, i: u16) -> Option<u32> {
        let p = self.dir.path().join(format!("ipfs-{i}.pid"));
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        (0..self.n)
            .map(|i| {
                let p = self.dir.path().join(format!("ipfs-{i}.log"));
                format!(
                    "--- {}\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        // Stops only the pids recorded in this directory.
        let _ = Command::new(recipe_dir().join("ipfs-down.sh"))
            .arg(self.dir.path())
            .status();
    }
}

/// A multi-threaded runtime for a test body.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
