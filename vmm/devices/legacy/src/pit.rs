//! 8254 programmable interval timer (ports 0x40-0x43) and port 0x61.
//!
//! Owns: the three counters (modes 0-5, binary/BCD, lo/hi/lohi access,
//! counter latch and read-back), channel 2's gate and OUT as port 0x61 shows
//! them, and channel 0's interrupt (IRQ0) scheduled on the machine's timers.
//! Must not touch: the interrupt controllers (IRQ0 is a [`Line`] that is
//! pulsed on each rising edge of channel 0's OUT).
//!
//! Counters are not stepped: a counter's value and OUT are computed from the
//! [`Clock`] (1.193182 MHz) and the time its count was loaded, so reads are
//! exact whenever they happen. Channel 0's gate is tied high, channel 2's is
//! bit 0 of port 0x61 (channel 1, DRAM refresh once, is a plain counter).
//! Interrupts are at most one per [`MIN_IRQ_PERIOD_NS`]: a guest asking for
//! a faster rate is slowed, late edges are coalesced into one.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

use vmm_bus::{BusDevice, Clock, Line, TimerId, Timers};

use crate::{from_bcd, ns_to_ticks, read_bytewise, ticks_to_ns, to_bcd, write_bytewise};

/// The PIT's first port and how many it occupies (counters 0-2, control).
pub const PIT_PORT: u16 = 0x40;
pub const PIT_PORT_LEN: u64 = 4;
/// The system control port B ([`Pit::port61`]).
pub const PORT61: u16 = 0x61;
/// Channel 0's ISA IRQ.
pub const PIT_IRQ: u32 = 0;
/// The PIT's input clock in Hz.
pub const PIT_HZ: u64 = 1_193_182;
/// Shortest interval between two IRQ0 pulses.
const MIN_IRQ_PERIOD_NS: u64 = 50_000;
/// Period of port 0x61's refresh toggle (bit 4), as on a PC (15.085 us).
const REFRESH_TOGGLE_NS: u64 = 15_085;

const CONTROL: u64 = 3;

// Port 0x61 bits.
const P61_GATE2: u8 = 0x01;
const P61_WRITABLE: u8 = 0x0f;
const P61_REFRESH: u8 = 0x10;
const P61_OUT2: u8 = 0x20;

/// How a counter's count is read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Low = 1,
    High = 2,
    LowHigh = 3,
}

/// One counter. Time is counted in PIT ticks since the count was loaded:
/// `base_ticks` counted while the gate allowed it before `running_since`.
#[derive(Clone, Debug)]
struct Channel {
    mode: u8,
    access: Access,
    bcd: bool,
    /// The count as loaded, in ticks (0 stands for 65536, or 10000 in BCD).
    reload: u64,
    /// The low byte of a low-then-high count being written.
    pending_low: Option<u8>,
    /// Next low-then-high read returns the high byte.
    read_high_next: bool,
    latched_count: Option<u16>,
    latched_status: Option<u8>,
    /// A count was written but not yet loaded (status bit 6).
    null_count: bool,
    gate: bool,
    /// A count is loaded (since the last control word).
    loaded: bool,
    /// Modes 1 and 5: a gate rising edge started the count.
    triggered: bool,
    base_ticks: u64,
    running_since: Option<u64>,
}

