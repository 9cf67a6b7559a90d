//! The comparison demo: which ring, what size, for my workload, on this machine. mirror-ring as
//! users call it (`write_all`, `read`, `fill_buf`) and spinning, side by side with rtrb,
//! ringbuf, a pipe and a socketpair (and the rings built to explain its numbers: a split-copy
//! ring and a minimal mirrored ring), in one run, interleaved, with medians and per-repetition
//! ratios, ending with what to use on this machine.
//!
//! ```sh
//! cargo run --release --all-features --example compare               # about 30 s
//! cargo run --release --all-features --example compare -- --quick    # CI-sized, about 10 s
//! cargo run --release --all-features --example compare -- --goals    # also the goals table
//! ```
//!
//! Sections, in order: a self-check; 64-byte records one per call (a parser loop) against
//! rtrb's chunk API; bulk 4 KiB writes through 1 and 4 MiB rings, with the regime (how far
//! behind the producer the reader runs); round trips against rtrb and the floors; the ring size
//! per write size, with the recommended size next to the default capacity; streaming by write
//! size between threads and across fork; huge pages (when some are free); creation; framed
//! messages; async ends and relays (feature `tokio`); then "On this machine", the answers.
//!
//! Options: `--reps N` (repetitions, default 7; 3 with `--quick`), `--target-ms N` (length of
//! one timed run, default 10; 3 with `--quick`), `--goals` (print the goals table),
//! `--svg PATH` (the throughput-by-write-size chart, and next to it `-ratios` and `-ring-size`
//! charts), `--spin-sweep` (blocking throughput, round trips and CPU use per spin budget),
//! `--nt` (non-temporal stores in the producer, against ordinary copies), `--only SECTIONS`
//! (comma-separated: check, records, bulk, latency, sizes, threads, fork, huge, single, create,
//! messages, async), `--across FILE...` (the goals of several saved `--goals` runs side by side per
//! placement; runs whose placement moved are left out and counted). Tools: `--rec NAME,...
//! RING REPS` (records only), `--rtt REPS` (round trips only), `--ab NAME,... WRITE RING REPS`
//! and `--repeat NAME WRITE RING N` (streaming only), `--profile NAME WRITE OPS` and
//! `--rec-profile NAME OPS` (one thread, to run under `valgrind --tool=callgrind`).
//!
//! Numbers are GB/s = 1e9 bytes per second (records: records per second), each byte copied in
//! by the producer and out by the consumer; the producer runs on CPU 0, the consumer on CPU 1.
//! Absolute figures on virtual machines swing several-fold as the host moves the two vCPUs;
//! compare the ratios, which are taken within one run. Every repetition runs the competitors in
//! a rotated order, between two probes of the core-to-core round trip
//! (`benches/support/interleave.rs`); the report says which placement each section ran under,
//! and ends with the run's placement verdict.

#[path = "../benches/support/mod.rs"]
mod support;

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use mirror_ring::Backend;
use support::*;

/// The spin budget `RingOptions` uses by default (`src/wait.rs`, `DEFAULT_SPIN`).
const DEFAULT_SPIN: Duration = Duration::from_micros(50);

struct Cfg {
    quick: bool,
    reps: usize,
    /// Target duration of one timed streaming run.
    target: Duration,
    svg: Option<String>,
    sweep: bool,
    nt: bool,
    only: Option<Vec<String>>,
    /// Print the goals table of issue 14 (and the older goals) at the end.
    goals: bool,
}

impl Cfg {
    fn from_args() -> Cfg {
        let mut args = std::env::args().skip(1);
        let mut cfg = Cfg {
            quick: false,
            reps: 0,
            target: Duration::ZERO,
            svg: None,
            sweep: false,
            nt: false,
            only: None,
            goals: false,
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => cfg.quick = true,
                "--reps" => cfg.reps = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
                "--svg" => cfg.svg = Some(args.next().unwrap_or_else(|| usage())),
                "--target-ms" => {
                    let ms: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    cfg.target = Duration::from_millis(ms);
                }
                "--spin-sweep" => cfg.sweep = true,
                "--goals" => cfg.goals = true,
                "--across" => across(&args.collect::<Vec<_>>()),
                "--nt" => cfg.nt = true,
                "--only" => {
                    cfg.only = Some(args.next().unwrap_or_else(|| usage()).split(',').map(str::to_string).collect())
                }
                "--ab" => {
                    // --ab NAME,NAME,... WRITE RING REPS: those competitors only, interleaved,
                    // REPS times; medians and per-repetition ratios to the first.
                    let names = args.next().unwrap_or_else(|| usage());
                    let write = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let ring = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let reps = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let target = if cfg.target.is_zero() { Duration::from_millis(12) } else { cfg.target };
                    ab(&names, write, ring, reps, target)
                }
                "--rec" => {
                    // --rec NAME,NAME,... RING REPS: 64-byte records, those queues only,
                    // interleaved; per-repetition ratios to the first, per placement.
                    let names = args.next().unwrap_or_else(|| usage());
                    let ring = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let reps = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let target = if cfg.target.is_zero() { Duration::from_millis(10) } else { cfg.target };
                    rec_ab(&names, ring, reps, target)
                }
                "--rtt" => {
                    // --rtt REPS: spinning round trips, mirror-ring against rtrb, interleaved.
                    let reps = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let kinds = [
                        Pinger::MirrorSpin,
                        Pinger::Rtrb,
                        Pinger::MirrorBlocking(Duration::from_micros(50)),
                        Pinger::Atomic,
                    ];
                    let mut cases: Vec<Box<dyn Contender>> =
                        kinds.iter().map(|&k| Box::new(RttCase::new(k, Mode::Threads)) as Box<dyn Contender>).collect();
                    let out = interleave(&mut cases, reps, Duration::from_millis(10), &mut |_| {});
                    println!("{}", out.placement_line());
                    for (i, name) in out.names.iter().enumerate() {
                        let all: Vec<String> = out.all_rates(i).iter().map(|v| format!("{:.0}", 1e9 / v)).collect();
                        // rate(rtrb) / rate(this) = this round trip / rtrb's.
                        println!(
                            "{name:>32}: median {:5.0} ns [{}] / rtrb: {}",
                            1e9 / out.median_rate(i),
                            all.join(" "),
                            out.ratio_per_band(1, i)
                        );
                    }
                    std::process::exit(0)
                }
                "--rec-profile" => {
                    // --rec-profile NAME OPS: one thread writing and reading back OPS 64-byte
                    // records, for `valgrind --tool=callgrind` (instructions per record).
                    let name = args.next().unwrap_or_else(|| usage());
                    let ops = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let q = RecQueue::from_name(&name).unwrap_or_else(|| usage());
                    let t = Instant::now();
                    match rec_single(q, MIB, ops) {
                        Ok(sum) => println!("{name}: {ops} records in {:?} (checksum {sum})", t.elapsed()),
                        Err(e) => println!("{name}: {e}"),
                    }
                    std::process::exit(0)
                }
                "--profile" => {
                    // --profile NAME WRITE OPS: one single-thread loop of one competitor, nothing
                    // else, for `valgrind --tool=callgrind` (instruction counts per operation).
                    let name = args.next().unwrap_or_else(|| usage());
                    let write = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let ops = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    profile(&name, write, ops)
                }
                "--repeat" => {
                    // --repeat NAME WRITE RING N: one configuration N times in a row, each sample
                    // printed with its preemption count and the core-to-core round trip right
                    // after it (how near the host placed the two vCPUs).
                    let name = args.next().unwrap_or_else(|| usage());
                    let write = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let ring = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let n = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    repeat(
                        &name,
                        write,
                        ring,
                        n,
                        if cfg.target.is_zero() { Duration::from_millis(12) } else { cfg.target },
                    )
                }
                "-h" | "--help" => usage(),
                _ => usage(),
            }
        }
        if cfg.reps == 0 {
            cfg.reps = if cfg.quick { 3 } else { 7 };
        }
        if cfg.target.is_zero() {
            cfg.target = if cfg.quick { Duration::from_millis(3) } else { Duration::from_millis(10) };
        }
        cfg
    }

    fn wants(&self, section: &str) -> bool {
        match &self.only {
            Some(list) => list.iter().any(|s| s == section),
            // The one-thread table is for profiling, not for choosing a ring: asked for only.
            None => (!(self.sweep || self.nt) && section != "single") || section == "check",
        }
    }
}

fn repeat(name: &str, write: usize, ring: usize, n: usize, target: Duration) -> ! {
    let c = competitor(name);
    let run = calibrate(c, Mode::Threads, ring, write, target).expect("calibrate");
    println!(
        "{name}: {} B writes, {} ring, {} bytes timed after {} warm-up",
        write,
        fmt_size(ring),
        run.total,
        run.warm
    );
    for i in 0..n {
        let t = stream(c, Mode::Threads, ring, &run).expect("stream");
        let rtt = core_round_trip();
        println!(
            "{i:3}: {:6.2} GB/s  run-queue delay {:?} of {:?}  atomic round trip {rtt:.0} ns",
            gbps(run.total, t.time),
            t.preempted,
            t.time
        );
    }
    std::process::exit(0)
}

fn ab(names: &str, write: usize, ring: usize, reps: usize, target: Duration) -> ! {
    let comps: Vec<Competitor> = names.split(',').map(competitor).collect();
    let runs: Vec<Run> =
        comps.iter().map(|&c| calibrate(c, Mode::Threads, ring, write, target).expect("calibrate")).collect();
    let mut samples = vec![Vec::new(); comps.len()];
    let mut waits = vec![Vec::new(); comps.len()];
    // Each repetition's placement, from a probe before and after it (`None`: it moved).
    let mut bands = Vec::with_capacity(reps);
    for rep in 0..reps {
        let before = core_round_trip();
        for i in rotation(comps.len(), rep) {
            let c = comps[i];
            let mut t = stream(c, Mode::Threads, ring, &runs[i]).expect("stream");
            for _ in 0..2 {
                if t.disturbed() {
                    t = stream(c, Mode::Threads, ring, &runs[i]).expect("stream");
                }
            }
            samples[i].push(gbps(runs[i].total, t.time));
            if let Some((wp, wc)) = t.waits {
                let mib = runs[i].total as f64 / MIB as f64;
                let lag = t.lag.map(|l| fmt_size(l as usize / KIB * KIB)).unwrap_or_default();
                waits[i].push(format!("{:.1}/{:.1} lag {lag}", wp as f64 / mib, wc as f64 / mib));
            }
        }
        bands.push(Placement::between(before, core_round_trip()));
    }
    let moved = bands.iter().filter(|b| b.is_none()).count();
    for (i, c) in comps.iter().enumerate() {
        let m = median(&samples[i]);
        let all: Vec<String> = samples[i].iter().map(|v| format!("{v:.2}")).collect();
        // Every repetition ran every competitor (a failed sample ends the tool), so the
        // samples pair up by index; ratios are summarised per placement band, and a
        // repetition during which the vCPUs moved is left out.
        let per_band: Vec<String> = Placement::ALL
            .iter()
            .filter_map(|&band| {
                let ratios: Vec<f64> = (0..samples[i].len())
                    .filter(|&r| bands[r] == Some(band))
                    .map(|r| samples[i][r] / samples[0][r])
                    .collect();
                Summary::of(&ratios).map(|s| s.ratio_text_in(band))
            })
            .collect();
        let r = if per_band.is_empty() { "no repetition in one placement".into() } else { per_band.join("; ") };
        println!("{:>22}: median {m:6.2} GB/s, {r} the first  [{}]", c.name(), all.join(" "));
        if !waits[i].is_empty() {
            println!("{:>22}  waits per MiB, producer/consumer: [{}]", "", waits[i].join(" "));
        }
    }
    if moved > 0 {
        println!("{moved} of {reps} repetitions left out of the ratios: the placement moved during them");
    }
    println!("core-to-core round trip now {}", fmt_ns(core_round_trip()));
    std::process::exit(0)
}

