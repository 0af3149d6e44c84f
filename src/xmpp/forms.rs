//! XEP-0004 data forms, as used by registration and ad-hoc commands.

use std::collections::BTreeMap;

use estuary_bridge::{FieldKind, RegistrationField};
use xmpp_parsers::minidom::{Element, ElementBuilder};

use super::errors::Failure;
use super::xml::{element, Attrs, NS_DATA};

/// Longest form a user may submit, all values together, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The start of a data form of type `form` for a person to fill in, with
/// its `FORM_TYPE` (XEP-0068) where it has one; fields are appended to it.
pub fn form(form_type: Option<&str>, title: &str, instructions: &str) -> ElementBuilder {
    let form = element("x", NS_DATA)
        .with("type", "form")
        .append(element("title", NS_DATA).append(title.to_owned()))
        .append(element("instructions", NS_DATA).append(instructions.to_owned()));
    match form_type {
        Some(form_type) => form.append(hidden_field("FORM_TYPE", form_type)),
        None => form,
    }
}

/// A hidden field: what the form carries back on its submission.
pub fn hidden_field(var: &str, text: &str) -> Element {
    element("field", NS_DATA)
        .with("var", var)
        .with("type", "hidden")
        .append(value(text))
        .build()
}

/// A `list-multi` field offering each of `options` under its own name.
pub fn list_multi(var: &str, label: &str, options: impl IntoIterator<Item = String>) -> Element {
    let mut field = element("field", NS_DATA)
        .with("var", var)
        .with("type", "list-multi")
        .with("label", label);
    for option in options {
        field = field.append(
            element("option", NS_DATA)
                .with("label", option.clone())
                .append(value(&option)),
        );
    }
    field.build()
}

/// A data form of type `form` built from a bridge's registration fields.
pub fn registration_form(
    form_type: &str,
    title: &str,
    instructions: &str,
    fields: &[RegistrationField],
    current: &BTreeMap<String, String>,
) -> Element {
    let mut form = form(Some(form_type), title, instructions);
    for field in fields {
        let kind = match field.kind {
            FieldKind::Text => "text-single",
            FieldKind::Secret => "text-private",
            FieldKind::Boolean => "boolean",
            FieldKind::Lines => "text-multi",
        };
        let mut f = element("field", NS_DATA)
            .with("var", field.var)
            .with("type", kind)
            .with("label", field.label);
        if field.required {
            f = f.append(element("required", NS_DATA));
        }
        // Secrets are never sent back, not even to their owner.
        if field.kind != FieldKind::Secret {
            if let Some(v) = current.get(field.var) {
                if field.kind == FieldKind::Lines {
                    for line in v.lines() {
                        f = f.append(value(line));
                    }
                } else {
                    f = f.append(value(v));
                }
            }
        }
        form = form.append(f);
    }
    form.build()
}

fn value(text: &str) -> Element {
    element("value", NS_DATA).append(text.to_owned()).build()
}

/// The values of a submitted form (`type='submit'`), by field name.
pub fn submitted_values(form: &Element) -> Result<BTreeMap<String, String>, Failure> {
    if form.attr("type") != Some("submit") {
        return Err(Failure::bad_request(
            "the data form must be of type 'submit'",
        ));
    }
    let mut values = BTreeMap::new();
    let mut total = 0;
    for field in form.children().filter(|c| c.is("field", NS_DATA)) {
        let Some(var) = field.attr("var") else {
            continue;
        };
        let text: Vec<String> = field
            .children()
            .filter(|c| c.is("value", NS_DATA))
            .map(Element::text)
            .collect();
        let joined = text.join("\n");
        total += var.len() + joined.len();
        if total > MAX_FORM_BYTES {
            return Err(Failure::policy_violation(format!(
                "the form is larger than {MAX_FORM_BYTES} bytes"
            )));
        }
        values.insert(var.to_owned(), joined);
    }
    Ok(values)
}

/// Check submitted values against a bridge's fields: required ones present,
/// none too long, none carrying line breaks or control characters that could
/// end up as commands on a line-based network.
pub fn validate(
    fields: &[RegistrationField],
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Failure> {
    let mut clean = BTreeMap::new();
    for field in fields {
        let v = values.get(field.var).map(|v| v.trim()).unwrap_or("");
        // The lines of a multi-line field, without the empty ones.
        let joined;
        let v = if field.kind == FieldKind::Lines {
            joined = v
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            joined.as_str()
        } else {
            v
        };
        if v.is_empty() {
            if field.required {
                return Err(Failure::not_acceptable(format!(
                    "the field '{}' ({}) is required",
                    field.var, field.label
                )));
            }
            continue;
        }
        if v.len() > field.max_len {
            return Err(Failure::not_acceptable(format!(
                "the field '{}' is longer than {} bytes",
                field.var, field.max_len
            )));
        }
        let line_break = |c: char| c == '\n' && field.kind == FieldKind::Lines;
        if v.chars().any(|c| c.is_control() && !line_break(c)) {
            return Err(Failure::not_acceptable(format!(
                "the field '{}' contains control characters",
                field.var
            )));
        }
        clean.insert(field.var.to_owned(), v.to_owned());
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Vec<RegistrationField> {
        vec![
            RegistrationField::text("nick", "Nick", true),
            RegistrationField::secret("password", "Password", false),
        ]
    }

    #[test]
    fn missing_required_field_is_refused() {
        let err = validate(&fields(), &BTreeMap::new()).unwrap_err();
        assert!(err.text.contains("nick"));
    }

    #[test]
    fn oversized_and_multiline_values_are_refused() {
        let mut v = BTreeMap::new();
        v.insert("nick".to_owned(), "x".repeat(300));
        assert!(validate(&fields(), &v).is_err());
        v.insert("nick".to_owned(), "a\r\nQUIT".to_owned());
        assert!(validate(&fields(), &v).is_err());
        v.insert("nick".to_owned(), " alice ".to_owned());
        assert_eq!(validate(&fields(), &v).unwrap()["nick"], "alice");
    }

    #[test]
    fn a_lines_field_keeps_its_lines_and_nothing_else() {
        let fields = [RegistrationField {
            var: "commands",
            label: "Commands",
            kind: FieldKind::Lines,
            required: false,
            max_len: 100,
        }];
        let mut v = BTreeMap::new();
        v.insert(
            "commands".to_owned(),
            "MODE me +x\n\n  JOIN #a \n".to_owned(),
        );
        assert_eq!(
            validate(&fields, &v).unwrap()["commands"],
            "MODE me +x\nJOIN #a"
        );
        for bad in ["a\rQUIT", "a\0b", "a\u{7}"] {
            v.insert("commands".to_owned(), bad.to_owned());
            assert!(validate(&fields, &v).is_err(), "{bad:?}");
        }
        let form = String::from(&registration_form(
            "t",
            "t",
            "t",
            &fields,
            &BTreeMap::from([("commands".to_owned(), "A\nB".to_owned())]),
        ));
        assert!(form.contains("type='text-multi'"), "{form}");
        assert!(form.contains("<value>A</value><value>B</value>"), "{form}");
    }
}
