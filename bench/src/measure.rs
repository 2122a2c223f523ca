//! Rounds, medians, the figure of one scenario, and the process's peak RSS.

use std::time::Duration;

/// The measured rounds of both sides: wall time, and the CPU time (user and system, of
/// every thread of the process: the caller's, the store's, an in-process server's) spent
/// while each side ran.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rounds {
    /// Our wall time per round.
    pub ours: Vec<Duration>,
    /// Raw's wall time per round.
    pub raw: Vec<Duration>,
    /// The process's CPU time while our side ran, per round.
    pub ours_cpu: Vec<Duration>,
    /// The process's CPU time while raw's side ran, per round.
    pub raw_cpu: Vec<Duration>,
}

/// Runs `side` and returns the wall time it reports with the process's CPU time it
/// took.
fn timed(side: impl FnOnce() -> Duration) -> (Duration, Duration) {
    let cpu = cpu_time::ProcessTime::now();
    let wall = side();
    (wall, cpu.elapsed())
}

/// The process's CPU time so far (user and system, every thread).
pub fn process_cpu() -> cpu_time::ProcessTime {
    cpu_time::ProcessTime::now()
}

/// Runs one warm-up round of each side, then `rounds` measured rounds, alternating
/// which side goes first. Each closure gets the round number (the warm-up is 0) and
/// returns the time of its measured part only (setup excluded).
pub fn alternate(
    rounds: usize,
    mut ours: impl FnMut(usize) -> Duration,
    mut raw: impl FnMut(usize) -> Duration,
) -> Rounds {
    alternate_chunked(rounds, 1, |round, _| ours(round), |round, _| raw(round))
}

/// Like [`alternate`], with each round cut into `chunks` pieces run alternately (ours,
/// raw, raw, ours, ...): the two sides of a round then share whatever else the machine
/// was doing during that round, so a burst of load from other processes does not land
/// on one side only. A round's time is the sum of its chunks. The closures get
/// `(round, chunk)` and keep what a round needs from its first chunk to its last.
/// The CPU time of a side is the process's during that side's chunks: the other side
/// is idle then, so what runs is this side's work (a CPU time near the wall time is one
/// busy core; more, several).
pub fn alternate_chunked(
    rounds: usize,
    chunks: usize,
    mut ours: impl FnMut(usize, usize) -> Duration,
    mut raw: impl FnMut(usize, usize) -> Duration,
) -> Rounds {
    let mut all = Rounds::default();
    for round in 0..=rounds {
        let (mut a, mut b) = ((Duration::ZERO, Duration::ZERO), (Duration::ZERO, Duration::ZERO));
        let add = |to: &mut (Duration, Duration), (wall, cpu): (Duration, Duration)| {
            to.0 += wall;
            to.1 += cpu;
        };
        for chunk in 0..chunks.max(1) {
            if (round + chunk) % 2 == 0 {
                add(&mut a, timed(|| ours(round, chunk)));
                add(&mut b, timed(|| raw(round, chunk)));
            } else {
                add(&mut b, timed(|| raw(round, chunk)));
                add(&mut a, timed(|| ours(round, chunk)));
            }
        }
        if round > 0 {
            all.ours.push(a.0);
            all.ours_cpu.push(a.1);
            all.raw.push(b.0);
            all.raw_cpu.push(b.1);
        }
    }
    all
}

/// The median of some durations (the mean of the middle two for an even count).
pub fn median(times: &[Duration]) -> Duration {
    assert!(!times.is_empty(), "no measurement");
    let mut t = times.to_vec();
    t.sort_unstable();
    let mid = t.len() / 2;
    if t.len() % 2 == 1 { t[mid] } else { (t[mid - 1] + t[mid]) / 2 }
}

/// What one scenario measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The scenario's name.
    pub scenario: String,
    /// The work of one round, in `unit`s (items, rows, operations, calls).
    pub work: u64,
    /// What `work` counts.
    pub unit: &'static str,
    /// The median time of one round through our API.
    pub ours: Duration,
    /// The median time of one round of the raw baseline.
    pub raw: Duration,
    /// Every measured round, ours.
    pub ours_rounds: Vec<Duration>,
    /// Every measured round, raw.
    pub raw_rounds: Vec<Duration>,
    /// The median CPU time of one round through our API.
    pub ours_cpu: Duration,
    /// The median CPU time of one round of the raw baseline.
    pub raw_cpu: Duration,
    /// The least acceptable ratio, if the scenario has a target.
    pub target: Option<f64>,
    /// What the two sides are called in the line: `("ours", "raw")` unless a scenario
    /// compares something else (a latency under load against the same without it).
    pub sides: (&'static str, &'static str),
    /// Extra figures, `(name, value)`, printed after the ratio.
    pub extra: Vec<(String, String)>,
    /// The same extras as numbers, for JSON.
    pub extra_json: Vec<(String, serde_json::Value)>,
}

