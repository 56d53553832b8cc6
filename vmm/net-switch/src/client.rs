//! The VMM's side of the switch: a port ([`SwitchClient`]) that sends and
//! receives frames through a [`PortLink`], the Tern link ([`TernPort`]: the
//! port's own portals and semaphore, which the switch hands out at attach)
//! and the receive loop that waits for the switch's signal.
//!
//! Owns: one port of one switch. Must not touch: the switch's state (only
//! requests reach it) or the device (frames leave through the closure given
//! to [`receive_loop`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::{self, Received, DETACH, MAX_FRAME, MIN_FRAME, RECEIVE};

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
    #[error(
        "switch {switch:?}: this component has {cpus} CPUs; a port has portals on at most {max}",
        max = protocol::MAX_ATTACH_CPUS
    )]
    TooManyCpus { switch: String, cpus: usize },
    #[error(
        "switch {switch:?}: no room for the port's capabilities ({source}; every lookup and attach takes slots of the receive window for good)"
    )]
    Slots { switch: String, source: tern::Error },
    #[error(
        "switch {switch:?}: attached port {port}, but its capabilities did not arrive ({got} of {expected})"
    )]
    Capabilities {
        switch: String,
        port: u64,
        got: usize,
        expected: usize,
    },
    #[error("switch {switch:?}: portal call failed ({source})")]
    Call { switch: String, source: tern::Error },
    #[error("switch {switch:?}: waiting for the port's semaphore failed ({source})")]
    Wait { switch: String, source: tern::Error },
    #[error("switch {switch:?}: {}", protocol::status_name(*status))]
    Refused { switch: String, status: u64 },
    #[error("a frame of {0} bytes: the switch carries {MIN_FRAME}..={MAX_FRAME}")]
    FrameSize(usize),
}

/// One attached port's channel to its switch: requests through the port's
/// own portal, and the wait for the switch's signal that frames came.
pub trait PortLink: Send + Sync {
    /// The switch's name, for messages.
    fn switch(&self) -> &str;
    /// The port's number at the switch, for messages.
    fn port(&self) -> u64;
    /// Sends request words through the port's portal; the reply's words.
    fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError>;
    /// Blocks until the switch signals that frames came for the port since
    /// the last wait, or [`wake`](Self::wake) is called.
    fn wait(&self) -> Result<(), SwitchError>;
    /// Ends a [`wait`](Self::wait) now (or the next one), e.g. to stop a
    /// receiver.
    fn wake(&self);
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

/// A port of a switch component on Tern: its portals (one per CPU of this
/// component; the kernel gives the switch's handler the portal's badge,
/// which names the port) and its semaphore (which the switch signals).
pub struct TernPort {
    switch: String,
    port: u64,
    portals: Vec<(u32, tern::Portal)>,
    signal: tern::Semaphore,
}

impl TernPort {
    /// Looks up the switch's service portal for every CPU of this
    /// component and attaches a port through the one of this thread's CPU.
    /// The switch may still be starting: a refused lookup is retried for
    /// `patience`, with growing pauses (the roottask logs each refusal).
    pub fn attach(switch: &str, patience: Duration) -> Result<Self, SwitchError> {
        if !valid_name(switch) {
            return Err(SwitchError::BadName(switch.into()));
        }
        let cpus = tern::cpus().map_err(|source| SwitchError::Cpus {
            switch: switch.into(),
            source,
        })?;
        if cpus.len() > protocol::MAX_ATTACH_CPUS as usize || cpus.iter().any(|&c| c >= 64) {
            return Err(SwitchError::TooManyCpus {
                switch: switch.into(),
                cpus: cpus.len(),
            });
        }
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut services = Vec::new();
        for &cpu in &cpus {
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
            services.push((cpu, portal));
        }
        let service = portal_of(switch, &services)?;
        let slots = tern::ReceiveSlots::reserve(1 + cpus.len() as u64).map_err(|source| {
            SwitchError::Slots {
                switch: switch.into(),
                source,
            }
        })?;
        let mask = cpus.iter().fold(0u64, |m, &c| m | 1 << c);
        let (reply, caps) = service
            .call_receiving(&protocol::attach_request(slots.offset(), mask), &slots)
            .map_err(|source| SwitchError::Call {
                switch: switch.into(),
                source,
            })?;
        let port = match protocol::parse_status(&reply) {
            Ok(Some(port)) => port,
            Ok(None) => return Err(refused(switch, protocol::BAD_REQUEST)),
            Err(status) => return Err(refused(switch, status)),
        };
        let caps: Vec<tern::Capability> = caps.into_iter().flatten().collect();
        if caps.len() != 1 + cpus.len() {
            return Err(SwitchError::Capabilities {
                switch: switch.into(),
                port,
                got: caps.len(),
                expected: 1 + cpus.len(),
            });
        }
        Ok(TernPort {
            switch: switch.into(),
            port,
            signal: caps[0].into(),
            portals: cpus
                .into_iter()
                .zip(caps[1..].iter().map(|&c| c.into()))
                .collect(),
        })
    }
}

/// The portal of `portals` for the calling thread's CPU.
fn portal_of<'a>(
    switch: &str,
    portals: &'a [(u32, tern::Portal)],
) -> Result<&'a tern::Portal, SwitchError> {
    thread_local! {
        /// Threads on Tern never move: ask once per thread (a system call).
        static CPU: u32 = tern::current_cpu();
    }
    let cpu = CPU.with(|c| *c);
    portals
        .iter()
        .find(|(c, _)| *c == cpu)
        .map(|(_, p)| p)
        .ok_or_else(|| SwitchError::NoPortal {
            switch: switch.into(),
            cpu,
        })
}