fn rec_ab(names: &str, ring: usize, reps: usize, target: Duration) -> ! {
    let queues: Vec<RecQueue> = names
        .split(',')
        .map(|n| {
            RecQueue::from_name(n).unwrap_or_else(|| {
                let all: Vec<String> = RecQueue::ALL.iter().map(|q| q.name()).collect();
                eprintln!("unknown record queue {n}; one of: {}", all.join(", "));
                std::process::exit(2)
            })
        })
        .collect();
    let mut cases: Vec<Box<dyn Contender>> =
        queues.iter().map(|&q| Box::new(RecCase::new(q, ring)) as Box<dyn Contender>).collect();
    let out = interleave(&mut cases, reps, target, &mut |_| {});
    println!("{}", out.placement_line());
    for (i, name) in out.names.iter().enumerate() {
        let all: Vec<String> = out.all_rates(i).iter().map(|v| format!("{:.1}", v / 1e6)).collect();
        println!(
            "{name:>16}: median {:7.1} M rec/s [{}] vs first: {}",
            out.median_rate(i) / 1e6,
            all.join(" "),
            out.ratio_per_band(i, 0)
        );
    }
    for n in &out.notes {
        println!("- {n}");
    }
    std::process::exit(0)
}

/// The bare atomic round trip between the two CPUs right now: how near the host has placed
/// them (recorded for the run's placement verdict).
fn core_round_trip() -> f64 {
    probe_and_record()
}

fn competitor(name: &str) -> Competitor {
    let all = [
        Competitor::MirrorIo,
        Competitor::MirrorHuge,
        Competitor::Mirror(Backend::Auto),
        Competitor::Mirror(Backend::Memfd),
        Competitor::MirrorBlocking(Backend::Auto, Duration::from_micros(50)),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::Ringbuf,
        Competitor::RingbufCached,
        Competitor::MinimalNt,
        Competitor::Pipe,
        Competitor::Socketpair,
        Competitor::MirrorWatermark(16 * KIB),
        Competitor::MirrorWatermark(64 * KIB),
        Competitor::MirrorWatermark(256 * KIB),
        Competitor::MirrorWatermark(MIB),
    ];
    let Some(c) = all.into_iter().find(|c| c.name() == name) else {
        let names: Vec<String> = all.iter().map(|c| c.name()).collect();
        eprintln!("unknown competitor {name}; one of: {}", names.join(", "));
        std::process::exit(2)
    };
    c
}

fn profile(name: &str, write: usize, ops: u64) -> ! {
    let c = competitor(name);
    match single_thread(c, write, ops) {
        Ok(d) => println!("{name}: {ops} x ({write} B write + read) in {d:?}"),
        Err(e) => println!("{name}: {e}"),
    }
    std::process::exit(0)
}

fn usage() -> ! {
    eprintln!(
        "usage: compare [--quick] [--reps N] [--target-ms N] [--goals] [--svg PATH] [--spin-sweep] [--nt] \
         [--only check,records,bulk,latency,sizes,threads,fork,huge,single,create,messages,async]\n       \
         compare --across FILE... (saved outputs: goals per placement, moved runs left out)\n       \
         compare --rec NAME,... RING REPS | --rtt REPS | --ab NAME,... WRITE RING REPS | --repeat NAME WRITE RING N\n       \
         compare --profile NAME WRITE OPS | --rec-profile NAME OPS (one thread, for callgrind)"
    );
    std::process::exit(2)
}

/// The progress line on stderr (rewritten in place on a terminal, one line per section
/// otherwise).
struct Progress {
    tty: bool,
    section: String,
    started: Instant,
    /// Timed streaming runs kept, and how many of them were disturbed even after repeating.
    runs: usize,
    preempted: usize,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            section: String::new(),
            started: Instant::now(),
            runs: 0,
            preempted: 0,
        }
    }

    fn step(&mut self, section: &str, detail: &str) {
        if self.tty {
            eprint!("\r\x1b[K[{:5.1}s] {section}: {detail}", self.started.elapsed().as_secs_f64());
            let _ = std::io::stderr().flush();
        } else if section != self.section {
            eprintln!("[{:5.1}s] measuring {section} ...", self.started.elapsed().as_secs_f64());
        }
        self.section = section.to_string();
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
    }
}

const WRITES: [usize; 4] = [64, KIB, 4 * KIB, 64 * KIB];
const RING_SIZES: [usize; 6] = [64 * KIB, 256 * KIB, MIB, 2 * MIB, 4 * MIB, 16 * MIB];
const QUICK_RING_SIZES: [usize; 4] = [64 * KIB, MIB, 4 * MIB, 16 * MIB];

/// Median GB/s per (cell, competitor), each cell's outcome (named), and the section's report
/// (placement, notes); cells are (ring size, write size). Within a cell every repetition runs
/// each competitor once, in rotated order, between two placement probes (`interleave`); the
/// ratio tables are taken from the outcomes, per repetition.
fn measure(
    cfg: &Cfg,
    p: &mut Progress,
    section: &str,
    mode: Mode,
    comps: &[Competitor],
    cells: &[(usize, usize)],
) -> (Vec<Vec<f64>>, Named<Outcome>, String) {
    let (out, outcomes) = measure_cells(cfg, p, section, mode, comps, cells);
    let report = report_cells(&outcomes);
    (out, outcomes, report)
}

/// Things with a name each ("1 MiB ring, 4 KiB writes", "mirror-ring/io").
type Named<T> = Vec<(String, T)>;

/// As [`measure`], without the report.
fn measure_cells(
    cfg: &Cfg,
    p: &mut Progress,
    section: &str,
    mode: Mode,
    comps: &[Competitor],
    cells: &[(usize, usize)],
) -> (Vec<Vec<f64>>, Named<Outcome>) {
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    for &(cap, write) in cells {
        let mut cases: Vec<Box<dyn Contender>> =
            comps.iter().map(|&c| Box::new(StreamCase::new(c, mode, cap, write)) as Box<dyn Contender>).collect();
        let where_ = format!("{} ring, {} writes", fmt_size(cap), fmt_size(write));
        let o = interleave(&mut cases, cfg.reps, cfg.target, &mut |step| p.step(section, &format!("{where_}, {step}")));
        p.runs += o.samples;
        p.preempted += o.disturbed;
        out.push((0..comps.len()).map(|i| o.median_rate(i) / 1e9).collect());
        outcomes.push((where_, o));
    }
    p.clear();
    (out, outcomes)
}

/// After a section's tables: the placement its repetitions ran under (one line when every cell
/// saw the same), and why any competitor has missing numbers.
fn report_cells(outcomes: &[(String, Outcome)]) -> String {
    let mut counts = [0usize; 3];
    let mut moved = 0;
    let mut probes = Vec::new();
    for (_, o) in outcomes {
        let (c, m) = o.placement_counts();
        for k in 0..3 {
            counts[k] += c[k];
        }
        moved += m;
        probes.extend(o.probes.iter().copied());
    }
    let range =
        Summary::of(&probes).map(|s| format!("{:.0}-{:.0} ns", s.min, s.max)).unwrap_or_else(|| "failed".into());
    let mut line = format!(
        "Placement of this section's {} repetitions: {} (round-trip probes {range})",
        counts.iter().sum::<usize>() + moved,
        fmt_band_counts(&counts, 0)
    );
    if moved > 0 || counts.iter().filter(|&&c| c > 0).count() > 1 {
        line +=
            &format!("; {moved} moved between their two probes. The medians below mix placements: read them with care");
    }
    let mut notes = Vec::new();
    for (where_, o) in outcomes {
        notes.extend(o.notes.iter().map(|n| format!("{where_}: {n}")));
    }
    let mut text = format!("{line}.\n\n");
    for n in &notes {
        text += &format!("- {n}\n");
    }
    if !notes.is_empty() {
        text.push('\n');
    }
    text
}

