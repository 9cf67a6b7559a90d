//! The comparison demo: mirror-ring side by side with a memfd ring, a split-copy ring, the
//! minimal mirrored ring it must stay close to, rtrb, ringbuf, a pipe and a socketpair, in one
//! run, interleaved, with medians.
//!
//! ```sh
//! cargo run --release --example compare               # about 30 s
//! cargo run --release --example compare -- --quick    # CI-sized, about 9 s
//! ```
//!
//! Options: `--reps N` (repetitions, default 7; 3 with `--quick`), `--target-ms N` (length of
//! one timed run, default 10; 3 with `--quick`), `--svg PATH` (write the
//! throughput-by-write-size chart, and next to it `-ratios` and `-ring-size` charts), `--spin-sweep` (blocking throughput, round trips and CPU use per spin budget),
//! `--nt` (non-temporal stores in the producer, against ordinary copies), `--only SECTIONS`
//! (comma-separated: check, threads, fork, sizes, single, create, latency, messages, async), `--profile NAME WRITE
//! OPS` (only a one-thread write/read loop of one competitor, to run under
//! `valgrind --tool=callgrind`), `--across FILE...` (the goals of several saved runs side by
//! side per placement; runs whose placement moved are left out and counted).
//!
//! Numbers are GB/s = 1e9 bytes per second, each byte copied in by the producer and out by the
//! consumer; the producer runs on CPU 0, the consumer on CPU 1. Absolute figures on virtual
//! machines swing several-fold as the host moves the two vCPUs; compare the ratios, which are
//! taken within one run. Every repetition runs the competitors in a rotated order, between two
//! probes of the core-to-core round trip (`benches/support/interleave.rs`); the report says
//! which placement each section ran under, and ends with the run's placement verdict.

#[path = "../benches/support/mod.rs"]
mod support;

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use mirror_ring::Backend;
use support::*;

struct Cfg {
    quick: bool,
    reps: usize,
    /// Target duration of one timed streaming run.
    target: Duration,
    svg: Option<String>,
    sweep: bool,
    nt: bool,
    only: Option<Vec<String>>,
}

