//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mlff::System;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the checkout, if present.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = manifest_dir().join("..").join("shared");
    dir.is_dir().then_some(dir)
}

pub fn public_fixtures() -> Option<serde_json::Value> {
    let Some(path) = shared_dir()
        .map(|d| d.join("fixtures/student_public_fixtures.json"))
        .filter(|p| p.is_file())
    else {
        eprintln!("SKIP: ../shared/fixtures/student_public_fixtures.json is absent (the public fixtures are not part of this repository)");
        return None;
    };
    Some(serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
}

/// A released student converted to our format: from `$MLFF_TEST_MODEL_DIR/STEM.safetensors`,
/// else converted from `../shared/models/STEM.onnx` into target/test-models (cached).
pub fn shared_model(stem: &str) -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("MLFF_TEST_MODEL_DIR") {
        let path = Path::new(&dir).join(format!("{stem}.safetensors"));
        if path.is_file() {
            return Some(path);
        }
    }
    let Some(onnx) = shared_dir()
        .map(|d| d.join(format!("models/{stem}.onnx")))
        .filter(|p| p.is_file())
    else {
        eprintln!("SKIP: ../shared/models/{stem}.onnx is absent (the released students are not part of this repository)");
        return None;
    };
    let out_dir = manifest_dir().join("target").join("test-models");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{stem}.safetensors"));
    if !out.is_file() {
        // Unique temp name: tests run in parallel.
        let tmp = out_dir.join(format!(
            "{stem}.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        convert(&onnx, &tmp);
        std::fs::rename(&tmp, &out).unwrap();
    }
    Some(out)
}

fn convert(input: &Path, output: &Path) {
    let status = std::process::Command::new("python3")
        .arg(manifest_dir().join("tools/convert_model.py"))
        .arg(input)
        .arg(output)
        .status()
        .expect("python3 is needed to convert the released students");
    assert!(status.success(), "converting {} failed", input.display());
}

/// A structure read from a fixture file.
#[derive(Debug, Clone)]
pub struct Frame {
    pub numbers: Vec<i32>,
    pub positions: Vec<[f64; 3]>,
    pub cell: Option<[[f64; 3]; 3]>,
    pub pbc: [bool; 3],
}

impl Frame {
    pub fn from_json(s: &serde_json::Value) -> Frame {
        let numbers = s["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_i64().unwrap() as i32)
            .collect();
        let positions = matrix(&s["positions"]);
        let pbc_values: Vec<bool> = match &s["pbc"] {
            serde_json::Value::Array(a) => a.iter().map(|b| b.as_bool().unwrap()).collect(),
            serde_json::Value::Bool(b) => vec![*b; 3],
            _ => vec![false; 3],
        };
        let pbc = [pbc_values[0], pbc_values[1], pbc_values[2]];
        let cell = match &s["cell"] {
            serde_json::Value::Array(rows) if !rows.is_empty() => {
                let m = matrix(&s["cell"]);
                Some([m[0], m[1], m[2]])
            }
            _ => None,
        };
        Frame {
            numbers,
            positions,
            cell,
            pbc,
        }
    }

    pub fn system(&self) -> System<'_> {
        System {
            numbers: &self.numbers,
            positions: &self.positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.numbers.len(),
        }
    }
}

pub fn matrix(v: &serde_json::Value) -> Vec<[f64; 3]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let r = row.as_array().unwrap();
            [
                r[0].as_f64().unwrap(),
                r[1].as_f64().unwrap(),
                r[2].as_f64().unwrap(),
            ]
        })
        .collect()
}

pub fn max_abs_diff(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |c| (x[c] - y[c]).abs()))
        .fold(0.0, f64::max)
}

pub fn max_abs(a: &[[f64; 3]]) -> f64 {
    a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()))
}

use mlff::model::random::{random_student, SplitMix64};
use mlff::model::{ModelFile, StudentConfig};
use mlff::{Device, Model, Options, Precision};

/// A small random student (H=16, K=8, L=3, rc=4 Å).
pub fn small_config() -> StudentConfig {
    StudentConfig {
        hidden: 16,
        num_rbf: 8,
        num_blocks: 3,
        cutoff: 4.0,
        max_z: 10,
    }
}