impl PortLink for TernPort {
    fn switch(&self) -> &str {
        &self.switch
    }

    fn port(&self) -> u64 {
        self.port
    }

    fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError> {
        portal_of(&self.switch, &self.portals)?
            .call(request)
            .map_err(|source| SwitchError::Call {
                switch: self.switch.clone(),
                source,
            })
    }

    fn wait(&self) -> Result<(), SwitchError> {
        self.signal.down().map_err(|source| SwitchError::Wait {
            switch: self.switch.clone(),
            source,
        })
    }

    fn wake(&self) {
        if let Err(e) = self.signal.up() {
            log::warn!("switch {:?}: cannot wake the receiver ({e})", self.switch);
        }
    }
}

/// One attached port of a switch.
pub struct SwitchClient<L: PortLink> {
    link: L,
}

impl SwitchClient<TernPort> {
    /// A new port of switch component `switch` on Tern (see
    /// [`TernPort::attach`]).
    pub fn attach_tern(switch: &str, patience: Duration) -> Result<Self, SwitchError> {
        TernPort::attach(switch, patience).map(SwitchClient::new)
    }
}

impl<L: PortLink> SwitchClient<L> {
    /// The client of an attached port; dropping it detaches the port.
    pub fn new(link: L) -> Self {
        SwitchClient { link }
    }

    pub fn switch(&self) -> &str {
        self.link.switch()
    }

    /// The port's number at the switch.
    pub fn port(&self) -> u64 {
        self.link.port()
    }

    /// Sends one Ethernet frame (no FCS). The switch takes it even when no
    /// port can: dropped frames are counted there.
    pub fn send(&self, frame: &[u8]) -> Result<(), SwitchError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(SwitchError::FrameSize(frame.len()));
        }
        let reply = self.link.call(&protocol::send_request(frame))?;
        match protocol::parse_status(&reply) {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(refused(self.switch(), protocol::BAD_REQUEST)),
            Err(status) => Err(refused(self.switch(), status)),
        }
    }

    /// The next frame queued for this port, if any.
    pub fn receive(&self) -> Result<Received, SwitchError> {
        let reply = self.link.call(&[RECEIVE])?;
        protocol::parse_receive_reply(&reply).map_err(|status| refused(self.switch(), status))
    }

    /// Blocks until frames may have come ([`PortLink::wait`]).
    pub fn wait(&self) -> Result<(), SwitchError> {
        self.link.wait()
    }

    /// Ends the receiver's wait ([`PortLink::wake`]).
    pub fn wake(&self) {
        self.link.wake()
    }

    /// Gives the port back (also done when the client is dropped).
    fn detach(&self) -> Result<(), SwitchError> {
        let reply = self.link.call(&[DETACH])?;
        protocol::parse_status(&reply)
            .map(|_| ())
            .map_err(|status| refused(self.switch(), status))
    }
}

