//! Interleaved measurement with the placement recorded: the harness every side-by-side table
//! goes through.
//!
//! - Every repetition runs each contender once, in an order rotated from one repetition to
//!   the next and reversed in every other one, so no contender always runs first, or always
//!   right after the same other one.
//! - Before the first repetition and after every repetition, a probe times the bare atomic
//!   round trip between the two CPUs ([`probe_round_trip`]): the host moves the two vCPUs
//!   closer together or farther apart, and every absolute figure moves with them. A repetition
//!   takes the placement of the two probes around it when both fall in the same band
//!   ([`Placement`]), and counts as *moved* otherwise; ratios are then taken within a
//!   repetition (both contenders ran under one placement, seconds apart) and summarised per
//!   placement, with the moved repetitions left out and counted.
//! - A contender that cannot be calibrated (not available here, or failing) is reported with
//!   the reason ([`Outcome::notes`]); so is a sample that fails.
//! - A sample during which other tasks kept one of our CPUs for more than 1% of its time is
//!   repeated, twice at most; what remains is counted.
//!
//! To add a workload, implement [`Contender`] for it (size the sample in `calibrate`, run
//! one timed sample in `sample`), put it in the list given to [`interleave`], and name the
//! pairs to compare for [`pairs_table`]. `StreamCase` (bytes) and `MsgCase` (messages) are
//! the two implementations so far.
#![allow(dead_code, unreachable_pub)]

use std::io;
use std::time::Duration;

use super::*;

// ---------------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------------

/// Where the host has put the two vCPUs, from the bare core-to-core round trip. Runs seen on
/// these VMs: ~50-95 ns (sharing an L3), 110-150 ns, 380-580 ns (another CCD) on AMD EPYC
/// hosts, and 240-340 ns on an Intel Xeon host; the band edges sit between the clusters. A probe within [`EDGE_SLACK`] of an edge
/// fits the bands on both sides of it, so a steady placement that sits near an edge is not
/// called moved for jitter across it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Placement {
    /// Round trip below [`NEAR_BELOW_NS`].
    Near,
    /// Round trip from [`NEAR_BELOW_NS`] up to [`FAR_BELOW_NS`].
    Far,
    /// Round trip of [`FAR_BELOW_NS`] or more.
    VeryFar,
}

/// Upper edge (exclusive) of the near band, ns.
pub const NEAR_BELOW_NS: f64 = 100.0;
/// Upper edge (exclusive) of the far band, ns.
pub const FAR_BELOW_NS: f64 = 200.0;
/// How far (relative) a probe may stray across a band's edge and still fit the band.
pub const EDGE_SLACK: f64 = 0.1;

impl Placement {
    pub const ALL: [Placement; 3] = [Placement::Near, Placement::Far, Placement::VeryFar];

    /// The band of one probe; `None` when the probe failed.
    pub fn of(rtt_ns: f64) -> Option<Placement> {
        if !rtt_ns.is_finite() {
            None
        } else if rtt_ns < NEAR_BELOW_NS {
            Some(Placement::Near)
        } else if rtt_ns < FAR_BELOW_NS {
            Some(Placement::Far)
        } else {
            Some(Placement::VeryFar)
        }
    }

    /// Whether a probe fits this band: inside it, or within [`EDGE_SLACK`] of its edges.
    pub fn fits(self, rtt_ns: f64) -> bool {
        let (lo, hi) = match self {
            Placement::Near => (0.0, NEAR_BELOW_NS),
            Placement::Far => (NEAR_BELOW_NS, FAR_BELOW_NS),
            Placement::VeryFar => (FAR_BELOW_NS, f64::INFINITY),
        };
        rtt_ns.is_finite() && rtt_ns >= lo * (1.0 - EDGE_SLACK) && rtt_ns < hi * (1.0 + EDGE_SLACK)
    }

    /// The placement of a stretch of time from its probes: the band of their median, if every
    /// probe fits it; `None` (moved, or a probe failed) otherwise.
    pub fn steady(probes: &[f64]) -> Option<Placement> {
        if probes.is_empty() || probes.iter().any(|p| !p.is_finite()) {
            return None;
        }
        let band = Placement::of(median(probes))?;
        probes.iter().all(|&p| band.fits(p)).then_some(band)
    }

