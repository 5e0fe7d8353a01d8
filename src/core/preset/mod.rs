//! Presets: typed, versioned, validated run configurations in RON.
//!
//! A preset file starts with `schema_version` and `family`; the rest is the family's typed
//! preset (unknown fields are rejected). Older schema versions are migrated on load and the
//! migration says what it changed. [`validate`] reports every problem at once, each with its
//! field path, the bad value and what is allowed; only a [`ValidatedPreset`] can start a run.
//!
//! Overrides (a phase's, or `--set a.b=v` on the command line) work on a lossless JSON tree of
//! the typed preset and are checked against the same field specs.

pub mod data;
pub mod family;
pub mod schedule;
pub mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use schema::FieldKind as K;

pub use family::{Common, Declared, FamilyPreset, LrFields, RunHeader};
pub use schema::{FieldKind, FieldSpec};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 3;

/// The presets shipped in `presets/`, embedded in the binary, so the library lists them
/// wherever the app starts.
pub mod shipped {
    // `SHIPPED: &[(file stem, RON text)]`, sorted by name, written by `build.rs`.
    include!(concat!(env!("OUT_DIR"), "/shipped_presets.rs"));

    /// A shipped preset's text by its name (the file stem, e.g. `wgan_gp_small`).
    #[must_use]
    pub fn get(name: &str) -> Option<&'static str> {
        SHIPPED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }
}

/// The model families, one line each: the `Family` variant, the module of its preset here
/// (and of its trainer in `engine::families`), and its preset type. `Family`, `AnyPreset` and
/// every dispatch on them, here and in the engine, are generated from this list: a new family
/// is one line here and one folder (or file) in each layer.
#[macro_export]
macro_rules! for_each_family {
    ($then:ident) => {
        $then! {
            WganGp wgan_gp WganGpPreset,
            WubuGaad wubu_gaad WubuGaadPreset,
            LatentAction latent_action LatentActionPreset,
            VqGan vq_gan VqGanPreset,
        }
    };
}

/// `Family`, `AnyPreset` and their dispatch, from [`for_each_family!`].
macro_rules! declare_families {
    ($($variant:ident $module:ident $preset:ident),* $(,)?) => {
        $(pub mod $module;)*
        $(pub use $module::$preset;)*

        /// Model families.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Family {
            $($variant),*
        }

        impl Family {
            pub const ALL: [Family; [$(stringify!($variant)),*].len()] = [$(Family::$variant),*];

            #[must_use]
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($module)),*
                }
            }

            /// Every field of the family's preset.
            #[must_use]
            pub fn specs(self) -> &'static [FieldSpec] {
                match self {
                    $(Self::$variant => <$preset as Declared>::specs()),*
                }
            }

            /// What the family's runs report beyond scalars and samples (the app shows a view
            /// for each).
            #[must_use]
            pub fn reports(self) -> Reports {
                match self {
                    $(Self::$variant => <$preset as Declared>::REPORTS),*
                }
            }

            /// The family's default preset.
            #[must_use]
            pub fn default_preset(self) -> AnyPreset {
                match self {
                    $(Self::$variant => AnyPreset::$variant(<$preset>::default())),*
                }
            }

            /// Parses a preset of this family of any known schema version, migrating older ones.
            fn parse_versioned(
                self,
                text: &str,
                version: u32,
                file: &str,
            ) -> Result<(AnyPreset, Vec<String>), PresetError> {
                match self {
                    $(Self::$variant => <$preset as Declared>::parse_versioned(text, version, file)
                        .map(|(p, notes)| (AnyPreset::$variant(p), notes))),*
                }
            }
        }

        /// A preset of any family.
        // Presets are cloned when a run starts or a phase begins, never in a loop: boxing the
        // larger variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyPreset {
            $($variant($preset)),*
        }

        impl AnyPreset {
            #[must_use]
            pub fn family(&self) -> Family {
                match self {
                    $(Self::$variant(_) => Family::$variant),*
                }
            }

            /// The family's front door: everything shared code asks of a preset.
            #[must_use]
            pub fn front(&self) -> &dyn FamilyPreset {
                match self {
                    $(Self::$variant(p) => p),*
                }
            }

            fn front_mut(&mut self) -> &mut dyn FamilyPreset {
                match self {
                    $(Self::$variant(p) => p),*
                }
            }

            /// The preset as a JSON tree (lossless).
            #[must_use]
            pub fn to_tree(&self) -> Value {
                let tree = match self {
                    $(Self::$variant(p) => serde_json::to_value(p)),*
                };
                tree.unwrap_or(Value::Null)
            }

            /// Rebuilds a preset of `family` from a tree; errors name the field.
            pub fn from_tree(family: Family, tree: Value) -> Result<Self, Problem> {
                let problem = |e: serde_path_to_error::Error<serde_json::Error>| Problem {
                    path: e.path().to_string(),
                    value: String::new(),
                    allowed: e.into_inner().to_string(),
                };
                match family {
                    $(Family::$variant => serde_path_to_error::deserialize(tree)
                        .map(Self::$variant)
                        .map_err(problem)),*
                }
            }

            /// Pretty RON, as written to `preset.ron` and exported.
            pub fn to_ron(&self) -> String {
                let cfg = ron::ser::PrettyConfig::new().depth_limit(4);
                let text = match self {
                    $(Self::$variant(p) => ron::ser::to_string_pretty(p, cfg)),*
                };
                text.unwrap_or_else(|e| format!("// could not serialise preset: {e}"))
            }
        }
    };
}

