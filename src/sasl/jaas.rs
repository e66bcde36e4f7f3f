//! A JAAS login configuration file, the file `java.security.auth.login.config` names,
//! read as Java's `sun.security.provider.ConfigFile` reads it:
//!
//! ```text
//! Server {
//!     org.apache.zookeeper.server.auth.DigestLoginModule required
//!     user_super="adminsecret"
//!     user_bob="bobsecret";
//! };
//! ```
//!
//! A file is a list of sections (`Name { entries };`); an entry is a login module class,
//! a control flag (`required`, `requisite`, `sufficient`, `optional`, any case) and
//! `key=value` options up to a `;`. Values are quoted strings (with `\` escapes) or bare
//! words. Comments are `//`, `/* */` and `#` to the end of the line. A section named
//! twice is an error, as in Java.
//!
//! Owns: tokenising and parsing that text. Must not read files itself or know what the
//! options mean (the SASL server takes `user_<name>` options from its section). Every
//! error names the line, so an operator can find a typo in a file Java would refuse too.

use std::fmt;

/// One login module line of a section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The login module's class name, e.g. `org.apache.zookeeper.server.auth.DigestLoginModule`.
    pub module: String,
    /// The control flag, lower-cased.
    pub flag: String,
    /// Options in file order (a repeated key keeps both; readers take the last).
    pub options: Vec<(String, String)>,
}

impl Entry {
    /// The last value of an option, if given.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One `Name { ... };` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub entries: Vec<Entry>,
}

/// A whole parsed file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JaasConfig {
    pub sections: Vec<Section>,
}

impl JaasConfig {
    /// The section with this exact name (JAAS names are case-sensitive).
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// A malformed file: the line (1-based) and what was wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JaasError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for JaasError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for JaasError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Punct(char),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "{w:?}"),
            Tok::Quoted(q) => write!(f, "the quoted string {q:?}"),
            Tok::Punct(c) => write!(f, "'{c}'"),
        }
    }
}

/// Characters of a bare word (ConfigFile's `wordChars`): a path or a principal, with
/// its `/` and `@`, must be quoted.
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '$' | '-' | '*')
}

fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, JaasError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in it.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'/') => {
                for c in it.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '/' if it.peek() == Some(&'*') => {
                let start = line;
                it.next();
                let mut prev = ' ';
                let mut closed = false;
                for c in it.by_ref() {
                    if c == '\n' {
                        line += 1;
                    }
                    if prev == '*' && c == '/' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                if !closed {
                    return Err(JaasError {
                        line: start,
                        message: "comment /* is never closed".into(),
                    });
                }
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                let mut closed = false;
                while let Some(c) = it.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                s.push(e)
                            }
                            None => break,
                        },
                        '\n' => {
                            line += 1;
                            s.push(c);
                        }
                        c => s.push(c),
                    }
                }
                if !closed {
                    return Err(JaasError {
                        line: start,
                        message: "quoted string is never closed".into(),
                    });
                }
                out.push((Tok::Quoted(s), start));
            }
            '{' | '}' | ';' | '=' => out.push((Tok::Punct(c), line)),
            c if is_word(c) => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if is_word(n) {
                        w.push(n);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push((Tok::Word(w), line));
            }
            c => {
                return Err(JaasError {
                    line,
                    message: format!("unexpected character {c:?}"),
                })
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    last_line: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).map_or(self.last_line, |(_, l)| *l)
    }

    fn err<T>(&self, message: String) -> Result<T, JaasError> {
        Err(JaasError {
            line: self.line(),
            message,
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(t) => t.to_string(),
            None => "the end of the file".into(),
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), JaasError> {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.next();
            Ok(())
        } else {
            self.err(format!("expected '{c}' {what}, found {}", self.found()))
        }
    }

    fn word(&mut self, what: &str) -> Result<String, JaasError> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.next();
                Ok(w)
            }
            _ => self.err(format!("expected {what}, found {}", self.found())),
        }
    }
}

