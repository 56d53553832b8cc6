//! Hostile: asks the VMM (`INVALID_STATE`) to resume it with an invalid guest state.
//! The VMM must report the failed VM entry and stop the VM.
#![no_std]
#![no_main]

use guest_tests::device::{self, CMD_INVALID_STATE};
use guest_tests::{fail, guest, println};

guest!(main);

fn main() {
    device::require();
    println!("asking for an invalid state");
    device::command(CMD_INVALID_STATE, 0, 0);
    fail!("the VMM resumed the guest after INVALID_STATE");
}
