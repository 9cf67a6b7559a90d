//! What this kernel supports, and what each backend costs to create.
//!
//! `cargo run --release --example probe`

use std::time::{Duration, Instant};

use mirror_ring::{Backend, MirrorMap};

const SIZES: [(usize, &str); 3] = [(64 << 10, "64 KiB"), (1 << 20, "1 MiB"), (64 << 20, "64 MiB")];
const REPS: usize = 201;

fn median_creation(backend: Backend, len: usize) -> std::io::Result<Duration> {
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        let map = MirrorMap::with_backend(len, backend)?;
        times.push(t.elapsed());
        drop(map); // unmapping is not part of the creation cost
    }
    times.sort();
    Ok(times[REPS / 2])
}

fn main() {
    println!("kernel:      Linux {}", mirror_ring::kernel_release());
    match Backend::Auto.resolve() {
        Ok(b) => println!("Auto picks:  {b}"),
        Err(e) => println!("Auto picks:  nothing ({e})"),
    }
    println!();
    print!("{:<12} {:<10}", "backend", "works");
    for (_, name) in SIZES {
        print!(" {name:>10}");
    }
    println!("   (median creation time of {REPS})");
    for b in Backend::CONCRETE {
        let works = b.is_available();
        print!("{:<12} {:<10}", b.name(), if works { "yes" } else { "no" });
        for (len, _) in SIZES {
            let cell = if !works {
                "-".to_string()
            } else {
                match median_creation(b, len) {
                    Ok(d) => format!("{:.1} us", d.as_secs_f64() * 1e6),
                    Err(e) => format!("error: {e}"),
                }
            };
            print!(" {cell:>10}");
        }
        println!();
    }
}
