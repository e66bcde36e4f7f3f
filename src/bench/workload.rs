//! Workloads: which operations a session sends, on which paths, and their wire encoding.
//!
//! Requests are encoded with the shared records (`RequestHeader` + the op's record).
//! `multi` has a small local encoder ([`encode_multi_set`]) until the shared
//! `proto::request` codec lands; the lead can swap it then.

use super::rng::{KeyDist, Rng};
use crate::proto::{
    perms, Acl, CreateMode, CreateRequest, DeleteRequest, ExistsRequest, GetChildrenRequest,
    GetDataRequest, Id, Jute, MultiHeader, OpCode, RequestHeader, SetDataRequest, Writer,
};
use bytes::Bytes;
use std::collections::VecDeque;

/// One kind of operation the generator sends. Also the key of per-op histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// create of a fresh, unique path (persistent or ephemeral), or a sequential node.
    Create(CreateKind),
    SetData,
    GetData,
    Exists,
    GetChildren,
    /// Deletes the oldest node this session created (FIFO order makes it exist); if the
    /// session has created none yet, a create is sent instead.
    Delete,
    /// One multi of `multi_ops` setData ops on drawn keys.
    Multi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CreateKind {
    Persistent,
    Ephemeral,
    Sequential,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Create(CreateKind::Persistent) => "create",
            OpKind::Create(CreateKind::Ephemeral) => "create-ephemeral",
            OpKind::Create(CreateKind::Sequential) => "create-sequential",
            OpKind::SetData => "setData",
            OpKind::GetData => "getData",
            OpKind::Exists => "exists",
            OpKind::GetChildren => "getChildren",
            OpKind::Delete => "delete",
            OpKind::Multi => "multi",
        }
    }

    pub fn parse(s: &str) -> Option<OpKind> {
        Some(match s {
            "create" => OpKind::Create(CreateKind::Persistent),
            "create-ephemeral" | "ephemeral" => OpKind::Create(CreateKind::Ephemeral),
            "create-sequential" | "sequential" => OpKind::Create(CreateKind::Sequential),
            "set" | "setData" => OpKind::SetData,
            "get" | "getData" => OpKind::GetData,
            "exists" => OpKind::Exists,
            "children" | "getChildren" => OpKind::GetChildren,
            "delete" => OpKind::Delete,
            "multi" => OpKind::Multi,
            _ => return None,
        })
    }

    pub fn is_read(self) -> bool {
        matches!(self, OpKind::GetData | OpKind::Exists | OpKind::GetChildren)
    }
}

/// A weighted mix of operations.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    ops: Vec<(OpKind, u32)>,
    total: u32,
}

impl Mix {
    pub fn new(ops: Vec<(OpKind, u32)>) -> Result<Mix, String> {
        let ops: Vec<_> = ops.into_iter().filter(|&(_, w)| w > 0).collect();
        let total = ops.iter().map(|&(_, w)| w).sum();
        if total == 0 {
            return Err("a workload needs at least one op with a positive weight".into());
        }
        Ok(Mix { ops, total })
    }

    /// Parses a named workload (`get`, `set`, `create`, `delete`, `mixed`, ...) or an
    /// explicit mix `get=90,set=10`. `read_ratio` applies to `mixed` (getData/setData).
    pub fn parse(spec: &str, read_ratio: f64) -> Result<Mix, String> {
        if spec == "mixed" {
            if !(0.0..=1.0).contains(&read_ratio) {
                return Err(format!("--read-ratio must be in [0, 1], got {read_ratio}"));
            }
            let r = (read_ratio * 1000.0).round() as u32;
            return Mix::new(vec![(OpKind::GetData, r), (OpKind::SetData, 1000 - r)]);
        }
        if spec == "delete" {
            // Deletes need nodes to delete: alternate with creates of this session.
            return Mix::new(vec![
                (OpKind::Create(CreateKind::Persistent), 1),
                (OpKind::Delete, 1),
            ]);
        }
        if let Some(op) = OpKind::parse(spec) {
            return Mix::new(vec![(op, 1)]);
        }
        let mut ops = Vec::new();
        for part in spec.split(',') {
            let (name, w) = part.split_once('=').ok_or_else(|| {
                format!("bad workload {spec:?}: expected a name or op=weight,...")
            })?;
            let op = OpKind::parse(name.trim()).ok_or_else(|| format!("unknown op {name:?}"))?;
            let w: u32 = w
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {part:?}"))?;
            ops.push((op, w));
        }
        Mix::new(ops)
    }

