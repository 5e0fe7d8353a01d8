//! Sweeps planned against a shipped preset: every run's preset is the base with its values,
//! named after the sweep, and a value the schema rejects names the run and the field.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use workbench::core::preset::{self, AnyPreset};
use workbench::core::sweep::Sweep;

fn base() -> AnyPreset {
    let text = preset::shipped::get("wgan_gp_small").expect("shipped");
    preset::parse_str(text, "wgan_gp_small").expect("parses").0
}

#[test]
fn a_sweep_plans_validated_presets_with_its_values() {
    let s = Sweep::parse(
        r#"(name: "lr", base: "wgan_gp_small",
            grid: { "train.lr_g": [1e-4, 3e-4] },
            random: Some((count: 3, seed: 1, fields: { "train.n_critic": int(2, 4) })))"#,
        "lr.ron",
    )
    .expect("parses");
    let runs = s.plan(&base()).expect("plans");
    assert_eq!(runs.len(), 6);
    for (i, r) in runs.iter().enumerate() {
        let AnyPreset::WganGp(p) = &r.preset else {
            panic!("the base's family")
        };
        assert_eq!(p.name, format!("lr-{i:03}"));
        assert_eq!(p.train.lr_g, if i < 3 { 1e-4 } else { 3e-4 });
        assert_eq!(
            Some(i64::from(p.train.n_critic)),
            r.values[1].1.as_i64(),
            "{i}"
        );
        assert!((2..=4).contains(&p.train.n_critic));
    }
}

#[test]
fn a_rejected_value_names_the_run_and_the_field() {
    let s = Sweep::parse(
        r#"(name: "x", base: "wgan_gp_small", grid: { "train.batch_size": [16, 0] })"#,
        "x.ron",
    )
    .expect("parses");
    let e = s.plan(&base()).unwrap_err().to_string();
    assert!(
        e.starts_with("run 1 (train.batch_size=0): train.batch_size = 0"),
        "{e}"
    );
    let s = Sweep::parse(
        r#"(name: "x", base: "wgan_gp_small", grid: { "train.no_such": [1] })"#,
        "x.ron",
    )
    .expect("parses");
    let e = s.plan(&base()).unwrap_err().to_string();
    assert!(e.contains("train.no_such"), "{e}");
}
