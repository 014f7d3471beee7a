//! Pictures for people: a PNG grid of (distilled) images, and charts ([`charts`]).

pub mod charts;
pub mod html;

use std::path::Path;

use crate::data::{write_atomic, Preprocess};
use crate::error::{Error, Result};

/// Writes `data` (`[N, 3, H, W]`, normalised) as a PNG grid, de-normalised with `pre`, each image scaled up
/// by `zoom` (nearest neighbour) with a 2-pixel gap.
pub fn write_image_grid(path: &Path, data: &[f32], shape: [usize; 4], pre: &Preprocess, zoom: usize) -> Result<()> {
    write_atomic(path, &image_grid_png(data, shape, pre, zoom)?)
}

/// The PNG bytes of [`write_image_grid`].
pub fn image_grid_png(data: &[f32], shape: [usize; 4], pre: &Preprocess, zoom: usize) -> Result<Vec<u8>> {
    let [n, c, h, w] = shape;
    if c != 3 {
        return Err(Error::Invalid(format!("an image grid needs 3-channel images, got {c} channels")));
    }
    let zoom = zoom.max(1);
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (cw, ch) = (w * zoom + gap, h * zoom + gap);
    let (gw, gh) = (cols * cw + gap, rows * ch + gap);
    let mut img = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([255, 255, 255]));
    for i in 0..n {
        let rgb = pre.denormalize(&data[i * c * h * w..(i + 1) * c * h * w], h, w);
        let (x0, y0) = (gap + (i % cols) * cw, gap + (i / cols) * ch);
        for y in 0..h * zoom {
            for x in 0..w * zoom {
                let p = ((y / zoom) * w + x / zoom) * 3;
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Rgb([rgb[p], rgb[p + 1], rgb[p + 2]]));
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::Invalid(format!("encoding PNG: {e}")))?;
    Ok(bytes)
}
