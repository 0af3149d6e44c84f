//! A throw-away PostgreSQL cluster, trust auth, durability off for speed.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use super::{free_port, has_exited, log_tail, port_open, terminate, wait_until};

/// initdb plus first start can take a while on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is SIGKILLed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running PostgreSQL server. Shut down (and reaped) on drop.
pub struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    // Last so the directory outlives the process during drop.
    dir: TempDir,
}

impl Postgres {
    /// Creates a cluster in a temporary directory, starts it on a free
    /// port of 127.0.0.1 and waits until it accepts connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let user = SystemUser::postgres();
        let dir = tempfile::Builder::new()
            .prefix("postgres-")
            .tempdir()
            .expect("create postgres tempdir");
        // initdb and postgres refuse to run as root, so the cluster belongs
        // to the `postgres` system user.
        user.chown(dir.path());
        initdb(&bin, &user, dir.path());

        let port = free_port();
        let child = spawn_server(&bin, &user, dir.path(), port);
        let mut postgres = Postgres {
            child,
            port,
            bin,
            dir,
        };
        postgres.wait_ready();
        postgres
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        let output = self.psql("postgres", &sql);
        if !output.status.success() {
            panic!(
                "creating database {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.url(name)
    }

    /// Creates a database with a name unique within this process.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name)
    }

    /// The server's stderr (its log).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs one SQL command with psql, ignoring ~/.psqlrc.
    fn psql(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql")
    }

    /// Waits for the TCP port, then for pg_isready: the port opens before
    /// the server has finished recovery and accepts sessions.
    fn wait_ready(&mut self) {
        let (port, bin) = (self.port, self.bin.clone());
        let child = &mut self.child;
        let ready = wait_until(START_TIMEOUT, || {
            has_exited(child) || (port_open(port) && pg_isready(&bin, port))
        });
        if !ready || has_exited(&mut self.child) {
            terminate(&mut self.child, libc::SIGKILL, STOP_GRACE);
            panic!(
                "PostgreSQL did not become ready on port {}.\n--- log tail ---\n{}",
                self.port,
                log_tail(&self.log_path(), 40)
            );
        }
    }
}

impl Drop for Postgres {
    /// SIGINT is PostgreSQL's "fast" shutdown: unlike SIGTERM ("smart"),
    /// it does not wait for open client sessions, such as pools a test
    /// forgot to close.
    fn drop(&mut self) {
        terminate(&mut self.child, libc::SIGINT, STOP_GRACE);
    }
}

/// The bin directory of the newest installed PostgreSQL.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             run scripts/test which installs it"
        ),
    }
}

/// Creates the cluster in `<dir>/data`.
fn initdb(bin: &Path, user: &SystemUser, dir: &Path) {
    let output = user
        .command(&bin.join("initdb"), dir)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .stdin(Stdio::null())
        .output()
        .expect("run initdb");
    if !output.status.success() {
        panic!(
            "initdb failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Starts the server in the foreground with its log in `<dir>/postgres.log`.
fn spawn_server(bin: &Path, user: &SystemUser, dir: &Path, port: u16) -> Child {
    // Opened by us, so the file's owner does not matter to the server.
    let log = File::create(dir.join("postgres.log")).expect("create postgres log");
    user.command(&bin.join("postgres"), dir)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
        .arg("-k")
        .arg(dir)
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup postgres log"))
        .stderr(log)
        .spawn()
        .expect("spawn postgres")
}

/// True once the server accepts sessions.
fn pg_isready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
        ])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `postgres` system account that owns the cluster.
struct SystemUser {
    uid: u32,
    gid: u32,
}

impl SystemUser {
    /// Looks the account up in /etc/passwd.
    fn postgres() -> SystemUser {
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        passwd
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                match fields.as_slice() {
                    ["postgres", _, uid, gid, ..] => Some(SystemUser {
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    }),
                    _ => None,
                }
            })
            .expect("no `postgres` user in /etc/passwd: is PostgreSQL installed?")
    }

    fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    }

    /// A command that runs as this user, in `cwd` (the user cannot read
    /// root's working directory), with a C locale.
    fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(cwd)
            .env("LC_ALL", "C")
            .env_remove("LANG")
            .env("HOME", cwd);
        command
    }
}
