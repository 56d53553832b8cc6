use super::*;
use crate::testutil::Driver;
use crate::transport::VirtioPci;
use std::sync::Mutex;

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xb];

fn nic(mac: [u8; 6], backend: Box<dyn NetBackend>) -> (Driver, VirtioPci<Net>) {
    let mut d = Driver::new();
    let mut pci = d.wrap(Net::new(mac, backend));
    assert_eq!(d.init(&mut pci, 16, true) & 0xf, 0xf);
    (d, pci)
}

fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// Posts one receive buffer of `len` bytes; returns its address.
fn post_rx(d: &mut Driver, len: u32) -> u64 {
    let buf = d.alloc(len as u64);
    d.add_chain(0, &[(buf, len, true)]);
    buf
}

/// Transmits `frame` with a zero virtio header in two descriptors.
fn transmit<D: VirtioDevice>(d: &mut Driver, pci: &mut VirtioPci<D>, frame: &[u8]) {
    let hdr = d.alloc(HEADER_LEN as u64);
    d.write(hdr, &[0; HEADER_LEN]);
    let body = d.alloc(frame.len() as u64);
    d.write(body, frame);
    d.add_chain(
        1,
        &[
            (hdr, HEADER_LEN as u32, false),
            (body, frame.len() as u32, false),
        ],
    );
    d.notify(pci, 1);
}

#[test]
fn config_has_mac_and_link_up() {
    let sw = Switch::new();
    let (_, mut pci) = nic(MAC_A, Box::new(sw.port()));
    for (i, &b) in MAC_A.iter().enumerate() {
        assert_eq!(Driver::device_config(&mut pci, i as u64, 1), b as u64);
    }
    assert_eq!(Driver::device_config(&mut pci, 6, 2), 1, "link up");
    let f = pci.negotiated_features();
    assert_ne!(f & 1 << VIRTIO_NET_F_MAC, 0);
    assert_ne!(f & 1 << VIRTIO_NET_F_STATUS, 0);
    assert_eq!(pci.device().mac(), MAC_A);
}

#[test]
fn two_devices_on_a_switch_exchange_frames() {
    let sw = Switch::new();
    let (mut da, mut a) = nic(MAC_A, Box::new(sw.port()));
    let (mut db, mut b) = nic(MAC_B, Box::new(sw.port()));
    let rx_a = post_rx(&mut da, 1526);
    da.notify(&mut a, 0);
    let rx_b = post_rx(&mut db, 1526);
    db.notify(&mut b, 0);

    let ping = frame(MAC_B, MAC_A, b"ping from a");
    transmit(&mut da, &mut a, &ping);
    assert_eq!(da.used(1).len(), 1, "A's transmit buffer returned");
    assert!(db.used(0).is_empty(), "B's poller has not run yet");
    b.poll();
    let used = db.used(0);
    assert_eq!(used, vec![(0, (HEADER_LEN + ping.len()) as u32)]);
    let got = db.read(rx_b, HEADER_LEN + ping.len());
    assert_eq!(&got[10..12], &[1, 0], "num_buffers = 1");
    assert_eq!(&got[HEADER_LEN..], &ping[..]);
    assert_eq!(db.msi.count(), 1, "B was interrupted for the receive");

    let pong = frame(MAC_A, MAC_B, b"pong from b");
    transmit(&mut db, &mut b, &pong);
    a.poll();
    assert_eq!(da.used(0).len(), 1);
    assert_eq!(da.read(rx_a + HEADER_LEN as u64, pong.len()), pong);
}

#[test]
fn frames_wait_for_receive_buffers() {
    let sw = Switch::new();
    let (mut da, mut a) = nic(MAC_A, Box::new(sw.port()));
    let (mut db, mut b) = nic(MAC_B, Box::new(sw.port()));
    let f1 = frame(MAC_B, MAC_A, b"one");
    let f2 = frame(MAC_B, MAC_A, b"two");
    transmit(&mut da, &mut a, &f1);
    transmit(&mut da, &mut a, &f2);
    b.poll();
    assert!(db.used(0).is_empty());
    let r1 = post_rx(&mut db, 1526);
    let r2 = post_rx(&mut db, 1526);
    db.notify(&mut b, 0);
    assert_eq!(db.used(0).len(), 2, "posting buffers delivers the backlog");
    assert_eq!(db.read(r1 + HEADER_LEN as u64, f1.len()), f1);
    assert_eq!(db.read(r2 + HEADER_LEN as u64, f2.len()), f2);
}

#[test]
fn bad_sizes_are_dropped_and_reset_clears_the_backlog() {
    let sw = Switch::new();
    let (mut da, mut a) = nic(MAC_A, Box::new(sw.port()));
    let (mut db, mut b) = nic(MAC_B, Box::new(sw.port()));
    // A transmit chain shorter than the header is returned, nothing sent.
    let tiny = da.alloc(4);
    da.add_chain(1, &[(tiny, 4, false)]);
    da.notify(&mut a, 1);
    assert_eq!(da.used(1).len(), 1);
    // A receive buffer too small: the frame is dropped, the buffer returned empty.
    post_rx(&mut db, 20);
    db.notify(&mut b, 0);
    transmit(&mut da, &mut a, &frame(MAC_B, MAC_A, &[7; 100]));
    b.poll();
    assert_eq!(db.used(0), vec![(0, 0)]);
    // Frames pending at reset do not reach the next driver.
    transmit(&mut da, &mut a, &frame(MAC_B, MAC_A, b"stale"));
    assert_eq!(db.init(&mut b, 16, true) & 0xf, 0xf);
    post_rx(&mut db, 1526);
    db.notify(&mut b, 0);
    b.poll();
    assert!(db.used(0).is_empty());
}

/// A backend that records what the guest sent.
struct Capture(Arc<Mutex<Vec<Vec<u8>>>>, Arc<Mutex<Option<FrameSink>>>);
impl NetBackend for Capture {
    fn send(&mut self, frame: &[u8]) {
        self.0.lock().unwrap().push(frame.to_vec());
    }
    fn attach(&mut self, sink: FrameSink) {
        *self.1.lock().unwrap() = Some(sink);
    }
}

#[test]
fn backend_sees_frames_without_header_and_delivers_from_a_thread() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::new(Mutex::new(None));
    let (mut d, mut pci) = nic(MAC_A, Box::new(Capture(sent.clone(), sink.clone())));
    let f = frame(MAC_B, MAC_A, b"out");
    transmit(&mut d, &mut pci, &f);
    assert_eq!(*sent.lock().unwrap(), vec![f.clone()]);
    let rx = post_rx(&mut d, 1526);
    d.notify(&mut pci, 0);
    let wakeup = pci.wakeup().unwrap();
    let pci = Arc::new(Mutex::new(pci));
    let poller = VirtioPci::spawn_poller(&pci).unwrap();
    let sink = sink.lock().unwrap().clone().unwrap();
    let incoming = frame(MAC_A, MAC_B, b"in");
    let feeder = std::thread::spawn(move || sink.deliver(incoming));
    assert!(feeder.join().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let used = loop {
        let u = d.used(0);
        if !u.is_empty() {
            break u;
        }
        assert!(std::time::Instant::now() < deadline, "frame not delivered");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(used[0].1 as usize, HEADER_LEN + f.len() - 1);
    assert_eq!(d.read(rx + HEADER_LEN as u64, 2), &MAC_A[..2]);
    wakeup.close();
    poller.join().unwrap();
}
