//! Charts as SVG text (plotters' SVG backend; no font files needed, text stays text).
//!
//! Each function returns the SVG document; callers write it atomically where they want it, or embed it
//! in an HTML report.

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::pareto::{fmt_bytes, Summary};
use crate::sensitivity::Sensitivity;

/// One colour per bit-width (and per series), distinguishable in print.
const PALETTE: [RGBColor; 6] = [RGBColor(214, 39, 40), RGBColor(255, 127, 14), RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(23, 190, 207)];

/// The colour of a bit-width, the same in every chart: warm for few bits, cool for many.
fn bits_color(bits: u32) -> RGBColor {
    match bits {
        0..=2 => PALETTE[0],
        3 => PALETTE[1],
        4 => PALETTE[3],
        5 => PALETTE[5],
        6 => PALETTE[4],
        _ => PALETTE[2],
    }
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing a chart failed: {e}"))
}

/// Lower and upper ends of a log axis covering the positive values of `vals`, padded by a factor.
fn log_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals.filter(|v| *v > 0.0 && v.is_finite()).fold((f64::INFINITY, 0f64), |(l, h), v| (l.min(v), h.max(v)));
    if !lo.is_finite() {
        return (1e-6, 1.0);
    }
    (lo / 2.0, hi * 2.0)
}

/// ZeroQ's sensitivity figure: Ω per layer (x: layer in network order), log scale, one line per
/// bit-width. Ω = 0 (no measurable change) is drawn at the bottom of the axis.
pub fn sensitivity_svg(sens: &Sensitivity) -> Result<String> {
    let n = sens.layers.len();
    let (lo, hi) = log_range(sens.layers.iter().flat_map(|l| l.omega.iter().copied()));
    let hi = hi * 30.0; // headroom for the legend above the highest line
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 520)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Per-layer sensitivity of {} ({} images)", sens.model, sens.images), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("weight layer (network order; names in the JSON table)")
            .y_desc("Ω = mean KL(FP32 ‖ quantized)")
            .x_labels(n.min(30))
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        for (j, &b) in sens.bits.iter().enumerate() {
            let color = bits_color(b);
            let pts: Vec<(f64, f64)> = sens.layers.iter().enumerate().map(|(i, l)| (i as f64, l.omega[j].max(lo))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{b}-bit"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_err)?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).position(SeriesLabelPosition::UpperRight).draw().map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The Pareto frontier (x: weight size, y: Σ Ω, log scale) with the uniform bit-widths and the chosen
/// configuration marked.
pub fn pareto_svg(summary: &Summary) -> Result<String> {
    let kb = |bytes: f64| bytes / 1e3;
    let sizes = summary.frontier.iter().map(|p| p.0).chain(summary.uniform.iter().map(|u| u.size_bytes));
    let (smin, smax) = sizes.fold((f64::INFINITY, 0f64), |(l, h), s| (l.min(s), h.max(s)));
    let (x0, x1) = if smin > smax { (0.0, 1.0) } else { (kb(smin) * 0.9, kb(smax) * 1.08) };
    let (lo, hi) = log_range(summary.frontier.iter().map(|p| p.1).chain(summary.uniform.iter().map(|u| u.omega)));
    let model = &summary.model;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Size vs. total sensitivity, {model}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("weight size (KB)")
            .y_desc("Σ Ω (sum of layer sensitivities)")
            .y_label_formatter(&|y| format!("{y:.0e}"))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        let line: Vec<(f64, f64)> = summary.frontier.iter().map(|&(s, o)| (kb(s), o.max(lo))).collect();
        let blue = PALETTE[2];
        chart
            .draw_series(LineSeries::new(line, blue.stroke_width(2)))
            .map_err(plot_err)?
            .label("Pareto frontier (mixed precision)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
        let black = BLACK;
        chart
            .draw_series(summary.uniform.iter().map(|u| {
                let p = (kb(u.size_bytes), u.omega.max(lo));
                // Labels go left of the largest point so they stay inside the plot.
                let dx = if u.size_bytes >= smax { -110 } else { 8 };
                EmptyElement::at(p) + Cross::new((0, 0), 7, black.stroke_width(2)) + Text::new(format!("uniform {:.0}-bit", u.avg_bits), (dx, -20), ("sans-serif", 15))
            }))
            .map_err(plot_err)?
            .label("uniform bit-width")
            .legend(move |(x, y)| Cross::new((x + 10, y), 6, black.stroke_width(2)));
        if let Some(c) = &summary.chosen {
            let red = PALETTE[0];
            let p = (kb(c.size_bytes), c.omega.max(lo));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at(p)
                        + Circle::new((0, 0), 8, red.filled())
                        + Text::new(format!("chosen: {} ({:.2} bits/weight)", fmt_bytes(c.size_bytes), c.avg_bits), (if c.size_bytes > 0.7 * smax { -300 } else { 10 }, 10), ("sans-serif", 15)),
                ))
                .map_err(plot_err)?
                .label("chosen configuration")
                .legend(move |(x, y)| Circle::new((x + 10, y), 6, red.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).position(SeriesLabelPosition::UpperRight).draw().map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Bars of the weight bit-width of each layer (x: layer in network order).
pub fn bits_svg(model: &str, bits: &[u32]) -> Result<String> {
    let n = bits.len();
    let top = bits.iter().copied().max().unwrap_or(8).max(8);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Weight bits per layer, {model}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..(top as f64 + 0.5))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("weight layer (network order)")
            .y_desc("bits")
            .x_labels(n.min(30))
            .x_label_formatter(&|x| format!("{}", x.round() as i64))
            .y_labels(top as usize + 1)
            .y_label_formatter(&|y| format!("{}", y.round() as i64))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(bits.iter().enumerate().map(|(i, &b)| {
                let color = bits_color(b);
                Rectangle::new([(i as f64 - 0.4, 0.0), (i as f64 + 0.4, b as f64)], color.filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}
