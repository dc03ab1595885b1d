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

pub const PAINN_MODELS: [&str; 4] = [
    "painn_b1",
    "painn_b3_shared_filters",
    "painn_b3",
    "painn_b5_shared_interactions",
];

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
    let dir = common::manifest_dir()
        .join("target")
        .join(format!("painn-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{stem}.safetensors"));
    if !out.is_file() {
        let tmp = dir.join(format!(
            "{stem}.{:?}.tmp.safetensors",
            std::thread::current().id()
        ));
        let input = common::manifest_dir()
            .join("tests/data")
            .join(format!("{stem}.pt"));
        mlff::convert::convert_model(&input, &tmp, None)
            .expect("convert the committed schnetpack model");
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

fn open(stem: &str, precision: Precision) -> Model {
    Model::load(
        converted(stem),
        &Options {
            device: Device::Cpu,
            precision,
            ..Options::default()
        },
    )
    .unwrap()
}

#[test]
fn f64_matches_schnetpack() {
    let data = fixtures();
    let mut checked = 0;
    for stem in PAINN_MODELS {
        let mut model = open(stem, Precision::F64);
        assert_eq!(model.architecture(), "painn");
        assert!(
            model.warnings().is_empty(),
            "{stem}: {:?}",
            model.warnings()
        );
        let entry = &data["models"][stem];
        assert_eq!(
            model.num_layers() as u64,
            entry["config"]["n_interactions"].as_u64().unwrap()
        );
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
            let list = mlff::neighbors::build(
                &frame.positions,
                frame.cell.as_ref(),
                frame.pbc,
                model.cutoff(),
            )
            .unwrap();
            assert_eq!(
                list.n_edges() as u64,
                s["edges"].as_u64().unwrap(),
                "{stem} {name}: edge count"
            );
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
    let (Ok(model_path), Ok(fixture)) = (
        std::env::var("MLFF_PAINN_MODEL"),
        std::env::var("MLFF_PAINN_FIXTURE"),
    ) else {
        eprintln!("SKIP: MLFF_PAINN_MODEL / MLFF_PAINN_FIXTURE not set");
        return;
    };
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let frame = common::Frame::from_json(&s);
    for precision in [Precision::F64, Precision::F32] {
        let mut model = Model::load(
            &model_path,
            &Options {
                device: Device::Cpu,
                precision,
                ..Options::default()
            },
        )
        .unwrap();
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

/// A random PaiNN model in memory (F = 16, 3 blocks, rc = 4 Å, three readout layers).
fn random_file(shared_filters: bool, shared_interactions: bool, seed: u64) -> mlff::ModelFile {
    let config = mlff::model::PainnConfig {
        hidden: 16,
        num_rbf: 10,
        num_blocks: 3,
        cutoff: 4.0,
        max_z: 20,
        shared_filters,
        shared_interactions,
        epsilon: 1e-8,
        readout_widths: vec![16, 8, 4, 1],
    };
    let weights = mlff::model::random_painn(&config, seed);
    let bytes = mlff::model::save_painn_bytes(&weights, false, &[("provenance", "test")]).unwrap();
    let file = mlff::model::load_model_bytes(&bytes).unwrap();
    assert_eq!(file.weights.painn().unwrap().config, config);
    file
}

fn energy(model: &mut Model, frame: &common::Frame) -> f64 {
    model
        .compute(&frame.system(), &Request::ENERGY)
        .unwrap()
        .energy
}

/// Models the property tests run on: the committed schnetpack ones and random ones.
fn property_models(precision: Precision) -> Vec<(String, Model)> {
    let mut models: Vec<(String, Model)> = [
        "painn_b1",
        "painn_b3_shared_filters",
        "painn_b5_shared_interactions",
    ]
    .iter()
    .map(|stem| (stem.to_string(), open(stem, precision)))
    .collect();
    for (sf, si, seed) in [(false, false, 1), (true, true, 2)] {
        models.push((
            format!("random(sf={sf}, si={si})"),
            common::cpu_model(&random_file(sf, si, seed), precision, 2),
        ));
    }
    models
}

#[test]
fn forces_and_virial_match_finite_differences() {
    // Smooth at rc, so no structure needs to avoid the cutoff.
    for (name, mut model) in property_models(Precision::F64) {
        for (t, kind) in common::ALL_KINDS.iter().enumerate() {
            let frame = common::random_frame(*kind, 6, 300 + t as u64);
            let r = model.compute(&frame.system(), &Request::ALL).unwrap();
            let h = 1e-5;
            let mut err_f = 0.0f64;
            for i in 0..frame.positions.len() {
                for c in 0..3 {
                    let (mut plus, mut minus) = (frame.clone(), frame.clone());
                    plus.positions[i][c] += h;
                    minus.positions[i][c] -= h;
                    let fd = -(energy(&mut model, &plus) - energy(&mut model, &minus)) / (2.0 * h);
                    err_f = err_f.max((fd - r.forces[i][c]).abs());
                }
            }
            // W[a][b] = -dE/d eps[a][b] under r_b -> r_b + r_a eps (cell rows too).
            let strained = |a: usize, b: usize, eps: f64| {
                let mut f = frame.clone();
                for p in f.positions.iter_mut() {
                    p[b] += p[a] * eps;
                }
                if let Some(cell) = f.cell.as_mut() {
                    for row in cell.iter_mut() {
                        row[b] += row[a] * eps;
                    }
                }
                f
            };
            let mut err_w = 0.0f64;
            for a in 0..3 {
                for b in 0..3 {
                    let fd = -(energy(&mut model, &strained(a, b, 1e-6))
                        - energy(&mut model, &strained(a, b, -1e-6)))
                        / 2e-6;
                    err_w = err_w.max((fd - r.virial[a][b]).abs());
                }
            }
            let scale = common::max_abs(&r.forces).max(1.0);
            eprintln!("{name} {kind:?}: |F - F_fd| {err_f:.1e}, |W - W_fd| {err_w:.1e} (max |F| {scale:.2})");
            assert!(
                err_f < 1e-6 * scale,
                "{name} {kind:?}: forces differ from finite differences by {err_f}"
            );
            assert!(
                err_w < 1e-5 * scale,
                "{name} {kind:?}: virial differs from the strain derivative by {err_w}"
            );
        }
    }
}

fn rotation(seed: u64) -> [[f64; 3]; 3] {
    // Unit quaternion from three uniforms (Shoemake).
    let mut rng = mlff::model::random::SplitMix64(seed);
    let (u1, u2, u3) = (rng.uniform(), rng.uniform(), rng.uniform());
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    let tau = 2.0 * std::f64::consts::PI;
    let (w, x, y, z) = (
        a * (tau * u2).sin(),
        a * (tau * u2).cos(),
        b * (tau * u3).sin(),
        b * (tau * u3).cos(),
    );
    [
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
        ],
        [
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
        ],
        [
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ],
    ]
}

fn rotate(m: &[[f64; 3]; 3], v: &[f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|a| m[a][0] * v[0] + m[a][1] * v[1] + m[a][2] * v[2])
}

#[test]
fn rotation_invariant_with_symmetric_virial() {
    for (name, mut model) in property_models(Precision::F64) {
        for (t, kind) in common::ALL_KINDS.iter().enumerate() {
            let frame = common::random_frame(*kind, 12, 400 + t as u64);
            let r = model.compute(&frame.system(), &Request::ALL).unwrap();
            let w = r.virial;
            let w_scale = w
                .iter()
                .flatten()
                .fold(0.0f64, |m, x| m.max(x.abs()))
                .max(1e-3);
            for a in 0..3 {
                for b in 0..3 {
                    assert!(
                        (w[a][b] - w[b][a]).abs() <= 1e-10 * w_scale,
                        "{name} {kind:?}: virial not symmetric: {w:?}"
                    );
                }
            }
            for seed in 0..3 {
                let m = rotation(1000 + seed);
                let mut rotated = frame.clone();
                for p in rotated.positions.iter_mut() {
                    *p = rotate(&m, p);
                }
                if let Some(cell) = rotated.cell.as_mut() {
                    for row in cell.iter_mut() {
                        *row = rotate(&m, row);
                    }
                }
                let rr = model.compute(&rotated.system(), &Request::ALL).unwrap();
                let de = (rr.energy - r.energy).abs() / r.energy.abs().max(1e-12);
                assert!(
                    de <= 1e-10,
                    "{name} {kind:?}: energy changes by {de:.1e} (relative) under a rotation"
                );
                let expected: Vec<[f64; 3]> = r.forces.iter().map(|f| rotate(&m, f)).collect();
                let df = common::max_abs_diff(&rr.forces, &expected);
                assert!(
                    df <= 1e-10 * common::max_abs(&r.forces).max(1.0),
                    "{name} {kind:?}: forces do not rotate with the structure ({df:.1e})"
                );
                // W' = R W R^T.
                for a in 0..3 {
                    for b in 0..3 {
                        let mut value = 0.0;
                        for c in 0..3 {
                            for d in 0..3 {
                                value += m[a][c] * w[c][d] * m[b][d];
                            }
                        }
                        assert!(
                            (rr.virial[a][b] - value).abs() <= 1e-10 * w_scale,
                            "{name} {kind:?}: virial does not rotate"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn energy_and_forces_are_smooth_across_the_cutoff() {
    // A pair, and a third atom bonded to one of them, while the pair's distance
    // sweeps through rc: the energy and forces must not jump, and the analytic
    // forces must match central differences on both sides and straddling rc.
    for (name, mut model) in property_models(Precision::F64) {
        let rc = model.cutoff();
        let at = |d: f64| common::Frame {
            numbers: vec![6, 8, 1],
            positions: vec![[0.0, 0.0, 0.0], [d * 0.6, d * 0.8, 0.0], [-0.7, 0.6, 0.3]],
            cell: None,
            pbc: [false; 3],
        };
        let beyond = model
            .compute(&at(rc * (1.0 + 1e-3)).system(), &Request::ALL)
            .unwrap();
        let mut worst_fd = 0.0f64;
        let scale = common::max_abs(
            &model
                .compute(&at(rc * 0.99).system(), &Request::ALL)
                .unwrap()
                .forces,
        )
        .max(1.0);
        for step in -20i32..=20 {
            let delta = step as f64 * 2e-5;
            let d = rc + delta;
            let r = model.compute(&at(d).system(), &Request::ALL).unwrap();
            // Beyond rc nothing depends on d; inside, fc ~ (pi delta / rc)^2 / 4.
            let de = (r.energy - beyond.energy).abs();
            let bound = 100.0 * (delta.abs() / rc).powi(2) * beyond.energy.abs().max(1.0);
            assert!(
                de <= bound + 1e-12,
                "{name}: at d = rc {delta:+.1e}: energy differs from beyond rc by {de:.2e}"
            );
            let df = common::max_abs_diff(&r.forces, &beyond.forces);
            assert!(
                df <= 100.0 * delta.abs() / rc + 1e-12,
                "{name}: at d = rc {delta:+.1e}: forces jump by {df:.2e}"
            );
            // Central difference along the pair direction. The cosine cutoff is C1 (its
            // second derivative jumps at rc), so a difference straddling rc is O(h), not
            // O(h^2): the strict check is on points at least 1.5 h away from rc.
            let h = 1e-5;
            if delta.abs() < 1.5 * h {
                continue;
            }
            let fd = -(energy(&mut model, &at(d + h)) - energy(&mut model, &at(d - h))) / (2.0 * h);
            let analytic = 0.6 * r.forces[1][0] + 0.8 * r.forces[1][1];
            worst_fd = worst_fd.max((fd - analytic).abs());
        }
        eprintln!("{name}: worst |F - F_fd| across rc = {worst_fd:.1e} (max |F| {scale:.1})");
        assert!(
            worst_fd < 1e-8 * scale,
            "{name}: forces differ from finite differences across rc by {worst_fd}"
        );
    }
}

#[test]
fn f32_agrees_with_f64_on_fresh_structures() {
    let m32 = property_models(Precision::F32);
    for ((name, mut m64), (_, mut m32)) in property_models(Precision::F64).into_iter().zip(m32) {
        let mut frames: Vec<(String, common::Frame)> = Vec::new();
        for (t, kind) in common::ALL_KINDS.iter().enumerate() {
            for n in [1, 2, 20, 120] {
                frames.push((
                    format!("{kind:?} n={n}"),
                    common::random_frame(*kind, n, 900 + 10 * t as u64 + n as u64),
                ));
            }
        }
        let rc = m64.cutoff();
        for (label, d) in [
            ("pair at rc", rc),
            ("pair just inside rc", rc * (1.0 - 1e-7)),
            ("isolated atoms", rc * 3.0),
        ] {
            frames.push((
                label.to_string(),
                common::Frame {
                    numbers: vec![6, 8],
                    positions: vec![[0.0; 3], [0.0, 0.0, d]],
                    cell: None,
                    pbc: [false; 3],
                },
            ));
        }
        let mut worst = 0.0f64;
        for (label, frame) in &frames {
            let r64 = m64.compute(&frame.system(), &Request::ALL).unwrap();
            let r32 = m32.compute(&frame.system(), &Request::ALL).unwrap();
            let de = (r32.energy - r64.energy).abs() / r64.energy.abs().max(1e-2);
            assert!(de < 1e-5, "{name} {label}: f32 energy relative error {de}");
            if common::max_abs(&r64.forces) > 1e-6 {
                let df = common::relative_error(&r32.forces, &r64.forces);
                let dw = common::relative_error(&r32.virial, &r64.virial);
                worst = worst.max(df);
                assert!(df <= 1e-5, "{name} {label}: f32 force relative error {df}");
                assert!(dw <= 1e-5, "{name} {label}: f32 virial relative error {dw}");
            } else {
                assert!(
                    common::max_abs(&r32.forces) <= 1e-6,
                    "{name} {label}: f32 forces where f64 has none"
                );
            }
        }
        eprintln!(
            "{name}: worst f32 force relative error {worst:.1e} over {} structures",
            frames.len()
        );
    }
}

#[test]
fn ghost_atoms_reproduce_periodic_results() {
    // What LAMMPS hands over: local atoms plus image copies out to layers x cutoff.
    for (name, mut model) in property_models(Precision::F64).into_iter().take(3) {
        let reach = model.cutoff() * model.num_layers() as f64 + 0.5;
        for kind in [common::Kind::Triclinic, common::Kind::SmallCell] {
            let frame = common::random_frame(kind, 5, 1500);
            let periodic = model.compute(&frame.system(), &Request::ALL).unwrap();
            let cell = frame.cell.unwrap();
            let (mut numbers, mut positions) = (frame.numbers.clone(), frame.positions.clone());
            let mut owner: Vec<usize> = (0..frame.numbers.len()).collect();
            let span = 8;
            for s0 in -span..=span {
                for s1 in -span..=span {
                    for s2 in -span..=span {
                        if (s0, s1, s2) == (0, 0, 0) {
                            continue;
                        }
                        for (i, r) in frame.positions.iter().enumerate() {
                            let g = mlff::neighbors::pair_vector(&[0.0; 3], r, [s0, s1, s2], &cell);
                            if frame.positions.iter().any(|q| {
                                mlff::neighbors::norm(&[g[0] - q[0], g[1] - q[1], g[2] - q[2]])
                                    <= reach
                            }) {
                                numbers.push(frame.numbers[i]);
                                positions.push(g);
                                owner.push(i);
                            }
                        }
                    }
                }
            }
            let n_local = frame.numbers.len();
            let system = mlff::System {
                numbers: &numbers,
                positions: &positions,
                cell: None,
                pbc: [false; 3],
                n_local,
            };
            let ghosts = model.compute(&system, &Request::ALL).unwrap();
            assert!(
                (ghosts.energy - periodic.energy).abs() < 1e-10 * periodic.energy.abs().max(1.0),
                "{name} {kind:?}: energy"
            );
            let mut summed = vec![[0.0; 3]; n_local];
            for (k, f) in ghosts.forces.iter().enumerate() {
                for c in 0..3 {
                    summed[owner[k]][c] += f[c];
                }
            }
            let df = common::max_abs_diff(&summed, &periodic.forces);
            assert!(df < 1e-9, "{name} {kind:?}: forces differ by {df}");
            let dw = common::max_abs_diff(&ghosts.virial, &periodic.virial);
            assert!(dw < 1e-9, "{name} {kind:?}: virial differs by {dw}");
            assert!(ghosts.atom_energies[n_local..].iter().all(|&e| e == 0.0));
        }
    }
}

#[test]
fn batch_and_thread_counts_give_the_same_bits() {
    let file = random_file(false, false, 7);
    let frames: Vec<common::Frame> = (0..3)
        .map(|k| common::random_frame(common::Kind::Cubic, 60, 1700 + k))
        .collect();
    for precision in [Precision::F64, Precision::F32] {
        let reference: Vec<mlff::Results> = {
            let mut m = common::cpu_model(&file, precision, 1);
            frames
                .iter()
                .map(|f| m.compute(&f.system(), &Request::ALL).unwrap())
                .collect()
        };
        for threads in [2, 3] {
            let mut m = common::cpu_model(&file, precision, threads);
            let systems: Vec<mlff::System> = frames.iter().map(|f| f.system()).collect();
            assert_eq!(
                m.compute_batch(&systems, &Request::ALL).unwrap(),
                reference,
                "{precision:?} {threads} threads"
            );
        }
    }
}

#[test]
fn painn_files_with_defects_are_rejected_with_typed_errors() {
    use mlff::ModelFormatError as E;
    let file = random_file(false, false, 3);
    let weights = file.weights.painn().unwrap().clone();
    let load = |w: &mlff::model::PainnWeights, extra: &[(&str, &str)]| {
        let bytes = mlff::model::save_painn_bytes(w, false, extra).unwrap();
        match mlff::model::load_model_bytes(&bytes) {
            Err(mlff::Error::ModelFormat(e)) => e,
            other => panic!(
                "expected a format error for {extra:?}, got {:?}",
                other.map(|f| f.metadata)
            ),
        }
    };
    let bad_key =
        |e: E, expected: &str| matches!(e, E::BadMetadata { ref key, .. } if key == expected);
    assert!(bad_key(load(&weights, &[("epsilon", "0")]), "epsilon"));
    assert!(bad_key(load(&weights, &[("rbf", "bessel")]), "rbf"));
    assert!(bad_key(
        load(&weights, &[("cutoff_fn", "mollifier")]),
        "cutoff_fn"
    ));
    assert!(bad_key(
        load(&weights, &[("activation", "softplus")]),
        "activation"
    ));
    assert!(bad_key(
        load(&weights, &[("shared_filters", "yes")]),
        "shared_filters"
    ));
    assert!(bad_key(
        load(&weights, &[("readout_widths", "16,8,2")]),
        "readout_widths"
    ));
    assert!(matches!(
        load(&weights, &[("readout_widths", "16,1")]),
        E::UnexpectedTensor(_)
    ));
    assert!(
        matches!(load(&weights, &[("shared_interactions", "true")]), E::UnexpectedTensor(ref n) if n.starts_with("representation.interactions.1"))
    );
    assert!(matches!(
        load(&weights, &[("shared_filters", "true")]),
        E::WrongShape { .. }
    ));
    assert!(matches!(
        load(&weights, &[("cutoff", "4.5")]),
        E::Inconsistent(_)
    ));
    let mut zero_width = weights.clone();
    zero_width.rbf_widths[3] = 0.0;
    assert!(matches!(load(&zero_width, &[]), E::Inconsistent(_)));
    let mut nan = weights.clone();
    nan.readout[1].bias[0] = f64::NAN;
    assert!(
        matches!(load(&nan, &[]), E::NonFinite { ref name, .. } if name == "output_modules.0.outnet.1.bias")
    );
    // A model whose filter does not vanish at rc is impossible with the cosine cutoff,
    // so a clean file has no warnings.
    assert!(file.warnings.is_empty());
}