for_each_family!(declare_families);

impl Family {
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown family `{text}`; known: {}", names.join(", "))
            })
    }
}

/// What a family's runs report beyond scalars and samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reports {
    /// GAAD regions over its reconstructions.
    pub gaad_regions: bool,
    /// Q-controller decisions, whatever the preset (a family's own controllers; any family's
    /// learning-rate control is seen from the decisions a run logs).
    pub controllers: bool,
    /// Discrete actions from a codebook, which the action explorer can steer.
    pub discrete_actions: bool,
    /// Validation volumes (or clips) with their reconstructions.
    pub volumes: bool,
}

impl Reports {
    /// Scalars and samples only.
    pub const NONE: Reports = Reports {
        gaad_regions: false,
        controllers: false,
        discrete_actions: false,
        volumes: false,
    };
}

/// How long a phase runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseLength {
    Steps(u64),
    Epochs(u64),
    Minutes(f64),
}

impl fmt::Display for PhaseLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Steps(n) => write!(f, "{n} steps"),
            Self::Epochs(n) => write!(f, "{n} epochs"),
            Self::Minutes(m) => write!(f, "{m} minutes"),
        }
    }
}

/// A value in a phase's overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OverrideValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl OverrideValue {
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Self::Text(s) => Value::String(s.clone()),
        }
    }
}

impl<'de> Deserialize<'de> for OverrideValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = OverrideValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a boolean or a string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OverrideValue, E> {
                i64::try_from(v)
                    .map(OverrideValue::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            // RON hands over short decimals as f32; widen through the shortest decimal so that
            // `5e-5` stays 5e-5 and does not become 5.0000000807e-5.
            fn visit_f32<E>(self, v: f32) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Float(
                    v.to_string().parse().unwrap_or(f64::from(v)),
                ))
            }
            fn visit_f64<E>(self, v: f64) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<OverrideValue, E> {
                Ok(OverrideValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One phase of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    pub name: String,
    pub length: PhaseLength,
    /// Dotted field path to value, e.g. `"train.lr_g": 5e-5`.
    #[serde(default)]
    pub overrides: BTreeMap<String, OverrideValue>,
    /// Start from the best checkpoint of the previous phase (its weights and optimizer state).
    #[serde(default)]
    pub start_from_best: bool,
}

impl Phase {
    /// The one phase of a single-phase preset: `main`, of `length`, no overrides.
    #[must_use]
    pub fn single(length: PhaseLength) -> Self {
        Self {
            name: "main".into(),
            length,
            overrides: BTreeMap::new(),
            start_from_best: false,
        }
    }
}

crate::preset_section! {
    /// Q-learning control of the learning rates (spec section 5), for any family: every
    /// `every_steps` steps a controller scales each learning rate by one of the seed's factors
    /// (0.7 .. 1.3 of the phase's value), rewarded by how `metric` moved.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct LrControlConfig {
        pub enabled: bool => field(K::Bool, "", [phase], "Let a Q-learning controller scale the learning rates (0.7..1.3 of the phase's values)"),
        pub every_steps: u64 => field(K::Int { min: 1, max: 1000000 }, "steps", [phase], "Steps between controller decisions"),
        /// A logged scalar, e.g. `wasserstein` or `g_loss`.
        pub metric: String => field(K::Choice(&["g_loss", "d_loss", "wasserstein", "gp"]), "", [phase], "The scalar whose movement rewards the controller"),
        pub better: crate::core::control::Better => field(K::Choice(&["lower", "higher"]), "", [phase], "Whether a lower or a higher metric is better"),
        /// Decisions at the start that keep the phase's learning rates.
        pub probation_steps: u64 => field(K::Int { min: 0, max: 1000000 }, "decisions", [phase], "Decisions at the start that keep the phase's learning rates"),
    }
}