    pub fn pick(&self, rng: &mut Rng) -> OpKind {
        if self.ops.len() == 1 {
            return self.ops[0].0;
        }
        let mut x = rng.below(self.total as u64) as u32;
        for &(op, w) in &self.ops {
            if x < w {
                return op;
            }
            x -= w;
        }
        unreachable!("weights sum to total")
    }

    pub fn ops(&self) -> impl Iterator<Item = OpKind> + '_ {
        self.ops.iter().map(|&(op, _)| op)
    }

    pub fn describe(&self) -> String {
        let parts: Vec<_> = self
            .ops
            .iter()
            .map(|(op, w)| format!("{}={}", op.name(), w))
            .collect();
        parts.join(",")
    }
}

/// Everything a session needs to generate its requests.
#[derive(Debug, Clone)]
pub struct Workload {
    pub mix: Mix,
    pub root: String,
    pub keys: u64,
    pub dist: KeyDist,
    pub value: Bytes,
    pub multi_ops: usize,
    /// Distinguishes this run's created paths from earlier runs on the same tree.
    pub run_id: u64,
}

/// Paths of the tree the setup phase creates under `root`.
pub fn key_path(root: &str, i: u64) -> String {
    format!("{root}/k{i:010}")
}

/// Parents the setup phase creates: created nodes, ephemerals, sequentials, keys.
pub fn parent_paths(root: &str) -> [String; 3] {
    [
        format!("{root}/c"),
        format!("{root}/e"),
        format!("{root}/s"),
    ]
}

pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// Per-session generator state.
#[derive(Debug)]
pub struct SessionGen {
    pub rng: Rng,
    pub session_index: usize,
    seq: u64,
    created: VecDeque<String>,
}

impl SessionGen {
    pub fn new(seed: u64, session_index: usize) -> SessionGen {
        SessionGen {
            rng: Rng::new(
                seed.wrapping_mul(0x100_0000_01b3)
                    .wrapping_add(session_index as u64),
            ),
            session_index,
            seq: 0,
            created: VecDeque::new(),
        }
    }

    /// Picks the next op and appends its frame (length prefix included) to `out`.
    /// Returns the op actually sent (a delete without a node becomes a create).
    pub fn next_request(&mut self, w: &Workload, xid: i32, out: &mut Vec<u8>) -> OpKind {
        let mut op = w.mix.pick(&mut self.rng);
        if op == OpKind::Delete && self.created.is_empty() {
            op = OpKind::Create(CreateKind::Persistent);
        }
        let start = begin_frame(out);
        match op {
            OpKind::Create(kind) => {
                let (path, flags) = match kind {
                    CreateKind::Persistent => (self.fresh_path(w, "c"), CreateMode::Persistent),
                    CreateKind::Ephemeral => (self.fresh_path(w, "e"), CreateMode::Ephemeral),
                    CreateKind::Sequential => {
                        (format!("{}/s/n-", w.root), CreateMode::PersistentSequential)
                    }
                };
                if kind == CreateKind::Persistent {
                    self.created.push_back(path.clone());
                }
                RequestHeader {
                    xid,
                    op: OpCode::Create as i32,
                }
                .write(out);
                CreateRequest {
                    path,
                    data: Some(w.value.clone()),
                    acl: open_acl(),
                    flags: flags.flags(),
                }
                .write(out);
            }
            OpKind::Delete => {
                let path = self.created.pop_front().expect("checked non-empty");
                RequestHeader {
                    xid,
                    op: OpCode::Delete as i32,
                }
                .write(out);
                DeleteRequest { path, version: -1 }.write(out);
            }
            OpKind::SetData => {
                let path = key_path(&w.root, w.dist.sample(&mut self.rng));
                RequestHeader {
                    xid,
                    op: OpCode::SetData as i32,
                }
                .write(out);
                SetDataRequest {
                    path,
                    data: Some(w.value.clone()),
                    version: -1,
                }
                .write(out);
            }
            OpKind::GetData => {
                let path = key_path(&w.root, w.dist.sample(&mut self.rng));
                RequestHeader {
                    xid,
                    op: OpCode::GetData as i32,
                }
                .write(out);
                GetDataRequest { path, watch: false }.write(out);
            }
            OpKind::Exists => {
                let path = key_path(&w.root, w.dist.sample(&mut self.rng));
                RequestHeader {
                    xid,
                    op: OpCode::Exists as i32,
                }
                .write(out);
                ExistsRequest { path, watch: false }.write(out);
            }
            OpKind::GetChildren => {
                let path = key_path(&w.root, w.dist.sample(&mut self.rng));
                RequestHeader {
                    xid,
                    op: OpCode::GetChildren as i32,
                }
                .write(out);
                GetChildrenRequest { path, watch: false }.write(out);
            }
            OpKind::Multi => {
                RequestHeader {
                    xid,
                    op: OpCode::Multi as i32,
                }
                .write(out);
                let sets: Vec<_> = (0..w.multi_ops.max(1))
                    .map(|_| SetDataRequest {
                        path: key_path(&w.root, w.dist.sample(&mut self.rng)),
                        data: Some(w.value.clone()),
                        version: -1,
                    })
                    .collect();
                encode_multi_set(&sets, out);
            }
        }
        end_frame(out, start);
        op
    }

