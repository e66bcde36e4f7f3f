//! One shard's watch tables: which connection watches which path, in which mode, and
//! which notifications a change produces.
//!
//! ZooKeeper keeps watches per connection (the client re-registers them with setWatches
//! after a reconnect), in two tables, and this module keeps its rules:
//!
//! - the **data** table holds getData and exists watches (exists registers even when the
//!   node is absent), persistent watches and persistent-recursive watches;
//! - the **child** table holds getChildren watches and persistent watches (never
//!   recursive ones, so a recursive watch never sees NodeChildrenChanged).
//!
//! | change          | data table            | child table                                   |
//! |-----------------|-----------------------|-----------------------------------------------|
//! | create `p`      | NodeCreated at `p`    | NodeChildrenChanged at `parent(p)`            |
//! | delete `p`      | NodeDeleted at `p`    | NodeDeleted at `p` (not to those already told), NodeChildrenChanged at `parent(p)` |
//! | setData `p`     | NodeDataChanged at `p`|                                               |
//!
//! A standard watch fires once and is removed; persistent ones stay. A recursive watch on
//! `a` fires for changes at `a` and below, with the changed node's path. A connection
//! gets at most one event per (table, trigger), however many modes match.
//!
//! Pure: generic over the watcher handle `W` (a connection token in the server).

use crate::proto::{EventType, WatcherType};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;

/// Watch modes of one (watcher, path) entry, as bits.
const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// The mode a watch is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standard,
    Persistent,
    PersistentRecursive,
}

impl Mode {
    fn bit(self) -> u8 {
        match self {
            Mode::Standard => STANDARD,
            Mode::Persistent => PERSISTENT,
            Mode::PersistentRecursive => RECURSIVE,
        }
    }
}

/// One of the two tables.
#[derive(Debug)]
struct Table<W> {
    by_path: HashMap<String, HashMap<W, u8>>,
    by_watcher: HashMap<W, BTreeSet<String>>,
    /// Entries with the recursive bit; when zero, a trigger looks at its own path only.
    recursive: usize,
}

impl<W: Copy + Eq + Hash + Ord> Table<W> {
    fn new() -> Self {
        Table {
            by_path: HashMap::new(),
            by_watcher: HashMap::new(),
            recursive: 0,
        }
    }

    fn add(&mut self, path: &str, w: W, mode: Mode) {
        let modes = self
            .by_path
            .entry(path.to_owned())
            .or_default()
            .entry(w)
            .or_insert(0);
        if mode == Mode::PersistentRecursive && *modes & RECURSIVE == 0 {
            self.recursive += 1;
        }
        *modes |= mode.bit();
        self.by_watcher
            .entry(w)
            .or_default()
            .insert(path.to_owned());
    }

    fn modes(&self, path: &str, w: W) -> u8 {
        self.by_path
            .get(path)
            .and_then(|m| m.get(&w))
            .copied()
            .unwrap_or(0)
    }