pub fn random_model_file(config: &StudentConfig, seed: u64) -> ModelFile {
    let weights = random_student(config, seed);
    let bytes = mlff::model::save_model_bytes(&weights, false, &[("provenance", "test")]).unwrap();
    mlff::model::load_model_bytes(&bytes).unwrap()
}

pub fn cpu_model(file: &ModelFile, precision: Precision, threads: u32) -> Model {
    Model::from_file(
        file.clone(),
        &Options {
            device: Device::Cpu,
            precision,
            num_threads: threads,
            ..Options::default()
        },
    )
    .unwrap()
}

/// Kinds of random structures the engine tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Molecule,
    Cubic,
    Triclinic,
    Slab,
    Wire,
    /// A periodic cell shorter than 2 rc along every axis (many images of one atom).
    SmallCell,
    /// Triclinic, with atoms moved by several lattice vectors.
    Unwrapped,
}

pub const ALL_KINDS: [Kind; 7] = [
    Kind::Molecule,
    Kind::Cubic,
    Kind::Triclinic,
    Kind::Slab,
    Kind::Wire,
    Kind::SmallCell,
    Kind::Unwrapped,
];

/// A random structure of `n` atoms with no two atoms closer than 0.9 Å.
pub fn random_frame(kind: Kind, n: usize, seed: u64) -> Frame {
    let mut rng = SplitMix64(seed);
    let (cell, pbc) = match kind {
        Kind::Molecule => (None, [false; 3]),
        Kind::Cubic => {
            let a = (n as f64 * 12.0).cbrt().max(3.0);
            (
                Some([[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]]),
                [true; 3],
            )
        }
        Kind::Triclinic | Kind::Unwrapped => {
            let a = (n as f64 * 12.0).cbrt().max(3.5);
            (
                Some([
                    [a, 0.0, 0.0],
                    [0.31 * a, 0.93 * a, 0.0],
                    [-0.22 * a, 0.17 * a, 0.9 * a],
                ]),
                [true; 3],
            )
        }
        Kind::Slab => {
            let a = (n as f64 * 12.0 / 6.0).sqrt().max(3.0);
            (
                Some([[a, 0.0, 0.0], [0.2 * a, a, 0.0], [0.0, 0.0, 0.0]]),
                [true, true, false],
            )
        }
        Kind::Wire => {
            let a = (n as f64 * 12.0 / 36.0).max(2.5);
            (
                Some([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.3, 0.2, a]]),
                [false, false, true],
            )
        }
        Kind::SmallCell => {
            // Shorter than 2 rc along every axis for up to ~50 atoms, at a liquid-like density.
            let a = (n as f64 * 10.0).cbrt().max(2.9) / 2.9;
            (
                Some([
                    [2.9 * a, 0.0, 0.0],
                    [0.4 * a, 3.1 * a, 0.0],
                    [0.3 * a, -0.2 * a, 3.3 * a],
                ]),
                [true; 3],
            )
        }
    };
    let extent = (n as f64 * 12.0).cbrt().max(2.0);
    let numbers: Vec<i32> = (0..n)
        .map(|_| [1, 6, 7, 8][(rng.next_u64() % 4) as usize])
        .collect();
    let mut positions: Vec<[f64; 3]> = Vec::with_capacity(n);
    let bound = ImageBound::new(cell.as_ref(), pbc);
    let mut attempts = 0;
    while positions.len() < n {
        attempts += 1;
        assert!(attempts < 100_000, "cannot place {n} atoms");
        let f = [rng.uniform(), rng.uniform(), rng.uniform()];
        let r = match (&cell, kind) {
            (Some(c), Kind::Slab) => {
                let mut r = [0.0; 3];
                for k in 0..3 {
                    r[k] = f[0] * c[0][k] + f[1] * c[1][k];
                }
                r[2] = 6.0 * f[2];
                r
            }
            (Some(c), Kind::Wire) => {
                let mut r = [0.0; 3];
                for k in 0..3 {
                    r[k] = f[2] * c[2][k];
                }
                r[0] += 6.0 * f[0];
                r[1] += 6.0 * f[1];
                r
            }
            (Some(c), _) => {
                let mut r = [0.0; 3];
                for k in 0..3 {
                    r[k] = f[0] * c[0][k] + f[1] * c[1][k] + f[2] * c[2][k];
                }
                r
            }
            (None, _) => [extent * f[0], extent * f[1], extent * f[2]],
        };
        // The exact check below costs microseconds per placed atom (quadratic: minutes
        // at 9000 atoms), so a lower bound on the distance over all images skips the
        // atoms that cannot be close; the decisions, hence the frames, are unchanged.
        let close = positions.iter().any(|q| {
            bound.lower_bound(&[r[0] - q[0], r[1] - q[1], r[2] - q[2]]) <= 0.9 * (1.0 + 1e-6)
                && too_close(&r, q, cell.as_ref(), pbc)
        });
        // In a small cell an atom must also stay clear of its own images.
        let self_close =
            !mlff::neighbors::brute_force_pairs(&[r], cell.as_ref(), pbc, 0.9).is_empty();
        if !close && !self_close {
            positions.push(r);
        }
    }
    if kind == Kind::Unwrapped {
        let c = cell.unwrap();
        for (i, r) in positions.iter_mut().enumerate() {
            let m = [
                (i as i32 % 5) - 2,
                (i as i32 * 7 % 9) - 4,
                3 - (i as i32 % 7),
            ];
            for k in 0..3 {
                r[k] += m[0] as f64 * c[0][k] + m[1] as f64 * c[1][k] + m[2] as f64 * c[2][k];
            }
        }
    }
    Frame {
        numbers,
        positions,
        cell,
        pbc,
    }
}

