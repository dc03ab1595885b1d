//! Times the mlff engines on the benchmark structures of issue 4 and writes a table.
//!
//! mlff-gpu-bench [--model FILE] [--precision f32|f64] [--device cuda|cpu] [--cases a,b]
//!                [--repeat N] [--out FILE] [--check] [--shuffle] [--structures DIR]
//!
//! Without --model, a random student of the released size (H=128, K=20, L=3,
//! rc=5 Å) is used: timings do not depend on the weights. Each timed call is a whole
//! `Model::compute_forces_into` (the C ABI's path; batches:
//! `Model::compute_batch_forces_into`, the C ABI's batch path)
//! with energy, forces and virial: host arrays in, neighbour list, upload, kernels,
//! download into the caller's forces buffer. --check also compares forces with the CPU f64 engine;
//! --shuffle puts each structure's atoms in a random order (fixed seed). The table also
//! gives the device memory in use (peak so far in the run, sampled between calls).

use std::time::Instant;

use mlff::model::random::random_student;
use mlff::model::StudentConfig;
use mlff::{Device, Model, Options, Precision, Request, System};

struct Structure {
    name: String,
    numbers: Vec<i32>,
    positions: Vec<[f64; 3]>,
    cell: Option<[[f64; 3]; 3]>,
    pbc: [bool; 3],
}

impl Structure {
    /// The same structure with its atoms in a random order (a fixed seed): input as
    /// an MD code that never sorts its atoms would pass it after a long run.
    fn shuffled(mut self, seed: u64) -> Structure {
        let mut rng = mlff::model::random::SplitMix64(seed);
        for k in (1..self.numbers.len()).rev() {
            let j = (rng.next_u64() % (k as u64 + 1)) as usize;
            self.numbers.swap(k, j);
            self.positions.swap(k, j);
        }
        self.name.push_str(", shuffled");
        self
    }

    fn system(&self) -> System<'_> {
        System {
            numbers: &self.numbers,
            positions: &self.positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.numbers.len(),
        }
    }
}

/// Structures written by tools/structures.py (as JSON: [{numbers, positions, cell, pbc}]).
fn load_structures(path: &std::path::Path, case: &str) -> Option<Vec<Structure>> {
    let text = std::fs::read_to_string(path).ok()?;
    let list: serde_json::Value = serde_json::from_str(&text).ok()?;
    let rows = |v: &serde_json::Value| -> Vec<[f64; 3]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let r = r.as_array().unwrap();
                [
                    r[0].as_f64().unwrap(),
                    r[1].as_f64().unwrap(),
                    r[2].as_f64().unwrap(),
                ]
            })
            .collect()
    };
    Some(
        list.as_array()?
            .iter()
            .map(|s| {
                let numbers: Vec<i32> = s["numbers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|z| z.as_i64().unwrap() as i32)
                    .collect();
                let cell = if s["cell"].is_array() {
                    let m = rows(&s["cell"]);
                    Some([m[0], m[1], m[2]])
                } else {
                    None
                };
                let p: Vec<bool> = s["pbc"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_bool().unwrap())
                    .collect();
                Structure {
                    name: format!("{case} ({} atoms)", numbers.len()),
                    numbers,
                    positions: rows(&s["positions"]),
                    cell,
                    pbc: [p[0], p[1], p[2]],
                }
            })
            .collect(),
    )
}

/// Fallback structures when no `structures_*.json` is given: the library's generators.
fn named(name: String, s: mlff::structures::Structure) -> Structure {
    Structure {
        name,
        numbers: s.numbers,
        positions: s.positions,
        cell: s.cell,
        pbc: s.pbc,
    }
}

/// Liquid water at 1 g/cm^3, m^3 molecules (`mlff::structures::water_box`).
fn water_box(m: usize, seed: u64) -> Structure {
    let s = mlff::structures::water_box(m * m * m, 1.0, seed);
    named(format!("water {} atoms (PBC)", s.numbers.len()), s)
}

