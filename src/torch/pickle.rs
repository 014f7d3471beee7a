//! A minimal, whitelisting unpickler for the pickles inside PyTorch checkpoints.
//!
//! It understands the opcodes `torch.save` writes (protocol 2, plus the few protocol 3/4 opcodes other
//! writers use) and builds plain values. It never imports or calls anything: the only globals it accepts are
//! the ones a `state_dict` of tensors needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `_rebuild_tensor`, `_rebuild_parameter` and the `torch.*Storage` types), each interpreted by zeroq
//! itself. Any other global is an error naming it, before anything else is read.

use std::collections::HashMap;

/// Element type of a storage, from its `torch.*Storage` class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// float32.
    F32,
    /// float64.
    F64,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
    /// int64.
    I64,
    /// int32.
    I32,
    /// int16.
    I16,
    /// int8.
    I8,
    /// uint8.
    U8,
    /// bool.
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "DoubleStorage" => Dtype::F64,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }
}

/// A global the unpickler accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch.<T>Storage`.
    Storage(Dtype),
}

/// A reference to (part of) a storage, from a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    /// The storage key (file name in the zip format, list entry in the legacy format).
    pub key: String,
    /// Element type.
    pub dtype: Dtype,
    /// Element offset into the root storage (legacy storage views; 0 otherwise).
    pub offset: usize,
}

/// A tensor as the pickle describes it: where its elements are, not the elements themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage holding the elements.
    pub storage: StorageRef,
    /// Element offset into the storage.
    pub offset: usize,
    /// Shape.
    pub size: Vec<usize>,
    /// Stride per dimension, in elements.
    pub stride: Vec<usize>,
}

/// A decoded pickle value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An integer (wide enough for the legacy format's 10-byte magic number).
    Int(i128),
    /// A float.
    Float(f64),
    /// A text string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or OrderedDict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A whitelisted global.
    Global(Global),
    /// A storage from a persistent id.
    Storage(StorageRef),
    /// A rebuilt tensor.
    Tensor(TensorRef),
    /// The stack mark (internal).
    Mark,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Mark => "mark",
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }
}

type R<T> = std::result::Result<T, String>;

/// Reads one pickle starting at `*pos` in `bytes`, up to and including its STOP opcode, and advances `*pos`
/// past it. Errors are plain descriptions; the caller adds the file name.
pub fn unpickle(bytes: &[u8], pos: &mut usize) -> R<Value> {
    let mut u = Unpickler { b: bytes, pos: *pos, stack: Vec::new(), memo: HashMap::new(), copy_budget: MEMO_COPY_BUDGET };
    let v = u.run()?;
    *pos = u.pos;
    Ok(v)
}

struct Unpickler<'a> {
    b: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    /// Values the memo may still copy (stores and lookups both copy), counted in nodes.
    copy_budget: usize,
}

/// Memo stores and lookups copy their value; a pickle that stores a list and appends two copies of it to
/// a new one again and again doubles its size with every few bytes ("billion laughs"). A state_dict
/// copies a few small tuples and strings per tensor (tens of values, some 30,000 for ResNet50); 2^18
/// values in all is well beyond that and bounds the memory to tens of MB.
const MEMO_COPY_BUDGET: usize = 1 << 18;

/// The weight of a copy of `v`, checked against what is left of the budget before the copy is made.
fn copy_cost(v: &Value, budget: usize) -> R<usize> {
    weight(v, budget).ok_or_else(|| "pickle copies values beyond any state_dict's needs (a memory bomb or a corrupted checkpoint)".to_string())
}

