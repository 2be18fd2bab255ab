//! Time budgets above the single call: one per lookup, one per unit of
//! work (an Odoo request or cron job).
//!
//! A call alone is bounded by `socket_timeout`; a lookup may make several
//! (generation sync, read, flight lock and polls) and a request many. A
//! budget adds up the time this thread spent in calls on one pool; each
//! call gets at most what is left of every budget open on the thread, and
//! once one is spent, calls fail at once (`CallError::BudgetSpent`) without
//! contacting Redis until the budget ends: the caller goes on with L1 and
//! its own computation, as when the circuit is open. A spent budget is no
//! verdict on Redis, so it never moves the circuit breaker.
//!
//! Budgets are per thread: a request runs on one thread (prefork workers
//! and the threaded server alike) and so do its lookups. They are also per
//! pool: the calls of another client (the session store's) are not charged.

use std::cell::RefCell;
use std::time::Duration;

/// Time a thread may still spend in calls on one pool.
#[derive(Clone, Copy, Debug)]
struct Budget {
    /// The pool it applies to (its address: a pool lives as long as its
    /// client, and a budget no longer than a request).
    pool: usize,
    limit: Duration,
    spent: Duration,
}

impl Budget {
    fn left(&self) -> Duration {
        self.limit.saturating_sub(self.spent)
    }
}

#[derive(Default)]
struct Budgets {
    work: Option<Budget>,
    /// Calls refused because the work budget was spent.
    work_skipped: u64,
    lookup: Option<Budget>,
}

thread_local! {
    static BUDGETS: RefCell<Budgets> = RefCell::new(Budgets::default());
}

/// What a unit of work spent on Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WorkSpent {
    pub spent: Duration,
    /// Calls it did not make because its budget was spent.
    pub skipped: u64,
}

/// A unit of work starts on this thread: its calls on `pool` may take
/// `limit` together. Replaces a unit that never ended.
pub fn begin_work(pool: usize, limit: Duration) {
    BUDGETS.with(|budgets| {
        let mut budgets = budgets.borrow_mut();
        budgets.work = Some(Budget {
            pool,
            limit,
            spent: Duration::ZERO,
        });
        budgets.work_skipped = 0;
    });
}

/// The unit of work of this thread ends; what it spent (None: none ran).
pub fn end_work() -> Option<WorkSpent> {
    BUDGETS.with(|budgets| {
        let mut budgets = budgets.borrow_mut();
        let work = budgets.work.take()?;
        Some(WorkSpent {
            spent: work.spent,
            skipped: std::mem::take(&mut budgets.work_skipped),
        })
    })
}

/// Opens a lookup's budget on `pool` until the guard drops; inside another
/// lookup's (a key expression that looks up), the outer one goes on.
pub fn begin_lookup(pool: usize, limit: Duration) -> LookupBudget {
    BUDGETS.with(|budgets| {
        let mut budgets = budgets.borrow_mut();
        if budgets.lookup.is_some() {
            return LookupBudget { opened: false };
        }
        budgets.lookup = Some(Budget {
            pool,
            limit,
            spent: Duration::ZERO,
        });
        LookupBudget { opened: true }
    })
}

/// Closes the lookup budget it opened when dropped.
#[must_use]
pub struct LookupBudget {
    opened: bool,
}

impl Drop for LookupBudget {
    fn drop(&mut self) {
        if self.opened {
            BUDGETS.with(|budgets| budgets.borrow_mut().lookup = None);
        }
    }
}

/// Why a call on this thread may not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spent {
    /// The unit of work's budget is spent (counted on the unit).
    Work,
    /// The lookup's budget is spent.
    Lookup,
}

/// How long the next call on `pool` may take: `call_limit` or less, what
/// the open budgets have left.
pub fn allowance(pool: usize, call_limit: Duration) -> Result<Duration, Spent> {
    BUDGETS.with(|budgets| {
        let mut budgets = budgets.borrow_mut();
        let mut allowed = call_limit;
        if let Some(lookup) = budgets.lookup.filter(|b| b.pool == pool) {
            if lookup.left().is_zero() {
                return Err(Spent::Lookup);
            }
            allowed = allowed.min(lookup.left());
        }
        if let Some(work) = budgets.work.filter(|b| b.pool == pool) {
            if work.left().is_zero() {
                budgets.work_skipped += 1;
                return Err(Spent::Work);
            }
            allowed = allowed.min(work.left());
        }
        Ok(allowed)
    })
}

/// A call on `pool` took `elapsed`: charged to every budget open on it.
pub fn charge(pool: usize, elapsed: Duration) {
    BUDGETS.with(|budgets| {
        let mut budgets = budgets.borrow_mut();
        let Budgets { work, lookup, .. } = &mut *budgets;
        for budget in [work, lookup].into_iter().flatten() {
            if budget.pool == pool {
                budget.spent += elapsed;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_call_gets_what_every_open_budget_has_left() {
        begin_work(1, 100 * MS);
        assert_eq!(allowance(1, 250 * MS), Ok(100 * MS));
        charge(1, 30 * MS);
        {
            let _lookup = begin_lookup(1, 250 * MS);
            assert_eq!(allowance(1, 250 * MS), Ok(70 * MS));
            charge(1, 70 * MS);
            assert_eq!(allowance(1, 250 * MS), Err(Spent::Work));
        }
        assert_eq!(allowance(1, 250 * MS), Err(Spent::Work));
        // Another pool (the session store's client) is not charged.
        assert_eq!(allowance(2, 250 * MS), Ok(250 * MS));
        let spent = end_work().unwrap();
        assert_eq!(spent.spent, 100 * MS);
        assert_eq!(spent.skipped, 2);
        assert_eq!(allowance(1, 250 * MS), Ok(250 * MS));
        assert_eq!(end_work(), None);
    }

    #[test]
    fn a_spent_lookup_stops_its_calls_not_the_next_lookup_s() {
        {
            let _lookup = begin_lookup(1, 100 * MS);
            charge(1, 100 * MS);
            assert_eq!(allowance(1, 250 * MS), Err(Spent::Lookup));
        }
        let _next = begin_lookup(1, 100 * MS);
        assert_eq!(allowance(1, 250 * MS), Ok(100 * MS));
    }

    #[test]
    fn a_nested_lookup_shares_the_outer_budget() {
        let _outer = begin_lookup(1, 100 * MS);
        charge(1, 60 * MS);
        {
            let _inner = begin_lookup(1, 100 * MS);
            assert_eq!(allowance(1, 250 * MS), Ok(40 * MS));
        }
        assert_eq!(allowance(1, 250 * MS), Ok(40 * MS));
    }
}
