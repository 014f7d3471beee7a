//! NumPy `.npy` (format 1.0) for float32 arrays: distilled data and saved logits.

use std::path::Path;

use super::write_atomic;
use crate::error::{Error, Result};

/// Encodes a little-endian float32 C-order array.
pub fn encode_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if shape.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that magic(6) + version(2) + len(2) + header ends on a multiple of 64, with a newline.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    write_atomic(path, &encode_f32(data, shape))
}

/// Reads a little-endian float32 C-order `.npy` file, returning data and shape.
pub fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_f32(&bytes).map_err(|r| Error::data(path, r))
}

/// Decodes a float32 `.npy` held in memory (what [`read_f32`] does after reading the file).
pub fn decode_f32(bytes: &[u8]) -> std::result::Result<(Vec<f32>, Vec<usize>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(bytes.get(start..start.saturating_add(hlen)).ok_or("truncated header")?).map_err(|_| "header is not text")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!("expected float32 little-endian data ('<f4'), header is {}", header.trim()));
    }
    if header.contains("'fortran_order': True") {
        return Err("Fortran-order arrays are not supported; save with np.ascontiguousarray".into());
    }
    let s = header.find("'shape': (").ok_or("header has no shape")? + 10;
    let e = s + header[s..].find(')').ok_or("header shape is not closed")?;
    let shape: Vec<usize> = header[s..e]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<usize>().map_err(|_| format!("bad dimension '{t}'")))
        .collect::<std::result::Result<_, _>>()?;
    // The header's shape is checked against the limit before the body is trusted to match it.
    let n = crate::validate::tensor_size(&shape)?;
    let body = &bytes[start + hlen..];
    if body.len() != n * 4 {
        return Err(format!("holds {} bytes of data for shape {shape:?} ({} expected): truncated", body.len(), n * 4));
    }
    Ok((body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_alignment() {
        let data = vec![1.0f32, -2.5, 3.25, 0.0, 5.0, 6.0];
        let bytes = encode_f32(&data, &[2, 3]);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        let (d, s) = decode_f32(&bytes).unwrap();
        assert_eq!((d, s), (data, vec![2, 3]));
    }

    #[test]
    fn truncated_file_is_an_error() {
        let bytes = encode_f32(&[1.0, 2.0], &[2]);
        let err = decode_f32(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
