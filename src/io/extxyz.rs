//! Extended XYZ, as ASE (`ase.io.read` / `ase.io.write`) reads and writes it.
//!
//! A file is any number of frames; each frame is an atom-count line, a comment
//! line of `key=value` pairs and one line per atom. Conventions followed here
//! (they are ASE's, checked against `ase/io/extxyz.py`):
//!
//! - Values may be quoted with `"..."`, `'...'`, `{...}` or `[...]`; `\` escapes
//!   the next character; a key without `=` means `T`; spaces around `=` are allowed.
//! - `Lattice="a1x a1y a1z a2x a2y a2z a3x a3y a3z"`: the lattice vectors, one after
//!   the other (ASE writes its cell transposed in Fortran order, which is the same).
//! - `pbc="T T F"`; without `pbc`, a frame with a `Lattice` is periodic along all
//!   three axes and one without is open.
//! - `Properties=name:type:ncols:...` with types `R` (real), `I` (integer),
//!   `S` (string), `L` (logical). `pos:R:3` is required, and `species:S:1` (element
//!   symbols, capitalised as ASE does) or `Z:I:1` (atomic numbers; when both are
//!   present `Z` wins, as in ASE, and they must agree). Without `Properties`,
//!   `species:S:1:pos:R:3`.
//! - Any other 3x3 value ASE knows (`virial`, `stress`) is 9 numbers in Fortran
//!   (column-major) order: `W00 W10 W20 W01 W11 W21 W02 W12 W22`.
//! - A comment line without any `=` is a plain XYZ comment; it is kept as
//!   `comment="..."`.
//!
//! Other comment-line entries and other per-atom columns are kept verbatim and
//! written back. The writer adds `energy=` (eV), `virial=` (eV, LAMMPS
//! convention W[a][b] = Σ r_a F_b), `stress=` (ASE convention, -W/V, only for
//! cells periodic along all three axes) and a `forces:R:3` column (eV/Å),
//! replacing any such entries of the input. Every number is written in the
//! shortest form that reads back to the same f64.
//!
//! Errors name the frame (counted from 0, as `ase.io.read(file, index=k)` does)
//! and the line (counted from 1).

use std::fmt::Write as _;
use std::path::Path;

/// Why an extended XYZ file could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtxyzError {
    #[error("cannot read `{path}`: {message}")]
    Io { path: String, message: String },
    /// Malformed content at a known place.
    #[error("frame index {frame}, line {line}: {message}")]
    Parse {
        frame: usize,
        line: usize,
        message: String,
    },
}

impl From<ExtxyzError> for crate::Error {
    fn from(e: ExtxyzError) -> Self {
        match e {
            ExtxyzError::Io { .. } => crate::Error::Io(e.to_string()),
            ExtxyzError::Parse { .. } => crate::Error::InvalidArgument(e.to_string()),
        }
    }
}

/// A per-atom column other than species, Z and pos, kept as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// `R`, `I`, `S` or `L`.
    pub kind: char,
    pub width: usize,
    /// `n_atoms * width` fields, atom-major, exactly as read.
    pub values: Vec<String>,
}

impl Column {
    /// The column as numbers (only for `R` and `I` columns whose fields all parse).
    pub fn as_reals(&self) -> Option<Vec<f64>> {
        if !matches!(self.kind, 'R' | 'I') {
            return None;
        }
        self.values.iter().map(|v| v.parse::<f64>().ok()).collect()
    }
}

/// One structure of an extended XYZ file.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub numbers: Vec<i32>,
    /// Cartesian positions, Å.
    pub positions: Vec<[f64; 3]>,
    /// Lattice vectors as rows, Å.
    pub cell: Option<[[f64; 3]; 3]>,
    pub pbc: [bool; 3],
    /// Whether the input named atoms by a `Z` column (it is written back).
    pub has_z_column: bool,
    /// Other comment-line entries in order; `None` for a bare key (true).
    pub info: Vec<(String, Option<String>)>,
    /// Other per-atom columns in order.
    pub columns: Vec<Column>,
    /// Frame index in its file (from 0).
    pub index: usize,
    /// Line number (from 1) of the atom-count line; the comment is `line + 1`,
    /// atom `i` is on `line + 2 + i`.
    pub line: usize,
}

