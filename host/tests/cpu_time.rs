//! `limits.cpu_ms` counts the CPU time the guest itself uses, so a correct
//! guest passes on a machine another process keeps busy, and one that
//! computes past its limit fails.
//!
//! This binary holds one test: it reads the process's CPU clock to
//! calibrate the guest's work, which other tests running beside it would
//! disturb.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{TestHost, guest};

/// Processes that keep every core busy until dropped.
struct Saturation(Vec<Child>);

impl Saturation {
    fn start() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self(
            (0..cores)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("starting a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Saturation {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time this process has used, all threads together.
fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) },
        0
    );
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// How often a check may be repeated when the machine's speed drifted
/// between calibration and check.
const ATTEMPTS: usize = 6;

/// Runs `/spin`, returning its status, its body and the CPU time the whole
/// process used meanwhile: an upper bound on the guest's own.
async fn timed_spin(host: &TestHost, iterations: u64) -> (u16, String, Duration) {
    let before = process_cpu_time();
    let res = host.get(&format!("/spin?iterations={iterations}")).await;
    let used = process_cpu_time() - before;
    let status = res.status().as_u16();
    (status, res.text().await.unwrap(), used)
}

/// Iterations of `/spin` per millisecond of CPU time, measured on this
/// machine as it is now: the fastest of a few runs of about 200 ms each,
/// since host work and other threads of this process only ever add CPU
/// time to a run.
async fn iterations_per_ms(host: &TestHost) -> f64 {
    let mut iterations = 1_000_000u64;
    let mut fastest: f64 = 0.0;
    let mut long_runs = 0;
    while long_runs < 3 {
        let (status, body, used) = timed_spin(host, iterations).await;
        assert_eq!(status, 200, "{body}");
        if used < Duration::from_millis(150) {
            iterations *= 2;
            continue;
        }
        long_runs += 1;
        fastest = fastest.max(iterations as f64 / (used.as_secs_f64() * 1e3));
    }
    fastest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_limit_counts_the_guests_own_cpu_time_on_a_saturated_machine() {
    let host = TestHost::start().await;
    let misbehave = guest("misbehave");
    // Calibration runs under a generous limit; the checks under 50 ms.
    let generous = misbehave
        .config
        .replace("cpu_ms = 50", "cpu_ms = 60000")
        .replace("wall_ms = 2000", "wall_ms = 600000");
    assert_ne!(generous, misbehave.config, "misbehave's limits changed");
    let deployed = host.upload("misbehave", misbehave.wasm.clone(), &generous);
    assert_eq!(deployed.await.status(), 201);

    let _busy = Saturation::start();
    let rate = iterations_per_ms(&host).await;
    eprintln!("calibrated: {rate:.0} iterations per CPU millisecond, with every core busy");

    let limited = misbehave
        .config
        .replace("wall_ms = 2000", "wall_ms = 600000");
    let deployed = host.upload("misbehave", misbehave.wasm.clone(), &limited);
    assert_eq!(deployed.await.status(), 201);

    // The calibration steers how much work to ask for; the checks below
    // judge each response by the CPU time the request really used, so a
    // machine whose speed drifts (a busy sibling hyperthread, a noisy
    // neighbour) can only make the test try again, never pass a wrong
    // limit or fail a right one.
    let mut rate = rate;
    let mut passed = false;
    for _ in 0..ATTEMPTS {
        let started = std::time::Instant::now();
        let (status, body, used) = timed_spin(&host, (rate * 40.0) as u64).await;
        if status == 200 {
            eprintln!(
                "40 ms of CPU took {:?} of wall-clock time with every core busy",
                started.elapsed()
            );
            passed = true;
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            used >= Duration::from_millis(45),
            "stopped for exceeding 50 ms of CPU after using only {used:?}: {body}"
        );
        // The work ran slower than calibrated; ask for less.
        rate *= 0.85;
    }
    assert!(passed, "40 ms of work never finished under a 50 ms limit");

    let mut stopped = false;
    for _ in 0..ATTEMPTS {
        let iterations = (rate * 60.0) as u64;
        let (status, body, used) = timed_spin(&host, iterations).await;
        if status == 503 {
            assert!(body.contains("CPU time limit of 50 ms exceeded"), "{body}");
            assert!(
                used >= Duration::from_millis(45),
                "stopped after using only {used:?}"
            );
            stopped = true;
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            used < Duration::from_millis(60),
            "a guest used {used:?} of CPU under a 50 ms limit and was not stopped"
        );
        // The work ran faster than calibrated (the host's own share of
        // `used` is small): ask for more.
        rate = iterations as f64 / (used.as_secs_f64() * 1e3);
    }
    assert!(stopped, "60 ms of work was never stopped by a 50 ms limit");
    host.shutdown().await;
}
