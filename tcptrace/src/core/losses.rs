//! Every way a transition can go missing between the kernel and the output, in one type that
//! travels from the probe's counters to every output, and one formatter of its line: nothing
//! is lost silently.

/// What the probe counts in the kernel, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Events lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events lost because the kernel skipped a program (it fired while the same program was
    /// running on that CPU, from a softirq interrupting it) and no other program took them.
    pub skipped_by_kernel: u64,
    /// Transitions the nested program took because the kernel skipped the main one for them:
    /// recovered, not lost.
    pub nested_caught: u64,
    /// Listener-map updates that failed: accepted children of those listeners carry no owner.
    pub listener_update_failed: u64,
}

/// Every loss of a stream so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// The kernel's side: transitions that never reached the ring buffer.
    pub kernel: KernelCounters,
    /// Records the decoder rejected.
    pub invalid_records: u64,
    /// Sockets the per-socket table forgot while they lived (it was full): their later
    /// transitions lack a time in state, an owner and a path.
    pub sockets_forgotten: u64,
}

impl Losses {
    /// Transitions the kernel could not deliver: a full ring buffer and runs the kernel skipped
    /// lose transitions alike.
    pub fn lost_events(&self) -> u64 {
        self.kernel.ringbuf_full + self.kernel.skipped_by_kernel
    }

    /// `M lost` and, when there are any, how: `M lost, R ring buffer full, K skipped by the
    /// kernel (a BPF program was running), I invalid records, F sockets forgotten (table full)`.
    /// Comma-separated, so that scripts can split it; what is zero is left out.
    pub fn line(&self) -> String {
        let mut line = format!("{} lost", self.lost_events());
        if self.lost_events() > 0 {
            line.push_str(&format!(", {}", self.breakdown()));
        }
        if self.invalid_records > 0 {
            line.push_str(&format!(", {} invalid records", self.invalid_records));
        }
        if self.sockets_forgotten > 0 {
            line.push_str(&format!(
                ", {} sockets forgotten (table full)",
                self.sockets_forgotten
            ));
        }
        line
    }

    /// How the kernel's losses split: `R ring buffer full, K skipped by the kernel (a BPF
    /// program was running)`.
    pub fn breakdown(&self) -> String {
        format!(
            "{} ring buffer full, {} skipped by the kernel (a BPF program was running)",
            self.kernel.ringbuf_full, self.kernel.skipped_by_kernel
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_lost_reads_zero_lost() {
        assert_eq!(Losses::default().line(), "0 lost");
    }

    #[test]
    fn every_kind_of_loss_is_named() {
        let losses = Losses {
            kernel: KernelCounters {
                ringbuf_full: 3,
                skipped_by_kernel: 2,
                nested_caught: 9,
                listener_update_failed: 0,
            },
            invalid_records: 1,
            sockets_forgotten: 4,
        };
        assert_eq!(losses.lost_events(), 5);
        assert_eq!(
            losses.line(),
            "5 lost, 3 ring buffer full, 2 skipped by the kernel (a BPF program was running), \
             1 invalid records, 4 sockets forgotten (table full)"
        );
    }
}
