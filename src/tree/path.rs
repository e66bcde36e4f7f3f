//! ZooKeeper's znode path rules (`PathUtils.validatePath`) and the parent/child split the
//! tree and the sequencer use. Owns the syntax of paths only: whether a path exists is
//! the tree's business, and the error code a bad path earns (BADARGUMENTS) is `prep`'s.
//!
//! ZooKeeper checks paths as UTF-16 code units. A Rust `str` holds code points, so the
//! rules are restated per code point: a character outside the Basic Multilingual Plane is
//! a surrogate pair in Java, whose first unit falls in the rejected range, so it is
//! rejected here too.

use std::fmt;

/// Why a path is not a valid znode path, with the character index (in code points) of
/// the offending character where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPath {
    pub reason: &'static str,
    pub at: usize,
}

impl fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid path: {} @{}", self.reason, self.at)
    }
}

impl std::error::Error for InvalidPath {}

fn invalid(reason: &'static str, at: usize) -> Result<(), InvalidPath> {
    Err(InvalidPath { reason, at })
}

/// True for the characters `PathUtils` rejects anywhere after the leading '/'.
fn is_forbidden_char(c: char) -> bool {
    let u = c as u32;
    (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        // Java rejects 0xd800..=0xf8ff: surrogates cannot occur in a str, the private use
        // area can, and a supplementary character arrives in Java as a high surrogate.
        || (0xe000..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        || u > 0xffff
}

/// Checks `path` exactly as ZooKeeper's `PathUtils.validatePath(String)` does: absolute,
/// no trailing '/' (except the root), no empty segment, no "." or ".." segment, no NUL,
/// no control or reserved characters.
///
/// # Errors
/// The first rule `path` breaks, scanning from the left as ZooKeeper does.
pub fn validate_path(path: &str) -> Result<(), InvalidPath> {
    // Every write is checked, and almost every path is ASCII: then bytes are code
    // points, with the same indexes, and no vector of chars is needed (collecting one
    // was a sixth of the leader's validation work for a setData).
    if path.is_ascii() {
        validate_units(path.as_bytes(), char::from)
    } else {
        let chars: Vec<char> = path.chars().collect();
        validate_units(&chars, |c| c)
    }
}

/// [`validate_path`] over the path's code points (`chars`, each read through `at`).
fn validate_units<U: Copy>(chars: &[U], at: impl Fn(U) -> char) -> Result<(), InvalidPath> {
    let ch = |i: usize| at(chars[i]);
    if chars.is_empty() {
        return invalid("path length must be > 0", 0);
    }
    if ch(0) != '/' {
        return invalid("path must start with / character", 0);
    }
    if chars.len() == 1 {
        return Ok(());
    }
    if ch(chars.len() - 1) == '/' {
        return invalid("path must not end with / character", chars.len() - 1);
    }
    for i in 1..chars.len() {
        let c = ch(i);
        let last = ch(i - 1);
        let ends_segment = i + 1 == chars.len() || ch(i + 1) == '/';
        if c == '\0' {
            return invalid("null character not allowed", i);
        } else if c == '/' && last == '/' {
            return invalid("empty node name specified", i);
        } else if c == '.' && last == '.' {
            // i >= 2 here: chars[1] follows the leading '/', so `last` was '.' at i >= 2.
            if ch(i - 2) == '/' && ends_segment {
                return invalid("relative paths not allowed", i);
            }
        } else if c == '.' {
            if last == '/' && ends_segment {
                return invalid("relative paths not allowed", i);
            }
        } else if is_forbidden_char(c) {
            return invalid("invalid character", i);
        }
    }
    Ok(())
}

/// The client-side check of a sequential create (`PathUtils.validatePath(path, true)`):
/// the path is checked as if the suffix were already there, so "/app/" is accepted and
/// becomes "/app/0000000007". The server itself checks the final path after appending
/// the suffix, which `prep` does; this is for callers that validate ahead of time.
///
/// # Errors
/// As [`validate_path`], for `path` followed by one digit.
pub fn validate_sequential_prefix(path: &str) -> Result<(), InvalidPath> {
    let mut p = String::with_capacity(path.len() + 1);
    p.push_str(path);
    p.push('1');
    validate_path(&p)
}

/// Splits `path` at its last '/' as ZooKeeper does (`lastIndexOf('/')`): the parent's
/// tree key ("/" for a child of the root, where ZooKeeper says "") and the child's name.
/// Returns `None` when there is no '/' at all. No other validation: "/a//b" gives
/// ("/a/", "b"), a parent that never exists, which is how ZooKeeper arrives at NONODE.
pub fn split_parent(path: &str) -> Option<(&str, &str)> {
    let slash = path.rfind('/')?;
    let parent = if slash == 0 { "/" } else { &path[..slash] };
    Some((parent, &path[slash + 1..]))
}

/// The path a parent's NodeChildrenChanged trigger names: "/" for the root's children.
pub fn parent_of(path: &str) -> Option<&str> {
    split_parent(path).map(|(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> bool {
        validate_path(p).is_ok()
    }

    /// Valid paths: cases from ZooKeeper's PathUtilsTest / ZooKeeperTest.
    const VALID: &[&str] = &[
        "/",
        "/a",
        "/a/b",
        "/a.b",
        "/.a",
        "/a.",
        "/..a",
        "/a..",
        "/...",
        "/a/.../b",
        "/é",
        "/\u{fe00}",
        "/zookeeper/quota",
    ];

    /// Invalid paths, each for one of ZooKeeper's rules.
    const INVALID: &[&str] = &[
        "",
        "a",
        "a/b",
        "/a/",
        "//",
        "/a//b",
        "/.",
        "/..",
        "/a/./b",
        "/a/../b",
        "/a/.",
        "/a/..",
        "/a\0b",
        "/a\u{1}",
        "/a\u{7f}",
        "/a\u{9f}",
        "/a\u{e000}",
        "/a\u{f8ff}",
        "/a\u{fff0}",
        "/a\u{ffff}",
        "/a\u{1f600}",
    ];

    #[test]
    fn accepts_zookeeper_valid_paths() {
        for p in VALID {
            assert!(ok(p), "{p:?} should be valid");
        }
    }

    #[test]
    fn rejects_zookeeper_invalid_paths() {
        for p in INVALID {
            assert!(!ok(p), "{p:?} should be invalid");
        }
    }

    #[test]
    fn reports_the_first_offence_and_its_index() {
        assert_eq!(
            validate_path("/a//b").unwrap_err(),
            InvalidPath {
                reason: "empty node name specified",
                at: 3
            }
        );
        assert_eq!(
            validate_path("/a/..").unwrap_err().reason,
            "relative paths not allowed"
        );
        assert_eq!(validate_path("x").unwrap_err().at, 0);
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_code_point_rules() {
        for p in VALID.iter().chain(INVALID).chain(&["/a/.b", "/zk/key-1"]) {
            let chars: Vec<char> = p.chars().collect();
            assert_eq!(
                validate_path(p),
                validate_units(&chars, |c| c),
                "{p:?}: bytes and code points disagree"
            );
        }
        // Outside ASCII, indexes still count code points, as ZooKeeper's (BMP) chars.
        assert_eq!(validate_path("/\u{e9}//b").unwrap_err().at, 3);
        assert_eq!(validate_path("/\u{e9}\u{1}").unwrap_err().at, 2);
    }

    #[test]
    fn boundary_characters_just_outside_the_ranges_are_allowed() {
        assert!(ok("/a\u{20}"));
        assert!(ok("/a\u{7e}"));
        assert!(ok("/a\u{a0}"));
        assert!(ok("/a\u{d7ff}"));
        assert!(ok("/a\u{f900}"));
        assert!(ok("/a\u{ffef}"));
    }

    #[test]
    fn sequential_prefix_allows_a_trailing_slash() {
        assert!(validate_sequential_prefix("/app/").is_ok());
        assert!(validate_sequential_prefix("/app/lock-").is_ok());
        assert!(validate_sequential_prefix("/").is_ok());
        assert!(validate_sequential_prefix("/a//").is_err());
        assert!(validate_path("/app/").is_err());
    }

    #[test]
    fn split_parent_follows_last_index_of_slash() {
        assert_eq!(split_parent("/a"), Some(("/", "a")));
        assert_eq!(split_parent("/a/b"), Some(("/a", "b")));
        assert_eq!(split_parent("/a//b"), Some(("/a/", "b")));
        assert_eq!(split_parent("/"), Some(("/", "")));
        assert_eq!(split_parent("abc"), None);
        assert_eq!(parent_of("/x/y/z"), Some("/x/y"));
    }
}
