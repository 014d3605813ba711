//! The rules behind /appswitch/policy: each with a stable ID, edited by
//! short text commands, rendered as `ID RULE` lines in evaluation order and
//! a final `default allow|deny` line. A write of several lines is one
//! transaction: all of it applies, or none.

use crate::policy::{self, ParseError, Rule, Verb};
use std::fmt::Write as _;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyTable {
    rules: Vec<(u32, Rule)>,
    next_id: u32,
    default_deny: bool,
    /// Bumped on every change; tracers compare versions.
    pub version: u64,
}

/// One command line written to the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Command {
    Append(Rule),
    Insert(usize, Rule),
    Del(u32),
    Flush,
    Default(bool),
}

fn err(line: usize, col: usize, token: &str, msg: &str) -> ParseError {
    ParseError::new(line, col, token, msg)
}

/// The first whitespace-separated word of `s` and the rest after it (with
/// the rest's starting column, 1-based).
fn split_word(s: &str) -> (&str, &str, usize) {
    let t = s.trim_start();
    let lead = s.len() - t.len();
    match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], &t[i..], lead + i + 1),
        None => (t, "", s.len() + 1),
    }
}

fn parse_command(n: usize, line: &str) -> Result<Option<Command>, ParseError> {
    let body = line.split('#').next().unwrap_or("");
    let (word, rest, rest_col) = split_word(body);
    // Column of the first token of `rest`.
    let arg_col = rest_col + (rest.len() - rest.trim_start().len());
    // Errors inside a rule are reported at the column within the whole line.
    let rule_at = |text: &str, offset: usize| {
        policy::parse_rule_at(n, text).map_err(|mut e| {
            e.col += offset;
            e
        })
    };
    Ok(Some(match word {
        "" => return Ok(None),
        "flush" if rest.trim().is_empty() => Command::Flush,
        "del" => {
            let (id, tail, _) = split_word(rest);
            let id = id.parse::<u32>().map_err(|_| {
                err(
                    n,
                    arg_col,
                    id,
                    "expected del ID (a rule number from the listing)",
                )
            })?;
            if !tail.trim().is_empty() {
                return Err(err(n, arg_col, tail.trim(), "unexpected text after del ID"));
            }
            Command::Del(id)
        }
        "insert" => {
            let (pos, tail, tail_col) = split_word(rest);
            let p = pos
                .parse::<usize>()
                .ok()
                .filter(|&p| p >= 1)
                .ok_or_else(|| err(n, arg_col, pos, "expected insert POS RULE, POS from 1"))?;
            Command::Insert(p, rule_at(tail, rest_col - 1 + tail_col - 1)?)
        }
        "default" => match rest.trim() {
            "allow" => Command::Default(false),
            "deny" => Command::Default(true),
            other => {
                return Err(err(
                    n,
                    arg_col,
                    other,
                    "expected default allow or default deny",
                ))
            }
        },
        _ => Command::Append(rule_at(body, 0)?),
    }))
}

impl PolicyTable {
    pub fn new(default_deny: bool) -> PolicyTable {
        PolicyTable {
            rules: Vec::new(),
            next_id: 1,
            default_deny,
            version: 1,
        }
    }

    /// Apply the lines of one write, all or nothing. Line numbers in errors
    /// count from 1 within the write.
    pub fn apply(&mut self, text: &str) -> Result<(), ParseError> {
        let mut next = self.clone();
        if next.apply_in_place(text, 0)? {
            *self = next;
        }
        Ok(())
    }

