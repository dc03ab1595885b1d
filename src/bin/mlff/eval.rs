//! `mlff eval MODEL IN.extxyz OUT.extxyz`: energy, forces, virial (and stress) for
//! every frame. OUT is written at the end through a temporary file and a rename,
//! so it never holds a partial result.

use std::path::PathBuf;
use std::time::Instant;

use mlff::io::extxyz::{self, Frame, FrameOutputs};
use mlff::{Request, Results};

use crate::common::{self, CliResult, EngineArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (.safetensors).
    pub model: PathBuf,
    /// Input structures, extended XYZ (any number of frames).
    pub input: PathBuf,
    /// Output file: the input frames with energy=, virial=, stress= and forces added.
    pub output: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Frames per `compute_batch` call, and the most atoms in one call.
const BATCH_FRAMES: usize = 64;
const BATCH_ATOMS: usize = 50_000;

pub fn run(args: Args) -> CliResult {
    let frames = extxyz::read_file(&args.input).map_err(|e| common::located(&args.input, e))?;
    let mut model = common::load_model(&args.model, &args.engine)?;
    for frame in &frames {
        model
            .validate(&frame.system())
            .map_err(|e| common::frame_error(&args.input, frame, &model, e))?;
    }
    let start = Instant::now();
    let results = compute_all(&mut model, &frames)
        .map_err(|(frame, e)| common::frame_error(&args.input, &frames[frame], &model, e))?;
    let elapsed = start.elapsed().as_secs_f64();
    for (frame, r) in frames.iter().zip(&results) {
        check_finite(frame, r).map_err(|m| {
            format!(
                "{}: frame index {}, line {}: {m}",
                args.input.display(),
                frame.index,
                frame.line
            )
        })?;
    }
    let pairs: Vec<(&Frame, FrameOutputs)> = frames
        .iter()
        .zip(&results)
        .map(|(frame, r)| {
            (
                frame,
                FrameOutputs {
                    energy: Some(r.energy),
                    forces: Some(&r.forces),
                    virial: Some(r.virial),
                    extra_info: Vec::new(),
                },
            )
        })
        .collect();
    common::write_atomically(&args.output, extxyz::write_str(&pairs).as_bytes())?;
    let n_atoms: usize = frames.iter().map(|f| f.n_atoms()).sum();
    eprintln!(
        "evaluated {} frame(s), {} atoms, on {} in {:.3} s; wrote {}",
        frames.len(),
        n_atoms,
        model.engine_description(),
        elapsed,
        args.output.display()
    );
    Ok(())
}

/// Computes every frame in batches; on a failed batch, computes its frames one by
/// one so the error names the frame.
fn compute_all(
    model: &mut mlff::Model,
    frames: &[Frame],
) -> Result<Vec<Results>, (usize, mlff::Error)> {
    let bar = common::progress_bar(frames.len() as u64, "frames");
    let mut results = Vec::with_capacity(frames.len());
    let mut start = 0;
    while start < frames.len() {
        let mut end = start + 1;
        let mut atoms = frames[start].n_atoms();
        while end < frames.len()
            && end - start < BATCH_FRAMES
            && atoms + frames[end].n_atoms() <= BATCH_ATOMS
        {
            atoms += frames[end].n_atoms();
            end += 1;
        }
        let systems: Vec<mlff::System> = frames[start..end].iter().map(|f| f.system()).collect();
        match model.compute_batch(&systems, &Request::FORCES_VIRIAL) {
            Ok(batch) => results.extend(batch),
            Err(_) => {
                // One-by-one results equal batch results, so this only finds the culprit.
                for (k, system) in systems.iter().enumerate() {
                    results.push(
                        model
                            .compute(system, &Request::FORCES_VIRIAL)
                            .map_err(|e| (start + k, e))?,
                    );
                }
            }
        }
        bar.inc((end - start) as u64);
        start = end;
    }
    bar.finish_and_clear();
    Ok(results)
}

fn check_finite(frame: &Frame, r: &Results) -> Result<(), String> {
    if !r.energy.is_finite() {
        return Err(format!(
            "the model returned a non-finite energy ({})",
            r.energy
        ));
    }
    if r.forces.len() != frame.n_atoms() {
        return Err(format!(
            "the model returned {} forces for {} atoms",
            r.forces.len(),
            frame.n_atoms()
        ));
    }
    if let Some(i) = r
        .forces
        .iter()
        .position(|f| f.iter().any(|x| !x.is_finite()))
    {
        return Err(format!(
            "the model returned a non-finite force on atom {i} (line {})",
            frame.atom_line(i)
        ));
    }
    if r.virial.iter().flatten().any(|x| !x.is_finite()) {
        return Err("the model returned a non-finite virial".into());
    }
    Ok(())
}