/// Parses the text of a JAAS configuration file.
///
/// # Errors
/// A [`JaasError`] naming the line of the first thing that is not JAAS syntax: an
/// unclosed quote or comment, a missing `{`, `}`, `;` or `=`, an unknown control flag,
/// an empty section, a section named twice.
pub fn parse(text: &str) -> Result<JaasConfig, JaasError> {
    let toks = tokenize(text)?;
    let last_line = text.lines().count().max(1);
    let mut p = Parser {
        toks,
        pos: 0,
        last_line,
    };
    let mut cfg = JaasConfig::default();
    while p.peek().is_some() {
        let line = p.line();
        let name = p.word("a section name")?;
        if cfg.section(&name).is_some() {
            return Err(JaasError {
                line,
                message: format!("section {name} is given twice"),
            });
        }
        p.expect('{', &format!("after section name {name}"))?;
        let mut entries = Vec::new();
        while p.peek() != Some(&Tok::Punct('}')) {
            let module = p.word(&format!("a login module class name in section {name}"))?;
            let flag_line = p.line();
            let flag = p.word(&format!("a control flag after {module}"))?;
            let flag = flag.to_ascii_lowercase();
            if !matches!(
                flag.as_str(),
                "required" | "requisite" | "sufficient" | "optional"
            ) {
                return Err(JaasError {
                    line: flag_line,
                    message: format!(
                        "control flag {flag:?} of {module} is not required, requisite, sufficient or optional"
                    ),
                });
            }
            let mut options = Vec::new();
            while p.peek() != Some(&Tok::Punct(';')) {
                let key = p.word(&format!("an option name or ';' after {module}"))?;
                p.expect('=', &format!("after option {key}"))?;
                let value = match p.next() {
                    Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => w,
                    other => {
                        if other.is_some() {
                            p.pos -= 1;
                        }
                        return p.err(format!(
                            "expected a value for option {key}, found {}",
                            p.found()
                        ));
                    }
                };
                options.push((key, value));
            }
            p.expect(';', "")?;
            entries.push(Entry {
                module,
                flag,
                options,
            });
        }
        p.expect('}', &format!("to end section {name}"))?;
        if entries.is_empty() {
            return Err(JaasError {
                line,
                message: format!("section {name} has no login module"),
            });
        }
        p.expect(';', &format!("after the '}}' of section {name}"))?;
        cfg.sections.push(Section { name, entries });
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_zookeepers_documented_server_section() {
        let text = r#"
// the server's users
Server {
       org.apache.zookeeper.server.auth.DigestLoginModule required
       user_super="adminsecret"  /* the super user */
       user_bob="bob\"secret"
       user_eve=plain;
};
# a client section in the same file
Client { org.apache.zookeeper.server.auth.DigestLoginModule Required username="bob" password="x"; };
"#;
        let cfg = parse(text).unwrap();
        let s = cfg.section("Server").unwrap();
        assert_eq!(s.entries.len(), 1);
        let e = &s.entries[0];
        assert_eq!(
            e.module,
            "org.apache.zookeeper.server.auth.DigestLoginModule"
        );
        assert_eq!(e.flag, "required");
        assert_eq!(e.option("user_super"), Some("adminsecret"));
        assert_eq!(e.option("user_bob"), Some("bob\"secret"));
        assert_eq!(e.option("user_eve"), Some("plain"));
        assert_eq!(cfg.section("Client").unwrap().entries[0].flag, "required");
        assert!(cfg.section("server").is_none());
    }

    #[test]
    fn keytab_paths_and_principals_are_words_or_strings() {
        let text = "Server {\n com.sun.security.auth.module.Krb5LoginModule required\n useKeyTab=true\n keyTab=\"/etc/zk.keytab\"\n principal=\"zookeeper/host@EX.COM\";\n};";
        let cfg = parse(text).unwrap();
        let e = &cfg.section("Server").unwrap().entries[0];
        assert_eq!(e.option("useKeyTab"), Some("true"));
        assert_eq!(e.option("keyTab"), Some("/etc/zk.keytab"));
        assert_eq!(e.option("principal"), Some("zookeeper/host@EX.COM"));
    }

    #[test]
    fn malformed_files_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "Server {\n m required\n user_a=\"x\"\n",
                3,
                "found the end of the file",
            ),
            (
                "Server {\n m required\n user_a=\"x;\n};\n",
                3,
                "never closed",
            ),
            ("Server {\n m mandatory;\n};", 2, "control flag"),
            ("Server \n m required;\n};", 2, "expected '{'"),
            (
                "Server {\n m required\n user_a \"x\";\n};",
                3,
                "expected '='",
            ),
            (
                "Server {\n m required\n user_a=;\n};",
                3,
                "expected a value",
            ),
            ("Server {\n m required;\n}\n", 3, "after the '}'"),
            ("Server {\n};", 1, "no login module"),
            ("A { m required; };\nA { m required; };", 2, "given twice"),
            ("Server {\n m required /* open\n", 2, "never closed"),
            (
                "Server {\n m required user_a=\"x\" & ;\n};",
                2,
                "unexpected character",
            ),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_empty_file_has_no_sections() {
        assert_eq!(parse("  // nothing\n").unwrap(), JaasConfig::default());
    }
}
