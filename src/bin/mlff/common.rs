//! Pieces shared by the subcommands.

use mlff::{Device, Options, Precision};

/// Errors of the command-line tool are reported as one message.
pub type CliResult<T = ()> = Result<T, String>;

/// Engine options shared by `eval`, `md` and `bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Arithmetic precision: f64 (reference), f32 (default) or mixed.
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Where to compute: cpu, cuda or auto (CUDA if usable, else CPU).
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device_index: i32,
    /// CPU threads (0: MLFF_NUM_THREADS, else OMP_NUM_THREADS, else all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
}

impl EngineArgs {
    pub fn options(&self) -> Options {
        Options {
            device: self.device,
            device_index: self.device_index,
            precision: self.precision,
            num_threads: self.threads,
        }
    }
}

/// Loads a model and prints its warnings (defects) once to stderr.
pub fn load_model(path: &std::path::Path, engine: &EngineArgs) -> CliResult<mlff::Model> {
    let model = mlff::Model::load(path, &engine.options())
        .map_err(|e| format!("cannot open model {}: {e}", path.display()))?;
    print_warnings_to_stderr(model.warnings());
    Ok(model)
}

pub fn print_warnings_to_stderr(warnings: &[mlff::ModelWarning]) {
    for w in warnings {
        eprintln!("mlff: warning: model defect [{}]: {}", w.code, w.message);
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a
/// rename, so `path` never holds a partial file.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> CliResult {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| format!("`{}` is not a file path", path.display()))?;
    let temp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("cannot write `{}`: {e}", path.display()));
    }
    Ok(())
}

/// An extended XYZ error with the file name in front.
pub fn located(path: &std::path::Path, e: mlff::io::extxyz::ExtxyzError) -> String {
    match e {
        mlff::io::extxyz::ExtxyzError::Io { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

/// A library error about one frame, with the frame index and the most specific line:
/// the first atom the model cannot take, else the comment line (cell, pbc).
pub fn frame_error(
    path: &std::path::Path,
    frame: &mlff::io::extxyz::Frame,
    model: &mlff::Model,
    e: mlff::Error,
) -> String {
    let line = match &e {
        mlff::Error::InvalidArgument(_) => match frame
            .numbers
            .iter()
            .position(|&z| !model.file().supports(z))
        {
            Some(i) => frame.atom_line(i),
            None => frame.comment_line(),
        },
        _ => frame.line,
    };
    format!(
        "{}: frame index {}, line {line}: {e}",
        path.display(),
        frame.index
    )
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
