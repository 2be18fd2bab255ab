//! What this process knows of each method's generation token in Redis,
//! and which methods another process cleared since the last sync.

use std::collections::{HashMap, HashSet};

/// Retired tokens remembered per method.
const RETIRED_TOKENS: usize = 16;

/// What this process knows of one method's generation in Redis.
#[derive(Default)]
pub(super) struct MethodGeneration {
    /// The token last read or written; stamped on this process's writes.
    pub(super) current: Option<u64>,
    /// Tokens seen and then replaced: random tokens are never reused, so
    /// one coming back means someone rolled the bookkeeping back to make
    /// old entries valid again.
    pub(super) retired: Vec<u64>,
}

impl MethodGeneration {
    pub(super) fn forget(&mut self) {
        if let Some(previous) = self.current.take() {
            self.retire(previous);
        }
    }

    fn retire(&mut self, token: u64) {
        if self.retired.len() == RETIRED_TOKENS {
            self.retired.remove(0);
        }
        self.retired.push(token);
    }

    pub(super) fn adopt(&mut self, token: u64) {
        if let Some(previous) = self.current.replace(token) {
            if previous != token {
                self.retire(previous);
            }
        }
    }
}

/// Per method name.
pub(super) type Generations = HashMap<String, MethodGeneration>;

/// The methods cleared elsewhere since the last sync: their token in Redis
/// (`now`) differs from the one this process computed its copies under
/// (`mine`), or, when it holds none, changed or vanished since `synced`.
/// From then on `mine` follows Redis (a vanished token is recreated fresh
/// on the next use) and `synced` is `now`.
pub(super) fn sync(
    now: HashMap<String, u64>,
    synced: &mut HashMap<String, u64>,
    mine: &mut Generations,
) -> Vec<String> {
    let names: HashSet<&String> = now.keys().chain(synced.keys()).chain(mine.keys()).collect();
    let stale: Vec<String> = names
        .into_iter()
        .filter(|name| {
            let token = now.get(*name);
            match mine.get(*name).and_then(|known| known.current) {
                // Copies computed under the token Redis holds are current,
                // whatever the last sync saw.
                Some(known) => Some(&known) != token,
                None => synced.get(*name) != token,
            }
        })
        .cloned()
        .collect();
    for name in &stale {
        let known = mine.entry(name.clone()).or_default();
        match now.get(name) {
            Some(token) => known.adopt(*token),
            None => known.forget(),
        }
    }
    *synced = now;
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_token_is_retired() {
        let mut generation = MethodGeneration::default();
        generation.adopt(1);
        generation.adopt(1);
        generation.adopt(2);
        generation.forget();
        assert_eq!(generation.current, None);
        assert_eq!(generation.retired, vec![1, 2]);
    }

    #[test]
    fn methods_cleared_elsewhere_are_stale() {
        let tokens = |pairs: &[(&str, u64)]| -> HashMap<String, u64> {
            pairs.iter().map(|(n, t)| (n.to_string(), *t)).collect()
        };
        let mut synced = tokens(&[("a", 1), ("b", 2), ("gone", 3)]);
        let mut mine = Generations::new();
        mine.entry("c".into()).or_default().adopt(9);
        // Read before the first sync, under the token Redis still holds.
        mine.entry("d".into()).or_default().adopt(7);
        let mut stale = sync(
            tokens(&[("a", 1), ("b", 5), ("c", 4), ("d", 7)]),
            &mut synced,
            &mut mine,
        );
        stale.sort();
        assert_eq!(stale, ["b", "c", "gone"]);
        assert_eq!(mine["c"].current, Some(4));
        assert_eq!(mine["d"].current, Some(7));
        assert_eq!(mine["gone"].current, None);
        assert_eq!(synced, tokens(&[("a", 1), ("b", 5), ("c", 4), ("d", 7)]));
    }
}
