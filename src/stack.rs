//! Gives back stack pages a connection thread no longer needs.
//!
//! A reader thread goes deep once (the HTTP handshake, the register) and
//! then sits in `read` for hours. The pages it touched on the way stay
//! resident, about 8 KiB per thread, which on a server holding 10,000 idle
//! connections is most of its memory. [`trim`] tells the kernel that the
//! stack below the caller's frame is free: those pages are dropped now and
//! come back zeroed if the thread ever goes that deep again.

/// Stack kept below the caller's frame for the calls it is about to make
/// (`read`, the channel send): those pages would be touched again at once.
const KEEP_BELOW: usize = 1024;

/// Drops the pages of this thread's stack that lie below the caller's frame
/// (minus [`KEEP_BELOW`]). Does nothing where it cannot tell the bounds.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[inline(never)]
pub fn trim() {
    let here = std::hint::black_box(0u8);
    let sp = std::ptr::addr_of!(here) as usize;
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread, and it
    // is destroyed once read. The range given to madvise lies inside this
    // thread's own stack mapping, above its guard and at least KEEP_BELOW
    // below the live frames; nothing lives there (the stack grows down), so
    // dropping those pages cannot change any value the program will read.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let mut base: *mut libc::c_void = std::ptr::null_mut();
        let mut size = 0usize;
        let mut guard = 0usize;
        let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        let page = match usize::try_from(libc::sysconf(libc::_SC_PAGESIZE)) {
            Ok(p) if p.is_power_of_two() => p,
            _ => return,
        };
        let low = (base as usize + guard).next_multiple_of(page);
        let high = sp.saturating_sub(KEEP_BELOW) & !(page - 1);
        if ok && high > low && sp < base as usize + size {
            libc::madvise(low as *mut libc::c_void, high - low, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Pages of `len` bytes at `start` that are resident, from mincore.
    fn resident(start: usize, len: usize) -> usize {
        let mut v = vec![0u8; len / 4096];
        // SAFETY: the range is this thread's stack mapping and `v` has one
        // byte per page of it.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, len, v.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        v.iter().filter(|b| *b & 1 == 1).count()
    }

    fn stack_bounds() -> (usize, usize) {
        // SAFETY: as in `trim`.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
            let mut base: *mut libc::c_void = std::ptr::null_mut();
            let mut size = 0usize;
            assert_eq!(libc::pthread_attr_getstack(&attr, &mut base, &mut size), 0);
            libc::pthread_attr_destroy(&mut attr);
            (base as usize, size)
        }
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
                let (base, size) = stack_bounds();
                let first = deep(100);
                let touched = resident(base, size);
                super::trim();
                let trimmed = resident(base, size);
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
