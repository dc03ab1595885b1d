//! Extended XYZ reader and writer: ASE's conventions, full precision, and errors
//! that name the frame and the line.

use mlff::io::extxyz::{self, ExtxyzError, Frame, FrameOutputs};

/// Two frames as ASE writes them (ASE 3.22 `write(..., format="extxyz")` layout),
/// with quoting, extra columns, bare keys and lower-case species.
const ASE_STYLE: &str = r#"3
Lattice="5.0 0.0 0.0 1.0 6.0 0.0 0.5 0.5 7.0" Properties=species:S:1:pos:R:3:tags:I:1:charge:R:1 config_type=bulk name="water in box" weights={1 2 3} have_dft pbc="T T T"
O        0.00000000       0.00000000       0.00000000        0      -0.80000000
H        0.95720000       0.00000000       0.00000000        1       0.40000000
h       -0.23999000       0.92663000       0.00000000        1       0.40000000
2
Properties=Z:I:1:pos:R:3 comment='single quoted = value' pbc="F F F"
6   0.0 0.0 0.0
8   1.128 0.0 0.0
"#;

fn parse_error(text: &str) -> (usize, usize, String) {
    match extxyz::read_str(text) {
        Err(ExtxyzError::Parse {
            frame,
            line,
            message,
        }) => (frame, line, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn reads_ase_style_frames() {
    let frames = extxyz::read_str(ASE_STYLE).unwrap();
    assert_eq!(frames.len(), 2);
    let f = &frames[0];
    assert_eq!(f.numbers, vec![8, 1, 1]);
    assert_eq!(f.positions[2], [-0.23999, 0.92663, 0.0]);
    // Lattice is the three vectors one after the other.
    assert_eq!(
        f.cell,
        Some([[5.0, 0.0, 0.0], [1.0, 6.0, 0.0], [0.5, 0.5, 7.0]])
    );
    assert_eq!(f.pbc, [true; 3]);
    assert_eq!(f.info_value("config_type"), Some(Some("bulk")));
    assert_eq!(f.info_value("name"), Some(Some("water in box")));
    assert_eq!(f.info_value("weights"), Some(Some("1 2 3")));
    assert_eq!(f.info_value("have_dft"), Some(None));
    assert_eq!(f.column("tags").unwrap().values, vec!["0", "1", "1"]);
    assert_eq!(
        f.column("charge").unwrap().as_reals().unwrap(),
        vec![-0.8, 0.4, 0.4]
    );
    assert_eq!(
        (f.index, f.line, f.comment_line(), f.atom_line(2)),
        (0, 1, 2, 5)
    );

    let g = &frames[1];
    assert_eq!(g.numbers, vec![6, 8]);
    assert!(g.has_z_column);
    assert_eq!(g.cell, None);
    assert_eq!(g.pbc, [false; 3]);
    assert_eq!(g.info_value("comment"), Some(Some("single quoted = value")));
    assert_eq!((g.index, g.line), (1, 6));
}

#[test]
fn pbc_defaults_follow_ase() {
    let with_lattice = extxyz::read_str("1\nLattice=\"3 0 0 0 3 0 0 0 3\"\nAr 0 0 0\n").unwrap();
    assert_eq!(with_lattice[0].pbc, [true; 3]);
    let without = extxyz::read_str("1\nProperties=species:S:1:pos:R:3\nAr 0 0 0\n").unwrap();
    assert_eq!((without[0].cell, without[0].pbc), (None, [false; 3]));
    let slab =
        extxyz::read_str("1\nLattice=\"3 0 0 0 3 0 0 0 30\" pbc=\"T T F\"\nAr 0 0 0\n").unwrap();
    assert_eq!(slab[0].pbc, [true, true, false]);
}

#[test]
fn plain_xyz_and_crlf() {
    let frames = extxyz::read_str(
        "2\r\nJoe's molecule, from a plain XYZ file\r\nH 0 0 0\r\nH 0 0 0.74\r\n\r\n",
    )
    .unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].positions[1], [0.0, 0.0, 0.74]);
    assert_eq!(
        frames[0].info_value("comment"),
        Some(Some("Joe's molecule, from a plain XYZ file"))
    );
    // The comment survives a round trip (quoted).
    let mut text = String::new();
    extxyz::write_frame(&mut text, &frames[0], &FrameOutputs::default());
    let again = extxyz::read_str(&text).unwrap();
    assert_eq!(
        again[0].info_value("comment"),
        frames[0].info_value("comment")
    );
}

#[test]
fn species_and_z_must_agree() {
    let ok = extxyz::read_str("1\nProperties=species:S:1:pos:R:3:Z:I:1\nO 0 0 0 8\n").unwrap();
    assert_eq!(ok[0].numbers, vec![8]);
    let (frame, line, message) =
        parse_error("1\nProperties=species:S:1:pos:R:3:Z:I:1\nO 0 0 0 7\n");
    assert_eq!((frame, line), (0, 3));
    assert!(
        message.contains("Z=8") && message.contains("7"),
        "{message}"
    );
}

/// A non-symmetric matrix: every component distinct, so any transposition shows.
const W: [[f64; 3]; 3] = [[1.5, -2.25, 3.125], [4.0, 5.5, -6.75], [7.0, 8.25, 9.0]];

#[test]
fn virial_and_stress_are_written_column_major_like_ase() {
    let cell = [[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 0.0, 6.0]];
    let frame = Frame::new(
        vec![1, 1],
        vec![[0.0; 3], [0.0, 0.0, 0.74]],
        Some(cell),
        [true; 3],
    );
    let forces = [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]];
    let mut text = String::new();
    extxyz::write_frame(
        &mut text,
        &frame,
        &FrameOutputs {
            energy: Some(-1.25),
            forces: Some(&forces),
            virial: Some(W),
            extra_info: vec![],
        },
    );
    let comment = text.lines().nth(1).unwrap();
    // ASE writes a 3x3 info value as `value.reshape(9, order='F')` and reads it back
    // with `reshape((3, 3), order='F')`: W00 W10 W20 W01 W11 W21 W02 W12 W22.
    assert!(
        comment.contains(r#"virial="1.5 4.0 7.0 -2.25 5.5 8.25 3.125 -6.75 9.0""#),
        "{comment}"
    );
    // Lattice: the vectors in order (ASE writes cell.T in Fortran order).
    assert!(
        comment.contains(r#"Lattice="4.0 0.0 0.0 0.0 5.0 0.0 1.0 0.0 6.0""#),
        "{comment}"
    );
    assert!(comment.contains("energy=-1.25"), "{comment}");
    assert!(
        comment.contains("Properties=species:S:1:pos:R:3:forces:R:3"),
        "{comment}"
    );
    // stress = -W / V, same ordering; V = det(cell) = 120.
    let entries = extxyz::parse_key_values(comment).unwrap();
    let stress_text = entries
        .iter()
        .find(|(k, _)| k == "stress")
        .unwrap()
        .1
        .clone()
        .unwrap();
    let stress = extxyz::parse_matrix_column_major(&stress_text).unwrap();
    for a in 0..3 {
        for b in 0..3 {
            assert_eq!(stress[a][b], -W[a][b] / 120.0);
        }
    }
    let virial_text = entries
        .iter()
        .find(|(k, _)| k == "virial")
        .unwrap()
        .1
        .clone()
        .unwrap();
    assert_eq!(extxyz::parse_matrix_column_major(&virial_text), Some(W));
    // Forces column.
    let back = extxyz::read_str(&text).unwrap();
    assert_eq!(
        back[0].column("forces").unwrap().as_reals().unwrap(),
        vec![0.1, 0.2, 0.3, -0.1, -0.2, -0.3]
    );
}

#[test]
fn no_stress_unless_periodic_in_three_dimensions() {
    let cell = [[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0]];
    for (cell, pbc) in [(Some(cell), [true, true, false]), (None, [false; 3])] {
        let frame = Frame::new(vec![1], vec![[0.0; 3]], cell, pbc);
        let mut text = String::new();
        extxyz::write_frame(
            &mut text,
            &frame,
            &FrameOutputs {
                energy: Some(0.0),
                forces: None,
                virial: Some(W),
                extra_info: vec![],
            },
        );
        assert!(text.contains("virial="), "{text}");
        assert!(!text.contains("stress="), "{text}");
    }
}

#[test]
fn old_results_are_replaced_and_other_entries_kept() {
    let input = "2\nLattice=\"9 0 0 0 9 0 0 0 9\" Properties=species:S:1:pos:R:3:forces:R:3:tags:I:1 energy=12.0 stress=\"1 2 3 4 5 6 7 8 9\" virial=\"1 2 3 4 5 6 7 8 9\" dft_energy=-3.5 pbc=\"T T F\"\nH 0 0 0 9 9 9 4\nH 0 0 1 8 8 8 5\n";
    let frames = extxyz::read_str(input).unwrap();
    let forces = [[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]];
    let mut text = String::new();
    extxyz::write_frame(
        &mut text,
        &frames[0],
        &FrameOutputs {
            energy: Some(-7.0),
            forces: Some(&forces),
            virial: Some(W),
            extra_info: vec![],
        },
    );
    let back = extxyz::read_str(&text).unwrap();
    let f = &back[0];
    assert_eq!(f.info_value("energy"), Some(Some("-7.0")));
    assert_eq!(f.info_value("dft_energy"), Some(Some("-3.5")));
    // Slab: the stale stress is dropped, not kept.
    assert_eq!(f.info_value("stress"), None);
    assert_eq!(f.column("tags").unwrap().values, vec!["4", "5"]);
    assert_eq!(
        f.column("forces").unwrap().as_reals().unwrap(),
        vec![1.0, 2.0, 3.0, -1.0, -2.0, -3.0]
    );
    assert_eq!(f.pbc, [true, true, false]);
    assert_eq!(text.matches("forces").count(), 1, "{text}");
}

#[test]
fn numbers_round_trip_bit_for_bit() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Wide range of magnitudes, both signs, subnormals excluded.
        let mantissa = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        mantissa * 10f64.powi((state % 40) as i32 - 20)
    };
    let positions: Vec<[f64; 3]> = (0..50).map(|_| [next(), next(), next()]).collect();
    let forces: Vec<[f64; 3]> = (0..50).map(|_| [next(), next(), next()]).collect();
    let cell = [
        [next(), next(), next()],
        [next(), next(), next()],
        [next(), next(), next()],
    ];
    let virial = [
        [next(), next(), next()],
        [next(), next(), next()],
        [next(), next(), next()],
    ];
    let energy = next();
    let frame = Frame::new(
        vec![6; 50],
        positions.clone(),
        Some(cell),
        [true, false, true],
    );
    let mut text = String::new();
    extxyz::write_frame(
        &mut text,
        &frame,
        &FrameOutputs {
            energy: Some(energy),
            forces: Some(&forces),
            virial: Some(virial),
            extra_info: vec![],
        },
    );
    let back = extxyz::read_str(&text).unwrap();
    assert_eq!(back[0].positions, positions);
    assert_eq!(back[0].cell, Some(cell));
    let read_forces = back[0].column("forces").unwrap().as_reals().unwrap();
    assert_eq!(
        read_forces,
        forces.iter().flatten().copied().collect::<Vec<_>>()
    );
    let energy_back: f64 = back[0]
        .info_value("energy")
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(energy_back.to_bits(), energy.to_bits());
    assert_eq!(
        extxyz::parse_matrix_column_major(back[0].info_value("virial").unwrap().unwrap()),
        Some(virial)
    );
}

