#!/usr/bin/env python3
"""Splits a server's CPU profile into the stages of the write path.

Usage:
    perf record -F 1000 --call-graph dwarf,16384 -p PID -o OUT.data -- sleep 3
    perf script -i OUT.data > OUT.txt
    scripts/perf-stages.py OUT.txt [OUT2.txt ...]

Each sample is charged to the first stage below whose pattern matches any frame of its
stack (so the order matters: dropping an old tree version inside a shard's advance is
"old versions dropped", not "shard"). The kernel rows count samples under
io_uring_enter (the loop's submissions: TCP sends and receives, the log's O_DIRECT
writes) split by what the kernel was doing there. Used for the three-server profiles in
docs/write-path.md.
"""
import re
import sys
from collections import Counter

STAGES = [
    ("old tree versions dropped (shard advance)", r"Cursor::advance_to"),
    ("tree version dropped elsewhere", r"drop_in_place<ringkeeper::tree::DataTree>"),
    ("leaf and path copies (Slots::leaf_mut)", r"Slots::leaf_mut|Slots::slot_mut"),
    ("new node built (NodeBox::new)", r"NodeBox::new"),
    ("node hashes (digest)", r"node_hash"),
    ("forward decoded (leader)", r"Fwd::decode"),
    ("forward encoded (learner)", r"Fwd::encode"),
    ("validation (prep)", r"prep::prep"),
    ("txn encoded", r"encode_record|txn_codec::encode"),
    ("txn decoded (learner)", r"txn_codec::decode"),
    ("apply", r"apply_op"),
    ("quorum messages encoded", r"peer_wire::encode_msg"),
    ("quorum messages decoded", r"MsgAssembler|peer_wire::decode"),
    ("ZAB peer", r"zab::peer::Peer"),
    ("log writer", r"storage::log::"),
    ("shard: request parsed", r"Shard::parse"),
    ("shard: answers", r"Shard::commit|Shard::answer|write_result"),
    ("shard: other", r"server::shard::"),
    ("kernel: io_uring_enter", r"io_uring_enter"),
    ("kernel: other", r"\[kernel|_raw_spin|entry_SYSCALL"),
    ("sequencer: other", r"sequencer::"),
    ("core loop: other", r"core_loop::"),
]

KERNEL = [
    ("TCP send", r"tcp_sendmsg"),
    ("TCP receive", r"tcp_recvmsg|sock_recvmsg|io_recv"),
    ("log write (O_DIRECT)", r"ext4_file_write_iter|iomap_dio|blkdev|virtio"),
    ("waiting, scheduling", r"io_cqring_wait|schedule"),
    ("other", r"."),
]


def samples(path):
    with open(path, errors="replace") as f:
        for block in f.read().split("\n\n"):
            lines = block.strip().split("\n")
            if len(lines) > 1:
                yield "\n".join(lines[1:])


def first(patterns, stack):
    for name, pat in patterns:
        if re.search(pat, stack):
            return name
    return "unattributed"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for path in sys.argv[1:]:
        stages, kernel, total = Counter(), Counter(), 0
        for stack in samples(path):
            total += 1
            stages[first(STAGES, stack)] += 1
            if "io_uring_enter" in stack:
                kernel[first(KERNEL, stack)] += 1
        print(f"== {path}: {total} samples")
        for name, n in stages.most_common():
            print(f"  {100 * n / max(total, 1):5.1f}%  {name}")
        for name, n in kernel.most_common():
            print(f"          {100 * n / max(total, 1):5.1f}%  of it {name}")


if __name__ == "__main__":
    main()
