//! A progress bar on stderr for long pushes and pulls, fed by the sync client's
//! progress events. It appears only when stderr is a terminal and the push or pull has
//! run for a while, so short syncs and scripts see nothing.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sync_runtime::{SyncEvent, SyncPhase};

/// How long a push or pull runs before its bar appears.
const SHOW_AFTER: Duration = Duration::from_millis(400);

/// A progress callback, as [`sync_runtime::SyncClientBuilder::on_progress`] takes it.
pub type Sink = Box<dyn Fn(&SyncEvent) + Send + Sync>;

/// The bar of the push or pull under way.
struct Bars {
    current: Option<(SyncPhase, ProgressBar)>,
}

/// A progress sink for [`sync_runtime::SyncClientBuilder::on_progress`], or `None` when
/// stderr is not a terminal.
pub fn sink() -> Option<Sink> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bars = Mutex::new(Bars { current: None });
    Some(Box::new(move |event: &SyncEvent| {
        let Ok(mut bars) = bars.lock() else { return };
        bars.update(event);
    }))
}

impl Bars {
    fn update(&mut self, event: &SyncEvent) {
        if self.current.as_ref().is_some_and(|(phase, _)| *phase != event.phase) {
            if let Some((_, bar)) = self.current.take() {
                bar.finish_and_clear();
            }
        }
        if event.finished {
            if let Some((_, bar)) = self.current.take() {
                bar.finish_and_clear();
            }
            return;
        }
        if self.current.is_none() {
            if event.elapsed < SHOW_AFTER {
                return;
            }
            let bar = match event.phase {
                SyncPhase::Push => ProgressBar::with_draw_target(event.total, ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("pushing {bar:30} {pos}/{len} changes ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                // A pull, or a phase newer than this app: a spinner with no total.
                _ => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                    ProgressStyle::with_template("pulling {spinner} {pos} items, {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            let bar = bar.with_elapsed(event.elapsed);
            bar.enable_steady_tick(Duration::from_millis(120));
            self.current = Some((event.phase, bar));
        }
        if let Some((_, bar)) = &self.current {
            bar.set_position(event.done);
            if event.phase == SyncPhase::Pull {
                bar.set_message(HumanBytes(event.bytes).to_string());
            }
        }
    }
}