impl Default for LrControlConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            every_steps: 50,
            // The Wasserstein estimate, lower being better: `g_loss` is measured against a
            // critic that moves, so its movement says little about the generator.
            metric: "wasserstein".into(),
            better: crate::core::control::Better::Lower,
            probation_steps: 0,
        }
    }
}

crate::preset_section! {
    /// Logging and validation cadences.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LoggingConfig {
        pub log_every_steps: u64 => field(K::Int { min: 1, max: 1000000 }, "steps", [phase], "Scalar logging cadence"),
        pub sample_every_steps: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Fixed-noise samples (and a reconstruction, for reconstruction families) cadence; 0 = only at the end"),
        /// 0 turns validation (and "best" checkpoints) off.
        pub validate_every_steps: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Validation cadence (the family's validation metrics); 0 = off"),
        /// How often the process and its devices are sampled (`engine::sysmon`); 0 = never.
        #[serde(default = "system_every_ms")]
        pub system_every_ms: u64 => field(K::Int { min: 0, max: 60000 }, "ms", [], "System samples (process CPU and memory, and the GPU's use, memory, power and temperature) interval; at least 100, 0 = off"),
    }
}

/// A system sample a second.
fn system_every_ms() -> u64 {
    1000
}

impl LoggingConfig {
    /// The system samples' interval, `None` when off (at least 100 ms).
    #[must_use]
    pub fn system_every(&self) -> Option<std::time::Duration> {
        (self.system_every_ms > 0)
            .then(|| std::time::Duration::from_millis(self.system_every_ms.max(100)))
    }
}

crate::preset_section! {
    /// Checkpoint cadence and retention.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CheckpointConfig {
        /// 0 writes checkpoints only at phase ends, on request and at the end of the run.
        pub every_steps: u64 => field(K::Int { min: 0, max: 100000000 }, "steps", [phase], "Checkpoint cadence; 0 = at phase ends and on request only"),
        /// How many of the latest checkpoints to keep (the best of each phase is always kept).
        pub keep_last: u64 => field(K::Int { min: 1, max: 10000 }, "checkpoints", [], "Latest checkpoints kept (each phase's best is always kept)"),
    }
}

/// One problem found by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.path, self.value, self.allowed)
    }
}

/// Why a preset could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

/// Learning-rate control as a family without it reports it.
static LR_CONTROL_OFF: LrControlConfig = LrControlConfig {
    enabled: false,
    every_steps: 50,
    metric: String::new(),
    better: crate::core::control::Better::Lower,
    probation_steps: 0,
};

