//! Short fuzz runs of every file reader (issue 14): a few thousand mutated inputs each, seeded from the
//! shared assets and tiny hand-made files. Pass: no panic, no single allocation above the cap, and the
//! peak memory of any one input bounded. `bench/fuzz.sh` runs the same targets for 1,000,000+ inputs.
//! Inputs that once panicked are kept in `tests/fixtures/fuzz/<target>-*.bin` and replayed here.

use std::path::PathBuf;

use zeroq::fuzz::{self, Target};
use zeroq::onnx::proto::{data_type, NodeProto, TensorProto};

use crate::common;

/// No single request above 256 MiB: every seed here is under 2 MB, so anything near this is a size
/// taken from the file's claims.
const CAP_BYTES: usize = 256 << 20;

/// Peak memory of one input: the largest seed (about 1 MB) loads in well under this.
const PEAK_BYTES: usize = 128 << 20;

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        name: format!("{op}_node"),
        op_type: op.into(),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], f: Vec<f32>, i: Vec<i64>) -> TensorProto {
    let data_type = if i.is_empty() { data_type::FLOAT } else { data_type::INT64 };
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type, float_data: f, int64_data: i, ..Default::default() }
}

/// Tiny models that reach the loader's size-taking paths: constant folding of ConstantOfShape, Range and
/// Reshape, Pad, and a Conv + BatchNormalization with parameters.
pub fn onnx_seeds() -> Vec<Vec<u8>> {
    let conv_bn = common::tiny_onnx(
        "conv_bn",
        vec![node("Conv", &["x", "w", "cb"], "c"), node("BatchNormalization", &["c", "g", "b", "m", "v"], "y")],
        vec![
            tensor("w", &[2, 3, 3, 3], vec![0.1; 54], vec![]),
            tensor("cb", &[2], vec![0.0; 2], vec![]),
            tensor("g", &[2], vec![1.0; 2], vec![]),
            tensor("b", &[2], vec![0.0; 2], vec![]),
            tensor("m", &[2], vec![0.0; 2], vec![]),
            tensor("v", &[2], vec![1.0; 2], vec![]),
        ],
        [3, 8, 8],
        "y",
    );
    let folded = common::tiny_onnx(
        "folded",
        vec![
            node("ConstantOfShape", &["shape"], "zeros"),
            node("Range", &["start", "limit", "delta"], "r"),
            node("Shape", &["x"], "s"),
            node("Reshape", &["x", "target"], "flat"),
            node("Pad", &["flat", "pads"], "padded"),
            node("Add", &["padded", "zeros"], "y"),
        ],
        vec![
            tensor("shape", &[2], vec![], vec![1, 200]),
            tensor("start", &[], vec![], vec![0]),
            tensor("limit", &[], vec![], vec![10]),
            tensor("delta", &[], vec![], vec![1]),
            tensor("target", &[2], vec![], vec![1, -1]),
            tensor("pads", &[4], vec![], vec![0, 4, 0, 4]),
        ],
        [3, 4, 16],
        "y",
    );
    vec![std::fs::read(common::model("resnet20")).expect("resnet20"), conv_bn, folded]
}

pub fn torch_seeds() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let mut seeds: Vec<Vec<u8>> = ["tiny_zip.pth", "tiny_legacy.pth", "evil.pth", "whole_model.pth"]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(n).display())))
        .collect();
    let real = common::assets().join("models/cifar10/resnet20-12fca82f.th");
    seeds.push(std::fs::read(&real).unwrap_or_else(|e| panic!("{}: {e}", real.display())));
    seeds
}

pub fn npy_seeds() -> Vec<Vec<u8>> {
    use zeroq::data::npy::encode_f32;
    vec![
        encode_f32(&[1.0, 2.0, 3.0, 4.0], &[4]),
        encode_f32(&common::lcg(6, 1), &[2, 3]),
        encode_f32(&common::lcg(12, 2), &[1, 3, 2, 2]),
        encode_f32(&[0.5], &[]),
    ]
}

pub fn cifar_seeds() -> Vec<Vec<u8>> {
    let bytes = std::fs::read(common::cifar_test()).expect("CIFAR-10 test split");
    vec![bytes[..3 * 3073].to_vec(), bytes[3073..2 * 3073].to_vec()]
}

pub fn labels_seeds() -> Vec<Vec<u8>> {
    let p = common::assets().join("imagenet-sample1000/labels.txt");
    let real = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    vec![real[..2000.min(real.len())].to_vec(), b"a.png 3\n# comment\n\nb c.jpg 9\n".to_vec(), b"x.png 0".to_vec()]
}

/// Every reader with its seeds.
pub fn targets() -> Vec<Target> {
    vec![
        Target { name: "onnx", seeds: onnx_seeds(), dict: fuzz::ONNX_DICT, run: fuzz::read_onnx },
        Target { name: "torch", seeds: torch_seeds(), dict: fuzz::TORCH_DICT, run: fuzz::read_torch },
        Target { name: "npy", seeds: npy_seeds(), dict: fuzz::NPY_DICT, run: fuzz::read_npy },
        Target { name: "cifar10", seeds: cifar_seeds(), dict: &[], run: fuzz::read_cifar },
        Target { name: "labels", seeds: labels_seeds(), dict: fuzz::LABELS_DICT, run: fuzz::read_labels },
    ]
}

fn short_run(name: &str, iters: usize) {
    let t = targets().into_iter().find(|t| t.name == name).expect("target");
    let r = fuzz::fuzz(&t, iters, 14, CAP_BYTES);
    let first = r.panics.first().map(|f| format!("iteration {}: {} ({} bytes)", f.iteration, f.message, f.input.len()));
    assert!(r.panics.is_empty(), "{name}: {} panics in {} inputs, first at {first:?}", r.panics.len(), r.inputs);
    assert!(r.peak_bytes <= PEAK_BYTES, "{name}: one input used {} bytes at its peak", r.peak_bytes);
    // The memory accounting is live (the seeds alone allocate), so the bound above means something.
    assert!(r.peak_bytes > 0, "{name}: no allocation was counted; is TrackingAlloc the global allocator?");
    eprintln!("fuzz {name}: {} inputs, {} accepted, peak {} KiB, {:.0} inputs/s", r.inputs, r.accepted, r.peak_bytes >> 10, r.inputs_per_s());
}

#[test]
fn fuzz_onnx_reader() {
    short_run("onnx", 1500);
}

#[test]
fn fuzz_torch_reader() {
    short_run("torch", 3000);
}

#[test]
fn fuzz_npy_reader() {
    short_run("npy", 5000);
}

#[test]
fn fuzz_cifar_reader() {
    short_run("cifar10", 3000);
}

#[test]
fn fuzz_labels_parser() {
    short_run("labels", 5000);
}

/// Every input that once made a reader panic, named `<target>-<what>.bin`, now gets a value or an error.
#[test]
fn fuzz_regressions_do_not_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let targets = targets();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some((target, _)) = name.split_once('-') else { continue };
        let t = targets.iter().find(|t| t.name == target).unwrap_or_else(|| panic!("{name}: no fuzz target '{target}'"));
        let input = std::fs::read(&p).unwrap();
        let (r, peak) = fuzz::measure(CAP_BYTES, || std::panic::catch_unwind(|| (t.run)(&input)));
        assert!(r.is_ok(), "{name} panics again");
        assert!(peak <= PEAK_BYTES, "{name}: {peak} bytes at the peak");
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
