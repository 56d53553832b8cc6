//! The switch's portal protocol: requests and replies as 64-bit message
//! words (a Tern UTCB holds 500; the largest message, a receive reply with a
//! full frame, takes 3 + 190).
//!
//! | request | words | reply |
//! |---|---|---|
//! | attach | `[ATTACH]` | `[OK, port]` or `[NO_FREE_PORT]` |
//! | send | `[SEND, port, len, frame words...]` | `[OK]` (also when the frame was dropped) |
//! | receive | `[RECEIVE, port]` | `[OK, len, queued, frame words...]`; `len` 0: nothing queued |
//! | detach | `[DETACH, port]` | `[OK]` |
//!
//! A frame of `len` bytes travels as `len.div_ceil(8)` words, little-endian
//! (byte `i` is byte `i % 8` of word `i / 8`); the pad bytes are zero.
//! `queued` is how many frames still wait for the port after this one.
//! Any request may be answered `[BAD_REQUEST]` or `[NO_SUCH_PORT]`.
//!
//! Owns: the word layout on both sides. Must not touch: switching (see
//! [`crate::switch`]) and how words travel (portals, see [`crate::client`]).

/// Largest frame the switch carries: an Ethernet frame without FCS with a
/// 1500-byte payload and one VLAN tag. Guests use an MTU of 1500 (the
/// virtio-net device offers no offloads), so they send at most 1514 bytes.
pub const MAX_FRAME: usize = 1518;
/// Smallest frame: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Words of the largest frame.
pub const FRAME_WORDS: usize = MAX_FRAME.div_ceil(8);

pub const ATTACH: u64 = 1;
pub const SEND: u64 = 2;
pub const RECEIVE: u64 = 3;
pub const DETACH: u64 = 4;

/// Reply status words.
pub const OK: u64 = 0;
pub const BAD_REQUEST: u64 = 1;
pub const NO_SUCH_PORT: u64 = 2;
pub const NO_FREE_PORT: u64 = 3;

/// Words before the frame in a send request and in a receive reply.
pub const SEND_HEADER: usize = 3;
pub const RECEIVE_HEADER: usize = 3;
/// Words of the longest request and the longest reply.
pub const MAX_MESSAGE: usize = SEND_HEADER + FRAME_WORDS;

/// A request as the switch reads it; a send's frame stays in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Attach,
    Send {
        port: u64,
        len: usize,
        words: &'a [u64],
    },
    Receive {
        port: u64,
    },
    Detach {
        port: u64,
    },
}

impl<'a> Request<'a> {
    /// Reads a request; `None` for anything malformed (unknown operation,
    /// missing words, a frame length outside `MIN_FRAME..=MAX_FRAME` or not
    /// matching the words sent).
    pub fn parse(words: &'a [u64]) -> Option<Self> {
        match *words {
            [ATTACH] => Some(Request::Attach),
            [SEND, port, len, ref frame @ ..] => {
                let len = usize::try_from(len).ok()?;
                let ok = (MIN_FRAME..=MAX_FRAME).contains(&len) && frame.len() == len.div_ceil(8);
                ok.then_some(Request::Send {
                    port,
                    len,
                    words: frame,
                })
            }
            [RECEIVE, port] => Some(Request::Receive { port }),
            [DETACH, port] => Some(Request::Detach { port }),
            _ => None,
        }
    }
}

/// The words of a send request for `frame` (which the caller keeps within
/// `MIN_FRAME..=MAX_FRAME`).
pub fn send_request(port: u64, frame: &[u8]) -> Vec<u64> {
    let mut words = Vec::with_capacity(SEND_HEADER + frame.len().div_ceil(8));
    words.extend_from_slice(&[SEND, port, frame.len() as u64]);
    words.extend(frame.chunks(8).map(word_of));
    words
}

fn word_of(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..chunk.len()].copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

/// Byte `i` of a frame held in words.
pub fn byte(words: &[u64], i: usize) -> u8 {
    (words[i / 8] >> (8 * (i % 8))) as u8
}

/// Six bytes (a MAC address) from byte `at` of a frame held in words.
pub fn mac_at(words: &[u64], at: usize) -> [u8; 6] {
    std::array::from_fn(|i| byte(words, at + i))
}

/// What a receive reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A frame, and how many more wait.
    Frame {
        frame: Vec<u8>,
        queued: u64,
    },
    Nothing,
}