impl Cfg {
    fn from_args() -> Cfg {
        let mut args = std::env::args().skip(1);
        let mut cfg =
            Cfg { quick: false, reps: 0, target: Duration::ZERO, svg: None, sweep: false, nt: false, only: None };
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
                "--across" => across(&args.collect::<Vec<_>>()),
                "--nt" => cfg.nt = true,
                "--only" => {
                    cfg.only = Some(args.next().unwrap_or_else(|| usage()).split(',').map(str::to_string).collect())
                }
                "--ab" => {
                    // --ab NAME,NAME,... WRITE RING REPS: those competitors only, interleaved,
                    // REPS times; medians and ratios to the first.
                    let names = args.next().unwrap_or_else(|| usage());
                    let write = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let ring = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let reps = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                    let target = if cfg.target.is_zero() { Duration::from_millis(12) } else { cfg.target };
                    ab(&names, write, ring, reps, target)
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
            None => !(self.sweep || self.nt) || section == "check",
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
    for rep in 0..reps {
        for i in rotation(comps.len(), rep) {
            let c = comps[i];
            let mut t = stream(c, Mode::Threads, ring, &runs[i]).expect("stream");
            for _ in 0..2 {
                if t.disturbed() {
                    t = stream(c, Mode::Threads, ring, &runs[i]).expect("stream");
                }
            }
            samples[i].push(gbps(runs[i].total, t.time));
        }
    }
    let base = median(&samples[0]);
    for (i, c) in comps.iter().enumerate() {
        let m = median(&samples[i]);
        let all: Vec<String> = samples[i].iter().map(|v| format!("{v:.2}")).collect();
        println!("{:>22}: median {m:6.2} GB/s ({})  [{}]", c.name(), ratio(m, base), all.join(" "));
    }
    println!("core-to-core round trip now {}", fmt_ns(core_round_trip()));
    std::process::exit(0)
}

/// The bare atomic round trip between the two CPUs right now: how near the host has placed
/// them (recorded for the run's placement verdict).
fn core_round_trip() -> f64 {
    probe_and_record()
}

fn competitor(name: &str) -> Competitor {
    let all = [
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
        "usage: compare [--quick] [--reps N] [--target-ms N] [--svg PATH] [--spin-sweep] [--nt] \
         [--only check,threads,fork,sizes,single,create,latency,messages]\n       \
         compare --across FILE... (saved outputs: goals per placement, moved runs left out)"
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
const RING_SIZES: [usize; 9] = [64 * KIB, 128 * KIB, 256 * KIB, 512 * KIB, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB];

/// Median GB/s and its spread per (cell, competitor); cells are (ring size, write size). Within
/// a cell every repetition runs each competitor once, in rotated order, between two placement
/// probes (`interleave`). Prints why a competitor has no numbers, and where the placement
/// moved.
fn measure_spread(
    cfg: &Cfg,
    p: &mut Progress,
    section: &str,
    mode: Mode,
    comps: &[Competitor],
    cells: &[(usize, usize)],
) -> (Vec<Vec<(f64, f64)>>, String) {
    let mut out = Vec::new();
    let mut outcomes = Vec::new();
    for &(cap, write) in cells {
        let mut cases: Vec<Box<dyn Contender>> =
            comps.iter().map(|&c| Box::new(StreamCase::new(c, mode, cap, write)) as Box<dyn Contender>).collect();
        let where_ = format!("{} ring, {} writes", fmt_size(cap), fmt_size(write));
        let o = interleave(&mut cases, cfg.reps, cfg.target, &mut |step| p.step(section, &format!("{where_}, {step}")));
        p.runs += o.samples;
        p.preempted += o.disturbed;
        out.push((0..comps.len()).map(|i| (o.median_rate(i) / 1e9, spread(&o.all_rates(i)))).collect());
        outcomes.push((where_, o));
    }
    p.clear();
    (out, report_cells(&outcomes))
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

/// Half the interquartile range relative to the median: the run-to-run noise of one cell.
fn spread(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (q(0.75) - q(0.25)) / 2.0 / median(&v)
}

/// Medians only.
fn measure(
    cfg: &Cfg,
    p: &mut Progress,
    section: &str,
    mode: Mode,
    comps: &[Competitor],
    cells: &[(usize, usize)],
) -> (Vec<Vec<f64>>, String) {
    let (stats, notes) = measure_spread(cfg, p, section, mode, comps, cells);
    (stats.into_iter().map(|row| row.into_iter().map(|(m, _)| m).collect()).collect(), notes)
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

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// The throughput table plus the ratio table (mirror-ring, column 0, against each other).
fn print_stream_tables(label: &str, rows: &[String], comps: &[Competitor], data: &[Vec<f64>], ratio_cols: &[usize]) {
    let mut head = vec![label.to_string()];
    head.extend(comps.iter().map(|c| c.name()));
    let body: Vec<Vec<String>> = rows
        .iter()
        .zip(data)
        .map(|(r, d)| std::iter::once(r.clone()).chain(d.iter().map(|&v| cell(v))).collect())
        .collect();
    println!("GB/s (median of the repetitions):\n");
    print_table(&head, &body);
    let mut head = vec![label.to_string()];
    head.extend(ratio_cols.iter().map(|&i| format!("vs {}", comps[i].name())));
    let body: Vec<Vec<String>> = rows
        .iter()
        .zip(data)
        .map(|(r, d)| std::iter::once(r.clone()).chain(ratio_cols.iter().map(|&i| ratio(d[0], d[i]))).collect())
        .collect();
    println!("{} / each (higher is better for mirror-ring):\n", comps[0].name());
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

    /// A ratio goal `a / b >= min` on streaming medians with relative spreads: "met within
    /// noise" when the shortfall is smaller than the combined run-to-run noise of the two.
    fn ratio_at_least(what: impl Into<String>, a: (f64, f64), b: (f64, f64), min: f64) -> Goal {
        let r = a.0 / b.0;
        let noise = (a.1.powi(2) + b.1.powi(2)).sqrt();
        let noise = if noise.is_finite() { noise } else { 0.0 };
        let status = if r >= min {
            "met"
        } else if r >= min * (1.0 - noise) {
            "within noise"
        } else {
            "MISSED"
        };
        Goal { what: what.into(), value: format!("{} (±{:.0}%)", ratio(a.0, b.0), 100.0 * noise), status }
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
         each timed run ~{} ms after a warm-up; GB/s = 1e9 B/s, every byte copied in and out once",
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

    if cfg.wants("check") {
        self_check(&mut p);
    }

    let threads = [
        Competitor::Mirror(Backend::Auto),
        Competitor::Mirror(Backend::Duplicate),
        Competitor::Mirror(Backend::Memfd),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::Ringbuf,
        Competitor::RingbufCached,
        Competitor::Pipe,
        Competitor::Socketpair,
    ];
    let write_rows: Vec<String> = WRITES.iter().map(|&w| fmt_size(w)).collect();
    let mut svg_data: Option<Vec<Vec<f64>>> = None;
    if cfg.wants("threads") {
        let cells: Vec<(usize, usize)> = WRITES.iter().map(|&w| (MIB, w)).collect();
        let (stats, notes) = measure_spread(&cfg, &mut p, "threads", Mode::Threads, &threads, &cells);
        let data: Vec<Vec<f64>> = stats.iter().map(|row| row.iter().map(|&(m, _)| m).collect()).collect();
        p.clear();
        println!("## Streaming between two threads, 1 MiB ring, by write size\n");
        print_stream_tables("write", &write_rows, &threads, &data, &[2, 3, 4, 5, 6, 7, 8, 9]);
        print!("{notes}");
        let at = |w: usize, c: usize| stats[WRITES.iter().position(|&x| x == w).unwrap()][c];
        let g = |goals: &mut Vec<Goal>, what: &str, a, b, min| goals.push(Goal::ratio_at_least(what, a, b, min));
        g(&mut goals, "threads, 64 B writes: >= 1.3x rtrb", at(64, 0), at(64, 5), 1.3);
        g(&mut goals, "threads, 4 KiB writes: >= 1.0x rtrb", at(4 * KIB, 0), at(4 * KIB, 5), 1.0);
        g(&mut goals, "threads, 64 KiB writes: >= 1.0x rtrb", at(64 * KIB, 0), at(64 * KIB, 5), 1.0);
        g(&mut goals, "threads, 4 KiB writes: >= 2x pipe", at(4 * KIB, 0), at(4 * KIB, 8), 2.0);
        g(&mut goals, "threads, 4 KiB writes: >= 3x socketpair", at(4 * KIB, 0), at(4 * KIB, 9), 3.0);
        for &w in &WRITES {
            let what = format!("threads, {} writes: >= 0.95x minimal mirror", fmt_size(w));
            g(&mut goals, &what, at(w, 0), at(w, 4), 0.95);
        }
        svg_data = Some(data);
    }

    if cfg.wants("fork") {
        let fork = [
            Competitor::Mirror(Backend::Auto),
            Competitor::Mirror(Backend::Duplicate),
            Competitor::Mirror(Backend::Memfd),
            Competitor::Split,
            Competitor::Minimal,
            Competitor::Pipe,
            Competitor::Socketpair,
        ];
        let cells: Vec<(usize, usize)> = WRITES.iter().map(|&w| (MIB, w)).collect();
        let (data, notes) = measure(&cfg, &mut p, "fork", Mode::Fork, &fork, &cells);
        p.clear();
        println!("## Streaming from a parent to its forked child, 1 MiB ring, by write size\n");
        print_stream_tables("write", &write_rows, &fork, &data, &[2, 3, 4, 5, 6]);
        print!("{notes}");
    }

    let mut svg_sizes: Option<Vec<Vec<f64>>> = None;
    let size_comps = [
        Competitor::Mirror(Backend::Auto),
        Competitor::Mirror(Backend::Memfd),
        Competitor::Split,
        Competitor::Minimal,
        Competitor::Rtrb,
        Competitor::Ringbuf,
        Competitor::RingbufCached,
        Competitor::Pipe,
    ];
    if cfg.wants("sizes") {
        let cells: Vec<(usize, usize)> = RING_SIZES.iter().map(|&c| (c, 4 * KIB)).collect();
        let (data, notes) = measure(&cfg, &mut p, "ring sizes", Mode::Threads, &size_comps, &cells);
        p.clear();
        println!("## Streaming between two threads, 4 KiB writes, by ring size\n");
        println!("(The pipe's buffer is capped at pipe-max-size = {}.)\n", fmt_size(pipe_max_size()));
        let rows: Vec<String> = RING_SIZES.iter().map(|&c| fmt_size(c)).collect();
        print_stream_tables("ring", &rows, &size_comps, &data, &[1, 2, 3, 4, 5, 6, 7]);
        print!("{notes}");
        let best = RING_SIZES
            .iter()
            .zip(&data)
            .max_by(|a, b| a.1[0].total_cmp(&b.1[0]))
            .map(|(c, d)| format!("{} ({} GB/s)", fmt_size(*c), cell(d[0])))
            .unwrap_or_default();
        println!("Fastest ring size for mirror-ring at 4 KiB writes in this run: {best}.\n");
        svg_sizes = Some(data);
    }

    if cfg.wants("single") {
        single(&cfg, &mut p);
    }

    if cfg.wants("create") {
        creation(&cfg, &mut p, &mut goals);
    }

    if cfg.wants("latency") {
        latency(&cfg, &mut p, &mut goals);
    }

    if cfg.wants("messages") {
        messages(&cfg, &mut p, &mut goals);
    }

    if cfg.sweep {
        spin_sweep(&cfg, &mut p);
    }
    if cfg.nt {
        nt_experiment(&cfg, &mut p);
    }

    if !goals.is_empty() {
        println!("## Goals\n");
        let rows: Vec<Vec<String>> =
            goals.iter().map(|g| vec![g.what.clone(), g.value.clone(), g.status.to_string()]).collect();
        print_table(&["goal".into(), "this run".into(), "".into()], &rows);
    }

    if let Some(path) = &cfg.svg {
        if let Some(data) = &svg_data {
            let series: Vec<(String, Vec<f64>)> =
                threads.iter().enumerate().map(|(i, c)| (c.name(), data.iter().map(|row| row[i]).collect())).collect();
            let title = "Streaming between two threads, 1 MiB ring (median GB/s, bytes in and out)";
            write_svg(path, &svg_chart(title, "write size", "GB/s (log scale)", &write_rows, &series, true));
            // The other rings, most interesting first (pipe and socketpair are far below; see
            // the throughput chart).
            let ratios: Vec<(String, Vec<f64>)> = [5, 7, 6, 3, 4, 2]
                .iter()
                .map(|&i| (format!("vs {}", threads[i].name()), data.iter().map(|row| row[0] / row[i]).collect()))
                .collect();
            let title = "mirror-ring / other rings, same run (above 1: mirror-ring faster)";
            write_svg(
                &sibling(path, "-ratios"),
                &svg_chart(title, "write size", "ratio of medians", &write_rows, &ratios, false),
            );
        }
        if let Some(data) = &svg_sizes {
            let rows: Vec<String> = RING_SIZES.iter().map(|&c| fmt_size(c)).collect();
            let series: Vec<(String, Vec<f64>)> = size_comps
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name(), data.iter().map(|row| row[i]).collect()))
                .collect();
            let title = "Streaming between two threads, 4 KiB writes (median GB/s)";
            write_svg(
                &sibling(path, "-ring-size"),
                &svg_chart(title, "ring size", "GB/s (log scale)", &rows, &series, true),
            );
        }
    }
    // ---- async ends and read_from/write_to (issue 12; rows from benches/support/async_rows.rs) ----
    #[cfg(feature = "tokio")]
    if cfg.wants("async") {
        p.step("async", "async ends, relays");
        let rows = async_rows(cfg.quick);
        p.clear();
        println!(
            "\n## Async ends and relays (feature tokio; core-to-core round trip now {})\n",
            fmt_ns(core_round_trip())
        );
        let mut last = String::new();
        for (section, who, value) in rows {
            if section != last {
                println!("{section}:");
                last = section;
            }
            println!("  {who:>28}: {value}");
        }
    }
    // ---- end of the async block ----
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
        head.push(format!("{what}: auto / memfd"));
    }
    let mut rows = Vec::new();
    // Worst Auto / memfd ratio without prefault, and where: (map, ring).
    let mut worst = [(0.0f64, 0usize); 2];
    for prefault in [false, true] {
        for &size in &sizes {
            let reps = match (size, prefault) {
                (s, true) if s >= GIB => {
                    if cfg.quick {
                        0
                    } else {
                        3
                    }
                }
                (s, true) if s >= 64 * MIB => 3,
                _ => 10 * cfg.reps,
            };
            // [map, ring] x backend
            let mut samples = vec![vec![Vec::new(); backends.len()]; 2];
            for rep in 0..reps {
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
                        }
                    }
                    if let Ok(d) = create_ring(b, size, prefault) {
                        samples[1][i].push(d.as_secs_f64() * 1e6);
                    }
                }
            }
            let mut row = vec![fmt_size(size), if prefault { "yes" } else { "no" }.to_string()];
            for (k, per) in samples.iter().enumerate() {
                if reps == 0 {
                    row.extend(backends.iter().map(|_| "skipped".to_string()));
                    row.push("-".into());
                    continue;
                }
                let med: Vec<f64> = per.iter().map(|s| median(s)).collect();
                row.extend(med.iter().map(|&v| if v.is_finite() { format!("{v:.1}") } else { "-".into() }));
                row.push(ratio(med[0], med[3]));
                if !prefault && med[0] / med[3] > worst[k].0 {
                    worst[k] = (med[0] / med[3], size);
                }
            }
            rows.push(row);
        }
    }
    p.clear();
    print_table(&head, &rows);
    for (k, what) in ["mapping", "ring"].iter().enumerate() {
        let (r, size) = worst[k];
        goals.push(Goal::new(
            format!("creation ({what}, no prefault, every size): Auto <= 0.9x memfd"),
            format!("{r:.2}x worst (at {})", fmt_size(size)),
            r <= 0.9,
        ));
    }
}

fn latency(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>) {
    let kinds = [
        Pinger::MirrorSpin,
        Pinger::Atomic,
        Pinger::MirrorBlocking(Duration::ZERO),
        Pinger::Futex,
        Pinger::Pipe,
        Pinger::MirrorBlocking(Duration::from_micros(50)),
    ];
    let reps = cfg.reps.max(5);
    let mut rows = Vec::new();
    let mut meds = Vec::new();
    let mut notes = Vec::new();
    for mode in [Mode::Threads, Mode::Fork] {
        // Size each batch to about 2 ms (5 ms without --quick) from a short trial.
        let per_batch: Vec<u64> = kinds
            .iter()
            .map(|&k| {
                p.step("round trips", &format!("{} calibrating {}", mode.name(), k.name()));
                let budget = if cfg.quick { 2e6 } else { 5e6 };
                match round_trips(k, mode, 1, 200, 50) {
                    Ok(v) if v[0].is_finite() && v[0] > 0.0 => ((budget / v[0]) as u64).clamp(20, 200_000),
                    Ok(v) => {
                        notes.push(format!(
                            "{} ({}): not measured, calibration timed {} ns",
                            k.name(),
                            mode.name(),
                            v[0]
                        ));
                        0
                    }
                    Err(e) => {
                        notes.push(format!("{} ({}): not measured, calibration failed: {e}", k.name(), mode.name()));
                        0
                    }
                }
            })
            .collect();
        let mut samples = vec![Vec::new(); kinds.len()];
        for rep in 0..reps {
            for i in rotation(kinds.len(), rep) {
                let k = kinds[i];
                if per_batch[i] == 0 {
                    continue;
                }
                p.step("round trips", &format!("{} rep {}/{reps}: {}", mode.name(), rep + 1, k.name()));
                match round_trips(k, mode, 1, per_batch[i], per_batch[i] / 10 + 10) {
                    Ok(v) => samples[i].push(v[0]),
                    Err(e) => notes.push(format!("{} ({}): repetition {} failed: {e}", k.name(), mode.name(), rep + 1)),
                }
            }
        }
        let med: Vec<f64> = samples.iter().map(|s| median(s)).collect();
        let mut row = vec![mode.name().to_string()];
        row.extend(med.iter().map(|&v| fmt_ns(v)));
        row.push(ratio(med[0], med[1]));
        row.push(ratio(med[2], med[3]));
        rows.push(row);
        goals.push(Goal::new(
            format!("{}: spinning round trip <= 1.5x bare atomic", mode.name()),
            ratio(med[0], med[1]),
            med[0] <= 1.5 * med[1],
        ));
        meds.push(med);
    }
    p.clear();
    println!("## Round trip of one 8-byte message (median of per-batch means)\n");
    let mut head = vec!["between".to_string()];
    head.extend(kinds.iter().map(|k| k.name()));
    head.push("spin / atomic".into());
    head.push("blocking / futex".into());
    print_table(&head, &rows);
    print_list(&notes);
}

/// Message sizes and the batch size of the messages section.
const MSG_SIZES: [usize; 2] = [8, 64];
const MSG_BATCH: usize = 128;

/// Framed messages against rtrb, one at a time and batched, like with like
/// (`benches/support/messages.rs`; `cargo bench --bench messages` prints the same table).
fn messages(cfg: &Cfg, p: &mut Progress, goals: &mut Vec<Goal>) {
    let out = msg_section(&MSG_SIZES, MSG_BATCH, cfg.reps, cfg.target, &mut |step| p.step("messages", step));
    p.clear();
    println!("## Messages between two threads, 1 MiB queues\n");
    println!(
        "One at a time: mirror-ring framed `try_send`/`try_recv` (a cursor store per message on each side) vs rtrb \
         `push`/`pop`, crossbeam `ArrayQueue` for reference. Batches of {MSG_BATCH}: mirror-ring `set_batch({MSG_BATCH})` + \
         `try_recv_batch` vs rtrb `write_chunk_uninit({MSG_BATCH})` + `read_chunk` of everything readable. 8 B messages \
         are rtrb `u64`s, 64 B messages `[u8; 64]`s; every message is copied out.\n"
    );
    print_msg_section(&out, &MSG_SIZES, MSG_BATCH);
    // The issue's goals: 8-byte frames at least as many per second as rtrb, 64-byte frames 1.5x.
    for (pair, &size) in msg_pairs(&MSG_SIZES, MSG_BATCH).chunks(2).zip(&MSG_SIZES) {
        let min = if size == 8 { 1.0 } else { 1.5 };
        for pair in pair {
            let what = format!("messages, {}: >= {min:.1}x {}", pair.label, out.names[pair.theirs]);
            let mut parts = Vec::new();
            let mut met = true;
            for band in Placement::ALL {
                if let Some(s) = Summary::of(&out.ratios_in(pair.ours, pair.theirs, band)) {
                    parts.push(format!("{:.2}x {} ({} reps)", s.median, band.name(), s.n));
                    met &= s.median >= min;
                }
            }
            goals.push(if parts.is_empty() {
                Goal { what, value: "-".into(), status: "no steady repetition" }
            } else {
                Goal::new(what, parts.join("; "), met)
            });
        }
    }
}

/// `--across FILE...`: the goals of several saved demo outputs side by side per placement.
/// The rule is mechanical: a run counts for a band when its `Placement verdict:` line names
/// one (every round-trip probe of the run fell in that band); every other run (moved, no
/// verdict, unreadable) is left out, and the list of what was left out, and why, is printed.
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
                goals.push((cells[0].to_string(), v, cells[2] == "met"));
            }
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
        let (data, notes) = measure(cfg, p, "spin sweep (streaming)", mode, &comps, &cells);
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
    for mode in [Mode::Threads, Mode::Fork] {
        let mut samples = vec![Vec::new(); budgets.len()];
        for rep in 0..reps {
            for i in rotation(budgets.len(), rep) {
                let b = budgets[i];
                p.step(
                    "spin sweep (round trips)",
                    &format!("{} rep {}/{reps}: {}", mode.name(), rep + 1, fmt_duration(b)),
                );
                let n = if b.is_zero() { 200 } else { 2000 };
                if let Ok(v) = round_trips(Pinger::MirrorBlocking(b), mode, 1, n, 50) {
                    samples[i].push(v[0]);
                }
            }
        }
        let mut row = vec![mode.name().to_string()];
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
        let (data, notes) = measure(cfg, p, "non-temporal stores", mode, &comps, &cells);
        p.clear();
        println!("## Non-temporal stores in the producer ({}), GB/s\n", mode.name());
        let head: Vec<String> = ["ring, write", "ordinary copy", "non-temporal", "nt / ordinary", "mirror-ring"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<String>> = cells
            .iter()
            .zip(&data)
            .map(|((c, w), d)| {
                vec![
                    format!("{}, {}", fmt_size(*c), fmt_size(*w)),
                    cell(d[0]),
                    cell(d[1]),
                    ratio(d[1], d[0]),
                    cell(d[2]),
                ]
            })
            .collect();
        print_table(&head, &rows);
        print!("{notes}");
    }
}
