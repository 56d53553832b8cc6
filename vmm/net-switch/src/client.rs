//! The VMM's side of the switch: a port ([`SwitchClient`]) that sends and
//! receives frames through a [`Transport`], the Tern transport (the
//! switch's portals, one per CPU) and the receive loop that polls the port.
//!
//! Owns: one port of one switch, and the polling back-off. Must not touch:
//! the switch's state (only requests reach it) or the device (frames leave
//! through the closure given to [`receive_loop`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::{self, Received, ATTACH, DETACH, MAX_FRAME, MIN_FRAME, RECEIVE};

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error(
        "switch {0:?}: not usable as a Tern service name (use a-z, 0-9, '-' and '_', at most {max} characters)",
        max = MAX_NAME
    )]
    BadName(String),
    #[error(
        "switch {switch:?}: service \"{service}\" not found ({source}); the switch component must run on CPU {cpu} (its `cpus`) and provide \"{service}\", and this component must list it under `uses`"
    )]
    Lookup {
        switch: String,
        service: String,
        cpu: u32,
        source: tern::Error,
    },
    #[error("switch {switch:?}: cannot list this component's CPUs ({source})")]
    Cpus { switch: String, source: tern::Error },
    #[error(
        "switch {switch:?}: no portal on CPU {cpu}, where this thread runs (only the component's `cpus` have one)"
    )]
    NoPortal { switch: String, cpu: u32 },
    #[error("switch {switch:?}: portal call failed ({source})")]
    Call { switch: String, source: tern::Error },
    #[error("switch {switch:?}: {}", protocol::status_name(*status))]
    Refused { switch: String, status: u64 },
    #[error("a frame of {0} bytes: the switch carries {MIN_FRAME}..={MAX_FRAME}")]
    FrameSize(usize),
}

/// How request words reach a switch and its reply comes back.
pub trait Transport: Send + Sync {
    /// The switch's name, for messages.
    fn switch(&self) -> &str;
    fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError>;
}

/// Longest switch name: service names hold 32 characters, and the per-CPU
/// suffix takes up to 6 (`-cpu63`).
pub const MAX_NAME: usize = 26;

/// The Tern service through which threads on `cpu` reach switch `switch`:
/// a portal handler runs on one CPU and serves callers on that CPU only,
/// so the switch offers one portal per CPU.
pub fn service_name(switch: &str, cpu: u32) -> String {
    format!("{switch}-cpu{cpu}")
}

