//! The CPU engine against the public fixtures (float64 energies, forces and virials
//! from an independent PyTorch implementation) for the three released students.
//! Skips, saying why, where ../shared is absent.

mod common;

use mlff::{Device, Model, Options, Precision, Request};

fn check_model(stem: &str, precision: Precision, tol_e: f64, tol_f: f64) {
    let Some(fixtures) = common::public_fixtures() else {
        return;
    };
    let Some(path) = common::shared_model(stem) else {
        return;
    };
    let options = Options {
        device: Device::Cpu,
        precision,
        ..Options::default()
    };
    let mut model = Model::load(&path, &options).unwrap();
    let structures = fixtures["models"][stem]
        .as_array()
        .expect("fixture structures");
    assert!(!structures.is_empty());
    for s in structures {
        let name = s["name"].as_str().unwrap();
        let frame = common::Frame::from_json(s);
        let system = frame.system();
        let results = model.compute(&system, &Request::ALL).unwrap();
        let energy = s["energy"].as_f64().unwrap();
        let forces = common::matrix(&s["forces"]);
        let virial = common::matrix(&s["virial"]);
        let de = (results.energy - energy).abs();
        let df = common::max_abs_diff(&results.forces, &forces);
        let dw = common::max_abs_diff(&results.virial, &virial);
        eprintln!(
            "{stem}/{name} {precision:?}: |dE| = {de:.2e}, max|dF| = {df:.2e}, max|dW| = {dw:.2e}"
        );
        if precision == Precision::F64 {
            assert!(
                de <= tol_e,
                "{stem}/{name}: energy {} vs {energy}",
                results.energy
            );
            assert!(df <= tol_f, "{stem}/{name}: forces differ by {df}");
            assert!(dw <= tol_f, "{stem}/{name}: virial differs by {dw}");
        } else {
            // Relative (norm) errors of the fast path against the f64 fixtures.
            let rel_f = common::relative_error(&results.forces, &forces);
            let rel_w = common::relative_error(&results.virial, &virial);
            eprintln!(
                "    relative: E {:.1e}, F {rel_f:.1e}, W {rel_w:.1e}",
                de / energy.abs()
            );
            assert!(
                de <= tol_e * energy.abs(),
                "{stem}/{name}: energy {} vs {energy}",
                results.energy
            );
            assert!(
                rel_f <= tol_f,
                "{stem}/{name}: relative force error {rel_f}"
            );
            assert!(
                rel_w <= tol_f,
                "{stem}/{name}: relative virial error {rel_w}"
            );
        }
        let edges = s["edges"].as_u64().unwrap() as usize;
        let list = mlff::neighbors::build(
            system.positions,
            system.cell.as_ref(),
            system.pbc,
            model.cutoff(),
        )
        .unwrap();
        assert_eq!(list.n_edges(), edges, "{stem}/{name}: edge count");
    }
}

#[test]
fn student_427k_f64_matches_fixtures() {
    check_model("student_427k", Precision::F64, 1e-9, 1e-8);
}

#[test]
fn student_tiny_77k_f64_matches_fixtures() {
    check_model("student_tiny_77k", Precision::F64, 1e-9, 1e-8);
}

#[test]
fn student_ultra_tiny_21k_f64_matches_fixtures() {
    check_model("student_ultra_tiny_21k", Precision::F64, 1e-9, 1e-8);
}

#[test]
fn f32_within_1e5_of_fixtures() {
    for stem in ["student_427k", "student_tiny_77k", "student_ultra_tiny_21k"] {
        check_model(stem, Precision::F32, 1e-5, 1e-5);
    }
}