/// Reads a receive reply; `Err(status)` for a refusal or a malformed reply
/// (`BAD_REQUEST`).
pub fn parse_receive_reply(words: &[u64]) -> Result<Received, u64> {
    match *words {
        [OK, 0, _] => Ok(Received::Nothing),
        [OK, len, queued, ref frame @ ..] => {
            let len = usize::try_from(len).map_err(|_| BAD_REQUEST)?;
            if !(MIN_FRAME..=MAX_FRAME).contains(&len) || frame.len() != len.div_ceil(8) {
                return Err(BAD_REQUEST);
            }
            let mut bytes: Vec<u8> = frame.iter().flat_map(|w| w.to_le_bytes()).collect();
            bytes.truncate(len);
            Ok(Received::Frame {
                frame: bytes,
                queued,
            })
        }
        [OK, ..] | [] => Err(BAD_REQUEST),
        [status, ..] => Err(status),
    }
}

/// Reads a reply that carries only a status (send, detach) or a status and
/// one value (attach).
pub fn parse_status(words: &[u64]) -> Result<Option<u64>, u64> {
    match *words {
        [OK] => Ok(None),
        [OK, value] => Ok(Some(value)),
        [OK, ..] | [] => Err(BAD_REQUEST),
        [status, ..] => Err(status),
    }
}

/// What a status word means, for error messages.
pub fn status_name(status: u64) -> &'static str {
    match status {
        OK => "ok",
        BAD_REQUEST => "malformed request or reply",
        NO_SUCH_PORT => "no such port (detached, or the switch restarted)",
        NO_FREE_PORT => "every port of the switch is taken (start it with more: --ports N)",
        _ => "unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn a_send_request_round_trips_through_parse() {
        for len in [MIN_FRAME, 15, 16, 60, 1513, 1514, MAX_FRAME] {
            let f = frame(len);
            let words = send_request(9, &f);
            assert_eq!(words.len(), SEND_HEADER + len.div_ceil(8));
            assert!(words.len() <= MAX_MESSAGE);
            let Some(Request::Send {
                port,
                len: l,
                words: w,
            }) = Request::parse(&words)
            else {
                panic!("{len}: not a send");
            };
            assert_eq!((port, l), (9, len));
            let back: Vec<u8> = (0..len).map(|i| byte(w, i)).collect();
            assert_eq!(back, f, "{len}");
            // pad bytes are zero
            if len % 8 != 0 {
                assert_eq!(w[w.len() - 1] >> (8 * (len % 8)), 0, "{len}");
            }
        }
    }

    #[test]
    fn macs_are_read_across_word_boundaries() {
        let mut f = frame(60);
        f[..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        let words = send_request(0, &f);
        assert_eq!(mac_at(&words[SEND_HEADER..], 0), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            mac_at(&words[SEND_HEADER..], 6),
            [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = send_request(1, &frame(20));
        let mut short = good.clone();
        short.pop();
        let mut long = good.clone();
        long.push(0);
        let mut wrong_len = good.clone();
        wrong_len[2] = 60;
        let huge = [SEND, 1, u64::MAX, 0];
        let runt = send_request(1, &frame(13));
        let too_big = send_request(1, &frame(MAX_FRAME + 1));
        for bad in [
            &[][..],
            &[0],
            &[ATTACH, 1],
            &[RECEIVE],
            &[RECEIVE, 1, 2],
            &[DETACH],
            &[99, 1],
            &short,
            &long,
            &wrong_len,
            &huge,
            &runt,
            &too_big,
        ] {
            assert_eq!(Request::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Request::parse(&[ATTACH]), Some(Request::Attach));
        assert_eq!(
            Request::parse(&[RECEIVE, 7]),
            Some(Request::Receive { port: 7 })
        );
        assert_eq!(
            Request::parse(&[DETACH, 7]),
            Some(Request::Detach { port: 7 })
        );
    }

    #[test]
    fn receive_replies_are_checked() {
        let f = frame(61);
        let mut reply = vec![OK, 61, 2];
        reply.extend_from_slice(&send_request(0, &f)[SEND_HEADER..]);
        assert_eq!(
            parse_receive_reply(&reply),
            Ok(Received::Frame {
                frame: f,
                queued: 2
            })
        );
        assert_eq!(parse_receive_reply(&[OK, 0, 0]), Ok(Received::Nothing));
        assert_eq!(parse_receive_reply(&[NO_SUCH_PORT]), Err(NO_SUCH_PORT));
        reply.pop();
        assert_eq!(parse_receive_reply(&reply), Err(BAD_REQUEST));
        assert_eq!(parse_receive_reply(&[OK, 5000, 0]), Err(BAD_REQUEST));
        assert_eq!(parse_receive_reply(&[]), Err(BAD_REQUEST));
    }

    #[test]
    fn status_replies() {
        assert_eq!(parse_status(&[OK]), Ok(None));
        assert_eq!(parse_status(&[OK, 0x10003]), Ok(Some(0x10003)));
        assert_eq!(parse_status(&[NO_FREE_PORT]), Err(NO_FREE_PORT));
        assert_eq!(parse_status(&[OK, 1, 2]), Err(BAD_REQUEST));
        assert!(status_name(NO_FREE_PORT).contains("--ports"));
    }
}