/// The number of values in `v`, counting nested ones, or `None` once it exceeds `limit`.
fn weight(v: &Value, limit: usize) -> Option<usize> {
    let children: &mut dyn Iterator<Item = &Value> = match v {
        Value::Tuple(x) | Value::List(x) => &mut x.iter(),
        Value::Dict(d) => &mut d.iter().flat_map(|(k, v)| [k, v]),
        Value::Str(s) => return (s.len() / 16 < limit).then_some(s.len() / 16 + 1),
        Value::Bytes(b) => return (b.len() / 16 < limit).then_some(b.len() / 16 + 1),
        _ => return (limit >= 1).then_some(1),
    };
    let mut n = 1usize;
    for c in children {
        n = n.checked_add(weight(c, limit.checked_sub(n)?)?)?;
        if n > limit {
            return None;
        }
    }
    Some(n)
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| format!("pickle ends early at byte {} (the file is truncated)", self.b.len()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> R<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.b[self.pos.min(self.b.len())..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or("pickle ends inside a GLOBAL name (the file is truncated)")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> R<String> {
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| "pickle holds a string that is not UTF-8".to_string())
    }
    fn pop(&mut self) -> R<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err("pickle stack underflow (corrupted checkpoint)".into()),
            Some(v) => Ok(v),
        }
    }
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let at = self.stack.iter().rposition(|v| *v == Value::Mark).ok_or("pickle has no MARK where one is needed (corrupted checkpoint)")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> R<&mut Value> {
        self.stack.last_mut().ok_or_else(|| "pickle stack underflow (corrupted checkpoint)".to_string())
    }
    fn push_memo(&mut self, idx: u32) -> R<()> {
        let v = self.stack.last().ok_or("pickle memoizes an empty stack (corrupted checkpoint)")?;
        self.copy_budget -= copy_cost(v, self.copy_budget)?;
        let v = v.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn get_memo(&mut self, idx: u32) -> R<()> {
        let v = self.memo.get(&idx).ok_or_else(|| format!("pickle refers to memo entry {idx}, which was never stored (corrupted checkpoint)"))?;
        self.copy_budget -= copy_cost(v, self.copy_budget)?;
        let v = v.clone();
        self.stack.push(v);
        Ok(())
    }

    fn run(&mut self) -> R<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(format!("pickle protocol {p} is not supported"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only.
                }
                b'.' => return self.pop(),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i128));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i128));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.u32()? as usize };
                    if n > 16 {
                        return Err(format!("pickle holds a {n}-byte integer, larger than any a state_dict needs"));
                    }
                    let s = self.take(n)?;
                    let mut buf = [if s.last().is_some_and(|&b| b & 0x80 != 0) { 0xff } else { 0 }; 16];
                    buf[..n].copy_from_slice(s);
                    self.stack.push(Value::Int(i128::from_le_bytes(buf)));
                }
                b'G' => {
                    let s = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(s);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'B' | b'C' => {
                    let n = if op == b'B' { self.u32()? as usize } else { self.u8()? as usize };
                    let s = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(s));
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(items));
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.push_memo(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.push_memo(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.push_memo(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get_memo(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.get_memo(i)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        other => return Err(format!("pickle appends to a {} (corrupted checkpoint)", other.kind())),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        other => return Err(format!("pickle appends to a {} (corrupted checkpoint)", other.kind())),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        other => return Err(format!("pickle sets an item on a {} (corrupted checkpoint)", other.kind())),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("pickle SETITEMS has an odd number of values (corrupted checkpoint)".into());
                    }
                    match self.top()? {
                        Value::Dict(d) => {
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        other => return Err(format!("pickle sets items on a {} (corrupted checkpoint)", other.kind())),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = global(&module, &name)?;
                    self.stack.push(Value::Global(g));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err("pickle STACK_GLOBAL without module and name strings (corrupted checkpoint)".into());
                    };
                    let g = global(&module, &name)?;
                    self.stack.push(Value::Global(g));
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = reduce(f, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD sets attributes (e.g. the state_dict's `_metadata`); a state_dict does not need them.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => return Err(format!("pickle sets the state of a {} (not a state_dict)", other.kind())),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = persistent_storage(pid)?;
                    self.stack.push(Value::Storage(s));
                }
                other => {
                    return Err(format!("pickle opcode 0x{other:02x} at byte {at} is not one a state_dict uses (corrupted checkpoint, or not a torch.save file)"));
                }
            }
        }
    }
}

/// The whitelist. Everything else is refused by name; nothing is ever imported or called.
fn global(module: &str, name: &str) -> R<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", n) if Dtype::from_storage_class(n).is_some() => Ok(Global::Storage(Dtype::from_storage_class(n).unwrap_or(Dtype::F32))),
        _ => Err(format!(
            "the pickle refers to '{module}.{name}', which is outside the state_dict whitelist (OrderedDict, torch tensor rebuild, torch storages); \
             zeroq never runs code from a checkpoint. Save the weights alone with torch.save(model.state_dict(), path)"
        )),
    }
}

