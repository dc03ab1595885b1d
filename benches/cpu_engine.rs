//! CPU engine benchmarks: one 50-atom molecule and a 3000-atom periodic water box,
//! energy + forces + virial, f32 and f64. The model has the released student's
//! shape (H=128, K=20, L=3, rc=5 Å, 427k numbers) with random weights: the cost
//! does not depend on the values. Threads: MLFF_NUM_THREADS, else all cores.
//!
//! Structures: those of the PyTorch baseline (tools/structures.py: organic_molecule(50,
//! seed 0) with 1220 edges, water_box(1000, seed 0) with 164750 edges), so the numbers
//! sit next to benches/pytorch_cpu.md; src/structures.rs ones if python3 is missing.
//!
//! cargo bench --bench cpu_engine

use criterion::{criterion_group, criterion_main, Criterion};
use mlff::model::random::random_student;
use mlff::model::{load_model_bytes, save_model_bytes, StudentConfig};
use mlff::structures::{random_molecule, water_box, Structure};
use mlff::{Device, Model, Options, Precision, Request};

fn student_427k_shape() -> mlff::ModelFile {
    let config = StudentConfig {
        hidden: 128,
        num_rbf: 20,
        num_blocks: 3,
        cutoff: 5.0,
        max_z: 100,
    };
    let bytes = save_model_bytes(
        &random_student(&config, 1),
        false,
        &[("provenance", "benchmark")],
    )
    .unwrap();
    load_model_bytes(&bytes).unwrap()
}

/// A structure written by tools/structures.py (the PyTorch baseline's generator).
fn from_structures_py(args: &[&str]) -> Option<Structure> {
    let out = std::env::temp_dir().join(format!(
        "mlff-bench-{}-{}.extxyz",
        args[0],
        std::process::id()
    ));
    let status = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/structures.py"))
        .args(args)
        .arg("-o")
        .arg(&out)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let frames = mlff::io::extxyz::read_file(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    let system = frames.first()?.system();
    Some(Structure {
        numbers: system.numbers.to_vec(),
        positions: system.positions.to_vec(),
        cell: system.cell,
        pbc: system.pbc,
    })
}

fn bench(c: &mut Criterion) {
    let file = student_427k_shape();
    let molecule = from_structures_py(&["molecule", "--atoms", "50", "--seed", "0"])
        .unwrap_or_else(|| random_molecule(50, 1));
    let water = from_structures_py(&["water", "--molecules", "1000", "--seed", "0"])
        .unwrap_or_else(|| water_box(1000, 1.0, 0));
    for (name, s) in [("molecule_50", &molecule), ("water_3000", &water)] {
        let list = mlff::neighbors::build(&s.positions, s.cell.as_ref(), s.pbc, 5.0).unwrap();
        eprintln!(
            "{name}: {} atoms, {} edges",
            s.numbers.len(),
            list.n_edges()
        );
    }
    // The neighbour list alone (cutoff rc + the GPU engines' 0.3 Å skin), which every
    // engine and plugin builds on the host.
    let water_30k = water_box(10_000, 1.0, 0);
    let mut group = c.benchmark_group("neighbor_list");
    group.sample_size(10);
    for (name, s) in [("water_3000", &water), ("water_30000", &water_30k)] {
        group.bench_function(name, |b| {
            b.iter(|| mlff::neighbors::build(&s.positions, s.cell.as_ref(), s.pbc, 5.3).unwrap())
        });
    }
    group.finish();
    for precision in [Precision::F32, Precision::F64] {
        let mut model = Model::from_file(
            file.clone(),
            &Options {
                device: Device::Cpu,
                precision,
                ..Options::default()
            },
        )
        .unwrap();
        let name = format!("{precision:?}").to_lowercase();
        let mut group = c.benchmark_group(format!("cpu_{name}"));
        group.sample_size(20);
        group.bench_function("molecule_50", |b| {
            b.iter(|| {
                model
                    .compute(&molecule.system(), &Request::FORCES_VIRIAL)
                    .unwrap()
            })
        });
        group.sample_size(10);
        group.bench_function("water_3000", |b| {
            b.iter(|| {
                model
                    .compute(&water.system(), &Request::FORCES_VIRIAL)
                    .unwrap()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