    /// The placement of a stretch of time between two probes (see [`Placement::steady`]).
    pub fn between(before: f64, after: f64) -> Option<Placement> {
        Placement::steady(&[before, after])
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Near => "near",
            Placement::Far => "far",
            Placement::VeryFar => "very far",
        }
    }

    /// The band's edges, for reports (without the slack).
    pub fn range(self) -> String {
        match self {
            Placement::Near => format!("< {NEAR_BELOW_NS:.0} ns"),
            Placement::Far => format!("{NEAR_BELOW_NS:.0}-{FAR_BELOW_NS:.0} ns"),
            Placement::VeryFar => format!(">= {FAR_BELOW_NS:.0} ns"),
        }
    }

    pub fn from_name(s: &str) -> Option<Placement> {
        Placement::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The bare atomic round trip between CPU 0 and CPU 1 right now, ns (median of 3 batches of
/// 1000 after 300 to warm up: 0.2 ms near, 2 ms very far). NaN if it could not run.
pub fn probe_round_trip() -> f64 {
    round_trips(Pinger::Atomic, Mode::Threads, 3, 1000, 300).map(|v| median(&v)).unwrap_or(f64::NAN)
}

/// Every probe of a process, in order: the whole run's placement, for the verdict a report
/// ends with ([`placement_verdict`]).
static PROBES: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());

/// Probes the round trip and records it for the run's verdict.
pub fn probe_and_record() -> f64 {
    let rtt = probe_round_trip();
    PROBES.lock().unwrap_or_else(|e| e.into_inner()).push(rtt);
    rtt
}

/// All probes recorded so far.
pub fn recorded_probes() -> Vec<f64> {
    PROBES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The run's placement from all its probes: `Ok(band)` when every probe fits one band
/// ([`Placement::steady`]), `Err` with the probes per band (and failed probes) otherwise.
pub fn placement_verdict(probes: &[f64]) -> Result<Placement, ([usize; 3], usize)> {
    if let Some(band) = Placement::steady(probes) {
        return Ok(band);
    }
    let mut counts = [0usize; 3];
    let mut failed = 0;
    for &p in probes {
        match Placement::of(p) {
            Some(b) => counts[b as usize] += 1,
            None => failed += 1,
        }
    }
    Err((counts, failed))
}

/// "near 12, very far 3" (and failed probes).
pub fn fmt_band_counts(counts: &[usize; 3], failed: usize) -> String {
    let mut parts: Vec<String> =
        Placement::ALL.iter().zip(counts).filter(|(_, &c)| c > 0).map(|(p, c)| format!("{} {c}", p.name())).collect();
    if failed > 0 {
        parts.push(format!("failed {failed}"));
    }
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------------
// Contenders and the interleaved loop
// ---------------------------------------------------------------------------------------------

/// One timed sample: `units` (bytes, messages, round trips) in `time`, and how long either side
/// waited for its CPU while another task ran there.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub units: u64,
    pub time: Duration,
    pub preempted: Duration,
}

impl Sample {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.time.as_secs_f64().max(1e-12)
    }

    /// Whether other tasks took more than 1% of the sample from us.
    pub fn disturbed(&self) -> bool {
        self.preempted.as_nanos() * 100 > self.time.as_nanos()
    }
}

/// One thing to measure side by side with others.
pub trait Contender {
    /// The column name.
    fn name(&self) -> String;
    /// Sizes one sample to last about `target` (typically from a short trial run). An error
    /// says why this contender cannot run here; it is reported, and the contender sits out.
    fn calibrate(&mut self, target: Duration) -> io::Result<()>;
    /// One timed sample (setup and warm-up outside the timed part).
    fn sample(&mut self) -> io::Result<Sample>;
    /// Anything worth reporting about the samples taken so far besides their rates (the
    /// streaming regime, say), one short phrase.
    fn detail(&self) -> Option<String> {
        None
    }
}

/// What one interleaved measurement saw.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub names: Vec<String>,
    /// `probes[k]` ran before repetition `k`, `probes[k + 1]` after it (ns).
    pub probes: Vec<f64>,
    /// `rates[rep][contender]`, units per second; `None` where the contender sat out or failed.
    pub rates: Vec<Vec<Option<f64>>>,
    /// Why a contender has missing numbers, one line each.
    pub notes: Vec<String>,
    /// Samples kept, and how many of them were still disturbed after two repeats.
    pub samples: usize,
    pub disturbed: usize,
    /// Each contender's [`Contender::detail`] after the last repetition.
    pub details: Vec<Option<String>>,
}