impl Frame {
    /// An open or periodic frame built in code (no extra columns or info).
    pub fn new(
        numbers: Vec<i32>,
        positions: Vec<[f64; 3]>,
        cell: Option<[[f64; 3]; 3]>,
        pbc: [bool; 3],
    ) -> Frame {
        Frame {
            numbers,
            positions,
            cell,
            pbc,
            has_z_column: false,
            info: Vec::new(),
            columns: Vec::new(),
            index: 0,
            line: 1,
        }
    }

    pub fn n_atoms(&self) -> usize {
        self.numbers.len()
    }

    /// The frame as a library input (all atoms local).
    pub fn system(&self) -> crate::System<'_> {
        crate::System {
            numbers: &self.numbers,
            positions: &self.positions,
            cell: self.cell,
            pbc: self.pbc,
            n_local: self.numbers.len(),
        }
    }

    /// Line number (from 1) of atom `i`.
    pub fn atom_line(&self, i: usize) -> usize {
        self.line + 2 + i
    }

    /// Line number (from 1) of the comment line.
    pub fn comment_line(&self) -> usize {
        self.line + 1
    }

    /// A comment-line value by key.
    pub fn info_value(&self, key: &str) -> Option<Option<&str>> {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// A per-atom column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Cell volume |det(cell)| in Å³ when the frame is periodic along all three axes.
    pub fn periodic_volume(&self) -> Option<f64> {
        let c = self.cell?;
        if !self.pbc.iter().all(|&p| p) {
            return None;
        }
        let det = c[0][0] * (c[1][1] * c[2][2] - c[1][2] * c[2][1])
            - c[0][1] * (c[1][0] * c[2][2] - c[1][2] * c[2][0])
            + c[0][2] * (c[1][0] * c[2][1] - c[1][1] * c[2][0]);
        (det != 0.0 && det.is_finite()).then_some(det.abs())
    }
}

/// Computed values to write with a frame. Fields left `None` are not written (and
/// stale entries of the same name in the input are still dropped when `energy`
/// is given, since they would contradict the new values).
#[derive(Debug, Clone, Default)]
pub struct FrameOutputs<'a> {
    pub energy: Option<f64>,
    pub forces: Option<&'a [[f64; 3]]>,
    /// W[a][b] = Σ r_a F_b, eV.
    pub virial: Option<[[f64; 3]; 3]>,
    /// Extra comment-line entries (already formatted values), written after the input's.
    pub extra_info: Vec<(String, String)>,
}

/// Reads every frame of a file.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<Frame>, ExtxyzError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| ExtxyzError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    read_str(&text)
}

/// Reads every frame of extended XYZ text.
pub fn read_str(text: &str) -> Result<Vec<Frame>, ExtxyzError> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut frames = Vec::new();
    let mut at = 0usize; // index into `lines` (line number - 1)
    loop {
        // Trailing blank lines end the file; a blank line followed by more text is an error
        // (ASE would silently stop reading there and drop the rest).
        let rest_blank = lines[at..].iter().all(|l| l.trim().is_empty());
        if rest_blank {
            break;
        }
        let frame_index = frames.len();
        let err = |line: usize, message: String| ExtxyzError::Parse {
            frame: frame_index,
            line,
            message,
        };
        let count_text = lines[at].trim();
        if count_text.is_empty() {
            return Err(err(
                at + 1,
                "blank line where an atom count was expected (more text follows)".into(),
            ));
        }
        if count_text.starts_with("VEC") {
            return Err(err(
                at + 1,
                "VEC cell lines are not supported; use Lattice=\"...\" on the comment line".into(),
            ));
        }
        let n_atoms: usize = count_text.parse().map_err(|_| {
            err(
                at + 1,
                format!(
                    "expected the number of atoms, found `{}`",
                    shorten(count_text)
                ),
            )
        })?;
        let count_line = at + 1;
        let comment_index = at + 1;
        if comment_index >= lines.len() {
            return Err(err(
                count_line,
                format!("file ends after the atom count {n_atoms}: the comment line is missing"),
            ));
        }
        let available = lines.len() - comment_index - 1;
        if available < n_atoms {
            return Err(err(
                count_line,
                format!(
                    "truncated frame: {n_atoms} atoms announced but the file ends after {available} atom line(s) (at line {})",
                    lines.len()
                ),
            ));
        }
        let frame = parse_frame(
            frame_index,
            count_line,
            lines[comment_index],
            &lines[comment_index + 1..comment_index + 1 + n_atoms],
        )?;
        frames.push(frame);
        at = comment_index + 1 + n_atoms;
    }
    Ok(frames)
}

