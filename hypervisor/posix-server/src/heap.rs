//! The server's heap: the lazily paged range the roottask backs on first touch
//! (`native::LAZY_BASE`), so it grows with use up to the component's quota.
//!
//! Its lock is a [`native::sync::Mutex`], whose waiters sleep in the kernel: the
//! server's handlers run on the time of the program threads they serve, at
//! their priorities, so a spinning waiter (a timer thread's handler) could spin
//! for ever on a CPU where the holder (a background vCPU thread's handler) never
//! runs again.
//!
//! Owns: the global allocator. Must not touch: what is allocated.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;

struct ServerHeap(native::sync::Mutex<Heap>);

#[global_allocator]
static HEAP: ServerHeap = ServerHeap(native::sync::Mutex::new(Heap::empty()));

// SAFETY: every access to the linked-list heap goes through the mutex; the
// heap hands out disjoint blocks of its range and takes back only what it gave.
unsafe impl GlobalAlloc for ServerHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout`.
            unsafe { self.0.lock().deallocate(ptr, layout) }
        }
    }
}

/// Gives the heap its range; first thing at start, before any allocation.
/// Until [`sleep_on`] waiters spin (there is one thread then).
pub fn init() {
    // SAFETY: called once at start before any allocation; the range is ours
    // alone (the roottask pages it in on demand and nothing else maps there).
    unsafe {
        HEAP.0
            .lock()
            .init(native::LAZY_BASE as *mut u8, native::LAZY_SIZE as usize)
    };
}

/// Makes waiters for the heap sleep on a semaphore at `sel` (a free
/// selector); before the program's first thread starts.
pub fn sleep_on(sel: u64) {
    HEAP.0.init(sel);
}
