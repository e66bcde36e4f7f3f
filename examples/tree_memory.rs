//! Measures the resident memory of a tree of N znodes of 100 bytes (default 100k):
//! `cargo run --release --example tree_memory -- 100000`. Uses the server's allocator
//! (mimalloc), so the figure is what the server pays.
use bytes::Bytes;
use ringkeeper::proto::{perms, Acl, Id};
use ringkeeper::tree::DataTree;
use ringkeeper::txn::{Txn, TxnOp};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let acl = vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }];
    let before = rss_kib();
    let mut tree = DataTree::new();
    let mut zxid = 0;
    let mut apply = |tree: &mut DataTree, op: TxnOp| {
        zxid += 1;
        tree.apply(&Txn {
            session_id: 0,
            cxid: 0,
            zxid,
            time_ms: 0,
            op,
        });
    };
    apply(
        &mut tree,
        TxnOp::Create {
            path: "/bench".into(),
            data: None,
            acl: acl.clone(),
            ephemeral_owner: 0,
        },
    );
    let value = Bytes::from(vec![b'x'; 100]);
    for i in 0..n {
        apply(
            &mut tree,
            TxnOp::Create {
                path: format!("/bench/key-{i:08}"),
                data: Some(value.clone().slice(..).to_vec().into()),
                acl: acl.clone(),
                ephemeral_owner: 0,
            },
        );
    }
    let after = rss_kib();
    println!(
        "{n} znodes of 100 bytes: RSS grew by {} KiB ({} bytes per znode)",
        after - before,
        (after - before) * 1024 / n as u64
    );
    // What a getChildren of the parent of them all costs the thread that answers it.
    let t = std::time::Instant::now();
    let kids = tree.children("/bench").expect("exists");
    println!(
        "children(\"/bench\"): {} names in {:.1?}",
        kids.len(),
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let all = tree.all_children_number("/").expect("root");
    println!("all_children_number(\"/\"): {all} in {:.1?}", t.elapsed());
}