    /// Apply lines to this table as they come; lines are numbered from
    /// `first + 1`. On an error the table is left part-way: callers apply to
    /// a copy they drop on error. Whether anything changed.
    pub fn apply_in_place(&mut self, text: &str, first: usize) -> Result<bool, ParseError> {
        let mut changed = false;
        for (i, line) in text.lines().enumerate() {
            let n = first + i + 1;
            let Some(cmd) = parse_command(n, line)? else {
                continue;
            };
            changed = true;
            match cmd {
                Command::Append(r) => {
                    let id = self.take_id();
                    self.rules.push((id, r));
                }
                Command::Insert(pos, r) => {
                    if pos > self.rules.len() + 1 {
                        return Err(err(
                            n,
                            1,
                            "insert",
                            &format!(
                                "position {pos} is past the end ({} rules)",
                                self.rules.len()
                            ),
                        ));
                    }
                    let id = self.take_id();
                    self.rules.insert(pos - 1, (id, r));
                }
                Command::Del(id) => {
                    let before = self.rules.len();
                    self.rules.retain(|(i, _)| *i != id);
                    if self.rules.len() == before {
                        return Err(err(n, 5, &id.to_string(), "no rule with this ID"));
                    }
                }
                Command::Flush => self.rules.clear(),
                Command::Default(d) => self.default_deny = d,
            }
        }
        if changed {
            self.version += 1;
        }
        Ok(changed)
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// `ID RULE` lines in evaluation order, then the default.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (id, r) in &self.rules {
            let _ = writeln!(s, "{id} {r}");
        }
        let _ = writeln!(
            s,
            "default {}",
            if self.default_deny { "deny" } else { "allow" }
        );
        s
    }

    /// Read back what `render` wrote (the saved state).
    pub fn load(text: &str) -> Result<PolicyTable, ParseError> {
        let mut t = PolicyTable::new(false);
        for (i, line) in text.lines().enumerate() {
            let (word, rest, rest_col) = split_word(line);
            if word.is_empty() {
                continue;
            }
            if word == "default" {
                t.default_deny = rest.trim() == "deny";
                continue;
            }
            let id: u32 = word
                .parse()
                .map_err(|_| err(i + 1, 1, word, "expected ID RULE"))?;
            let r = policy::parse_rule_at(i + 1, rest).map_err(|mut e| {
                e.col += rest_col - 1;
                e
            })?;
            t.next_id = t.next_id.max(id + 1);
            t.rules.push((id, r));
        }
        Ok(t)
    }

    pub fn default_deny(&self) -> bool {
        self.default_deny
    }

    /// (ID, rule) in evaluation order.
    pub fn entries(&self) -> &[(u32, Rule)] {
        &self.rules
    }
}

/// Rules of a policy file given with `trace --policy`, for the same table.
pub fn from_file(file: policy::PolicyFile, default_deny: bool) -> PolicyTable {
    let mut t = PolicyTable::new(file.default.map_or(default_deny, |v| v == Verb::Deny));
    for r in file.rules {
        let id = t.take_id();
        t.rules.push((id, r));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_edit_the_table_and_render_in_order() {
        let mut t = PolicyTable::new(false);
        t.apply("deny connect any:22\nallow connect loopback\n")
            .unwrap();
        t.apply("insert 1 log connect any\n").unwrap();
        assert_eq!(
            t.render(),
            "3 log connect any\n1 deny connect any:22\n2 allow connect loopback\ndefault allow\n"
        );
        t.apply("del 1\ndefault deny").unwrap();
        assert_eq!(
            t.render(),
            "3 log connect any\n2 allow connect loopback\ndefault deny\n"
        );
        let back = PolicyTable::load(&t.render()).unwrap();
        assert_eq!(back.render(), t.render());
        t.apply("flush\n").unwrap();
        assert_eq!(t.render(), "default deny\n");
    }

    #[test]
    fn a_write_with_one_bad_line_changes_nothing() {
        let mut t = PolicyTable::new(false);
        t.apply("deny connect any:22\n").unwrap();
        let before = t.clone();
        let e = t
            .apply("allow connect any:80\ndeny conect any\nallow bind any\n")
            .unwrap_err();
        assert_eq!((e.line, e.col, e.token.as_str()), (2, 6, "conect"));
        assert_eq!(t, before);
        let e = t.apply("del 99\n").unwrap_err();
        assert!(e.msg.contains("no rule"), "{e}");
        let e = t.apply("insert 0 deny connect any\n").unwrap_err();
        assert_eq!(e.token, "0");
        let e = t.apply("insert 1 deny connect any:x\n").unwrap_err();
        assert_eq!((e.col, e.token.as_str()), (23, "any:x"));
        assert_eq!(t, before);
    }

    #[test]
    fn ids_are_never_reused() {
        let mut t = PolicyTable::new(false);
        t.apply("deny connect any:1\ndeny connect any:2\n").unwrap();
        t.apply("del 2\n").unwrap();
        t.apply("deny connect any:3\n").unwrap();
        assert!(t
            .render()
            .starts_with("1 deny connect any:1\n3 deny connect any:3\n"));
        let back = PolicyTable::load(&t.render()).unwrap();
        let mut back2 = back.clone();
        back2.apply("deny connect any:4\n").unwrap();
        assert!(back2.render().contains("4 deny connect any:4"));
    }
}