    /// Sets the modes of (path, w), removing the entry when none remain.
    fn set_modes(&mut self, path: &str, w: W, new: u8) {
        let Some(m) = self.by_path.get_mut(path) else {
            assert_eq!(new, 0, "setting modes of an absent path");
            return;
        };
        let old = m.get(&w).copied().unwrap_or(0);
        if old & RECURSIVE != 0 && new & RECURSIVE == 0 {
            self.recursive -= 1;
        }
        if new & RECURSIVE != 0 && old & RECURSIVE == 0 {
            self.recursive += 1;
        }
        if new == 0 {
            m.remove(&w);
            if m.is_empty() {
                self.by_path.remove(path);
            }
            if let Some(paths) = self.by_watcher.get_mut(&w) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_watcher.remove(&w);
                }
            }
        } else {
            m.insert(w, new);
        }
    }

    /// Removes `mode` (or every mode when `None`) of (path, w); true if anything changed.
    fn remove(&mut self, path: &str, w: W, mode: Option<Mode>) -> bool {
        let old = self.modes(path, w);
        let new = match mode {
            Some(m) => old & !m.bit(),
            None => 0,
        };
        if old == new {
            return false;
        }
        self.set_modes(path, w, new);
        true
    }

    fn remove_watcher(&mut self, w: W) {
        let Some(paths) = self.by_watcher.remove(&w) else {
            return;
        };
        for p in paths {
            if let Some(m) = self.by_path.get_mut(&p) {
                if let Some(modes) = m.remove(&w) {
                    if modes & RECURSIVE != 0 {
                        self.recursive -= 1;
                    }
                }
                if m.is_empty() {
                    self.by_path.remove(&p);
                }
            }
        }
    }

    /// The watchers an event at `path` notifies, consuming standard watches.
    fn trigger(&mut self, path: &str, out: &mut BTreeSet<W>) {
        // The path itself: every mode fires; the standard bit is consumed.
        if let Some(m) = self.by_path.get(path) {
            let hits: Vec<(W, u8)> = m.iter().map(|(w, b)| (*w, *b)).collect();
            for (w, modes) in hits {
                out.insert(w);
                if modes & STANDARD != 0 {
                    self.set_modes(path, w, modes & !STANDARD);
                }
            }
        }
        if self.recursive == 0 {
            return;
        }
        // Ancestors: only recursive watches fire, and they stay.
        let mut p = path;
        while let Some(parent) = parent_of(p) {
            if let Some(m) = self.by_path.get(parent) {
                for (w, modes) in m {
                    if modes & RECURSIVE != 0 {
                        out.insert(*w);
                    }
                }
            }
            p = parent;
        }
    }

    fn count(&self) -> usize {
        self.by_path.values().map(|m| m.len()).sum()
    }
}

/// The parent of a valid absolute path; `None` for "/".
pub fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// One notification to send: `event` at `path` to watcher `w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<W> {
    pub watcher: W,
    pub event: EventType,
    pub path: String,
}

/// The watch tables of one shard.
#[derive(Debug)]
pub struct Watches<W> {
    data: Table<W>,
    child: Table<W>,
}

/// The kind of watch a read registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// getData or exists.
    Data,
    /// getChildren.
    Child,
    /// addWatch PERSISTENT: both tables.
    Persistent,
    /// addWatch PERSISTENT_RECURSIVE: the data table only.
    PersistentRecursive,
}

impl<W: Copy + Eq + Hash + Ord> Default for Watches<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Copy + Eq + Hash + Ord> Watches<W> {
    pub fn new() -> Self {
        Watches {
            data: Table::new(),
            child: Table::new(),
        }
    }

    pub fn add(&mut self, path: &str, w: W, kind: Kind) {
        match kind {
            Kind::Data => self.data.add(path, w, Mode::Standard),
            Kind::Child => self.child.add(path, w, Mode::Standard),
            Kind::Persistent => {
                self.data.add(path, w, Mode::Persistent);
                self.child.add(path, w, Mode::Persistent);
            }
            Kind::PersistentRecursive => self.data.add(path, w, Mode::PersistentRecursive),
        }
    }

