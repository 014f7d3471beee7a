//! The hand-written kernels as burn operations, so that they run inside burn's graph on both the inference
//! and the autodiff device.
//!
//! burn 0.22 routes a custom operation through a *backend extension*: a trait over backends
//! ([`CpuKernels`]) that `#[backend_extension]` turns into a method on burn's runtime `Dispatch` backend.
//! It is implemented for `Flex` (the forward kernel on the tensor's bytes, no copy when the tensor is
//! contiguous) and for `Autodiff<Flex>`, which records a backward step calling the gradient kernels. The
//! ops: Conv (input, weight and bias gradients), BatchNorm with running statistics as a per-channel affine
//! map, Relu/Clip as a clamp, and the distillation loss's BN-statistics term. Gradients are computed only
//! for the tracked parents: in distillation only the input is tracked, so the weight gradient costs
//! nothing there. Per-channel parameters passed as host values (affine, clamp bounds, loss targets) are
//! constants: no gradient flows to them.
//!
//! Other backends (a CUDA device) are not listed: [`super::super::device::own_kernels`] sends them to
//! burn's own ops, which stay the reference every kernel here is tested against.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Dispatch, Flex, TensorMetadata};
use burn::tensor::{Tensor, TensorData};

use super::conv::{
    conv2d_bias_grad, conv2d_forward_keyed, conv2d_input_grad_keyed, conv2d_weight_grad, Conv2dParams, Epilogue,
};
use super::prepared::WeightKey;
use super::{bn_stats, elementwise};
pub use super::elementwise::FakeQuantParams;

/// Strides, padding, dilations and groups of a convolution: the part of [`Conv2dParams`] that the
/// tensors' shapes do not give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvAttrs {
    /// Strides.
    pub strides: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilations.
    pub dilations: [usize; 2],
    /// Groups.
    pub groups: usize,
}

/// zeroq's kernels as a burn backend extension (see the module docs).
#[backend_extension(Autodiff, Flex)]
pub trait CpuKernels: burn::backend::Backend {
    /// 2-D convolution of `x` `[n, cin, h, w]` with `w` `[cout, cin/groups, kh, kw]` plus `bias` `[cout]`.
    fn zeroq_conv2d(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        attrs: ConvAttrs,
    ) -> FloatTensor<Self>;

    /// [`CpuKernels::zeroq_conv2d`] with a fused epilogue (see [`super::conv::Epilogue`]): plus
    /// `residual` (the output's shape; a tensor without elements: none), then clamped to `bounds`. For
    /// inference plans; the autodiff backend composes the same three ops with their gradients.
    fn zeroq_conv2d_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        attrs: ConvAttrs,
        bounds: ClampBounds,
    ) -> FloatTensor<Self>;

    /// The BatchNorm-statistics loss term of `x` `[b, c, h, w]` against `targets` (see [`super::bn_stats`]),
    /// as a one-element tensor.
    fn zeroq_stat_loss(x: FloatTensor<Self>, targets: StatTargets) -> FloatTensor<Self>;

    /// `x·scale[c] + shift[c]` on `x` `[n, c, ...]` (BatchNorm with running statistics).
    fn zeroq_channel_affine(x: FloatTensor<Self>, affine: ChannelAffine) -> FloatTensor<Self>;

    /// `x` clamped to `[bounds.lo, bounds.hi]` (Relu, Clip), see [`super::elementwise::clamp_grad`].
    fn zeroq_clamp(x: FloatTensor<Self>, bounds: ClampBounds) -> FloatTensor<Self>;

    /// Per-tensor fake quantization of `x` with the one-element step size `scale`, straight-through
    /// gradients to both (LSQ) and QDrop (see [`super::elementwise::fake_quant`]).
    fn zeroq_fake_quant(x: FloatTensor<Self>, scale: FloatTensor<Self>, params: FakeQuantParams) -> FloatTensor<Self>;
}

/// Per-channel scale and shift of [`CpuKernels::zeroq_channel_affine`].
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelAffine {
    /// Multiplier per channel.
    pub scale: Vec<f32>,
    /// Offset per channel.
    pub shift: Vec<f32>,
}

/// Bounds of [`CpuKernels::zeroq_clamp`] (infinite for a one-sided clamp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClampBounds {
    /// Lower bound.
    pub lo: f32,
    /// Upper bound.
    pub hi: f32,
}