impl AnyPreset {
    /// The shared run header.
    #[must_use]
    pub fn common(&self) -> Common<'_> {
        self.front().common()
    }

    #[must_use]
    pub fn name(&self) -> &str {
        self.common().name
    }

    #[must_use]
    pub fn seed(&self) -> u64 {
        self.common().seed
    }

    #[must_use]
    pub fn device(&self) -> &str {
        self.common().device
    }

    /// The learning-rate control; off for a family without it.
    #[must_use]
    pub fn lr_control(&self) -> &LrControlConfig {
        self.front().lr_control().unwrap_or(&LR_CONTROL_OFF)
    }

    #[must_use]
    pub fn phases(&self) -> &[Phase] {
        self.common().phases
    }

    /// Libtorch CPU threads; 0 keeps libtorch's default.
    #[must_use]
    pub fn threads(&self) -> u32 {
        self.common().threads
    }

    #[must_use]
    pub fn health(&self) -> &crate::core::health::HealthConfig {
        self.common().health
    }

    #[must_use]
    pub fn logging(&self) -> &LoggingConfig {
        self.common().logging
    }

    #[must_use]
    pub fn checkpoints(&self) -> &CheckpointConfig {
        self.common().checkpoints
    }

    /// The family's cross-field rules, and the header every family shares.
    pub fn check(&self, problems: &mut Vec<Problem>) {
        self.front().check(problems);
        let common = self.common();
        if common.family != self.family() {
            problems.push(Problem {
                path: "family".into(),
                value: common.family.name().into(),
                allowed: self.family().name().into(),
            });
        }
        if common.schema_version != SCHEMA_VERSION {
            problems.push(Problem {
                path: "schema_version".into(),
                value: common.schema_version.to_string(),
                allowed: "the current schema version".into(),
            });
        }
    }

    /// The phases, to edit.
    pub fn phases_mut(&mut self) -> &mut Vec<Phase> {
        self.front_mut().phases_mut()
    }

    /// The preset at its tiny test size: on the CPU with one thread, logging, sampling,
    /// validating and checkpointing every step or two, the family's tiny shapes and synthetic
    /// data ([`FamilyPreset::tiny_overrides`]), and each phase two steps long (its own logging
    /// overrides dropped). Every shipped preset must train like this in seconds.
    pub fn tiny(&self) -> Result<AnyPreset, Vec<Problem>> {
        let mut sets: Vec<(&str, Value)> = vec![
            ("device", "cpu".into()),
            ("threads", 1.into()),
            ("logging.log_every_steps", 1.into()),
            ("logging.sample_every_steps", 2.into()),
            ("logging.validate_every_steps", 2.into()),
            ("checkpoints.every_steps", 2.into()),
        ];
        sets.extend(self.front().tiny_overrides());
        let mut p = self.with_overrides(sets)?;
        for phase in p.phases_mut() {
            phase.length = PhaseLength::Steps(2);
            phase.overrides.retain(|k, _| !k.starts_with("logging."));
        }
        Ok(p)
    }

    /// The preset with phase `index`'s overrides applied (unchanged when there is no such
    /// phase, or when an override does not apply: validation reports those).
    #[must_use]
    pub fn for_phase(&self, index: usize) -> AnyPreset {
        let Some(phase) = self.phases().get(index) else {
            return self.clone();
        };
        self.with_overrides(
            phase
                .overrides
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_json())),
        )
        .unwrap_or_else(|_| self.clone())
    }

    /// The live fields (those a running run may change, by their specs' `live` flag) with
    /// their values.
    #[must_use]
    pub fn live_values(&self) -> Vec<(&'static str, f64)> {
        let tree = self.to_tree();
        self.family()
            .specs()
            .iter()
            .filter(|s| s.live)
            .filter_map(|s| Some((s.path, schema::get_path(&tree, s.path)?.as_f64()?)))
            .collect()
    }

    /// The preset with the live field `name` (its path, or its last segment where that is
    /// unique: `lr_g` for `train.lr_g`) set to `value`, checked as any override is (the field's
    /// kind and range) and with the family's cross-field rules; also the field's path and its
    /// value before. Refused for a field that is not live.
    pub fn with_live(
        &self,
        name: &str,
        value: f64,
    ) -> Result<(AnyPreset, &'static str, f64), String> {
        let specs = self.family().specs();
        let live: Vec<&FieldSpec> = specs.iter().filter(|s| s.live).collect();
        let names = || live.iter().map(|s| s.path).collect::<Vec<_>>().join(", ");
        let matching: Vec<&&FieldSpec> = live
            .iter()
            .filter(|s| s.path == name || s.path.rsplit('.').next() == Some(name))
            .collect();
        let [spec] = matching.as_slice() else {
            return Err(format!(
                "`{name}` is not a live hyperparameter; live: {}",
                names()
            ));
        };
        let path = spec.path;
        let old = schema::get_path(&self.to_tree(), path)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN);
        let number = serde_json::Number::from_f64(value)
            .ok_or_else(|| format!("{path} = {value}: not a finite number"))?;
        // A whole number for an integer field is given as one.
        let json = match spec.kind {
            FieldKind::Int { .. } if value.fract() == 0.0 && value.abs() < 9.0e15 => {
                Value::from(value as i64)
            }
            _ => Value::Number(number),
        };
        let changed = self.with_overrides([(path, json)]).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let mut problems = Vec::new();
        changed.check(&mut problems);
        if let Some(p) = problems.first() {
            return Err(p.to_string());
        }
        Ok((changed, path, old))
    }

    /// Applies dotted `path = value` overrides, each checked against the field specs.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Result<Self, Vec<Problem>> {
        let specs = self.family().specs();
        let mut tree = self.to_tree();
        let mut problems = Vec::new();
        for (path, value) in overrides {
            match schema::find_spec(specs, path) {
                Err(msg) => problems.push(Problem {
                    path: path.to_string(),
                    value: schema::show_value(&value),
                    allowed: msg,
                }),
                Ok(spec) => {
                    // Integers given for float fields are fine; the reverse is not.
                    let value = match (spec.kind, &value) {
                        (FieldKind::Float { .. }, Value::Number(n)) => n
                            .as_f64()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(value, Value::Number),
                        _ => value,
                    };
                    if let Err(why) = spec.kind.check(&value) {
                        problems.push(Problem {
                            path: path.to_string(),
                            value: schema::show_value(&value),
                            allowed: format!("{why}; allowed: {}", spec.kind.allowed()),
                        });
                    } else if let Err(msg) = schema::set_path(&mut tree, path, value) {
                        problems.push(Problem {
                            path: path.to_string(),
                            value: String::new(),
                            allowed: msg,
                        });
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Self::from_tree(self.family(), tree).map_err(|p| vec![p])
    }
}

/// A preset that passed [`validate`]; the only kind that can start a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPreset {
    preset: AnyPreset,
}

impl ValidatedPreset {
    #[must_use]
    pub fn preset(&self) -> &AnyPreset {
        &self.preset
    }

    /// The preset with phase `index`'s overrides applied (validated already).
    #[must_use]
    pub fn for_phase(&self, index: usize) -> AnyPreset {
        self.preset.for_phase(index)
    }
}

/// Checks every field and every phase; returns all problems at once.
pub fn validate(preset: AnyPreset) -> Result<ValidatedPreset, Vec<Problem>> {
    let mut problems = Vec::new();
    let specs = preset.family().specs();
    let tree = preset.to_tree();
    check_tree(specs, &tree, "", &mut problems);
    preset.check(&mut problems);
    if let Err(msg) = crate::core::preset::parse_device(preset.device()) {
        problems.push(Problem {
            path: "device".into(),
            value: preset.device().to_string(),
            allowed: msg,
        });
    }
    if let Some(why) = crate::core::rundir::name_problem(preset.name()) {
        problems.push(Problem {
            path: "name".into(),
            value: format!("{:?}", preset.name()),
            allowed: why,
        });
    }
    check_phases(&preset, &mut problems);
    if problems.is_empty() {
        Ok(ValidatedPreset { preset })
    } else {
        Err(problems)
    }
}

fn check_tree(specs: &[FieldSpec], tree: &Value, prefix: &str, problems: &mut Vec<Problem>) {
    for spec in specs {
        let Some(value) = schema::get_path(tree, spec.path) else {
            continue;
        };
        if let Err(why) = spec.kind.check(value) {
            problems.push(Problem {
                path: format!("{prefix}{}", spec.path),
                value: schema::show_value(value),
                allowed: format!("{why}; allowed: {}", spec.kind.allowed()),
            });
        }
    }
}

fn check_phases(preset: &AnyPreset, problems: &mut Vec<Problem>) {
    let phases = preset.phases();
    if phases.is_empty() {
        problems.push(Problem {
            path: "phases".into(),
            value: "[]".into(),
            allowed: "at least one phase".into(),
        });
    }
    let specs = preset.family().specs();
    for (i, phase) in phases.iter().enumerate() {
        let at = format!("phases[{i}]");
        if phase.name.trim().is_empty() {
            problems.push(Problem {
                path: format!("{at}.name"),
                value: format!("{:?}", phase.name),
                allowed: "a non-empty name".into(),
            });
        }
        if phases[..i].iter().any(|p| p.name == phase.name) {
            problems.push(Problem {
                path: format!("{at}.name"),
                value: phase.name.clone(),
                allowed: "a name no earlier phase uses".into(),
            });
        }
        let bad_length = match phase.length {
            PhaseLength::Steps(n) | PhaseLength::Epochs(n) => n == 0,
            PhaseLength::Minutes(m) => !(m.is_finite() && m > 0.0),
        };
        if bad_length {
            problems.push(Problem {
                path: format!("{at}.length"),
                value: phase.length.to_string(),
                allowed: "a positive length".into(),
            });
        }
        if i == 0 && phase.start_from_best {
            problems.push(Problem {
                path: format!("{at}.start_from_best"),
                value: "true".into(),
                allowed: "false: the first phase has no previous phase".into(),
            });
        }
        let mut pairs = Vec::new();
        for (path, value) in &phase.overrides {
            match schema::find_spec(specs, path) {
                Ok(spec) if spec.phase => pairs.push((path.as_str(), value.to_json())),
                Ok(_) => problems.push(Problem {
                    path: format!("{at}.overrides.\"{path}\""),
                    value: schema::show_value(&value.to_json()),
                    allowed: "a field a phase may change (model shape, data source and seed are fixed for a run)".into(),
                }),
                Err(msg) => problems.push(Problem {
                    path: format!("{at}.overrides.\"{path}\""),
                    value: schema::show_value(&value.to_json()),
                    allowed: msg,
                }),
            }
        }
        match preset.with_overrides(pairs) {
            Err(list) => problems.extend(list.into_iter().map(|p| Problem {
                path: format!("{at}.overrides.\"{}\"", p.path),
                ..p
            })),
            Ok(merged) => {
                // Cross-field rules on the merged preset (e.g. batch size vs dataset size).
                let mut inner = Vec::new();
                merged.check(&mut inner);
                problems.extend(inner.into_iter().map(|p| Problem {
                    path: format!("{at} -> {}", p.path),
                    ..p
                }));
            }
        }
    }
}

/// Where training runs: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

/// Parses a device string.
pub fn parse_device(text: &str) -> Result<DeviceRequest, String> {
    match text.trim() {
        "auto" => Ok(DeviceRequest::Auto),
        "cpu" => Ok(DeviceRequest::Cpu),
        "cuda" => Ok(DeviceRequest::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceRequest::Cuda)
            .ok_or_else(|| "one of auto, cpu, cuda, cuda:N".to_string()),
    }
}

#[derive(Deserialize)]
struct Header {
    schema_version: u32,
    family: Family,
}

/// Parses preset text; `file` names it in errors.
pub fn parse_str(text: &str, file: &str) -> Result<(AnyPreset, Vec<String>), PresetError> {
    let header: Header = ron::from_str(text).map_err(|e| ron_error(file, &e))?;
    if header.schema_version > SCHEMA_VERSION {
        return Err(PresetError::Invalid {
            file: file.to_string(),
            problems: vec![Problem {
                path: "schema_version".into(),
                value: header.schema_version.to_string(),
                allowed: format!(
                    "at most {SCHEMA_VERSION}: this preset was written by a newer workbench"
                ),
            }],
        });
    }
    header
        .family
        .parse_versioned(text, header.schema_version, file)
}

/// Typed parse of RON text with the failing field's path in the message.
pub(crate) fn parse_typed<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, PresetError> {
    let mut de = ron::Deserializer::from_str(text).map_err(|e| ron_error(file, &e))?;
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match result {
        Ok(value) => {
            de.end().map_err(|e| ron_error(file, &de.span_error(e)))?;
            Ok(value)
        }
        Err(e) => {
            let path = e.path().to_string();
            let spanned = de.span_error(e.into_inner());
            let mut err = ron_error(file, &spanned);
            if let PresetError::Parse { message, .. } = &mut err {
                if !(path.is_empty() || path == ".") {
                    *message = format!("at field `{path}`: {message}");
                }
            }
            Err(err)
        }
    }
}

fn ron_error(file: &str, e: &ron::error::SpannedError) -> PresetError {
    PresetError::Parse {
        file: file.to_string(),
        line: e.span.start.line,
        column: e.span.start.col,
        message: e.code.to_string(),
    }
}

/// Loads and validates a preset file. Migration notes are returned alongside.
pub fn load_file(path: &Path) -> Result<(ValidatedPreset, Vec<String>), PresetError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PresetError::Io {
        file: file.clone(),
        source,
    })?;
    let (preset, notes) = parse_str(&text, &file)?;
    let validated = validate(preset).map_err(|problems| PresetError::Invalid {
        file: file.clone(),
        problems,
    })?;
    Ok((validated, notes))
}

/// Every `.ron` file under a folder, sorted.
pub fn preset_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    files.sort();
    Ok(files)
}
