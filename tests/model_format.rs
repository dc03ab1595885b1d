//! The model-file loader: round trips, one typed error per kind of bad file, the
//! defect warnings, and a fuzz-style property test (random and mutated bytes never panic).

mod common;

use std::collections::HashMap;

use mlff::model::{expected_shapes, load_model_bytes, random::random_student, save_model_bytes};
use mlff::{Error, ModelFormatError as E};
use proptest::prelude::*;

fn valid_bytes() -> Vec<u8> {
    save_model_bytes(
        &random_student(&common::small_config(), 3),
        false,
        &[("provenance", "test"), ("species", "H,C,N,O")],
    )
    .unwrap()
}

/// Rebuilds a file from its tensors and metadata after `edit` changed them.
fn edited(
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>, &mut HashMap<String, String>),
) -> Vec<u8> {
    let bytes = valid_bytes();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    edit(&mut tensors, &mut meta);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, d)| (n, s, d.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, &Some(meta)).unwrap()
}

fn format_error(bytes: &[u8]) -> E {
    match load_model_bytes(bytes) {
        Err(Error::ModelFormat(e)) => e,
        other => panic!("expected a model-format error, got {other:?}"),
    }
}

#[test]
fn round_trip_is_exact() {
    let weights = random_student(&common::small_config(), 3);
    for f64_storage in [false, true] {
        let bytes =
            save_model_bytes(&weights, f64_storage, &[("provenance", "round trip")]).unwrap();
        let file = load_model_bytes(&bytes).unwrap();
        assert_eq!(file.weights, weights);
        assert_eq!(file.metadata.provenance, "round trip");
        assert_eq!(file.metadata.species, None);
    }
    let file = load_model_bytes(&valid_bytes()).unwrap();
    assert_eq!(file.metadata.species, Some(vec![1, 6, 7, 8]));
    assert!(file.supports(8) && !file.supports(9) && !file.supports(0) && !file.supports(11));
}

#[test]
fn each_defect_gets_its_own_error() {
    assert!(matches!(
        format_error(b"definitely not a model"),
        E::NotSafetensors(_)
    ));
    let full = valid_bytes();
    for cut in [0, 7, 8, 100, full.len() / 2, full.len() - 1] {
        assert!(
            matches!(format_error(&full[..cut]), E::NotSafetensors(_)),
            "truncated at {cut}"
        );
    }
    let e = format_error(&edited(|_, m| {
        m.insert("format_version".into(), "2".into());
    }));
    assert_eq!(e, E::UnsupportedVersion("2".into()));
    let e = format_error(&edited(|_, m| {
        m.insert("architecture".into(), "schnet".into());
    }));
    assert_eq!(e, E::UnsupportedArchitecture("schnet".into()));
    // A student relabelled as PaiNN lacks PaiNN's metadata.
    let e = format_error(&edited(|_, m| {
        m.insert("architecture".into(), "painn".into());
    }));
    assert!(matches!(e, E::MissingMetadata(_)), "{e:?}");
    let e = format_error(&edited(|_, m| {
        m.remove("cutoff");
    }));
    assert_eq!(e, E::MissingMetadata("cutoff".into()));
    let e = format_error(&edited(|_, m| {
        m.insert("hidden_dim".into(), "sixteen".into());
    }));
    assert!(matches!(e, E::BadMetadata { ref key, .. } if key == "hidden_dim"));
    let e = format_error(&edited(|_, m| {
        m.insert("species".into(), "H,Xx".into());
    }));
    assert!(matches!(e, E::BadMetadata { ref key, .. } if key == "species"));
    let e = format_error(&edited(|t, _| {
        t.retain(|(n, _, _)| n != "energy_head.2.bias")
    }));
    assert_eq!(e, E::MissingTensor("energy_head.2.bias".into()));
    let e = format_error(&edited(|t, _| {
        t.push((
            "interactions.2.update.mixing_matrix".into(),
            vec![3, 3],
            vec![0.0; 9],
        ))
    }));
    assert_eq!(
        e,
        E::UnexpectedTensor("interactions.2.update.mixing_matrix".into())
    );
    let e = format_error(&edited(|t, _| {
        let entry = t.iter_mut().find(|(n, _, _)| n == "rbf.widths").unwrap();
        entry.1 = vec![4, 2];
    }));
    assert!(matches!(e, E::WrongShape { ref name, .. } if name == "rbf.widths"));
    let e = format_error(&edited(|t, _| {
        let entry = t
            .iter_mut()
            .find(|(n, _, _)| n == "interactions.1.update.update_mlp.0.weight")
            .unwrap();
        entry.2[17] = f32::NAN;
    }));
    assert_eq!(
        e,
        E::NonFinite {
            name: "interactions.1.update.update_mlp.0.weight".into(),
            index: 17
        }
    );
    let e = format_error(&edited(|t, _| {
        let entry = t.iter_mut().find(|(n, _, _)| n == "rbf.widths").unwrap();
        entry.2[0] = 0.0;
    }));
    assert!(matches!(e, E::Inconsistent(_)));
    let e = format_error(&edited(|_, m| {
        m.insert("cutoff".into(), "6.0".into());
    }));
    assert!(matches!(e, E::Inconsistent(_)));
    // A missing file is an I/O error, not a format error.
    assert!(matches!(
        mlff::model::load_model_file("/nonexistent/model.safetensors"),
        Err(Error::Io(_))
    ));
    // Every expected tensor is named in the shapes table.
    assert_eq!(
        expected_shapes(&common::small_config()).len(),
        3 + 3 * 8 + 2 + 6
    );
}

#[test]
fn defects_are_reported_as_warnings() {
    let mut weights = random_student(&common::small_config(), 4);
    let codes = |w: &mlff::model::StudentWeights| {
        mlff::model::model_warnings(w)
            .iter()
            .map(|x| x.code)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        codes(&weights),
        vec!["not-rotation-invariant", "energy-discontinuous-at-cutoff"]
    );
    // A multiple of the identity is rotation invariant; a zero filter at rc is continuous.
    for block in weights.blocks.iter_mut() {
        if let Some(m) = block.mixing.as_mut() {
            *m = [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]];
        }
        block.filter1.bias.iter_mut().for_each(|b| *b = 0.0);
        block.filter2.bias.iter_mut().for_each(|b| *b = 0.0);
    }
    assert!(codes(&weights).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = load_model_bytes(&bytes);
        // Random bytes behind a plausible header length, too.
        let mut framed = (bytes.len() as u64).to_le_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let _ = load_model_bytes(&framed);
    }

    #[test]
    fn mutated_files_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = valid_bytes();
        // Mutations concentrated in the header, where the parsing happens.
        let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        for (at, value) in flips {
            let at = if at % 2 == 0 { at % header_end } else { at % bytes.len() };
            bytes[at] = value;
        }
        let _ = load_model_bytes(&bytes);
        let cut = cut % (bytes.len() + 1);
        let _ = load_model_bytes(&bytes[..cut]);
    }
}
