//! `zeroq inspect`.


use clap::Args;
use serde::Serialize;

use super::model_arg::ModelArgs;
use super::Output;

/// Arguments of `zeroq inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// What distillation does by default on this model (its cost decides the size).
#[derive(Serialize)]
struct DistillDefault {
    activations_per_image: f64,
    batch: usize,
    iters: usize,
}

#[derive(Serialize)]
struct InspectJson<'a> {
    #[serde(flatten)]
    summary: &'a zeroq::model::Summary,
    /// `None` when the input shape is not fixed.
    distill_default: Option<DistillDefault>,
}

pub fn run(a: InspectArgs, out: &Output) -> anyhow::Result<()> {
    let g = a.model.load()?;
    let s = zeroq::model::summarize(&g);
    let distill_default = match zeroq::distill::input_chw(&g) {
        Ok(chw) => {
            let act = zeroq::distill::budget::activations_per_image(&g, chw)?;
            let (batch, iters) = zeroq::distill::budget::default_size(act);
            Some(DistillDefault { activations_per_image: act, batch, iters })
        }
        Err(_) => None,
    };
    let j = InspectJson { summary: &s, distill_default };
    out.result(&j, || {
        let mut t = String::new();
        let kib = |b: f64| format!("{:.1} KiB", b / 1024.0);
        t += &format!("model    {}\nopset    {}\n", a.model.display(), s.opset);
        for i in &s.inputs {
            t += &format!("input    {} [{}]\n", i.name, i.shape.join(", "));
        }
        for o in &s.outputs {
            t += &format!("output   {} [{}]\n", o.name, o.shape.join(", "));
        }
        let ops: Vec<String> = s.op_counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        t += &format!("ops      {}\n", ops.join(", "));
        t += &format!("BN       {}{}\n", s.batch_norms, if s.batch_norms == 0 { " (ZeroQ distillation needs BatchNormalization nodes)" } else { "" });
        t += &format!("\n{:<4} {:<28} {:<6} {:<16} {:>9} {:>10} {:>10} {:>10} {:>10}\n", "#", "layer", "op", "weight", "params", "2-bit", "4-bit", "8-bit", "fp32");
        for (i, l) in s.weight_layers.iter().enumerate() {
            let shape = format!("{:?}", l.weight_shape);
            t += &format!(
                "{:<4} {:<28} {:<6} {:<16} {:>9} {:>10} {:>10} {:>10} {:>10}\n",
                i, l.name, l.op, shape, l.params, kib(l.size_bytes[&2]), kib(l.size_bytes[&4]), kib(l.size_bytes[&8]), kib(l.size_bytes[&32])
            );
        }
        let ts = &s.total_size_bytes;
        t += &format!(
            "{:<4} {:<28} {:<6} {:<16} {:>9} {:>10} {:>10} {:>10} {:>10}\n",
            "", "total", "", "", s.total_params, kib(ts[&2]), kib(ts[&4]), kib(ts[&8]), kib(ts[&32])
        );
        if let Some(d) = &j.distill_default {
            t += &format!(
                "
distillation default: {} images × up to {} iterations per batch ({:.2} M weight-layer outputs per image)\n",
                d.batch,
                d.iters,
                d.activations_per_image / 1e6
            );
        }
        t
    })
}
