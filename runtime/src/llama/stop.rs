//! Text out of token pieces: [`TextStream`] turns each token's bytes into text that is always
//! valid UTF-8 (a character split across tokens waits for its other half) and never shows a stop
//! string: text that may be the start of one is held back until it is known not to be, also
//! when the stop string spans several tokens, and the stop string itself is never emitted.

use crate::utf8_stream::Utf8Stream;

/// Finds the first stop string in a stream of bytes. Matching is on bytes, so a stop string
/// is found also when a token ends inside one of its characters.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<Vec<u8>>,
    held: Vec<u8>,
    stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> StopMatcher {
        StopMatcher {
            stops: stops
                .into_iter()
                .map(|s| s.into().into_bytes())
                .filter(|s| !s.is_empty())
                .collect(),
            held: Vec::new(),
            stopped: false,
        }
    }

    /// Whether a stop string was found (everything after it is ignored).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes held back because they may begin a stop string.
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Adds `bytes`; returns what can be handed out now, and whether a stop string was reached
    /// (then the bytes are everything before it).
    pub fn push(&mut self, bytes: &[u8]) -> (Vec<u8>, bool) {
        if self.stopped {
            return (Vec::new(), true);
        }
        self.held.extend_from_slice(bytes);
        // The earliest stop string wins.
        let first = self.stops.iter().filter_map(|s| find(&self.held, s)).min();
        if let Some(i) = first {
            self.stopped = true;
            let mut out = std::mem::take(&mut self.held);
            out.truncate(i);
            return (out, true);
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep_from = (0..self.held.len())
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// The end of the text (no stop string came): what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        if self.stopped {
            return Vec::new();
        }
        std::mem::take(&mut self.held)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What one token gave: text to hand out now (valid UTF-8; may be empty while text is held
/// back), the same as raw bytes, and whether a stop string was reached (then the text is
/// everything before it, and the stream is over).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextPiece {
    /// Always valid UTF-8: bytes that can never be become U+FFFD.
    pub text: String,
    /// The same text with such bytes as they came (what `tunellama generate` writes).
    pub bytes: Vec<u8>,
    pub stopped: bool,
}

impl TextPiece {
    fn of(bytes: Vec<u8>, stopped: bool) -> TextPiece {
        TextPiece {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
            stopped,
        }
    }
}

/// Token bytes in, text pieces out: [`StopMatcher`] then [`Utf8Stream`]. Every piece's `text`
/// is valid UTF-8 (a character split across tokens comes out whole, with the token that
/// completes it); bytes that can never be valid (a model emitting broken sequences) become
/// U+FFFD in `text` and stay raw in `bytes`.
#[derive(Default)]
pub struct TextStream {
    stop: StopMatcher,
    utf8: Utf8Stream,
}

impl TextStream {
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> TextStream {
        TextStream {
            stop: StopMatcher::new(stops),
            utf8: Utf8Stream::default(),
        }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> TextPiece {
        let (released, stopped) = self.stop.push(bytes);
        let mut out = self.utf8.push(&released);
        if stopped {
            // Text before a stop string is complete: an unfinished character goes out too.
            out.extend(self.utf8.finish());
        }
        TextPiece::of(out, stopped)
    }

    pub fn stopped(&self) -> bool {
        self.stop.stopped()
    }

    /// The end of the stream: held-back text and an unfinished UTF-8 sequence (U+FFFD in
    /// `text`); nothing after a stop string.
    pub fn finish(&mut self) -> TextPiece {
        if self.stop.stopped() {
            return TextPiece::default();
        }
        let mut out = self.utf8.push(&self.stop.finish());
        out.extend(self.utf8.finish());
        TextPiece::of(out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, bool) {
        let mut s = TextStream::new(stops.iter().copied());
        let mut out = Vec::new();
        for p in pieces {
            let piece = s.push(p);
            out.push(piece.text);
            if piece.stopped {
                return (out, true);
            }
        }
        out.push(s.finish().text);
        (out, false)
    }

    #[test]
    fn a_stop_string_spanning_tokens_is_never_emitted() {
        let (out, stopped) = run(&["</end>"], &[b"Hello </", b"en", b"d> more"]);
        assert!(stopped);
        assert_eq!(out.concat(), "Hello ");
        // The possible start was held back, not emitted and then retracted.
        assert_eq!(out, vec!["Hello ", "", ""]);
    }

    #[test]
    fn a_partial_prefix_is_held_back_and_released_when_it_does_not_continue() {
        let mut s = TextStream::new(["STOP"]);
        assert_eq!(s.push(b"abc ST").text, "abc ");
        assert_eq!(s.push(b"O").text, "");
        // "STOx" cannot start "STOP" any more, but "x" alone does not either: all released.
        assert_eq!(s.push(b"x").text, "STOx");
        assert_eq!(s.push(b" S").text, " ");
        assert_eq!(s.finish().text, "S");
    }

    #[test]
    fn text_before_a_stop_in_the_same_token_is_emitted() {
        let (out, stopped) = run(&["\n\n"], &[b"one", b" two\n\nthree"]);
        assert!(stopped);
        assert_eq!(out.concat(), "one two");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (out, stopped) = run(&["zz", "b"], &[b"aab", b"zz"]);
        assert!(stopped);
        assert_eq!(out.concat(), "aa");
        // Overlapping candidates: "xyz" is a prefix-hold for "xyz!" but "yz" stops first.
        let (out, stopped) = run(&["xyz!", "yz"], &[b"x", b"y", b"z"]);
        assert!(stopped);
        assert_eq!(out.concat(), "x");
    }

    #[test]
    fn multibyte_utf8_split_across_tokens_comes_out_whole() {
        let e = "é".as_bytes();
        let (out, _) = run(&[], &[&[b'a', e[0]], &e[1..], b"!"]);
        assert_eq!(out, vec!["a", "é", "!", ""]);
        for piece in &out {
            assert!(std::str::from_utf8(piece.as_bytes()).is_ok());
        }
    }

    #[test]
    fn a_multibyte_stop_string_split_inside_a_character_still_stops() {
        // "→" is E2 86 92; the stop string is "→x", its bytes split over three tokens.
        let arrow = "→".as_bytes();
        let (out, stopped) = run(&["→x"], &[b"a", &arrow[..1], &arrow[1..], b"xtail"]);
        assert!(stopped);
        assert_eq!(out.concat(), "a");
        // A held-back multibyte prefix that does not continue is released whole.
        let (out, stopped) = run(&["→x"], &[b"a", &arrow[..2], &arrow[2..], b"y"]);
        assert!(!stopped);
        assert_eq!(out.concat(), "a→y");
        assert!(out
            .iter()
            .all(|p| std::str::from_utf8(p.as_bytes()).is_ok()));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters_in_text_and_stay_raw_in_bytes() {
        let (out, _) = run(&[], &[&[0xff, b'x'], &[0xe2, 0x82]]);
        assert_eq!(out.concat(), "\u{fffd}x\u{fffd}");
        let mut s = TextStream::new(["zz"]);
        assert_eq!(s.push(&[0xff, b'x']).bytes, vec![0xff, b'x']);
        assert_eq!(s.push(&[0xe2, 0x82]).bytes, Vec::<u8>::new());
        assert_eq!(s.finish().bytes, vec![0xe2, 0x82]);
    }

    #[test]
    fn the_stop_matcher_alone_works_on_bytes() {
        let mut m = StopMatcher::new(["ab"]);
        assert_eq!(m.push(b"xa"), (b"x".to_vec(), false));
        assert_eq!(m.held(), b"a");
        assert_eq!(m.push(b"bc"), (Vec::new(), true));
        assert!(m.stopped());
        assert_eq!(m.finish(), Vec::<u8>::new());
    }

    #[test]
    fn empty_stop_strings_are_ignored_and_nothing_comes_after_a_stop() {
        let mut s = TextStream::new(["", "END"]);
        assert_eq!(s.push(b"abc").text, "abc");
        assert!(s.push(b"END").stopped);
        assert_eq!(s.push(b"more").text, "");
        assert_eq!(s.finish().text, "");
    }
}
