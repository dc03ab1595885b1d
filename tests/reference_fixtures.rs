//! The engine against our own committed fixtures: tests/data/student_random_h16.pt
//! (a PyTorch checkpoint with random weights, saved by torch) converted with
//! `mlff convert`, evaluated on the structures of tests/data/reference_fixtures.json
//! (float64 values from tools/reference/student_torch.py, an independent PyTorch
//! implementation with autograd). Covers isolated atoms, pairs exactly at / just
//! inside / just outside rc, CO2, small, triclinic, unwrapped, slab and wire cells.

mod common;

use mlff::{Device, Model, Options, Precision, Request};

fn load_fixtures() -> (Model, Model, serde_json::Value) {
    let data = common::manifest_dir().join("tests/data");
    let dir = tempfile_dir();
    let model_path = dir.join("student_random_h16.safetensors");
    mlff::convert::convert_model(&data.join("student_random_h16.pt"), &model_path, None)
        .expect("convert the committed checkpoint");
    let open = |precision| {
        Model::load(
            &model_path,
            &Options {
                device: Device::Cpu,
                precision,
                ..Options::default()
            },
        )
        .unwrap()
    };
    let fixtures = serde_json::from_str(
        &std::fs::read_to_string(data.join("reference_fixtures.json")).unwrap(),
    )
    .unwrap();
    (open(Precision::F64), open(Precision::F32), fixtures)
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = common::manifest_dir()
        .join("target")
        .join(format!("reference-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn f64_matches_pytorch_reference_on_edge_cases() {
    let (mut m64, mut m32, fixtures) = load_fixtures();
    let structures = fixtures["models"]["student_random_h16"].as_array().unwrap();
    assert!(structures.len() >= 20);
    for s in structures {
        let name = s["name"].as_str().unwrap();
        let frame = common::Frame::from_json(s);
        let r = m64.compute(&frame.system(), &Request::ALL).unwrap();
        let forces = common::matrix(&s["forces"]);
        let virial = common::matrix(&s["virial"]);
        let de = (r.energy - s["energy"].as_f64().unwrap()).abs();
        let df = common::max_abs_diff(&r.forces, &forces);
        let dw = common::max_abs_diff(&r.virial, &virial);
        let atom_e: Vec<f64> = s["atom_energies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let dae = r
            .atom_energies
            .iter()
            .zip(&atom_e)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        eprintln!("{name}: |dE| {de:.1e}, |dF| {df:.1e}, |dW| {dw:.1e}, |dE_i| {dae:.1e}");
        assert!(de <= 1e-9, "{name}: energy differs by {de}");
        assert!(
            df <= 1e-8 && dw <= 1e-8 && dae <= 1e-9,
            "{name}: forces {df}, virial {dw}, atom energies {dae}"
        );
        let list = mlff::neighbors::build(
            &frame.positions,
            frame.cell.as_ref(),
            frame.pbc,
            m64.cutoff(),
        )
        .unwrap();
        assert_eq!(
            list.n_edges() as u64,
            s["edges"].as_u64().unwrap(),
            "{name}: edge count"
        );
        // f32 within 1e-5 relative (norm) of the f64 reference.
        let r32 = m32.compute(&frame.system(), &Request::ALL).unwrap();
        let energy = s["energy"].as_f64().unwrap();
        assert!(
            (r32.energy - energy).abs() <= 1e-5 * energy.abs().max(1e-2),
            "{name}: f32 energy"
        );
        if common::max_abs(&forces) > 0.0 {
            assert!(
                common::relative_error(&r32.forces, &forces) <= 1e-5,
                "{name}: f32 forces"
            );
        }
    }
}
