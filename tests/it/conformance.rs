//! Conformance with a peer: the ONNX backend node tests (issue 14).
//!
//! Every case of every operator zeroq imports (`model.onnx` with `test_data_set_0/{input,output}_K.pb`,
//! as the `onnx` package defines them) runs through zeroq's loader and engine, and each output is compared
//! with the expected one at the ONNX backend test's default tolerance: `|got − want| ≤ atol + rtol·|want|`
//! with rtol = 1e-3 and atol = 1e-7 (`onnx/backend/test/case/node/__init__.py`, also what ONNX Runtime's
//! backend test runner uses for node tests). A case zeroq cannot run must be refused with an error (an
//! unsupported op, attribute or data type), never answered wrongly and never a panic. The pass count per
//! op must not fall below the table in `docs/CONFORMANCE.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use zeroq::engine::{device, Plan, Value};
use zeroq::ir::HostTensor;
use zeroq::onnx::proto::TensorProto;

/// ONNX's node tests compare at rtol 1e-3, atol 1e-7 by default; zeroq is held to the same.
const RTOL: f32 = 1e-3;
const ATOL: f32 = 1e-7;

/// The ONNX op types zeroq imports (`src/onnx/ops.rs`).
const OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Pad",
    "QuantizeLinear",
    "Range",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// Cases that are expansions of other ops into supported ones (CastLike, DepthToSpace, ...).
const OTHER: &str = "(expansions of other ops)";

/// The folder of `test_*` case folders: the `onnx` package's own, or written once from its case
/// definitions into the target folder (`tests/scripts/onnx_node_cases.py`).
fn cases_dir() -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx-node-cases");
    let stamp = out.join("ops.txt");
    let want = OPS.join(" ");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return out.join("node");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/onnx_node_cases.py");
    let o = Command::new("python3").arg(&script).arg(&out).args(OPS).output().expect("run python3");
    assert!(
        o.status.success(),
        "{} failed (python3 -m pip install -r tests/requirements.txt installs the onnx package): {}",
        script.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    if dir == out.join("node") {
        std::fs::write(&stamp, want).unwrap();
    }
    dir
}

/// The op a case tests, from its name (`test_reduce_mean_keepdims` → ReduceMean).
fn op_of(case: &str) -> &'static str {
    let name = case.trim_start_matches("test_");
    if ["constant_pad", "edge_pad", "reflect_pad", "wrap_pad"].iter().any(|p| name.starts_with(p)) {
        return "Pad";
    }
    let flat = name.replace('_', "");
    let aliases = [("batchnorm", "BatchNormalization"), ("trainingdropout", "Dropout"), ("castlike", OTHER)];
    if let Some((_, op)) = aliases.iter().find(|(a, _)| flat.starts_with(a)) {
        return op;
    }
    OPS.iter().filter(|op| flat.starts_with(&op.to_ascii_lowercase())).max_by_key(|op| op.len()).copied().unwrap_or(OTHER)
}

enum Outcome {
    Pass,
    Refused(String),
    Wrong(String),
}

fn read_tensor(p: &Path) -> Result<(String, HostTensor), String> {
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    let t = TensorProto::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let h = zeroq::onnx::tensor_from_proto(&t, None).map_err(|e| e.to_string())?;
    Ok((t.name, h))
}

fn close(got: f32, want: f32) -> bool {
    got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= ATOL + RTOL * want.abs()
}