fn cell(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The throughput table plus the ratio table: mirror-ring (column 0) against each of
/// `ratio_cols`, per repetition, from each row's outcome (`outcomes[row]`).
fn print_stream_tables(
    label: &str,
    rows: &[String],
    comps: &[Competitor],
    data: &[Vec<f64>],
    outcomes: &Named<Outcome>,
    ratio_cols: &[usize],
) {
    let mut head = vec![label.to_string()];
    head.extend(comps.iter().map(|c| c.name()));
    let body: Vec<Vec<String>> = rows
        .iter()
        .zip(data)
        .map(|(r, d)| std::iter::once(r.clone()).chain(d.iter().map(|&v| cell(v))).collect())
        .collect();
    println!("GB/s (median of the repetitions):\n");
    print_table(&head, &body);
    let grid_rows: Vec<(String, &Outcome)> = rows.iter().cloned().zip(outcomes.iter().map(|(_, o)| o)).collect();
    let cols: Vec<(String, usize, usize)> =
        ratio_cols.iter().map(|&i| (format!("vs {}", comps[i].name()), 0, i)).collect();
    let (head, body) = ratio_grid(label, &grid_rows, &cols);
    println!(
        "{} / each, per repetition: median (min-max, count) of the ratios in that placement (higher is better for \
         mirror-ring):\n",
        comps[0].name()
    );
    print_table(&head, &body);
}

struct Goal {
    what: String,
    value: String,
    status: &'static str,
}

impl Goal {
    fn new(what: impl Into<String>, value: impl Into<String>, met: bool) -> Goal {
        Goal { what: what.into(), value: value.into(), status: if met { "met" } else { "MISSED" } }
    }
}

fn main() {
    let cfg = Cfg::from_args();
    let started = Instant::now();
    let mut p = Progress::new();
    let auto = Backend::Auto.resolve().map(|b| b.to_string()).unwrap_or_else(|e| format!("none ({e})"));
    let pipe = pipe_pair(MIB).map(|(_, n)| n).unwrap_or(0);
    let sock = socket_pair(MIB).map(|(_, n)| n).unwrap_or(0);
    let available: Vec<String> =
        Backend::CONCRETE.iter().map(|b| format!("{b} {}", if b.is_available() { "yes" } else { "no" })).collect();
    println!("# mirror-ring comparison{}\n", if cfg.quick { " (--quick)" } else { "" });
    println!("- machine: {}", machine());
    println!("- kernel: {}", mirror_ring::kernel_release());
    println!("- Auto backend: {auto} (available: {})", available.join(", "));
    println!("- load average at start: {:.2}", load_average());
    println!(
        "- pipe buffer granted for 1 MiB: {} (pipe-max-size {}); socketpair SO_SNDBUF granted for 1 MiB: {}",
        fmt_size(pipe),
        fmt_size(pipe_max_size()),
        fmt_size(sock)
    );
    println!(
        "- method: producer on CPU {PRODUCER_CPU}, consumer on CPU {CONSUMER_CPU}; {} interleaved repetitions, medians; \
         ratios per repetition, as median (min-max, count); each timed run ~{} ms after a warm-up; GB/s = 1e9 B/s, \
         every byte copied in and out once",
        cfg.reps,
        cfg.target.as_millis()
    );
    let rtt_start = core_round_trip();
    println!(
        "- core-to-core round trip (bare atomic ping-pong, CPU {PRODUCER_CPU} <-> {CONSUMER_CPU}) at start: {} ({}; \
         the bands: near {}, far {}, very far {}); probed again around every repetition\n",
        fmt_ns(rtt_start),
        Placement::of(rtt_start).map(|p| p.name()).unwrap_or("probe failed"),
        Placement::Near.range(),
        Placement::Far.range(),
        Placement::VeryFar.range()
    );
    let mut goals: Vec<Goal> = Vec::new();
    let mut advice: Vec<String> = Vec::new();

    if cfg.wants("check") {
        self_check(&mut p);
    }

    if cfg.wants("records") {
        records_section(&cfg, &mut p, &mut goals, &mut advice);
    }

    if cfg.wants("bulk") {
        bulk_section(&cfg, &mut p, &mut goals, &mut advice);
    }

    if cfg.wants("latency") {
        latency(&cfg, &mut p, &mut goals, &mut advice);
    }

    let mut svg_sizes: Option<(Vec<String>, Named<Vec<f64>>)> = None;
    if cfg.wants("sizes") {
        svg_sizes = Some(sizes_section(&cfg, &mut p, &mut advice));
    }

    let all_threads = [
        Competitor::MirrorIo,
        Competitor::Mirror(Backend::Auto),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::RingbufCached,
        Competitor::Pipe,
        Competitor::Socketpair,
    ];
    let quick_threads = [
        Competitor::MirrorIo,
        Competitor::Mirror(Backend::Auto),
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::Pipe,
        Competitor::Socketpair,
    ];
    let threads: &[Competitor] = if cfg.quick { &quick_threads } else { &all_threads };
    let col = |c: Competitor| threads.iter().position(|&x| x == c);
    let write_rows: Vec<String> = WRITES.iter().map(|&w| fmt_size(w)).collect();
    let mut svg_data: Option<(Vec<Vec<f64>>, Named<Outcome>)> = None;
    if cfg.wants("threads") {
        let cells: Vec<(usize, usize)> = WRITES.iter().map(|&w| (MIB, w)).collect();
        let (data, outcomes, notes) = measure(&cfg, &mut p, "threads", Mode::Threads, threads, &cells);
        p.clear();
        println!("## Streaming between two threads, 1 MiB ring, by write size\n");
        println!(
            "Each write copied in, at most one write's worth copied out per read. mirror-ring/io: `write_all` / `read`, \
             blocking, default options; mirror-ring/try: `try_write` / `try_read`, spinning (as every other ring here \
             spins). split-copy-ring: the same protocol over memory that is not mirrored (copies split at the \
             wrap); minimal-mirror: a hand-written mirrored ring with no checks (the floor).\n"
        );
        let others: Vec<usize> = (1..threads.len()).collect();
        print_stream_tables("write", &write_rows, threads, &data, &outcomes, &others);
        print!("{notes}");
        // The cell of write size `w`, and a goal on its per-repetition ratios.
        let at = |w: usize| &outcomes[WRITES.iter().position(|&x| x == w).unwrap()].1;
        let g = |goals: &mut Vec<Goal>, what: &str, w, a, b, min| goals.push(pair_goal(what, at(w), a, b, min));
        let (io, tr, rt, min, sock) =
            (0, 1, col(Competitor::Rtrb), col(Competitor::Minimal), col(Competitor::Socketpair));
        if let Some(rt) = rt {
            g(&mut goals, "threads, 64 KiB writes (io): >= 1.0x rtrb", 64 * KIB, io, rt, 1.0);
        }
        if let Some(sock) = sock {
            g(&mut goals, "threads, 4 KiB writes (io): >= 3x socketpair", 4 * KIB, io, sock, 3.0);
        }
        if let Some(min) = min {
            for &w in &WRITES {
                let what = format!("threads, {} writes (try): >= 0.95x minimal mirror", fmt_size(w));
                g(&mut goals, &what, w, tr, min, 0.95);
            }
        }
        svg_data = Some((data, outcomes));
    }

    if cfg.wants("fork") {
        let all_fork = [
            Competitor::MirrorIo,
            Competitor::Mirror(Backend::Auto),
            Competitor::Minimal,
            Competitor::Pipe,
            Competitor::Socketpair,
        ];
        let quick_fork = [Competitor::MirrorIo, Competitor::Minimal, Competitor::Pipe];
        let fork: &[Competitor] = if cfg.quick { &quick_fork } else { &all_fork };
        let cells: Vec<(usize, usize)> = WRITES.iter().map(|&w| (MIB, w)).collect();
        let (data, outcomes, notes) = measure(&cfg, &mut p, "fork", Mode::Fork, fork, &cells);
        p.clear();
        println!("## Streaming from a parent to its forked child, 1 MiB ring, by write size\n");
        let others: Vec<usize> = (1..fork.len()).collect();
        print_stream_tables("write", &write_rows, fork, &data, &outcomes, &others);
        print!("{notes}");
    }

    if cfg.wants("huge") {
        huge_section(&cfg, &mut p, &mut advice);
    }

    if cfg.wants("single") {
        single(&cfg, &mut p);
    }

    if cfg.wants("create") {
        creation(&cfg, &mut p, &mut goals);
    }

    // ---- Plug-in point: messages (framed), from `benches/support/messages.rs` (the framed
    // ---- helper's rows; `cargo bench --bench messages` prints the same table).
    if cfg.wants("messages") {
        messages(&cfg, &mut p, &mut goals, &mut advice);
        regime(&cfg, &mut p);
        read_modes(&cfg, &mut p, &mut goals);
    }

    // ---- async ends and read_from/write_to (issue 12; from benches/support/async_rows.rs) ----
    #[cfg(feature = "tokio")]
    if cfg.wants("async") {
        async_section_print(&cfg, &mut p);
    }
    // ---- end of the async block ----

    if cfg.sweep {
        spin_sweep(&cfg, &mut p);
    }
    if cfg.nt {
        nt_experiment(&cfg, &mut p);
    }

    if !advice.is_empty() {
        p.clear();
        println!("## On this machine, in this placement\n");
        println!(
            "(Placement: where the host put the two vCPUs during this run; see the verdict below. Absolute figures \
             move several-fold between placements; the rankings within one run hold.)\n"
        );
        print_list(&advice);
    }

    if cfg.goals && !goals.is_empty() {
        println!("## Goals\n");
        let rows: Vec<Vec<String>> =
            goals.iter().map(|g| vec![g.what.clone(), g.value.clone(), g.status.to_string()]).collect();
        print_table(&["goal".into(), "this run".into(), "".into()], &rows);
    }

    if let Some(path) = &cfg.svg {
        if let Some((data, outcomes)) = svg_data.as_ref().filter(|_| !cfg.quick) {
            let threads = &all_threads;
            let series: Vec<(String, Vec<f64>)> =
                threads.iter().enumerate().map(|(i, c)| (c.name(), data.iter().map(|row| row[i]).collect())).collect();
            let title = "Streaming between two threads, 1 MiB ring (median GB/s, bytes in and out)";
            write_svg(path, &svg_chart(title, "write size", "GB/s (log scale)", &write_rows, &series, true));
            // The other rings, most interesting first (pipe and socketpair are far below; see
            // the throughput chart).
            let ratios: Vec<(String, Vec<f64>)> = [4, 5, 1, 2, 3]
                .iter()
                .map(|&i| {
                    let per_cell = outcomes.iter().map(|(_, o)| o.ratio_median_here(0, i)).collect();
                    (format!("vs {}", threads[i].name()), per_cell)
                })
                .collect();
            let title = "mirror-ring / other rings, same run (above 1: mirror-ring faster)";
            let y = "median of the per-repetition ratios";
            write_svg(&sibling(path, "-ratios"), &svg_chart(title, "write size", y, &write_rows, &ratios, false));
        }
        if let Some((rows, series)) = &svg_sizes {
            let title = "Streaming between two threads by ring size (median GB/s)";
            write_svg(
                &sibling(path, "-ring-size"),
                &svg_chart(title, "ring size", "GB/s (log scale)", rows, series, true),
            );
        }
    }
    p.clear();
    if p.runs > 0 {
        println!(
            "Timed streaming runs: {}, of which {} lost more than 1% of their time to other tasks even after two repeats{}.",
            p.runs,
            p.preempted,
            if p.preempted * 5 > p.runs { " (a busy machine: rerun when it is quiet)" } else { "" }
        );
    }
    let rtt_end = core_round_trip();
    if pinning_failed() {
        println!(
            "WARNING: a thread could not be pinned (see stderr): every figure above may come from unpinned \
             threads, perhaps sharing one CPU."
        );
    }
    println!("{}", verdict_line(&recorded_probes()));
    println!(
        "Done in {:.1} s (load average now {:.2}; core-to-core round trip now {}).",
        started.elapsed().as_secs_f64(),
        load_average(),
        fmt_ns(rtt_end)
    );
}

/// The run's placement from every round-trip probe it took (at the start and end, and around
/// every repetition of the interleaved sections). The line starts with `Placement verdict:`;
/// `compare --across` reads it: a run whose probes all fall in one band counts for that band,
/// any other run is left out.
fn verdict_line(probes: &[f64]) -> String {
    let range = Summary::of(probes).map(|s| format!("{:.0}-{:.0} ns", s.min, s.max)).unwrap_or_else(|| "-".into());
    match placement_verdict(probes) {
        Ok(band) => format!(
            "Placement verdict: {} ({} probes, {range}, all in the {} band, {} with {:.0}% slack).",
            band.name(),
            probes.len(),
            band.name(),
            band.range(),
            100.0 * EDGE_SLACK
        ),
        Err((counts, failed)) => format!(
            "Placement verdict: moved ({} probes, {range}: {}); the host moved the vCPUs during the run, so ratios \
             between sections mix placements and `compare --across` leaves this run out.",
            probes.len(),
            fmt_band_counts(&counts, failed)
        ),
    }
}

/// `dir/name.svg` -> `dir/name{suffix}.svg`.
fn sibling(path: &str, suffix: &str) -> String {
    match path.strip_suffix(".svg") {
        Some(stem) => format!("{stem}{suffix}.svg"),
        None => format!("{path}{suffix}.svg"),
    }
}

fn write_svg(path: &str, svg: &str) {
    match std::fs::write(path, svg) {
        Ok(()) => eprintln!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}

/// Every competitor, both modes, moves a pattern byte-exactly through a small ring with writes
/// that do not divide it (so the wrap is crossed at every offset).
fn self_check(p: &mut Progress) {
    let comps = [
        Competitor::MirrorIo,
        Competitor::MirrorWatermark(16 * KIB),
        Competitor::MirrorHuge,
        Competitor::Mirror(Backend::MirrorFlag),
        Competitor::Mirror(Backend::Duplicate),
        Competitor::Mirror(Backend::Memfd),
        Competitor::MirrorBlocking(Backend::Auto, Duration::ZERO),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::MinimalNt,
        Competitor::Rtrb,
        Competitor::Ringbuf,
        Competitor::RingbufCached,
        Competitor::Pipe,
        Competitor::Socketpair,
    ];
    let mut failed = Vec::new();
    let mut checked = 0;
    for mode in [Mode::Threads, Mode::Fork] {
        for c in comps.iter().copied().filter(|c| c.supports(mode) && c.available()) {
            for write in [1000, 4 * KIB + 7] {
                p.step("self-check", &format!("{} ({})", c.name(), mode.name()));
                let run = Run { write, warm: 3 * 64 * KIB as u64, total: 4 * MIB as u64, verify: true };
                checked += 1;
                if let Err(e) = stream(c, mode, 64 * KIB, &run) {
                    failed.push(format!("{} ({}, {write} B writes): {e}", c.name(), mode.name()));
                }
            }
        }
    }
    p.clear();
    if failed.is_empty() {
        println!("Self-check: {checked} runs, every competitor delivered every byte in order.\n");
    } else {
        println!("Self-check FAILED:\n");
        for f in &failed {
            println!("- {f}");
        }
        println!();
        std::process::exit(1);
    }
}

/// Write then read back in one thread: the per-operation cost without a second core.
fn single(cfg: &Cfg, p: &mut Progress) {
    let comps = [
        Competitor::Mirror(Backend::Auto),
        Competitor::Mirror(Backend::Memfd),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::Ringbuf,
        Competitor::RingbufCached,
        Competitor::Pipe,
        Competitor::Socketpair,
    ];
    let writes = [8, 64, KIB, 4 * KIB];
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &w in &writes {
        let mut samples = vec![Vec::new(); comps.len()];
        let ops: Vec<u64> = comps
            .iter()
            .map(|&c| match single_thread(c, w, 1000) {
                Ok(d) => ((if cfg.quick { 2e-3 } else { 5e-3 } / (d.as_secs_f64() / 1000.0)) as u64).max(100),
                Err(e) => {
                    notes.push(format!("{} ({} writes): not measured, calibration failed: {e}", c.name(), fmt_size(w)));
                    0
                }
            })
            .collect();
        for rep in 0..cfg.reps {
            for i in rotation(comps.len(), rep) {
                let c = comps[i];
                if ops[i] == 0 {
                    continue;
                }
                p.step("one thread", &format!("{} writes, rep {}/{}: {}", fmt_size(w), rep + 1, cfg.reps, c.name()));
                match single_thread(c, w, ops[i]) {
                    Ok(d) => samples[i].push(d.as_nanos() as f64 / ops[i] as f64),
                    Err(e) => {
                        notes.push(format!("{} ({} writes): repetition {} failed: {e}", c.name(), fmt_size(w), rep + 1))
                    }
                }
            }
        }
        let mut row = vec![fmt_size(w)];
        row.extend(samples.iter().map(|s| fmt_ns(median(s))));
        rows.push(row);
    }
    p.clear();
    println!("## One thread: write then read back, time per pair of operations (1 MiB ring)\n");
    let mut head = vec!["write".to_string()];
    head.extend(comps.iter().map(|c| c.name()));
    print_table(&head, &rows);
    print_list(&notes);
}

fn creation(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>) {
    let backends = [Backend::Auto, Backend::MirrorFlag, Backend::Duplicate, Backend::Memfd];
    let sizes = [64 * KIB, MIB, 64 * MIB, GIB];
    println!("## Creation, median µs (map: MirrorOptions::map; ring: RingOptions::build, which adds the header)\n");
    let mut head = vec!["size".to_string(), "prefault".to_string()];
    for what in ["map", "ring"] {
        head.extend(backends.iter().map(|b| format!("{what}: {b}")));
        head.push(format!("{what}: auto / memfd, per repetition"));
    }
    let mut rows = Vec::new();
    // The Auto / memfd ratios of the size with the worst median without prefault: (map, ring).
    let mut worst: [Option<(Summary, usize)>; 2] = [None, None];
    for prefault in [false, true] {
        for &size in &sizes {
            let reps = match (size, prefault) {
                // Populating 1 GiB twice over takes ~1 s a ring: not in the demo's budget.
                (s, true) if s >= GIB => 0,
                (s, true) if s >= 64 * MIB => 3,
                _ => 10 * cfg.reps,
            };
            // [map, ring] x backend; and [map, ring] Auto / memfd per repetition.
            let mut samples = vec![vec![Vec::new(); backends.len()]; 2];
            let mut ratios = [Vec::new(), Vec::new()];
            for rep in 0..reps {
                let mut this = [[None; 4]; 2];
                for i in rotation(backends.len(), rep) {
                    let b = backends[i];
                    if !b.is_available() {
                        continue;
                    }
                    p.step("creation", &format!("{} prefault={prefault} rep {}/{reps}: {b}", fmt_size(size), rep + 1));
                    // With prefault, populating the pages dominates: time the ring only.
                    if !prefault {
                        if let Ok(d) = create_map(b, size, prefault) {
                            samples[0][i].push(d.as_secs_f64() * 1e6);
                            this[0][i] = Some(d.as_secs_f64());
                        }
                    }
                    if let Ok(d) = create_ring(b, size, prefault) {
                        samples[1][i].push(d.as_secs_f64() * 1e6);
                        this[1][i] = Some(d.as_secs_f64());
                    }
                }
                for k in 0..2 {
                    if let (Some(auto), Some(memfd)) = (this[k][0], this[k][3]) {
                        ratios[k].push(auto / memfd);
                    }
                }
            }
            let mut row = vec![fmt_size(size), if prefault { "yes" } else { "no" }.to_string()];
            for (k, per) in samples.iter().enumerate() {
                if reps == 0 {
                    row.extend(backends.iter().map(|_| "skipped".to_string()));
                    row.push("skipped".into());
                    continue;
                }
                let med: Vec<f64> = per.iter().map(|s| median(s)).collect();
                row.extend(med.iter().map(|&v| if v.is_finite() { format!("{v:.1}") } else { "-".into() }));
                let summary = Summary::of(&ratios[k]);
                row.push(match summary {
                    Some(s) => s.ratio_text(),
                    None if k == 0 && prefault => "not timed".into(),
                    None => "no paired repetitions".into(),
                });
                match (summary, worst[k]) {
                    (Some(s), Some((w, _))) if !prefault && s.median > w.median => worst[k] = Some((s, size)),
                    (Some(s), None) if !prefault => worst[k] = Some((s, size)),
                    _ => {}
                }
            }
            rows.push(row);
        }
    }
    p.clear();
    print_table(&head, &rows);
    for (k, what) in ["mapping", "ring"].iter().enumerate() {
        let what = format!("creation ({what}, no prefault, every size): Auto <= 0.9x memfd");
        goals.push(match worst[k] {
            Some((s, size)) => {
                Goal::new(what, format!("{} at {}, the worst size", s.ratio_text(), fmt_size(size)), s.median <= 0.9)
            }
            None => Goal { what, value: "no paired repetitions".into(), status: "no ratio" },
        });
    }
}

/// Round trips of one 8-byte message between the two CPUs (median of per-repetition means),
/// interleaved with the placement probes: mirror-ring spinning (`try_*`) and blocking (`io`,
/// default spin budget; and with budget 0, which sleeps at once), rtrb's chunk API spinning,
/// and the floors (a bare atomic ping-pong, a bare futex ping-pong), and a pipe.
fn latency(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>, advice: &mut Vec<String>) {
    let reps = cfg.reps.max(5);
    let target = if cfg.quick { Duration::from_millis(4) } else { Duration::from_millis(10) };
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut lines = Vec::new();
    for mode in [Mode::Threads, Mode::Fork] {
        let mut kinds = vec![Pinger::MirrorSpin];
        if mode == Mode::Threads {
            kinds.push(Pinger::Rtrb);
        }
        kinds.extend([
            Pinger::MirrorBlocking(DEFAULT_SPIN),
            Pinger::Atomic,
            Pinger::MirrorBlocking(Duration::ZERO),
            Pinger::Futex,
            Pinger::Pipe,
        ]);
        let mut cases: Vec<Box<dyn Contender>> =
            kinds.iter().map(|&k| Box::new(RttCase::new(k, mode)) as Box<dyn Contender>).collect();
        let out = interleave(&mut cases, reps, target, &mut |step| {
            p.step("round trips", &format!("{}: {step}", mode.name()))
        });
        notes.extend(out.notes.iter().map(|n| format!("{}: {n}", mode.name())));
        let rtt = |i: usize| fmt_ns(1e9 / out.median_rate(i));
        let at = |k: Pinger| kinds.iter().position(|&x| x == k);
        let mut row = vec![mode.name().to_string()];
        for k in [
            Pinger::MirrorSpin,
            Pinger::Rtrb,
            Pinger::MirrorBlocking(DEFAULT_SPIN),
            Pinger::Atomic,
            Pinger::MirrorBlocking(Duration::ZERO),
            Pinger::Futex,
            Pinger::Pipe,
        ] {
            row.push(at(k).map_or("-".into(), rtt));
        }
        // Ratios of round trips (time), per repetition: rate(theirs) / rate(ours).
        let spin = 0;
        let atomic = at(Pinger::Atomic).unwrap_or(0);
        row.push(at(Pinger::Rtrb).map_or("not run (rtrb is one process)".into(), |r| out.ratio_here(r, spin)));
        row.push(out.ratio_here(atomic, spin));
        rows.push(row);
        lines.push(format!("{}: {}", mode.name(), out.placement_line()));
        if let Some(r) = at(Pinger::Rtrb) {
            // rate(mirror) >= rate(rtrb)  <=>  round trip <= rtrb's.
            let mut g = pair_goal("threads: spinning round trip <= rtrb's (chunks, spinning)", &out, spin, r, 1.0);
            g.value = g.value.replace("x (", "x faster (");
            goals.push(g);
            advice.push(format!(
                "Request/response between threads: {} spinning (`try_*`), {} blocking with the default spin budget, \
                 against {} for rtrb spinning and {} for a bare atomic ping-pong.",
                rtt(spin),
                at(Pinger::MirrorBlocking(DEFAULT_SPIN)).map_or("-".into(), rtt),
                rtt(r),
                rtt(atomic)
            ));
        }
        // rate(atomic) / rate(spin) = spinning round trip / bare atomic's, per repetition.
        let what = format!("{}: spinning round trip <= 1.5x bare atomic", mode.name());
        goals.push(ratio_goal(what, &out, atomic, spin, |_, r| r <= 1.5));
    }
    p.clear();
    println!("## Round trip of one 8-byte message (median of the repetitions' means)\n");
    let head: Vec<String> = [
        "between",
        "mirror-ring/spin",
        "rtrb/chunks",
        "mirror-ring/blocking (default)",
        "bare-atomic",
        "mirror-ring/blocking-spin-0",
        "bare-futex",
        "pipe",
        "spin round trip: mirror-ring / rtrb",
        "mirror-ring spin / bare atomic",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    print_table(&head, &rows);
    println!("Placement: {}.\n", lines.join("; "));
    print_list(&notes);
}

/// A goal on per-repetition ratios `ours / theirs` of an interleaved outcome: met when the
/// median ratio is at least `min` in every placement band the run saw (moved repetitions left
/// out), with the value per band.
fn pair_goal(what: impl Into<String>, out: &Outcome, ours: usize, theirs: usize, min: f64) -> Goal {
    ratio_goal(what, out, ours, theirs, |_, r| r >= min)
}

/// The one rule of every ratio goal: `met(band, median)` on the median of the per-repetition
/// ratios `rate(ours) / rate(theirs)` in every placement band the run saw (moved repetitions
/// left out). The value gives each band's median, range and count, so a median just short of
/// its bound shows how far the repetitions spread around it; there is no "within noise": a
/// median short of the bound is MISSED. No paired repetition: no status but the reason.
fn ratio_goal(
    what: impl Into<String>,
    out: &Outcome,
    ours: usize,
    theirs: usize,
    met: impl Fn(Placement, f64) -> bool,
) -> Goal {
    let what = what.into();
    let bands = out.ratio_bands(ours, theirs);
    if bands.is_empty() {
        return Goal { what, value: out.no_ratio(ours, theirs, None), status: "no ratio" };
    }
    Goal::new(what, out.ratio_per_band(ours, theirs), bands.iter().all(|&(p, s)| met(p, s.median)))
}

/// 64-byte records, one per call on each side (a parser loop), through a 1 MiB ring:
/// mirror-ring as users write it (`write_all`; `fill_buf` + `consume`) against rtrb's chunk API,
/// its faster shape (`benches/support/records.rs`).
fn records_section(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>, advice: &mut Vec<String>) {
    let queues = [RecQueue::MirrorIo, RecQueue::MirrorTry, RecQueue::RtrbChunks, RecQueue::RtrbSlices];
    let mut cases: Vec<Box<dyn Contender>> =
        queues.iter().map(|&q| Box::new(RecCase::new(q, MIB)) as Box<dyn Contender>).collect();
    let out = interleave(&mut cases, cfg.reps, cfg.target, &mut |step| p.step("64-byte records", step));
    p.runs += out.samples;
    p.preempted += out.disturbed;
    p.clear();
    println!("## 64-byte records, one per call (a parser loop), 1 MiB ring, two threads\n");
    println!(
        "The producer writes one 64-byte record per call; the consumer takes one whole record per call and gives \
         it back. mirror-ring/io: `write_all` / `fill_buf` + `consume(64)`, blocking, default options (the parser \
         loop users write). mirror-ring/try: `try_write` / `read_grant(64)` + `release`, spinning. rtrb/chunks: \
         `write_chunk_uninit(64)` + `commit_all` / `read_chunk(64)` + `commit_all`, spinning (rtrb's faster \
         shape); rtrb/slices: `push_partial_slice` / `pop_partial_slice` (what its `io::Write`/`io::Read` do). \
         Every record is copied in and out and checksummed.\n"
    );
    println!("Placement: {}.\n", out.placement_line());
    let pairs = [
        Pair { label: "io vs rtrb chunks".into(), ours: 0, theirs: 2, also: vec![3] },
        Pair { label: "try vs rtrb chunks".into(), ours: 1, theirs: 2, also: vec![] },
    ];
    let (head, rows) = pairs_table(&out, &pairs, 1e-6, "64 B records");
    println!("M records/s (median of the repetitions in that placement; x 64 B = MB/s); ratio: median (min-max, count) of the per-repetition ratios:\n");
    print_table(&head, &rows);
    print_list(&out.notes);
    goals.push(pair_goal("64 B records, io (fill_buf/consume): >= 1.0x rtrb chunks", &out, 0, 2, 1.0));
    goals.push(pair_goal("64 B records, io (fill_buf/consume): >= 1.3x rtrb chunks (stretch)", &out, 0, 2, 1.3));
    advice.push(format!(
        "Parsing 64-byte records in place (`fill_buf` / `consume`): {} M records/s, {} rtrb's chunk API.",
        fmt_rate(out.median_rate(0) / 1e6),
        out.ratio_here(0, 2)
    ));
}

/// 4 KiB writes through 1 MiB and 4 MiB rings: mirror-ring as users call it (and with a reader
/// that waits for a 64 KiB watermark), spinning, rtrb, and a pipe; with the regime (how far
/// behind the producer the reader ran).
fn bulk_section(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>, advice: &mut Vec<String>) {
    let comps = BULK_COMPETITORS;
    println!("## Bulk: 4 KiB writes through 1 MiB and 4 MiB rings, two threads\n");
    println!(
        "mirror-ring/io: `write_all` / `read` into a 4 KiB buffer, blocking, default options. \
         mirror-ring/watermark-64KiB: the same producer; the reader waits (`read_grant_blocking`) until 64 KiB are \
         readable, copies them out 4 KiB at a time, and releases them with one store. mirror-ring/try: `try_write` / \
         `try_read`, spinning. rtrb: chunk API, spinning. The pipe is {} (`F_SETPIPE_SZ`, capped at pipe-max-size).\n",
        fmt_size(pipe_pair(MIB).map(|(_, n)| n).unwrap_or(0))
    );
    for cap in [MIB, 4 * MIB] {
        let mut cases: Vec<Box<dyn Contender>> = comps
            .iter()
            .map(|&c| Box::new(StreamCase::new(c, Mode::Threads, cap, 4 * KIB)) as Box<dyn Contender>)
            .collect();
        let where_ = format!("{} ring", fmt_size(cap));
        let out =
            interleave(&mut cases, cfg.reps, cfg.target, &mut |step| p.step("bulk", &format!("{where_}, {step}")));
        p.runs += out.samples;
        p.preempted += out.disturbed;
        p.clear();
        println!("### {} ring\n", fmt_size(cap));
        println!("Placement: {}.\n", out.placement_line());
        let pairs = [
            Pair { label: "io vs rtrb".into(), ours: 0, theirs: 3, also: vec![] },
            Pair { label: "io vs pipe".into(), ours: 0, theirs: 4, also: vec![] },
            Pair { label: "watermark vs rtrb".into(), ours: 1, theirs: 3, also: vec![2] },
        ];
        let (head, rows) = pairs_table(&out, &pairs, 1e-9, "4 KiB writes");
        println!("GB/s (median in that placement); ratio: median (min-max, count) of the per-repetition ratios:\n");
        print_table(&head, &rows);
        let regimes: Vec<String> =
            out.names.iter().zip(&out.details).filter_map(|(n, d)| d.as_ref().map(|d| format!("{n}: {d}"))).collect();
        if !regimes.is_empty() {
            println!(
                "Regime (sampled by the reader every 256 reads): {}. A reader more than a core's L2 behind reads bytes \
                 that have left the writing core's cache; close behind, it takes lines out of that cache one hand-over \
                 at a time.\n",
                regimes.join("; ")
            );
        }
        print_list(&out.notes);
        if cap == 4 * MIB {
            // Issue 14: 2x rtrb near and far; where the link between the cores caps every ring
            // (very far), at least level.
            let min = |b: Placement| if b == Placement::VeryFar { 1.0 } else { 2.0 };
            goals.push(ratio_goal(
                "4 KiB writes, 4 MiB ring (io): >= 2x rtrb (very far: >= 1.0x)",
                &out,
                0,
                3,
                |b, r| r >= min(b),
            ));
            goals.push(pair_goal("4 KiB writes, 4 MiB ring (io): >= 5x pipe", &out, 0, 4, 5.0));
            goals.push(ratio_goal(
                "4 KiB writes, 4 MiB ring (watermark reader): >= 2x rtrb (very far: >= 1.0x)",
                &out,
                1,
                3,
                |b, r| r >= min(b),
            ));
        }
        if cap == 4 * MIB {
            advice.push(format!(
                "Bulk 4 KiB writes through a 4 MiB ring with `write_all` / `read`: {} GB/s, {} rtrb, {} a pipe; \
                 with a reader that waits for 64 KiB: {} GB/s.",
                fmt_rate(out.median_rate(0) / 1e9),
                out.ratio_here(0, 3),
                out.ratio_here(0, 4),
                fmt_rate(out.median_rate(1) / 1e9)
            ));
        }
    }
}

/// Which ring size, for which write size: mirror-ring as users call it (`write_all` / `read`,
/// default options) at 64-byte, 4 KiB and 64 KiB writes, and rtrb and a pipe at 4 KiB, by ring
/// size; the recommended size per write size next to the default capacity. Returns the chart's
/// rows and series.
fn sizes_section(cfg: &Cfg, p: &mut Progress, advice: &mut Vec<String>) -> (Vec<String>, Named<Vec<f64>>) {
    let sizes: &[usize] = if cfg.quick { &QUICK_RING_SIZES } else { &RING_SIZES };
    let writes = [64, 4 * KIB, 64 * KIB];
    // Columns: (label, competitor, write size).
    let mut cols: Vec<(String, Competitor, usize)> =
        writes.iter().map(|&w| (format!("mirror-ring/io, {} writes", fmt_size(w)), Competitor::MirrorIo, w)).collect();
    cols.push(("rtrb, 4 KiB writes".into(), Competitor::Rtrb, 4 * KIB));
    let mut data = vec![vec![f64::NAN; cols.len()]; sizes.len()];
    let mut outcomes = Vec::new();
    for &w in &writes {
        let idx: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].2 == w).collect();
        let comps: Vec<Competitor> = idx.iter().map(|&i| cols[i].1).collect();
        let cells: Vec<(usize, usize)> = sizes.iter().map(|&c| (c, w)).collect();
        let (d, o) =
            measure_cells(cfg, p, &format!("ring sizes, {} writes", fmt_size(w)), Mode::Threads, &comps, &cells);
        for (r, row) in d.iter().enumerate() {
            for (k, &i) in idx.iter().enumerate() {
                data[r][i] = row[k];
            }
        }
        outcomes.extend(o);
    }
    let notes = report_cells(&outcomes);
    p.clear();
    println!("## Which ring size: by write size, two threads\n");
    println!(
        "GB/s (median of the repetitions); mirror-ring/io is `write_all` / `read` with default options but the \
         capacity.\n"
    );
    let mut head = vec!["ring".to_string()];
    head.extend(cols.iter().map(|c| c.0.clone()));
    let rows: Vec<Vec<String>> = sizes
        .iter()
        .zip(&data)
        .map(|(s, d)| std::iter::once(fmt_size(*s)).chain(d.iter().map(|&v| cell(v))).collect())
        .collect();
    print_table(&head, &rows);
    print!("{notes}");
    let mut picks = Vec::new();
    for (i, &w) in writes.iter().enumerate() {
        let col: Vec<f64> = data.iter().map(|r| r[i]).collect();
        if let Some((pick, best)) = recommend(sizes, &col) {
            picks.push(format!(
                "{} writes: {} ({} GB/s; fastest {} GB/s)",
                fmt_size(w),
                fmt_size(sizes[pick]),
                cell(col[pick]),
                cell(best)
            ));
        }
    }
    let default = mirror_ring::DEFAULT_CAPACITY;
    let line = format!(
        "Ring size: the smallest within 5% of the fastest, per write size: {}. The default capacity is {} \
         (`mirror_ring::DEFAULT_CAPACITY`).",
        picks.join("; "),
        fmt_size(default)
    );
    println!("{line}\n");
    advice.push(line);
    let labels: Vec<String> = sizes.iter().map(|&s| fmt_size(s)).collect();
    let series = cols.iter().enumerate().map(|(i, c)| (c.0.clone(), data.iter().map(|r| r[i]).collect())).collect();
    (labels, series)
}

/// The smallest size whose rate is within 5% of the best, and the best rate.
fn recommend(sizes: &[usize], col: &[f64]) -> Option<(usize, f64)> {
    let best = col.iter().copied().filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
    let pick = (0..sizes.len()).find(|&i| col[i].is_finite() && col[i] >= 0.95 * best)?;
    Some((pick, best))
}

/// Ring sizes of the huge-page section.
const HUGE_SIZES: [usize; 4] = [4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB];

/// Huge pages and transparent huge pages against 4 KiB pages: creation with prefault, the first
/// lap over a fresh ring, and streaming (4 KiB writes, threads). Huge pages at the ring sizes
/// that fit in the free pool; transparent huge pages where the kernel's `shmem_enabled` allows
/// them. Skipped (with a note saying how to enable each) when neither is there: the demo never
/// changes the system's pool or knob itself.
fn huge_section(cfg: &Cfg, p: &mut Progress, advice: &mut Vec<String>) {
    println!("## Huge pages (2 MiB) against 4 KiB pages\n");
    let free = huge_pages_free();
    let thp = shmem_thp_allowed();
    let limit = if cfg.quick { 2 } else { HUGE_SIZES.len() };
    let sizes: Vec<usize> =
        HUGE_SIZES.iter().copied().filter(|&s| thp || (s / (2 * MIB)) as u64 <= free).take(limit).collect();
    let huge_fits = |size: usize| (size / (2 * MIB)) as u64 <= free;
    if !sizes.iter().any(|&s| huge_fits(s)) {
        println!(
            "No free huge pages (free: {free}): hugetlb not measured. Reserve some to see it, for example \
             `echo 160 | sudo tee /proc/sys/vm/nr_hugepages` (320 MiB; put the old value back afterwards).\n"
        );
        advice.push("Huge pages: none free here (`/proc/sys/vm/nr_hugepages`), not measured.".into());
    }
    if !thp {
        println!(
            "Transparent huge pages for shared memory are off here (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`, \
             and on Linux 6.11+ `hugepages-2048kB/shmem_enabled` beside it, which overrides it unless it says `inherit`): \
             not measured. `echo advise | sudo tee` the deciding file to see them (put the old value back afterwards).\n"
        );
        advice.push("Transparent huge pages: `shmem_enabled` does not allow them here, not measured.".into());
    }
    if sizes.is_empty() {
        return;
    }
    println!(
        "Free 2 MiB huge pages: {free}; transparent huge pages for shared memory: {}; sizes measured: {}.\n",
        if thp { "allowed" } else { "off" },
        sizes.iter().map(|&s| fmt_size(s)).collect::<Vec<_>>().join(", ")
    );
    let mut pagings = vec![Paging::Small];
    if sizes.iter().any(|&s| huge_fits(s)) {
        pagings.push(Paging::Huge);
    }
    if thp {
        pagings.push(Paging::Thp);
    }
    // Creation with prefault and the first lap, interleaved, medians.
    let reps = if cfg.quick { 3 } else { 5 };
    let k = pagings.len();
    let mut rows = Vec::new();
    for &size in &sizes {
        let (mut create, mut lap1, mut lap2) = (vec![Vec::new(); k], vec![Vec::new(); k], vec![Vec::new(); k]);
        // Each huge kind's creation time over 4 KiB pages', per repetition.
        let mut ratios = vec![Vec::new(); k];
        for rep in 0..reps {
            let mut this = vec![None; k];
            for i in rotation(k, rep) {
                let paging = pagings[i];
                if paging == Paging::Huge && !huge_fits(size) {
                    continue;
                }
                p.step("huge pages", &format!("{} rep {}/{reps}: {}", fmt_size(size), rep + 1, paging.name()));
                if let Ok(d) = create_ring_paged(size, true, paging) {
                    create[i].push(d.as_secs_f64() * 1e6);
                    this[i] = Some(d.as_secs_f64());
                }
                if let Ok((a, b)) = first_lap(size, paging) {
                    lap1[i].push(a.as_secs_f64() * 1e6);
                    lap2[i].push(b.as_secs_f64() * 1e6);
                }
            }
            for i in 1..k {
                if let (Some(small), Some(x)) = (this[0], this[i]) {
                    ratios[i].push(x / small);
                }
            }
        }
        let m = |v: &Vec<f64>| if v.is_empty() { "-".to_string() } else { format!("{:.0}", median(v)) };
        let mut row = vec![fmt_size(size)];
        row.extend(create.iter().map(m));
        row.extend((1..k).map(|i| Summary::of(&ratios[i]).map_or("-".into(), |s| s.ratio_text())));
        row.extend(lap1.iter().map(m));
        row.extend(lap2.iter().map(m));
        rows.push(row);
    }
    p.clear();
    println!("Creation with `prefault(true)` (both views populated) and one lap of 4 KiB writes then reads in one thread, µs (median of {reps}):\n");
    let mut head = vec!["ring".to_string()];
    head.extend(pagings.iter().map(|g| format!("create, {}", g.name())));
    head.extend(pagings[1..].iter().map(|g| format!("{} / 4 KiB, per repetition", g.name())));
    head.extend(pagings.iter().map(|g| format!("first lap, {}", g.name())));
    head.extend(pagings.iter().map(|g| format!("second lap, {}", g.name())));
    print_table(&head, &rows);
    let mut comps = vec![Competitor::MirrorBlocking(Backend::Auto, DEFAULT_SPIN)];
    if pagings.contains(&Paging::Huge) {
        comps.push(Competitor::MirrorHuge);
    }
    if thp {
        comps.push(Competitor::MirrorThp);
    }
    comps.push(Competitor::Rtrb);
    let cells: Vec<(usize, usize)> = sizes.iter().map(|&s| (s, 4 * KIB)).collect();
    let (data, outcomes, notes) = measure(cfg, p, "huge pages (streaming)", Mode::Threads, &comps, &cells);
    p.clear();
    println!("Streaming between two threads, 4 KiB writes, `io::Write` / `io::Read`, by ring size:\n");
    let rows: Vec<String> = sizes.iter().map(|&c| fmt_size(c)).collect();
    let pairs: Vec<usize> = (1..comps.len()).collect();
    print_stream_tables("ring", &rows, &comps, &data, &outcomes, &pairs);
    print!("{notes}");
    for (j, c) in comps.iter().enumerate().skip(1).take(comps.len() - 2) {
        let per: Vec<String> =
            sizes.iter().zip(&outcomes).map(|(s, (_, o))| format!("{} {}", fmt_size(*s), o.ratio_here(j, 0))).collect();
        advice.push(format!(
            "{} against 4 KiB pages, streaming: {}; creation with prefault and the first lap: see the huge-page table.",
            c.name(),
            per.join(", ")
        ));
    }
}

/// The async ends and relays, interleaved (`benches/support/async_rows.rs`): the medians, then
/// mirror-ring's async ends against each other transport per repetition (round trips as
/// ratios of times, streaming as ratios of rates), then the relays against the ring.
#[cfg(feature = "tokio")]
fn async_section_print(cfg: &Cfg, p: &mut Progress) {
    let groups = async_section(cfg.quick, cfg.reps, &mut |step| p.step("async", step));
    p.clear();
    println!("## Async ends and relays (feature tokio; core-to-core round trip now {})\n", fmt_ns(core_round_trip()));
    println!(
        "Two current-thread tokio runtimes on the two pinned CPUs. Each group runs {} repetitions, every transport \
         once per repetition in rotated order, between placement probes; a sample is 1/{} of the group's work, so \
         the section takes as long whatever the repetitions.\n",
        cfg.reps, cfg.reps
    );
    let (transports, relays): (Vec<_>, Vec<_>) =
        groups.iter().partition(|(_, o)| o.names[0] == AsyncKind::Mirror.name());
    let round_trip = |title: &str| title.starts_with("round trip");
    let value = |title: &str, rate: f64| {
        if round_trip(title) {
            fmt_ns(1e9 / rate)
        } else {
            format!("{} GB/s", fmt_rate(rate / 1e9))
        }
    };
    for (label, list) in [("transport", &transports), ("relay", &relays)] {
        let Some((_, first)) = list.first() else { continue };
        let mut head = vec![label.to_string()];
        head.extend(first.names.iter().cloned());
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(t, o)| {
                std::iter::once(t.clone()).chain((0..o.names.len()).map(|i| value(t, o.median_rate(i)))).collect()
            })
            .collect();
        println!("Median of the repetitions:\n");
        print_table(&head, &rows);
        // Round trips as times: mirror-ring's over the other's (below 1: mirror-ring faster).
        let times: Vec<(String, Outcome)> =
            list.iter().map(|(t, o)| (t.clone(), if round_trip(t) { o.as_times() } else { o.clone() })).collect();
        let grid_rows: Vec<(String, &Outcome)> =
            times.iter().map(|(t, o)| (format!("{t} ({})", if round_trip(t) { "time" } else { "rate" }), o)).collect();
        let cols: Vec<(String, usize, usize)> =
            (1..first.names.len()).map(|i| (format!("vs {}", first.names[i]), 0, i)).collect();
        let (head, body) = ratio_grid(label, &grid_rows, &cols);
        let of = if list.iter().any(|(t, _)| round_trip(t)) {
            format!(
                "of times for round trips (below 1: {0} faster), of rates otherwise (above 1: {0} faster)",
                first.names[0]
            )
        } else {
            format!("of rates (above 1: {} faster)", first.names[0])
        };
        println!(
            "{} / each, per repetition: median (min-max, count) of the ratios in that placement, {of}:\n",
            first.names[0]
        );
        print_table(&head, &body);
    }
    let named: Named<Outcome> = groups;
    print!("{}", report_cells(&named));
}

