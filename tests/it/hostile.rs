//! Hostile and broken inputs through the CLI (issue 14): each is refused with exit status 1 and one line
//! that names the file, node, tensor or value and what to do, and leaves no output behind. A few odd but
//! valid inputs are accepted.

use std::path::Path;

use prost::Message;
use zeroq::onnx::proto::{data_type, ModelProto, NodeProto, TensorProto, ValueInfoProto};

use crate::common;
use crate::errors::fails;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|i| i.to_string()).collect(),
        output: outputs.iter().map(|o| o.to_string()).collect(),
        ..Default::default()
    }
}

fn floats(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto { name: name.into(), dims: dims.to_vec(), data_type: data_type::FLOAT, float_data: data, ..Default::default() }
}

/// x → Conv(w, 2 output channels, 1x1) → BatchNormalization → y, with the given weight and variance.
fn conv_bn(weight: TensorProto, var: Vec<f32>, chw: [i64; 3]) -> Vec<u8> {
    let nodes = vec![node("conv1", "Conv", &["x", "w"], &["c"]), node("bn1", "BatchNormalization", &["c", "g", "b", "m", "v"], &["y"])];
    let init =
        vec![weight, floats("g", &[2], vec![1.0; 2]), floats("b", &[2], vec![0.0; 2]), floats("m", &[2], vec![0.0; 2]), floats("v", &[2], var)];
    common::tiny_onnx("conv_bn", nodes, init, chw, "y")
}

fn clean_weight() -> TensorProto {
    floats("w", &[2, 3, 1, 1], vec![0.5, -0.25, 1.0, 0.1, 0.2, 0.3])
}

/// Writes `bytes` as `name` in `dir` and returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    s(&p)
}

/// Nothing but the inputs the test wrote is left in `dir` (no output, no temporary file).
fn only_inputs(dir: &Path, inputs: &[&str]) {
    let mut left: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.retain(|n| !inputs.contains(&n.as_str()));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `zeroq distill` of the model `bytes` saved as `name`: its error, after checking nothing was written.
fn distill_refuses(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let m = put(dir.path(), name, bytes);
    let err = fails(&["distill", &m, "-o", &s(&dir.path().join("d.npy")), "--iters", "1"]);
    only_inputs(dir.path(), &[name]);
    err
}

#[test]
fn huge_declared_input_is_refused_before_allocating() {
    let err = distill_refuses("huge.onnx", &conv_bn(clean_weight(), vec![1.0; 2], [3, 1_000_000, 1_000_000]));
    assert!(err.contains("huge.onnx") && err.contains("input 'x'") && err.contains("1000000") && err.contains("values per sample"), "{err}");
}

#[test]
fn too_large_distillation_batch_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let m = put(dir.path(), "m.onnx", &conv_bn(clean_weight(), vec![1.0; 2], [3, 2048, 2048]));
    let out = s(&dir.path().join("d.npy"));
    let err = fails(&["distill", &m, "-o", &out, "--batch", "100000", "--iters", "1"]);
    assert!(err.contains("--batch") && err.contains("100000"), "{err}");
    only_inputs(dir.path(), &["m.onnx"]);
}

#[test]
fn huge_npy_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = zeroq::data::npy::encode_f32(&[1.0; 4], &[4]);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000, 3, 32, 32), }";
    b.truncate(8);
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[0; 16]);
    let npy = put(dir.path(), "huge.npy", &b);
    let out = s(&dir.path().join("q.onnx"));
    let err = fails(&["quantize", &s(&common::model("resnet20")), "--distilled", &npy, "-o", &out]);
    assert!(err.contains("huge.npy") && err.contains("more than") && err.contains("elements"), "{err}");
    only_inputs(dir.path(), &["huge.npy"]);
}

/// A PNG whose header declares `w`×`h` pixels, with no pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend_from_slice(&13u32.to_be_bytes());
    b.extend_from_slice(&ihdr);
    b.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // An empty IDAT: the decoder reads the header up to the first data chunk.
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(b"IDAT");
    b.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
    b
}

