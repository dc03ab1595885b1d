//! `mlff convert`: MLFF-Distiller checkpoints (torch.save) and ONNX exports to mlff
//! model files (safetensors, `docs/model-format.md`).
//!
//! The conversion is `tools/convert_model.py`, a standard-library-only Python script
//! embedded in this crate and fed to `python3 -` on stdin, so neither users nor CI
//! need torch, numpy or the onnx package. Its output goes to a temporary file next
//! to the destination, is validated with [`load_model_file`], and only then renamed
//! into place: a failed conversion leaves nothing behind.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ModelFormatError, Result};
use crate::model::{load_model_file, ModelFile};

/// The converter script, as shipped in `tools/convert_model.py`.
pub const CONVERTER_SCRIPT: &str = include_str!("../tools/convert_model.py");

/// Prefix of the converter's stderr lines.
const PROG: &str = "convert_model.py: ";

/// Makes temporary file names unique between conversions running in one process.
static CONVERSION_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Options of [`convert_model_with`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Elements the model was trained on ("H,C,N,O"); recorded in the file, other
    /// elements are then rejected at run time.
    pub species: Option<String>,
    /// Free text placed before the automatic provenance (source file, sha256, date).
    pub provenance: Option<String>,
    /// Python interpreter; default: `$MLFF_PYTHON`, else `python3` on PATH.
    pub python: Option<OsString>,
}

/// A finished conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The written file, loaded and validated.
    pub model: ModelFile,
    /// The converter's one-line description of the model, e.g. `hidden_dim=128 num_rbf=20
    /// num_interactions=3 cutoff=5.0 max_z=100; 35 tensors, 427323 numbers (F32)`.
    pub summary: String,
    /// Things the converter did that users should know, e.g. that it dropped the
    /// last block's `mixing_matrix`.
    pub notes: Vec<String>,
}