impl Channel {
    fn new(gate: bool) -> Channel {
        Channel {
            mode: 0,
            access: Access::LowHigh,
            bcd: false,
            reload: 0x10000,
            pending_low: None,
            read_high_next: false,
            latched_count: None,
            latched_status: None,
            null_count: true,
            gate,
            loaded: false,
            triggered: false,
            base_ticks: 0,
            running_since: None,
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    /// Modes 0 and 4 pause while the gate is low, 2 and 3 restart when it
    /// rises, 1 and 5 start on its rising edge.
    fn gate_triggered(&self) -> bool {
        matches!(self.mode, 1 | 5)
    }

    fn elapsed(&self, now: u64) -> u64 {
        let running = self
            .running_since
            .map_or(0, |since| ns_to_ticks(now.saturating_sub(since), PIT_HZ));
        self.base_ticks + running
    }

    fn program(&mut self, control: u8) {
        let mode = (control >> 1) & 7;
        *self = Channel {
            mode: if mode > 5 { mode - 4 } else { mode },
            access: match (control >> 4) & 3 {
                1 => Access::Low,
                2 => Access::High,
                _ => Access::LowHigh,
            },
            bcd: control & 1 != 0,
            reload: self.reload,
            ..Channel::new(self.gate)
        };
    }

    fn write_count(&mut self, byte: u8, now: u64) {
        match self.access {
            Access::Low => self.load(byte as u16, now),
            Access::High => self.load((byte as u16) << 8, now),
            Access::LowHigh => match self.pending_low.take() {
                Some(low) => self.load(low as u16 | (byte as u16) << 8, now),
                None => {
                    self.pending_low = Some(byte);
                    self.null_count = true;
                    if self.mode == 0 {
                        // Mode 0: the first byte stops counting, OUT goes low.
                        self.loaded = false;
                        self.running_since = None;
                    }
                }
            },
        }
    }

    fn load(&mut self, raw: u16, now: u64) {
        let count = if self.bcd { from_bcd(raw) } else { raw } as u64;
        self.reload = if count == 0 { self.modulus() } else { count };
        self.loaded = true;
        self.null_count = false;
        self.base_ticks = 0;
        self.triggered = false;
        self.running_since = (!self.gate_triggered() && self.gate).then_some(now);
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        if !self.loaded {
            return;
        }
        match (self.mode, gate) {
            (0 | 4, true) => self.running_since = Some(now),
            (1 | 5, true) | (2 | 3, true) => {
                self.triggered = true;
                self.base_ticks = 0;
                self.running_since = Some(now);
            }
            (0 | 2 | 3 | 4, false) => {
                self.base_ticks = self.elapsed(now);
                self.running_since = None;
            }
            _ => {}
        }
    }

    /// The counting element's value (binary, before BCD encoding).
    fn value(&self, now: u64) -> u16 {
        let n = self.reload;
        let m = self.modulus();
        if !self.loaded || (self.gate_triggered() && !self.triggered) {
            return (n % m) as u16;
        }
        let t = self.elapsed(now);
        let value = match self.mode {
            2 => n - t % n,
            3 => {
                // Decrements by two through each half period.
                let phase = t % n;
                let first_half = n.div_ceil(2);
                let into_half = if phase < first_half {
                    phase
                } else {
                    phase - first_half
                };
                (n - 2 * into_half.min(n / 2)) & !1
            }
            _ => (n + m - t % m) % m,
        };
        (value % m) as u16
    }

    fn out(&self, now: u64) -> bool {
        if !self.loaded {
            return self.mode != 0;
        }
        if self.gate_triggered() && !self.triggered {
            return true;
        }
        let n = self.reload;
        let t = self.elapsed(now);
        match self.mode {
            0 | 1 => t >= n,
            2 => !self.gate || t % n != n - 1,
            3 => !self.gate || t % n < n.div_ceil(2),
            _ => t != n, // 4, 5: one tick low at the terminal count
        }
    }

    /// The tick count (since load) of OUT's next rising edge after `now`, and
    /// the clock time it happens at; `None` if OUT will not rise on its own.
    fn next_rising_edge(&self, now: u64) -> Option<(u64, u64)> {
        let since = self.running_since?;
        if self.gate_triggered() && !self.triggered {
            return None;
        }
        let n = self.reload;
        let t = self.elapsed(now);
        let edge = match self.mode {
            0 | 1 => (t < n).then_some(n)?,
            2 | 3 => (t / n + 1) * n,
            _ => (t <= n).then_some(n + 1)?,
        };
        Some((edge, since + ticks_to_ns(edge - self.base_ticks, PIT_HZ)))
    }

    fn status(&self, now: u64) -> u8 {
        (self.out(now) as u8) << 7
            | (self.null_count as u8) << 6
            | (self.access as u8) << 4
            | self.mode << 1
            | self.bcd as u8
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.encode(self.value(now)));
            self.read_high_next = false;
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status(now));
        }
    }

    fn encode(&self, value: u16) -> u16 {
        if self.bcd {
            to_bcd(value)
        } else {
            value
        }
    }

    fn read_count(&mut self, now: u64) -> u8 {
        if let Some(status) = self.latched_status.take() {
            return status;
        }
        let (value, latched) = match self.latched_count {
            Some(v) => (v, true),
            None => (self.encode(self.value(now)), false),
        };
        let (byte, done) = match self.access {
            Access::Low => (value as u8, true),
            Access::High => ((value >> 8) as u8, true),
            Access::LowHigh => {
                self.read_high_next = !self.read_high_next;
                if self.read_high_next {
                    (value as u8, false)
                } else {
                    ((value >> 8) as u8, true)
                }
            }
        };
        if latched && done {
            self.latched_count = None;
        }
        byte
    }
}