    /// The notifications one change produces, in watcher order; standard watches fire
    /// once. `event` is what the tree reported at `path` (see the table above).
    pub fn trigger(&mut self, path: &str, event: EventType, out: &mut Vec<Event<W>>) {
        let mut hit = BTreeSet::new();
        match event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                self.data.trigger(path, &mut hit);
            }
            EventType::NodeChildrenChanged => {
                self.child.trigger(path, &mut hit);
            }
            EventType::NodeDeleted => {
                self.data.trigger(path, &mut hit);
                let mut children = BTreeSet::new();
                self.child.trigger(path, &mut children);
                // A watcher already told by the data table is not told twice.
                hit.extend(children);
            }
            other => panic!("trigger with non-node event {other:?} at {path}"),
        }
        out.extend(hit.into_iter().map(|w| Event {
            watcher: w,
            event,
            path: path.to_owned(),
        }));
    }

    /// checkWatches: whether `w` has a watch of `ty` on `path`.
    ///
    /// Data and Children match a watch of any mode in that table, as ZooKeeper 3.8 does
    /// (3.9 narrowed them to standard watches); Persistent and PersistentRecursive,
    /// which 3.8 lacks, follow 3.9.
    pub fn contains(&self, path: &str, w: W, ty: WatcherType) -> bool {
        match ty {
            WatcherType::Children => self.child.modes(path, w) != 0,
            WatcherType::Data => self.data.modes(path, w) != 0,
            WatcherType::Persistent => self.data.modes(path, w) & PERSISTENT != 0,
            WatcherType::PersistentRecursive => self.data.modes(path, w) & RECURSIVE != 0,
            WatcherType::Any => self.child.modes(path, w) != 0 || self.data.modes(path, w) != 0,
        }
    }

    /// removeWatches: true if something was removed (else the reply is NOWATCHER).
    /// Data and Children remove every mode from their table, as ZooKeeper 3.8 does.
    pub fn remove(&mut self, path: &str, w: W, ty: WatcherType) -> bool {
        match ty {
            WatcherType::Children => self.child.remove(path, w, None),
            WatcherType::Data => self.data.remove(path, w, None),
            WatcherType::Persistent => {
                let c = self.child.remove(path, w, Some(Mode::Persistent));
                let d = self.data.remove(path, w, Some(Mode::Persistent));
                c || d
            }
            WatcherType::PersistentRecursive => {
                self.data.remove(path, w, Some(Mode::PersistentRecursive))
            }
            WatcherType::Any => {
                let c = self.child.remove(path, w, None);
                let d = self.data.remove(path, w, None);
                c || d
            }
        }
    }

    /// Drops every watch of a closed connection.
    pub fn remove_watcher(&mut self, w: W) {
        self.data.remove_watcher(w);
        self.child.remove_watcher(w);
    }

    /// Watch entries in both tables (mntr `zk_watch_count`, wchs).
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// Distinct watched paths (wchs).
    pub fn path_count(&self) -> usize {
        let mut paths: BTreeSet<&str> = self.data.by_path.keys().map(|s| s.as_str()).collect();
        paths.extend(self.child.by_path.keys().map(|s| s.as_str()));
        paths.len()
    }

    /// Watchers with at least one watch (wchs "connections").
    pub fn watcher_count(&self) -> usize {
        let mut ws: BTreeSet<W> = self.data.by_watcher.keys().copied().collect();
        ws.extend(self.child.by_watcher.keys().copied());
        ws.len()
    }

    /// Paths watched by each watcher (wchc).
    pub fn by_watcher(&self) -> BTreeMap<W, BTreeSet<String>> {
        let mut out: BTreeMap<W, BTreeSet<String>> = BTreeMap::new();
        for t in [&self.data, &self.child] {
            for (w, paths) in &t.by_watcher {
                out.entry(*w).or_default().extend(paths.iter().cloned());
            }
        }
        out
    }

    /// Watchers of each path (wchp).
    pub fn by_path(&self) -> BTreeMap<String, BTreeSet<W>> {
        let mut out: BTreeMap<String, BTreeSet<W>> = BTreeMap::new();
        for t in [&self.data, &self.child] {
            for (p, ws) in &t.by_path {
                out.entry(p.clone()).or_default().extend(ws.keys().copied());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn fire(w: &mut Watches<u32>, path: &str, ev: EventType) -> Vec<(u32, EventType, String)> {
        let mut out = Vec::new();
        w.trigger(path, ev, &mut out);
        out.into_iter()
            .map(|e| (e.watcher, e.event, e.path))
            .collect()
    }

    #[test]
    fn standard_watches_fire_once() {
        let mut w = Watches::new();
        w.add("/a", 1, Kind::Data);
        w.add("/a", 2, Kind::Data);
        assert_eq!(
            fire(&mut w, "/a", NodeDataChanged),
            vec![
                (1, NodeDataChanged, "/a".into()),
                (2, NodeDataChanged, "/a".into())
            ]
        );
        assert!(fire(&mut w, "/a", NodeDataChanged).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn child_watch_sees_children_changed_not_data() {
        let mut w = Watches::new();
        w.add("/a", 1, Kind::Child);
        assert!(fire(&mut w, "/a", NodeDataChanged).is_empty());
        assert_eq!(fire(&mut w, "/a", NodeChildrenChanged).len(), 1);
        assert!(fire(&mut w, "/a", NodeChildrenChanged).is_empty());
    }

    #[test]
    fn delete_notifies_once_when_both_tables_match() {
        let mut w = Watches::new();
        w.add("/a", 1, Kind::Data);
        w.add("/a", 1, Kind::Child);
        w.add("/a", 2, Kind::Child);
        assert_eq!(
            fire(&mut w, "/a", NodeDeleted),
            vec![(1, NodeDeleted, "/a".into()), (2, NodeDeleted, "/a".into())]
        );
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn persistent_watch_stays_and_sees_both_kinds() {
        let mut w = Watches::new();
        w.add("/a", 7, Kind::Persistent);
        for _ in 0..3 {
            assert_eq!(fire(&mut w, "/a", NodeDataChanged).len(), 1);
            assert_eq!(fire(&mut w, "/a", NodeChildrenChanged).len(), 1);
        }
        assert!(w.contains("/a", 7, WatcherType::Persistent));
        // 3.8: a persistent watch counts as a data and a child watch too.
        assert!(w.contains("/a", 7, WatcherType::Data));
        assert!(!w.contains("/a", 7, WatcherType::PersistentRecursive));
        assert!(w.remove("/a", 7, WatcherType::Persistent));
        assert!(!w.remove("/a", 7, WatcherType::Persistent));
        assert!(fire(&mut w, "/a", NodeDataChanged).is_empty());
    }

    #[test]
    fn recursive_watch_covers_subtree_but_not_children_changed() {
        let mut w = Watches::new();
        w.add("/a", 3, Kind::PersistentRecursive);
        assert_eq!(
            fire(&mut w, "/a/b/c", NodeCreated),
            vec![(3, NodeCreated, "/a/b/c".into())]
        );
        assert!(fire(&mut w, "/a/b", NodeChildrenChanged).is_empty());
        assert!(fire(&mut w, "/ab", NodeCreated).is_empty());
        assert_eq!(fire(&mut w, "/a", NodeDataChanged).len(), 1);
        assert_eq!(fire(&mut w, "/a/x", NodeDeleted).len(), 1);
        // Still armed.
        assert!(w.contains("/a", 3, WatcherType::PersistentRecursive));
    }

    #[test]
    fn standard_and_persistent_on_one_path_fire_once_then_persistent_remains() {
        let mut w = Watches::new();
        w.add("/a", 1, Kind::Data);
        w.add("/a", 1, Kind::Persistent);
        assert_eq!(fire(&mut w, "/a", NodeDataChanged).len(), 1);
        assert!(w.contains("/a", 1, WatcherType::Persistent));
        // The standard watch is gone: the next change fires once, from the persistent one.
        assert_eq!(fire(&mut w, "/a", NodeDataChanged).len(), 1);
    }

    #[test]
    fn remove_any_and_remove_watcher() {
        let mut w = Watches::new();
        w.add("/a", 1, Kind::Data);
        w.add("/a", 1, Kind::Child);
        w.add("/b", 1, Kind::PersistentRecursive);
        w.add("/b", 2, Kind::Data);
        assert!(!w.remove("/zz", 1, WatcherType::Any));
        assert!(w.remove("/a", 1, WatcherType::Any));
        assert!(!w.contains("/a", 1, WatcherType::Any));
        w.remove_watcher(1);
        assert_eq!(w.count(), 1);
        assert!(fire(&mut w, "/b/c", NodeCreated).is_empty());
        assert_eq!(w.watcher_count(), 1);
        assert_eq!(w.path_count(), 1);
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent_of("/"), Option::None);
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
    }
}
