//! `mlff md MODEL IN.extxyz`: molecular dynamics with the model's forces.
//!
//! Units: Å, fs, amu, eV. Integrators: velocity Verlet (NVE) and Langevin
//! (BAOAB splitting, NVT). The "conserved" energy printed for Langevin runs is
//! E_pot + E_kin minus the heat the thermostat put in, so its drift measures the
//! integrator and the model in both cases.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use mlff::io::extxyz::{self, Column, Frame, FrameOutputs};
use mlff::model::random::SplitMix64;
use mlff::{Request, System};

use crate::common::{self, CliResult, EngineArgs};

/// Boltzmann constant, eV/K.
const KB_EV_PER_K: f64 = 8.617_333_262e-5;
/// 1 eV/(Å amu) in Å/fs²: (e / amu) * 1e10 m/s², and 1 m/s² = 1e-20 Å/fs².
const ACCEL_PER_EV_ANGSTROM_AMU: f64 = (1.602_176_634e-19 / 1.660_539_066_60e-27) * 1e-10;

/// ASE's time unit (Å sqrt(amu/eV)) per fs is 1/UNITS_FS; ASE momenta are amu Å per that unit.
fn ase_units_fs() -> f64 {
    1e-15 * 1e10 * (1.602_176_634e-19f64 / 1.660_539_066_60e-27).sqrt()
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thermostat {
    /// Velocity Verlet, constant energy.
    Nve,
    /// Langevin dynamics (BAOAB), constant temperature.
    Langevin,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (.safetensors).
    pub model: PathBuf,
    /// Starting structure, extended XYZ (a `masses` column overrides the standard
    /// masses; a `momenta` column, as ASE writes it, gives the initial velocities
    /// when no --temperature is set).
    pub input: PathBuf,
    /// Which frame of IN to start from (counted from 0).
    #[arg(long, default_value_t = 0)]
    pub frame: usize,
    /// Number of MD steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Time step in fs.
    #[arg(long, default_value_t = 0.5)]
    pub dt_fs: f64,
    /// Temperature in K: initial Maxwell-Boltzmann velocities (zero net momentum) and
    /// the Langevin target. Without it the atoms start at rest (or from `momenta`).
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long, value_enum, default_value_t = Thermostat::Nve)]
    pub thermostat: Thermostat,
    /// Langevin friction in 1/ps.
    #[arg(long, default_value_t = 1.0)]
    pub friction: f64,
    /// Seed of the velocity and noise generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Trajectory output (extended XYZ with energy, forces, momenta, step, time).
    #[arg(long)]
    pub traj: Option<PathBuf>,
    /// Write a trajectory frame every K steps.
    #[arg(long, default_value_t = 10)]
    pub every: u64,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Standard normal deviates (Box-Muller on SplitMix64).