/// Message sizes and the batch size of the messages section.
const MSG_SIZES: [usize; 2] = [8, 64];
const MSG_BATCH: usize = 128;

/// Framed messages against rtrb, one at a time and batched, like with like
/// (`benches/support/messages.rs`; `cargo bench --bench messages` prints the same table).
fn messages(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>, advice: &mut Vec<String>) {
    let out = msg_section(&MSG_SIZES, MSG_BATCH, cfg.reps, cfg.target, &mut |step| p.step("messages", step));
    p.clear();
    println!("## Messages between two threads, 1 MiB queues\n");
    println!(
        "One at a time: mirror-ring framed `try_send`/`try_recv` (a stamped frame per message; the consumer's cursor stored every 64 KiB) vs rtrb \
         `push`/`pop`, crossbeam `ArrayQueue` for reference. Batches of {MSG_BATCH}: mirror-ring `try_send_batch` of {MSG_BATCH} + \
         `try_recv_batch` vs rtrb `write_chunk_uninit({MSG_BATCH})` + `read_chunk` of everything readable. Blocking: \
         mirror-ring `send`/`recv` (its own spin and slip) vs the same rtrb `push`/`pop`; built in place: one at a \
         time (`try_*`, and blocking), but each message is written straight into the ring (`try_reserve` or \
         `reserve` + `commit`) rather than built on the stack and copied in by `send`, as rtrb's `push` takes it \
         by value. 8 B messages are rtrb `u64`s, 64 B messages `[u8; 64]`s; every message is copied \
         out.\n"
    );
    print_msg_section(&out, &MSG_SIZES, MSG_BATCH);
    // The contenders per size, in `msg_contenders` order: one at a time, rtrb push/pop,
    // ArrayQueue, send_batch, rtrb chunks, blocking one at a time, blocking built in place,
    // built in place (`try_*`).
    for (k, &size) in MSG_SIZES.iter().enumerate() {
        let b = MSG_PER_SIZE * k;
        advice.push(format!(
            "Framed {size}-byte messages: in batches (`try_send_batch` + `try_recv_batch`) {} M/s, {} rtrb's push/pop and {} \
             its chunks; one at a time (`send` / `recv`) {} M/s, {} rtrb's push/pop; one at a time built in place \
             (`reserve` + `commit` / `recv`) {} M/s, {} rtrb's push/pop (with `try_reserve` / `try_recv`: {} M/s, {}).",
            fmt_rate(out.median_rate(b + 3) / 1e6),
            out.ratio_here(b + 3, b + 1),
            out.ratio_here(b + 3, b + 4),
            fmt_rate(out.median_rate(b + 5) / 1e6),
            out.ratio_here(b + 5, b + 1),
            fmt_rate(out.median_rate(b + 6) / 1e6),
            out.ratio_here(b + 6, b + 1),
            fmt_rate(out.median_rate(b + 7) / 1e6),
            out.ratio_here(b + 7, b + 1)
        ));
    }
    // Issue 15's goals: one at a time, 8-byte frames 1.5x rtrb's push/pop, 64-byte frames 3x;
    // batched 8-byte frames 3x "rtrb", read both ways: against rtrb's push/pop (the baseline of
    // the other goals) and against rtrb's chunks (like with like). No goal for batched 64-byte
    // frames.
    // Per size the pairs are: one at a time (`try_*`), the same built in place (`try_reserve` +
    // `commit`), batched, one at a time blocking, one at a time blocking built in place
    // (`reserve` + `commit`). The one-at-a-time goals are checked on `send` both ways, and at
    // 64 B on the built-in-place forms too (at 8 B `send` is the call to use: one 16-byte store
    // of message and clear mark, `docs::framing`).
    for (pairs, &size) in msg_pairs(&MSG_SIZES, MSG_BATCH).chunks(5).zip(&MSG_SIZES) {
        let mut with_min = Vec::new();
        for (k, pair) in pairs.iter().enumerate() {
            match (size, k) {
                (8, 0 | 3) => with_min.push((pair.ours, pair.theirs, pair.label.clone(), 1.5)),
                (8, 1 | 4) => {}
                (8, 2) => {
                    // Against the push/pop of the one-at-a-time pair, then against the chunks.
                    with_min.push((pair.ours, pairs[0].theirs, pair.label.clone(), 3.0));
                    with_min.push((pair.ours, pair.theirs, pair.label.clone(), 3.0));
                }
                (_, 0 | 1 | 3 | 4) => with_min.push((pair.ours, pair.theirs, pair.label.clone(), 3.0)),
                _ => {}
            }
        }
        for (ours, theirs, label, min) in with_min {
            goals.push(message_goal(&out, &Pair { label, ours, theirs, also: vec![] }, min));
        }
    }
}