/// An organic-like molecule of n atoms (`mlff::structures::random_molecule`).
fn molecule(n: usize, seed: u64) -> Structure {
    named(
        format!("molecule {n} atoms"),
        mlff::structures::random_molecule(n, seed),
    )
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let precision: Precision = get("--precision").unwrap_or("f32".into()).parse().unwrap();
    let device: Device = get("--device").unwrap_or("cuda".into()).parse().unwrap();
    let repeat: usize = get("--repeat").map(|r| r.parse().unwrap()).unwrap_or(0);
    let check = args.iter().any(|a| a == "--check");
    let shuffle = args.iter().any(|a| a == "--shuffle");
    let cases: Vec<String> = get("--cases")
        .unwrap_or("mol50,batch256,water10k,water100k".into())
        .split(',')
        .map(String::from)
        .collect();

    let options = Options {
        device,
        precision,
        ..Options::default()
    };
    let file = match get("--model") {
        Some(path) => mlff::model::load_model_file(path).unwrap(),
        None => {
            let config = StudentConfig {
                hidden: 128,
                num_rbf: 20,
                num_blocks: 3,
                cutoff: 5.0,
                max_z: 100,
            };
            let weights = random_student(&config, 1);
            let bytes = mlff::model::save_model_bytes(
                &weights,
                false,
                &[("provenance", "benchmark (random weights)")],
            )
            .unwrap();
            mlff::model::load_model_bytes(&bytes).unwrap()
        }
    };
    let t0 = Instant::now();
    let mut model = match Model::from_file(file.clone(), &options) {
        Ok(model) => model,
        Err(error) => {
            eprintln!("mlff-gpu-bench: cannot create the {device:?} engine: {error}");
            std::process::exit(2);
        }
    };
    if device == Device::Cuda {
        // The context, the compiled module and the weights, before any system.
        if let Some(used) = mlff::engine::cuda::device_memory_in_use(0) {
            eprintln!(
                "device memory in use after model creation: {:.3} GB",
                used as f64 / 1e9
            );
        }
    }
    let setup = t0.elapsed().as_secs_f64();
    let engine = model.engine_description();
    eprintln!("engine: {engine} (set up in {setup:.2} s)");
    let mut cpu = check.then(|| {
        Model::from_file(
            file,
            &Options {
                device: Device::Cpu,
                precision: Precision::F64,
                ..Options::default()
            },
        )
        .unwrap()
    });

    // Device memory in use (the driver's total - free: the CUDA context and every
    // buffer), sampled between calls, never during the timed ones (a sampling thread
    // slowed the small cases down). The engine's buffers persist between calls, so
    // this is the peak but for temporaries of a list rebuild.
    let mut peak = 0u64;
    let sample = |peak: &mut u64| {
        if device == Device::Cuda {
            if let Some(used) = mlff::engine::cuda::device_memory_in_use(0) {
                *peak = (*peak).max(used);
            }
        }
    };
    let mut rows = Vec::new();
    for case in &cases {
        let from_file = get("--structures").and_then(|dir| {
            load_structures(
                &std::path::Path::new(&dir).join(format!("structures_{case}.json")),
                case,
            )
        });
        let (structures, batch): (Vec<Structure>, bool) = match case.as_str() {
            _ if from_file.is_some() => {
                let list = from_file.unwrap();
                let batch = list.len() > 1;
                (list, batch)
            }
            "mol50" => (vec![molecule(50, 1)], false),
            "batch256" | "batch256x50" => ((0..256).map(|s| molecule(50, 100 + s)).collect(), true),
            "water1k" => (vec![water_box(7, 2)], false),
            "water10k" => (vec![water_box(15, 3)], false),
            "water100k" => (vec![water_box(32, 4)], false),
            "water1m" => (vec![water_box(69, 5)], false),
            other => panic!("unknown case {other}"),
        };
        let structures: Vec<Structure> = if shuffle {
            structures.into_iter().map(|s| s.shuffled(17)).collect()
        } else {
            structures
        };
        let systems: Vec<System> = structures.iter().map(|s| s.system()).collect();
        let atoms: usize = systems.iter().map(|s| s.n_atoms()).sum();
        let n_calls = if repeat > 0 {
            repeat
        } else {
            (2_000_000 / atoms.max(1)).clamp(5, 200)
        };
        let t_nl = Instant::now();
        let nl = mlff::neighbors::build(
            systems[0].positions,
            systems[0].cell.as_ref(),
            systems[0].pbc,
            5.0,
        )
        .unwrap();
        let nl_time = t_nl.elapsed().as_secs_f64();
        // Forces go into buffers the caller keeps, as through the C ABI
        // (`mlff_model_compute` and `mlff_model_compute_batch` take these paths).
        let mut forces = vec![[0.0f64; 3]; systems.iter().map(|s| s.n_atoms()).sum()];
        let mut call = |model: &mut Model| {
            if batch {
                let mut rest = &mut forces[..];
                let mut rows = Vec::with_capacity(systems.len());
                for s in &systems {
                    let (head, tail) = rest.split_at_mut(s.n_atoms());
                    rows.push(head);
                    rest = tail;
                }
                model
                    .compute_batch_forces_into(&systems, &Request::FORCES_VIRIAL, &mut rows)
                    .unwrap();
            } else {
                model
                    .compute_forces_into(&systems[0], &Request::FORCES_VIRIAL, &mut forces[..])
                    .unwrap();
            }
        };
        for _ in 0..3 {
            call(&mut model);
        }
        sample(&mut peak);
        let mut times = Vec::with_capacity(n_calls);
        for _ in 0..n_calls {
            let t = Instant::now();
            call(&mut model);
            times.push(t.elapsed().as_secs_f64());
        }
        sample(&mut peak);
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = percentile(&times, 0.5);
        // Steps that must rebuild the neighbour list: every atom moved by 0.2 Å (> skin/2).
        let mut rebuild_ms = f64::NAN;
        if !batch {
            let s0 = &systems[0];
            let moved: Vec<[f64; 3]> = s0
                .positions
                .iter()
                .map(|r| [r[0] + 0.2, r[1], r[2]])
                .collect();
            let s1 = System {
                positions: &moved,
                ..*s0
            };
            let mut rt = Vec::new();
            for k in 0..6 {
                let s = if k % 2 == 0 { &s1 } else { s0 };
                let t = Instant::now();
                model.compute(s, &Request::FORCES_VIRIAL).unwrap();
                rt.push(t.elapsed().as_secs_f64());
                sample(&mut peak);
            }
            rt.sort_by(|a, b| a.partial_cmp(b).unwrap());
            rebuild_ms = percentile(&rt, 0.5) * 1e3;
        }
        let mut accuracy = String::from("-");
        if let Some(cpu) = cpu.as_mut() {
            if atoms <= 20_000 {
                let s = &systems[0];
                // (first system of a batch; batch == one-by-one is tested in tests/cuda.rs)
                let want = cpu.compute(s, &Request::ALL).unwrap();
                let got = model.compute(s, &Request::ALL).unwrap();
                let num: f64 = got
                    .forces
                    .iter()
                    .zip(&want.forces)
                    .flat_map(|(a, b)| (0..3).map(move |k| (a[k] - b[k]).powi(2)))
                    .sum();
                let den: f64 = want.forces.iter().flatten().map(|x| x * x).sum();
                let max_abs = got
                    .forces
                    .iter()
                    .zip(&want.forces)
                    .flat_map(|(a, b)| (0..3).map(move |k| (a[k] - b[k]).abs()))
                    .fold(0.0, f64::max);
                accuracy = format!(
                    "F rel {:.1e}, max {:.1e} eV/Å, E/atom {:.1e} eV",
                    (num / den).sqrt(),
                    max_abs,
                    (got.energy - want.energy).abs() / s.n_atoms() as f64
                );
            }
        }
        eprintln!("{case}: {} atoms, {} pairs, median {:.3} ms (p10 {:.3}, p90 {:.3}, {n_calls} calls); host neighbour list alone {:.3} ms; {accuracy}",
            atoms, nl.n_pairs(), median * 1e3, percentile(&times, 0.1) * 1e3, percentile(&times, 0.9) * 1e3, nl_time * 1e3);
        let name = if batch {
            format!("256 x {}", structures[0].name)
        } else {
            structures[0].name.clone()
        };
        let peak_gb = peak as f64 / 1e9;
        rows.push(format!(
            "| {name} | {atoms} | {:.3} | {:.3} | {:.3} | {:.2e} | {:.3} | {rebuild_ms:.3} | {peak_gb:.2} | {accuracy} |",
            median * 1e3,
            percentile(&times, 0.1) * 1e3,
            percentile(&times, 0.9) * 1e3,
            atoms as f64 / median,
            nl_time * 1e3
        ));
    }
    let mut table = format!("engine: {engine}\n\n| case | atoms | median ms | p10 ms | p90 ms | atom-steps/s | host NL ms (1st system) | step with list rebuild ms | device memory GB (peak so far in this run, between calls) | accuracy vs CPU f64 |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        table.push_str(&r);
        table.push('\n');
    }
    println!("{table}");
    if let Some(out) = get("--out") {
        std::fs::write(out, &table).unwrap();
    }
}