/// The order of the contenders in repetition `rep`: `rotation(n, rep)[k]` is the contender
/// that runs `k`-th. Repetitions come in pairs: the order rotated by one per pair, then the
/// same order reversed (a rotation alone keeps every contender right after the same other
/// one; two contenders alternate which runs first).
pub fn rotation(n: usize, rep: usize) -> Vec<usize> {
    let rotated = (0..n).map(|k| (k + rep / 2) % n.max(1));
    if rep % 2 == 1 {
        rotated.rev().collect()
    } else {
        rotated.collect()
    }
}

/// Calibrates every contender for `target`, then runs `reps` repetitions, each running every
/// calibrated contender once in rotated order, with a round-trip probe before the first and
/// after each repetition. `progress` gets a line per step.
pub fn interleave(
    contenders: &mut [Box<dyn Contender + '_>],
    reps: usize,
    target: Duration,
    progress: &mut dyn FnMut(&str),
) -> Outcome {
    let n = contenders.len();
    let mut out = Outcome { names: contenders.iter().map(|c| c.name()).collect(), ..Outcome::default() };
    let mut ready = vec![false; n];
    for (i, c) in contenders.iter_mut().enumerate() {
        progress(&format!("calibrating {}", out.names[i]));
        match c.calibrate(target) {
            Ok(()) => ready[i] = true,
            Err(e) => out.notes.push(format!("{}: not measured, calibration failed: {e}", out.names[i])),
        }
    }
    out.probes.push(probe_and_record());
    for rep in 0..reps {
        let mut row = vec![None; n];
        for i in rotation(n, rep) {
            if !ready[i] {
                continue;
            }
            progress(&format!("rep {}/{reps}: {}", rep + 1, out.names[i]));
            let c = &mut contenders[i];
            let mut result = c.sample();
            for _ in 0..2 {
                match &result {
                    Ok(s) if s.disturbed() => result = c.sample(),
                    _ => break,
                }
            }
            match result {
                Ok(s) => {
                    row[i] = Some(s.rate());
                    out.samples += 1;
                    out.disturbed += s.disturbed() as usize;
                }
                Err(e) => out.notes.push(format!("{}: repetition {} failed: {e}", out.names[i], rep + 1)),
            }
        }
        out.rates.push(row);
        out.probes.push(probe_and_record());
    }
    out.details = contenders.iter().map(|c| c.detail()).collect();
    out
}

/// Summary of some values: median, min, max, count.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// "(0.95-1.03, 7 reps)": the range and the count that go beside a median ratio.
    pub fn range_text(&self) -> String {
        self.bracket("")
    }

    /// "0.98x (0.95-1.03, 7 reps)": a summary of per-repetition ratios as every table and goal of
    /// the harness prints one: median, range, how many repetitions paired the two.
    pub fn ratio_text(&self) -> String {
        format!("{:.2}x {}", self.median, self.range_text())
    }

    /// As [`Summary::ratio_text`], with the placement band inside the brackets:
    /// "0.98x (0.95-1.03, 7 reps, very far)".
    pub fn ratio_text_in(&self, band: Placement) -> String {
        format!("{:.2}x {}", self.median, self.bracket(&format!(", {}", band.name())))
    }

    fn bracket(&self, tail: &str) -> String {
        let s = if self.n == 1 { "" } else { "s" };
        format!("({:.2}-{:.2}, {} rep{s}{tail})", self.min, self.max, self.n)
    }

    pub fn of(xs: &[f64]) -> Option<Summary> {
        let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        Some(Summary {
            median: median(&v),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: v.len(),
        })
    }
}