/// Elements per `(image, channel)` plane: the product of the dims after the channel axis.
fn plane_of(t: &FlexTensor) -> usize {
    t.shape().iter().skip(2).product()
}

/// A flex tensor with the data and the shape of `like`.
fn shaped_like(data: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, like.shape()))
}

/// Per-channel targets of [`CpuKernels::zeroq_stat_loss`]: mean, std, and the ε inside the square root.
#[derive(Clone, Debug, PartialEq)]
pub struct StatTargets {
    /// Target mean per channel.
    pub mean: Vec<f32>,
    /// Target standard deviation per channel.
    pub std: Vec<f32>,
    /// ε added to the variance before the square root.
    pub eps: f32,
    /// Per-channel factor on each error before squaring (empty: 1), e.g. `1/s` for the normalised loss.
    pub weight: Vec<f32>,
    /// Statistics pooled over the batch (one `μ`, `σ` per channel, the loss not divided by the batch)
    /// instead of per sample.
    pub pooled: bool,
}

/// Plane statistics and loss of [`CpuKernels::zeroq_stat_loss`].
fn stat_loss_parts(x: &FlexTensor, t: &StatTargets) -> (Vec<(f32, f32)>, f32) {
    let s = x.shape();
    let positions = s[2] * s[3];
    let (stats, divisor) = if t.pooled {
        (with_f32(x, |xs| bn_stats::channel_stats(xs, s[1], positions, t.eps)), 1)
    } else {
        (with_f32(x, |xs| bn_stats::plane_stats(xs, positions, t.eps)), s[0])
    };
    let l = bn_stats::loss(&stats, &t.mean, &t.std, &t.weight, divisor);
    (stats, l)
}

/// The full geometry from the input and weight shapes.
fn params(x: &FlexTensor, w: &FlexTensor, a: ConvAttrs) -> Conv2dParams {
    let (xs, ws) = (x.shape(), w.shape());
    Conv2dParams {
        n: xs[0],
        cin: xs[1],
        hw: [xs[2], xs[3]],
        cout: ws[0],
        kernel: [ws[2], ws[3]],
        strides: a.strides,
        pads: a.pads,
        dilations: a.dilations,
        groups: a.groups,
    }
}

/// Runs `f` on the tensor's f32 elements in row-major order, borrowing them when the tensor is
/// contiguous f32 and converting a copy otherwise.
fn with_f32<R>(t: &FlexTensor, f: impl FnOnce(&[f32]) -> R) -> R {
    match t.as_slice::<f32>() {
        Some(s) if t.is_contiguous() => f(s),
        _ => f(&t
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()),
    }
}

/// The identity of a weight tensor's elements for the kernels' per-weight cache ([`super::prepared`]);
/// `None` unless [`with_f32`] borrows them (contiguous f32), since a converted copy has no identity.
fn weight_key(t: &FlexTensor) -> Option<WeightKey> {
    if t.as_slice::<f32>().is_none() || !t.is_contiguous() {
        return None;
    }
    t.layout().contiguous_offsets().map(|range| WeightKey::new(&t.data_arc(), range))
}

/// The convolution on `Flex` tensors, plus `residual` (a tensor of the output's shape, or one without
/// elements: none) and clamped to `bounds`; `winograd` as in [`conv2d_forward_keyed`] (inference allows
/// it, the autodiff path does not).
fn conv_forward(
    x: FlexTensor,
    w: FlexTensor,
    bias: FlexTensor,
    residual: Option<FlexTensor>,
    bounds: ClampBounds,
    attrs: ConvAttrs,
    winograd: bool,
) -> FlexTensor {
    let p = params(&x, &w, attrs);
    let [ho, wo] = p.out_hw();
    let key = weight_key(&w);
    let residual = residual.filter(|r| r.shape().iter().product::<usize>() > 0);
    let y = with_f32(&x, |xs| {
        with_f32(&w, |ws| {
            with_f32(&bias, |bs| {
                let run = |r: Option<&[f32]>| {
                    let e = Epilogue { residual: r, lo: bounds.lo, hi: bounds.hi };
                    conv2d_forward_keyed(xs, ws, key.as_ref(), Some(bs), &e, &p, winograd)
                };
                match &residual {
                    Some(r) => with_f32(r, |rs| run(Some(rs))),
                    None => run(None),
                }
            })
        })
    });
    flex(y, [p.n, p.cout, ho, wo])
}

