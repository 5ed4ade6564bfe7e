//! Pure decisions about a message: which senders are allowed, the From addresses of a header block, and how a
//! body line goes on the wire upstream (CRLF, dot-stuffing kept as the client sent it).

use std::str::FromStr;

/// True when `address` matches one of `patterns` (`user@domain` exactly, or `*@domain`); case-insensitive.
pub fn sender_allowed(patterns: &[String], address: &str) -> bool {
    let address = address.trim().to_ascii_lowercase();
    let Some((_, domain)) = address.rsplit_once('@') else { return false };
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        match p.strip_prefix("*@") {
            Some(d) => d == domain,
            None => p == address,
        }
    })
}

/// The header block so far; bounded by the caller.
#[derive(Default)]
pub struct Headers {
    pub raw: Vec<u8>,
}

impl Headers {
    /// The addresses of every `From:` header (unfolded). `Err` when a From header cannot be parsed.
    pub fn sender_addresses(&self) -> Result<Vec<String>, String> {
        let text = String::from_utf8_lossy(&self.raw);
        let mut fields: Vec<String> = Vec::new();
        for line in text.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.push_str(line);
                }
            } else if !line.is_empty() {
                fields.push(line.to_owned());
            }
        }
        let mut out = Vec::new();
        for f in fields {
            let Some((name, value)) = f.split_once(':') else { continue };
            if !name.trim().eq_ignore_ascii_case("from") {
                continue;
            }
            let boxes = lettre::message::Mailboxes::from_str(value.trim())
                .map_err(|e| format!("the From header {:?} is not an address list: {e}", truncate(value, 80)))?;
            out.extend(boxes.into_iter().map(|m| m.email.to_string()));
        }
        Ok(out)
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.trim().chars().filter(|c| !c.is_control()).take(n).collect()
}

/// One line of DATA as read (ending in LF, or not when cut at the line limit).
#[derive(Debug, PartialEq, Eq)]
pub enum BodyLine {
    /// The end-of-data line (`.` alone).
    End,
    /// A line to forward, normalized to end in CRLF (a bare LF becomes CRLF).
    Line(Vec<u8>),
}

/// Normalizes one line. Every line is re-terminated with CRLF, so the upstream sees exactly the line
/// boundaries the relay saw (no end-of-data smuggling through bare LF or bare CR).
pub fn body_line(raw: &[u8]) -> BodyLine {
    let content = raw.strip_suffix(b"\n").unwrap_or(raw);
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    if content == b"." {
        return BodyLine::End;
    }
    let mut out = Vec::with_capacity(content.len() + 2);
    // a bare CR inside a line would end the line for some servers: make it a space
    out.extend(content.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
    BodyLine::Line(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_patterns() {
        let p = vec!["alerts@example.com".to_owned(), "*@noreply.example.com".to_owned()];
        for (addr, want) in [
            ("alerts@example.com", true),
            ("ALERTS@Example.com", true),
            ("x@noreply.example.com", true),
            ("x@evil.noreply.example.com", false),
            ("other@example.com", false),
            ("alerts@example.com.evil", false),
            ("", false),
            ("noat", false),
        ] {
            assert_eq!(sender_allowed(&p, addr), want, "{addr}");
        }
    }

    #[test]
    fn header_sender_addresses() {
        let h = Headers { raw: b"Subject: x\r\nFrom: \"Alerts\" <alerts@example.com>\r\nTo: a@b.c\r\n".to_vec() };
        assert_eq!(h.sender_addresses().unwrap(), ["alerts@example.com"]);
        let folded = Headers { raw: b"From: A <a@x.example>,\r\n B <b@y.example>\r\n".to_vec() };
        assert_eq!(folded.sender_addresses().unwrap(), ["a@x.example", "b@y.example"]);
        let none = Headers { raw: b"Subject: no from\r\n".to_vec() };
        assert!(none.sender_addresses().unwrap().is_empty());
        assert!(Headers { raw: b"From: <<<\r\n".to_vec() }.sender_addresses().is_err());
    }

    #[test]
    fn body_lines_are_crlf_and_end_is_only_a_lone_dot() {
        assert_eq!(body_line(b".\r\n"), BodyLine::End);
        assert_eq!(body_line(b".\n"), BodyLine::End);
        assert_eq!(body_line(b"hello\n"), BodyLine::Line(b"hello\r\n".to_vec()));
        assert_eq!(body_line(b"..stuffed\r\n"), BodyLine::Line(b"..stuffed\r\n".to_vec()));
        assert_eq!(body_line(b"a\rb\r\n"), BodyLine::Line(b"a b\r\n".to_vec()));
        assert_eq!(body_line(b".x\r\n"), BodyLine::Line(b".x\r\n".to_vec()));
    }
}