impl Outcome {
    /// The placement of repetition `rep` (`None`: it moved, or a probe failed): the band of
    /// the whole measurement when all its probes fit one ([`Placement::steady`]), so that
    /// jitter near a band's edge does not split a steady measurement; otherwise the band of
    /// the two probes around the repetition.
    pub fn placement(&self, rep: usize) -> Option<Placement> {
        Placement::steady(&self.probes).or_else(|| Placement::between(self.probes[rep], self.probes[rep + 1]))
    }

    /// Repetitions per band, and how many moved.
    pub fn placement_counts(&self) -> ([usize; 3], usize) {
        let mut counts = [0usize; 3];
        let mut moved = 0;
        for rep in 0..self.rates.len() {
            match self.placement(rep) {
                Some(p) => counts[p as usize] += 1,
                None => moved += 1,
            }
        }
        (counts, moved)
    }

    /// "7 repetitions: near 7 (probes 52-71 ns)" or "... near 3, very far 2, moved 2 ...".
    pub fn placement_line(&self) -> String {
        let (counts, moved) = self.placement_counts();
        let mut parts: Vec<String> = Placement::ALL
            .iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .map(|(p, c)| format!("{} {c}", p.name()))
            .collect();
        if moved > 0 {
            parts.push(format!("moved {moved} (left out of the ratios)"));
        }
        let s = Summary::of(&self.probes);
        let probes = s.map(|s| format!("{:.0}-{:.0} ns", s.min, s.max)).unwrap_or_else(|| "failed".into());
        format!("{} repetitions: {} (round-trip probes {probes})", self.rates.len(), parts.join(", "))
    }

    /// The same outcome with every rate replaced by its inverse, the time per unit: for round
    /// trips, whose ratios then read as ratios of times (below 1: the first is faster).
    pub fn as_times(&self) -> Outcome {
        let mut t = self.clone();
        for row in &mut t.rates {
            for r in row.iter_mut() {
                *r = r.filter(|&v| v > 0.0).map(|v| 1.0 / v);
            }
        }
        t
    }

    /// Every rate of contender `i` (all repetitions).
    pub fn all_rates(&self, i: usize) -> Vec<f64> {
        self.rates.iter().filter_map(|r| r[i]).collect()
    }

    /// Median rate of contender `i` over all repetitions (NaN if none).
    pub fn median_rate(&self, i: usize) -> f64 {
        median(&self.all_rates(i))
    }

    /// Rates of contender `i` in the repetitions of placement `p`.
    pub fn rates_in(&self, i: usize, p: Placement) -> Vec<f64> {
        (0..self.rates.len()).filter(|&r| self.placement(r) == Some(p)).filter_map(|r| self.rates[r][i]).collect()
    }

    /// Per-repetition ratios `rate(a) / rate(b)` in the repetitions of placement `p`.
    pub fn ratios_in(&self, a: usize, b: usize, p: Placement) -> Vec<f64> {
        (0..self.rates.len())
            .filter(|&r| self.placement(r) == Some(p))
            .filter_map(|r| match (self.rates[r][a], self.rates[r][b]) {
                (Some(x), Some(y)) if y > 0.0 => Some(x / y),
                _ => None,
            })
            .collect()
    }

    /// The per-repetition ratios `rate(a) / rate(b)` summarised per placement band, for every
    /// band in which at least one repetition has both rates (moved repetitions left out).
    pub fn ratio_bands(&self, a: usize, b: usize) -> Vec<(Placement, Summary)> {
        Placement::ALL.into_iter().filter_map(|p| Summary::of(&self.ratios_in(a, b, p)).map(|s| (p, s))).collect()
    }

    /// Why `rate(a) / rate(b)` has no per-repetition ratio (in band `p`, or in any band), in a
    /// few words for a table cell or a goal: no repetition ran, every repetition moved, or the
    /// two never both have a rate in one steady repetition (one sat out or failed: see
    /// [`Outcome::notes`]).
    pub fn no_ratio(&self, a: usize, b: usize, p: Option<Placement>) -> String {
        let (counts, moved) = self.placement_counts();
        let steady: usize = match p {
            Some(p) => counts[p as usize],
            None => counts.iter().sum(),
        };
        let missing: Vec<&str> =
            [a, b].iter().filter(|&&i| self.all_rates(i).is_empty()).map(|&i| self.names[i].as_str()).collect();
        if self.rates.is_empty() {
            "no repetitions".into()
        } else if !missing.is_empty() {
            format!("no paired repetitions ({} not measured)", missing.join(", "))
        } else if steady == 0 {
            format!("no steady repetition ({moved} of {} moved)", self.rates.len())
        } else {
            "no paired repetitions".into()
        }
    }