struct State {
    channels: [Channel; 3],
    /// Port 0x61 bits 0-3 as last written.
    port61: u8,
    /// Bumped whenever channel 0's interrupt is re-planned; a callback of an
    /// older generation does nothing.
    irq_generation: u64,
    irq_timer: Option<TimerId>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    timers: Arc<dyn Timers>,
    irq0: Line,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops channel 0's scheduled interrupt and schedules the next one.
    /// Timers are never called with the state locked.
    fn replan_irq(self: &Arc<Self>, mut state: MutexGuard<'_, State>, now: u64) {
        state.irq_generation += 1;
        let generation = state.irq_generation;
        let old = state.irq_timer.take();
        let next = state.channels[0].next_rising_edge(now);
        drop(state);
        if let Some(id) = old {
            self.timers.cancel(id);
        }
        if let Some((edge, deadline)) = next {
            self.arm(generation, edge, deadline);
        }
    }

    fn arm(self: &Arc<Self>, generation: u64, edge: u64, deadline: u64) {
        let weak: Weak<Shared> = Arc::downgrade(self);
        let callback = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.fire(generation, edge);
            }
        });
        let id = self.timers.schedule(deadline, callback);
        let mut state = self.lock();
        if state.irq_generation == generation {
            state.irq_timer = Some(id);
        } else {
            drop(state);
            self.timers.cancel(id);
        }
    }

    /// Channel 0's OUT should have risen at tick `edge`: pulse IRQ0 and plan
    /// the next edge.
    fn fire(self: &Arc<Self>, generation: u64, edge: u64) {
        let now = self.clock.now_ns();
        let mut state = self.lock();
        if state.irq_generation != generation {
            return;
        }
        state.irq_timer = None;
        let channel = &state.channels[0];
        if channel.elapsed(now) < edge {
            // Early (or the gate paused the count): wait for the edge itself.
            let next = channel.next_rising_edge(now);
            drop(state);
            if let Some((edge, deadline)) = next {
                self.arm(generation, edge, deadline);
            }
            return;
        }
        let next = channel.next_rising_edge(now);
        drop(state);
        self.irq0.pulse();
        if let Some((edge, deadline)) = next {
            self.arm(generation, edge, deadline.max(now + MIN_IRQ_PERIOD_NS));
        }
    }
}

/// The 8254 PIT: the bus device for ports 0x40-0x43.
pub struct Pit {
    shared: Arc<Shared>,
}

impl Pit {
    /// A PIT whose channel 0 pulses `irq0` on each rising edge of its OUT,
    /// counting on `clock` and waking through `timers`. Counters start
    /// unprogrammed (no interrupts until the guest loads channel 0).
    pub fn new(irq0: Line, clock: Arc<dyn Clock>, timers: Arc<dyn Timers>) -> Pit {
        let state = State {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            irq_generation: 0,
            irq_timer: None,
        };
        Pit {
            shared: Arc::new(Shared {
                clock,
                timers,
                irq0,
                state: Mutex::new(state),
            }),
        }
    }

    /// A platform reset: every counter unprogrammed, port 0x61 cleared,
    /// channel 0's scheduled interrupt dropped.
    pub fn reset(&mut self) {
        let now = self.shared.clock.now_ns();
        let mut state = self.shared.lock();
        state.channels = [Channel::new(true), Channel::new(true), Channel::new(false)];
        state.port61 = 0;
        self.shared.replan_irq(state, now);
    }

