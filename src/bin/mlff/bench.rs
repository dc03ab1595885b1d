//! `mlff bench MODEL`: time per step (energy + forces + virial) against system size,
//! on deterministic water boxes at 1 g/cm³.

use std::path::PathBuf;
use std::time::Instant;

use mlff::{Request, System};

use crate::common::{self, CliResult, EngineArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (.safetensors).
    pub model: PathBuf,
    /// Target sizes in atoms (rounded up to whole water molecules).
    #[arg(long, value_delimiter = ',', default_values_t = vec![50usize, 200, 500, 1000, 3000])]
    pub sizes: Vec<usize>,
    /// Timed calls per size (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Untimed calls per size before timing.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Evaluate the same coordinates as an open cluster (no cell) instead of a periodic box.
    #[arg(long)]
    pub open: bool,
    /// Seed of the water-box generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write a log-log plot of time per step against atoms.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write each benchmark structure here (extended XYZ), for reuse.
    #[arg(long)]
    pub xyz: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

struct Row {
    atoms: usize,
    pairs_note: String,
    median_s: f64,
    min_s: f64,
    max_s: f64,
}

pub fn run(args: Args) -> CliResult {
    if args.repeats == 0 {
        return Err("--repeats must be at least 1".into());
    }
    if args.sizes.is_empty() || args.sizes.contains(&0) {
        return Err("--sizes must list positive atom counts".into());
    }
    let mut model = common::load_model(&args.model, &args.engine)?;
    let engine = model.engine_description();
    eprintln!(
        "bench: {} water boxes at 1 g/cm3, {} warm-up + {} timed calls each, energy+forces+virial, engine {engine}",
        if args.open { "open (no cell)" } else { "periodic" },
        args.warmup,
        args.repeats
    );
    let mut rows = Vec::new();
    let mut structures = String::new();
    for &size in &args.sizes {
        let water = mlff::structures::water_box(size.div_ceil(3), 1.0, args.seed);
        let cell = water.cell.unwrap_or_default();
        let n = water.numbers.len();
        let system = if args.open {
            System::molecule(&water.numbers, &water.positions)
        } else {
            System::periodic(&water.numbers, &water.positions, cell, [true; 3])
        };
        if args.xyz.is_some() {
            let frame = mlff::io::extxyz::Frame::new(
                water.numbers.clone(),
                water.positions.clone(),
                (!args.open).then_some(cell),
                [!args.open; 3],
            );
            mlff::io::extxyz::write_frame(&mut structures, &frame, &Default::default());
        }
        let call = |model: &mut mlff::Model| -> CliResult<f64> {
            let start = Instant::now();
            let r = model
                .compute(&system, &Request::FORCES_VIRIAL)
                .map_err(|e| format!("{n} atoms: {e}"))?;
            let t = start.elapsed().as_secs_f64();
            std::hint::black_box(&r);
            Ok(t)
        };
        for _ in 0..args.warmup {
            call(&mut model)?;
        }
        let mut times: Vec<f64> = (0..args.repeats)
            .map(|_| call(&mut model))
            .collect::<CliResult<_>>()?;
        times.sort_by(f64::total_cmp);
        let median = if times.len() % 2 == 1 {
            times[times.len() / 2]
        } else {
            0.5 * (times[times.len() / 2 - 1] + times[times.len() / 2])
        };
        let edge = cell[0][0];
        rows.push(Row {
            atoms: n,
            pairs_note: format!("{edge:.2}"),
            median_s: median,
            min_s: times[0],
            max_s: times[times.len() - 1],
        });
        eprintln!("  {n} atoms: median {:.3} ms", median * 1e3);
    }
    println!("engine: {engine}");
    println!(
        "{:>8} {:>9} {:>12} {:>12} {:>12} {:>14} {:>12}",
        "atoms", "box (A)", "median ms", "min ms", "max ms", "atom-steps/s", "ns/day@1fs"
    );
    for r in &rows {
        println!(
            "{:>8} {:>9} {:>12.4} {:>12.4} {:>12.4} {:>14.4e} {:>12.4}",
            r.atoms,
            r.pairs_note,
            r.median_s * 1e3,
            r.min_s * 1e3,
            r.max_s * 1e3,
            r.atoms as f64 / r.median_s,
            ns_per_day(r.median_s)
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "model": args.model.display().to_string(),
            "engine": engine,
            "boundary": if args.open { "open" } else { "periodic" },
            "request": "energy+forces+virial",
            "warmup": args.warmup,
            "repeats": args.repeats,
            "results": rows.iter().map(|r| serde_json::json!({
                "atoms": r.atoms,
                "median_ms": r.median_s * 1e3,
                "min_ms": r.min_s * 1e3,
                "max_ms": r.max_s * 1e3,
                "atom_steps_per_s": r.atoms as f64 / r.median_s,
                "ns_per_day_at_1fs": ns_per_day(r.median_s),
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
        common::write_atomically(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.png {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.atoms as f64, r.median_s * 1e3))
            .collect();
        let title = format!("ms/step vs atoms ({})", plot_safe(&engine));
        let canvas = crate::plot::plot_time_per_step(&points, &title);
        common::write_atomically(path, &canvas.to_png())?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.xyz {
        common::write_atomically(path, structures.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn ns_per_day(seconds_per_step: f64) -> f64 {
    86_400.0 / seconds_per_step * 1e-6
}

/// The engine description in the characters the plot font has.
fn plot_safe(text: &str) -> String {
    text.to_lowercase()
}