struct PropertySpec {
    name: String,
    kind: char,
    width: usize,
}

fn parse_properties(text: &str) -> Result<Vec<PropertySpec>, String> {
    let fields: Vec<&str> = text.split(':').collect();
    if fields.len() % 3 != 0 {
        return Err(format!(
            "Properties=`{text}` is not a list of name:type:columns triples"
        ));
    }
    let mut specs: Vec<PropertySpec> = Vec::new();
    for triple in fields.chunks(3) {
        let name = triple[0].to_string();
        if name.is_empty() {
            return Err(format!("Properties=`{text}` has an empty property name"));
        }
        let kind = match triple[1] {
            "R" => 'R',
            "I" => 'I',
            "S" => 'S',
            "L" => 'L',
            other => {
                return Err(format!(
                    "property `{name}` has unknown type `{other}` (expected R, I, S or L)"
                ))
            }
        };
        let width: usize =
            triple[2].parse().ok().filter(|&w| w > 0).ok_or_else(|| {
                format!("property `{name}` has a bad column count `{}`", triple[2])
            })?;
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("property `{name}` appears twice in Properties"));
        }
        specs.push(PropertySpec { name, kind, width });
    }
    let pos = specs
        .iter()
        .find(|s| s.name == "pos")
        .ok_or_else(|| format!("Properties=`{text}` has no pos:R:3"))?;
    if pos.kind != 'R' || pos.width != 3 {
        return Err(format!(
            "Properties: pos must be pos:R:3, found pos:{}:{}",
            pos.kind, pos.width
        ));
    }
    let species = specs.iter().find(|s| s.name == "species");
    let z = specs.iter().find(|s| s.name == "Z");
    if species.is_none() && z.is_none() {
        return Err(format!(
            "Properties=`{text}` names no elements (needs species:S:1 or Z:I:1)"
        ));
    }
    if let Some(s) = species {
        if s.kind != 'S' || s.width != 1 {
            return Err(format!(
                "Properties: species must be species:S:1, found species:{}:{}",
                s.kind, s.width
            ));
        }
    }
    if let Some(s) = z {
        if s.kind != 'I' || s.width != 1 {
            return Err(format!(
                "Properties: Z must be Z:I:1, found Z:{}:{}",
                s.kind, s.width
            ));
        }
    }
    Ok(specs)
}