/// Whether two atoms (or any periodic images of them) are closer than 0.9 Å: the
/// criterion of `random_frame`.
fn too_close(r: &[f64; 3], q: &[f64; 3], cell: Option<&[[f64; 3]; 3]>, pbc: [bool; 3]) -> bool {
    !mlff::neighbors::brute_force_pairs(&[*r, *q], cell, pbc, 0.9).is_empty()
        || mlff::neighbors::norm(&[r[0] - q[0], r[1] - q[1], r[2] - q[2]]) < 0.9
}

/// A lower bound on |d + sum_k m_k cell_k| over integers m_k on the periodic axes.
/// Fully periodic: the fractional difference along axis k, wrapped to [-1/2, 1/2],
/// times the spacing of the lattice planes across k. Otherwise: the part of d
/// orthogonal to every periodic lattice vector, which no image changes.
pub struct ImageBound {
    /// Fully periodic: the inverse cell (columns: fractional coordinates) and spacings.
    fractional: Option<([[f64; 3]; 3], [f64; 3])>,
    /// An orthonormal basis of the periodic vectors' span (0, 1 or 2 vectors).
    periodic: Vec<[f64; 3]>,
}

impl ImageBound {
    pub fn new(cell: Option<&[[f64; 3]; 3]>, pbc: [bool; 3]) -> ImageBound {
        let dot = |a: &[f64; 3], b: &[f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
        let cross = |a: &[f64; 3], b: &[f64; 3]| {
            [
                a[1] * b[2] - a[2] * b[1],
                a[2] * b[0] - a[0] * b[2],
                a[0] * b[1] - a[1] * b[0],
            ]
        };
        let Some(c) = cell else {
            return ImageBound {
                fractional: None,
                periodic: Vec::new(),
            };
        };
        if pbc == [true; 3] {
            let volume = dot(&c[0], &cross(&c[1], &c[2]));
            let mut inv = [[0.0; 3]; 3];
            let mut spacing = [0.0; 3];
            for k in 0..3 {
                // Column k of the inverse: (c[k+1] x c[k+2]) / volume.
                let w = cross(&c[(k + 1) % 3], &c[(k + 2) % 3]);
                for a in 0..3 {
                    inv[a][k] = w[a] / volume;
                }
                spacing[k] = volume.abs() / mlff::neighbors::norm(&w);
            }
            return ImageBound {
                fractional: Some((inv, spacing)),
                periodic: Vec::new(),
            };
        }
        // Gram-Schmidt over the periodic vectors.
        let mut periodic: Vec<[f64; 3]> = Vec::new();
        for k in (0..3).filter(|&k| pbc[k]) {
            let mut v = c[k];
            for b in &periodic {
                let x = dot(&v, b);
                for a in 0..3 {
                    v[a] -= x * b[a];
                }
            }
            let length = mlff::neighbors::norm(&v);
            assert!(length > 0.0, "a periodic axis with a zero lattice vector");
            periodic.push([v[0] / length, v[1] / length, v[2] / length]);
        }
        ImageBound {
            fractional: None,
            periodic,
        }
    }

    pub fn lower_bound(&self, d: &[f64; 3]) -> f64 {
        if let Some((inv, spacing)) = &self.fractional {
            return (0..3)
                .map(|k| {
                    let f = d[0] * inv[0][k] + d[1] * inv[1][k] + d[2] * inv[2][k];
                    (f - f.round()).abs() * spacing[k]
                })
                .fold(0.0, f64::max);
        }
        let mut v = *d;
        for b in &self.periodic {
            let x = v[0] * b[0] + v[1] * b[1] + v[2] * b[2];
            for a in 0..3 {
                v[a] -= x * b[a];
            }
        }
        mlff::neighbors::norm(&v)
    }
}

/// ‖a - b‖ / ‖b‖ over all components.
pub fn relative_error(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| (0..3).map(move |c| (x[c] - y[c]).powi(2)))
        .sum();
    let den: f64 = b.iter().flatten().map(|x| x * x).sum();
    (num / den.max(1e-300)).sqrt()
}

