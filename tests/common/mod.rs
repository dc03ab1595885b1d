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
    let Some(path) = shared_dir().map(|d| d.join("fixtures/student_public_fixtures.json")).filter(|p| p.is_file()) else {
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
    let Some(onnx) = shared_dir().map(|d| d.join(format!("models/{stem}.onnx"))).filter(|p| p.is_file()) else {
        eprintln!("SKIP: ../shared/models/{stem}.onnx is absent (the released students are not part of this repository)");
        return None;
    };
    let out_dir = manifest_dir().join("target").join("test-models");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(format!("{stem}.safetensors"));
    if !out.is_file() {
        // Unique temp name: tests run in parallel.
        let tmp = out_dir.join(format!("{stem}.{}.{:?}.tmp", std::process::id(), std::thread::current().id()));
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
        let numbers = s["numbers"].as_array().unwrap().iter().map(|z| z.as_i64().unwrap() as i32).collect();
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
        Frame { numbers, positions, cell, pbc }
    }

    pub fn system(&self) -> System<'_> {
        System { numbers: &self.numbers, positions: &self.positions, cell: self.cell, pbc: self.pbc, n_local: self.numbers.len() }
    }
}

pub fn matrix(v: &serde_json::Value) -> Vec<[f64; 3]> {
    v.as_array().unwrap().iter().map(|row| {
        let r = row.as_array().unwrap();
        [r[0].as_f64().unwrap(), r[1].as_f64().unwrap(), r[2].as_f64().unwrap()]
    }).collect()
}

pub fn max_abs_diff(a: &[[f64; 3]], b: &[[f64; 3]]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| (0..3).map(move |c| (x[c] - y[c]).abs())).fold(0.0, f64::max)
}

pub fn max_abs(a: &[[f64; 3]]) -> f64 {
    a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()))
}