impl<L: PortLink> Drop for SwitchClient<L> {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            log::warn!("{e} (detaching port {})", self.port());
        }
    }
}

fn refused(switch: &str, status: u64) -> SwitchError {
    SwitchError::Refused {
        switch: switch.into(),
        status,
    }
}

/// Receives frames for the client's port while `running`, handing each to
/// `deliver`: takes frames until the switch says none is left, then waits
/// for its signal (see [`crate::protocol`] for why no frame is missed).
/// Returns when `running` turns false and the wait was ended
/// ([`SwitchClient::wake`]) (`Ok`), or with the first error (the port was
/// detached or revoked, or a portal call failed).
pub fn receive_loop<L: PortLink>(
    client: &SwitchClient<L>,
    running: &AtomicBool,
    mut deliver: impl FnMut(Vec<u8>),
) -> Result<(), SwitchError> {
    while running.load(Ordering::Acquire) {
        if let Received::Frame { frame, queued } = client.receive()? {
            deliver(frame);
            if queued > 0 {
                continue;
            }
        }
        client.wait()?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::switch::{Caller, PortChange, SwitchCore, MAX_PORTS};
    use std::sync::{Arc, Condvar, Mutex};

    /// A counting semaphore in this process (the test's stand-in for a
    /// port's kernel semaphore).
    #[derive(Default)]
    struct Signal {
        count: Mutex<u64>,
        cond: Condvar,
    }

    impl Signal {
        fn up(&self) {
            *self.count.lock().unwrap() += 1;
            self.cond.notify_one();
        }

        fn down(&self) {
            let mut count = self.count.lock().unwrap();
            while *count == 0 {
                count = self.cond.wait(count).unwrap();
            }
            *count -= 1;
        }
    }

    /// A switch in this process: requests go straight to its `handle`, and
    /// what it asks to wake is woken, as the `net-switch` binary does.
    #[derive(Clone)]
    pub(crate) struct LocalSwitch {
        pub(crate) core: Arc<Mutex<SwitchCore>>,
        signals: Arc<Vec<Signal>>,
        /// Requests handled so far.
        calls: Arc<std::sync::atomic::AtomicU64>,
    }

    impl LocalSwitch {
        pub(crate) fn new(ports: usize, depth: usize) -> Self {
            LocalSwitch {
                core: Arc::new(Mutex::new(SwitchCore::new(ports, depth, 1))),
                signals: Arc::new((0..MAX_PORTS).map(|_| Signal::default()).collect()),
                calls: Arc::default(),
            }
        }

        fn handle(&self, caller: Caller, request: &[u64]) -> (Vec<u64>, Option<PortChange>) {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let mut reply = [0u64; protocol::MAX_MESSAGE];
            let done = self
                .core
                .lock()
                .unwrap()
                .handle(caller, request, &mut reply);
            for (port, signal) in self.signals.iter().enumerate() {
                if done.wake & 1 << port != 0 {
                    signal.up();
                }
            }
            (reply[..done.len].to_vec(), done.change)
        }

        /// A new port, as a client.
        pub(crate) fn client(&self) -> Result<SwitchClient<LocalPort>, SwitchError> {
            let (reply, change) = self.handle(Caller::Service, &protocol::attach_request(0, 1));
            match (protocol::parse_status(&reply), change) {
                (Ok(Some(port)), Some(PortChange::Attached { .. })) => {
                    Ok(SwitchClient::new(LocalPort {
                        switch: self.clone(),
                        port: port as usize,
                    }))
                }
                (Err(status), _) => Err(refused("local", status)),
                _ => Err(refused("local", protocol::BAD_REQUEST)),
            }
        }
    }

    /// A port of a [`LocalSwitch`].
    pub(crate) struct LocalPort {
        switch: LocalSwitch,
        port: usize,
    }

    impl PortLink for LocalPort {
        fn switch(&self) -> &str {
            "local"
        }

        fn port(&self) -> u64 {
            self.port as u64
        }

        fn call(&self, request: &[u64]) -> Result<Vec<u64>, SwitchError> {
            Ok(self.switch.handle(Caller::Port(self.port), request).0)
        }

        fn wait(&self) -> Result<(), SwitchError> {
            self.switch.signals[self.port].down();
            Ok(())
        }

        fn wake(&self) {
            self.switch.signals[self.port].up();
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
        let a = sw.client().unwrap();
        let b = sw.client().unwrap();
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
        let a = sw.client().unwrap();
        for len in [0, 13, MAX_FRAME + 1, 65535] {
            assert!(matches!(a.send(&vec![0; len]), Err(SwitchError::FrameSize(l)) if l == len));
        }
        assert_eq!(sw.core.lock().unwrap().stats().snapshot().received, 0);
    }

    #[test]
    fn dropping_a_client_detaches_its_port() {
        let sw = LocalSwitch::new(1, 1);
        let a = sw.client().unwrap();
        let err = sw.client().err().unwrap();
        assert!(err.to_string().contains("--ports"), "{err}");
        drop(a);
        assert!(sw.client().is_ok());
    }

    #[test]
    fn the_receive_loop_delivers_until_stopped() {
        let sw = LocalSwitch::new(2, 64);
        let a = sw.client().unwrap();
        let b = sw.client().unwrap();
        let frames: Vec<_> = (0..20).map(|i| frame(2, 1, 14 + i * 70)).collect();
        let running = AtomicBool::new(true);
        let got = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let receiver = s.spawn(|| receive_loop(&b, &running, |f| got.lock().unwrap().push(f)));
            // bursts and single frames, while the receiver waits or takes
            for (i, f) in frames.iter().enumerate() {
                a.send(f).unwrap();
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            while got.lock().unwrap().len() < frames.len() {
                std::thread::sleep(Duration::from_millis(1));
            }
            // it waits now; stopping it ends the wait
            running.store(false, Ordering::Release);
            b.wake();
            receiver.join().unwrap().unwrap();
        });
        assert_eq!(*got.lock().unwrap(), frames);
    }

    #[test]
    fn the_receive_loop_sleeps_until_a_frame_comes() {
        let sw = LocalSwitch::new(2, 64);
        let a = sw.client().unwrap();
        let b = sw.client().unwrap();
        let calls = || sw.calls.load(Ordering::Relaxed);
        let running = AtomicBool::new(true);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let receiver = s.spawn(|| receive_loop(&b, &running, |f| tx.send(f).unwrap()));
            std::thread::sleep(Duration::from_millis(50));
            // an idle port's receiver asked once and then waits
            let idle = calls();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(calls(), idle, "no polling");
            let f = frame(2, 1, 60);
            a.send(&f).unwrap();
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(f));
            running.store(false, Ordering::Release);
            b.wake();
            receiver.join().unwrap().unwrap();
        });
    }

    #[test]
    fn the_receive_loop_ends_with_the_port() {
        let sw = LocalSwitch::new(1, 1);
        let a = sw.client().unwrap();
        // the port disappears under the loop (e.g. the switch revoked it)
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
        let err = TernPort::attach("lan", Duration::ZERO).err().unwrap();
        assert!(err.to_string().contains("not running on Tern"), "{err}");
        assert!(matches!(
            TernPort::attach("LAN", Duration::ZERO),
            Err(SwitchError::BadName(_))
        ));
    }
}