#[test]
fn huge_declared_image_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "big.png", &png_header(100_000, 100_000));
    put(dir.path(), "labels.txt", b"big.png 1\n");
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &format!("folder:{}", s(dir.path()))]);
    assert!(err.contains("big.png") && err.contains("100000x100000") && err.contains("limit"), "{err}");
}

/// ResNet20 with one value of its first Conv weight replaced by `v`.
fn resnet20_with_weight(v: f32) -> (Vec<u8>, String) {
    let mut m = ModelProto::decode(std::fs::read(common::model("resnet20")).unwrap().as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().find(|n| n.op_type == "Conv").unwrap().clone();
    let t = g.initializer.iter_mut().find(|t| t.name == conv.input[1]).unwrap();
    if t.raw_data.is_empty() {
        t.float_data[5] = v;
    } else {
        t.raw_data[20..24].copy_from_slice(&v.to_le_bytes());
    }
    let name = t.name.clone();
    (m.encode_to_vec(), name)
}

#[test]
fn inf_or_nan_conv_weight_is_refused_by_quantize_naming_the_tensor() {
    for (v, shown) in [(f32::INFINITY, "inf"), (f32::NAN, "NaN")] {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, tensor) = resnet20_with_weight(v);
        let m = put(dir.path(), "bad.onnx", &bytes);
        let out = s(&dir.path().join("q.onnx"));
        let err = fails(&["quantize", &m, "-o", &out]);
        assert!(err.contains("bad.onnx") && err.contains(&format!("'{tensor}'")) && err.contains(shown) && err.contains("re-export"), "{err}");
        only_inputs(dir.path(), &["bad.onnx"]);
    }
}

#[test]
fn negative_bn_variance_is_refused_by_distill_naming_the_tensor() {
    let err = distill_refuses("negvar.onnx", &conv_bn(clean_weight(), vec![1.0, -0.5], [3, 8, 8]));
    assert!(err.contains("'v'") && err.contains("running variance") && err.contains("-0.5") && err.contains("bn1") && !err.contains("--lr"), "{err}");
}

#[test]
fn zero_sized_conv_weight_is_blamed_on_the_conv() {
    let dir = tempfile::tempdir().unwrap();
    let m = put(dir.path(), "empty_w.onnx", &conv_bn(floats("w", &[0, 3, 1, 1], vec![]), vec![1.0; 2], [3, 8, 8]));
    let err = fails(&["inspect", &m]);
    assert!(err.contains("'w'") && err.contains("conv1") && err.contains("[0, 3, 1, 1]") && !err.contains("bn1"), "{err}");
}

#[test]
fn zero_sized_input_dimension_is_named() {
    let err = distill_refuses("zero.onnx", &conv_bn(clean_weight(), vec![1.0; 2], [3, 0, 8]));
    assert!(err.contains("input 'x'") && err.contains("axis 2") && err.contains("as 0"), "{err}");
}

#[test]
fn node_output_defined_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = vec![node("first", "Relu", &["x"], &["y"]), node("second", "Sigmoid", &["x"], &["y"])];
    let m = put(dir.path(), "dup.onnx", &common::tiny_onnx("dup", nodes, vec![], [3, 4, 4], "y"));
    let err = fails(&["inspect", &m]);
    assert!(err.contains("second") && err.contains("'y'") && err.contains("already defined"), "{err}");
}

