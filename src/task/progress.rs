//! Progress bars of a bounded run (backfill) on a terminal: one per partition (up to
//! `MAX_BARS`) and one for the total, each with its elapsed time and ETA, moved by what is
//! committed (durable), not by what is read.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sink::control::Control;

/// Beyond this many partitions only the total is shown.
const MAX_BARS: usize = 24;

/// Draws until the task shuts down. `bounds`: (partition handle, start offset, end offset).
pub fn show(control: &Control, bounds: &[(u32, u64, u64)]) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    let style = ProgressStyle::with_template(
        "{prefix:>14} [{bar:30}] {percent:>3}% {human_pos}/{human_len} elapsed {elapsed}, ETA {eta}",
    )
    .expect("a valid template")
    .progress_chars("=> ");
    let total_len: u64 = bounds.iter().map(|(_, s, e)| e.saturating_sub(*s)).sum();
    let keys = control.partitions.keys();
    let bars: Vec<(u32, u64, ProgressBar)> = if bounds.len() <= MAX_BARS {
        bounds
            .iter()
            .map(|(id, start, end)| {
                let bar = multi.add(ProgressBar::new(end.saturating_sub(*start)));
                bar.set_style(style.clone());
                bar.set_prefix(keys.get(id).cloned().unwrap_or_default());
                (*id, *start, bar)
            })
            .collect()
    } else {
        Vec::new()
    };
    let total = multi.add(ProgressBar::new(total_len));
    total.set_style(style);
    total.set_prefix("total");
    loop {
        let done = control.phase.over();
        let committed = control.partitions.positions();
        let mut sum = 0;
        for (id, start, end) in bounds {
            let at = committed
                .get(id)
                .map_or(*start, |(offset, _)| *offset)
                .clamp(*start, *end);
            sum += at - start;
            if let Some((_, _, bar)) = bars.iter().find(|(b, _, _)| b == id) {
                bar.set_position(at - start);
            }
        }
        total.set_position(sum);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for (_, _, bar) in &bars {
        bar.finish();
    }
    total.finish();
}