struct Gaussian {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Gaussian {
    fn next(&mut self) -> f64 {
        if let Some(x) = self.spare.take() {
            return x;
        }
        let u1 = 1.0 - self.rng.uniform(); // (0, 1]
        let u2 = self.rng.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

fn kinetic_energy(masses: &[f64], velocities: &[[f64; 3]]) -> f64 {
    let twice: f64 = masses
        .iter()
        .zip(velocities)
        .map(|(m, v)| m * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]))
        .sum();
    0.5 * twice / ACCEL_PER_EV_ANGSTROM_AMU
}

/// Least-squares slope of y(x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

pub fn run(args: Args) -> CliResult {
    if !(args.dt_fs.is_finite() && args.dt_fs > 0.0) {
        return Err(format!(
            "--dt-fs {} must be a positive number of fs",
            args.dt_fs
        ));
    }
    if args.every == 0 {
        return Err("--every must be at least 1".into());
    }
    if let Some(t) = args.temperature {
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!(
                "--temperature {t} must be a non-negative number of K"
            ));
        }
    }
    let target_temperature = match (args.thermostat, args.temperature) {
        (Thermostat::Langevin, None) => {
            return Err("--thermostat langevin needs --temperature".into())
        }
        (Thermostat::Langevin, Some(t)) => {
            if !(args.friction.is_finite() && args.friction > 0.0) {
                return Err(format!(
                    "--friction {} must be a positive number of 1/ps",
                    args.friction
                ));
            }
            t
        }
        (Thermostat::Nve, t) => t.unwrap_or(0.0),
    };
    let frames = extxyz::read_file(&args.input).map_err(|e| common::located(&args.input, e))?;
    let n_frames = frames.len();
    let frame = frames.into_iter().nth(args.frame).ok_or_else(|| {
        format!(
            "{}: --frame {} but the file has {n_frames} frame(s)",
            args.input.display(),
            args.frame
        )
    })?;
    let mut model = common::load_model(&args.model, &args.engine)?;
    model
        .validate(&frame.system())
        .map_err(|e| common::frame_error(&args.input, &frame, &model, e))?;
    let n = frame.n_atoms();
    if n == 0 {
        return Err(format!(
            "{}: frame index {} has no atoms",
            args.input.display(),
            frame.index
        ));
    }
    let masses = atom_masses(&args, &frame)?;

    // Initial velocities, Å/fs.
    let mut gaussian = Gaussian {
        rng: SplitMix64(args.seed),
        spare: None,
    };
    let mut velocities = vec![[0.0f64; 3]; n];
    let units_fs = ase_units_fs();
    if let Some(t) = args.temperature {
        for (v, &m) in velocities.iter_mut().zip(&masses) {
            let sigma = (KB_EV_PER_K * t / m * ACCEL_PER_EV_ANGSTROM_AMU).sqrt();
            *v = [
                sigma * gaussian.next(),
                sigma * gaussian.next(),
                sigma * gaussian.next(),
            ];
        }
        if n > 1 {
            let total_mass: f64 = masses.iter().sum();
            let mut momentum = [0.0; 3];
            for (v, &m) in velocities.iter().zip(&masses) {
                for a in 0..3 {
                    momentum[a] += m * v[a];
                }
            }
            for v in velocities.iter_mut() {
                for a in 0..3 {
                    v[a] -= momentum[a] / total_mass;
                }
            }
        }
    } else if let Some(momenta) = frame
        .column("momenta")
        .filter(|c| c.width == 3)
        .and_then(|c| c.as_reals())
    {
        for i in 0..n {
            for a in 0..3 {
                velocities[i][a] = momenta[3 * i + a] / masses[i] * units_fs;
            }
        }
    }
    let degrees_of_freedom = match args.thermostat {
        Thermostat::Nve if n > 1 => 3 * n - 3,
        _ => 3 * n,
    } as f64;
    let temperature_of = |ke: f64| 2.0 * ke / (degrees_of_freedom * KB_EV_PER_K);

    let mut positions = frame.positions.clone();
    let request = Request {
        forces: true,
        virial: false,
        atom_energies: false,
        atom_virials: false,
    };
    let compute =
        |model: &mut mlff::Model, positions: &[[f64; 3]], step: u64| -> CliResult<mlff::Results> {
            let system = System {
                numbers: &frame.numbers,
                positions,
                cell: frame.cell,
                pbc: frame.pbc,
                n_local: n,
            };
            let r = model
                .compute(&system, &request)
                .map_err(|e| format!("step {step}: {e}"))?;
            if !r.energy.is_finite() || r.forces.iter().flatten().any(|x| !x.is_finite()) {
                return Err(format!(
                    "step {step}: the model returned a non-finite energy or force"
                ));
            }
            Ok(r)
        };
    let accelerations = |forces: &[[f64; 3]]| -> Vec<[f64; 3]> {
        forces
            .iter()
            .zip(&masses)
            .map(|(f, &m)| f.map(|x| x / m * ACCEL_PER_EV_ANGSTROM_AMU))
            .collect()
    };

    let mut traj = match &args.traj {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?,
        )),
        None => None,
    };
    let write_traj = |traj: &mut Option<std::io::BufWriter<std::fs::File>>,
                      positions: &[[f64; 3]],
                      velocities: &[[f64; 3]],
                      r: &mlff::Results,
                      step: u64,
                      ke: f64|
     -> CliResult {
        let Some(out) = traj.as_mut() else {
            return Ok(());
        };
        let mut snapshot = frame.clone();
        snapshot.positions = positions.to_vec();
        snapshot.columns.retain(|c| c.name != "momenta");
        snapshot.columns.push(Column {
            name: "momenta".into(),
            kind: 'R',
            width: 3,
            values: velocities
                .iter()
                .zip(&masses)
                .flat_map(|(v, &m)| v.map(|x| extxyz::format_real(m * x / units_fs)))
                .collect(),
        });
        let outputs = FrameOutputs {
            energy: Some(r.energy),
            forces: Some(&r.forces),
            virial: None,
            extra_info: vec![
                ("step".into(), step.to_string()),
                (
                    "time_fs".into(),
                    extxyz::format_real(step as f64 * args.dt_fs),
                ),
                ("kinetic_energy".into(), extxyz::format_real(ke)),
                (
                    "temperature_K".into(),
                    extxyz::format_real(temperature_of(ke)),
                ),
            ],
        };
        let mut text = String::new();
        extxyz::write_frame(&mut text, &snapshot, &outputs);
        out.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write the trajectory: {e}"))
    };

    let mut result = compute(&mut model, &positions, 0)?;
    let mut accel = accelerations(&result.forces);
    let mut ke = kinetic_energy(&masses, &velocities);
    let mut heat = 0.0; // energy the thermostat added
    let mut energies: Vec<(f64, f64)> = Vec::with_capacity(args.steps as usize + 1);
    energies.push((0.0, result.energy + ke));
    let initial_total = result.energy + ke;
    write_traj(&mut traj, &positions, &velocities, &result, 0, ke)?;
    eprintln!(
        "md: {n} atoms, {} steps of {} fs, {}, engine {}; E_pot = {:.6} eV, T = {:.2} K",
        args.steps,
        args.dt_fs,
        match args.thermostat {
            Thermostat::Nve => "NVE (velocity Verlet)".to_string(),
            Thermostat::Langevin => format!(
                "NVT Langevin at {target_temperature} K, friction {} 1/ps",
                args.friction
            ),
        },
        model.engine_description(),
        result.energy,
        temperature_of(ke)
    );

    let dt = args.dt_fs;
    let gamma_per_fs = args.friction / 1000.0;
    let c1 = (-gamma_per_fs * dt).exp();
    let c2 = (1.0 - c1 * c1).max(0.0).sqrt();
    let noise_sigma: Vec<f64> = masses
        .iter()
        .map(|&m| (KB_EV_PER_K * target_temperature / m * ACCEL_PER_EV_ANGSTROM_AMU).sqrt())
        .collect();
    let mut temperature_sum = 0.0;
    let bar = common::progress_bar(args.steps, "steps");
    let start = Instant::now();
    for step in 1..=args.steps {
        for i in 0..n {
            for a in 0..3 {
                velocities[i][a] += 0.5 * dt * accel[i][a];
            }
        }
        match args.thermostat {
            Thermostat::Nve => {
                for i in 0..n {
                    for a in 0..3 {
                        positions[i][a] += dt * velocities[i][a];
                    }
                }
            }
            Thermostat::Langevin => {
                for i in 0..n {
                    for a in 0..3 {
                        positions[i][a] += 0.5 * dt * velocities[i][a];
                    }
                }
                let before = kinetic_energy(&masses, &velocities);
                for (v, sigma) in velocities.iter_mut().zip(&noise_sigma) {
                    for x in v.iter_mut() {
                        *x = c1 * *x + c2 * sigma * gaussian.next();
                    }
                }
                heat += kinetic_energy(&masses, &velocities) - before;
                for i in 0..n {
                    for a in 0..3 {
                        positions[i][a] += 0.5 * dt * velocities[i][a];
                    }
                }
            }
        }
        result = compute(&mut model, &positions, step)?;
        accel = accelerations(&result.forces);
        for i in 0..n {
            for a in 0..3 {
                velocities[i][a] += 0.5 * dt * accel[i][a];
            }
        }
        ke = kinetic_energy(&masses, &velocities);
        temperature_sum += temperature_of(ke);
        energies.push((step as f64 * dt * 1e-3, result.energy + ke - heat));
        if step % args.every == 0 {
            write_traj(&mut traj, &positions, &velocities, &result, step, ke)?;
        }
        bar.inc(1);
        if step % 10 == 0 || step == args.steps {
            bar.set_message(format!(
                "E_pot {:.4} eV, T {:.1} K",
                result.energy,
                temperature_of(ke)
            ));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(out) = traj.as_mut() {
        out.flush()
            .map_err(|e| format!("cannot write the trajectory: {e}"))?;
    }

    let final_total = energies.last().map(|e| e.1).unwrap_or(initial_total);
    let drift = slope(&energies) / n as f64;
    println!(
        "steps:            {} x {} fs = {} ps",
        args.steps,
        dt,
        args.steps as f64 * dt * 1e-3
    );
    println!(
        "final:            E_pot = {:.6} eV, E_kin = {:.6} eV, T = {:.2} K",
        result.energy,
        ke,
        temperature_of(ke)
    );
    if args.steps > 0 {
        println!(
            "mean temperature: {:.2} K",
            temperature_sum / args.steps as f64
        );
    }
    let what = if args.thermostat == Thermostat::Nve {
        "total energy"
    } else {
        "total energy - thermostat heat"
    };
    println!("{what}: {:.6} -> {:.6} eV", initial_total, final_total);
    if args.steps > 0 {
        println!(
            "energy drift:     {:.3e} eV/atom/ps (least-squares slope of the {what})",
            drift
        );
        let atom_steps_per_s = (n as f64) * args.steps as f64 / elapsed;
        let ns_per_day = args.steps as f64 * dt * 1e-6 / elapsed * 86_400.0;
        println!(
            "throughput:       {:.4e} atom-steps/s, {:.4} ns/day, {:.3} ms/step ({} steps in {:.2} s, {})",
            atom_steps_per_s,
            ns_per_day,
            elapsed * 1e3 / args.steps as f64,
            args.steps,
            elapsed,
            model.engine_description()
        );
    }
    if let Some(path) = &args.traj {
        println!("trajectory:       {}", path.display());
    }
    Ok(())
}

fn atom_masses(args: &Args, frame: &Frame) -> CliResult<Vec<f64>> {
    if let Some(column) = frame.column("masses").filter(|c| c.width == 1) {
        let masses = column
            .as_reals()
            .ok_or_else(|| format!("{}: the masses column is not numeric", args.input.display()))?;
        if let Some(i) = masses.iter().position(|m| !(m.is_finite() && *m > 0.0)) {
            return Err(format!(
                "{}: frame index {}, line {}: mass of atom {i} is {}, not a positive number",
                args.input.display(),
                frame.index,
                frame.atom_line(i),
                masses[i]
            ));
        }
        return Ok(masses);
    }
    frame
        .numbers
        .iter()
        .enumerate()
        .map(|(i, &z)| {
            crate::masses::standard_mass(z).ok_or_else(|| {
                format!(
                    "{}: frame index {}, line {}: no standard mass for Z={z}; add a masses:R:1 column",
                    args.input.display(),
                    frame.index,
                    frame.atom_line(i)
                )
            })
        })
        .collect()
}