    fn fresh_path(&mut self, w: &Workload, dir: &str) -> String {
        self.seq += 1;
        format!(
            "{}/{dir}/{:x}-{}-{}",
            w.root, w.run_id, self.session_index, self.seq
        )
    }
}

/// Reserves the 4-byte frame length; returns where the frame starts.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.put_i32(0);
    start
}

/// Writes the frame length reserved by [`begin_frame`].
pub fn end_frame(out: &mut [u8], start: usize) {
    let len = out.len() - start - 4;
    let len = i32::try_from(len).expect("frame over 2 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a whole request frame: header plus record.
pub fn push_request(out: &mut Vec<u8>, xid: i32, op: OpCode, record: &impl Jute) {
    let start = begin_frame(out);
    RequestHeader { xid, op: op as i32 }.write(out);
    record.write(out);
    end_frame(out, start);
}

/// Local multi encoder (setData ops only): `MultiHeader{op,false,-1}` + record per op,
/// then `MultiHeader{-1,true,-1}`. To be replaced by `proto::request`'s codec.
pub fn encode_multi_set(ops: &[SetDataRequest], out: &mut Vec<u8>) {
    for op in ops {
        MultiHeader {
            op: OpCode::SetData as i32,
            done: false,
            err: -1,
        }
        .write(out);
        op.write(out);
    }
    MultiHeader {
        op: -1,
        done: true,
        err: -1,
    }
    .write(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Reader;

    fn workload(spec: &str) -> Workload {
        Workload {
            mix: Mix::parse(spec, 0.9).unwrap(),
            root: "/b".into(),
            keys: 10,
            dist: KeyDist::uniform(10),
            value: Bytes::from_static(b"xyz"),
            multi_ops: 3,
            run_id: 7,
        }
    }

    #[test]
    fn mixed_respects_read_ratio() {
        let w = workload("mixed");
        let mut g = SessionGen::new(1, 0);
        let mut out = Vec::new();
        let reads = (0..10_000)
            .filter(|i| g.next_request(&w, *i, &mut out).is_read())
            .count();
        assert!((8_800..9_200).contains(&reads), "reads {reads}");
    }

    #[test]
    fn delete_follows_create_of_same_path() {
        let w = workload("delete");
        let mut g = SessionGen::new(3, 2);
        let mut out = Vec::new();
        let mut pending: VecDeque<String> = VecDeque::new();
        for xid in 0..200 {
            out.clear();
            let op = g.next_request(&w, xid, &mut out);
            let mut r = Reader::new(&out[4..]);
            let h = RequestHeader::read(&mut r).unwrap();
            assert_eq!(h.xid, xid);
            match op {
                OpKind::Create(_) => pending.push_back(CreateRequest::read(&mut r).unwrap().path),
                OpKind::Delete => {
                    assert_eq!(
                        DeleteRequest::read(&mut r).unwrap().path,
                        pending.pop_front().unwrap()
                    )
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(r.is_empty());
        }
    }

    #[test]
    fn multi_frame_is_well_formed() {
        let w = workload("multi");
        let mut g = SessionGen::new(1, 0);
        let mut out = Vec::new();
        g.next_request(&w, 5, &mut out);
        let len = i32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 4);
        let mut r = Reader::new(&out[4..]);
        assert_eq!(
            RequestHeader::read(&mut r).unwrap().op,
            OpCode::Multi as i32
        );
        for _ in 0..3 {
            let h = MultiHeader::read(&mut r).unwrap();
            assert_eq!((h.op, h.done), (OpCode::SetData as i32, false));
            SetDataRequest::read(&mut r).unwrap();
        }
        assert!(MultiHeader::read(&mut r).unwrap().done);
        assert!(r.is_empty());
    }

    #[test]
    fn explicit_mix_parses_and_rejects_nonsense() {
        let m = Mix::parse("get=3,exists=1", 0.0).unwrap();
        assert_eq!(m.describe(), "getData=3,exists=1");
        assert!(Mix::parse("frobnicate", 0.5).is_err());
        assert!(Mix::parse("get=0", 0.5).is_err());
    }
}
