//! A throw-away biboumi 9 (Debian's package), the gateway Estuary replaces:
//! connected as a component of the test Prosody, with its SQLite database in
//! a temporary directory (or in a PostgreSQL database), so that a migration
//! test can make a real biboumi database and hand it to Estuary's import.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{has_exited, log_tail, terminate, wait_until};

/// How long biboumi gets to connect to Prosody.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running biboumi. Killed (and reaped) on drop.
pub struct Biboumi {
    child: Option<Child>,
    /// Its `db_name`: an SQLite file or a PostgreSQL URL.
    database: String,
    dir: TempDir,
}

impl Biboumi {
    /// The Debian package's binary, or `None` where it is not installed.
    fn binary() -> Option<PathBuf> {
        let path = PathBuf::from("/usr/bin/biboumi");
        path.exists().then_some(path)
    }

    /// Starts biboumi as the component `domain` (secret `secret`) of the
    /// Prosody whose component port is `component_port`, and waits until
    /// Prosody has taken it. Its database is SQLite; its ident server is off.
    pub fn start(domain: &str, secret: &str, component_port: u16) -> Biboumi {
        Biboumi::start_with_database(domain, secret, component_port, None)
    }

    /// Like [`Biboumi::start`], with its database at `database` (a
    /// PostgreSQL URL) where one is given.
    pub fn start_with_database(
        domain: &str,
        secret: &str,
        component_port: u16,
        database: Option<&str>,
    ) -> Biboumi {
        let binary = Biboumi::binary().expect("biboumi is not installed: scripts/test installs it");
        let dir = tempfile::Builder::new()
            .prefix("biboumi-")
            .tempdir()
            .expect("create biboumi tempdir");
        let database = database.map_or_else(
            || dir.path().join("biboumi.sqlite").display().to_string(),
            str::to_owned,
        );
        let config = format!(
            "hostname={domain}\npassword={secret}\nxmpp_server_ip=127.0.0.1\n\
             port={component_port}\ndb_name={database}\nidentd_port=0\nlog_level=0\n\
             log_file={}\npolicy_directory={}\n",
            dir.path().join("biboumi.log").display(),
            dir.path().display(),
        );
        let config_path = dir.path().join("biboumi.cfg");
        fs::write(&config_path, config).expect("write biboumi config");
        let child = Command::new(binary)
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn biboumi");
        let mut biboumi = Biboumi {
            child: Some(child),
            database,
            dir,
        };
        let log = biboumi.log_path();
        let up = wait_until(START_TIMEOUT, || {
            fs::read_to_string(&log).is_ok_and(|l| l.contains("Authenticated with the XMPP server"))
                || biboumi.child.as_mut().is_none_or(has_exited)
        });
        assert!(
            up && !biboumi.child.as_mut().is_none_or(has_exited),
            "biboumi did not connect to Prosody:\n{}",
            log_tail(&log, 30)
        );
        biboumi
    }

    /// Its database: the SQLite file, or the PostgreSQL URL.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("biboumi.log")
    }

    /// Stops biboumi (SIGTERM, as an admin's `systemctl stop` does): it
    /// quits its IRC connections and leaves its database behind.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Biboumi {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGKILL, Duration::from_secs(5));
        }
    }
}
