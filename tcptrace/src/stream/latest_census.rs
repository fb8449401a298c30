//! The census a scrape serves. Taking one can outlast a scrape's timeout on a busy host (tens
//! of thousands of TIME_WAIT sockets, each read from the kernel), and a scrape that times out
//! is a gap in the operator's graphs. So a census runs on a thread of its own, one at a time:
//! a scrape starts one (or joins the one running), waits for it within its budget, and else
//! serves the last one that finished, with its age; the one still running serves the next.

use std::{
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

/// What a scrape gets.
#[derive(Debug)]
pub enum Served<T> {
    /// The census taken at `taken`: the one this scrape waited for, or the last one that
    /// finished before it.
    Census { value: Arc<T>, taken: Instant },
    /// The last census failed, or none has finished yet.
    None,
}

#[derive(Debug)]
struct State<T> {
    running: bool,
    /// Censuses finished so far: a waiter knows its own has come when this moves.
    finished: u64,
    /// The last one to finish; `None` when it failed.
    last: Option<(Arc<T>, Instant)>,
}

/// One census at a time, in the background.
#[derive(Debug)]
pub struct LatestCensus<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

impl<T: Send + Sync + 'static> LatestCensus<T> {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                running: false,
                finished: 0,
                last: None,
            }),
            done: Condvar::new(),
        }
    }

    /// Starts `take` unless a census is running, waits for that census up to `budget`, and
    /// returns what there is then. `take` fails with a message to log.
    pub fn serve(
        self: &Arc<Self>,
        budget: Duration,
        take: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Served<T> {
        let deadline = Instant::now() + budget;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let waiting_for = state.finished + 1;
        if !state.running {
            state.running = true;
            let latest = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name("tcptrace-census".into())
                .spawn(move || latest.run(take));
            if let Err(err) = spawned {
                state.running = false;
                log::warn!("cannot start the census: {err}");
            }
        }
        while state.running && state.finished < waiting_for {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        match &state.last {
            Some((value, taken)) => Served::Census {
                value: Arc::clone(value),
                taken: *taken,
            },
            None => Served::None,
        }
    }

    fn run(&self, take: impl FnOnce() -> Result<T, String>) {
        let taken = Instant::now();
        let result = take();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last = match result {
            Ok(value) => Some((Arc::new(value), taken)),
            Err(err) => {
                log::warn!("the socket census of a scrape failed: {err}");
                None
            }
        };
        state.finished += 1;
        state.running = false;
        self.done.notify_all();
    }
}

impl<T: Send + Sync + 'static> Default for LatestCensus<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn value(served: &Served<u32>) -> Option<u32> {
        match served {
            Served::Census { value, .. } => Some(**value),
            Served::None => None,
        }
    }

    #[test]
    fn a_census_within_the_budget_is_served_fresh() {
        let latest = Arc::new(LatestCensus::new());
        let served = latest.serve(Duration::from_secs(10), || Ok(7));
        assert_eq!(value(&served), Some(7));
        let served = latest.serve(Duration::from_secs(10), || Ok(8));
        assert_eq!(value(&served), Some(8));
    }

    #[test]
    fn a_slow_census_serves_the_next_scrape_and_only_one_runs_at_a_time() {
        let latest = Arc::new(LatestCensus::new());
        assert_eq!(
            value(&latest.serve(Duration::from_secs(10), || Ok(1))),
            Some(1)
        );
        let (release, wait) = mpsc::channel::<()>();
        let served = latest.serve(Duration::from_millis(20), move || {
            wait.recv().unwrap();
            Ok(2)
        });
        // Past the budget: the last census that finished.
        assert_eq!(value(&served), Some(1));
        // While it runs, a scrape does not start another: it waits for that one.
        let started = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&started);
        let served = latest.serve(Duration::from_millis(20), move || {
            *flag.lock().unwrap() = true;
            Ok(3)
        });
        assert_eq!(value(&served), Some(1));
        release.send(()).unwrap();
        let served = latest.serve(Duration::from_secs(10), || Ok(4));
        // The slow census, if it finished first, or this scrape's own.
        assert!(matches!(value(&served), Some(2) | Some(4)), "{served:?}");
        assert!(!*started.lock().unwrap());
    }

    #[test]
    fn a_failed_census_is_served_as_none() {
        let latest = Arc::new(LatestCensus::new());
        assert_eq!(
            value(&latest.serve(Duration::from_secs(10), || Ok(1))),
            Some(1)
        );
        let served = latest.serve(Duration::from_secs(10), || Err("refused".to_owned()));
        assert_eq!(value(&served), None);
    }
}
