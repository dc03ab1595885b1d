//! PaiNN (architecture `painn`) against schnetpack 2.2.0 itself: the committed
//! random-weight models tests/data/painn_*.pt (whole pickled NeuralNetworkPotential
//! objects, and one {"hyperparameters", "state_dict"} file) are converted with
//! `mlff convert`, and evaluated on the structures of tests/data/painn_fixtures.json
//! (float64 energies, autograd forces and stresses from
//! tools/reference/make_painn_fixtures.py). Also: f32 against f64, finite differences
//! of forces and virial, rotation invariance, smoothness at the cutoff.

mod common;

use std::path::PathBuf;

use mlff::{Device, Model, Options, Precision, Request};

pub const PAINN_MODELS: [&str; 4] = ["painn_b1", "painn_b3_shared_filters", "painn_b3", "painn_b5_shared_interactions"];

fn fixtures() -> serde_json::Value {
    let path = common::manifest_dir().join("tests/data/painn_fixtures.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The committed checkpoint converted once per test process (cached under target/).
fn converted(stem: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("MLFF_TEST_MODEL_DIR") {
        let path = PathBuf::from(dir).join(format!("{stem}.safetensors"));
        if path.is_file() {
            return path;
        }
    }
    let dir = common::manifest_dir().join("target").join(format!("painn-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{stem}.safetensors"));
    if !out.is_file() {
        let tmp = dir.join(format!("{stem}.{:?}.tmp.safetensors", std::thread::current().id()));
        let input = common::manifest_dir().join("tests/data").join(format!("{stem}.pt"));
        mlff::convert::convert_model(&input, &tmp, None).expect("convert the committed schnetpack model");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

fn open(stem: &str, precision: Precision) -> Model {
    Model::load(converted(stem), &Options { device: Device::Cpu, precision, ..Options::default() }).unwrap()
}

#[test]
fn f64_matches_schnetpack() {
    let data = fixtures();
    let mut checked = 0;
    for stem in PAINN_MODELS {
        let mut model = open(stem, Precision::F64);
        assert_eq!(model.architecture(), "painn");
        assert!(model.warnings().is_empty(), "{stem}: {:?}", model.warnings());
        let entry = &data["models"][stem];
        assert_eq!(model.num_layers() as u64, entry["config"]["n_interactions"].as_u64().unwrap());
        assert_eq!(model.cutoff(), entry["cutoff"].as_f64().unwrap());
        let structures = entry["structures"].as_array().unwrap();
        assert!(structures.len() >= 13, "{stem}");
        for s in structures {
            let name = s["name"].as_str().unwrap();
            let frame = common::Frame::from_json(s);
            let r = model.compute(&frame.system(), &Request::ALL).unwrap();
            let energy = s["energy"].as_f64().unwrap();
            let forces = common::matrix(&s["forces"]);
            let virial = common::matrix(&s["virial"]);
            let de = (r.energy - energy).abs();
            let df = common::max_abs_diff(&r.forces, &forces);
            let dw = common::max_abs_diff(&r.virial, &virial);
            eprintln!("{stem} {name}: E {energy:+.6} |dE| {de:.1e} |dF| {df:.1e} |dW| {dw:.1e}");
            assert!(de <= 1e-9, "{stem} {name}: energy differs by {de}");
            assert!(df <= 1e-8, "{stem} {name}: forces differ by {df}");
            assert!(dw <= 1e-8, "{stem} {name}: virial differs by {dw}");
            let sum: f64 = r.atom_energies.iter().sum();
            assert!((sum - r.energy).abs() <= 1e-9 * r.energy.abs().max(1.0));
            let list = mlff::neighbors::build(&frame.positions, frame.cell.as_ref(), frame.pbc, model.cutoff()).unwrap();
            assert_eq!(list.n_edges() as u64, s["edges"].as_u64().unwrap(), "{stem} {name}: edge count");
            checked += 1;
        }
    }
    assert!(checked >= 50);
}

/// A model and one structure given from outside (e.g. a real distilled PaiNN and
/// schnetpack's numbers for it): `MLFF_PAINN_MODEL=model.safetensors
/// MLFF_PAINN_FIXTURE=frame.json` (keys numbers, positions, cell, pbc, energy, forces,
/// virial). Skips when unset.
#[test]
fn external_model_matches_its_fixture() {
    let (Ok(model_path), Ok(fixture)) = (std::env::var("MLFF_PAINN_MODEL"), std::env::var("MLFF_PAINN_FIXTURE")) else {
        eprintln!("SKIP: MLFF_PAINN_MODEL / MLFF_PAINN_FIXTURE not set");
        return;
    };
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let frame = common::Frame::from_json(&s);
    for precision in [Precision::F64, Precision::F32] {
        let mut model = Model::load(&model_path, &Options { device: Device::Cpu, precision, ..Options::default() }).unwrap();
        let r = model.compute(&frame.system(), &Request::ALL).unwrap();
        let energy = s["energy"].as_f64().unwrap();
        let de = (r.energy - energy).abs();
        let df = common::max_abs_diff(&r.forces, &common::matrix(&s["forces"]));
        let dw = common::max_abs_diff(&r.virial, &common::matrix(&s["virial"]));
        eprintln!("{precision:?}: E {energy} |dE| {de:.1e} |dF| {df:.1e} |dW| {dw:.1e}");
        if precision == Precision::F64 {
            assert!(de <= 1e-9 && df <= 1e-8 && dw <= 1e-8);
        }
    }
}
