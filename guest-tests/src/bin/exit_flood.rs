#![no_std]
#![no_main]
guest_tests::guest!(main);
fn main() {
    guest_tests::fail!("not written yet");
}