/// The goal "`pair`'s ratio >= `min`" from a messages outcome: met when the median ratio
/// reaches it in every placement band the run saw.
fn message_goal(out: &Outcome, pair: &Pair, min: f64) -> Goal {
    let what = format!("messages, {}: >= {min:.1}x {}", pair.label, out.names[pair.theirs]);
    pair_goal(what, out, pair.ours, pair.theirs, min)
}

/// Busy steps per message on the slower side in the regime table (as in `cargo bench --bench
/// messages -- regime`).
const REGIME_STEPS: u32 = 24;

/// Which side sets the pace, 64 B messages one at a time: mirror-ring, the minimal stamped
/// queue and rtrb with no work per message, with a few nanoseconds of work on the sending
/// side, and with them on the receiving side (`docs::framing`, "Which side sets the pace").
fn regime(cfg: &Cfg, p: &mut Progress) {
    let out = msg_regime_section(64, REGIME_STEPS, cfg.reps, cfg.target, &mut |step| p.step("regime", step));
    p.clear();
    println!("### Which side sets the pace, 64 B messages one at a time\n");
    println!(
        "The same queues with {REGIME_STEPS} busy steps (about 12 ns) added per message on one side. With nothing to do, \
         mirror-ring's consumer is the faster side: it catches up and reads each frame from the line the producer is \
         still writing, and both sides then go at the core-to-core round trip. With the receiver the slower side (what \
         a consumer that handles its messages is), the ring fills and the consumer reads finished lines. The minimal \
         stamped queue (a hand-written floor) shows the same switch when its sender is the slower side.\n"
    );
    print_msg_regime_section(&out);
}

