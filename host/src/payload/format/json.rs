//! JSON strings written a word at a time: a body is mostly its event's message, and most of a
//! message needs no escaping, so eight bytes are checked at once and copied as they are.
//! The output is byte for byte what `serde_json` writes.

/// Appends `text` to `out` as a JSON string, quotes included.
pub(super) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `bytes[done..at]` needs no escaping and is not written yet.
    let (mut done, mut at) = (0, 0);
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            if !any_must_escape(word) {
                at += 8;
                continue;
            }
        }
        if must_escape(bytes[at]) {
            out.extend_from_slice(&bytes[done..at]);
            push_escape(out, bytes[at]);
            done = at + 1;
        }
        at += 1;
    }
    out.extend_from_slice(&bytes[done..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is a quote, a backslash or a control character.
/// Each test is exact for the word as a whole (SWAR: "determine if a word has a byte less
/// than n", with n <= 128, and "has a zero byte" after an XOR).
fn any_must_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_in = |w: u64| w.wrapping_sub(ONES) & !w;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    (control | quote | backslash) & HIGH != 0
}

/// Whether JSON must escape `byte`: a quote, a backslash or a control character.
fn must_escape(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | 0x00..0x20)
}

/// Appends JSON's escape of `byte`, one that [`must_escape`]: `\n` or `\u001f`.
fn push_escape(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let short = match byte {
        0x08 => b'b',
        0x0c => b'f',
        b'\n' => b'n',
        b'\r' => b'r',
        b'\t' => b't',
        b'"' | b'\\' => byte,
        _ => {
            let (high, low) = (HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]);
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_string_is_written_as_serde_json_writes_it() {
        let mut texts: Vec<String> = (0..=0x7f_u8).map(|b| char::from(b).to_string()).collect();
        texts.extend(
            [
                "",
                "é",
                "日本語",
                "🦀 crab",
                "\u{7f}\u{80}\u{ff}",
                "\u{2028}",
            ]
            .map(String::from),
        );
        // Every byte that needs escaping, at every offset of a word, amid text that does not.
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "\u{8}", "é\""] {
            for offset in 0..17 {
                let plain = "abcdéfgh".repeat(3);
                let (before, after) = plain.split_at(plain.char_indices().nth(offset).unwrap().0);
                texts.push(format!("{before}{special}{after}{special}"));
            }
        }
        for text in texts {
            assert_eq!(
                written(&text),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_word_must_be_escaped_exactly_when_one_of_its_bytes_must() {
        for byte in 0..=u8::MAX {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = byte;
                let expected = must_escape(byte);
                assert_eq!(
                    any_must_escape(u64::from_le_bytes(word)),
                    expected,
                    "{byte:#x} at {at}"
                );
                // Beside bytes with the high bit set, as in UTF-8 text.
                let mut word = [0xe9; 8];
                word[at] = byte;
                let expected = expected || must_escape(0xe9);
                assert_eq!(
                    any_must_escape(u64::from_le_bytes(word)),
                    expected,
                    "{byte:#x} at {at}"
                );
            }
        }
    }
}
