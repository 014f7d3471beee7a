//! The Python package (`python/`): installed from the checkout with pip, as a user would, into a fresh
//! folder under the target directory, then its pytest tests run against the `zeroq` binary built for
//! these tests. CI installs maturin and pytest (tests/requirements.txt); without them the test fails
//! and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The cargo target directory of this build (`CARGO_TARGET_TMPDIR` is `<target>/tmp`), so that the
/// extension reuses the zeroq library already compiled for these tests.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").to_path_buf()
}

fn python_ok(args: &[&str], what: &str) {
    let out = Command::new("python3").args(args).output().expect("python3 must be installed (see .ci/run)");
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn python_package_installs_and_its_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    python_ok(&["-c", "import maturin, pytest"], "the Python package tests need maturin and pytest: python3 -m pip install -r tests/requirements.txt");
    let site = target_dir().join("python-site");
    if site.exists() {
        std::fs::remove_dir_all(&site).expect("remove the old install");
    }
    // `pip install ./python`, with the build backend already installed (no download) and into a folder
    // of its own (no change to the user's environment).
    let st = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-build-isolation", "--no-deps", "--target"])
        .arg(&site)
        .arg(root.join("python"))
        .env("CARGO_TARGET_DIR", target_dir())
        .status()
        .expect("run pip");
    assert!(st.success(), "pip install ./python failed (see the build output above)");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(root.join("python/tests"))
        .env("PYTHONPATH", &site)
        .env("ZEROQ_BIN", env!("CARGO_BIN_EXE_zeroq"))
        .current_dir(&site)
        .output()
        .expect("run pytest");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pytest python/tests failed:\n{log}");
    assert!(log.contains(" passed"), "pytest ran no test:\n{log}");
}
