//! `spec.from` / recipient parsing with `lettre::message::Mailbox::from_str` (what validation uses): never
//! panics, and a parsed mailbox prints back to text that parses to the same address and display name.
#![no_main]

use std::str::FromStr;

use lettre::message::Mailbox;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mailbox) = Mailbox::from_str(text) {
        let printed = mailbox.to_string();
        let again = Mailbox::from_str(&printed)
            .unwrap_or_else(|e| panic!("{text:?} parsed, but its printed form {printed:?} does not: {e}"));
        // The address must survive exactly. lettre trims whitespace at the edges of a quoted display name when
        // printing (`" x" <a@b>` prints as `"x" <a@b>`): cosmetic, so names are compared whitespace-normalised.
        assert_eq!(again.email, mailbox.email, "address changed in round trip through {printed:?}");
        // An empty name (`"" <a@b>`) prints as the bare address: also cosmetic.
        let norm = |n: &Option<String>| {
            n.as_deref().map(|n| n.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|n| !n.is_empty())
        };
        assert_eq!(norm(&again.name), norm(&mailbox.name), "name changed in round trip through {printed:?}");
    }
});
