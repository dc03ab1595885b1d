//! `mlff random-model`: a student with random weights, for plumbing and tests.
//! Its energies mean nothing physically.

use std::path::PathBuf;

use mlff::model::{random::random_student, save_model_bytes, StudentConfig};

use crate::common::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output model file (.safetensors).
    pub output: PathBuf,
    /// Hidden width H (a multiple of 4).
    #[arg(long, default_value_t = 16)]
    pub hidden: usize,
    /// Radial basis size K.
    #[arg(long, default_value_t = 8)]
    pub rbf: usize,
    /// Interaction blocks L.
    #[arg(long, default_value_t = 3)]
    pub blocks: usize,
    /// Cutoff radius in Å.
    #[arg(long, default_value_t = 4.0)]
    pub cutoff: f64,
    /// Largest atomic number the embedding covers.
    #[arg(long, default_value_t = 20)]
    pub max_z: usize,
    /// Seed of the deterministic generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Restrict the model to these elements (metadata), e.g. H,O.
    #[arg(long)]
    pub species: Option<String>,
    /// Store weights as F64 instead of F32.
    #[arg(long)]
    pub f64_storage: bool,
    /// Architecture: `mlff-distiller-student` or `painn` (schnetpack PaiNN: F = --hidden,
    /// separate filters and blocks, readout F -> F/2 -> 1).
    #[arg(long, default_value = "mlff-distiller-student")]
    pub architecture: String,
}

pub fn run(args: Args) -> CliResult {
    if args.hidden == 0 || args.hidden % 4 != 0 {
        return Err(format!(
            "--hidden {} must be a positive multiple of 4",
            args.hidden
        ));
    }
    if args.rbf < 2 {
        return Err(format!("--rbf {} must be at least 2", args.rbf));
    }
    if args.blocks == 0 {
        return Err("--blocks must be at least 1".into());
    }
    if !(args.cutoff.is_finite() && args.cutoff > 0.0) {
        return Err(format!(
            "--cutoff {} must be a positive number of Å",
            args.cutoff
        ));
    }
    if !(1..=118).contains(&args.max_z) {
        return Err(format!("--max-z {} must be in 1..=118", args.max_z));
    }
    let species = match &args.species {
        None => None,
        Some(text) => {
            let numbers =
                mlff::model::parse_species(text).map_err(|e| format!("--species: {e}"))?;
            if let Some(z) = numbers.iter().find(|&&z| z as usize > args.max_z) {
                return Err(format!("--species: Z={z} is beyond --max-z {}", args.max_z));
            }
            Some(
                numbers
                    .iter()
                    .filter_map(|&z| mlff::elements::symbol(z))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
    };
    let config = StudentConfig {
        hidden: args.hidden,
        num_rbf: args.rbf,
        num_blocks: args.blocks,
        cutoff: args.cutoff,
        max_z: args.max_z,
    };
    let provenance = format!("random weights for testing, seed {}", args.seed);
    let mut metadata: Vec<(&str, &str)> = vec![("provenance", &provenance)];
    if let Some(species) = &species {
        metadata.push(("species", species));
    }
    let bytes = match args.architecture.as_str() {
        mlff::model::ARCHITECTURE_STUDENT => {
            let weights = random_student(&config, args.seed);
            save_model_bytes(&weights, args.f64_storage, &metadata).map_err(|e| e.to_string())?
        }
        mlff::model::ARCHITECTURE_PAINN => {
            let painn = mlff::model::PainnConfig {
                hidden: args.hidden,
                num_rbf: args.rbf,
                num_blocks: args.blocks,
                cutoff: args.cutoff,
                max_z: args.max_z,
                shared_filters: false,
                shared_interactions: false,
                epsilon: 1e-8,
                readout_widths: vec![args.hidden, args.hidden / 2, 1],
            };
            let weights = mlff::model::random_painn(&painn, args.seed);
            mlff::model::save_painn_bytes(&weights, args.f64_storage, &metadata)
                .map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "--architecture {other}: expected mlff-distiller-student or painn"
            ))
        }
    };
    // Check that what we write loads back (the loader is the format's authority).
    mlff::model::load_model_bytes(&bytes)
        .map_err(|e| format!("generated model does not load back: {e}"))?;
    crate::common::write_atomically(&args.output, &bytes)?;
    eprintln!(
        "wrote {} (random {} H={} K={} L={} rc={} max_z={} seed={}; for testing only, not a force field)",
        args.output.display(),
        args.architecture,
        args.hidden,
        args.rbf,
        args.blocks,
        args.cutoff,
        args.max_z,
        args.seed
    );
    Ok(())
}
