//! What the demo's sections claim, checked: a mismatch is recorded and
//! fails the demo at the end.

/// What a section showed that is not what it claims: every section checks
/// what it prints, and any mismatch fails the demo.
pub(crate) static MISMATCHES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records a mismatch unless `got` is `want`; returns `got`, for printing.
pub(crate) fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> T {
    if got != want {
        MISMATCHES
            .lock()
            .unwrap()
            .push(format!("{what}: {got:?}, expected {want:?}"));
    }
    got
}

pub(crate) fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
