//! Waiting for the kernel (or a process) to get somewhere, with a deadline.

use std::{
    thread,
    time::{Duration, Instant},
};

/// Checks `done` every `step` until it holds or `within` has passed;
/// whether it held.
pub fn until(within: Duration, step: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(step);
    }
}
