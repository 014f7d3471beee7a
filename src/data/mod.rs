//! Labelled image sets with explicit preprocessing, and `.npy` arrays.

mod cifar;
mod folder;
pub mod npy;
mod preprocess;

use std::path::Path;

pub use cifar::Cifar10;
pub use folder::{parse_labels, ImageFolder};
pub use preprocess::{resize_bilinear, Preprocess};

use crate::error::{Error, Result};

/// A labelled image set.
pub trait Dataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there is no image.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[C, H, W]` after preprocessing (H = W = 0 when images keep their own size).
    fn image_shape(&self) -> [usize; 3];
    /// Label of image `i`.
    fn label(&self, i: usize) -> u32;
    /// Preprocessed CHW floats of image `i`.
    fn image(&self, i: usize) -> Result<Vec<f32>>;
    /// `kind:path`, for reports.
    fn describe(&self) -> String;
    /// Image `i` as named in messages (its file, for an image folder).
    fn item_name(&self, i: usize) -> String {
        format!("record {i}")
    }
}

/// Opens `cifar10:PATH` or `folder:DIR`.
pub fn open_dataset(spec: &str, preprocess: Preprocess) -> Result<Box<dyn Dataset>> {
    match spec.split_once(':') {
        Some(("cifar10", p)) => Ok(Box::new(Cifar10::open(p, preprocess)?)),
        Some(("folder", p)) => Ok(Box::new(ImageFolder::open(p, preprocess)?)),
        _ => Err(Error::Invalid(format!("dataset '{spec}': expected cifar10:PATH (CIFAR-10 binary) or folder:DIR (images + labels.txt)"))),
    }
}

/// Indices of an evenly strided subset: every k-th record with `k = len / limit`, the first `limit` of them.
/// Never the first N, since files such as the shared CIFAR-10 test split are sorted by class.
pub fn strided_subset(len: usize, limit: Option<usize>) -> Vec<usize> {
    match limit {
        Some(n) if n > 0 && n < len => {
            let k = len / n;
            (0..n).map(|i| i * k).collect()
        }
        _ => (0..len).collect(),
    }
}

/// Loads the images `idx` into one NCHW buffer, decoding in parallel.
pub fn load_batch(data: &dyn Dataset, idx: &[usize]) -> Result<(Vec<f32>, [usize; 4])> {
    use rayon::prelude::*;
    let imgs: Vec<Vec<f32>> = idx.par_iter().map(|&i| data.image(i)).collect::<Result<_>>()?;
    let per = imgs.first().map_or(0, Vec::len);
    let [c, mut h, mut w] = data.image_shape();
    if h == 0 {
        let side = ((per / c.max(1)) as f64).sqrt() as usize;
        (h, w) = (side, side);
    }
    if let Some(k) = imgs.iter().position(|v| v.len() != per) {
        return Err(Error::Invalid(format!(
            "{}: {} has {} values after preprocessing where {} has {per}: the images differ in size; set --resize and --crop",
            data.describe(),
            data.item_name(idx[k]),
            imgs[k].len(),
            data.item_name(idx[0])
        )));
    }
    if per != c * h * w {
        return Err(Error::Invalid(format!(
            "{}: {} has {per} values after preprocessing, not a square {c}-channel image; set --resize and --crop",
            data.describe(),
            data.item_name(idx[0])
        )));
    }
    Ok((imgs.concat(), [idx.len(), c, h, w]))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename, so an interrupted run
/// never leaves a half-written output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    // Errors name the output the user asked for, never the temporary file (an implementation detail).
    if !dir.is_dir() {
        return Err(Error::Invalid(format!("cannot write {}: the folder {} does not exist; create it first", path.display(), dir.display())));
    }
    // Renaming over a device, a folder or a pipe would replace it (as root, `-o /dev/null` would
    // delete the device); only a regular file, or nothing, may be at the target.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.is_file() {
            return Err(Error::Invalid(format!("cannot write {}: it exists and is not a regular file; choose another output path", path.display())));
        }
    }
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_refuses_what_is_not_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("zeroq-write-atomic-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let err = write_atomic(&dir.join("sub"), b"x").unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(dir.join("sub").is_dir(), "the folder is untouched");
        write_atomic(&dir.join("f"), b"x").unwrap();
        write_atomic(&dir.join("f"), b"y").unwrap();
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"y");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn strided_subset_spreads_over_classes() {
        assert_eq!(strided_subset(10, Some(3)), vec![0, 3, 6]);
        assert_eq!(strided_subset(10000, Some(1000)).last(), Some(&9990));
        assert_eq!(strided_subset(5, None).len(), 5);
        assert_eq!(strided_subset(5, Some(9)).len(), 5);
    }
}
