//! `net-switch-peer SWITCH ping|echo ME PEER COUNT`: a test program for the
//! switch on Tern. Its MAC address is 02:00:00:00:00:ME, its peer's
//! 02:00:00:00:00:PEER (ME, PEER: 1..=255).
//!
//! - `ping` sends COUNT frames of growing sizes (60 to 1514 bytes, EtherType
//!   0x88b5, a sequence number and a pattern), one at a time, each again
//!   every 0.5 s (a frame sent before the peer attached is flooded to no
//!   one) for up to 5 s until it comes back, checks it byte for byte and
//!   prints the round-trip times; exit code 0 when every frame came back
//!   intact.
//! - `echo` sends every frame for its address back to its source, until it
//!   has echoed COUNT; exit code 0 then.
//!
//! Both receive with the VMM backend's receive loop on a thread of their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use net_switch::client::receive_loop;
use net_switch::{SwitchClient, TernTransport};

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
const WAIT: Duration = Duration::from_secs(5);
/// A frame lost (e.g. sent before the peer had its port) is sent again after this.
const RESEND: Duration = Duration::from_millis(500);

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

/// Frame `seq` from `me` to `peer`.
fn test_frame(me: u8, peer: u8, seq: u32) -> Vec<u8> {
    let len = 60 + (seq as usize * 97) % (1514 - 60 + 1);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&mac(peer));
    f.extend_from_slice(&mac(me));
    f.extend_from_slice(&ETHERTYPE);
    f.extend_from_slice(&seq.to_le_bytes());
    f.extend((f.len()..len).map(|i| (i as u32 ^ seq) as u8));
    f
}

fn fail(message: &str) -> ! {
    println!("net-switch-peer: FAIL: {message}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [switch, mode, me, peer, count] = &args[..] else {
        println!("usage: net-switch-peer SWITCH ping|echo ME PEER COUNT");
        std::process::exit(2);
    };
    let number = |s: &str| {
        s.parse::<u32>()
            .unwrap_or_else(|_| fail(&format!("{s:?} is not a number")))
    };
    let (me, peer, count) = (number(me) as u8, number(peer) as u8, number(count));
    let transport = TernTransport::connect(switch, Duration::from_secs(20))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let client = Arc::new(SwitchClient::attach(transport).unwrap_or_else(|e| fail(&e.to_string())));
    println!(
        "net-switch-peer {me}: port {:#x} on switch {switch}",
        client.port()
    );

    let (frames, incoming) = mpsc::channel();
    let running = Arc::new(AtomicBool::new(true));
    let receiver = {
        let (client, running) = (client.clone(), running.clone());
        std::thread::spawn(move || {
            receive_loop(&client, &running, |f| {
                let _ = frames.send(f);
            })
        })
    };
    let for_me = |f: &[u8]| f.len() >= 18 && f[0..6] == mac(me) && f[12..14] == ETHERTYPE;

    match mode.as_str() {
        "ping" => {
            let mut rtts = Vec::new();
            let mut resent = 0;
            for seq in 0..count {
                let sent = test_frame(me, peer, seq);
                let mut expected = sent.clone();
                expected[0..6].copy_from_slice(&mac(me));
                expected[6..12].copy_from_slice(&mac(peer));
                let first = Instant::now();
                let (back, rtt) = 'resend: loop {
                    if first.elapsed() > WAIT {
                        fail(&format!("frame {seq} did not come back within {WAIT:?}"));
                    }
                    let start = Instant::now();
                    client.send(&sent).unwrap_or_else(|e| fail(&e.to_string()));
                    while let Ok(f) = incoming.recv_timeout(RESEND.saturating_sub(start.elapsed()))
                    {
                        // an echo of an earlier copy of an earlier frame is stale
                        if for_me(&f) && f[14..18] == seq.to_le_bytes() {
                            break 'resend (f, start.elapsed());
                        }
                    }
                    resent += 1;
                };
                if back != expected {
                    fail(&format!(
                        "frame {seq} ({} bytes) came back changed ({} bytes)",
                        sent.len(),
                        back.len()
                    ));
                }
                rtts.push(rtt);
            }
            rtts.sort();
            let us = |d: Duration| d.as_micros();
            let mean = rtts.iter().sum::<Duration>() / count.max(1);
            println!(
                "net-switch-peer {me}: {count} of {count} frames (60..1514 bytes) echoed intact ({resent} sent again); round trip min {} us, median {} us, mean {} us, max {} us",
                us(rtts[0]),
                us(rtts[rtts.len() / 2]),
                us(mean),
                us(rtts[rtts.len() - 1])
            );
        }
        "echo" => {
            let mut echoed = 0;
            while echoed < count {
                let mut f = incoming
                    .recv_timeout(Duration::from_secs(60))
                    .unwrap_or_else(|_| fail(&format!("only {echoed} of {count} frames arrived")));
                if !for_me(&f) {
                    continue;
                }
                let src: [u8; 6] = f[6..12].try_into().expect("6 bytes");
                f.copy_within(0..6, 6);
                f[0..6].copy_from_slice(&src);
                client.send(&f).unwrap_or_else(|e| fail(&e.to_string()));
                echoed += 1;
            }
            println!("net-switch-peer {me}: echoed {echoed} frames");
        }
        other => fail(&format!("unknown mode {other:?} (ping or echo)")),
    }
    running.store(false, Ordering::Release);
    if let Ok(Err(e)) = receiver.join() {
        fail(&e.to_string());
    }
}
