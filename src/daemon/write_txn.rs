//! One open file of /appswitch/policy or /appswitch/services as a
//! transaction: every write(2) through it hands over bytes; each complete
//! line is checked (applied to a private copy of the table) as it arrives,
//! so a bad line fails the write that carried it; the close(2) commits the
//! copy, all of it, or nothing if any write failed. A line may span writes
//! (cat writes in 128 KiB chunks; bash's printf writes line by line).

use crate::policy::table::PolicyTable;
use crate::policy::ParseError;
use crate::services::routes::canonical;
use crate::services::static_table::ServiceTable;
use controlfs::Errno;
use std::net::{IpAddr, SocketAddr};

/// A transaction's size at most (the whole open file).
pub const MAX_TXN: usize = 16 << 20;

/// The table a transaction edits, with its lines applied so far.
#[derive(Clone, Debug)]
pub enum Work {
    Policy(PolicyTable),
    Services(ServiceTable),
}

impl Work {
    fn file(&self) -> &'static str {
        match self {
            Work::Policy(_) => "policy",
            Work::Services(_) => "services",
        }
    }

    /// Apply `text` (complete lines), numbering them from `first + 1`.
    pub fn apply(&mut self, text: &str, first: usize) -> Result<(), ParseError> {
        match self {
            Work::Policy(p) => p.apply_in_place(text, first).map(|_| ()),
            Work::Services(s) => s.apply_in_place(text, first),
        }
    }
}

#[derive(Debug)]
pub struct Txn {
    work: Work,
    /// The generation of the live tables the copy was taken from.
    pub base: u64,
    /// The complete lines accepted so far (to apply again if the live table
    /// changed meanwhile).
    text: String,
    lines: usize,
    /// An incomplete last line, waiting for the rest.
    partial: Vec<u8>,
    /// A write failed: nothing of this open file will apply.
    pub failed: bool,
    /// A `del ID` or `insert POS` was written: these lines mean something
    /// only on the table this began with.
    pub uses_ids: bool,
    /// Traced services (name, VIP): `del` may name them; `add` may not take
    /// their name for another address.
    traced: Vec<(String, IpAddr)>,
    /// Traced services deleted by this transaction.
    dropped: Vec<String>,
}

/// Why a write or commit failed: the errno, and the line for `errors`.
pub type Refusal = (Errno, String);

impl Txn {
    pub fn new(work: Work, base: u64) -> Txn {
        Txn {
            work,
            base,
            text: String::new(),
            lines: 0,
            partial: Vec::new(),
            failed: false,
            uses_ids: false,
            traced: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// For `services`: the traced services (name, VIP).
    pub fn with_traced(mut self, traced: Vec<(String, IpAddr)>) -> Txn {
        self.traced = traced;
        self
    }

    pub fn refuse(&mut self, errno: Errno, why: String) -> Refusal {
        self.failed = true;
        (errno, format!("{}: {why}", self.work.file()))
    }

    /// One write(2)'s bytes.
    pub fn part(&mut self, data: &[u8]) -> Result<(), Refusal> {
        if self.failed {
            return Err((
                Errno::EINVAL,
                format!(
                    "{}: an earlier write to this open file failed: nothing of it applies",
                    self.work.file()
                ),
            ));
        }
        if self.text.len() + self.partial.len() + data.len() > MAX_TXN {
            return Err(self.refuse(
                Errno::EFBIG,
                format!("more than {MAX_TXN} bytes written through one open file: nothing applies"),
            ));
        }
        // Only the new bytes can hold the newline that completes lines.
        let Some(at) = data.iter().rposition(|&b| b == b'\n') else {
            self.partial.extend_from_slice(data);
            return Ok(());
        };
        let end = self.partial.len() + at;
        self.partial.extend_from_slice(data);
        let rest = self.partial.split_off(end + 1);
        let chunk = std::mem::replace(&mut self.partial, rest);
        self.take_lines(chunk)
    }

    /// What only the transaction can see in its lines: for `policy`,
    /// whether IDs are named; for `services`, `del NAME` of a traced service
    /// (taken out, blank so line numbers stay, and remembered) and `add` of
    /// a traced service's name on another address (refused).
    fn look_at_lines(&mut self, text: String) -> Result<String, Refusal> {
        let words = |l: &str| -> Vec<String> {
            l.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let statics = match &self.work {
            Work::Policy(_) => {
                self.uses_ids |= text.lines().any(|l| {
                    words(l)
                        .first()
                        .is_some_and(|w| w == "del" || w == "insert")
                });
                return Ok(text);
            }
            Work::Services(s) => s,
        };
        if self.traced.is_empty() {
            return Ok(text);
        }
        let traced = |name: &str| {
            self.traced
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(name))
                .map(|(_, ip)| *ip)
        };
        let mut out = String::with_capacity(text.len());
        let mut dropped = Vec::new();
        let mut bad = None;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let w = words(line);
            match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["del", name] if statics.get(name).is_none() && traced(name).is_some() => {
                    dropped.push(name.to_string());
                    out.push('\n');
                }
                ["add", name, vip, ..] => {
                    let ip = vip.parse::<SocketAddr>().ok().map(|a| canonical(a.ip()));
                    if let (Some(tip), Some(ip)) = (traced(name), ip) {
                        if canonical(tip) != ip && bad.is_none() {
                            bad = Some(format!(
                                "line {}: '{name}' is the name of a traced service at {tip}: \
                                 one name, one VIP",
                                self.lines + i + 1
                            ));
                        }
                    }
                    out.push_str(line);
                }
                _ => out.push_str(line),
            }
        }
        if let Some(why) = bad {
            return Err(self.refuse(
                Errno::EINVAL,
                format!("{why} (nothing of this write applies)"),
            ));
        }
        self.dropped.extend(dropped);
        Ok(out)
    }