fn run_case(dir: &Path) -> Outcome {
    let model = std::fs::read(dir.join("model.onnx")).unwrap();
    let g = match zeroq::onnx::from_bytes(&model, Some(dir)) {
        Ok(g) => g,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let data = dir.join("test_data_set_0");
    let mut given = BTreeMap::new();
    let mut want = Vec::new();
    for k in 0.. {
        let (i, o) = (data.join(format!("input_{k}.pb")), data.join(format!("output_{k}.pb")));
        if !i.exists() && !o.exists() {
            break;
        }
        for (p, is_input) in [(i, true), (o, false)] {
            if !p.exists() {
                continue;
            }
            match read_tensor(&p) {
                Ok((name, t)) if is_input => drop(given.insert(name, t)),
                Ok((_, t)) => want.push(t),
                Err(e) => return Outcome::Refused(format!("{}: {e}", p.display())),
            }
        }
    }
    let device = device::inference();
    let mut inputs = Vec::new();
    for &id in &g.inputs {
        let Some(t) = given.get(g.name(id)) else { return Outcome::Refused(format!("no data for input '{}'", g.name(id))) };
        match Value::from_host(t, &device) {
            Ok(v) => inputs.push(v),
            Err(e) => return Outcome::Refused(e.to_string()),
        }
    }
    let plan = match Plan::new(g, &device) {
        Ok(p) => p,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    let outs = match plan.run(inputs, &[]) {
        Ok(o) => o.outputs,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    if outs.len() != want.len() {
        return Outcome::Wrong(format!("{} outputs, {} expected", outs.len(), want.len()));
    }
    for (k, (v, w)) in outs.iter().zip(&want).enumerate() {
        let got = match v.to_host() {
            Ok(t) => t,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        if got.shape != w.shape {
            return Outcome::Wrong(format!("output {k}: shape {:?}, expected {:?}", got.shape, w.shape));
        }
        let (g, e) = (got.to_f32_vec(), w.to_f32_vec());
        if let Some(i) = (0..e.len()).find(|&i| !close(g[i], e[i])) {
            return Outcome::Wrong(format!("output {k}[{i}] = {}, expected {}", g[i], e[i]));
        }
    }
    Outcome::Pass
}

/// `| Op | cases | passed |` rows of `docs/CONFORMANCE.md`.
fn documented() -> BTreeMap<String, (usize, usize)> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/CONFORMANCE.md");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let (op, cases, passed) = (cells.get(1)?, cells.get(2)?.parse().ok()?, cells.get(3)?.parse().ok()?);
            Some((op.trim_matches('`').to_string(), (cases, passed)))
        })
        .collect()
}

#[test]
fn onnx_backend_node_tests() {
    let dir = cases_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("model.onnx").is_file()).collect();
    cases.sort();
    assert!(cases.len() > 300, "only {} cases under {}", cases.len(), dir.display());
    // op → (cases, passed, refused); and every failure that is not a refusal.
    let mut table: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut refusals = Vec::new();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        let row = table.entry(op_of(&name)).or_default();
        row.0 += 1;
        match std::panic::catch_unwind(|| run_case(c)) {
            Ok(Outcome::Pass) => row.1 += 1,
            Ok(Outcome::Refused(e)) => {
                row.2 += 1;
                refusals.push(format!("{name}: {e}"));
            }
            Ok(Outcome::Wrong(e)) => bad.push(format!("{name}: wrong answer: {e}")),
            Err(_) => bad.push(format!("{name}: panic")),
        }
    }
    let mut md = String::from("| op | cases | passed | refused |\n|---|---|---|---|\n");
    for (op, (n, p, r)) in &table {
        md.push_str(&format!("| {op} | {n} | {p} | {r} |\n"));
    }
    let total_pass: usize = table.values().map(|r| r.1).sum();
    md.push_str(&format!("\n{total_pass} of {} cases pass.\n\nRefused:\n", cases.len()));
    for r in &refusals {
        md.push_str(&format!("- {r}\n"));
    }
    let report = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("conformance.md");
    std::fs::write(&report, &md).unwrap();
    eprintln!("conformance: {total_pass}/{} cases pass; table in {}", cases.len(), report.display());
    assert!(bad.is_empty(), "{} cases answered wrongly or panicked:\n{}", bad.len(), bad.join("\n"));
    for (op, (cases, passed)) in documented() {
        let got = table.get(op.as_str()).map_or(0, |r| r.1);
        assert!(got >= passed, "{op}: {got} cases pass, docs/CONFORMANCE.md records {passed} (of {cases})");
    }
}
