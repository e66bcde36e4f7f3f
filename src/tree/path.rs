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
    if plainly_valid(path.as_bytes()) {
        Ok(())
    } else if path.is_ascii() {
        validate_units(path.as_bytes(), char::from)
    } else {
        let chars: Vec<char> = path.chars().collect();
        validate_units(&chars, |c| c)
    }
}

/// True for the common valid path, in one pass over its bytes: at least one name,
/// printable ASCII only (0x20..=0x7e), no empty name, no name that starts with '.'
/// (which could be "." or ".."), no trailing '/'. False does not mean invalid: the
/// rest ("/", "/.a", any non-ASCII path, every invalid one) goes through the full rules
/// of [`validate_units`], which also name the first offence. The full rules cost ~490
/// instructions for zkbench's 21-byte paths (callgrind); this is a few per byte.
#[inline]
fn plainly_valid(b: &[u8]) -> bool {
    if b.len() < 2 || b[0] != b'/' || b[b.len() - 1] == b'/' {
        return false;
    }
    // Each byte beside the one before it, folded without an early exit so that the
    // compiler can check 16 or 32 bytes at once.
    let bad = b[1..]
        .iter()
        .zip(&b[..b.len() - 1])
        .fold(0u8, |bad, (&c, &prev)| {
            let unprintable = c.wrapping_sub(0x20) >= 0x5f;
            let bad_start = prev == b'/' && (c == b'/' || c == b'.');
            bad | u8::from(unprintable) | u8::from(bad_start)
        });
    bad == 0
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

    /// Every string of up to 6 characters over an alphabet that hits each rule: the
    /// one-pass check accepts only what the full rules accept, and accepts the plain
    /// names it is for.
    #[test]
    fn the_one_pass_check_accepts_only_valid_paths() {
        const ALPHABET: &[u8] = b"/.a\0\x1f ~\x7f";
        let mut accepted = 0;
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut p = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    p.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                if plainly_valid(&p) {
                    accepted += 1;
                    assert_eq!(validate_units(&p, char::from), Ok(()), "{p:?}");
                }
            }
        }
        assert!(accepted > 1000, "{accepted}");
        for p in ["/a", "/zkbench/key-00000001", "/a./b..", "/a b/~"] {
            assert!(plainly_valid(p.as_bytes()), "{p:?}");
        }
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
