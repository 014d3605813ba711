//! One open file of /appswitch/policy or /appswitch/services as a
//! transaction: every write(2) through it hands over bytes; each complete
//! line is checked (applied to a private copy of the table) as it arrives,
//! so a bad line fails the write that carried it; the close(2) commits the
//! copy, all of it, or nothing if any write failed. A line may span writes
//! (cat writes in 128 KiB chunks; bash's printf writes line by line).

use crate::policy::table::PolicyTable;
use crate::policy::ParseError;
use crate::services::static_table::ServiceTable;
use controlfs::Errno;

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
    /// Names of traced services (services written to may `del` them too).
    traced: Vec<String>,
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
            traced: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// For `services`: the traced services a `del NAME` may name.
    pub fn with_traced(mut self, names: Vec<String>) -> Txn {
        self.traced = names;
        self
    }

    /// `del NAME` lines naming a traced service (not a static one) are taken
    /// out (blank, so line numbers stay) and remembered.
    fn take_traced_dels(&mut self, text: String) -> String {
        let Work::Services(s) = &self.work else {
            return text;
        };
        if self.traced.is_empty() {
            return text;
        }
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let w: Vec<&str> = line
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            match w.as_slice() {
                ["del", name]
                    if s.get(name).is_none()
                        && self.traced.iter().any(|t| t.eq_ignore_ascii_case(name)) =>
                {
                    self.dropped.push(name.to_string());
                    out.push('\n');
                }
                _ => out.push_str(line),
            }
        }
        out
    }

    fn refuse(&mut self, errno: Errno, why: String) -> Refusal {
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
        self.partial.extend_from_slice(data);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let rest = self.partial.split_off(end + 1);
        let chunk = std::mem::replace(&mut self.partial, rest);
        self.take_lines(chunk)
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
        let text = self.take_traced_dels(text);
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

    /// The close: a last line without a newline counts as a line. The table
    /// to install, all the text (for applying again on a newer table), and
    /// the traced services deleted.
    pub fn finish(mut self) -> Result<(Work, String, Vec<String>), Refusal> {
        if !self.partial.is_empty() {
            let mut last = std::mem::take(&mut self.partial);
            last.push(b'\n');
            self.take_lines(last)?;
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
    fn lines_may_span_writes_and_the_last_needs_no_newline() {
        let mut t = Txn::new(policy(), 0);
        t.part(b"deny connect any:2").unwrap();
        t.part(b"2\nallow conn").unwrap();
        t.part(b"ect any:80\ndeny bind any:1-1023").unwrap();
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
