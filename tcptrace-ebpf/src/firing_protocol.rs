//! The protocol by which three programs on one tracepoint record every firing exactly once,
//! although the kernel skips a program that is already running on the CPU (see the kernel side,
//! `program/transition_programs.rs`, for why). It is here, outside the BPF-only code, so that the
//! host's tests can run it against a model of the kernel's dispatch, interrupted at every point.
//!
//! One per-CPU slot holds the progress of the current firing. The kernel runs the programs in the
//! order they were attached:
//! 1. the first writes [`ENTER_MARK`];
//! 2. the main one writes [`MAIN_MARK`], then records the transition;
//! 3. the last reads the slot, records the transition if [`nested_records`] says the main one did
//!    not run for it, then writes [`NESTED_MARK`].

/// No firing in progress, or the last one is finished.
pub const IDLE: u32 = 0;
/// A firing has begun and its main program has not run.
pub const PENDING: u32 = 1;
/// The main program has run for the firing in progress.
pub const TAKEN: u32 = 2;

/// What the first program writes.
pub const ENTER_MARK: u32 = PENDING;
/// What the main program writes, before it records.
pub const MAIN_MARK: u32 = TAKEN;
/// What the last program writes, after it has decided.
pub const NESTED_MARK: u32 = IDLE;

/// Whether the last program records the firing, given the slot it found.
#[inline(always)]
pub const fn nested_records(slot: u32) -> bool {
    slot == PENDING
}

#[cfg(test)]
mod tests {
    //! A model of one CPU: the kernel's dispatch of a tracepoint's programs (include/trace/
    //! bpf_probe.h → `__bpf_trace_run`: a per-program `active` count, incremented before the
    //! program and decremented after; a program found already active is skipped and its miss
    //! counted), the slot, and what gets recorded. A softirq can interrupt a firing from process
    //! context at any point and fire the tracepoint again, any number of times, but softirqs do
    //! not nest on one CPU, and hard interrupts change no TCP state: nesting is one level deep.

    use super::*;

    /// A protocol under test: the real one, or a variant that is known to be wrong.
    struct Protocol {
        /// What the first program writes; `None`: there is no first program.
        enter_mark: Option<u32>,
        main_mark: u32,
        nested_records: fn(u32) -> bool,
        nested_mark: u32,
    }

    const THIS_CRATE: Protocol = Protocol {
        enter_mark: Some(ENTER_MARK),
        main_mark: MAIN_MARK,
        nested_records,
        nested_mark: NESTED_MARK,
    };

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Program {
        Enter,
        Main,
        Nested,
    }

    /// Where nested firings happen: (point of the outer firing, how many firings there).
    type Plan = Vec<(usize, usize)>;