/// Whether `switch` makes valid service names (boot configuration rules).
pub fn valid_name(switch: &str) -> bool {
    (1..=MAX_NAME).contains(&switch.len())
        && switch
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The switch's portals on Tern, one per CPU of this component.
pub struct TernTransport {
    switch: String,
    portals: Vec<(u32, tern::Portal)>,
}

impl TernTransport {
    /// Looks up the switch's portal for every CPU of this component. The
    /// switch may still be starting: a refused lookup is retried for
    /// `patience`, with growing pauses (the roottask logs each refusal).
    pub fn connect(switch: &str, patience: Duration) -> Result<Self, SwitchError> {
        if !valid_name(switch) {
            return Err(SwitchError::BadName(switch.into()));
        }
        let cpus = tern::cpus().map_err(|source| SwitchError::Cpus {
            switch: switch.into(),
            source,
        })?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut portals = Vec::new();
        for cpu in cpus {
            let service = service_name(switch, cpu);
            let portal = loop {
                match tern::Portal::lookup(&service) {
                    Ok(p) => break p,
                    Err(tern::Error::Refused) if start.elapsed() < patience => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    Err(source) => {
                        return Err(SwitchError::Lookup {
                            switch: switch.into(),
                            service,
                            cpu,
                            source,
                        })
                    }
                }
            };
            portals.push((cpu, portal));
        }
        Ok(TernTransport {
            switch: switch.into(),
            portals,
        })
    }
}

impl Transport for TernTransport {
    fn switch(&self) -> &str {
        &self.switch
    }

    fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError> {
        thread_local! {
            /// Threads on Tern never move: ask once per thread (a system call).
            static CPU: u32 = tern::current_cpu();
        }
        let cpu = CPU.with(|c| *c);
        let (_, portal) = self
            .portals
            .iter()
            .find(|(c, _)| *c == cpu)
            .ok_or_else(|| SwitchError::NoPortal {
                switch: self.switch.clone(),
                cpu,
            })?;
        portal.call(request).map_err(|source| SwitchError::Call {
            switch: self.switch.clone(),
            source,
        })
    }
}

/// One attached port of a switch.
pub struct SwitchClient<T: Transport> {
    transport: T,
    port: u64,
}

impl<T: Transport> SwitchClient<T> {
    /// Attaches a new port.
    pub fn attach(transport: T) -> Result<Self, SwitchError> {
        let reply = transport.call(&[ATTACH])?;
        match protocol::parse_status(&reply) {
            Ok(Some(port)) => Ok(SwitchClient { transport, port }),
            Ok(None) => Err(refused(&transport, protocol::BAD_REQUEST)),
            Err(status) => Err(refused(&transport, status)),
        }
    }

    pub fn switch(&self) -> &str {
        self.transport.switch()
    }

    /// The port's id at the switch.
    pub fn port(&self) -> u64 {
        self.port
    }

    /// Sends one Ethernet frame (no FCS). The switch takes it even when no
    /// port can: dropped frames are counted there.
    pub fn send(&self, frame: &[u8]) -> Result<(), SwitchError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(SwitchError::FrameSize(frame.len()));
        }
        let reply = self
            .transport
            .call(&protocol::send_request(self.port, frame))?;
        match protocol::parse_status(&reply) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(refused(&self.transport, protocol::BAD_REQUEST)),
            Err(status) => Err(refused(&self.transport, status)),
        }
    }

    /// The next frame queued for this port, if any.
    pub fn receive(&self) -> Result<Received, SwitchError> {
        let reply = self.transport.call(&[RECEIVE, self.port])?;
        protocol::parse_receive_reply(&reply).map_err(|status| refused(&self.transport, status))
    }

    /// Gives the port back (also done when the client is dropped).
    fn detach(&self) -> Result<(), SwitchError> {
        let reply = self.transport.call(&[DETACH, self.port])?;
        protocol::parse_status(&reply)
            .map(|_| ())
            .map_err(|status| refused(&self.transport, status))
    }
}

impl<T: Transport> Drop for SwitchClient<T> {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::warn!("{e} (detaching port {:#x})", self.port);
        }
    }
}

fn refused<T: Transport>(transport: &T, status: u64) -> SwitchError {
    SwitchError::Refused {
        switch: transport.switch().into(),
        status,
    }
}

/// Pauses between polls of an empty port: the first is [`MIN_PAUSE`], each
/// further one twice as long up to [`MAX_PAUSE`]; a frame starts over. An
/// idle port costs one portal call and one sleep per `MAX_PAUSE`; a frame
/// waits at most `MAX_PAUSE` (plus the sleep's overshoot) for its receiver.
pub const MIN_PAUSE: Duration = Duration::from_micros(50);
pub const MAX_PAUSE: Duration = Duration::from_millis(1);