/// How the receiver uses each message, 8 and 64 B one at a time: copied out (as in every other
/// messages table) or read where it lies, mirror-ring against rtrb read the same way
/// (`cargo bench --bench messages -- read`). Issue 15's one-at-a-time goals are checked on the
/// in-place reading too: it is what a harness that only checks each message's counter measures.
fn read_modes(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>) {
    let out = msg_read_section(&MSG_SIZES, cfg.reps, cfg.target, &mut |step| p.step("read", step));
    p.clear();
    println!("### How the receiver uses each message: copied out or read in place\n");
    println!(
        "The tables above copy every received message out (into a value the optimiser must keep). Here the same \
         one-at-a-time queues also run with the receiver reading only the counter and the last byte where the \
         message lies. mirror-ring's frames are read in place either way and its rate hardly moves. rtrb's \
         `push`/`pop` has two rates here (at 64 B, 55-80 or ~215 M/s; at 8 B, ~200 or up to ~490), and a few \
         nanoseconds of difference in the two loops decide which: this harness and an outside one land on \
         different sides (BENCHMARKS.md, \"How the receiver uses a message\").\n"
    );
    print_msg_read_section(&out, &MSG_SIZES);
    for pair in msg_read_pairs(&out, &MSG_SIZES).into_iter().filter(|pair| pair.label.ends_with("read in place")) {
        let min = if pair.label.starts_with("8 B") { 1.5 } else { 3.0 };
        goals.push(message_goal(&out, &pair, min));
    }
}