/// No clamp.
const UNBOUNDED: ClampBounds = ClampBounds { lo: f32::NEG_INFINITY, hi: f32::INFINITY };

fn flex(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

impl CpuKernels for Flex {
    fn zeroq_conv2d(
        x: FlexTensor,
        w: FlexTensor,
        bias: FlexTensor,
        attrs: ConvAttrs,
    ) -> FlexTensor {
        conv_forward(x, w, bias, None, UNBOUNDED, attrs, true)
    }

    fn zeroq_conv2d_fused(
        x: FlexTensor,
        w: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
        attrs: ConvAttrs,
        bounds: ClampBounds,
    ) -> FlexTensor {
        conv_forward(x, w, bias, Some(residual), bounds, attrs, true)
    }

    fn zeroq_stat_loss(x: FlexTensor, targets: StatTargets) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(vec![stat_loss_parts(&x, &targets).1], [1]))
    }

    fn zeroq_channel_affine(x: FlexTensor, a: ChannelAffine) -> FlexTensor {
        let y = with_f32(&x, |xs| {
            elementwise::channel_affine(xs, &a.scale, &a.shift, plane_of(&x))
        });
        shaped_like(y, &x)
    }

    fn zeroq_clamp(x: FlexTensor, b: ClampBounds) -> FlexTensor {
        shaped_like(with_f32(&x, |xs| elementwise::clamp(xs, b.lo, b.hi)), &x)
    }

    fn zeroq_fake_quant(x: FlexTensor, scale: FlexTensor, p: FakeQuantParams) -> FlexTensor {
        let s = with_f32(&scale, |v| v.first().copied().unwrap_or(1.0));
        shaped_like(with_f32(&x, |xs| elementwise::fake_quant(xs, s, &p)), &x)
    }
}

/// The backward step of [`CpuKernels::zeroq_fake_quant`]; its state is the input, the step size and the
/// parameters.
#[derive(Debug)]
struct FakeQuantBackward;

impl Backward<Flex, 2> for FakeQuantBackward {
    type State = (FlexTensor, f32, FakeQuantParams);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_s] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, s, p) = ops.state;
        let (dx, ds) = with_f32(&x, |xs| with_f32(&dy, |g| elementwise::fake_quant_grad(xs, g, s, &p)));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, shaped_like(dx, &dy));
        }
        if let Some(node) = node_s {
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(vec![ds], [1])));
        }
    }
}

/// The backward step of [`CpuKernels::zeroq_channel_affine`]: `dx = dy·scale[c]`.
#[derive(Debug)]
struct ChannelAffineBackward;

impl Backward<Flex, 1> for ChannelAffineBackward {
    type State = Vec<f32>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        if let Some(node) = node_x {
            let dx = with_f32(&dy, |g| {
                elementwise::channel_scale(g, &ops.state, plane_of(&dy))
            });
            grads.register::<Flex>(node.id, shaped_like(dx, &dy));
        }
    }
}

/// The backward step of [`CpuKernels::zeroq_clamp`]; its state is the input and the bounds.
#[derive(Debug)]
struct ClampBackward;

impl Backward<Flex, 1> for ClampBackward {
    type State = (FlexTensor, ClampBounds);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, b) = ops.state;
        if let Some(node) = node_x {
            let dx = with_f32(&x, |xs| {
                with_f32(&dy, |g| elementwise::clamp_grad(xs, g, b.lo, b.hi))
            });
            grads.register::<Flex>(node.id, shaped_like(dx, &dy));
        }
    }
}

