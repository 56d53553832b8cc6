//! The server's heap: the lazily paged range the roottask backs on first touch
//! (`native::LAZY_BASE`), so it grows with use up to the component's quota.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

pub fn init() {
    // SAFETY: called once at start before any allocation; the range is ours
    // alone (the roottask pages it in on demand and nothing else maps there).
    unsafe {
        HEAP.lock()
            .init(native::LAZY_BASE as *mut u8, native::LAZY_SIZE as usize)
    };
}
