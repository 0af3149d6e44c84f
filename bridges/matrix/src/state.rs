//! The sync token of each account, kept in a small file under the bridge's
//! state directory, so that a restart resumes `/sync` where it stopped: no
//! history replayed, no event lost.
//!
//! It is not in the core's credentials because it changes on every sync,
//! and the core only writes credentials at registration.

use std::path::{Path, PathBuf};

use crate::error::MatrixError;

/// Where one account's sync token lives.
#[derive(Debug, Clone)]
pub struct SyncTokenFile {
    path: PathBuf,
}

impl SyncTokenFile {
    /// The file for `account` (the user's bare JID) under `dir`.
    pub fn new(dir: &Path, account: &str) -> SyncTokenFile {
        SyncTokenFile {
            path: dir.join(format!("{}.sync-token", file_name(account))),
        }
    }

    /// The saved token, if there is one.
    /// Forget the token; a missing file is already forgotten.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn load(&self) -> Result<Option<String>, MatrixError> {
        match std::fs::read_to_string(&self.path) {
            Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.error(source)),
        }
    }

    /// Saves the token atomically: a crash leaves the old token or the new one.
    pub fn save(&self, token: &str) -> Result<(), MatrixError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let partial = self.path.with_extension("sync-token.partial");
        std::fs::write(&partial, token).map_err(|e| self.error(e))?;
        std::fs::rename(&partial, &self.path).map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> MatrixError {
        MatrixError::State {
            path: self.path.display().to_string(),
            source,
        }
    }
}

/// A bare JID as a file name: letters, digits, `.`, `-`, `_` and `@` stay;
/// every other byte becomes `%xx`, so no JID can climb out of the directory.
fn file_name(account: &str) -> String {
    account
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_@".contains(&b) || (b == b'.') {
                char::from(b).to_string()
            } else {
                format!("%{b:02x}")
            }
        })
        .collect::<String>()
        .replace("..", "%2e%2e")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let dir = std::env::temp_dir().join(format!("estuary-matrix-state-{}", std::process::id()));
        let file = SyncTokenFile::new(&dir, "alice@example.org");
        assert_eq!(file.load().unwrap(), None);
        file.save("s72594_4483_1934").unwrap();
        assert_eq!(file.load().unwrap().as_deref(), Some("s72594_4483_1934"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_stay_in_the_directory() {
        assert_eq!(file_name("alice@example.org"), "alice@example.org");
        assert!(!file_name("../../etc/passwd@x").contains('/'));
        assert!(!file_name("..@x").starts_with(".."));
    }
}
