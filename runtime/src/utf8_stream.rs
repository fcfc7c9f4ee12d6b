//! Turns token pieces (arbitrary byte slices) into writable output: complete UTF-8 goes out at
//! once, an incomplete sequence at the end waits for the next piece, and bytes that can never
//! become valid UTF-8 are written raw rather than lost or replaced.

#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `piece`; returns the bytes ready to write now.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(piece);
        let mut out = Vec::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(_) => {
                    out.append(&mut self.pending);
                    return out;
                }
                Err(e) => {
                    let ok = e.valid_up_to();
                    match e.error_len() {
                        // Invalid bytes: they will never become valid; pass them through raw.
                        Some(bad) => {
                            out.extend(self.pending.drain(..ok + bad));
                        }
                        // An incomplete sequence at the end: keep it for the next piece.
                        None => {
                            out.extend(self.pending.drain(..ok));
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// The end of the stream: whatever is still pending, raw.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn a_split_multibyte_character_waits_for_its_second_half() {
        let mut s = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(s.push(&[b'a', e[0]]), b"a");
        assert_eq!(s.push(&e[1..]), e);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn invalid_bytes_are_written_raw_and_incomplete_tails_at_the_end_too() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[0xff, b'x']), vec![0xff, b'x']);
        assert_eq!(s.push(&[0xe2, 0x82]), Vec::<u8>::new());
        assert_eq!(s.finish(), vec![0xe2, 0x82]);
    }
}
