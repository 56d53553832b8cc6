//! The host side of `vmm-core` on Tern: guest RAM as the VMM maps it, the
//! console, CPUID, delayed jobs (one timer thread) and idling.

use crate::sys;
use alloc::boxed::Box;
use alloc::vec::Vec;
use vmm_core::{CpuidResult, GuestMemory, OutOfRange, Platform};

/// Guest RAM: the VMM's mapping of the memory it delegated to the VM.
// The guest (and other vCPU threads) may change the bytes at any time; the VMM
// copies in and out and never keeps references into guest memory, so sharing
// the mapping between threads is the same as sharing it with the guest.
pub struct SharedRam {
    base: *mut u8,
    size: u64,
}

// SAFETY: see above: only plain byte copies go through the pointer.
unsafe impl Sync for SharedRam {}
// SAFETY: as for Sync.
unsafe impl Send for SharedRam {}

impl SharedRam {
    pub fn new(ram: &'static mut [u8]) -> Self {
        SharedRam {
            base: ram.as_mut_ptr(),
            size: ram.len() as u64,
        }
    }
}

impl GuestMemory for SharedRam {
    fn size(&self) -> u64 {
        self.size
    }
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        vmm_core::memory::check_range(self.size, gpa, buf.len())?;
        // SAFETY: the range is inside the mapping (checked); byte copies of guest
        // memory that the guest may change concurrently are plain data.
        unsafe {
            core::ptr::copy_nonoverlapping(self.base.add(gpa as usize), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }
    fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        vmm_core::memory::check_range(self.size, gpa, data.len())?;
        // SAFETY: as for `read`.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(gpa as usize), data.len())
        };
        Ok(())
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Console, CPUID and a timer thread for `after`.
pub struct Host {
    timers: &'static spin::Mutex<Vec<(u64, Job)>>,
    tsc_per_ms: u64,
}

static TIMERS: spin::Mutex<Vec<(u64, Job)>> = spin::Mutex::new(Vec::new());

impl Host {
    /// Starts the timer thread on `cpu` (at the priority of the vCPU handler threads,
    /// whose locks it shares: see [`sys::PRIORITY`]).
    pub fn new(cpu: u32, tsc_per_us: u64) -> Result<Self, hyper_abi::Status> {
        let tsc_per_ms = tsc_per_us.max(1) * 1000;
        sys::spawn(
            cpu,
            Box::new(|| loop {
                let now = native::rdtsc();
                let due: Vec<Job> = {
                    let mut t = TIMERS.lock();
                    let (due, later): (Vec<_>, Vec<_>) = t.drain(..).partition(|(d, _)| *d <= now);
                    *t = later;
                    due.into_iter().map(|(_, j)| j).collect()
                };
                for job in due {
                    job();
                }
                sys::sleep_us(1000);
            }),
        )?;
        Ok(Host {
            timers: &TIMERS,
            tsc_per_ms,
        })
    }
}

impl Platform for Host {
    fn console_line(&self, line: &str) {
        sys::print_line(line);
    }
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
        CpuidResult {
            eax: r.eax,
            ebx: r.ebx,
            ecx: r.ecx,
            edx: r.edx,
        }
    }
    fn after(&self, delay_ms: u32, job: Job) {
        let due = native::rdtsc() + delay_ms as u64 * self.tsc_per_ms;
        self.timers.lock().push((due, job));
    }
    fn idle(&self) {
        sys::sleep_us(200);
    }
}
