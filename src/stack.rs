//! Gives back stack pages a connection thread no longer needs.
//!
//! A reader thread goes deep once (the HTTP handshake, the register) and
//! then sits in `read` for hours; a writer goes deepest while it starts up.
//! The pages touched on the way stay resident for the life of the thread,
//! a few KiB each, which adds up over thousands of idle connections.
//! [`trim`] tells the kernel that the stack below the caller's frame is
//! free: those pages are dropped now and come back zeroed if the thread
//! ever goes that deep again.

/// Stack kept below the caller's frame for the calls it is about to make
/// (`read`, the channel send): those pages would be touched again at once.
const KEEP_BELOW: usize = 1024;

/// This thread's stack: its lowest usable address (above the guard) and
/// its top, both as the kernel sees them, or None where glibc cannot tell.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, and it
    // is destroyed once read; the getters only write to the locals given.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut base: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0usize;
        let mut guard = 0usize;
        let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (base as usize + guard, base as usize + size))
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn page_size() -> Option<usize> {
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).ok().filter(|p| p.is_power_of_two())
}

/// Drops the pages of this thread's stack that lie below the caller's frame
/// (minus [`KEEP_BELOW`]). Does nothing where it cannot tell the bounds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[inline(never)]
pub fn trim() {
    let here = std::hint::black_box(0u8);
    let sp = std::ptr::addr_of!(here) as usize;
    let (Some((low, top)), Some(page)) = (bounds(), page_size()) else {
        return;
    };
    let low = low.next_multiple_of(page);
    let high = sp.saturating_sub(KEEP_BELOW) & !(page - 1);
    if high > low && sp < top {
        // SAFETY: [low, high) lies inside this thread's own stack mapping,
        // above its guard and at least KEEP_BELOW below the live frames;
        // nothing lives there (the stack grows down), so dropping those
        // pages cannot change any value the program will read.
        unsafe {
            libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::{bounds, page_size};

    /// Pages of this thread's stack that are resident, from mincore.
    fn resident() -> usize {
        let (low, top) = bounds().unwrap();
        let page = page_size().unwrap();
        let mut v = vec![0u8; (top - low).div_ceil(page)];
        let low = low & !(page - 1);
        // SAFETY: the range is this thread's stack mapping and `v` has one
        // byte per page of it.
        let r = unsafe { libc::mincore(low as *mut libc::c_void, top - low, v.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        v.iter().filter(|b| *b & 1 == 1).count()
    }

    #[inline(never)]
    fn deep(n: usize) -> usize {
        let buf = std::hint::black_box([n as u8; 1024]);
        if n == 0 {
            buf[0] as usize
        } else {
            deep(n - 1) + buf[1] as usize
        }
    }

    /// Goes 100 KiB deep, trims: the pages are no longer resident, and the
    /// thread can go deep again with the same results.
    #[test]
    fn trim_drops_the_deep_pages_and_the_thread_goes_on() {
        let t = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let first = deep(100);
                let touched = resident();
                super::trim();
                let trimmed = resident();
                let again = deep(100);
                (first, again, touched, trimmed)
            })
            .unwrap();
        let (first, again, touched, trimmed) = t.join().unwrap();
        assert_eq!(first, again);
        assert!(touched >= 25, "the deep call touched {touched} pages");
        assert!(
            trimmed + 20 <= touched,
            "{touched} pages before trim, {trimmed} after"
        );
    }
}