    /// "1.35x (1.10-1.52, 7 reps, very far)": the per-repetition ratio `rate(a) / rate(b)` in the
    /// band with the most paired repetitions (or why there is none).
    pub fn ratio_here(&self, a: usize, b: usize) -> String {
        self.ratio_bands(a, b)
            .into_iter()
            .max_by_key(|(_, s)| s.n)
            .map(|(p, s)| s.ratio_text_in(p))
            .unwrap_or_else(|| self.no_ratio(a, b, None))
    }

    /// "1.35x (1.10-1.52, 5 reps, near); 1.02x (0.98-1.05, 2 reps, far)": the per-repetition
    /// ratio `rate(a) / rate(b)` in every band that has one (or why there is none).
    pub fn ratio_per_band(&self, a: usize, b: usize) -> String {
        let parts: Vec<String> = self.ratio_bands(a, b).iter().map(|(p, s)| s.ratio_text_in(*p)).collect();
        if parts.is_empty() {
            self.no_ratio(a, b, None)
        } else {
            parts.join("; ")
        }
    }

    /// The median per-repetition ratio `rate(a) / rate(b)` in the band with the most paired
    /// repetitions (NaN if none): one number for a chart.
    pub fn ratio_median_here(&self, a: usize, b: usize) -> f64 {
        self.ratio_bands(a, b).into_iter().max_by_key(|(_, s)| s.n).map_or(f64::NAN, |(_, s)| s.median)
    }
}

/// A pair of contenders (indices into the contender list) to set side by side.
#[derive(Clone, Debug)]
pub struct Pair {
    /// What the row compares ("8 B, one at a time").
    pub label: String,
    pub ours: usize,
    pub theirs: usize,
    /// Further contenders shown for reference in the same row (no ratio).
    pub also: Vec<usize>,
}

/// One row per pair and placement: the median rates (scaled by `scale`, e.g. 1e-6 for M/s)
/// in that placement and the per-repetition ratio `ours / theirs` (median, min-max, count).
/// Repetitions whose placement moved are left out (see [`Outcome::placement_line`]).
pub fn pairs_table(out: &Outcome, pairs: &[Pair], scale: f64, first_col: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut head = vec![first_col.to_string(), "placement".into(), "mirror-ring".into(), "other".into()];
    head.push("mirror-ring / other, per repetition".into());
    head.push("reference".into());
    let mut rows = Vec::new();
    for pair in pairs {
        let before = rows.len();
        for p in Placement::ALL {
            let ours = out.rates_in(pair.ours, p);
            let theirs = out.rates_in(pair.theirs, p);
            if ours.is_empty() && theirs.is_empty() {
                continue;
            }
            let ratio = match Summary::of(&out.ratios_in(pair.ours, pair.theirs, p)) {
                Some(s) => format!("**{:.2}x** {}", s.median, s.range_text()),
                None => out.no_ratio(pair.ours, pair.theirs, Some(p)),
            };
            let also: Vec<String> = pair
                .also
                .iter()
                .map(|&i| format!("{} {}", out.names[i], fmt_rate(median(&out.rates_in(i, p)) * scale)))
                .collect();
            rows.push(vec![
                pair.label.clone(),
                p.name().to_string(),
                format!("{} {}", out.names[pair.ours], fmt_rate(median(&ours) * scale)),
                format!("{} {}", out.names[pair.theirs], fmt_rate(median(&theirs) * scale)),
                ratio,
                also.join(", "),
            ]);
        }
        if rows.len() == before && !out.rates.is_empty() {
            // No steady repetition at all: the rates of every repetition, and no ratio.
            let rate = |i: usize| format!("{} {}", out.names[i], fmt_rate(out.median_rate(i) * scale));
            rows.push(vec![
                pair.label.clone(),
                "-".into(),
                rate(pair.ours),
                rate(pair.theirs),
                out.no_ratio(pair.ours, pair.theirs, None),
                String::new(),
            ]);
        }
    }
    (head, rows)
}

