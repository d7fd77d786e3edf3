//! The one allocator setting the binary makes.
//!
//! mimalloc returns memory that stayed free for a while to the operating system (its
//! `purge_delay`). An earlier build kept it ten seconds: with SQLite allocating through glibc and
//! the rest through mimalloc, a one-second delay cost about a tenth of an import's CPU in pages
//! given back and faulted in again. Since every allocation — SQLite's too — goes through mimalloc
//! (the `override` feature), one second costs nothing measurable (import of 100,000 entities:
//! CPU ratio 1.00, wall 0.99, pair by pair) and lowers the peak: 217 against 251 MiB for that
//! import, 556 against 666–683 MiB for `serve` of the Backstage workload's 100,000 entities.
//! It is set explicitly because the default differs between mimalloc versions.
//! `MIMALLOC_PURGE_DELAY` in the environment still wins, for operators who want another value.

/// mimalloc's `mi_option_purge_delay`. libmimalloc-sys does not name it; mimalloc.h (v2 and v3)
/// declares it directly before `mi_option_use_numa_nodes`.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// How long freed memory stays with the process, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

/// Sets the purge delay, unless the environment sets it. Call first thing in `main`, before any
/// thread starts.
#[allow(unsafe_code)]
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is not
    // thread-safe, and this runs at the start of `main`, while the process has one thread.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index really is the purge delay: untouched (tests do not run `main`), it
    /// holds what `MIMALLOC_PURGE_DELAY` says, or else mimalloc's default purge delay (1,000 ms
    /// in v3), which no neighbouring option has.
    #[test]
    #[allow(unsafe_code)]
    fn the_option_is_the_purge_delay() {
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000);
        // SAFETY: reads an integer from mimalloc's option table.
        let value = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(value, expected);
    }
}
