//! Panics of a dependency on bad input, caught and turned into errors: [`quiet`] runs a
//! closure and returns `None` if it panicked; while it runs, [`is_quiet`] is true on its
//! thread, so the binary's panic hook stays silent for a panic that is not a bug of ours.

use std::cell::Cell;

thread_local! {
    static QUIET: Cell<usize> = const { Cell::new(0) };
}

/// Whether the current thread is inside [`quiet`].
pub fn is_quiet() -> bool {
    QUIET.with(|q| q.get() > 0)
}

/// Runs `f`; `None` if it panicked.
pub fn quiet<T>(f: impl FnOnce() -> T) -> Option<T> {
    QUIET.with(|q| q.set(q.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    QUIET.with(|q| q.set(q.get() - 1));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_is_none_and_the_scope_ends() {
        assert_eq!(super::quiet(|| 3), Some(3));
        let r: Option<()> = super::quiet(|| panic!("bad input"));
        assert!(r.is_none());
        assert!(!super::is_quiet());
    }
}
