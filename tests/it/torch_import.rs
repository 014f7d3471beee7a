//! PyTorch checkpoints: the reader on small fixtures (tests/scripts/make_torch_fixtures.py made them), its
//! errors on damaged or hostile files, and (below) the built-in architectures against PyTorch's logits.

use std::path::PathBuf;

use zeroq::ir::HostData;

fn fixture(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name);
    assert!(p.is_file(), "missing fixture {} (run tests/scripts/make_torch_fixtures.py)", p.display());
    p
}

fn check_against_expected(file: &str) {
    let sd = zeroq::torch::load_state_dict(fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let text = std::fs::read_to_string(fixture("tiny_expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = expected.as_object().unwrap();
    let keys: Vec<&str> = sd.entries.iter().map(|(k, _)| k.as_str()).collect();
    let want: Vec<&str> = expected.keys().map(String::as_str).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(sorted_keys, sorted_want, "{file}: keys");
    for (k, t) in &sd.entries {
        let e = &expected[k];
        let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{file}: shape of {k}");
        let vals: Vec<f64> = e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        match &t.data {
            HostData::F32(v) => {
                assert!(!e["int"].as_bool().unwrap(), "{file}: {k} should be an integer tensor");
                for (a, b) in v.iter().zip(&vals) {
                    // Exact: every value is representable in float32 (f64 values are rounded like torch's .float()).
                    assert_eq!(*a, *b as f32, "{file}: {k}");
                }
            }
            HostData::I64(v) => {
                assert!(e["int"].as_bool().unwrap(), "{file}: {k} should be a float tensor");
                assert_eq!(v.iter().map(|&x| x as f64).collect::<Vec<_>>(), vals, "{file}: {k}");
            }
        }
    }
}

#[test]
fn reads_zip_format_with_strides_offsets_and_dtypes() {
    check_against_expected("tiny_zip.pth");
}

#[test]
fn reads_legacy_format_with_strides_offsets_and_dtypes() {
    check_against_expected("tiny_legacy.pth");
}

fn load_err(bytes: &[u8], name: &str) -> String {
    let e = zeroq::torch::read_state_dict(bytes, std::path::Path::new(name)).expect_err("must fail");
    e.to_string()
}

#[test]
fn truncated_checkpoints_are_clear_errors() {
    for f in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let bytes = std::fs::read(fixture(f)).unwrap();
        for cut in [bytes.len() / 3, bytes.len() - 20] {
            let err = load_err(&bytes[..cut], f);
            assert!(err.starts_with(f) && (err.contains("truncated") || err.contains("damaged")), "{f} cut at {cut}: {err}");
        }
    }
}

#[test]
fn corrupted_checkpoint_is_a_clear_error() {
    let mut bytes = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    // Overwrite the middle of the pickled state_dict with garbage opcodes.
    for b in &mut bytes[300..340] {
        *b = 0xfe;
    }
    let err = load_err(&bytes, "corrupt.pth");
    assert!(err.starts_with("corrupt.pth") && err.contains("corrupted"), "{err}");
    let err = load_err(b"hello, not a checkpoint", "text.pth");
    assert!(err.contains("not a PyTorch checkpoint"), "{err}");
}

#[test]
fn pickle_calling_os_system_is_refused() {
    let err = zeroq::torch::load_state_dict(fixture("evil.pth")).expect_err("must refuse").to_string();
    assert!(err.contains("evil.pth") && (err.contains("'posix.system'") || err.contains("'os.system'")), "{err}");
    assert!(err.contains("whitelist"), "{err}");
}

#[test]
fn whole_model_pickle_asks_for_a_state_dict() {
    let err = zeroq::torch::load_state_dict(fixture("whole_model.pth")).expect_err("must refuse").to_string();
    assert!(err.contains("__main__.Tiny") && err.contains("state_dict()"), "{err}");
}
