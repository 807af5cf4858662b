//! Fuel accounting for one call: how much fuel to grant the module's countdown (see
//! [`crate::prepare::interrupt`]) and how much the call has used, against an optional gas
//! budget.
//!
//! Fuel is granted in slices so that the module calls back into the host regularly: that
//! call is where stop requests and deadlines are noticed, so the slice bounds how long
//! they take to act. How long a slice lasts depends on the code, because a function's
//! entry charges its whole body: a tight loop burns ~10 units per nanosecond, so 2^24
//! units last ~2 ms there, while AO's Lua interpreter (huge functions, mostly skipped)
//! burns ~250 units per nanosecond and calls the check about 5 times per message. Each
//! check is a switch to the host stack and back; at 2^20 units per slice the checks
//! were about 10% of an AOS Eval.

/// The most fuel granted at once.
pub const SLICE: i64 = 1 << 24;

/// The most stack frames the exceptions thrown in one outermost call may hold: the runtime
/// keeps a backtrace of the whole stack with each exception until the call ends, about 46
/// bytes a frame, so this bounds them to ~190 MB (see `prepare::interrupt`). An AOS Eval
/// whose Lua raises and catches 100,000 errors (~35 frames each) stays within it. The
/// frames are not charged as gas: gas counts only what the module runs (the same call
/// costs the same on every node), and the native frames a throw sees depend on the
/// host's build.
pub const MAX_EXCEPTION_FRAMES: u64 = 1 << 22;

/// The frames of the calling thread's stack, counted up to `cap` + 1 (so that a count
/// past `cap` costs no more than the cap).
pub fn stack_frames(cap: u64) -> u64 {
    let mut frames = 0;
    // SAFETY: only this thread walks its own stack here, through the unwind tables the
    // runtime registers for compiled wasm, as the runtime's own backtrace of the throw that
    // follows does.
    unsafe {
        backtrace::trace_unsynchronized(|_| {
            frames += 1;
            frames <= cap
        })
    };
    frames
}

#[derive(Debug)]
pub struct Meter {
    budget: Option<u64>,
    used: u64,
    /// The fuel last handed to the module.
    granted: i64,
}

/// The call would use more than its budget.
#[derive(Debug, PartialEq, Eq)]
pub struct OutOfGas;

impl Meter {
    /// A meter for a call allowed `budget` units (unbounded when `None`), with the fuel
    /// to start it with.
    pub fn start(budget: Option<u64>) -> (Meter, i64) {
        let mut meter = Meter {
            budget,
            used: 0,
            granted: 0,
        };
        let fuel = meter.grant();
        (meter, fuel)
    }

    /// The module ran out of its fuel (`fuel` is the overdraft, at most zero): account for
    /// what it used and grant more, unless that exceeds the budget.
    pub fn refill(&mut self, fuel: i64) -> Result<i64, OutOfGas> {
        self.account(fuel);
        if self.budget.is_some_and(|budget| self.used > budget) {
            return Err(OutOfGas);
        }
        Ok(self.grant())
    }

    /// What the call used in all, given the fuel left at its end. A call stopped for
    /// lack of gas used its whole budget.
    pub fn finish(mut self, fuel: i64) -> u64 {
        self.account(fuel);
        self.budget
            .map_or(self.used, |budget| self.used.min(budget))
    }

    fn account(&mut self, fuel: i64) {
        self.used = self
            .used
            .saturating_add(self.granted.saturating_sub(fuel) as u64);
        self.granted = fuel;
    }

    /// A meter for code that starts with no fuel granted (the fuel global's initial value,
    /// 0): a module's start function, which runs before the host can set the global, so its
    /// first charge goes straight to the check.
    pub fn ungranted(budget: Option<u64>) -> Meter {
        Meter {
            budget,
            used: 0,
            granted: 0,
        }
    }

    fn grant(&mut self) -> i64 {
        let left = self
            .budget
            .map_or(u64::MAX, |budget| budget.saturating_sub(self.used));
        self.granted = left.min(SLICE as u64) as i64;
        self.granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs charges of the given costs the way instrumented code does.
    fn run(budget: Option<u64>, charges: &[i64]) -> (Result<(), OutOfGas>, u64) {
        let (mut meter, mut fuel) = Meter::start(budget);
        for cost in charges {
            fuel -= cost;
            if fuel < 0 {
                match meter.refill(fuel) {
                    Ok(more) => fuel = more,
                    Err(e) => return (Err(e), meter.finish(fuel)),
                }
            }
        }
        (Ok(()), meter.finish(fuel))
    }

    #[test]
    fn counts_every_unit_across_slices() {
        let charges = vec![SLICE / 3 + 7; 100];
        let total: i64 = charges.iter().sum();
        assert_eq!(run(None, &charges), (Ok(()), total as u64));
        assert_eq!(run(Some(total as u64), &charges), (Ok(()), total as u64));
    }

    #[test]
    fn stops_at_the_first_charge_beyond_the_budget() {
        assert_eq!(run(Some(10), &[4, 4, 2]), (Ok(()), 10));
        assert_eq!(run(Some(10), &[4, 4, 3]), (Err(OutOfGas), 10));
        assert_eq!(run(Some(0), &[1]), (Err(OutOfGas), 0));
        assert_eq!(run(Some(0), &[]), (Ok(()), 0));
    }

    #[test]
    fn an_ungranted_meter_counts_from_the_first_check() {
        let mut meter = Meter::ungranted(Some(10));
        let fuel = meter.refill(-3).unwrap();
        assert_eq!(fuel, 7);
        assert_eq!(meter.refill(fuel - 8), Err(OutOfGas));
        assert_eq!(meter.finish(-1), 10);
        let mut meter = Meter::ungranted(None);
        let fuel = meter.refill(-3).unwrap();
        assert_eq!(meter.finish(fuel - 5), 8);
        let mut meter = Meter::ungranted(Some(2));
        assert_eq!(meter.refill(-3), Err(OutOfGas));
    }

    #[test]
    fn a_large_budget_is_granted_in_slices() {
        let (_, fuel) = Meter::start(Some(u64::MAX));
        assert_eq!(fuel, SLICE);
        let (_, fuel) = Meter::start(Some(5));
        assert_eq!(fuel, 5);
    }
}
