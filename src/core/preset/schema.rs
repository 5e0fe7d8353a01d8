//! Field specifications: the one description of every preset field, used to validate values,
//! to print `presets show`, to check `--set` and phase overrides, and (later) to generate forms.

use serde_json::Value;

/// The type and allowed range of a field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    Int { min: i64, max: i64 },
    Float { min: f64, max: f64 },
    Bool,
    Choice(&'static [&'static str]),
    Text,
    Path,
}

/// One preset field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    /// Dotted path, e.g. `train.lr_g`.
    pub path: &'static str,
    pub kind: FieldKind,
    /// Unit, empty when dimensionless.
    pub unit: &'static str,
    /// Whether a phase may override it.
    pub phase: bool,
    /// Whether a running session accepts `SetHyperparameter` for it.
    pub live: bool,
    /// One line for tooltips and `presets show`.
    pub doc: &'static str,
}

/// When a change of a field reaches a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakesEffect {
    /// A live edit: from the next step (the Live row, `SetHyperparameter`).
    NextStep,
    /// A phase may set it: at the start of the phase that overrides it.
    NextPhase,
    /// Only a new run (or a branch, when it keeps the model's shape) changes it.
    Restart,
}

impl TakesEffect {
    #[must_use]
    pub fn words(self) -> &'static str {
        match self {
            Self::NextStep => "next step",
            Self::NextPhase => "next phase",
            Self::Restart => "restart",
        }
    }
}

impl FieldSpec {
    /// When a change of this field reaches a running run.
    #[must_use]
    pub fn takes_effect(&self) -> TakesEffect {
        if self.live {
            TakesEffect::NextStep
        } else if self.phase {
            TakesEffect::NextPhase
        } else {
            TakesEffect::Restart
        }
    }
}

impl FieldKind {
    /// The allowed values in words, e.g. `1e-8 ..= 1`.
    #[must_use]
    pub fn allowed(&self) -> String {
        match self {
            Self::Int { min, max } => format!("integer {min} ..= {max}"),
            Self::Float { min, max } => format!("number {min:e} ..= {max:e}"),
            Self::Bool => "true or false".to_string(),
            Self::Choice(choices) => format!("one of {}", choices.join(", ")),
            Self::Text => "text".to_string(),
            Self::Path => "a file or folder path".to_string(),
        }
    }

    /// Checks a value against the kind; `Err` holds what is wrong.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match self {
            Self::Int { min, max } => {
                match value.as_i64().or_else(|| value.as_u64().map(|_| i64::MAX)) {
                    Some(v) if v >= *min && v <= *max => Ok(()),
                    Some(_) => Err("out of range".to_string()),
                    None => Err("not an integer".to_string()),
                }
            }
            Self::Float { min, max } => match value.as_f64() {
                Some(v) if !v.is_finite() => Err("not finite".to_string()),
                Some(v) if v >= *min && v <= *max => Ok(()),
                Some(_) => Err("out of range".to_string()),
                None => Err("not a number".to_string()),
            },
            Self::Bool => value
                .as_bool()
                .map(|_| ())
                .ok_or_else(|| "not true/false".to_string()),
            Self::Choice(choices) => match value.as_str() {
                Some(s) if choices.contains(&s) => Ok(()),
                Some(_) => Err("not an allowed choice".to_string()),
                None => Err("not a choice".to_string()),
            },
            Self::Text | Self::Path => value
                .as_str()
                .map(|_| ())
                .ok_or_else(|| "not text".to_string()),
        }
    }
}

/// The value at a dotted path of a JSON tree.
#[must_use]
pub fn get_path<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |node, key| node.get(key))
}

/// Replaces the value at a dotted path; the path must already exist.
pub fn set_path(tree: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = tree;
    for key in path.split('.') {
        node = node
            .get_mut(key)
            .ok_or_else(|| format!("no field `{key}` in `{path}`"))?;
    }
    *node = value;
    Ok(())
}

/// Renders a JSON value the way a preset would spell it.
#[must_use]
pub fn show_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Parses a command-line value: JSON numbers, booleans and quoted strings, else the bare text.
#[must_use]
pub fn parse_cli_value(text: &str) -> Value {
    serde_json::from_str::<Value>(text.trim())
        .unwrap_or_else(|_| Value::String(text.trim().to_string()))
}

/// Finds the spec of a path, suggesting near names when there is none.
pub fn find_spec<'a>(specs: &'a [FieldSpec], path: &str) -> Result<&'a FieldSpec, String> {
    if let Some(s) = specs.iter().find(|s| s.path == path) {
        return Ok(s);
    }
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let near: Vec<&str> = specs
        .iter()
        .filter(|s| {
            s.path.ends_with(leaf)
                || s.path.contains(leaf)
                || leaf.contains(s.path.rsplit('.').next().unwrap_or(""))
        })
        .map(|s| s.path)
        .take(5)
        .collect();
    if near.is_empty() {
        Err(format!(
            "unknown field `{path}` (see `workbench presets show FAMILY`)"
        ))
    } else {
        Err(format!(
            "unknown field `{path}`; did you mean {}?",
            near.join(", ")
        ))
    }
}

/// A preset, or one section of it, whose fields carry their specs ([`preset_section!`]).
pub trait Fields {
    /// Appends its fields' specs, paths under `prefix` (`""` or `"train."`); a non-empty
    /// `label` starts each doc (one struct used for several sections, WuBu's stacks).
    fn field_specs(prefix: &str, label: &str, out: &mut Vec<FieldSpec>);
}

