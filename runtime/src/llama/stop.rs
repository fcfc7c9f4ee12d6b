//! Text out of token pieces: [`TextStream`] turns each token's bytes into text that is always
//! valid UTF-8 (a character split across tokens waits for its other half) and never shows a stop
//! string: text that may be the start of one is held back until it is known not to be, also
//! when the stop string spans several tokens, and the stop string itself is never emitted.

use crate::utf8_stream::Utf8Stream;

/// Finds the first stop string in a stream of text pieces (already valid UTF-8).
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

/// What one piece gave: text to hand out now, and whether a stop string was reached (then the
/// text is everything before it, and the stream is over).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextPiece {
    pub text: String,
    pub stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> StopMatcher {
        StopMatcher {
            stops: stops
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string was found (everything after it is ignored).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Text held back because it may begin a stop string.
    pub fn held(&self) -> &str {
        &self.held
    }

    /// Adds `text`; returns what can be handed out now.
    pub fn push(&mut self, text: &str) -> TextPiece {
        if self.stopped {
            return TextPiece {
                text: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        // The earliest stop string wins (at the same place, the longest).
        let first = self
            .stops
            .iter()
            .filter_map(|s| {
                self.held
                    .find(s.as_str())
                    .map(|i| (i, std::cmp::Reverse(s.len())))
            })
            .min();
        if let Some((i, _)) = first {
            self.stopped = true;
            let mut text = std::mem::take(&mut self.held);
            text.truncate(i);
            return TextPiece {
                text,
                stopped: true,
            };
        }
        // Keep the longest tail that is a proper prefix of some stop string.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        TextPiece {
            text: std::mem::replace(&mut self.held, rest),
            stopped: false,
        }
    }

    /// The end of the text (no stop string came): what was held back.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

/// Token bytes in, text pieces out: [`Utf8Stream`] then [`StopMatcher`]. Every piece is valid
/// UTF-8; bytes that can never be (a model emitting broken sequences) become U+FFFD.
#[derive(Default)]
pub struct TextStream {
    utf8: Utf8Stream,
    stop: StopMatcher,
}

impl TextStream {
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> TextStream {
        TextStream {
            utf8: Utf8Stream::default(),
            stop: StopMatcher::new(stops),
        }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> TextPiece {
        let ready = self.utf8.push(bytes);
        self.stop.push(&String::from_utf8_lossy(&ready))
    }

    pub fn stopped(&self) -> bool {
        self.stop.stopped()
    }

    /// The end of the stream: incomplete UTF-8 (as U+FFFD) and held-back text, unless a stop
    /// string was reached (then nothing).
    pub fn finish(&mut self) -> String {
        let tail = self.utf8.finish();
        if self.stop.stopped() {
            return String::new();
        }
        let mut piece = self.stop.push(&String::from_utf8_lossy(&tail)).text;
        piece.push_str(&self.stop.finish());
        piece
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
        out.push(s.finish());
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
        assert_eq!(s.finish(), "S");
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
    fn invalid_bytes_become_replacement_characters() {
        let (out, _) = run(&[], &[&[0xff, b'x'], &[0xe2, 0x82]]);
        assert_eq!(out.concat(), "\u{fffd}x\u{fffd}");
    }

    #[test]
    fn empty_stop_strings_are_ignored_and_nothing_comes_after_a_stop() {
        let mut s = TextStream::new(["", "END"]);
        assert_eq!(s.push(b"abc").text, "abc");
        assert!(s.push(b"END").stopped);
        assert_eq!(s.push(b"more").text, "");
        assert_eq!(s.finish(), "");
    }
}