/// `--across FILE...`: the goals of several saved demo outputs side by side per placement.
/// The rule is mechanical: a run counts for a band when its `Placement verdict:` line names
/// one (every round-trip probe of the run fell in that band); every other run (moved, no
/// verdict, unreadable) is left out, and the list of what was left out, and why, is printed.
/// Whether a goal cell of a saved run is a per-repetition ratio with its range, "1.13x
/// (0.95-1.27, 7 reps, very far)", the form every goal has had since 3f62aab (2026-11-30).
/// Earlier demos printed "0.66x very far (7 reps)" (a per-repetition median) or "0.97x (±6%)"
/// (one median divided by another): from the cell alone the two cannot be told apart.
fn per_repetition(cell: &str) -> bool {
    let Some((_, rest)) = cell.split_once("x (") else { return false };
    let Some((range, rest)) = rest.split_once(", ") else { return false };
    let bounds = range.split_once('-').map(|(a, b)| (a.parse::<f64>(), b.parse::<f64>()));
    matches!(bounds, Some((Ok(_), Ok(_))))
        && rest.split_once(' ').is_some_and(|(n, w)| n.parse::<u32>().is_ok() && w.starts_with("rep"))
}

fn across(files: &[String]) -> ! {
    if files.is_empty() {
        usage()
    }
    /// A goal row of a saved run: what, the ratio, met.
    type GoalRow = (String, f64, bool);
    let mut kept: Vec<(Placement, Vec<GoalRow>)> = Vec::new();
    let mut left_out = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                left_out.push(format!("{f}: cannot read it: {e}"));
                continue;
            }
        };
        let Some(verdict) = text.lines().find_map(|l| l.strip_prefix("Placement verdict: ")) else {
            left_out.push(format!("{f}: no placement verdict (an older demo, or a run cut short)"));
            continue;
        };
        let Some(band) = Placement::ALL.into_iter().find(|p| verdict.starts_with(&format!("{} (", p.name()))) else {
            left_out.push(format!("{f}: {verdict}"));
            continue;
        };
        let mut goals = Vec::new();
        let mut in_goals = false;
        let mut old_ratios = false;
        for l in text.lines() {
            if l.starts_with("## ") || l.starts_with("# ") {
                in_goals = l.trim() == "## Goals";
                continue;
            }
            if !in_goals || !l.starts_with('|') || l.starts_with("|-") {
                continue;
            }
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() < 3 || cells[0] == "goal" {
                continue;
            }
            if let Some(v) = cells[1].split('x').next().and_then(|v| v.trim().parse::<f64>().ok()) {
                // (A cell without a ratio, "no paired repetitions", says nothing of the format.)
                old_ratios |= !per_repetition(cells[1]);
                goals.push((cells[0].to_string(), v, cells[2] == "met"));
            }
        }
        if old_ratios {
            // Some of its ratios may be medians divided by medians, and its format does not say
            // which: not comparable with the others.
            left_out.push(format!(
                "{f}: an older demo's goals (without the range of the per-repetition ratios; some demos of that \
                 time divided one median by another)"
            ));
            continue;
        }
        kept.push((band, goals));
    }
    let bands: Vec<Placement> = Placement::ALL.into_iter().filter(|b| kept.iter().any(|(k, _)| k == b)).collect();
    let mut names: Vec<String> = Vec::new();
    for (_, goals) in &kept {
        for (g, _, _) in goals {
            if !names.contains(g) {
                names.push(g.clone());
            }
        }
    }
    println!("## Across placements: {} runs kept, {} left out\n", kept.len(), left_out.len());
    println!(
        "Rule: a run counts for a placement when every round-trip probe it took fits that band (near {}, far {}, \
         very far {}, each edge with {:.0}% slack); the cells give the median of the runs' values (min-max, runs that \
         met the goal).\n",
        Placement::Near.range(),
        Placement::Far.range(),
        Placement::VeryFar.range(),
        100.0 * EDGE_SLACK
    );
    let mut head = vec!["goal".to_string()];
    head.extend(bands.iter().map(|b| format!("{} ({} runs)", b.name(), kept.iter().filter(|(k, _)| k == b).count())));
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let mut row = vec![name.clone()];
            for b in &bands {
                let vals: Vec<(f64, bool)> = kept
                    .iter()
                    .filter(|(k, _)| k == b)
                    .flat_map(|(_, goals)| goals.iter().filter(|(g, _, _)| g == name).map(|(_, v, m)| (*v, *m)))
                    .collect();
                let xs: Vec<f64> = vals.iter().map(|v| v.0).collect();
                row.push(match Summary::of(&xs) {
                    Some(s) => format!(
                        "{:.2}x ({:.2}-{:.2}, {}/{} met)",
                        s.median,
                        s.min,
                        s.max,
                        vals.iter().filter(|v| v.1).count(),
                        vals.len()
                    ),
                    None => "-".into(),
                });
            }
            row
        })
        .collect();
    print_table(&head, &rows);
    if !left_out.is_empty() {
        println!("Left out ({}):\n", left_out.len());
        print_list(&left_out);
    }
    std::process::exit(0)
}

