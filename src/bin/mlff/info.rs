//! `mlff info MODEL`: what a model file is, and what is wrong with it.

use std::path::PathBuf;

use crate::common::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (.safetensors).
    pub model: PathBuf,
}

pub fn run(args: Args) -> CliResult {
    let file = mlff::model::load_model_file(&args.model)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    let c = &file.weights.config;
    let m = &file.metadata;
    let n_parameters: usize = mlff::model::expected_shapes(c)
        .values()
        .map(|shape| shape.iter().product::<usize>())
        .sum();
    let species = match &m.species {
        Some(list) => list
            .iter()
            .map(|&z| mlff::elements::symbol(z).unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(","),
        None => {
            let last = mlff::elements::symbol(c.max_z as u32).unwrap_or("?");
            format!(
                "not recorded: any element with Z = 1..{} (H..{last})",
                c.max_z
            )
        }
    };
    let provenance = if m.provenance.is_empty() {
        "(none recorded)"
    } else {
        m.provenance.as_str()
    };
    println!("model:            {}", args.model.display());
    println!(
        "architecture:     {} (format version {})",
        m.architecture, m.format_version
    );
    println!("hidden width H:   {}", c.hidden);
    println!("radial basis K:   {}", c.num_rbf);
    println!("blocks L:         {}", c.num_blocks);
    println!("max_z:            {}", c.max_z);
    println!("parameters:       {n_parameters}");
    println!("cutoff:           {} Å (edges with d <= rc)", c.cutoff);
    println!("layers:           {} (message-passing)", c.num_blocks);
    println!(
        "receptive field:  {} Å (layers x cutoff)",
        c.num_blocks as f64 * c.cutoff
    );
    println!(
        "units:            energy {}, length {}",
        m.energy_unit, m.length_unit
    );
    println!("species:          {species}");
    println!("provenance:       {provenance}");
    if file.warnings.is_empty() {
        println!("warnings:         none");
    } else {
        println!("warnings:         {} defect(s) found:", file.warnings.len());
        for w in &file.warnings {
            println!("  WARNING [{}]: {}", w.code, w.message);
        }
    }
    Ok(())
}
