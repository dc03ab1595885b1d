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
    let m = &file.metadata;
    let shapes = match &file.weights {
        mlff::model::ModelWeights::Student(w) => mlff::model::expected_shapes(&w.config),
        mlff::model::ModelWeights::Painn(w) => mlff::model::painn::expected_shapes(&w.config),
    };
    let n_parameters: usize = shapes
        .values()
        .map(|shape| shape.iter().product::<usize>())
        .sum();
    let (hidden, num_rbf, num_blocks, max_z, cutoff) = (
        file.weights.hidden(),
        match &file.weights {
            mlff::model::ModelWeights::Student(w) => w.config.num_rbf,
            mlff::model::ModelWeights::Painn(w) => w.config.num_rbf,
        },
        file.weights.num_blocks(),
        file.weights.max_z(),
        file.weights.cutoff(),
    );
    let species = match &m.species {
        Some(list) => list
            .iter()
            .map(|&z| mlff::elements::symbol(z).unwrap_or("?"))
            .collect::<Vec<_>>()
            .join(","),
        None => {
            let last = mlff::elements::symbol(max_z as u32).unwrap_or("?");
            format!(
                "not recorded: any element with Z = 1..{} (H..{last})",
                max_z
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
    println!("hidden width H:   {}", hidden);
    println!("radial basis K:   {}", num_rbf);
    println!("blocks L:         {}", num_blocks);
    println!("max_z:            {}", max_z);
    if let mlff::model::ModelWeights::Painn(w) = &file.weights {
        let c = &w.config;
        println!(
            "painn:            shared filters {}, shared interactions {}, epsilon {:e}, readout widths {:?}, energy scale {}",
            c.shared_filters, c.shared_interactions, c.epsilon, c.readout_widths, w.energy_scale
        );
    }
    println!("parameters:       {n_parameters}");
    println!("cutoff:           {} Å (edges with d <= rc)", cutoff);
    println!("layers:           {} (message-passing)", num_blocks);
    println!(
        "receptive field:  {} Å (layers x cutoff)",
        num_blocks as f64 * cutoff
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