/// Every spec of a preset type, with `'static` paths and docs (built once per type).
#[must_use]
pub fn specs_of<T: Fields>() -> Vec<FieldSpec> {
    let mut out = Vec::new();
    T::field_specs("", "", &mut out);
    out
}

/// A spec of a generated path: the strings live as long as the program (specs are built
/// once, in a `LazyLock`, per family).
#[doc(hidden)]
#[must_use]
pub fn leaf_spec(
    prefix: &str,
    field: &str,
    label: &str,
    (kind, unit, flags, doc): (FieldKind, &'static str, &[&str], &'static str),
) -> FieldSpec {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    FieldSpec {
        path: leak(format!("{prefix}{field}")),
        kind,
        unit,
        phase: flags.contains(&"phase"),
        live: flags.contains(&"live"),
        doc: if label.is_empty() {
            doc
        } else {
            leak(format!("{label}: {doc}"))
        },
    }
}

/// Declares a preset section once: the serde struct and, from the same lines, its fields'
/// specs (kind and range, unit, whether a phase or a live command may change it, a one-line
/// doc). Each field ends with `=> field(KIND, "unit", [phase live], "doc")`, `=> section`
/// (a nested section, `section("label")` to start its docs with a label), or `=> skip` (no
/// spec: the schema version, the family, the phases).
#[macro_export]
macro_rules! preset_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                pub $field:ident : $ty:ty => $what:ident $( ( $($args:tt)* ) )?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        impl $crate::core::preset::schema::Fields for $name {
            fn field_specs(
                prefix: &str,
                label: &str,
                out: &mut Vec<$crate::core::preset::schema::FieldSpec>,
            ) {
                let _ = (prefix, label, &out);
                $(
                    $crate::preset_field!(out, prefix, label, $field, $ty, $what $( ( $($args)* ) )?);
                )*
            }
        }
    };
}

/// One field's spec (see [`preset_section!`]).
#[doc(hidden)]
#[macro_export]
macro_rules! preset_field {
    ($out:ident, $prefix:ident, $label:ident, $field:ident, $ty:ty, field($kind:expr, $unit:expr, [$($flag:ident)*], $doc:expr)) => {
        $out.push($crate::core::preset::schema::leaf_spec(
            $prefix,
            stringify!($field),
            $label,
            ($kind, $unit, &[$(stringify!($flag)),*], $doc),
        ));
    };
    ($out:ident, $prefix:ident, $label:ident, $field:ident, $ty:ty, section) => {
        <$ty as $crate::core::preset::schema::Fields>::field_specs(
            &format!("{}{}.", $prefix, stringify!($field)),
            "",
            $out,
        );
    };
    ($out:ident, $prefix:ident, $label:ident, $field:ident, $ty:ty, section($section_label:expr)) => {
        <$ty as $crate::core::preset::schema::Fields>::field_specs(
            &format!("{}{}.", $prefix, stringify!($field)),
            $section_label,
            $out,
        );
    };
    ($out:ident, $prefix:ident, $label:ident, $field:ident, $ty:ty, skip) => {};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_and_set() {
        let mut v = serde_json::json!({"a": {"b": 1}});
        assert_eq!(get_path(&v, "a.b"), Some(&serde_json::json!(1)));
        set_path(&mut v, "a.b", serde_json::json!(2.5)).expect("set");
        assert_eq!(get_path(&v, "a.b"), Some(&serde_json::json!(2.5)));
        assert!(set_path(&mut v, "a.c", serde_json::json!(1)).is_err());
    }

    #[test]
    fn kinds_check_ranges() {
        let f = FieldKind::Float { min: 0.0, max: 1.0 };
        assert!(f.check(&serde_json::json!(0.5)).is_ok());
        assert!(f.check(&serde_json::json!(3)).is_err());
        assert!(f.check(&serde_json::json!("x")).is_err());
        let c = FieldKind::Choice(&["small", "large"]);
        assert!(c.check(&serde_json::json!("large")).is_ok());
        assert!(c.check(&serde_json::json!("huge")).is_err());
        assert_eq!(parse_cli_value("1e-4"), serde_json::json!(1e-4));
        assert_eq!(parse_cli_value("large"), serde_json::json!("large"));
    }

    crate::preset_section! {
        #[derive(Debug)]
        pub struct Inner {
            pub width: u32 => field(FieldKind::Int { min: 1, max: 8 }, "px", [phase], "its width"),
        }
    }

    crate::preset_section! {
        #[derive(Debug)]
        pub struct Outer {
            pub version: u32 => skip,
            pub lr: f64 => field(FieldKind::Float { min: 0.0, max: 1.0 }, "", [phase live], "a rate"),
            pub a: Inner => section,
            pub b: Inner => section("B"),
        }
    }

    /// One declaration gives the struct and its specs: paths under sections, flags, docs
    /// (labelled for a section that says so), and nothing for a skipped field.
    #[test]
    fn a_section_declares_its_fields_and_their_specs_once() {
        let specs = specs_of::<Outer>();
        let got: Vec<(&str, bool, bool, &str)> = specs
            .iter()
            .map(|s| (s.path, s.phase, s.live, s.doc))
            .collect();
        assert_eq!(
            got,
            [
                ("lr", true, true, "a rate"),
                ("a.width", true, false, "its width"),
                ("b.width", true, false, "B: its width"),
            ]
        );
        assert_eq!(specs[1].unit, "px");
        let o = Outer {
            version: 1,
            lr: 0.5,
            a: Inner { width: 2 },
            b: Inner { width: 3 },
        };
        assert_eq!(o.version + o.a.width + o.b.width, 6);
        assert!((o.lr - 0.5).abs() < 1e-12);
    }
}