fn reduce(f: Value, args: Value) -> R<Value> {
    let Value::Global(g) = f else {
        return Err(format!("pickle calls a {} (corrupted checkpoint)", f.kind()));
    };
    let Value::Tuple(args) = args else {
        return Err("pickle REDUCE arguments are not a tuple (corrupted checkpoint)".into());
    };
    match g {
        Global::OrderedDict => match args.as_slice() {
            [] => Ok(Value::Dict(Vec::new())),
            [Value::List(items)] => {
                let mut d = Vec::new();
                for it in items {
                    match it {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => d.push((kv[0].clone(), kv[1].clone())),
                        _ => return Err("OrderedDict built from something other than (key, value) pairs".into()),
                    }
                }
                Ok(Value::Dict(d))
            }
            _ => Err("OrderedDict called with unexpected arguments".into()),
        },
        Global::RebuildTensor => {
            if args.len() < 4 {
                return Err(format!("_rebuild_tensor_v2 called with {} arguments, expected at least 4", args.len()));
            }
            let Value::Storage(storage) = &args[0] else {
                return Err(format!("_rebuild_tensor_v2's first argument is a {}, not a storage", args[0].kind()));
            };
            let offset = to_usize(&args[1], "storage offset")?;
            let size = usize_tuple(&args[2], "size")?;
            let stride = usize_tuple(&args[3], "stride")?;
            if size.len() != stride.len() {
                return Err(format!("tensor size {size:?} and stride {stride:?} differ in rank"));
            }
            Ok(Value::Tensor(TensorRef { storage: storage.clone(), offset, size, stride }))
        }
        Global::RebuildParameter => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => Err("_rebuild_parameter called without a tensor".into()),
        },
        Global::Storage(_) => Err("pickle calls a storage type directly (not a torch.save state_dict)".into()),
    }
}

fn to_usize(v: &Value, what: &str) -> R<usize> {
    v.as_int().and_then(|i| usize::try_from(i).ok()).ok_or_else(|| format!("tensor {what} is not a non-negative integer ({})", v.kind()))
}

fn usize_tuple(v: &Value, what: &str) -> R<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|x| to_usize(x, what)).collect(),
        _ => Err(format!("tensor {what} is a {}, not a tuple", v.kind())),
    }
}

/// `('storage', <torch.XStorage>, key, location, numel[, view_metadata])`.
fn persistent_storage(pid: Value) -> R<StorageRef> {
    let Value::Tuple(t) = pid else {
        return Err(format!("persistent id is a {}, not a storage tuple", pid.kind()));
    };
    match t.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, _numel, rest @ ..] if tag == "storage" => {
            let key = match key {
                Value::Str(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                other => return Err(format!("storage key is a {}", other.kind())),
            };
            // Legacy storage views: (view_key, offset, size) into the root storage `key`.
            let offset = match rest.first() {
                Some(Value::Tuple(view)) if view.len() == 3 => to_usize(&view[1], "storage view offset")?,
                _ => 0,
            };
            Ok(StorageRef { key, dtype: *dtype, offset })
        }
        _ => Err("persistent id is not a ('storage', type, key, location, size) tuple; zeroq reads torch.save files of tensors only".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_dict_with_memo_and_long() {
        // pickle.dumps({'a': 1, 'b': [2, 300], 'c': 2**70}, protocol=2)
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b'K', 1, b'X', 1, 0, 0, 0, b'b', b']', b'q', 1, b'(', b'K', 2, b'M', 44, 1, b'e'];
        p.extend([b'X', 1, 0, 0, 0, b'c', 0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, b'u', b'.']);
        let mut pos = 0;
        let v = unpickle(&p, &mut pos).unwrap();
        assert_eq!(pos, p.len());
        let Value::Dict(d) = v else { panic!("not a dict") };
        assert_eq!(d[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(d[1].1, Value::List(vec![Value::Int(2), Value::Int(300)]));
        assert_eq!(d[2].1, Value::Int(1i128 << 70));
    }

    #[test]
    fn refuses_globals_outside_the_whitelist() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let err = unpickle(p, &mut 0).unwrap_err();
        assert!(err.contains("'os.system'") && err.contains("whitelist"), "{err}");
    }

    #[test]
    fn truncated_pickle_is_an_error() {
        let p = b"\x80\x02}q\x00(X\x05\x00\x00\x00ab";
        let err = unpickle(p, &mut 0).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }
}