/// The backward step of [`CpuKernels::zeroq_conv2d`] on `Autodiff<Flex>`; its state is the input, the
/// weight and the attributes (tensors are reference-counted, so keeping them costs no copy).
#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, ConvAttrs);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w, attrs) = ops.state;
        let p = params(&x, &w, attrs);
        with_f32(&dy, |dys| {
            if let Some(node) = node_x {
                let key = weight_key(&w);
                let dx = with_f32(&w, |ws| conv2d_input_grad_keyed(dys, ws, key.as_ref(), &p));
                grads.register::<Flex>(node.id, flex(dx, [p.n, p.cin, p.hw[0], p.hw[1]]));
            }
            if let Some(node) = node_w {
                let dw = with_f32(&x, |xs| conv2d_weight_grad(xs, dys, &p));
                grads.register::<Flex>(
                    node.id,
                    flex(dw, [p.cout, p.cin / p.groups, p.kernel[0], p.kernel[1]]),
                );
            }
            if let Some(node) = node_b {
                let db = conv2d_bias_grad(dys, &p);
                grads.register::<Flex>(
                    node.id,
                    FlexTensor::from_data(TensorData::new(db, [p.cout])),
                );
            }
        });
    }
}

/// The backward step of [`CpuKernels::zeroq_stat_loss`]; its state is the input, its plane statistics
/// and the targets.
#[derive(Debug)]
struct StatLossBackward;