/// Polls the client's port while `running`, handing each frame to
/// `deliver`. Returns when `running` turns false (`Ok`), or with the
/// first error (the switch refused the port, or a portal call failed).
pub fn receive_loop<T: Transport>(
    client: &SwitchClient<T>,
    running: &AtomicBool,
    mut deliver: impl FnMut(Vec<u8>),
) -> Result<(), SwitchError> {
    let mut pause = MIN_PAUSE;
    while running.load(Ordering::Acquire) {
        match client.receive()? {
            Received::Frame { frame, .. } => {
                deliver(frame);
                pause = MIN_PAUSE;
            }
            Received::Nothing => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::switch::SwitchCore;
    use std::sync::{Arc, Mutex};

    /// A switch in this process: requests go straight to its `handle`.
    #[derive(Clone)]
    pub(crate) struct LocalSwitch(pub(crate) Arc<Mutex<SwitchCore>>);

    impl LocalSwitch {
        pub(crate) fn new(ports: usize, depth: usize) -> Self {
            LocalSwitch(Arc::new(Mutex::new(SwitchCore::new(ports, depth))))
        }
    }

    impl Transport for LocalSwitch {
        fn switch(&self) -> &str {
            "local"
        }

        fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError> {
            let mut reply = [0u64; protocol::MAX_MESSAGE];
            let n = self.0.lock().unwrap().handle(request, &mut reply);
            Ok(reply[..n].to_vec())
        }
    }

    pub(crate) fn frame(dst: u8, src: u8, len: usize) -> Vec<u8> {
        let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(src)).collect();
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
        f
    }

    #[test]
    fn two_clients_exchange_frames() {
        let sw = LocalSwitch::new(4, 16);
        let a = SwitchClient::attach(sw.clone()).unwrap();
        let b = SwitchClient::attach(sw.clone()).unwrap();
        assert_ne!(a.port(), b.port());
        let f = frame(2, 1, 1514);
        a.send(&f).unwrap();
        assert_eq!(
            b.receive().unwrap(),
            Received::Frame {
                frame: f,
                queued: 0
            }
        );
        assert_eq!(b.receive().unwrap(), Received::Nothing);
        assert_eq!(a.receive().unwrap(), Received::Nothing);
    }

    #[test]
    fn bad_frames_are_refused_before_the_switch() {
        let sw = LocalSwitch::new(1, 1);
        let a = SwitchClient::attach(sw.clone()).unwrap();
        for len in [0, 13, MAX_FRAME + 1, 65535] {
            assert!(matches!(a.send(&vec![0; len]), Err(SwitchError::FrameSize(l)) if l == len));
        }
        assert_eq!(sw.0.lock().unwrap().stats().snapshot().received, 0);
    }

    #[test]
    fn dropping_a_client_detaches_its_port() {
        let sw = LocalSwitch::new(1, 1);
        let a = SwitchClient::attach(sw.clone()).unwrap();
        let err = SwitchClient::attach(sw.clone()).err().unwrap();
        assert!(err.to_string().contains("--ports"), "{err}");
        drop(a);
        assert!(SwitchClient::attach(sw.clone()).is_ok());
    }

    #[test]
    fn the_receive_loop_delivers_until_stopped() {
        let sw = LocalSwitch::new(2, 64);
        let a = SwitchClient::attach(sw.clone()).unwrap();
        let b = SwitchClient::attach(sw.clone()).unwrap();
        let frames: Vec<_> = (0..20).map(|i| frame(2, 1, 14 + i * 70)).collect();
        let running = AtomicBool::new(true);
        let got = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let receiver = s.spawn(|| {
                receive_loop(&b, &running, |f| {
                    let mut got = got.lock().unwrap();
                    got.push(f);
                    if got.len() == 20 {
                        running.store(false, Ordering::Release);
                    }
                })
            });
            for f in &frames {
                a.send(f).unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
            receiver.join().unwrap().unwrap();
        });
        assert_eq!(*got.lock().unwrap(), frames);
    }

    #[test]
    fn the_receive_loop_ends_with_the_port() {
        let sw = LocalSwitch::new(1, 1);
        let a = SwitchClient::attach(sw.clone()).unwrap();
        // the port disappears under the loop (e.g. the switch restarted)
        a.detach().unwrap();
        let err = receive_loop(&a, &AtomicBool::new(true), |_| {}).unwrap_err();
        assert!(err.to_string().contains("no such port"), "{err}");
    }

    #[test]
    fn service_names_follow_the_boot_configuration_rules() {
        assert_eq!(service_name("lan", 1), "lan-cpu1");
        assert!(valid_name("lan_2-x"));
        for bad in ["", "Lan", "a.b", "with space", &"x".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(service_name(&"x".repeat(MAX_NAME), 63).len() <= 32);
    }

    #[test]
    fn off_tern_the_transport_says_so() {
        if tern::on_tern() {
            return;
        }
        let err = TernTransport::connect("lan", Duration::ZERO).err().unwrap();
        assert!(err.to_string().contains("not running on Tern"), "{err}");
        assert!(matches!(
            TernTransport::connect("LAN", Duration::ZERO),
            Err(SwitchError::BadName(_))
        ));
    }
}
