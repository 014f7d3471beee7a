//! PyTorch checkpoints (`torch.save(model.state_dict(), path)`) → an ordered state dict of host tensors.
//!
//! Both on-disk formats are read:
//! - the zip format (torch ≥ 1.6): `<prefix>/data.pkl` holds the pickled dict, each storage is the file
//!   `<prefix>/data/<key>`;
//! - the legacy format: five pickles in a row (magic number, protocol version, sys info, the object, the list
//!   of storage keys) followed by the raw storages, each preceded by its element count as a little-endian u64.
//!
//! The pickles go through [`pickle`], which accepts only what a state_dict needs and never runs code.
//! Float tensors (f32, f64, f16, bf16) become F32 [`HostTensor`]s, integer and bool tensors I64; strides
//! and storage offsets are honoured, so views and non-contiguous tensors come out dense and row-major.

pub mod pickle;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ir::HostTensor;
use pickle::{Dtype, TensorRef, Value};

/// Magic number at the start of a legacy-format checkpoint.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// A `state_dict`: tensor names in checkpoint order with their values.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    /// The file it came from (for error messages).
    pub path: PathBuf,
    /// Entries in checkpoint order.
    pub entries: Vec<(String, HostTensor)>,
}

impl StateDict {
    /// The tensor named `key`.
    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads a PyTorch checkpoint file (zip or legacy format).
pub fn load_state_dict(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_state_dict(&bytes, path)
}

/// Reads a checkpoint from memory; `path` names it in errors.
pub fn read_state_dict(bytes: &[u8], path: &Path) -> Result<StateDict> {
    let entries = if bytes.starts_with(b"PK\x03\x04") {
        read_zip(bytes, path)?
    } else if bytes.first() == Some(&0x80) {
        read_legacy(bytes, path)?
    } else {
        return Err(bad(path, "not a PyTorch checkpoint (neither a zip archive nor a pickle); expected a file written by torch.save"));
    };
    Ok(StateDict { path: path.to_path_buf(), entries })
}

fn read_zip(bytes: &[u8], path: &Path) -> Result<Vec<(String, HostTensor)>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(path, format!("damaged zip archive ({e}); the file may be truncated")))?;
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && (n.len() == 8 || n.ends_with("/data.pkl")))
        .min_by_key(|n| n.len())
        .ok_or_else(|| bad(path, "zip archive without data.pkl: not a torch.save checkpoint"))?
        .clone();
    let prefix = pkl[..pkl.len() - "data.pkl".len()].to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(|e| bad(path, format!("cannot open '{name}' in the archive ({e})")))?;
        // The declared size is the file's claim: bounded, and not trusted for the allocation up front.
        if f.size() > crate::validate::MAX_TENSOR_ELEMENTS as u64 * 8 {
            return Err(bad(path, format!("'{name}' in the archive declares {} bytes, more than zeroq reads for one entry", f.size())));
        }
        let mut v = Vec::with_capacity((f.size() as usize).min(1 << 20));
        f.read_to_end(&mut v).map_err(|e| bad(path, format!("cannot read '{name}' in the archive ({e}); the file may be corrupted")))?;
        Ok(v)
    };
    if names.contains(&format!("{prefix}byteorder")) {
        let order = read(&format!("{prefix}byteorder"))?;
        if order.trim_ascii() != b"little" {
            return Err(bad(path, "big-endian checkpoint; zeroq reads little-endian ones"));
        }
    }
    let data = read(&pkl)?;
    let obj = pickle::unpickle(&data, &mut 0).map_err(|r| bad(path, format!("{pkl}: {r}")))?;
    let dict = find_state_dict(obj).map_err(|r| bad(path, r))?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let key = &t.storage.key;
        if !storages.contains_key(key) {
            let s = read(&format!("{prefix}data/{key}"))?;
            storages.insert(key.clone(), s);
        }
        let tensor = materialize(&t, &storages[key]).map_err(|r| bad(path, format!("tensor '{name}': {r}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

fn read_legacy(bytes: &[u8], path: &Path) -> Result<Vec<(String, HostTensor)>> {
    let mut pos = 0;
    let next = |what: &str, pos: &mut usize| pickle::unpickle(bytes, pos).map_err(|r| bad(path, format!("{what}: {r}")));
    let magic = next("magic number", &mut pos)?;
    if magic.as_int() != Some(LEGACY_MAGIC) {
        return Err(bad(path, "a pickle, but not a torch.save checkpoint (wrong magic number)"));
    }
    let version = next("protocol version", &mut pos)?;
    if version.as_int() != Some(1001) {
        return Err(bad(path, format!("legacy checkpoint protocol version {version:?}, expected 1001")));
    }
    if let Value::Dict(info) = next("sys info", &mut pos)? {
        let little = info.iter().find(|(k, _)| *k == Value::Str("little_endian".into())).map(|(_, v)| v.clone());
        if little == Some(Value::Bool(false)) {
            return Err(bad(path, "big-endian checkpoint; zeroq reads little-endian ones"));
        }
    }
    let obj = next("state_dict", &mut pos)?;
    let dict = find_state_dict(obj).map_err(|r| bad(path, r))?;
    let Value::List(keys) = next("storage keys", &mut pos)? else {
        return Err(bad(path, "the storage key list is not a list (corrupted checkpoint)"));
    };
    // Element sizes come from the storage types the tensors named.
    let dtypes: HashMap<&str, Dtype> = dict.iter().map(|(_, t)| (t.storage.key.as_str(), t.storage.dtype)).collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for k in &keys {
        let Value::Str(k) = k else {
            return Err(bad(path, "a storage key is not a string (corrupted checkpoint)"));
        };
        let elem = dtypes.get(k.as_str()).map_or(4, |d| d.size());
        let truncated = || bad(path, format!("storage '{k}' ends early: the file is truncated ({} bytes)", bytes.len()));
        let head = bytes.get(pos..pos + 8).ok_or_else(truncated)?;
        let numel = u64::from_le_bytes(head.try_into().map_err(|_| truncated())?) as usize;
        pos += 8;
        let len = numel.checked_mul(elem).ok_or_else(truncated)?;
        let data = bytes.get(pos..pos.checked_add(len).ok_or_else(truncated)?).ok_or_else(truncated)?;
        pos += len;
        storages.insert(k.clone(), data);
    }
    let mut out = Vec::with_capacity(dict.len());
    for (name, t) in dict {
        let data = storages.get(&t.storage.key).ok_or_else(|| bad(path, format!("tensor '{name}' uses storage '{}', which the file does not hold", t.storage.key)))?;
        let tensor = materialize(&t, data).map_err(|r| bad(path, format!("tensor '{name}': {r}")))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// The tensors of the state dict: the top-level dict, or a dict under `state_dict`/`model`/`model_state_dict`
/// when the checkpoint wraps it (training checkpoints do). Non-tensor entries are skipped.
fn find_state_dict(obj: Value) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(d) = obj else {
        return Err("the checkpoint holds no dict of tensors; save it with torch.save(model.state_dict(), path)".into());
    };
    let tensors = |d: &[(Value, Value)]| -> Vec<(String, TensorRef)> {
        d.iter()
            .filter_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.clone())),
                _ => None,
            })
            .collect()
    };
    let top = tensors(&d);
    if !top.is_empty() {
        return Ok(top);
    }
    for wrap in ["state_dict", "model_state_dict", "model"] {
        if let Some((_, Value::Dict(inner))) = d.iter().find(|(k, _)| *k == Value::Str(wrap.into())) {
            let t = tensors(inner);
            if !t.is_empty() {
                return Ok(t);
            }
        }
    }
    Err("the checkpoint's dict holds no tensors; save it with torch.save(model.state_dict(), path)".into())
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Gathers a tensor's elements (row-major) from its storage bytes, following offset and strides.
fn materialize(t: &TensorRef, storage: &[u8]) -> std::result::Result<HostTensor, String> {
    let es = t.storage.dtype.size();
    let base = t.storage.offset.checked_add(t.offset).ok_or("storage offset overflows")?;
    let avail = storage.len() / es;
    // A dense tensor has at most as many elements as its storage; only a broadcast view (stride 0) has
    // more, and a state_dict of such views is refused beyond a small size rather than expanded.
    let numel = crate::validate::bounded_product(t.size.iter().copied(), avail.max(1 << 20))
        .ok_or_else(|| format!("shape {:?} has more elements than its storage of {avail} holds; save contiguous tensors (tensor.contiguous())", t.size))?;
    if numel > 0 {
        let last = t.size.iter().zip(&t.stride).try_fold(base, |acc, (&n, &s)| acc.checked_add((n - 1).checked_mul(s)?));
        match last {
            Some(l) if l < avail => {}
            _ => {
                return Err(format!(
                    "shape {:?} with strides {:?} at offset {base} reaches past its storage of {avail} elements (corrupted or truncated checkpoint)",
                    t.size, t.stride
                ))
            }
        }
    }
    // Element indices in row-major order.
    let mut idx = Vec::with_capacity(numel);
    let mut counter = vec![0usize; t.size.len()];
    for _ in 0..numel {
        idx.push(base + counter.iter().zip(&t.stride).map(|(c, s)| c * s).sum::<usize>());
        for d in (0..counter.len()).rev() {
            counter[d] += 1;
            if counter[d] < t.size[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    let at = |i: usize| &storage[i * es..(i + 1) * es];
    let shape = t.size.clone();
    Ok(match t.storage.dtype {
        Dtype::F32 => HostTensor::f32(shape, idx.iter().map(|&i| f32::from_le_bytes(at(i).try_into().unwrap_or([0; 4]))).collect()),
        Dtype::F64 => HostTensor::f32(shape, idx.iter().map(|&i| f64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])) as f32).collect()),
        Dtype::F16 => HostTensor::f32(shape, idx.iter().map(|&i| f16_to_f32(u16::from_le_bytes([at(i)[0], at(i)[1]]))).collect()),
        Dtype::BF16 => HostTensor::f32(shape, idx.iter().map(|&i| f32::from_bits((u16::from_le_bytes([at(i)[0], at(i)[1]]) as u32) << 16)).collect()),
        Dtype::I64 => HostTensor::i64(shape, idx.iter().map(|&i| i64::from_le_bytes(at(i).try_into().unwrap_or([0; 8]))).collect()),
        Dtype::I32 => HostTensor::i64(shape, idx.iter().map(|&i| i32::from_le_bytes(at(i).try_into().unwrap_or([0; 4])) as i64).collect()),
        Dtype::I16 => HostTensor::i64(shape, idx.iter().map(|&i| i16::from_le_bytes([at(i)[0], at(i)[1]]) as i64).collect()),
        Dtype::I8 => HostTensor::i64(shape, idx.iter().map(|&i| at(i)[0] as i8 as i64).collect()),
        Dtype::U8 | Dtype::Bool => HostTensor::i64(shape, idx.iter().map(|&i| at(i)[0] as i64).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn strides_and_offsets_are_honoured() {
        // A 2x3 view, transposed (strides 1, 2) at offset 1 of a 7-element storage.
        let storage: Vec<u8> = (0..7).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = TensorRef { storage: pickle::StorageRef { key: "0".into(), dtype: Dtype::F32, offset: 0 }, offset: 1, size: vec![2, 3], stride: vec![1, 2] };
        let h = materialize(&t, &storage).unwrap();
        assert_eq!(h.as_f32().unwrap(), &[1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        let too_far = TensorRef { offset: 2, ..t };
        assert!(materialize(&too_far, &storage).unwrap_err().contains("past its storage"));
    }
}
