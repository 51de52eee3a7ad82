//! The card's JSON text, written piece by piece into its body.
//!
//! serde_json's writer looks at every byte of every key and string for characters to escape,
//! one at a time; in WebAssembly that was the largest part of the plugin's work. Here the keys
//! and punctuation are written as the literal text they are, and a string is checked eight
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
/// a control character (below 0x20).
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether a byte of `word` is below `n` (n <= 0x80); exact for the word as a whole.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let has = |word: u64, byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    let mut words = bytes.chunks_exact(8);
    let clean = words.by_ref().all(|chunk| {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        !below(word, 0x20) && !has(word, b'"') && !has(word, b'\\')
    });
    clean
        && words
            .remainder()
            .iter()
            .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
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
            for at in 0..=17 {
                let mut text: String = "abcdefghijklmnopq".chars().take(at).collect();
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
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = byte;
                assert_eq!(plain(&word), !escaped, "byte {byte:#x} at {at}");
            }
        }
    }
}
