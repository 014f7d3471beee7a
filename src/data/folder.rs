//! An image folder with a `labels.txt` of `<file name> <class index>` lines (JPEG or PNG images).

use std::path::{Path, PathBuf};

use super::{Dataset, Preprocess};
use crate::error::{Error, Result};
use crate::validate::MAX_IMAGE_PIXELS;

/// Images listed in `DIR/labels.txt`, decoded on demand.
pub struct ImageFolder {
    dir: PathBuf,
    items: Vec<(PathBuf, u32)>,
    preprocess: Preprocess,
}

impl ImageFolder {
    /// Reads `labels.txt` and checks every listed image exists.
    pub fn open(dir: impl AsRef<Path>, preprocess: Preprocess) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let labels = dir.join("labels.txt");
        let text = std::fs::read_to_string(&labels).map_err(|e| Error::io(&labels, e))?;
        let mut items = Vec::new();
        for (ln, name, label) in parse_labels(&text).map_err(|e| Error::data(&labels, e))? {
            let path = dir.join(name);
            if !path.is_file() {
                return Err(Error::data(&labels, format!("line {ln}: image '{}' does not exist", path.display())));
            }
            items.push((path, label));
        }
        Ok(Self { dir, items, preprocess })
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn image_shape(&self) -> [usize; 3] {
        // Without a crop the size depends on each image; the first one stands for all (checked per image).
        let s = self.preprocess.crop.or(self.preprocess.resize).unwrap_or(0);
        [3, s, s]
    }

    fn label(&self, i: usize) -> u32 {
        self.items[i].1
    }

    fn image(&self, i: usize) -> Result<Vec<f32>> {
        let path = &self.items[i].0;
        let img = decode_bounded(path)?;
        let (w, h) = img.dimensions();
        let (x, oh, ow) = self.preprocess.apply(img.as_raw(), h as usize, w as usize);
        let [_, eh, ew] = self.image_shape();
        if eh != 0 && (oh, ow) != (eh, ew) {
            return Err(Error::data(path, format!("preprocessed to {oh}x{ow}, expected {eh}x{ew}; set a crop size")));
        }
        Ok(x)
    }

    fn describe(&self) -> String {
        format!("folder:{}", self.dir.display())
    }

    fn item_name(&self, i: usize) -> String {
        self.items.get(i).map_or_else(|| format!("image {i}"), |(p, _)| p.display().to_string())
    }
}

/// Parses a `labels.txt`: `(line number, file name, class index)` per listed image, blank lines and
/// `#` comments skipped; at least one image.
pub fn parse_labels(text: &str) -> std::result::Result<Vec<(usize, &str, u32)>, String> {
    let mut items = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, label) = line.rsplit_once(char::is_whitespace).ok_or_else(|| format!("line {}: expected '<file name> <class index>', got '{line}'", ln + 1))?;
        let label: u32 = label.trim().parse().map_err(|_| format!("line {}: class index '{label}' is not a non-negative integer", ln + 1))?;
        items.push((ln + 1, name.trim(), label));
    }
    if items.is_empty() {
        return Err("lists no images".into());
    }
    Ok(items)
}

/// Decodes an image after checking the size its header declares against [`MAX_IMAGE_PIXELS`], so a
/// tiny file claiming 100000 x 100000 pixels is refused before its pixels are allocated.
fn decode_bounded(path: &Path) -> Result<image::RgbImage> {
    let cannot = |e: &dyn std::fmt::Display| Error::data(path, format!("cannot decode image: {e}"));
    let reader = || image::ImageReader::open(path).and_then(|r| r.with_guessed_format()).map_err(|e| Error::io(path, e));
    let (w, h) = reader()?.into_dimensions().map_err(|e| cannot(&e))?;
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(Error::data(path, format!("image of {w}x{h} pixels is larger than zeroq's limit of {MAX_IMAGE_PIXELS} pixels; downscale it first")));
    }
    Ok(reader()?.decode().map_err(|e| cannot(&e))?.to_rgb8())
}