impl Figure {
    /// A figure from the rounds of [`alternate`].
    pub fn new(scenario: &str, work: u64, unit: &'static str, target: Option<f64>, rounds: Rounds) -> Figure {
        let Rounds { ours, raw, ours_cpu, raw_cpu } = rounds;
        Figure {
            scenario: scenario.to_owned(),
            work,
            unit,
            ours: median(&ours),
            raw: median(&raw),
            ours_cpu: median(&ours_cpu),
            raw_cpu: median(&raw_cpu),
            ours_rounds: ours,
            raw_rounds: raw,
            target,
            sides: ("ours", "raw"),
            extra: Vec::new(),
            extra_json: Vec::new(),
        }
    }

    /// An idle scenario's figure: the CPU time `spent` over `seconds` of nothing to do,
    /// against a budget of 10 ms (the "raw" side).
    pub fn idle(scenario: &str, spent: Duration, seconds: u64) -> Figure {
        let budget = Duration::from_millis(10);
        let rounds = Rounds { ours: vec![spent], raw: vec![budget], ours_cpu: vec![spent], raw_cpu: vec![budget] };
        Figure::new(scenario, 1, "calls", Some(1.0), rounds)
            .sides(if seconds == 10 { "cpu in 10 s idle" } else { "cpu while idle" }, "budget")
    }

    /// Names the two sides in the line (see [`Figure::sides`]).
    pub fn sides(mut self, ours: &'static str, raw: &'static str) -> Figure {
        self.sides = (ours, raw);
        self
    }

    /// Our throughput as a fraction of raw's (1.00 = as fast): the median over the
    /// rounds of raw time / our time. Both sides of one round run back to back, so a
    /// burst of load from other processes hits both sides of a round rather than one
    /// side's median.
    pub fn ratio(&self) -> f64 {
        let mut ratios: Vec<f64> =
            self.ours_rounds.iter().zip(&self.raw_rounds).map(|(o, r)| r.as_secs_f64() / o.as_secs_f64()).collect();
        ratios.sort_unstable_by(f64::total_cmp);
        let mid = ratios.len() / 2;
        if ratios.len() % 2 == 1 { ratios[mid] } else { (ratios[mid - 1] + ratios[mid]) / 2.0 }
    }

    /// Whether the target is met (true without a target).
    pub fn met(&self) -> bool {
        self.target.is_none_or(|t| self.ratio() + 1e-9 >= t)
    }

    /// The ratio as printed: two decimals, rounded down (so `0.895` against a target of
    /// `0.9` reads `0.89`, not a `0.90` marked missed).
    fn shown_ratio(&self) -> f64 {
        ((self.ratio() + 1e-9) * 100.0).floor() / 100.0
    }

    /// Units per second of a median round.
    pub fn rate(work: u64, time: Duration) -> f64 {
        work as f64 / time.as_secs_f64()
    }

    /// Microseconds per unit of a median round.
    pub fn micros_per_unit(work: u64, time: Duration) -> f64 {
        time.as_secs_f64() * 1e6 / work.max(1) as f64
    }

    /// Adds an extra figure.
    pub fn with(mut self, name: &str, text: String, json: serde_json::Value) -> Figure {
        self.extra.push((name.to_owned(), text));
        self.extra_json.push((name.to_owned(), json));
        self
    }

    /// One line: `<scenario>: ours <median> | raw <median> | ratio <r> | target >= <x>`.
    /// Calls (`unit == "calls"`) show microseconds per call; everything else units/s.
    pub fn line(&self) -> String {
        let show = |t: Duration| {
            if self.unit == "calls" {
                format!("{:.1} us/call", Figure::micros_per_unit(self.work, t))
            } else {
                format!("{} {}/s", si(Figure::rate(self.work, t)), self.unit)
            }
        };
        let target = match self.target {
            Some(t) => format!("target >= {t}{}", if self.met() { "" } else { " MISSED" }),
            None => "target none".to_owned(),
        };
        let (a, b) = self.sides;
        let mut line = format!(
            "{}: {a} {} | {b} {} | ratio {:.2} | {target}",
            self.scenario,
            show(self.ours),
            show(self.raw),
            self.shown_ratio()
        );
        line.push_str(&format!(
            " | cpu/{} {a} {:.1} us, {b} {:.1} us ({:.2}x)",
            self.unit_singular(),
            Figure::micros_per_unit(self.work, self.ours_cpu),
            Figure::micros_per_unit(self.work, self.raw_cpu),
            self.cpu_ratio()
        ));
        for (name, value) in &self.extra {
            line.push_str(&format!(" | {name} {value}"));
        }
        line
    }

    /// Our CPU time per unit over raw's (1.00 = as much; a library that spins shows
    /// here, not in the wall-time ratio).
    pub fn cpu_ratio(&self) -> f64 {
        self.ours_cpu.as_secs_f64() / self.raw_cpu.as_secs_f64().max(1e-12)
    }