#[test]
fn same_tensor_listed_twice_as_output_is_accepted() {
    let mut model = ModelProto::decode(std::fs::read(common::model("resnet20")).unwrap().as_slice()).unwrap();
    let g = model.graph.as_mut().unwrap();
    let first: ValueInfoProto = g.output[0].clone();
    g.output.push(first);
    let dir = tempfile::tempdir().unwrap();
    let m = put(dir.path(), "twice.onnx", &model.encode_to_vec());
    let data = format!("cifar10:{}", s(&common::cifar_test()));
    let out = common::zeroq().args(["eval", &m, "--data", &data, "--limit", "20", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n"], 20);
    assert_eq!(v["classes"], 10);
}

fn image_folder(dir: &Path, files: &[(&str, u32)], labels: &str) -> String {
    for &(name, side) in files {
        image::RgbImage::from_pixel(side, side, image::Rgb([90, 120, 200])).save(dir.join(name)).unwrap();
    }
    std::fs::write(dir.join("labels.txt"), labels).unwrap();
    format!("folder:{}", s(dir))
}

#[test]
fn label_beyond_the_models_classes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path(), &[("a.png", 32), ("b.png", 32)], "a.png 3\nb.png 5000\n");
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &data]);
    assert!(err.contains("b.png") && err.contains("label 5000") && err.contains("10 classes"), "{err}");
}

#[test]
fn images_of_different_sizes_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = image_folder(dir.path(), &[("a.png", 32), ("odd.png", 40)], "a.png 3\nodd.png 4\n");
    let err = fails(&["eval", &s(&common::model("resnet20")), "--data", &data]);
    assert!(err.contains("odd.png") && err.contains("a.png") && err.contains("differ in size") && err.contains("--crop"), "{err}");
}

#[test]
fn non_finite_distilled_data_is_refused_by_quantize_and_sensitivity() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = common::lcg(2 * 3 * 32 * 32, 3);
    data[3 * 32 * 32 + 7] = f32::NAN;
    let npy = s(&dir.path().join("nan.npy"));
    zeroq::data::npy::write_f32(Path::new(&npy), &data, &[2, 3, 32, 32]).unwrap();
    let model = s(&common::model("resnet20"));
    for (cmd, out) in [("quantize", "q.onnx"), ("sensitivity", "s.json")] {
        let err = fails(&[cmd, &model, "--distilled", &npy, "-o", &s(&dir.path().join(out))]);
        assert!(err.contains("nan.npy") && err.contains("NaN") && err.contains("index 3079") && err.contains("image 1"), "{cmd}: {err}");
    }
    only_inputs(dir.path(), &["nan.npy"]);
}

#[test]
fn zero_limit_and_zero_threads_are_refused() {
    let model = s(&common::model("resnet20"));
    let data = format!("cifar10:{}", s(&common::cifar_test()));
    let err = fails(&["eval", &model, "--data", &data, "--limit", "0"]);
    assert!(err.contains("--limit 0") && err.contains("N ≥ 1"), "{err}");
    let err = fails(&["--threads", "0", "inspect", &model]);
    assert!(err.contains("--threads 0") && err.contains("N ≥ 1"), "{err}");
}

#[test]
fn path_and_os_error_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let m = put(dir.path(), "cut.onnx", &std::fs::read(common::model("resnet20")).unwrap()[..5000]);
    let err = fails(&["inspect", &m]);
    assert_eq!(err.matches("cut.onnx").count(), 1, "{err}");
    let missing = s(&dir.path().join("missing.onnx"));
    let err = fails(&["inspect", &missing]);
    assert_eq!(err.matches("missing.onnx").count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn output_into_a_missing_folder_names_the_folder_not_a_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("no/such/dir/d.npy");
    let err = fails(&["distill", &s(&common::model("resnet20")), "-o", &s(&out), "--iters", "1", "--batch", "1"]);
    assert!(err.contains("d.npy") && err.contains("does not exist") && !err.contains(".d.npy.tmp"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_distillation_settings_name_the_flag() {
    let model = s(&common::model("resnet20"));
    let dir = tempfile::tempdir().unwrap();
    let out = s(&dir.path().join("d.npy"));
    for (flag, value) in [("--lr", "0"), ("--iters", "0"), ("--batch", "0")] {
        let err = fails(&["distill", &model, "-o", &out, flag, value]);
        assert!(err.contains(flag) && !err.contains("DistillConfig") && !err.contains('{'), "{flag}: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
