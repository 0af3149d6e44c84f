//! The `estuary` binary: configuration checks, a refused secret, SIGTERM.

mod world;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use world::Prosody;

const BIN: &str = env!("CARGO_BIN_EXE_estuary");

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("estuary.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn gateway_config(dir: &Path, server: &str, secret: &str) -> String {
    format!(
        r#"
[component]
server = "{server}"
max_attempts = 2
backoff_initial_ms = 50
backoff_max_ms = 100

[store]
data_dir = "{}"

[[gateway]]
domain = "irc.localhost"
secret = "{secret}"
kind = "irc"
"#,
        dir.display()
    )
}

#[test]
fn check_config_accepts_the_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/estuary.example.toml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn check_config_lists_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "[[gateway]]\ndomain = \"irc.example.org\"\nsecret = \"\"\nkind = \"telegram\"\n",
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("gateway[0].secret"), "{stdout}");
    assert!(stdout.contains("gateway[0].kind"), "{stdout}");

    // Environment overrides apply before the check.
    let path = write(
        dir.path(),
        &gateway_config(dir.path(), "127.0.0.1:5347", "s"),
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .env("ESTUARY__COMPONENT__SERVER", "no-port-here")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("component.server"), "{stdout}");
}

#[test]
fn a_wrong_secret_is_logged_clearly_and_ends_with_a_failure() {
    let prosody = Prosody::start(&[("irc.localhost", "the-right-secret")]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &gateway_config(dir.path(), &prosody.component_addr(), "a-wrong-secret"),
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("ESTUARY_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rejected the secret"), "{stderr}");
    assert!(
        !stderr.contains("a-wrong-secret"),
        "secrets are never logged: {stderr}"
    );
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let prosody = Prosody::start(&[("irc.localhost", "s3cret")]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &gateway_config(dir.path(), &prosody.component_addr(), "s3cret"),
    );
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().expect("estuary ended early").unwrap();
        if line.contains("component link up") {
            break;
        }
        assert!(Instant::now() < deadline, "the link never came up");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
    assert!(
        dir.path().join("estuary.sqlite").exists(),
        "the store was created"
    );
}

/// SIGUSR1 (what biboumi's systemd unit sends on `systemctl reload`),
/// SIGUSR2 and SIGHUP read the configuration file again rather than end
/// the process; a file that does not check is refused in the log and the
/// gateway runs on.
#[test]
fn reload_signals_read_the_configuration_again() {
    let prosody = Prosody::start(&[("irc.localhost", "s3cret")]);
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_config(dir.path(), &prosody.component_addr(), "s3cret");
    let path = write(dir.path(), &config);
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("ESTUARY_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = lines.next().expect("estuary ended early").unwrap();
            if line.contains(what) {
                return line;
            }
            assert!(Instant::now() < deadline, "no '{what}' in the log");
        }
    };
    wait_for("component link up");
    let signal = |sig| unsafe { libc::kill(child.id() as i32, sig) };

    write(
        dir.path(),
        &config.replace(
            "kind = \"irc\"",
            "kind = \"irc\"\nadmins = [\"boss@localhost\"]\npersistent_by_default = true",
        ),
    );
    signal(libc::SIGUSR1);
    let line = wait_for("configuration reloaded");
    assert!(
        line.contains("allowed and admins") && line.contains("persistent_by_default"),
        "{line}"
    );

    write(dir.path(), "[component]\nserver = \"no port\"\n");
    signal(libc::SIGHUP);
    let line = wait_for("configuration not reloaded");
    assert!(line.contains("component.server"), "{line}");

    write(
        dir.path(),
        &config.replace("max_attempts = 2", "max_attempts = 3"),
    );
    signal(libc::SIGUSR2);
    let line = wait_for("configuration reloaded");
    assert!(
        line.contains("[component]") && line.contains("next restart"),
        "{line}"
    );

    signal(libc::SIGTERM);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest:?}");
}
