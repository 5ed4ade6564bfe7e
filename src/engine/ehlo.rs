//! What the server's EHLO reply advertises (STARTTLS, AUTH mechanisms), and where a reply ends (to catch
//! data pipelined after the STARTTLS reply).

/// What an EHLO reply told us.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EhloInfo {
    pub(crate) starttls: bool,
    /// AUTH mechanisms, upper case, in advertised order, without duplicates.
    pub(crate) auth: Vec<String>,
}

/// Parses EHLO reply text lines (without the `250-` prefix).
pub(crate) fn parse_ehlo<'a>(lines: impl IntoIterator<Item = &'a str>) -> EhloInfo {
    let mut info = EhloInfo::default();
    for line in lines.into_iter().skip(1) {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let upper = keyword.to_ascii_uppercase();
        let mechs: Vec<&str> = if upper == "STARTTLS" {
            info.starttls = true;
            continue;
        } else if upper == "AUTH" {
            words.collect()
        } else if upper.starts_with("AUTH=") {
            // old-style "AUTH=LOGIN PLAIN" (some servers send both forms); the prefix is ASCII
            let mut v = vec![&keyword[5..]];
            v.extend(words);
            v
        } else {
            continue;
        };
        for m in mechs {
            let m = m.to_ascii_uppercase();
            if !m.is_empty()
                && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !info.auth.contains(&m)
            {
                info.auth.push(m);
            }
        }
    }
    info
}

/// Parses a raw captured reply (`250-...\r\n250 ...\r\n`).
pub(crate) fn parse_ehlo_raw(raw: &[u8]) -> EhloInfo {
    let text = String::from_utf8_lossy(raw);
    parse_ehlo(text.lines().map(|l| l.get(4..).unwrap_or("")))
}

/// Length of the first complete reply in `raw` (up to and including the final line's LF), if complete.
pub(crate) fn first_reply_len(raw: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|&b| b == b'\n')? + pos + 1;
        let line = &raw[pos..end];
        if line.len() < 4 || line[3] != b'-' {
            return Some(end);
        }
        pos = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_parsing() {
        let raw = b"250-mail.example.com Hello\r\n250-SIZE 35882577\r\n250-STARTTLS\r\n250-AUTH LOGIN plain XOAUTH2\r\n250-AUTH=LOGIN\r\n250 HELP\r\n";
        let info = parse_ehlo_raw(raw);
        assert!(info.starttls);
        assert_eq!(info.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
        // the greeting line (first) is not a keyword
        let info = parse_ehlo(["STARTTLS mail server", "8BITMIME"]);
        assert_eq!(info, EhloInfo::default());
        let info = parse_ehlo(["x", "AUTH=PLAIN LOGIN"]);
        assert_eq!(info.auth, ["PLAIN", "LOGIN"]);
    }

    #[test]
    fn first_reply_boundaries() {
        assert_eq!(first_reply_len(b"220 go ahead\r\n"), Some(14));
        assert_eq!(first_reply_len(b"220-a\r\n220 b\r\n"), Some(14));
        assert_eq!(first_reply_len(b"220 go\r\n250 injected\r\n"), Some(8));
        assert_eq!(first_reply_len(b"220-a\r\n"), None);
        assert_eq!(first_reply_len(b""), None);
    }
}