/// Converts a PyTorch checkpoint or ONNX export at `input` into a model file at
/// `output`, optionally recording the model's `species` ("H,C,N,O"). The converter's
/// notes are printed on stderr; use [`convert_model_with`] to receive them instead.
pub fn convert_model(input: &Path, output: &Path, species: Option<&str>) -> Result<()> {
    let options = ConvertOptions {
        species: species.map(str::to_string),
        ..ConvertOptions::default()
    };
    let conversion = convert_model_with(input, output, &options)?;
    for note in &conversion.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// [`convert_model`] with all options; returns the validated model and the notes.
pub fn convert_model_with(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<Conversion> {
    let metadata = std::fs::metadata(input)
        .map_err(|e| Error::Io(format!("cannot read `{}`: {e}", input.display())))?;
    if metadata.is_dir() {
        return Err(Error::Io(format!(
            "cannot read `{}`: it is a directory",
            input.display()
        )));
    }
    let file_name = output.file_name().ok_or_else(|| {
        Error::invalid(format!(
            "output path `{}` does not name a file",
            output.display()
        ))
    })?;
    let directory = match output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        return Err(Error::Io(format!(
            "cannot write `{}`: folder `{}` does not exist",
            output.display(),
            directory.display()
        )));
    }
    if output.is_dir() {
        return Err(Error::Io(format!(
            "cannot write `{}`: it is a directory",
            output.display()
        )));
    }
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize()) {
        if a == b {
            return Err(Error::invalid(format!(
                "the output `{}` is the input file",
                output.display()
            )));
        }
    }
    let mut temporary_name = OsString::from(".");
    temporary_name.push(file_name);
    temporary_name.push(format!(
        ".mlff-convert-{}-{}.tmp",
        std::process::id(),
        CONVERSION_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temporary = directory.join(temporary_name);

    let python = options
        .python
        .clone()
        .or_else(|| std::env::var_os("MLFF_PYTHON").filter(|p| !p.is_empty()))
        .unwrap_or_else(|| OsString::from("python3"));
    let result = run_converter(&python, input, &temporary, options).and_then(|(summary, notes)| {
        // The script names the temporary file; keep only what it says about the model.
        let written = format!("wrote {}: ", temporary.display());
        let summary = summary
            .strip_prefix(&written)
            .map(str::to_string)
            .unwrap_or(summary);
        let model = load_model_file(&temporary)?;
        std::fs::rename(&temporary, output)
            .map_err(|e| Error::Io(format!("cannot write `{}`: {e}", output.display())))?;
        Ok(Conversion {
            model,
            summary,
            notes,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Runs the script; returns (summary, notes) or the typed error it reported.
fn run_converter(
    python: &OsStr,
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<(String, Vec<String>)> {
    let mut command = Command::new(python);
    // -I: isolated mode, so PYTHONPATH or a stray module in the current folder
    // cannot replace the standard library the script relies on.
    command.arg("-I").arg("-").arg("--json-errors");
    // `--key=value`, so that a value starting with '-' is not taken for an option.
    if let Some(species) = &options.species {
        command.arg(format!("--species={species}"));
    }
    if let Some(provenance) = &options.provenance {
        command.arg(format!("--provenance={provenance}"));
    }
    command.arg("--").arg(input).arg(output);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Io(format!(
                "mlff convert needs python3 (3.8+) on PATH to run its converter (standard library only: \
                 no torch, numpy or onnx needed); `{}` was not found. Install Python 3 or set MLFF_PYTHON \
                 to an interpreter",
                python.to_string_lossy()
            ))
        } else {
            Error::Io(format!("cannot start `{}` for mlff convert: {e}", python.to_string_lossy()))
        }
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // Python reads the whole program before running it; a write error means it
        // exited early, and its status and stderr say why.
        let _ = stdin.write_all(CONVERTER_SCRIPT.as_bytes());
    }
    let finished = child.wait_with_output().map_err(|e| {
        Error::Io(format!(
            "waiting for `{}` (mlff convert): {e}",
            python.to_string_lossy()
        ))
    })?;
    let stderr = String::from_utf8_lossy(&finished.stderr);
    if finished.status.success() {
        let notes = stderr
            .lines()
            .filter_map(|line| {
                line.strip_prefix(PROG)
                    .and_then(|l| l.strip_prefix("note: "))
            })
            .map(str::to_string)
            .collect();
        let summary = String::from_utf8_lossy(&finished.stdout).trim().to_string();
        return Ok((summary, notes));
    }
    if let Some(json) = stderr.lines().find_map(|line| {
        line.strip_prefix(PROG)
            .and_then(|l| l.strip_prefix("error-json: "))
    }) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
            return Err(typed_error(&value));
        }
    }
    let tail: Vec<&str> = stderr
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let tail = tail.join(" | ");
    if stderr.contains("needs Python 3.8") || stderr.contains("SyntaxError") {
        return Err(Error::Io(format!(
            "mlff convert needs python3 3.8 or newer; `{}` failed: {tail}",
            python.to_string_lossy()
        )));
    }
    Err(Error::Internal(format!(
        "the model converter failed ({}): {tail}",
        finished.status
    )))
}

/// Maps the converter's JSON error report to the crate's typed errors.
fn typed_error(value: &serde_json::Value) -> Error {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let sizes = |key: &str| -> Vec<usize> {
        value
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let message = text("message");
    match value
        .get("kind")
        .and_then(|v| v.as_str())
        .unwrap_or("format")
    {
        "io" => Error::Io(message),
        "argument" => Error::InvalidArgument(message),
        "internal" => Error::Internal(message),
        "missing-tensor" => ModelFormatError::MissingTensor(text("name")).into(),
        "unexpected-tensor" => ModelFormatError::UnexpectedTensor(text("name")).into(),
        "wrong-shape" => ModelFormatError::WrongShape {
            name: text("name"),
            expected: sizes("expected"),
            found: sizes("found"),
        }
        .into(),
        "wrong-dtype" => ModelFormatError::WrongDtype {
            name: text("name"),
            found: text("found"),
        }
        .into(),
        "non-finite" => ModelFormatError::NonFinite {
            name: text("name"),
            index: value.get("index").and_then(|v| v.as_u64()).unwrap_or(0) as usize,
        }
        .into(),
        _ => ModelFormatError::Inconsistent(message).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random::random_student;
    use crate::model::{StudentConfig, StudentWeights};

    /// A fresh empty folder under the system temp dir, removed on drop.
    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("mlff-convert-test-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create scratch folder");
            Scratch(path)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn python_available() -> bool {
        let ok = Command::new("python3")
            .arg("-c")
            .arg("import sys; sys.exit(sys.version_info < (3, 8))")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIP: python3 >= 3.8 not found on PATH; the converter cannot run");
        }
        ok
    }

    // Minimal protobuf writer for ONNX test files.
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }
    fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn onnx_tensor(name: &str, shape: &[usize], values: &[f64]) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in shape {
            field_varint(&mut t, 1, d as u64);
        }
        field_varint(&mut t, 2, 1); // FLOAT
        field_bytes(&mut t, 8, name.as_bytes());
        let raw: Vec<u8> = values
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect();
        field_bytes(&mut t, 9, &raw);
        t
    }

    fn onnx_model(tensors: &[(String, Vec<usize>, Vec<f64>)]) -> Vec<u8> {
        let mut graph = Vec::new();
        field_bytes(&mut graph, 2, b"main_graph");
        for (name, shape, values) in tensors {
            field_bytes(&mut graph, 5, &onnx_tensor(name, shape, values));
        }
        let mut model = Vec::new();
        field_varint(&mut model, 1, 7);
        field_bytes(&mut model, 2, b"pytorch");
        field_bytes(&mut model, 3, b"2.5.1");
        field_bytes(&mut model, 7, &graph);
        let mut opset = Vec::new();
        field_varint(&mut opset, 2, 14);
        field_bytes(&mut model, 8, &opset);
        model
    }

    /// The weights under their state-dict names, plus a last-block mixing matrix as
    /// the PyTorch model has (the converter must drop it).
    fn state_dict(weights: &StudentWeights) -> Vec<(String, Vec<usize>, Vec<f64>)> {
        let c = &weights.config;
        let shapes = crate::model::expected_shapes(c);
        let mut out = vec![
            ("embedding.weight".to_string(), weights.embedding.clone()),
            ("rbf.centers".to_string(), weights.rbf_centers.clone()),
            ("rbf.widths".to_string(), weights.rbf_widths.clone()),
        ];
        for (l, block) in weights.blocks.iter().enumerate() {
            let p = format!("interactions.{l}");
            for (suffix, layer) in [
                ("message.rbf_to_scalar.0", &block.filter1),
                ("message.rbf_to_scalar.2", &block.filter2),
                ("update.update_mlp.0", &block.update1),
                ("update.update_mlp.2", &block.update2),
            ] {
                out.push((format!("{p}.{suffix}.weight"), layer.weight.clone()));
                out.push((format!("{p}.{suffix}.bias"), layer.bias.clone()));
            }
            if let Some(m) = &block.mixing {
                out.push((
                    format!("{p}.update.mixing_matrix"),
                    m.iter().flatten().copied().collect(),
                ));
            }
        }
        for (i, layer) in weights.head.iter().enumerate() {
            out.push((
                format!("energy_head.{}.weight", 2 * i),
                layer.weight.clone(),
            ));
            out.push((format!("energy_head.{}.bias", 2 * i), layer.bias.clone()));
        }
        let mut with_shapes: Vec<(String, Vec<usize>, Vec<f64>)> = out
            .into_iter()
            .map(|(name, values)| (name.clone(), shapes[&name].clone(), values))
            .collect();
        with_shapes.push((
            format!("interactions.{}.update.mixing_matrix", c.num_blocks - 1),
            vec![3, 3],
            vec![0.5; 9],
        ));
        with_shapes
    }

    fn small_student() -> StudentWeights {
        random_student(
            &StudentConfig {
                hidden: 8,
                num_rbf: 4,
                num_blocks: 2,
                cutoff: 5.0,
                max_z: 10,
            },
            7,
        )
    }

    #[test]
    fn round_trip_through_onnx_keeps_every_weight() {
        if !python_available() {
            return;
        }
        let scratch = Scratch::new("roundtrip");
        let weights = small_student();
        let input = scratch.0.join("small.onnx");
        std::fs::write(&input, onnx_model(&state_dict(&weights))).unwrap();
        let output = scratch.0.join("small.safetensors");
        let options = ConvertOptions {
            species: Some("O,H,C".into()),
            provenance: Some("unit test".into()),
            python: None,
        };
        let conversion =
            convert_model_with(&input, &output, &options).expect("conversion succeeds");
        assert_eq!(
            conversion.model.weights, weights,
            "weights differ after the round trip"
        );
        assert_eq!(conversion.model.metadata.species, Some(vec![1, 6, 8]));
        assert!(conversion
            .model
            .metadata
            .provenance
            .starts_with("unit test | converted from small.onnx (sha256 "));
        assert!(conversion
            .model
            .metadata
            .provenance
            .contains("pytorch 2.5.1"));
        assert!(
            conversion
                .notes
                .iter()
                .any(|n| n.contains("interactions.1.update.mixing_matrix")),
            "notes: {:?}",
            conversion.notes
        );
        assert!(
            conversion.summary.starts_with(
                "hidden_dim=8 num_rbf=4 num_interactions=2 cutoff=5.0 max_z=10 species=H,C,O;"
            ),
            "summary: {}",
            conversion.summary
        );
        // The file on disk is what was validated, and no temporary file is left.
        let reloaded = load_model_file(&output).unwrap();
        assert_eq!(reloaded.weights, weights);
        let leftovers: Vec<_> = std::fs::read_dir(&scratch.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "unexpected files: {leftovers:?}");
    }

    #[test]
    fn errors_are_typed_and_leave_nothing_behind() {
        if !python_available() {
            return;
        }
        let scratch = Scratch::new("errors");
        let output = scratch.0.join("out.safetensors");
        let weights = small_student();

        let missing = convert_model(&scratch.0.join("absent.onnx"), &output, None).unwrap_err();
        assert!(
            matches!(&missing, Error::Io(m) if m.contains("absent.onnx")),
            "{missing:?}"
        );

        let garbage = scratch.0.join("garbage.bin");
        std::fs::write(&garbage, b"\xff\xfe this is not a model at all \x00\x01").unwrap();
        let error = convert_model(&garbage, &output, None).unwrap_err();
        assert!(
            matches!(&error, Error::ModelFormat(ModelFormatError::Inconsistent(m)) if m.contains("neither")),
            "{error:?}"
        );

        let mut tensors = state_dict(&weights);
        tensors.retain(|(name, _, _)| name != "energy_head.4.bias");
        let input = scratch.0.join("missing.onnx");
        std::fs::write(&input, onnx_model(&tensors)).unwrap();
        let error = convert_model(&input, &output, None).unwrap_err();
        assert_eq!(
            error,
            Error::ModelFormat(ModelFormatError::MissingTensor("energy_head.4.bias".into()))
        );

        let mut tensors = state_dict(&weights);
        tensors
            .iter_mut()
            .find(|(name, _, _)| name == "rbf.widths")
            .unwrap()
            .2[2] = f64::NAN;
        let input = scratch.0.join("nan.onnx");
        std::fs::write(&input, onnx_model(&tensors)).unwrap();
        let error = convert_model(&input, &output, None).unwrap_err();
        assert_eq!(
            error,
            Error::ModelFormat(ModelFormatError::NonFinite {
                name: "rbf.widths".into(),
                index: 2
            })
        );

        let mut tensors = state_dict(&weights);
        tensors
            .iter_mut()
            .find(|(name, _, _)| name == "energy_head.0.bias")
            .unwrap()
            .1 = vec![2, 2];
        let input = scratch.0.join("shape.onnx");
        std::fs::write(&input, onnx_model(&tensors)).unwrap();
        let error = convert_model(&input, &output, None).unwrap_err();
        assert_eq!(
            error,
            Error::ModelFormat(ModelFormatError::WrongShape {
                name: "energy_head.0.bias".into(),
                expected: vec![4],
                found: vec![2, 2]
            })
        );

        let mut tensors = state_dict(&weights);
        tensors.push(("readout.scale".into(), vec![1], vec![1.0]));
        let input = scratch.0.join("extra.onnx");
        std::fs::write(&input, onnx_model(&tensors)).unwrap();
        let error = convert_model(&input, &output, None).unwrap_err();
        assert_eq!(
            error,
            Error::ModelFormat(ModelFormatError::UnexpectedTensor("readout.scale".into()))
        );

        let input = scratch.0.join("good.onnx");
        std::fs::write(&input, onnx_model(&state_dict(&weights))).unwrap();
        // max_z is 10 here, so sodium (11) is beyond the embedding.
        let error = convert_model(&input, &output, Some("H,Na")).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument(m) if m.contains("Na")),
            "{error:?}"
        );
        let error = convert_model(&input, &output, Some("H,Xx")).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument(m) if m.contains("Xx")),
            "{error:?}"
        );

        let error = convert_model(
            &input,
            &scratch.0.join("no/such/folder/out.safetensors"),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&error, Error::Io(m) if m.contains("does not exist")),
            "{error:?}"
        );
        let error = convert_model(&input, &input, None).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument(m) if m.contains("is the input")),
            "{error:?}"
        );
        let error = convert_model(&input, &output, Some("-H")).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidArgument(m) if m.contains("`-H`")),
            "{error:?}"
        );

        let options = ConvertOptions {
            python: Some("/nonexistent/python3".into()),
            ..ConvertOptions::default()
        };
        let error = convert_model_with(&input, &output, &options).unwrap_err();
        assert!(
            matches!(&error, Error::Io(m) if m.contains("needs python3")),
            "{error:?}"
        );

        let leftovers: Vec<_> = std::fs::read_dir(&scratch.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".onnx") && !name.ends_with(".bin"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "failed conversions left files: {leftovers:?}"
        );
    }

    #[test]
    fn converts_the_released_students() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models");
        if !models.is_dir() {
            eprintln!(
                "SKIP: {} is absent; the released students cannot be converted here",
                models.display()
            );
            return;
        }
        if !python_available() {
            return;
        }
        let scratch = Scratch::new("released");
        // (stem, H, K, L, numbers) as documented in shared/docs/student-model.md.
        let released = [
            ("student_427k", 128, 20, 3, 427_323usize),
            ("student_tiny_77k", 64, 12, 2, 77_218),
            ("student_ultra_tiny_21k", 32, 10, 2, 21_470),
        ];
        for (stem, hidden, num_rbf, num_blocks, numbers) in released {
            let input = models.join(format!("{stem}.onnx"));
            if !input.is_file() {
                eprintln!("SKIP: {} is absent", input.display());
                continue;
            }
            let output = scratch.0.join(format!("{stem}.safetensors"));
            let conversion = convert_model_with(&input, &output, &ConvertOptions::default())
                .expect("released student converts");
            let w = conversion.model.weights.student().expect("a student");
            assert_eq!(
                (w.config.hidden, w.config.num_rbf, w.config.num_blocks),
                (hidden, num_rbf, num_blocks),
                "{stem}"
            );
            assert_eq!((w.config.cutoff, w.config.max_z), (5.0, 100), "{stem}");
            let count = w.embedding.len()
                + w.rbf_centers.len()
                + w.rbf_widths.len()
                + w.blocks
                    .iter()
                    .map(|b| {
                        [&b.filter1, &b.filter2, &b.update1, &b.update2]
                            .iter()
                            .map(|l| l.weight.len() + l.bias.len())
                            .sum::<usize>()
                            + if b.mixing.is_some() { 9 } else { 0 }
                    })
                    .sum::<usize>()
                + w.head
                    .iter()
                    .map(|l| l.weight.len() + l.bias.len())
                    .sum::<usize>();
            assert_eq!(count, numbers, "{stem}: number of weights");
            assert!(
                w.blocks[num_blocks - 1].mixing.is_none() && w.blocks[0].mixing.is_some(),
                "{stem}"
            );
            let codes: Vec<&str> = conversion.model.warnings.iter().map(|w| w.code).collect();
            assert!(
                codes.contains(&"not-rotation-invariant")
                    && codes.contains(&"energy-discontinuous-at-cutoff"),
                "{stem}: {codes:?}"
            );
            let provenance = &conversion.model.metadata.provenance;
            assert!(
                provenance.contains(&format!("{stem}.onnx"))
                    && provenance.contains("pytorch 2.5.1"),
                "{stem}: {provenance}"
            );
            assert_eq!(conversion.model.metadata.species, None);
        }
    }

    #[test]
    fn converts_the_committed_torch_checkpoint() {
        let checkpoint =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/student_random_h16.pt");
        if !checkpoint.is_file() {
            eprintln!("SKIP: {} is absent", checkpoint.display());
            return;
        }
        if !python_available() {
            return;
        }
        let scratch = Scratch::new("h16");
        let output = scratch.0.join("h16.safetensors");
        let options = ConvertOptions {
            species: Some("H,C,N,O".into()),
            ..ConvertOptions::default()
        };
        let conversion =
            convert_model_with(&checkpoint, &output, &options).expect("torch checkpoint converts");
        let student = conversion.model.weights.student().expect("a student");
        let c = &student.config;
        // The checkpoint's own config (torch.save of model_state_dict + config); the
        // converter checks it against the shapes, the loader against the metadata.
        // As documented in tests/data/README.md.
        assert_eq!(
            (c.hidden, c.num_rbf, c.num_blocks, c.cutoff, c.max_z),
            (16, 8, 3, 4.0, 20)
        );
        assert_eq!(student.blocks.len(), c.num_blocks);
        assert!(student.blocks[c.num_blocks - 1].mixing.is_none());
        let dropped = format!("interactions.{}.update.mixing_matrix", c.num_blocks - 1);
        assert!(
            conversion.notes.iter().any(|n| n.contains(&dropped)),
            "notes: {:?}",
            conversion.notes
        );
        assert!(conversion
            .model
            .metadata
            .provenance
            .contains("torch.save zip checkpoint"));
        assert_eq!(conversion.model.metadata.species, Some(vec![1, 6, 7, 8]));
    }
}
