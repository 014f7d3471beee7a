//! The graph IR that every stage reads and rewrites: typed ops ([`Op`]), values and nodes ([`Graph`]),
//! host constants ([`HostTensor`]) and passes ([`passes`]).

mod graph;
mod op;
pub mod passes;
mod tensor;

pub use graph::{BatchNormSite, Dim, Graph, Node, ValueId, ValueInfo, WeightLayer};
pub use op::{AutoPad, Conv, FakeQuant, Op, PadKind, Pool};
pub use tensor::{HostData, HostTensor};
