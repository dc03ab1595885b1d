//! Quick wall-clock timing of the CPU engine (criterion's benches are the reference):
//! cargo run --release --example time_cpu -- [f32|f64] [molecules]
use mlff::model::{load_model_bytes, random::random_student, save_model_bytes, StudentConfig};
use mlff::{Device, Model, Options, Precision, Request};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let precision: Precision = args
        .get(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(Precision::F32);
    let molecules: i64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1000);
    let config = StudentConfig {
        hidden: 128,
        num_rbf: 20,
        num_blocks: 3,
        cutoff: 5.0,
        max_z: 100,
    };
    let file =
        load_model_bytes(&save_model_bytes(&random_student(&config, 1), false, &[]).unwrap())
            .unwrap();
    let mut model = Model::from_file(
        file,
        &Options {
            device: Device::Cpu,
            precision,
            ..Options::default()
        },
    )
    .unwrap();
    // A negative count means an open-boundary molecule of that many atoms.
    let water = if molecules > 0 {
        mlff::structures::water_box(molecules as usize, 1.0, 0)
    } else {
        mlff::structures::random_molecule((-molecules) as usize, 0)
    };
    model
        .compute(&water.system(), &Request::FORCES_VIRIAL)
        .unwrap();
    let start = std::time::Instant::now();
    let repeats = if molecules > 0 { 5 } else { 200 };
    for _ in 0..repeats {
        model
            .compute(&water.system(), &Request::FORCES_VIRIAL)
            .unwrap();
    }
    println!(
        "{} atoms, {precision:?}: {:.1} ms per step ({})",
        water.numbers.len(),
        start.elapsed().as_secs_f64() * 1e3 / repeats as f64,
        model.engine_description()
    );
}
