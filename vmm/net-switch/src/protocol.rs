//! The switch's portal protocol: requests and replies as 64-bit message
//! words (a Tern UTCB holds 500; the largest message, a receive reply with a
//! full frame, takes 3 + 190).
//!
//! A client attaches through the switch's service portal (`NAME-cpuC`) and
//! gets its port as capabilities: the reply delegates the port's semaphore
//! and, for each CPU the client asked for, a portal of the port. Everything
//! else goes through the port's portal, whose badge (set by the switch,
//! delivered by the kernel) names the port: requests carry no port id, so
//! a client cannot act for another port.
//!
//! | request | through | words | reply |
//! |---|---|---|---|
//! | attach | service portal | `[ATTACH, offset, cpus]` | `[OK, port]` + capabilities, or `[NO_FREE_PORT]` |
//! | send | port portal | `[SEND, len, frame words...]` | `[OK]` (also when the frame was dropped) |
//! | receive | port portal | `[RECEIVE]` | `[OK, len, queued, frame words...]`; `len` 0: nothing queued |
//! | detach | port portal | `[DETACH]` | `[OK]`; the port's capabilities are revoked |
//!
//! - attach: `offset` is where in the client's receive window the
//!   capabilities go (it reserves `1 + cpus.count_ones()` slots): the port's
//!   semaphore at `offset`, then the port's portal for each CPU of the mask
//!   `cpus` (bit C: CPU C; at most [`MAX_ATTACH_CPUS`], each one the switch
//!   serves), lowest CPU first. `port` is the port's number, for messages.
//! - The switch ups the port's semaphore when a frame is queued for the
//!   port while its queue was empty. A receiver takes frames until a reply
//!   says `queued` 0 (or `len` 0) and then downs the semaphore: a frame
//!   queued after that reply ups it, so no wake-up is lost (a stale up only
//!   makes one receive come back empty).
//!
//! A frame of `len` bytes travels as `len.div_ceil(8)` words, little-endian
//! (byte `i` is byte `i % 8` of word `i / 8`); the pad bytes are zero.
//! `queued` is how many frames still wait for the port after this one.
//! Any request may be answered `[BAD_REQUEST]`; port requests through the
//! service portal, or through a port's portal after its detach, are answered
//! `[NO_SUCH_PORT]`.
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
pub const SEND_HEADER: usize = 2;
pub const RECEIVE_HEADER: usize = 3;
/// Words of the longest request and the longest reply.
pub const MAX_MESSAGE: usize = RECEIVE_HEADER + FRAME_WORDS;
/// Most CPUs one attach asks portals for (a reply delegates at most 16
/// capabilities: the semaphore and the portals).
pub const MAX_ATTACH_CPUS: u32 = 15;

/// A request as the switch reads it; a send's frame stays in words. Which
/// port a port request is for is not in the words: the portal says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Attach {
        /// Receive-window offset of the capabilities.
        offset: u64,
        /// CPUs the client wants the port's portal on (bit C: CPU C).
        cpus: u64,
    },
    Send {
        len: usize,
        words: &'a [u64],
    },
    Receive,
    Detach,
}

impl<'a> Request<'a> {
    /// Reads a request; `None` for anything malformed (unknown operation,
    /// missing words, no CPUs or too many in an attach, a frame length
    /// outside `MIN_FRAME..=MAX_FRAME` or not matching the words sent).
    pub fn parse(words: &'a [u64]) -> Option<Self> {
        match *words {
            [ATTACH, offset, cpus] => ((1..=MAX_ATTACH_CPUS).contains(&cpus.count_ones()))
                .then_some(Request::Attach { offset, cpus }),
            [SEND, len, ref frame @ ..] => {
                let len = usize::try_from(len).ok()?;
                let ok = (MIN_FRAME..=MAX_FRAME).contains(&len) && frame.len() == len.div_ceil(8);
                ok.then_some(Request::Send { len, words: frame })
            }
            [RECEIVE] => Some(Request::Receive),
            [DETACH] => Some(Request::Detach),
            _ => None,
        }
    }
}

/// The words of an attach request.
pub fn attach_request(offset: u64, cpus: u64) -> [u64; 3] {
    [ATTACH, offset, cpus]
}

/// The words of a send request for `frame` (which the caller keeps within
/// `MIN_FRAME..=MAX_FRAME`).
pub fn send_request(frame: &[u8]) -> Vec<u64> {
    let mut words = Vec::with_capacity(SEND_HEADER + frame.len().div_ceil(8));
    words.extend_from_slice(&[SEND, frame.len() as u64]);
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
        NO_SUCH_PORT => {
            "no such port (detached, or a port request through the switch's service portal)"
        }
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
            let words = send_request(&f);
            assert_eq!(words.len(), SEND_HEADER + len.div_ceil(8));
            assert!(words.len() <= MAX_MESSAGE);
            let Some(Request::Send { len: l, words: w }) = Request::parse(&words) else {
                panic!("{len}: not a send");
            };
            assert_eq!(l, len);
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
        let words = send_request(&f);
        assert_eq!(mac_at(&words[SEND_HEADER..], 0), [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            mac_at(&words[SEND_HEADER..], 6),
            [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = send_request(&frame(20));
        let mut short = good.clone();
        short.pop();
        let mut long = good.clone();
        long.push(0);
        let mut wrong_len = good.clone();
        wrong_len[1] = 60;
        let huge = [SEND, u64::MAX, 0];
        let runt = send_request(&frame(13));
        let too_big = send_request(&frame(MAX_FRAME + 1));
        for bad in [
            &[][..],
            &[0],
            &[ATTACH],
            &[ATTACH, 0],
            &[ATTACH, 0, 0],
            &[ATTACH, 0, (1 << (MAX_ATTACH_CPUS + 1)) - 1],
            &[ATTACH, 0, 1, 2],
            &[RECEIVE, 1],
            &[DETACH, 1],
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
        assert_eq!(
            Request::parse(&attach_request(5, 0b110)),
            Some(Request::Attach {
                offset: 5,
                cpus: 0b110
            })
        );
        assert_eq!(
            Request::parse(&attach_request(0, u64::MAX >> (64 - MAX_ATTACH_CPUS))),
            Some(Request::Attach {
                offset: 0,
                cpus: u64::MAX >> (64 - MAX_ATTACH_CPUS)
            })
        );
        assert_eq!(Request::parse(&[RECEIVE]), Some(Request::Receive));
        assert_eq!(Request::parse(&[DETACH]), Some(Request::Detach));
    }

    #[test]
    fn receive_replies_are_checked() {
        let f = frame(61);
        let mut reply = vec![OK, 61, 2];
        reply.extend_from_slice(&send_request(&f)[SEND_HEADER..]);
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