/// A markdown list (and a blank line), if there is anything to say.
fn print_list(items: &[String]) {
    for n in items {
        println!("- {n}");
    }
    if !items.is_empty() {
        println!();
    }
}

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "-".into()
    } else if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Blocking streaming and round trips for several spin budgets.
fn spin_sweep(cfg: &Cfg, p: &mut Progress) {
    let budgets: Vec<Duration> = [0u64, 5, 20, 50, 200, 1000].iter().map(|&u| Duration::from_micros(u)).collect();
    println!("## Spin budget sweep (blocking API, 1 MiB ring)\n");
    // Streaming.
    let comps: Vec<Competitor> = std::iter::once(Competitor::Mirror(Backend::Auto))
        .chain(budgets.iter().map(|&b| Competitor::MirrorBlocking(Backend::Auto, b)))
        .collect();
    let cells: Vec<(usize, usize)> = [64, 4 * KIB, 64 * KIB].iter().map(|&w| (MIB, w)).collect();
    for mode in [Mode::Threads, Mode::Fork] {
        let (data, _, notes) = measure(cfg, p, "spin sweep (streaming)", mode, &comps, &cells);
        p.clear();
        println!("Streaming, {}: GB/s (first column: spinning try_* loops)\n", mode.name());
        let mut head = vec!["write".to_string()];
        head.extend(comps.iter().map(|c| match c {
            Competitor::MirrorBlocking(_, b) => format!("spin {}", fmt_duration(*b)),
            _ => "try_* spin".into(),
        }));
        let rows: Vec<Vec<String>> = cells
            .iter()
            .zip(&data)
            .map(|((_, w), d)| std::iter::once(fmt_size(*w)).chain(d.iter().map(|&v| cell(v))).collect())
            .collect();
        print_table(&head, &rows);
        print!("{notes}");
    }
    // Round trips.
    let reps = cfg.reps.max(5);
    let mut rows = Vec::new();
    // Two more rows between threads: a busy loop beside each end on its core (a spin that gives
    // its core away, sched_yield, waits out the other task's time slice), and both ends on one
    // core (a spin that keeps its core holds up the peer it waits for).
    #[derive(Clone, Copy, PartialEq)]
    enum Setting {
        Alone(Mode),
        BusyLoops,
        OneCpu,
    }
    for setting in [Setting::Alone(Mode::Threads), Setting::Alone(Mode::Fork), Setting::BusyLoops, Setting::OneCpu] {
        let name = match setting {
            Setting::Alone(mode) => mode.name().to_string(),
            Setting::BusyLoops => "threads, a busy loop on each core".to_string(),
            Setting::OneCpu => format!("threads, both on CPU {PRODUCER_CPU}"),
        };
        let mut samples = vec![Vec::new(); budgets.len()];
        for rep in 0..reps {
            for i in rotation(budgets.len(), rep) {
                let b = budgets[i];
                p.step("spin sweep (round trips)", &format!("{name} rep {}/{reps}: {}", rep + 1, fmt_duration(b)));
                let n = if b.is_zero() { 200 } else { 2000 };
                let kind = Pinger::MirrorBlocking(b);
                let run = match setting {
                    Setting::Alone(mode) => round_trips(kind, mode, 1, n, 50),
                    Setting::BusyLoops => with_busy_loops(|| round_trips(kind, Mode::Threads, 1, n, 50)),
                    Setting::OneCpu => thread_round_trips(kind, PRODUCER_CPU, 1, n, 50),
                };
                if let Ok(v) = run {
                    samples[i].push(v[0]);
                }
            }
        }
        let mut row = vec![name];
        row.extend(samples.iter().map(|s| fmt_ns(median(s))));
        rows.push(row);
    }
    p.clear();
    println!("Round trip of an 8-byte message, back to back:\n");
    let mut head = vec!["between".to_string()];
    head.extend(budgets.iter().map(|&b| format!("spin {}", fmt_duration(b))));
    print_table(&head, &rows);
    // Paced requests: the pinger thinks for a while between round trips, so the echo side waits
    // that long for each request: it either spins through the gap or sleeps.
    let gaps = [10u64, 30, 100, 1000].map(Duration::from_micros);
    let mut rows = Vec::new();
    for &gap in &gaps {
        let mut lat = vec![Vec::new(); budgets.len()];
        let mut cpu = vec![Vec::new(); budgets.len()];
        for rep in 0..3 {
            for i in rotation(budgets.len(), rep) {
                let b = budgets[i];
                p.step(
                    "spin sweep (paced)",
                    &format!("gap {} rep {}/3: spin {}", fmt_duration(gap), rep + 1, fmt_duration(b)),
                );
                let n = (Duration::from_millis(if cfg.quick { 20 } else { 60 }).as_nanos() / (gap.as_nanos() + 50_000))
                    as u64;
                if let Ok((l, c)) = paced_round_trips(b, gap, n.max(20)) {
                    lat[i].push(l);
                    cpu[i].push(c);
                }
            }
        }
        let mut row = vec![fmt_duration(gap)];
        row.extend(lat.iter().zip(&cpu).map(|(l, c)| format!("{} / {:.0}%", fmt_ns(median(l)), 100.0 * median(c))));
        rows.push(row);
    }
    p.clear();
    println!(
        "Paced requests between threads: round trip (median) / CPU used by the echo thread while it waits, by gap between \
         requests:\n"
    );
    let mut head = vec!["gap".to_string()];
    head.extend(budgets.iter().map(|&b| format!("spin {}", fmt_duration(b))));
    print_table(&head, &rows);
}

/// Non-temporal stores in the producer (minimal mirrored ring), against ordinary copies.
fn nt_experiment(cfg: &Cfg, p: &mut Progress) {
    let comps = [Competitor::Minimal, Competitor::MinimalNt, Competitor::Mirror(Backend::Auto)];
    let cells: Vec<(usize, usize)> =
        [(MIB, KIB), (MIB, 4 * KIB), (MIB, 64 * KIB), (4 * MIB, 4 * KIB), (16 * MIB, 4 * KIB)].into_iter().collect();
    for mode in [Mode::Threads, Mode::Fork] {
        let (data, outcomes, notes) = measure(cfg, p, "non-temporal stores", mode, &comps, &cells);
        p.clear();
        println!("## Non-temporal stores in the producer ({}), GB/s\n", mode.name());
        let head: Vec<String> =
            ["ring, write", "ordinary copy", "non-temporal", "nt / ordinary, per repetition", "mirror-ring"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let rows: Vec<Vec<String>> = cells
            .iter()
            .zip(&data)
            .zip(&outcomes)
            .map(|(((c, w), d), (_, o))| {
                vec![
                    format!("{}, {}", fmt_size(*c), fmt_size(*w)),
                    cell(d[0]),
                    cell(d[1]),
                    o.ratio_per_band(1, 0),
                    cell(d[2]),
                ]
            })
            .collect();
        print_table(&head, &rows);
        print!("{notes}");
    }
}