impl Backward<Flex, 1> for StatLossBackward {
    type State = (FlexTensor, Vec<(f32, f32)>, StatTargets);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let upstream = with_f32(&grads.consume::<Flex>(&ops.node), |g| g.iter().sum::<f32>());
        let (x, stats, t) = ops.state;
        if let Some(node) = node_x {
            let s = x.shape();
            let dx = with_f32(&x, |xs| {
                bn_stats::input_grad(xs, &stats, &t.mean, &t.std, &t.weight, s[2] * s[3], upstream)
            });
            grads.register::<Flex>(node.id, flex(dx, [s[0], s[1], s[2], s[3]]));
        }
    }
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn zeroq_conv2d(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        attrs: ConvAttrs,
    ) -> FloatTensor<Self> {
        let prep = Conv2dBackward
            .prepare::<C>([x.node(), w.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (x, w, bias) = (
            x.into_primitive(),
            w.into_primitive(),
            bias.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let y = conv_forward(x.clone(), w.clone(), bias, None, UNBOUNDED, attrs, false);
                prep.finish((x, w, attrs), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(conv_forward(x, w, bias, None, UNBOUNDED, attrs, false)),
        }
    }

    fn zeroq_conv2d_fused(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        attrs: ConvAttrs,
        bounds: ClampBounds,
    ) -> FloatTensor<Self> {
        let y = Self::zeroq_conv2d(x, w, bias, attrs);
        let y = if residual.shape().iter().product::<usize>() > 0 {
            <Self as burn::backend::ops::FloatTensorOps<Self>>::float_add(y, residual)
        } else {
            y
        };
        Self::zeroq_clamp(y, bounds)
    }

    fn zeroq_stat_loss(x: FloatTensor<Self>, targets: StatTargets) -> FloatTensor<Self> {
        let prep = StatLossBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = x.into_primitive();
        match prep {
            OpsKind::Tracked(prep) => {
                let (stats, l) = stat_loss_parts(&x, &targets);
                prep.finish(
                    (x, stats, targets),
                    FlexTensor::from_data(TensorData::new(vec![l], [1])),
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::zeroq_stat_loss(x, targets)),
        }
    }

    fn zeroq_channel_affine(x: FloatTensor<Self>, affine: ChannelAffine) -> FloatTensor<Self> {
        let scale = affine.scale.clone();
        unary::<_, C>(
            ChannelAffineBackward,
            x,
            |_| scale,
            |x| Flex::zeroq_channel_affine(x, affine),
        )
    }

    fn zeroq_clamp(x: FloatTensor<Self>, bounds: ClampBounds) -> FloatTensor<Self> {
        unary::<_, C>(
            ClampBackward,
            x,
            |x| (x.clone(), bounds),
            |x| Flex::zeroq_clamp(x, bounds),
        )
    }

    fn zeroq_fake_quant(x: FloatTensor<Self>, scale: FloatTensor<Self>, p: FakeQuantParams) -> FloatTensor<Self> {
        let prep = FakeQuantBackward.prepare::<C>([x.node(), scale.node()]).compute_bound().stateful();
        let (x, scale) = (x.into_primitive(), scale.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let s = with_f32(&scale, |v| v.first().copied().unwrap_or(1.0));
                let y = Flex::zeroq_fake_quant(x.clone(), scale, p.clone());
                prep.finish((x, s, p), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::zeroq_fake_quant(x, scale, p)),
        }
    }
}

/// Records a one-input op on `Autodiff<Flex>`: `forward` on the input's primitive, and `backward` with the
/// state that `state` takes from the input when the input is tracked.
fn unary<BO: Backward<Flex, 1>, C: CheckpointStrategy>(
    backward: BO,
    x: FloatTensor<Autodiff<Flex, C>>,
    state: impl FnOnce(&FlexTensor) -> BO::State,
    forward: impl FnOnce(FlexTensor) -> FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>> {
    let prep = backward.prepare::<C>([x.node()]).compute_bound().stateful();
    let x = x.into_primitive();
    match prep {
        OpsKind::Tracked(prep) => {
            let s = state(&x);
            prep.finish(s, forward(x))
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x)),
    }
}

/// The BatchNorm-statistics loss term of `x` `[b, c, h, w]` through [`CpuKernels`] (one pass forward, one
/// backward): `(Σ_bc w_c²·((μ−mean_c)² + (σ−std_c)²)) / b` over per-sample, per-channel statistics, with
/// `w = weight` (1 without); `pooled`: `Σ_c w_c²·(…)` over statistics pooled over the batch instead. `x`
/// must be on a flex device and `mean`, `std`, `weight` have one value per channel.
pub fn stat_matching_loss(x: Tensor<4>, mean: &[f32], std: &[f32], weight: Option<&[f32]>, pooled: bool, eps: f32) -> Tensor<1> {
    let targets = StatTargets {
        mean: mean.to_vec(),
        std: std.to_vec(),
        eps,
        weight: weight.map_or_else(Vec::new, <[f32]>::to_vec),
        pooled,
    };
    Tensor::from_dispatch(Dispatch::zeroq_stat_loss(x.into_dispatch(), targets))
}

/// `x·scale[c] + shift[c]` on `x` `[n, c, ...]` through [`CpuKernels`] (BatchNorm with running statistics as
/// one pass). `x` must be on a flex device; `scale` and `shift` have one value per channel and are constants
/// (no gradient is computed for them).
pub fn channel_affine<const D: usize>(x: Tensor<D>, scale: &[f32], shift: &[f32]) -> Tensor<D> {
    let a = ChannelAffine {
        scale: scale.to_vec(),
        shift: shift.to_vec(),
    };
    Tensor::from_dispatch(Dispatch::zeroq_channel_affine(x.into_dispatch(), a))
}

/// `x` clamped to `[lo, hi]` through [`CpuKernels`] (one pass forward and backward); `x` must be on a flex
/// device.
pub fn clamp<const D: usize>(x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::zeroq_clamp(
        x.into_dispatch(),
        ClampBounds { lo, hi },
    ))
}

/// Per-tensor fake quantization of the flat `x` with the one-element step size `scale` through
/// [`CpuKernels`], with straight-through gradients to `x` and LSQ's to `scale`; both on a flex device.
pub fn fake_quant(x: Tensor<1>, scale: Tensor<1>, params: FakeQuantParams) -> Tensor<1> {
    Tensor::from_dispatch(Dispatch::zeroq_fake_quant(x.into_dispatch(), scale.into_dispatch(), params))
}

/// [`conv2d`] plus `residual` (when given; the output's shape), clamped to `[lo, hi]`, in one pass per
/// image (see [`super::conv::Epilogue`]).
pub fn conv2d_fused(x: Tensor<4>, w: Tensor<4>, bias: Tensor<1>, residual: Option<Tensor<4>>, attrs: ConvAttrs, lo: f32, hi: f32) -> Tensor<4> {
    let residual = residual.unwrap_or_else(|| Tensor::<4>::empty([0, 0, 0, 0], &x.device()));
    Tensor::from_dispatch(Dispatch::zeroq_conv2d_fused(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.into_dispatch(),
        residual.into_dispatch(),
        attrs,
        ClampBounds { lo, hi },
    ))
}

/// 2-D convolution through [`CpuKernels`]: `x` `[n, cin, h, w]`, `w` `[cout, cin/groups, kh, kw]`,
/// `bias` `[cout]`. The tensors must be on a flex device (plain or autodiff); the caller has validated
/// the shapes and the attributes.
pub fn conv2d(x: Tensor<4>, w: Tensor<4>, bias: Tensor<1>, attrs: ConvAttrs) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::zeroq_conv2d(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.into_dispatch(),
        attrs,
    ))
}
