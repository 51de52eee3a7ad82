//! The card's JSON text, written piece by piece into its body.
//!
//! serde_json's writer looks at every byte of every key and string for characters to escape,
//! one at a time; in WebAssembly that was the largest part of the plugin's work. Here the keys
//! and punctuation are written as the literal text they are, and a string is checked sixteen
//! bytes at a time and copied whole when nothing in it needs escaping; a string that does is
//! written by serde_json, so every string comes out as serde_json writes it.

use kfp_event_router_sdk::serde_json;

/// A JSON text being written.
pub(crate) struct Json(Vec<u8>);

impl Json {
    /// An empty text with room for `bytes`.
    pub(crate) fn with_capacity(bytes: usize) -> Self {
        Self(Vec::with_capacity(bytes))
    }

    /// Appends `text`, JSON as it stands: punctuation and keys.
    pub(crate) fn raw(&mut self, text: &str) -> &mut Self {
        self.0.extend_from_slice(text.as_bytes());
        self
    }

    /// Appends `value` as a JSON string.
    pub(crate) fn string(&mut self, value: &str) -> &mut Self {
        if plain(value.as_bytes()) {
            self.0.reserve(value.len() + 2);
            self.0.push(b'"');
            self.0.extend_from_slice(value.as_bytes());
            self.0.push(b'"');
        } else {
            serde_json::to_writer(&mut self.0, value).expect("writing to a Vec cannot fail");
        }
        self
    }

    /// Appends `items` as a JSON array, each written by `write`.
    pub(crate) fn array<T>(
        &mut self,
        items: &[T],
        mut write: impl FnMut(&mut Self, &T),
    ) -> &mut Self {
        self.raw("[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            write(self, item);
        }
        self.raw("]")
    }

    /// Appends `true` or `false`.
    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.raw(if value { "true" } else { "false" })
    }

    /// The text written.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Whether no byte of `bytes` needs escaping in a JSON string: none is a quote, a backslash or
/// a control character (below 0x20). Sixteen bytes a step: each step costs a check for the
/// plugin's time limit in the compiled code, besides its own few instructions.
fn plain(bytes: &[u8]) -> bool {
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
    let mut pairs = bytes.chunks_exact(16);
    let clean = pairs
        .by_ref()
        .all(|pair| special(word(&pair[..8])) | special(word(&pair[8..])) == 0);
    let mut words = pairs.remainder().chunks_exact(8);
    clean
        && words.by_ref().all(|chunk| special(word(chunk)) == 0)
        && words
            .remainder()
            .iter()
            .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Non-zero exactly when a byte of `word` is below 0x20, a quote or a backslash.
///
/// `(w - n) & !w & 0x80`, byte-wise, is non-zero exactly when some byte of `w` is below `n`
/// (for `n <= 0x80`; a borrow only reaches past a byte that is below `n` itself). A byte equals
/// `b` when it is below 1 after xor with `b`, and xor with a byte below 0x80 keeps the high bit,
/// so the three tests share their `& !w & 0x80`.
fn special(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let control = word.wrapping_sub(ONES * 0x20);
    let quote = (word ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (word ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    (control | quote | backslash) & !word & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let long = "Failed node wf.train: OOMKilled ".repeat(4);
        let mut texts = vec![
            String::new(),
            "short".to_owned(),
            long.clone(),
            "é ✅ \u{7f} </script> ÿ".to_owned(),
        ];
        // Each character that needs escaping, at each position of a word and past the last.
        for special in ['"', '\\', '\n', '\t', '\u{0}', '\u{1}', '\u{1f}'] {
            for at in 0..=40 {
                let mut text: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCDE"
                    .chars()
                    .take(at)
                    .collect();
                text.push(special);
                text.push_str("xyz");
                texts.push(text);
            }
        }
        for text in texts {
            let mut json = Json::with_capacity(0);
            json.string(&text);
            assert_eq!(
                String::from_utf8(json.into_bytes()).unwrap(),
                serde_json::to_string(&text).unwrap(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_byte_is_plain_exactly_when_serde_json_leaves_it_alone() {
        for byte in 0..=u8::MAX {
            let escaped = byte < 0x20 || byte == b'"' || byte == b'\\';
            for at in 0..24 {
                let mut words = *b"abcdefghijklmnopqrstuvwx";
                words[at] = byte;
                assert_eq!(plain(&words), !escaped, "byte {byte:#x} at {at}");
            }
        }
    }
}