    /// The bus device for port 0x61 (channel 2's gate and OUT, speaker).
    pub fn port61(&self) -> Port61 {
        Port61 {
            shared: self.shared.clone(),
        }
    }

    fn write_port(&self, offset: u64, value: u8) {
        let now = self.shared.clock.now_ns();
        let mut state = self.shared.lock();
        let channel0_changed = match offset {
            0..=2 => {
                state.channels[offset as usize].write_count(value, now);
                offset == 0
            }
            CONTROL => match value >> 6 {
                3 => {
                    for (i, channel) in state.channels.iter_mut().enumerate() {
                        if value & (2 << i) != 0 {
                            // Both latch bits are active low.
                            if value & 0x20 == 0 {
                                channel.latch_count(now);
                            }
                            if value & 0x10 == 0 {
                                channel.latch_status(now);
                            }
                        }
                    }
                    false
                }
                select => {
                    let channel = &mut state.channels[select as usize];
                    if value & 0x30 == 0 {
                        channel.latch_count(now);
                        false
                    } else {
                        channel.program(value);
                        select == 0
                    }
                }
            },
            _ => false,
        };
        if channel0_changed {
            self.shared.replan_irq(state, now);
        }
    }

    fn read_port(&self, offset: u64) -> u8 {
        let now = self.shared.clock.now_ns();
        let mut state = self.shared.lock();
        match offset {
            0..=2 => state.channels[offset as usize].read_count(now),
            _ => 0xff, // the control register is write-only
        }
    }
}

impl BusDevice for Pit {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(offset, data, |o| self.read_port(o));
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_bytewise(offset, data, |o, v| self.write_port(o, v));
    }
}

/// Port 0x61 (system control port B): bit 0 channel 2's gate, bit 1 speaker
/// data enable, bits 2-3 stored, bit 4 the refresh toggle, bit 5 channel 2's
/// OUT; bits 6-7 (parity / I/O check errors) read 0.
pub struct Port61 {
    shared: Arc<Shared>,
}

impl Port61 {
    fn read_port(&self) -> u8 {
        let now = self.shared.clock.now_ns();
        let state = self.shared.lock();
        let refresh = if (now / REFRESH_TOGGLE_NS) % 2 == 1 {
            P61_REFRESH
        } else {
            0
        };
        let out2 = if state.channels[2].out(now) {
            P61_OUT2
        } else {
            0
        };
        (state.port61 & P61_WRITABLE) | refresh | out2
    }

    fn write_port(&self, value: u8) {
        let now = self.shared.clock.now_ns();
        let mut state = self.shared.lock();
        state.port61 = value & P61_WRITABLE;
        state.channels[2].set_gate(value & P61_GATE2 != 0, now);
    }
}

