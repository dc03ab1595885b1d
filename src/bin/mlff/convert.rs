//! `mlff convert IN OUT.safetensors`: MLFF-Distiller checkpoints and ONNX exports
//! to mlff model files (the work is `mlff::convert`).

use std::path::PathBuf;

use crate::common::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// PyTorch checkpoint (.pt/.pth, torch.save of a dict with model_state_dict and
    /// config, or a bare state dict) or ONNX export (.onnx; weights only).
    pub input: PathBuf,
    /// Output model file (.safetensors).
    pub output: PathBuf,
    /// Elements the model was trained on, e.g. H,C,N,O; others are then rejected.
    #[arg(long)]
    pub species: Option<String>,
    /// Free text recorded in the file's provenance, before the automatic part.
    #[arg(long)]
    pub provenance: Option<String>,
}

pub fn run(args: Args) -> CliResult {
    let options = mlff::convert::ConvertOptions {
        species: args.species.clone(),
        provenance: args.provenance.clone(),
        ..Default::default()
    };
    let conversion = mlff::convert::convert_model_with(&args.input, &args.output, &options)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    for note in &conversion.notes {
        eprintln!("mlff: note: {note}");
    }
    crate::common::print_warnings_to_stderr(&conversion.model.warnings);
    eprintln!("{}", conversion.summary);
    eprintln!(
        "wrote {} (see `mlff info {}`)",
        args.output.display(),
        args.output.display()
    );
    Ok(())
}