#[test]
fn many_frames_round_trip() {
    let frames = extxyz::read_str(ASE_STYLE).unwrap();
    let pairs: Vec<(&Frame, FrameOutputs)> = frames
        .iter()
        .map(|f| (f, FrameOutputs::default()))
        .collect();
    let text = extxyz::write_str(&pairs);
    let again = extxyz::read_str(&text).unwrap();
    assert_eq!(again.len(), 2);
    for (a, b) in frames.iter().zip(&again) {
        assert_eq!(
            (&a.numbers, &a.positions, a.cell, a.pbc),
            (&b.numbers, &b.positions, b.cell, b.pbc)
        );
        assert_eq!(a.info, b.info);
        assert_eq!(a.columns, b.columns);
    }
}

/// Frame 0 is fine (lines 1-3); frame 1 starts at line 4, its comment is line 5
/// and its atoms are lines 6 and 7.
fn two_frames(comment: &str, atom0: &str, atom1: &str) -> String {
    format!("1\nProperties=species:S:1:pos:R:3\nH 0 0 0\n2\n{comment}\n{atom0}\n{atom1}\n")
}

#[test]
fn errors_name_frame_and_line() {
    let props = "Properties=species:S:1:pos:R:3";
    let cases: Vec<(String, usize, &str)> = vec![
        (two_frames(props, "H 0 0 0", "Xq 1 0 0"), 7, "unknown element"),
        (two_frames(props, "H 0 0 0", "H nan 0 0"), 7, "finite"),
        (two_frames(props, "H 0 inf 0", "H 1 0 0"), 6, "finite"),
        (two_frames(props, "H 0 0 0", "H 1 0 zero"), 7, "not a number"),
        (two_frames(props, "H 0 0 0", "H 1 0"), 7, "expected 4 fields"),
        (two_frames(props, "H 0 0 0", "H 1 0 0 0"), 7, "expected 4 fields"),
        (two_frames("Lattice=\"1 0 0 0 1 0 0 0\"", "H 0 0 0", "H 1 0 0"), 5, "Lattice needs 9 numbers"),
        (two_frames("Lattice=\"1 0 0 0 1 0 0 0 x\"", "H 0 0 0", "H 1 0 0"), 5, "not a number"),
        (two_frames("Lattice=\"1 0 0 0 1 0 0 0 nan\"", "H 0 0 0", "H 1 0 0"), 5, "not finite"),
        (two_frames("pbc=\"T T T\"", "H 0 0 0", "H 1 0 0"), 5, "no Lattice"),
        (two_frames("pbc=\"T X\"", "H 0 0 0", "H 1 0 0"), 5, "pbc"),
        (two_frames("name=\"unterminated", "H 0 0 0", "H 1 0 0"), 5, "unterminated"),
        (two_frames("Properties=species:S:1:pos:R:2", "H 0 0", "H 1 0"), 5, "pos:R:3"),
        (two_frames("Properties=species:S:1:pos:Q:3", "H 0 0 0", "H 1 0 0"), 5, "unknown type"),
        (two_frames("Properties=pos:R:3", "0 0 0", "1 0 0"), 5, "species"),
        (two_frames("Properties=Z:I:1:pos:R:3", "1 0 0 0", "1.5 1 0 0"), 7, "not an integer"),
        (two_frames("a=1 a=2", "H 0 0 0", "H 1 0 0"), 5, "twice"),
        ("1\nProperties=species:S:1:pos:R:3\nH 0 0 0\n3\nProperties=species:S:1:pos:R:3\nH 0 0 0\nH 1 0 0\n".to_string(), 4, "truncated"),
        ("1\nProperties=species:S:1:pos:R:3\nH 0 0 0\ntwo\n".to_string(), 4, "number of atoms"),
        ("1\nProperties=species:S:1:pos:R:3\nH 0 0 0\n\n1\nc\nH 0 0 0\n".to_string(), 4, "blank line"),
        ("1\nProperties=species:S:1:pos:R:3\nH 0 0 0\n1\n".to_string(), 4, "comment line is missing"),
    ];
    for (text, line, needle) in cases {
        let (frame, got_line, message) = parse_error(&text);
        assert_eq!((frame, got_line), (1, line), "{message}\n{text}");
        assert!(
            message.contains(needle),
            "`{message}` should contain `{needle}`\n{text}"
        );
        let full = ExtxyzError::Parse {
            frame,
            line: got_line,
            message,
        }
        .to_string();
        assert!(
            full.starts_with(&format!("frame index 1, line {line}: ")),
            "{full}"
        );
    }
}

#[test]
fn parse_errors_become_invalid_argument() {
    let e: mlff::Error = extxyz::read_str("x\n").unwrap_err().into();
    assert!(matches!(e, mlff::Error::InvalidArgument(_)), "{e:?}");
    let e: mlff::Error = extxyz::read_file("/nonexistent/dir/file.xyz")
        .unwrap_err()
        .into();
    assert!(matches!(e, mlff::Error::Io(_)), "{e:?}");
}

#[test]
fn empty_file_has_no_frames() {
    assert!(extxyz::read_str("").unwrap().is_empty());
    assert!(extxyz::read_str("\n\n  \n").unwrap().is_empty());
}
