//! Typed access to a node's attributes, with errors that name the node.

use std::collections::HashMap;

use super::proto::{attribute_type as at, AttributeProto, NodeProto};
use crate::error::{Error, Result};

/// A node's attributes by name.
pub struct Attrs<'a> {
    node: &'a NodeProto,
    map: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    /// Indexes the attributes of `node`.
    pub fn new(node: &'a NodeProto) -> Self {
        Self { node, map: node.attribute.iter().map(|a| (a.name.as_str(), a)).collect() }
    }

    fn err(&self, reason: String) -> Error {
        Error::node(&self.node.name, &self.node.op_type, reason)
    }

    fn get(&self, name: &str, ty: i32) -> Result<Option<&'a AttributeProto>> {
        match self.map.get(name) {
            None => Ok(None),
            // Type 0 (UNDEFINED) comes from old exporters that left it out; trust the field then.
            Some(a) if a.r#type == ty || a.r#type == 0 => Ok(Some(a)),
            Some(a) => Err(self.err(format!("attribute '{name}' has type {} where {ty} was expected", a.r#type))),
        }
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.get(name, at::INT)?.map_or(default, |a| a.i))
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.get(name, at::FLOAT)?.map_or(default, |a| a.f))
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.get(name, at::INTS)?.map(|a| a.ints.clone()))
    }

    /// A string attribute, or `default`.
    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self
            .get(name, at::STRING)?
            .map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    /// A tensor attribute, if present.
    pub fn tensor(&self, name: &str) -> Result<Option<&'a super::proto::TensorProto>> {
        Ok(self.get(name, at::TENSOR)?.and_then(|a| a.t.as_ref()))
    }

    /// A list of non-negative sizes (kernel, strides, ...) of exactly `n` entries, or `default`.
    pub fn sizes<const N: usize>(&self, name: &str, default: [usize; N]) -> Result<[usize; N]> {
        let Some(v) = self.ints(name)? else { return Ok(default) };
        if v.len() != N || v.iter().any(|&x| x < 0) {
            return Err(self.err(format!("attribute '{name}' = {v:?}: expected {N} non-negative values (only 2-D spatial ops are supported)")));
        }
        let mut out = [0usize; N];
        for (o, x) in out.iter_mut().zip(v) {
            *o = x as usize;
        }
        Ok(out)
    }
}
