//! The execution engine: run a [`Graph`](crate::ir::Graph) forward on a batch, keep any intermediate
//! tensor, and (on an autodiff device) differentiate a loss with respect to the input.
//!
//! Kernels are burn's (`flex` CPU backend); [`device`] is the single place that picks the backend.

pub mod device;
mod exec;
mod grad;
pub mod kernels;
mod ops;
mod value;

pub use exec::{eval_on_host, NodeHook, Plan, RunOutput, RunState};
pub use grad::{input_gradient, InputGradient};
pub use ops::{fake_quant, to_rank};
pub use value::{DynTensor, Value};
