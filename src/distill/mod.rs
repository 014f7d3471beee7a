//! Distilled data (ZeroQ §3.1): inputs whose BatchNorm-input statistics match the running statistics.
//! So far: the loss; the optimiser and the `distill` command build on it.

pub mod loss;
