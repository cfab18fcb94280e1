//! `claim_template`: claim templates (`gatehouse_claim_template::Template`), parsed from
//! arbitrary text of at most 4 KiB and rendered against a fixed context like the one the
//! identity server renders claims with.
//!
//! For every input it checks that:
//! - parsing never panics, and a template parses the same twice (same error, same
//!   `is_static`);
//! - rendered text is at most 64 KiB and a rendered claim's string at most 64 KiB, the
//!   crate's documented cap on any produced string (`lib.rs`, "Limits");
//! - a rendered claim's JSON is bounded by the 4 MiB evaluation budget (at most six bytes of
//!   JSON per byte of produced values, for `\u00XX` escapes);
//! - parse and both renders together allocate at most 64 MiB more than they started with
//!   (counted by the allocator below), and take at most [`CPU_LIMIT`] of this thread's CPU
//!   time: render time and memory stay bounded, whatever the template.
//!
//! Input: the template text (invalid UTF-8 is replaced; claim values are JSON strings).
#![no_main]

use chrono::{TimeZone, Utc};
use gatehouse_claim_template::{Template, Value};
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The longest template tried: claim values are short, and the limits must hold for inputs a
/// fuzzer can explore.
const MAX_SOURCE: usize = 4 * 1024;
/// The crate's cap on any produced string and on the rendered text (`eval::MAX_STRING`).
const MAX_STRING: usize = 64 * 1024;
/// The crate's budget of produced values per render (`eval::MAX_BUDGET`).
const MAX_BUDGET: usize = 4 * 1024 * 1024;
/// Heap growth allowed for one parse and two renders.
const MAX_HEAP: usize = 64 * 1024 * 1024;
/// CPU time allowed for one parse and two renders, in a sanitizer build that runs several
/// times slower than a release one.
const CPU_LIMIT: Duration = Duration::from_secs(2);

/// The system allocator, counting the bytes live and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// This thread's CPU time: unlike wall time, it does not count waiting for a busy machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The context claims are rendered with: an auth server and a client, as in the crate's
/// tests and the identity server's runtime.
fn context() -> &'static Value {
    static CONTEXT: OnceLock<Value> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let t0 = Utc
            .with_ymd_and_hms(2024, 1, 2, 3, 4, 5)
            .single()
            .expect("a valid date");
        Value::map([
            (
                "AuthServer",
                Value::map([
                    ("ID", Value::from("5f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f")),
                    ("CreatedAt", Value::from(t0)),
                    ("Name", Value::from("main")),
                    ("Audience", Value::from("https://api.example.com")),
                    ("Labels", Value::map([("team", "core")])),
                ]),
            ),
            (
                "Client",
                Value::map([
                    ("ID", Value::from("client-123")),
                    ("CreatedAt", Value::from(t0)),
                    ("Name", Value::from("Billing App")),
                    ("Labels", Value::map([("tier", "gold")])),
                    ("GrantTypes", Value::list(["client_credentials"])),
                    ("AllowAllScopes", Value::from(true)),
                ]),
            ),
        ])
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_SOURCE {
        return;
    }
    let source = String::from_utf8_lossy(data);
    let ctx = context();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = thread_cpu_time();

    let parsed = Template::parse(&source);
    let again = Template::parse(&source);
    assert_eq!(
        parsed
            .as_ref()
            .map(Template::is_static)
            .map_err(Clone::clone),
        again
            .as_ref()
            .map(Template::is_static)
            .map_err(Clone::clone),
        "parsed differently twice"
    );
    if let Ok(template) = &parsed {
        if let Ok(text) = template.render_text(ctx) {
            assert!(
                text.len() <= MAX_STRING,
                "rendered text of {} bytes",
                text.len()
            );
        }
        if let Ok(claim) = template.render(ctx) {
            if let serde_json::Value::String(s) = &claim {
                assert!(s.len() <= MAX_STRING, "claim string of {} bytes", s.len());
            }
            let json = serde_json::to_string(&claim).expect("a claim serialises");
            assert!(
                json.len() <= 6 * MAX_BUDGET + 2 * MAX_SOURCE,
                "claim JSON of {} bytes",
                json.len()
            );
        }
    }

    let cpu = thread_cpu_time().saturating_sub(started);
    let heap = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(cpu <= CPU_LIMIT, "parse and render took {cpu:?} of CPU");
    assert!(
        heap <= MAX_HEAP,
        "parse and render took {heap} bytes of heap"
    );
});