/// `Model::compute_batch_forces_into` (the C ABI's batch path) on `systems`, checked
/// against `compute_batch` on the same model (any backend): the forces bitwise in the
/// caller's rows and not in the results, the rest of the results equal; a request
/// without forces leaves the rows alone; buffers of the wrong number or length are
/// input errors that write nothing.
pub fn check_batch_forces_into(model: &mut Model, systems: &[mlff::System], label: &str) {
    use mlff::{Error, Request};
    let sizes: Vec<usize> = systems.iter().map(|s| s.n_atoms()).collect();
    let total: usize = sizes.iter().sum();
    fn rows<'a>(flat: &'a mut [[f64; 3]], sizes: &[usize]) -> Vec<&'a mut [[f64; 3]]> {
        let mut rest = flat;
        let mut rows = Vec::new();
        for &m in sizes {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(m);
            rows.push(head);
            rest = tail;
        }
        rows
    }
    for request in [Request::FORCES_VIRIAL, Request::ALL] {
        let want = model.compute_batch(systems, &request).unwrap();
        let mut flat = vec![[f64::NAN; 3]; total];
        let got = model
            .compute_batch_forces_into(systems, &request, &mut rows(&mut flat, &sizes))
            .unwrap();
        let want_forces: Vec<[f64; 3]> = want.iter().flat_map(|r| r.forces.clone()).collect();
        assert!(flat == want_forces, "{label}: forces differ");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.forces.is_empty(),
                "{label}, system {k}: forces also returned"
            );
            assert_eq!(
                (g.energy, g.virial),
                (w.energy, w.virial),
                "{label}, system {k}"
            );
            assert!(g.atom_energies == w.atom_energies, "{label}, system {k}");
            assert!(g.atom_virials == w.atom_virials, "{label}, system {k}");
        }
    }
    let mut untouched = vec![[7.0; 3]; total];
    model
        .compute_batch_forces_into(systems, &Request::ENERGY, &mut rows(&mut untouched, &sizes))
        .unwrap();
    assert!(
        untouched.iter().all(|r| *r == [7.0; 3]),
        "{label}: written without forces"
    );
    if let Some(k) = sizes.iter().position(|&m| m > 0) {
        let mut flat = vec![[7.0; 3]; total];
        let mut split = rows(&mut flat, &sizes);
        let len = split[k].len();
        split[k] = &mut std::mem::take(&mut split[k])[..len - 1];
        let err = model.compute_batch_forces_into(systems, &Request::FORCES_VIRIAL, &mut split);
        assert!(
            matches!(err, Err(Error::InvalidArgument(_))),
            "{label}: {err:?}"
        );
        let mut fewer = rows(&mut flat, &sizes);
        fewer.pop();
        let err = model.compute_batch_forces_into(systems, &Request::FORCES_VIRIAL, &mut fewer);
        assert!(
            matches!(err, Err(Error::InvalidArgument(_))),
            "{label}: {err:?}"
        );
        assert!(
            flat.iter().all(|r| *r == [7.0; 3]),
            "{label}: written on an error"
        );
    }
}
