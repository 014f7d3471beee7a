//! `zeroq inspect`.


use clap::Args;

use super::model_arg::ModelArgs;
use super::Output;

/// Arguments of `zeroq inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The model: ONNX path, --arch/--weights or --zoo.
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(a: InspectArgs, out: &Output) -> anyhow::Result<()> {
    let g = a.model.load()?;
    let s = zeroq::model::summarize(&g);
    out.result(&s, || {
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
        t
    })
}