    fn take_lines(&mut self, chunk: Vec<u8>) -> Result<(), Refusal> {
        let text = match String::from_utf8(chunk) {
            Ok(t) if !t.contains('\0') => t,
            _ => {
                return Err(self.refuse(
                    Errno::EINVAL,
                    "not text (invalid UTF-8 or NUL bytes): nothing applies".into(),
                ))
            }
        };
        let text = self.look_at_lines(text)?;
        if let Err(e) = self.work.apply(&text, self.lines) {
            return Err(self.refuse(
                Errno::EINVAL,
                format!("{e} (nothing of this write applies)"),
            ));
        }
        self.lines += text.lines().count();
        self.text.push_str(&text);
        Ok(())
    }

    /// The end: the table to install, all the text (for applying again on
    /// a newer table), and the traced services deleted. A last line without
    /// its newline means the writer stopped short (killed mid-way, say):
    /// nothing applies.
    pub fn finish(mut self) -> Result<(Work, String, Vec<String>), Refusal> {
        if !self.partial.is_empty() {
            return Err(self.refuse(
                Errno::EINVAL,
                "incomplete last line (every line ends with a newline): nothing of this write \
                 applies"
                    .into(),
            ));
        }
        Ok((self.work, self.text, self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Work {
        Work::Policy(PolicyTable::new(false))
    }

    #[test]
    fn lines_may_span_writes_and_the_last_needs_its_newline() {
        let mut cut = Txn::new(policy(), 0);
        cut.part(b"deny connect any:22\ndeny connect any:2")
            .unwrap();
        assert!(cut.finish().is_err(), "a writer that stopped mid-line");
        let mut t = Txn::new(policy(), 0);
        t.part(b"deny connect any:2").unwrap();
        t.part(b"2\nallow conn").unwrap();
        t.part(b"ect any:80\ndeny bind any:1-1023\n").unwrap();
        let (work, text, _) = t.finish().unwrap();
        let Work::Policy(p) = work else { panic!() };
        assert_eq!(p.entries().len(), 3, "{}", p.render());
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn a_bad_line_fails_its_write_names_its_line_and_poisons_the_rest() {
        let mut t = Txn::new(policy(), 0);
        t.part(b"deny connect any:22\n").unwrap();
        let (e, why) = t.part(b"allow connect any:80\nfrobnicate\n").unwrap_err();
        assert_eq!(e, Errno::EINVAL);
        assert!(why.contains("line 3"), "{why}");
        assert!(t.failed);
        assert!(t.part(b"deny connect any:23\n").is_err());
    }

    #[test]
    fn size_is_bounded() {
        let mut t = Txn::new(policy(), 0);
        let big = vec![b'#'; MAX_TXN + 1];
        assert_eq!(t.part(&big).unwrap_err().0, Errno::EFBIG);
    }
}
