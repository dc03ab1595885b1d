//! `mlff`: command-line tool on top of the public Rust API.
//!
//! Subcommands: `info`, `eval`, `convert`, `md`, `bench`, `random-model`.

#[path = "mlff/bench.rs"]
mod bench;
#[path = "mlff/common.rs"]
mod common;
#[path = "mlff/convert.rs"]
mod convert;
#[path = "mlff/eval.rs"]
mod eval;
#[path = "mlff/info.rs"]
mod info;
#[path = "mlff/masses.rs"]
mod masses;
#[path = "mlff/md.rs"]
mod md;
#[path = "mlff/plot.rs"]
mod plot;
#[path = "mlff/random_model.rs"]
mod random_model;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mlff", version = mlff::VERSION, about = "Fast inference of distilled ML force fields (MLFF-Distiller students)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's architecture, hyper-parameters, units, species, provenance and defects.
    Info(info::Args),
    /// Energy, forces, virial and stress of every frame of an extended XYZ file.
    Eval(eval::Args),
    /// Convert an MLFF-Distiller checkpoint (.pt) or ONNX export to an mlff model file.
    Convert(convert::Args),
    /// Molecular dynamics: velocity Verlet (NVE) or Langevin (NVT), with a trajectory.
    Md(md::Args),
    /// Time per step against system size (water boxes); table, JSON and PNG plot.
    Bench(bench::Args),
    /// Write a student with random weights: a plumbing/test model, NOT a force field.
    RandomModel(random_model::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Md(args) => md::run(args),
        Command::Bench(args) => bench::run(args),
        Command::RandomModel(args) => random_model::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mlff: error: {message}");
            ExitCode::FAILURE
        }
    }
}
