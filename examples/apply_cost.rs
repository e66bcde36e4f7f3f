//! The core's work for one setData, without the network or the log: validate (`prep`)
//! and apply to the tree, in passes whose root is published (cloned and kept until the
//! next pass ends, as the commit chain and the shards' views keep it). For counting
//! instructions deterministically on a loaded machine, where CPU time per write is
//! noisy:
//!
//! ```text
//! cargo build --release --example apply_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/apply_cost [found|lookup] [publish|keep] [passes] [per-pass]
//! ```
//!
//! `found` applies with where validation found the node (`DataTree::apply_found`),
//! `lookup` applies by path as before; `publish` clones the root every pass, `keep`
//! never does (each write then changes the tree in place). The defaults (found,
//! publish, 2000 passes of 50 writes over 10,000 keys of 100 bytes) are zkbench's
//! `-w set` load. Divide callgrind's "Collected" count by the writes it prints.
use bytes::Bytes;
use ringkeeper::prep::{self, Caller, PrepConfig};
use ringkeeper::proto::{Request, SetDataRequest};
use ringkeeper::tree::{open_acl_unsafe, DataTree};
use ringkeeper::txn::{Txn, TxnOp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEYS: u64 = 10_000;
const SESSION: i64 = 0x0100_0000_0000_0001;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let found = arg(1, "found") == "found";
    let publish = arg(2, "publish") == "publish";
    let passes: u64 = arg(3, "2000").parse().expect("passes: a number");
    let per_pass: u64 = arg(4, "50").parse().expect("per-pass: a number");

    let mut tree = DataTree::new();
    let mut zxid = 0;
    let mut next = |op| {
        zxid += 1;
        Txn {
            session_id: SESSION,
            cxid: 0,
            zxid,
            time_ms: 1,
            op,
        }
    };
    tree.apply(&next(TxnOp::CreateSession { timeout_ms: 10_000 }));
    let create = |path: String| TxnOp::Create {
        path,
        data: Some(Bytes::from(vec![b'x'; 100])),
        acl: open_acl_unsafe(),
        ephemeral_owner: 0,
    };
    tree.apply(&next(create("/zkbench".into())));
    for k in 0..KEYS {
        tree.apply(&next(create(format!("/zkbench/key-{k:08}"))));
    }

    let cfg = PrepConfig::default();
    let caller = Caller {
        session_id: SESSION,
        ids: &[],
        local: false,
        no_ephemeral: false,
    };
    let data = Some(Bytes::from(vec![b'y'; 100]));
    // A fixed pseudo-random key sequence (xorshift), the same in every mode.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut published = Vec::new();
    for _ in 0..passes {
        for _ in 0..per_pass {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let req = Request::SetData(SetDataRequest {
                path: format!("/zkbench/key-{:08}", x % KEYS),
                data: data.clone(),
                version: -1,
            });
            let (op, hint) = prep::prep_found(&tree, &cfg, &caller, &req, 1).expect("valid");
            let txn = next(op);
            let applied = if found {
                tree.apply_found(&txn, hint)
            } else {
                tree.apply(&txn)
            };
            std::hint::black_box(applied);
        }
        if publish {
            // The previous pass's root is dropped once this one is published.
            published = vec![tree.clone()];
        }
    }
    drop(published);
    println!(
        "{} writes ({} per pass, found={found}, publish={publish}), digest {:x}",
        passes * per_pass,
        per_pass,
        tree.digest()
    );
}
