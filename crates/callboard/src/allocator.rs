//! The allocator settings the binary makes.
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
//!
//! Transparent huge pages are turned off for the process. mimalloc asks the kernel for them
//! (`madvise(MADV_HUGEPAGE)`) on its arenas, and a 2 MiB huge page is resident as a whole as soon
//! as one byte of it is touched: with a dozen threads each allocating from pages of its own, a
//! fifth of `serve`'s resident memory was huge pages mostly empty (the Backstage workload's
//! 100,000 entities: peak 462–500 MiB with them, 384–397 MiB without, no slower). This is what
//! mimalloc's own `MIMALLOC_ALLOW_THP=0` does; setting that variable (to anything) leaves the
//! process as the system configures it.

/// mimalloc's `mi_option_purge_delay`. libmimalloc-sys does not name it; mimalloc.h (v2 and v3)
/// declares it directly before `mi_option_use_numa_nodes`.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = libmimalloc_sys::mi_option_use_numa_nodes - 1;

/// How long freed memory stays with the process, in milliseconds.
const PURGE_DELAY_MS: std::ffi::c_long = 1_000;

/// Sets the purge delay and turns transparent huge pages off, each unless the environment says
/// otherwise. Call first thing in `main`, before any thread starts.
#[allow(unsafe_code)]
pub fn configure() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is not
        // thread-safe, and this runs at the start of `main`, while the process has one thread.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // The kernel's per-process switch: it applies to mappings made before it too (mimalloc's
        // first arena is reserved before `main`), at their next fault. Failure (a kernel
        // without it) leaves huge pages as they were, which is only more memory.
        // SAFETY: PR_SET_THP_DISABLE takes one integer argument and touches no memory of ours.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether transparent huge pages are off for this process (`None`: the kernel cannot tell).
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn huge_pages_disabled() -> Option<bool> {
        // SAFETY: PR_GET_THP_DISABLE reads a flag of the calling process.
        let state = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        (state >= 0).then_some(state == 1)
    }

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

    /// `configure` really turns huge pages off (as mimalloc's `MIMALLOC_ALLOW_THP=0` would), and
    /// leaves them alone when the environment asks to. Run in a child process: the flag is the
    /// whole process's, and other tests share this one.
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_turned_off_unless_the_environment_says() {
        if std::env::var_os("CALLBOARD_TEST_THP_CHILD").is_some() {
            configure();
            println!("disabled={:?}", huge_pages_disabled());
            return;
        }
        let run = |allow: Option<&str>| {
            let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"));
            child
                .args([
                    "--exact",
                    "allocator::tests::huge_pages_are_turned_off_unless_the_environment_says",
                    "--nocapture",
                ])
                .env("CALLBOARD_TEST_THP_CHILD", "1")
                .env_remove("MIMALLOC_ALLOW_THP");
            if let Some(value) = allow {
                child.env("MIMALLOC_ALLOW_THP", value);
            }
            String::from_utf8(child.output().expect("the child runs").stdout).expect("utf-8")
        };
        let turned_off = run(None);
        assert!(turned_off.contains("disabled=Some(true)"), "{turned_off}");
        let left = run(Some("1"));
        assert!(left.contains("disabled=Some(false)"), "{left}");
    }
}
