//! virtio-console with one port (no MULTIPORT): guest output goes to a
//! `Write`, host input bytes go to the guest.
//!
//! Owns: the receive queue (0) and transmit queue (1) of port 0 and the
//! input buffer. Must not touch: where the output ends up or where input
//! comes from (the machine's stdout/stdin threads).

use std::io::{Read, Write};
use std::sync::Arc;

use crate::device::{read_config_bytes, Queues, VirtioDevice};
use crate::inbox::{Inbox, Wakeup};

/// Virtio device type of a console.
pub const DEVICE_TYPE: u16 = 3;
pub const QUEUE_SIZE: u16 = 64;
const RX: u16 = 0;
const TX: u16 = 1;
/// Input bytes held while the guest has no receive buffers.
const INPUT_CAPACITY: usize = 64 * 1024;

/// A virtio console.
pub struct Console {
    out: Box<dyn Write + Send>,
    input: Arc<Inbox<u8>>,
}

/// Feeds host input to a [`Console`] from any thread.
#[derive(Clone)]
pub struct ConsoleInput(Arc<Inbox<u8>>);

impl ConsoleInput {
    /// Queues `bytes` for the guest; returns how many fit (64 KiB are
    /// buffered while the guest reads nothing).
    pub fn input(&self, bytes: &[u8]) -> usize {
        self.0.push_all(bytes.iter().copied())
    }
}

impl Console {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Console {
            out,
            input: Inbox::new(INPUT_CAPACITY),
        }
    }

    /// The handle the machine's input thread uses.
    pub fn input_handle(&self) -> ConsoleInput {
        ConsoleInput(self.input.clone())
    }

    fn transmit(&mut self, q: &mut Queues) {
        let mut buf = [0u8; 4096];
        while let Some(chain) = q.pop(TX) {
            let head = chain.head_index();
            match chain.reader(q.memory()) {
                Ok(mut reader) => loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // Host output trouble must not stall the guest.
                            let _ = self.out.write_all(&buf[..n]);
                        }
                    }
                },
                Err(_) => q.warn(
                    "console-chain",
                    format_args!("virtio-console: output outside guest memory; dropped"),
                ),
            }
            q.add_used(TX, head, 0);
        }
        let _ = self.out.flush();
        q.signal(TX);
    }

    fn receive(&mut self, q: &mut Queues) {
        while !self.input.is_empty() {
            let Some(chain) = q.pop(RX) else { break };
            let head = chain.head_index();
            let mut written = 0;
            match chain.writer(q.memory()) {
                Ok(mut writer) => {
                    let room = writer.available_bytes();
                    let bytes: Vec<u8> =
                        std::iter::from_fn(|| self.input.pop()).take(room).collect();
                    if writer.write_all(&bytes).is_ok() {
                        written = bytes.len();
                    }
                }
                Err(_) => q.warn(
                    "console-chain",
                    format_args!("virtio-console: input buffer outside guest memory; dropped"),
                ),
            }
            q.add_used(RX, head, written as u32);
        }
        q.signal(RX);
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u16 {
        DEVICE_TYPE
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        (0x07, 0x80, 0x00) // simple communication controller, other
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        0
    }

    fn config_len(&self) -> usize {
        12
    }

    /// cols, rows, max_nr_ports, emerg_wr: all zero without features.
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        read_config_bytes(&[0; 12], offset, data);
    }

    fn process_queue(&mut self, queue: u16, q: &mut Queues) {
        match queue {
            TX => self.transmit(q),
            _ => self.receive(q),
        }
    }

    fn poll(&mut self, q: &mut Queues) {
        self.receive(q);
    }

    fn wakeup(&self) -> Option<Arc<Wakeup>> {
        Some(self.input.wakeup().clone())
    }

    /// Pending input stays for the next driver; nothing is in flight.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Driver;
    use crate::transport::VirtioPci;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn setup() -> (Driver, VirtioPci<Console>, Sink) {
        let sink = Sink::default();
        let mut d = Driver::new();
        let mut pci = d.wrap(Console::new(Box::new(sink.clone())));
        assert_eq!(d.init(&mut pci, 8, true) & 0xf, 0xf);
        (d, pci, sink)
    }

    #[test]
    fn output_reaches_the_writer() {
        let (mut d, mut pci, sink) = setup();
        let a = d.alloc(6);
        let b = d.alloc(7);
        d.write(a, b"hello ");
        d.write(b, b"world\r\n");
        d.add_chain(1, &[(a, 6, false), (b, 7, false)]);
        d.add_chain(1, &[(a, 5, false)]);
        d.notify(&mut pci, 1);
        assert_eq!(&sink.0.lock().unwrap()[..], b"hello world\r\nhello");
        assert_eq!(d.used(1).len(), 2);
        assert_eq!(d.msi.count(), 1, "one interrupt for the batch");
    }

    #[test]
    fn input_waits_for_buffers_and_splits_across_them() {
        let (mut d, mut pci, _) = setup();
        let input = pci.device().input_handle();
        assert_eq!(input.input(b"ls -l\n"), 6);
        pci.poll();
        assert!(d.used(0).is_empty(), "no buffers yet");
        let a = d.alloc(4);
        let b = d.alloc(16);
        d.add_chain(0, &[(a, 4, true)]);
        d.add_chain(0, &[(b, 16, true)]);
        d.notify(&mut pci, 0);
        let used = d.used(0);
        assert_eq!(used.len(), 2);
        assert_eq!((used[0].1, used[1].1), (4, 2));
        assert_eq!(d.read(a, 4), b"ls -");
        assert_eq!(d.read(b, 2), b"l\n");
        // More input with buffers already posted goes in at the next poll.
        let c = d.alloc(8);
        d.add_chain(0, &[(c, 8, true)]);
        d.notify(&mut pci, 0);
        assert!(d.used(0).is_empty(), "nothing to deliver yet");
        input.input(b"x");
        pci.poll();
        assert_eq!(d.used(0), vec![(2, 1)]);
        assert_eq!(d.read(c, 1), b"x");
    }

    #[test]
    fn poller_thread_delivers_input() {
        let sink = Sink::default();
        let mut d = Driver::new();
        let mut pci = d.wrap(Console::new(Box::new(sink)));
        d.init(&mut pci, 8, true);
        let buf = d.alloc(8);
        d.add_chain(0, &[(buf, 8, true)]);
        d.notify(&mut pci, 0);
        let input = pci.device().input_handle();
        let wakeup = pci.wakeup().unwrap();
        let pci = Arc::new(Mutex::new(pci));
        let thread = VirtioPci::spawn_poller(&pci).unwrap();
        input.input(b"hi");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while d.used(0).is_empty() {
            assert!(std::time::Instant::now() < deadline, "input not delivered");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(d.read(buf, 2), b"hi");
        wakeup.close();
        thread.join().unwrap();
    }
}