impl BusDevice for Port61 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        read_bytewise(
            offset,
            data,
            |o| if o == 0 { self.read_port() } else { 0xff },
        );
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        write_bytewise(offset, data, |o, v| {
            if o == 0 {
                self.write_port(v)
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{inb, outb, FakeClock, FakeTimers, RecordingLine};

    struct Rig {
        pit: Pit,
        port61: Port61,
        clock: Arc<FakeClock>,
        timers: Arc<FakeTimers>,
        irq0: Arc<RecordingLine>,
    }

    fn rig() -> Rig {
        let clock = FakeClock::new();
        clock.set(1_000_000_000); // counters must not depend on starting at 0
        let timers = FakeTimers::new(clock.clone());
        let irq0 = RecordingLine::new();
        let pit = Pit::new(irq0.clone(), clock.clone(), timers.clone());
        let port61 = pit.port61();
        Rig {
            pit,
            port61,
            clock,
            timers,
            irq0,
        }
    }

    impl Rig {
        fn now(&self) -> u64 {
            self.clock.now_ns()
        }
        fn ticks_later(&self, ticks: u64) -> u64 {
            self.now() + ticks_to_ns(ticks, PIT_HZ)
        }
        fn latch_read(&mut self, channel: u64) -> u16 {
            outb(&mut self.pit, CONTROL, (channel as u8) << 6);
            let low = inb(&mut self.pit, channel);
            let high = inb(&mut self.pit, channel);
            u16::from_le_bytes([low, high])
        }
        fn load(&mut self, channel: u64, control: u8, count: u16) {
            outb(&mut self.pit, CONTROL, (channel as u8) << 6 | control);
            outb(&mut self.pit, channel, count as u8);
            outb(&mut self.pit, channel, (count >> 8) as u8);
        }
    }

    #[test]
    fn mode2_counts_down_and_reloads() {
        let mut r = rig();
        r.load(0, 0x34, 1000); // channel 0, lohi, mode 2
        let start = r.now();
        assert_eq!(r.latch_read(0), 1000);
        for (ticks, expected) in [(1, 999), (500, 500), (999, 1), (1000, 1000), (1001, 999)] {
            r.clock.set(start + ticks_to_ns(ticks, PIT_HZ));
            assert_eq!(r.latch_read(0), expected, "after {ticks} ticks");
        }
    }

    /// The status byte right after a control word (8254 datasheet: OUT low
    /// in mode 0, high in the others; null count until a count is written;
    /// modes 6 and 7 are 2 and 3).
    #[test]
    fn status_after_control_word() {
        let mut r = rig();
        for (mode, status) in [
            (0, 0x70),
            (1, 0xf2),
            (2, 0xf4),
            (3, 0xf6),
            (4, 0xf8),
            (5, 0xfa),
            (6, 0xf4),
            (7, 0xf6),
        ] {
            outb(&mut r.pit, CONTROL, 0x70 | mode << 1);
            outb(&mut r.pit, CONTROL, 0xe4);
            assert_eq!(inb(&mut r.pit, 1), status, "mode {mode}");
        }
        outb(&mut r.pit, CONTROL, 0x51); // LSB only, mode 0, BCD
        outb(&mut r.pit, 1, 0x99);
        outb(&mut r.pit, CONTROL, 0xe4);
        assert_eq!(inb(&mut r.pit, 1), 0x11, "count loaded: null count clear");
        assert_eq!(inb(&mut r.pit, 1), 0x99, "status read once, then the count");
    }

    #[test]
    fn mode0_out_rises_at_terminal_count_and_counter_wraps() {
        let mut r = rig();
        r.load(1, 0x70, 100); // channel 1, lohi, mode 0
        let start = r.now();
        outb(&mut r.pit, CONTROL, 0xe4); // read-back status of channel 1
        assert_eq!(
            inb(&mut r.pit, 1),
            0x30,
            "OUT low, count loaded, lohi, mode 0"
        );
        r.clock.set(start + ticks_to_ns(99, PIT_HZ));
        assert_eq!(r.latch_read(1), 1);
        outb(&mut r.pit, CONTROL, 0xe4);
        assert_eq!(inb(&mut r.pit, 1) & 0x80, 0);
        r.clock.set(start + ticks_to_ns(100, PIT_HZ));
        outb(&mut r.pit, CONTROL, 0xe4);
        assert_eq!(inb(&mut r.pit, 1) & 0x80, 0x80, "OUT high at 0");
        r.clock.set(start + ticks_to_ns(102, PIT_HZ));
        assert_eq!(r.latch_read(1), 0xfffe, "keeps counting after 0");
    }

    #[test]
    fn access_modes_and_latch_freezing() {
        let mut r = rig();
        outb(&mut r.pit, CONTROL, 0x50); // channel 1, LSB only, mode 0
        outb(&mut r.pit, 1, 0x80);
        assert_eq!(inb(&mut r.pit, 1), 0x80);
        outb(&mut r.pit, CONTROL, 0x60); // MSB only
        outb(&mut r.pit, 1, 0x02);
        assert_eq!(inb(&mut r.pit, 1), 0x02);
        r.clock.advance(ticks_to_ns(1, PIT_HZ));
        assert_eq!(inb(&mut r.pit, 1), 0x01, "0x200 - 1 = 0x1ff");
        // A latched count stays until both bytes are read, later latches wait.
        r.load(1, 0x70, 0x1234);
        outb(&mut r.pit, CONTROL, 0x40);
        r.clock.advance(ticks_to_ns(0x34, PIT_HZ));
        outb(&mut r.pit, CONTROL, 0x40);
        assert_eq!(inb(&mut r.pit, 1), 0x34);
        r.clock.advance(ticks_to_ns(0x100, PIT_HZ));
        assert_eq!(inb(&mut r.pit, 1), 0x12);
        assert_eq!(r.latch_read(1), 0x1234 - 0x134);
        // Read-back of count and status: status first.
        outb(&mut r.pit, CONTROL, 0xc4);
        assert_eq!(inb(&mut r.pit, 1), 0x30);
        assert_eq!(inb(&mut r.pit, 1), 0x00);
        assert_eq!(inb(&mut r.pit, 1), 0x11);
        assert_eq!(inb(&mut r.pit, 0x3), 0xff, "control is write-only");
    }

    #[test]
    fn bcd_counting() {
        let mut r = rig();
        outb(&mut r.pit, CONTROL, 0x71); // channel 1, lohi, mode 0, BCD
        outb(&mut r.pit, 1, 0x00);
        outb(&mut r.pit, 1, 0x10); // 1000 decimal
        r.clock.advance(ticks_to_ns(1, PIT_HZ));
        assert_eq!(r.latch_read(1), 0x0999);
        r.clock.advance(ticks_to_ns(998, PIT_HZ));
        assert_eq!(r.latch_read(1), 0x0001);
        r.clock.advance(ticks_to_ns(2, PIT_HZ));
        assert_eq!(r.latch_read(1), 0x9999, "wraps to 9999");
        // A count of 0 is 10000 in BCD.
        r.load(1, 0x35, 0); // mode 2 BCD
        r.clock.advance(ticks_to_ns(1, PIT_HZ));
        assert_eq!(r.latch_read(1), 0x9999);
    }

    #[test]
    fn mode3_square_wave() {
        let mut r = rig();
        r.load(2, 0xb6, 10); // channel 2, lohi, mode 3
        outb(&mut r.port61, 0, P61_GATE2);
        let start = r.now();
        let mut outs = Vec::new();
        for t in 0..20 {
            r.clock.set(start + ticks_to_ns(t, PIT_HZ));
            outs.push(inb(&mut r.port61, 0) & P61_OUT2 != 0);
            if t == 3 {
                assert_eq!(r.latch_read(2), 4, "decrements by two");
            }
        }
        let expected: Vec<bool> = (0..20).map(|t| t % 10 < 5).collect();
        assert_eq!(outs, expected);
        outb(&mut r.port61, 0, 0);
        r.clock.set(start + ticks_to_ns(7, PIT_HZ));
        assert_ne!(
            inb(&mut r.port61, 0) & P61_OUT2,
            0,
            "gate low forces OUT high"
        );
    }

    #[test]
    fn mode1_waits_for_the_gate() {
        let mut r = rig();
        r.load(2, 0xb2, 50); // channel 2, lohi, mode 1
        assert_ne!(inb(&mut r.port61, 0) & P61_OUT2, 0);
        r.clock.advance(ticks_to_ns(100, PIT_HZ));
        assert_eq!(r.latch_read(2), 50, "not triggered");
        outb(&mut r.port61, 0, P61_GATE2);
        assert_eq!(
            inb(&mut r.port61, 0) & P61_OUT2,
            0,
            "OUT low while counting"
        );
        r.clock.advance(ticks_to_ns(50, PIT_HZ));
        assert_ne!(inb(&mut r.port61, 0) & P61_OUT2, 0);
    }

    /// `pit_calibrate_tsc`: gate on and speaker off through port 0x61,
    /// channel 2 in mode 0 with a 50 ms count, poll OUT (bit 5).
    #[test]
    fn linux_pit_calibrate_tsc_sequence() {
        let mut r = rig();
        let latch = (PIT_HZ / 20) as u16;
        let p61 = inb(&mut r.port61, 0);
        outb(&mut r.port61, 0, (p61 & !0x02) | 0x01);
        outb(&mut r.pit, CONTROL, 0xb0);
        outb(&mut r.pit, 2, latch as u8);
        outb(&mut r.pit, 2, (latch >> 8) as u8);
        let start = r.now();
        assert_eq!(
            inb(&mut r.port61, 0) & 0x23,
            0x01,
            "OUT low, gate on, speaker off"
        );
        r.clock.set(start + ticks_to_ns(latch as u64, PIT_HZ) - 1);
        assert_eq!(inb(&mut r.port61, 0) & 0x20, 0);
        r.clock.set(start + ticks_to_ns(latch as u64, PIT_HZ));
        assert_eq!(inb(&mut r.port61, 0) & 0x20, 0x20);
        let elapsed = r.now() - start;
        assert!((49_999_000..=50_001_000).contains(&elapsed), "{elapsed} ns");
    }

    /// `quick_pit_calibrate`: channel 2 mode 0 from 0xffff, then pairs of
    /// reads (LSB discarded) whose MSB steps down once per 256 ticks.
    #[test]
    fn linux_quick_pit_calibrate_sequence() {
        let mut r = rig();
        let p61 = inb(&mut r.port61, 0);
        outb(&mut r.port61, 0, (p61 & !0x02) | 0x01);
        outb(&mut r.pit, CONTROL, 0xb0);
        outb(&mut r.pit, 2, 0xff);
        outb(&mut r.pit, 2, 0xff);
        let start = r.now();
        let msb_at = |r: &mut Rig, ticks: u64| {
            r.clock.set(start + ticks_to_ns(ticks, PIT_HZ));
            inb(&mut r.pit, 2);
            inb(&mut r.pit, 2)
        };
        assert_eq!(msb_at(&mut r, 0), 0xff);
        assert_eq!(msb_at(&mut r, 255), 0xff);
        assert_eq!(msb_at(&mut r, 256), 0xfe);
        for i in 1..=200u64 {
            assert_eq!(msb_at(&mut r, 256 * i + 100), 0xff - i as u8);
        }
    }

    #[test]
    fn gate_pauses_mode0() {
        let mut r = rig();
        outb(&mut r.port61, 0, P61_GATE2);
        r.load(2, 0xb0, 1000);
        r.clock.advance(ticks_to_ns(100, PIT_HZ));
        outb(&mut r.port61, 0, 0);
        r.clock.advance(ticks_to_ns(5000, PIT_HZ));
        assert_eq!(r.latch_read(2), 900);
        outb(&mut r.port61, 0, P61_GATE2);
        r.clock.advance(ticks_to_ns(900, PIT_HZ));
        assert_eq!(r.latch_read(2), 0);
        assert_ne!(inb(&mut r.port61, 0) & P61_OUT2, 0);
    }

    #[test]
    fn port61_bits() {
        let mut r = rig();
        outb(&mut r.port61, 0, 0xff);
        assert_eq!(
            inb(&mut r.port61, 0) & 0xcf,
            0x0f,
            "bits 0-3 stored, 6-7 read 0"
        );
        let t0 = r.now() / REFRESH_TOGGLE_NS * REFRESH_TOGGLE_NS;
        r.clock.set(t0);
        let a = inb(&mut r.port61, 0) & P61_REFRESH;
        r.clock.set(t0 + REFRESH_TOGGLE_NS);
        let b = inb(&mut r.port61, 0) & P61_REFRESH;
        assert_ne!(a, b, "refresh bit toggles");
    }

    #[test]
    fn periodic_irq0_in_mode2() {
        let mut r = rig();
        let count = (PIT_HZ / 1000) as u16; // HZ=1000
        r.load(0, 0x34, count);
        let start = r.now();
        assert_eq!(r.timers.deadlines(), vec![r.ticks_later(count as u64)]);
        r.timers.run_until(start + 10_000_000);
        assert_eq!(r.irq0.rising_edges(), 10, "ten periods in 10 ms");
        assert!(!r.irq0.level(), "pulses");
        let period_ns = ticks_to_ns(count as u64 * 11, PIT_HZ);
        assert_eq!(r.timers.deadlines(), vec![start + period_ns]);
    }

    #[test]
    fn periodic_irq0_in_mode3_and_late_edges_coalesce() {
        let mut r = rig();
        r.load(0, 0x36, 11932); // 100 Hz square wave
        let start = r.now();
        // The timer thread was away for 35 ms: one pulse for the lot, and the
        // next one on the original grid.
        r.clock.set(start + 35_000_000);
        r.timers.run_until(start + 35_000_000);
        assert_eq!(r.irq0.rising_edges(), 1);
        assert_eq!(
            r.timers.deadlines(),
            vec![start + ticks_to_ns(4 * 11932, PIT_HZ)]
        );
        r.timers.run_until(start + 100_000_000);
        assert_eq!(r.irq0.rising_edges(), 7);
    }

    #[test]
    fn oneshot_irq0_in_modes_0_and_4() {
        let mut r = rig();
        r.load(0, 0x30, 500); // mode 0
        let start = r.now();
        r.timers.run_until(start + ticks_to_ns(499, PIT_HZ));
        assert_eq!(r.irq0.rising_edges(), 0);
        r.timers.run_until(start + 10_000_000);
        assert_eq!(r.irq0.rising_edges(), 1, "once");
        assert!(r.timers.deadlines().is_empty());
        // Linux's one-shot clockevent: mode 4, edge one tick after zero.
        r.load(0, 0x38, 100);
        let start = r.now();
        assert_eq!(r.timers.deadlines(), vec![start + ticks_to_ns(101, PIT_HZ)]);
        r.timers.run_until(start + 10_000_000);
        assert_eq!(r.irq0.rising_edges(), 2);
        assert!(r.timers.deadlines().is_empty());
    }

    #[test]
    fn reprogramming_cancels_the_old_interrupt() {
        let mut r = rig();
        r.load(0, 0x34, 1000);
        r.load(0, 0x34, 5000);
        let start = r.now();
        assert_eq!(r.timers.deadlines().len(), 1);
        r.timers.run_until(start + ticks_to_ns(4999, PIT_HZ));
        assert_eq!(r.irq0.rising_edges(), 0, "the 1000-tick period is gone");
        // A control word alone stops channel 0.
        outb(&mut r.pit, CONTROL, 0x30);
        assert!(r.timers.deadlines().is_empty());
        // Half a count stops mode 0 too (first byte).
        r.load(0, 0x30, 100);
        outb(&mut r.pit, 0, 0x10);
        r.timers.run_until(r.now() + 1_000_000);
        assert_eq!(r.irq0.rising_edges(), 0);
    }

    #[test]
    fn interrupt_rate_is_bounded() {
        let mut r = rig();
        r.load(0, 0x34, 2); // 600 kHz asked
        let start = r.now();
        r.timers.run_until(start + 1_000_000);
        let edges = r.irq0.rising_edges();
        assert!((19..=21).contains(&edges), "{edges} pulses in 1 ms");
    }

    #[test]
    fn callbacks_after_the_pit_is_gone_do_nothing() {
        let r = rig();
        let mut pit = r.pit;
        outb(&mut pit, CONTROL, 0x34);
        outb(&mut pit, 0, 100);
        outb(&mut pit, 0, 0);
        drop(pit);
        drop(r.port61);
        r.timers.run_until(r.clock.now_ns() + 1_000_000);
        assert_eq!(r.irq0.rising_edges(), 0);
    }

    #[test]
    fn a_platform_reset_unprograms_the_counters_and_drops_the_interrupt() {
        let mut r = rig();
        r.load(0, 0x34, 1000);
        outb(&mut r.port61, 0, P61_GATE2);
        assert_eq!(r.timers.deadlines().len(), 1);
        r.pit.reset();
        assert!(r.timers.deadlines().is_empty(), "IRQ0 no longer scheduled");
        r.timers.run_until(r.now() + 10_000_000);
        assert_eq!(r.irq0.rising_edges(), 0);
        assert_eq!(inb(&mut r.port61, 0) & P61_WRITABLE, 0);
        // Read-back status of channel 0: null count, mode 0, lohi access.
        outb(&mut r.pit, CONTROL, 0xe2);
        assert_eq!(inb(&mut r.pit, 0) & 0x7f, 0x70);
    }
}