    fn unit_singular(&self) -> &'static str {
        match self.unit {
            "items" => "item",
            "queries" => "query",
            "rows" => "row",
            "ops" => "op",
            "calls" => "call",
            other => other,
        }
    }

    /// The figure as JSON.
    pub fn json(&self) -> serde_json::Value {
        let secs = |v: &[Duration]| v.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        let mut obj = serde_json::json!({
            "scenario": self.scenario,
            "work": self.work,
            "unit": self.unit,
            "ours_secs": self.ours.as_secs_f64(),
            "raw_secs": self.raw.as_secs_f64(),
            "ours_per_sec": Figure::rate(self.work, self.ours),
            "raw_per_sec": Figure::rate(self.work, self.raw),
            "ours_us_per_unit": Figure::micros_per_unit(self.work, self.ours),
            "raw_us_per_unit": Figure::micros_per_unit(self.work, self.raw),
            "ratio": self.ratio(),
            "target": self.target,
            "met": self.met(),
            "ours_rounds_secs": secs(&self.ours_rounds),
            "raw_rounds_secs": secs(&self.raw_rounds),
            "ours_cpu_secs": self.ours_cpu.as_secs_f64(),
            "raw_cpu_secs": self.raw_cpu.as_secs_f64(),
            "cpu_ratio": self.cpu_ratio(),
        });
        if let Some(map) = obj.as_object_mut() {
            for (name, value) in &self.extra_json {
                map.insert(name.clone(), value.clone());
            }
        }
        obj
    }
}

/// `12.3k`, `1.23M`, `950`.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Measures how far the process's peak RSS rises above its RSS at the start while `f`
/// runs. The peak (`VmHWM`) is reset first through `/proc/self/clear_refs`; when that is
/// not allowed, the growth is measured against the old peak (so it may read low).
pub async fn peak_rss_growth<F: std::future::Future>(f: F) -> (F::Output, Option<u64>) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = if reset { status_kib("VmRSS") } else { status_kib("VmHWM") };
    let out = f.await;
    let growth = match (before, status_kib("VmHWM")) {
        (Some(b), Some(peak)) => Some(peak.saturating_sub(b)),
        _ => None,
    };
    (out, growth)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wall times of one round each side, with CPU times equal to them.
    fn rounds(ours: Vec<Duration>, raw: Vec<Duration>) -> Rounds {
        Rounds { ours_cpu: ours.clone(), raw_cpu: raw.clone(), ours, raw }
    }

    #[test]
    fn medians_and_ratios() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(3)]), Duration::from_micros(2500));
        let f = Figure::new("x", 1000, "items", Some(0.8), rounds(vec![ms(10)], vec![ms(8)]));
        assert!((f.ratio() - 0.8).abs() < 1e-9);
        assert!(f.met());
        assert_eq!(
            f.line(),
            "x: ours 100.0k items/s | raw 125.0k items/s | ratio 0.80 | target >= 0.8 | cpu/item ours 10.0 us, raw 8.0 us (1.25x)"
        );
        let f = Figure::new("x", 1000, "items", Some(0.9), rounds(vec![ms(1000)], vec![ms(895)]));
        assert!(!f.met());
        assert!(f.line().contains("ratio 0.89 | target >= 0.9 MISSED"), "{}", f.line());
        // The median of the rounds' own ratios.
        let f = Figure::new("x", 1, "items", None, rounds(vec![ms(10), ms(20), ms(10)], vec![ms(5), ms(20), ms(9)]));
        assert!((f.ratio() - 0.9).abs() < 1e-9);
        let calls = Figure::new("q", 100, "calls", None, rounds(vec![ms(1)], vec![ms(1)]));
        assert_eq!(
            calls.line(),
            "q: ours 10.0 us/call | raw 10.0 us/call | ratio 1.00 | target none | cpu/call ours 10.0 us, raw 10.0 us (1.00x)"
        );
    }

    #[test]
    fn chunks_alternate_and_add_up() {
        let mut order = Vec::new();
        let all = alternate_chunked(
            1,
            3,
            |round, chunk| {
                order.push(("ours", round, chunk));
                Duration::from_millis(1)
            },
            |_, _| Duration::from_millis(2),
        );
        assert_eq!((all.ours, all.raw), (vec![Duration::from_millis(3)], vec![Duration::from_millis(6)]));
        assert_eq!(all.ours_cpu.len(), 1, "a CPU time per measured round");
        assert_eq!(order.len(), 6);
        assert_eq!(order[3..], [("ours", 1, 0), ("ours", 1, 1), ("ours", 1, 2)]);
    }

    #[test]
    fn alternate_skips_the_warm_up() {
        let mut seen = Vec::new();
        let Rounds { ours: o, raw: r, .. } = alternate(
            2,
            |round| {
                seen.push(("ours", round));
                Duration::from_millis(round as u64)
            },
            |_| Duration::ZERO,
        );
        assert_eq!(o, vec![Duration::from_millis(1), Duration::from_millis(2)]);
        assert_eq!(r.len(), 2);
        assert_eq!(seen, vec![("ours", 0), ("ours", 1), ("ours", 2)]);
    }

    #[test]
    fn reads_its_own_status() {
        if cfg!(target_os = "linux") {
            assert!(status_kib("VmRSS").is_some_and(|kib| kib > 0));
        }
    }
}
