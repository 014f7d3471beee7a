//! Window operators: Conv (checked, then to the own kernels or burn's) and pooling, with their padding
//! resolution and window check.

use super::*;

/// Conv of `x` with `w` and optional bias `b`, checked; `fused`: a residual added to the output and the
/// clamp bounds after it (an inference plan's [`Op::FusedConv`]). A residual that broadcasts, rather than
/// one of the output's shape, is added after the Conv as its own op.
pub(super) fn convolve(c: &crate::ir::Conv, x: DynTensor, w: DynTensor, b: Option<DynTensor>, fused: Option<(Option<DynTensor>, f32, f32)>) -> R<DynTensor> {
    let xt = x.into_r4("Conv").map_err(|e| e.to_string())?;
    let w = w.into_r4("Conv weight").map_err(|e| e.to_string())?;
    let [n, cin, h, wd] = xt.dims();
    let [cout, cpg, kh, kw] = w.dims();
    if c.group == 0 || cin != cpg * c.group || cout % c.group != 0 {
        return Err(inv(format!(
            "input has {cin} channels but the weight {:?} with group={} expects {}",
            [cout, cpg, kh, kw],
            c.group,
            cpg * c.group
        )));
    }
    let b = b.map(|b| b.into_flat());
    if let Some(b) = &b {
        if b.dims()[0] != cout {
            return Err(inv(format!("bias has {} values for {cout} output channels", b.dims()[0])));
        }
    }
    let pads = resolve_pads(c.auto_pad, c.pads, [h, wd], [kh, kw], c.strides, c.dilations);
    check_window([h, wd], pads, [kh, kw], c.dilations)?;
    let is_fused = fused.is_some();
    let (residual, lo, hi) = fused.unwrap_or((None, f32::NEG_INFINITY, f32::INFINITY));
    let clamps = lo > f32::NEG_INFINITY || hi < f32::INFINITY;
    let side = |i: usize, size: usize, k: usize| (size + pads[i] + pads[i + 2] - c.dilations[i] * (k - 1) - 1) / c.strides[i] + 1;
    let out = [n, cout, side(0, h, kh), side(1, wd, kw)];
    let (residual, late) = match residual {
        Some(r) if r.dims() != out => (None, Some(r)),
        r => (r.map(|r| r.into_r4("the residual").map_err(|e| e.to_string())).transpose()?, None),
    };
    let y = if crate::engine::device::own_kernels(&xt.device()) {
        let attrs = ConvAttrs { strides: c.strides, pads, dilations: c.dilations, groups: c.group };
        let b = b.unwrap_or_else(|| Tensor::zeros([cout], &xt.device()));
        if is_fused && late.is_none() {
            kernels::conv2d_fused(xt, w, b, residual, attrs, lo, hi)
        } else {
            kernels::conv2d(xt, w, b, attrs)
        }
    } else {
        let opts = ConvOptions::new_with_padding(c.strides, [(pads[0], pads[2]), (pads[1], pads[3])], c.dilations, c.group);
        let y = conv2d(xt, w, b, opts);
        let y = match residual {
            Some(r) => y.add(r),
            None => y,
        };
        if clamps && late.is_none() { y.clamp(lo, hi) } else { y }
    };
    let Some(r) = late else { return Ok(DynTensor::R4(y)) };
    let Value::F(sum, _) = binary(&Op::Add, &Value::float(DynTensor::R4(y)), &Value::float(r))? else {
        return Err(inv("the residual Add gave an integer tensor"));
    };
    Ok(if clamps { dyn_map!(sum, t => t.clamp(lo, hi)) } else { sum })
}

/// Explicit `[top, left, bottom, right]` padding for a window op, resolving `auto_pad` from the input size.
pub(super) fn resolve_pads(auto: AutoPad, pads: [usize; 4], input: [usize; 2], kernel: [usize; 2], strides: [usize; 2], dil: [usize; 2]) -> [usize; 4] {
    match auto {
        AutoPad::NotSet => pads,
        AutoPad::Valid => [0; 4],
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut p = [0usize; 4];
            for i in 0..2 {
                let out = input[i].div_ceil(strides[i].max(1));
                let eff = (kernel[i] - 1) * dil[i] + 1;
                let total = ((out - 1) * strides[i] + eff).saturating_sub(input[i]);
                let (small, big) = (total / 2, total - total / 2);
                let (begin, end) = if auto == AutoPad::SameUpper { (small, big) } else { (big, small) };
                p[i] = begin;
                p[i + 2] = end;
            }
            p
        }
    }
}

pub(super) fn check_window(input: [usize; 2], pads: [usize; 4], kernel: [usize; 2], dil: [usize; 2]) -> R<()> {
    for i in 0..2 {
        let eff = (kernel[i].max(1) - 1) * dil[i] + 1;
        if input[i] + pads[i] + pads[i + 2] < eff {
            return Err(inv(format!(
                "spatial size {:?} (padded by {pads:?}) is smaller than the window {kernel:?}; check the input resolution",
                input
            )));
        }
    }
    Ok(())
}

/// MaxPool (`max`) or AveragePool of `x`, its padding resolved and its window checked.
pub(super) fn pool(x: Tensor<4>, p: &Pool, max: bool) -> R<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    let pads = resolve_pads(p.auto_pad, p.pads, [h, w], p.kernel, p.strides, p.dilations);
    check_window([h, w], pads, p.kernel, p.dilations)?;
    let pairs = [(pads[0], pads[2]), (pads[1], pads[3])];
    Ok(if max {
        let o = MaxPoolOptions::new(p.kernel)
            .with_stride(p.strides)
            .with_padding_pairs(pairs)
            .with_dilation(p.dilations)
            .with_ceil_mode(p.ceil_mode);
        max_pool2d(x, o)
    } else {
        let o = AvgPoolOptions::new(p.kernel)
            .with_stride(p.strides)
            .with_padding_pairs(pairs)
            .with_count_include_pad(p.count_include_pad)
            .with_ceil_mode(p.ceil_mode);
        avg_pool2d(x, o)
    })
}