/// A ratio table over outcomes measured alike (one per row, the same contenders in each, such
/// as the cells of a streaming section): one row per row label and placement band its outcome
/// saw, one column per `(label, a, b)` with the per-repetition ratio `rate(a) / rate(b)`:
/// median (min-max, count), as [`pairs_table`] prints it. A row whose repetitions all moved
/// gets one line saying so; a cell whose two contenders never ran in one steady repetition
/// says that.
pub fn ratio_grid(
    first_col: &str,
    rows: &[(String, &Outcome)],
    cols: &[(String, usize, usize)],
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut head = vec![first_col.to_string(), "placement".into()];
    head.extend(cols.iter().map(|c| c.0.clone()));
    let mut body = Vec::new();
    for (label, out) in rows {
        let (counts, _) = out.placement_counts();
        let bands: Vec<Placement> = Placement::ALL.into_iter().filter(|&p| counts[p as usize] > 0).collect();
        if bands.is_empty() {
            let mut row = vec![label.clone(), "-".into()];
            row.extend(cols.iter().map(|&(_, a, b)| out.no_ratio(a, b, None)));
            body.push(row);
        }
        for p in bands {
            let mut row = vec![label.clone(), p.name().to_string()];
            row.extend(cols.iter().map(|&(_, a, b)| match Summary::of(&out.ratios_in(a, b, p)) {
                Some(s) => s.ratio_text(),
                None => out.no_ratio(a, b, Some(p)),
            }));
            body.push(row);
        }
    }
    (head, body)
}

/// Three significant digits: "608", "43.4", "8.60"; "-" for none.
pub fn fmt_rate(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Prints a markdown table (first column left-aligned, the rest right-aligned).
pub fn print_table(head: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("{c:<w$}", w = widths[i]) } else { format!("{c:>w$}", w = widths[i]) })
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(head);
    let seps: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| if i == 0 { "-".repeat(w + 2) } else { format!("{}:", "-".repeat(w + 1)) })
        .collect();
    println!("|{}|", seps.join("|"));
    for r in rows {
        line(r);
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Streaming as a contender
// ---------------------------------------------------------------------------------------------

/// A streaming competitor in one cell (mode, ring size, write size); rates in bytes/s.
pub struct StreamCase {
    pub comp: Competitor,
    pub mode: Mode,
    pub cap: usize,
    pub write: usize,
    run: Option<Run>,
    /// The reader's mean lag behind the producer in each sample, where the reader samples it.
    lags: Vec<f64>,
}

impl StreamCase {
    pub fn new(comp: Competitor, mode: Mode, cap: usize, write: usize) -> StreamCase {
        StreamCase { comp, mode, cap, write, run: None, lags: Vec::new() }
    }
}

impl Contender for StreamCase {
    fn name(&self) -> String {
        self.comp.name()
    }

    fn calibrate(&mut self, target: Duration) -> io::Result<()> {
        if !self.comp.supports(self.mode) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("does not run in {} mode", self.mode.name()),
            ));
        }
        if !self.comp.available() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "its backend is not available on this kernel"));
        }
        self.run = Some(calibrate(self.comp, self.mode, self.cap, self.write, target)?);
        Ok(())
    }

    fn sample(&mut self) -> io::Result<Sample> {
        let run = self.run.ok_or_else(|| io::Error::other("not calibrated"))?;
        let t = stream(self.comp, self.mode, self.cap, &run)?;
        if let Some(l) = t.lag {
            self.lags.push(l);
        }
        Ok(Sample { units: run.total, time: t.time, preempted: t.preempted })
    }

    /// How far behind the producer the reader ran: the regime. Close behind, the reader takes
    /// lines still in the writing core's cache, one hand-over at a time; far behind (more than
    /// a core's L2), it reads what has already left that cache.
    fn detail(&self) -> Option<String> {
        let s = Summary::of(&self.lags)?;
        let f = |b: f64| {
            if b >= MIB as f64 {
                format!("{:.1} MiB", b / MIB as f64)
            } else {
                format!("{:.0} KiB", b / KIB as f64)
            }
        };
        Some(format!("reader behind by {} (median; {}-{})", f(s.median), f(s.min), f(s.max)))
    }
}
