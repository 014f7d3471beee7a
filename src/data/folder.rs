//! An image folder with a `labels.txt` of `<file name> <class index>` lines (JPEG or PNG images).

use std::path::{Path, PathBuf};

use super::{Dataset, Preprocess};
use crate::error::{Error, Result};

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
        for (ln, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, label) = line
                .rsplit_once(char::is_whitespace)
                .ok_or_else(|| Error::data(&labels, format!("line {}: expected '<file name> <class index>', got '{line}'", ln + 1)))?;
            let label: u32 = label
                .trim()
                .parse()
                .map_err(|_| Error::data(&labels, format!("line {}: class index '{label}' is not a non-negative integer", ln + 1)))?;
            let path = dir.join(name.trim());
            if !path.is_file() {
                return Err(Error::data(&labels, format!("line {}: image '{}' does not exist", ln + 1, path.display())));
            }
            items.push((path, label));
        }
        if items.is_empty() {
            return Err(Error::data(&labels, "lists no images"));
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
        let img = image::open(path).map_err(|e| Error::data(path, format!("cannot decode image: {e}")))?.to_rgb8();
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
}
