use std::collections::BTreeMap;
use std::fmt;

/// How a registration field is shown to the user in a data form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    /// Hidden as it is typed; also never logged.
    Secret,
    Boolean,
    /// Several lines, one value each (a data form's `text-multi`), kept
    /// joined by `\n`: the one control character such a value may hold.
    Lines,
}

/// One field a network needs from a user to log them in (nick, password, token …).
#[derive(Debug, Clone)]
pub struct RegistrationField {
    /// The form variable name, also the key in [`Credentials`].
    pub var: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    /// Longest accepted value, in bytes; longer submissions are refused, not truncated.
    pub max_len: usize,
}

impl RegistrationField {
    pub const fn text(var: &'static str, label: &'static str, required: bool) -> Self {
        RegistrationField {
            var,
            label,
            kind: FieldKind::Text,
            required,
            max_len: 256,
        }
    }

    pub const fn secret(var: &'static str, label: &'static str, required: bool) -> Self {
        RegistrationField {
            var,
            label,
            kind: FieldKind::Secret,
            required,
            max_len: 1024,
        }
    }
}

/// Values a user submitted in a registration form, by field name.
pub type FormValues = BTreeMap<String, String>;

/// What the store keeps for a registered user, as the bridge produced it.
///
/// May hold passwords and tokens, so its `Debug` shows only the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials(pub BTreeMap<String, String>);

impl Credentials {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl From<FormValues> for Credentials {
    fn from(values: FormValues) -> Self {
        Credentials(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_values() {
        let mut map = BTreeMap::new();
        map.insert("password".to_owned(), "hunter2".to_owned());
        let shown = format!("{:?}", Credentials(map));
        assert!(shown.contains("password"));
        assert!(!shown.contains("hunter2"));
    }
}