    struct Cpu<'a> {
        protocol: &'a Protocol,
        plan: &'a Plan,
        slot: u32,
        active: [u32; 3],
        main_misses: u64,
        caught: u64,
        recorded: Vec<usize>,
        fired: usize,
        /// Points the outer firing has passed.
        point: usize,
    }

    impl Cpu<'_> {
        fn programs(&self) -> Vec<Program> {
            let mut programs = Vec::new();
            if self.protocol.enter_mark.is_some() {
                programs.push(Program::Enter);
            }
            programs.extend([Program::Main, Program::Nested]);
            programs
        }

        /// A place where a softirq may run, if this is the outer firing.
        fn interruptible(&mut self, nested: bool) {
            if nested {
                return;
            }
            let here = self.point;
            self.point += 1;
            let firings = self
                .plan
                .iter()
                .filter(|(at, _)| *at == here)
                .map(|(_, n)| n)
                .sum();
            for _ in 0..firings {
                self.fire(true);
            }
        }

        fn fire(&mut self, nested: bool) {
            let id = self.fired;
            self.fired += 1;
            for program in self.programs() {
                self.interruptible(nested);
                let active = &mut self.active[program as usize];
                *active += 1;
                if *active != 1 {
                    if program == Program::Main {
                        self.main_misses += 1;
                    }
                } else {
                    self.interruptible(nested); // the kernel's prologue
                    self.run(program, id, nested);
                    self.interruptible(nested); // the kernel's epilogue
                }
                self.active[program as usize] -= 1;
            }
            self.interruptible(nested);
        }

        /// A program's body, in the order of the kernel code's reads and writes.
        fn run(&mut self, program: Program, id: usize, nested: bool) {
            match program {
                Program::Enter => {
                    self.slot = self.protocol.enter_mark.expect("only run when present");
                }
                Program::Main => {
                    self.slot = self.protocol.main_mark;
                    self.interruptible(nested);
                    self.recorded.push(id);
                }
                Program::Nested => {
                    let found = self.slot;
                    self.interruptible(nested);
                    if (self.protocol.nested_records)(found) {
                        self.caught += 1;
                        self.recorded.push(id);
                    }
                    self.interruptible(nested);
                    self.slot = self.protocol.nested_mark;
                }
            }
        }
    }

    struct Outcome {
        fired: usize,
        recorded: Vec<usize>,
        main_misses: u64,
        caught: u64,
        /// Points in the outer firing.
        points: usize,
    }

    fn simulate(protocol: &Protocol, plan: &Plan) -> Outcome {
        let mut cpu = Cpu {
            protocol,
            plan,
            slot: IDLE,
            active: [0; 3],
            main_misses: 0,
            caught: 0,
            recorded: Vec::new(),
            fired: 0,
            point: 0,
        };
        cpu.fire(false);
        // The next firing from process context starts from whatever the last one left.
        cpu.fire(false);
        cpu.recorded.sort_unstable();
        Outcome {
            fired: cpu.fired,
            recorded: cpu.recorded,
            main_misses: cpu.main_misses,
            caught: cpu.caught,
            points: cpu.point,
        }
    }

    /// Every plan with one or two interrupted points, one to three firings at each.
    fn plans(protocol: &Protocol) -> Vec<Plan> {
        let points = simulate(protocol, &Vec::new()).points;
        let mut plans = Vec::new();
        for a in 0..points {
            for n in 1..=3 {
                plans.push(vec![(a, n)]);
            }
            for b in a + 1..points {
                for n in 1..=2 {
                    for m in 1..=2 {
                        plans.push(vec![(a, n), (b, m)]);
                    }
                }
            }
        }
        plans
    }

    #[test]
    fn every_firing_is_recorded_exactly_once_wherever_softirqs_interrupt() {
        let plans = plans(&THIS_CRATE);
        // Two firings of 3 programs, each with points before, in its prologue, body and epilogue.
        assert!(plans.len() > 1_000, "{} plans", plans.len());
        for plan in &plans {
            let outcome = simulate(&THIS_CRATE, plan);
            let all: Vec<usize> = (0..outcome.fired).collect();
            assert!(outcome.fired > 2, "{plan:?} nested nothing");
            assert_eq!(outcome.recorded, all, "{plan:?}");
            // What userspace reports as lost: the main program's misses beyond what was caught.
            assert_eq!(outcome.main_misses, outcome.caught, "{plan:?}");
        }
    }

    #[test]
    fn the_model_does_skip_the_main_program() {
        // Otherwise the test above would prove nothing about the case the protocol is for.
        let skipping = plans(&THIS_CRATE)
            .iter()
            .filter(|plan| simulate(&THIS_CRATE, plan).main_misses > 0)
            .count();
        assert!(skipping > 0, "the model never skips the main program");
    }

    #[test]
    fn without_the_first_program_a_firing_in_the_main_programs_epilogue_is_lost() {
        // Two programs: the main one marks its firing, the last records unless it finds the mark.
        let two_programs = Protocol {
            enter_mark: None,
            main_mark: TAKEN,
            nested_records: |slot| slot != TAKEN,
            nested_mark: IDLE,
        };
        let lossy: Vec<Plan> = plans(&two_programs)
            .into_iter()
            .filter(|plan| {
                let outcome = simulate(&two_programs, plan);
                !(0..outcome.fired).all(|id| outcome.recorded.contains(&id))
            })
            .collect();
        // Points of the outer firing: 0 before the main program, 1 its prologue, 2 between its
        // mark and its record, 3 its epilogue.
        assert!(lossy.contains(&vec![(3, 1)]), "{lossy:?}");
        assert!(!lossy.contains(&vec![(1, 1)]), "{lossy:?}");
    }
}