fn parse_bool(word: &str) -> Option<bool> {
    match word {
        "T" | "True" | "true" | "TRUE" => Some(true),
        "F" | "False" | "false" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Splits an array value the way ASE does: on whitespace and commas.
fn split_array(value: &str) -> Vec<&str> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .collect()
}

/// ASE capitalises species ("CL" and "cl" are chlorine).
fn capitalize(symbol: &str) -> String {
    let mut chars = symbol.chars();
    match chars.next() {
        Some(first) => first
            .to_uppercase()
            .chain(chars.flat_map(|c| c.to_lowercase()))
            .collect(),
        None => String::new(),
    }
}

fn parse_frame(
    frame_index: usize,
    count_line: usize,
    comment: &str,
    atom_lines: &[&str],
) -> Result<Frame, ExtxyzError> {
    let comment_line = count_line + 1;
    let err = |line: usize, message: String| ExtxyzError::Parse {
        frame: frame_index,
        line,
        message,
    };
    let entries = if comment.contains('=') {
        parse_key_values(comment).map_err(|m| err(comment_line, m))?
    } else if comment.trim().is_empty() {
        Vec::new()
    } else {
        vec![("comment".to_string(), Some(comment.trim().to_string()))]
    };
    let mut info = Vec::new();
    let mut lattice: Option<[[f64; 3]; 3]> = None;
    let mut pbc: Option<[bool; 3]> = None;
    let mut properties = "species:S:1:pos:R:3".to_string();
    for (key, value) in entries {
        if key == "Lattice" || key == "pbc" || key == "Properties" {
            let value = value.ok_or_else(|| err(comment_line, format!("`{key}` has no value")))?;
            match key.as_str() {
                "Lattice" => {
                    let words = split_array(&value);
                    if words.len() != 9 {
                        return Err(err(
                            comment_line,
                            format!(
                                "Lattice needs 9 numbers, found {}: `{}`",
                                words.len(),
                                shorten(&value)
                            ),
                        ));
                    }
                    let mut cell = [[0.0; 3]; 3];
                    for (k, word) in words.iter().enumerate() {
                        let x: f64 = word.parse().map_err(|_| {
                            err(
                                comment_line,
                                format!("Lattice value `{}` is not a number", shorten(word)),
                            )
                        })?;
                        if !x.is_finite() {
                            return Err(err(
                                comment_line,
                                format!("Lattice value `{word}` is not finite"),
                            ));
                        }
                        cell[k / 3][k % 3] = x;
                    }
                    lattice = Some(cell);
                }
                "pbc" => {
                    let words = split_array(&value);
                    let flags: Option<Vec<bool>> = words.iter().map(|w| parse_bool(w)).collect();
                    pbc = match flags.as_deref() {
                        Some([b]) => Some([*b; 3]),
                        Some([a, b, c]) => Some([*a, *b, *c]),
                        _ => {
                            return Err(err(
                                comment_line,
                                format!(
                                    "pbc must be 1 or 3 values of T/F, found `{}`",
                                    shorten(&value)
                                ),
                            ))
                        }
                    };
                }
                _ => properties = value,
            }
        } else {
            info.push((key, value));
        }
    }
    let pbc = match (pbc, lattice) {
        (Some(p), None) if p.iter().any(|&b| b) => {
            return Err(err(
                comment_line,
                format!(
                    "pbc=\"{}\" has a periodic axis but there is no Lattice",
                    pbc_text(p)
                ),
            ));
        }
        (Some(p), _) => p,
        (None, Some(_)) => [true; 3],
        (None, None) => [false; 3],
    };
    let specs = parse_properties(&properties).map_err(|m| err(comment_line, m))?;
    let n_fields: usize = specs.iter().map(|s| s.width).sum();
    let n_atoms = atom_lines.len();
    let mut numbers_from_species: Option<Vec<i32>> = specs
        .iter()
        .any(|s| s.name == "species")
        .then(|| Vec::with_capacity(n_atoms));
    let mut numbers_from_z: Option<Vec<i32>> = specs
        .iter()
        .any(|s| s.name == "Z")
        .then(|| Vec::with_capacity(n_atoms));
    let mut positions = Vec::with_capacity(n_atoms);
    let mut columns: Vec<Column> = specs
        .iter()
        .filter(|s| !matches!(s.name.as_str(), "species" | "Z" | "pos"))
        .map(|s| Column {
            name: s.name.clone(),
            kind: s.kind,
            width: s.width,
            values: Vec::with_capacity(n_atoms * s.width),
        })
        .collect();
    for (i, text) in atom_lines.iter().enumerate() {
        let line = comment_line + 1 + i;
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != n_fields {
            return Err(err(
                line,
                format!(
                    "atom {i}: expected {n_fields} fields (Properties={properties}), found {}",
                    fields.len()
                ),
            ));
        }
        let mut at = 0;
        for spec in &specs {
            let values = &fields[at..at + spec.width];
            at += spec.width;
            match spec.name.as_str() {
                "species" => {
                    let symbol = capitalize(values[0]);
                    let z = crate::elements::atomic_number(&symbol).ok_or_else(|| {
                        err(
                            line,
                            format!("atom {i}: unknown element `{}`", shorten(values[0])),
                        )
                    })?;
                    if let Some(list) = numbers_from_species.as_mut() {
                        list.push(z as i32);
                    }
                }
                "Z" => {
                    let z: i32 = values[0].parse().map_err(|_| {
                        err(
                            line,
                            format!(
                                "atom {i}: atomic number `{}` is not an integer",
                                shorten(values[0])
                            ),
                        )
                    })?;
                    if let Some(list) = numbers_from_z.as_mut() {
                        list.push(z);
                    }
                }
                "pos" => {
                    let mut p = [0.0; 3];
                    for (a, word) in values.iter().enumerate() {
                        let x: f64 = word.parse().map_err(|_| {
                            err(
                                line,
                                format!(
                                    "atom {i}: position component {a} `{}` is not a number",
                                    shorten(word)
                                ),
                            )
                        })?;
                        if !x.is_finite() {
                            return Err(err(line, format!("atom {i}: position component {a} is `{word}`, not a finite number")));
                        }
                        p[a] = x;
                    }
                    positions.push(p);
                }
                name => {
                    let column = columns
                        .iter_mut()
                        .find(|c| c.name == name)
                        .expect("column created from the same specs");
                    if matches!(spec.kind, 'R' | 'I') {
                        for word in values {
                            let ok = if spec.kind == 'R' {
                                word.parse::<f64>().is_ok()
                            } else {
                                word.parse::<i64>().is_ok()
                            };
                            if !ok {
                                return Err(err(
                                    line,
                                    format!(
                                        "atom {i}: `{}` in column `{name}` is not of type {}",
                                        shorten(word),
                                        spec.kind
                                    ),
                                ));
                            }
                        }
                    }
                    column.values.extend(values.iter().map(|s| s.to_string()));
                }
            }
        }
    }
    let numbers = match (numbers_from_z, numbers_from_species) {
        (Some(z), Some(species)) => {
            if let Some(i) = (0..n_atoms).find(|&i| z[i] != species[i]) {
                return Err(err(
                    comment_line + 1 + i,
                    format!(
                        "atom {i}: species column says Z={} but the Z column says {}",
                        species[i], z[i]
                    ),
                ));
            }
            z
        }
        (Some(z), None) => z,
        (None, Some(species)) => species,
        (None, None) => unreachable!("parse_properties requires species or Z"),
    };
    Ok(Frame {
        has_z_column: specs.iter().any(|s| s.name == "Z"),
        numbers,
        positions,
        cell: lattice,
        pbc,
        info,
        columns,
        index: frame_index,
        line: count_line,
    })
}

/// Parses a comment line into (key, value) pairs like ASE's `key_val_str_to_dict`,
/// but rejects unterminated quotes and duplicate keys instead of guessing.
pub fn parse_key_values(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    // Each pair is a list of parts: the key, then values separated by `=`.
    // A part is (text, started): `started` marks parts that had a (maybe empty) quoted value.
    let mut pairs: Vec<Vec<(String, bool)>> = vec![vec![(String::new(), false)]];
    let mut closing: Option<char> = None;
    let mut escaped = false;
    for c in line.trim().chars() {
        let part = pairs
            .last_mut()
            .and_then(|p| p.last_mut())
            .expect("never empty");
        if escaped {
            part.0.push(c);
            part.1 = true;
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if let Some(close) = closing {
            if c == close {
                closing = None;
            } else {
                part.0.push(c);
            }
        } else if let Some(close) = match c {
            '"' => Some('"'),
            '\'' => Some('\''),
            '{' => Some('}'),
            '[' => Some(']'),
            _ => None,
        } {
            closing = Some(close);
            part.1 = true;
        } else if c.is_whitespace() {
            if part.0.is_empty() && !part.1 {
                continue;
            }
            pairs.push(vec![(String::new(), false)]);
        } else if c == '=' {
            let last_empty =
                matches!(pairs.last().map(|p| p.as_slice()), Some([(k, false)]) if k.is_empty());
            if last_empty && pairs.len() > 1 {
                pairs.pop();
            }
            pairs
                .last_mut()
                .expect("never empty")
                .push((String::new(), false));
        } else {
            part.0.push(c);
            part.1 = true;
        }
    }
    if let Some(close) = closing {
        return Err(format!("unterminated quote: missing closing `{close}`"));
    }
    if escaped {
        return Err("the line ends with a lone backslash".into());
    }
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for pair in pairs {
        let key = pair[0].0.clone();
        if key.is_empty() {
            if pair.len() > 1 {
                return Err(format!("value `{}` has no key", shorten(&pair[1].0)));
            }
            continue;
        }
        let value = (pair.len() > 1).then(|| {
            pair[1..]
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join("=")
        });
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key `{key}` appears twice"));
        }
        out.push((key, value));
    }
    Ok(out)
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

fn pbc_text(pbc: [bool; 3]) -> String {
    pbc.iter()
        .map(|&b| if b { "T" } else { "F" })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Shortest text that parses back to exactly `x` (Rust's `{:?}` guarantees the round trip).
pub fn format_real(x: f64) -> String {
    format!("{x:?}")
}

/// Nine numbers of a 3x3 matrix in Fortran (column-major) order, as ASE writes
/// `virial` and `stress`: m00 m10 m20 m01 m11 m21 m02 m12 m22.
pub fn format_matrix_column_major(m: &[[f64; 3]; 3]) -> String {
    let mut words = Vec::with_capacity(9);
    for b in 0..3 {
        for row in m {
            words.push(format_real(row[b]));
        }
    }
    words.join(" ")
}

/// Parses nine numbers in Fortran (column-major) order into a 3x3 matrix.
pub fn parse_matrix_column_major(text: &str) -> Option<[[f64; 3]; 3]> {
    let words = split_array(text);
    if words.len() != 9 {
        return None;
    }
    let mut m = [[0.0; 3]; 3];
    for (k, word) in words.iter().enumerate() {
        m[k % 3][k / 3] = word.parse().ok()?;
    }
    Some(m)
}

/// Lattice vectors one after the other (what ASE writes for `Lattice`).
fn format_lattice(cell: &[[f64; 3]; 3]) -> String {
    cell.iter()
        .flatten()
        .map(|&x| format_real(x))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a key or value when ASE's reader would otherwise split it.
fn escape(text: &str) -> String {
    let special =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '{' | '}' | '[' | ']' | '=' | '\\');
    if !text.is_empty() && !text.chars().any(special) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Keys this writer owns when it writes results; the input's values are dropped.
const RESULT_KEYS: [&str; 3] = ["energy", "virial", "stress"];

/// Writes one frame. With `outputs.energy` set, any `energy`, `virial` and `stress`
/// entries and any `forces` column of the input are replaced by the new values.
pub fn write_frame(out: &mut String, frame: &Frame, outputs: &FrameOutputs) {
    let replacing =
        outputs.energy.is_some() || outputs.forces.is_some() || outputs.virial.is_some();
    let n = frame.n_atoms();
    let _ = writeln!(out, "{n}");
    let mut header: Vec<String> = Vec::new();
    if let Some(cell) = &frame.cell {
        if cell.iter().flatten().any(|&x| x != 0.0) {
            header.push(format!("Lattice=\"{}\"", format_lattice(cell)));
        }
    }
    let kept_columns: Vec<&Column> = frame
        .columns
        .iter()
        .filter(|c| !(replacing && c.name == "forces"))
        .collect();
    let mut properties = String::from("species:S:1:pos:R:3");
    if frame.has_z_column {
        properties.push_str(":Z:I:1");
    }
    for c in &kept_columns {
        let _ = write!(properties, ":{}:{}:{}", c.name, c.kind, c.width);
    }
    if outputs.forces.is_some() {
        properties.push_str(":forces:R:3");
    }
    header.push(format!("Properties={properties}"));
    let extra_keys: Vec<&str> = outputs.extra_info.iter().map(|(k, _)| k.as_str()).collect();
    for (key, value) in &frame.info {
        if (replacing && RESULT_KEYS.contains(&key.as_str())) || extra_keys.contains(&key.as_str())
        {
            continue;
        }
        match value {
            Some(v) => header.push(format!("{}={}", escape(key), escape(v))),
            None => header.push(escape(key)),
        }
    }
    if let Some(energy) = outputs.energy {
        header.push(format!("energy={}", format_real(energy)));
    }
    if let Some(virial) = &outputs.virial {
        header.push(format!("virial=\"{}\"", format_matrix_column_major(virial)));
        if let Some(volume) = frame.periodic_volume() {
            let stress = virial.map(|row| row.map(|w| -w / volume));
            header.push(format!(
                "stress=\"{}\"",
                format_matrix_column_major(&stress)
            ));
        }
    }
    for (key, value) in &outputs.extra_info {
        header.push(format!("{}={}", escape(key), escape(value)));
    }
    header.push(format!("pbc=\"{}\"", pbc_text(frame.pbc)));
    let _ = writeln!(out, "{}", header.join(" "));
    for i in 0..n {
        let z = frame.numbers[i];
        let symbol = u32::try_from(z)
            .ok()
            .and_then(crate::elements::symbol)
            .unwrap_or("X");
        let p = frame.positions[i];
        let _ = write!(
            out,
            "{symbol} {} {} {}",
            format_real(p[0]),
            format_real(p[1]),
            format_real(p[2])
        );
        if frame.has_z_column {
            let _ = write!(out, " {z}");
        }
        for c in &kept_columns {
            for value in &c.values[i * c.width..(i + 1) * c.width] {
                out.push(' ');
                out.push_str(value);
            }
        }
        if let Some(forces) = outputs.forces {
            let f = forces[i];
            let _ = write!(
                out,
                " {} {} {}",
                format_real(f[0]),
                format_real(f[1]),
                format_real(f[2])
            );
        }
        out.push('\n');
    }
}

/// All frames as text, each with its outputs (or none).
pub fn write_str(frames: &[(&Frame, FrameOutputs)]) -> String {
    let mut out = String::new();
    for (frame, outputs) in frames {
        write_frame(&mut out, frame, outputs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_like_ase() {
        let kv = parse_key_values(r#"Lattice="1 0 0 0 2 0 0 0 3" Properties=species:S:1:pos:R:3 name='a b' flag x = 5 t={1 2} q="say \"hi\"" e=a=b"#)
            .unwrap();
        let get = |k: &str| kv.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("Lattice").as_deref(), Some("1 0 0 0 2 0 0 0 3"));
        assert_eq!(get("name").as_deref(), Some("a b"));
        assert_eq!(get("flag"), None);
        assert_eq!(get("x").as_deref(), Some("5"));
        assert_eq!(get("t").as_deref(), Some("1 2"));
        assert_eq!(get("q").as_deref(), Some("say \"hi\""));
        assert_eq!(get("e").as_deref(), Some("a=b"));
        assert!(parse_key_values(r#"a="unterminated"#).is_err());
        assert!(parse_key_values("a=1 a=2").is_err());
        // An empty quoted value does not swallow the next key.
        let kv = parse_key_values(r#"a="" b=1"#).unwrap();
        assert_eq!(
            kv,
            vec![
                ("a".into(), Some(String::new())),
                ("b".into(), Some("1".into()))
            ]
        );
    }

    #[test]
    fn column_major_matrices() {
        let m = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.5]];
        assert_eq!(
            format_matrix_column_major(&m),
            "1.0 4.0 7.0 2.0 5.0 8.0 3.0 6.0 9.5"
        );
        assert_eq!(
            parse_matrix_column_major(&format_matrix_column_major(&m)),
            Some(m)
        );
    }

    #[test]
    fn lattice_is_row_by_row() {
        let text = "1\nLattice=\"1 2 3 4 5 6 7 8 10\" pbc=\"T F T\"\nH 0 0 0\n";
        let frames = read_str(text).unwrap();
        assert_eq!(
            frames[0].cell,
            Some([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]])
        );
        assert_eq!(frames[0].pbc, [true, false, true]);
    }
}
