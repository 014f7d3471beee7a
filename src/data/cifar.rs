//! The CIFAR-10 binary format: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B).

use std::path::{Path, PathBuf};

use super::{Dataset, Preprocess};
use crate::error::{Error, Result};

const RECORD: usize = 1 + 3 * 32 * 32;

/// A CIFAR-10 binary file held in memory (the test split is 30 MB).
pub struct Cifar10 {
    path: PathBuf,
    bytes: Vec<u8>,
    preprocess: Preprocess,
}

impl Cifar10 {
    /// Reads the file; its size must be a whole number of records and its labels 0..=9.
    pub fn open(path: impl AsRef<Path>, preprocess: Preprocess) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::from_bytes(bytes, path, preprocess)
    }

    /// The same checks on a file already in memory; `path` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, path: PathBuf, preprocess: Preprocess) -> Result<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(Error::data(
                &path,
                format!("{} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each); the file is truncated or not CIFAR-10 binary", bytes.len()),
            ));
        }
        if let Some(i) = (0..bytes.len() / RECORD).find(|&i| bytes[i * RECORD] > 9) {
            return Err(Error::data(&path, format!("record {i} has label {}, expected 0-9: not a CIFAR-10 binary file", bytes[i * RECORD])));
        }
        Ok(Self { path, bytes, preprocess })
    }
}

impl Dataset for Cifar10 {
    fn len(&self) -> usize {
        self.bytes.len() / RECORD
    }

    fn image_shape(&self) -> [usize; 3] {
        let s = self.preprocess.crop.or(self.preprocess.resize).unwrap_or(32);
        [3, s, s]
    }

    fn label(&self, i: usize) -> u32 {
        self.bytes[i * RECORD] as u32
    }

    fn image(&self, i: usize) -> Result<Vec<f32>> {
        let rec = self.bytes.get(i * RECORD..(i + 1) * RECORD).ok_or_else(|| Error::data(&self.path, format!("no record {i}")))?;
        let plane = 32 * 32;
        let mut rgb = vec![0u8; 3 * plane];
        for c in 0..3 {
            for p in 0..plane {
                rgb[p * 3 + c] = rec[1 + c * plane + p];
            }
        }
        Ok(self.preprocess.apply(&rgb, 32, 32).0)
    }

    fn describe(&self) -> String {
        format!("cifar10:{}", self.path.display())
    }
}
