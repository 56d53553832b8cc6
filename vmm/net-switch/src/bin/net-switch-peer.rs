//! `net-switch-peer SWITCH ping|echo|intruder ME PEER COUNT`: a test program for the
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
//! Both receive with the VMM backend's receive loop on a thread of their
//! own, which waits on the port's semaphore. A third mode checks that a
//! port is a capability:
//!
//! - `intruder` attaches a port of its own and then tries to use ports it
//!   was not given: port requests (with the port numbers of the old
//!   protocol) through the switch's service portal, and its own portal
//!   after its detach; each must be refused (exit code 0 then).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use net_switch::client::{receive_loop, service_name, PortLink};
use net_switch::{protocol, SwitchClient, SwitchError, TernPort};

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

/// The `intruder` mode (see the module documentation).
fn intrude(switch: &str, me: u8) {
    let who = format!("net-switch-peer {me}: intruder");
    let service = tern::Portal::lookup(&service_name(switch, tern::current_cpu()))
        .unwrap_or_else(|e| fail(&format!("{who}: no service portal: {e}")));
    let frame = test_frame(me, 1, 0);
    let mut old_send = vec![protocol::SEND, 0];
    old_send.extend_from_slice(&protocol::send_request(&frame)[1..]);
    let attempts: [(&str, Vec<u64>, u64); 5] = [
        ("receive", vec![protocol::RECEIVE], protocol::NO_SUCH_PORT),
        (
            "send",
            protocol::send_request(&frame),
            protocol::NO_SUCH_PORT,
        ),
        ("detach", vec![protocol::DETACH], protocol::NO_SUCH_PORT),
        (
            "receive for port 0",
            vec![protocol::RECEIVE, 0],
            protocol::BAD_REQUEST,
        ),
        ("send as port 0", old_send, protocol::BAD_REQUEST),
    ];
    for (what, request, status) in attempts {
        match service.call(&request) {
            Ok(reply) if reply == [status] => {}
            other => fail(&format!(
                "{who}: {what} through the service portal answered {other:?}, not [{status}]"
            )),
        }
    }
    println!("{who}: port requests through the service portal are refused");
    let port = TernPort::attach(switch, Duration::from_secs(20))
        .unwrap_or_else(|e| fail(&format!("{who}: {e}")));
    port.call(&[protocol::RECEIVE])
        .unwrap_or_else(|e| fail(&format!("{who}: its own port: {e}")));
    port.call(&[protocol::DETACH])
        .unwrap_or_else(|e| fail(&format!("{who}: detach: {e}")));
    // the switch took the port's portals and semaphore back
    const REVOKED: tern::Error = tern::Error::Kernel(tern::Status::BadCapability);
    let revoked = |r: Result<(), SwitchError>| {
        matches!(
            r,
            Err(SwitchError::Call {
                source: REVOKED,
                ..
            } | SwitchError::Wait {
                source: REVOKED,
                ..
            })
        )
    };
    if !revoked(port.call(&[protocol::RECEIVE]).map(|_| ())) || !revoked(port.wait()) {
        fail(&format!(
            "{who}: port {} still usable after its detach",
            port.port()
        ));
    }
    println!("{who}: port capabilities are gone after the detach");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [switch, mode, me, peer, count] = &args[..] else {
        println!("usage: net-switch-peer SWITCH ping|echo|intruder ME PEER COUNT");
        std::process::exit(2);
    };
    let number = |s: &str| {
        s.parse::<u32>()
            .unwrap_or_else(|_| fail(&format!("{s:?} is not a number")))
    };
    let (me, peer, count) = (number(me) as u8, number(peer) as u8, number(count));
    if mode == "intruder" {
        intrude(switch, me);
        return;
    }
    let client = Arc::new(
        SwitchClient::attach_tern(switch, Duration::from_secs(20))
            .unwrap_or_else(|e| fail(&e.to_string())),
    );
    println!(
        "net-switch-peer {me}: port {} on switch {switch}",
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
    client.wake();
    if let Ok(Err(e)) = receiver.join() {
        fail(&e.to_string());
    }
}
