//! A pipeline whose keys lie in several slots, split into parts the
//! crate routes and redirects as a whole (see the module's comment in
//! `cluster`): grouped by the node that last answered for their slots.

use std::ops::Range;
use std::sync::Arc;

use redis::cluster_routing::Slot;
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

use super::node_link::LAST_NODE;
use super::Cluster;

impl Cluster {
    /// A pipeline over several slots (see the module's comment): the
    /// replies in the order of the commands.
    pub(super) fn split_pipeline(
        &mut self,
        packed: &[u8],
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let commands = split_packed(packed, count).ok_or_else(|| {
            RedisError::from((ErrorKind::Client, "a pipeline that is not RESP arrays"))
        })?;
        let mut groups: Vec<SlotGroup> = Vec::new();
        for (index, (_, key)) in commands.iter().enumerate() {
            let slot = key.map(Slot::for_key);
            match groups
                .iter_mut()
                .find(|(known, _)| slot.is_some() && *known == slot)
            {
                Some((_, members)) => members.push(index),
                None => groups.push((slot, vec![index])),
            }
        }
        // Slots last served by the same node travel together.
        let mut parts: Vec<(Option<Arc<str>>, Vec<SlotGroup>)> = Vec::new();
        {
            let learned = self.nodes.slot_nodes.lock();
            for (slot, members) in groups {
                let node = slot.and_then(|slot| learned.get(&slot).cloned());
                match parts
                    .iter_mut()
                    .find(|(known, _)| node.is_some() && *known == node)
                {
                    Some((_, slots)) => slots.push((slot, members)),
                    None => parts.push((node, vec![(slot, members)])),
                }
            }
        }
        let mut replies = vec![Value::Nil; count];
        for (_, slots) in parts {
            if slots.len() > 1 {
                let members: Vec<usize> = slots.iter().flat_map(|(_, m)| m.clone()).collect();
                let values = self.send_part(packed, &commands, &members);
                match values {
                    Ok(values) => {
                        for (index, value) in members.into_iter().zip(values) {
                            replies[index] = value;
                        }
                        continue;
                    }
                    // A slot moved since it was learned: forget them all and
                    // send one slot at a time (what ran is sent again: the
                    // commands this project pipelines are idempotent).
                    Err(err) if err.is_cluster_error() => {
                        let mut learned = self.nodes.slot_nodes.lock();
                        for slot in slots.iter().filter_map(|(slot, _)| slot.as_ref()) {
                            learned.remove(slot);
                        }
                    }
                    Err(err) => return self.note(Err(err)),
                }
            }
            for (slot, members) in slots {
                LAST_NODE.with(|last| *last.borrow_mut() = None);
                let values = self.send_part(packed, &commands, &members);
                let values = self.note(values)?;
                if let (Some(slot), Some(node)) = (slot, LAST_NODE.with(|last| last.take())) {
                    self.nodes.slot_nodes.lock().insert(slot, node);
                }
                for (index, value) in members.into_iter().zip(values) {
                    replies[index] = value;
                }
            }
        }
        Ok(replies)
    }

    /// `members` of the packed `commands` as one request the crate routes.
    fn send_part(
        &mut self,
        packed: &[u8],
        commands: &[PackedCommand<'_>],
        members: &[usize],
    ) -> RedisResult<Vec<Value>> {
        if let [only] = members[..] {
            let reply = self
                .connection
                .req_packed_command(&packed[commands[only].0.clone()]);
            return reply.map(|value| vec![value]);
        }
        let mut part = Vec::new();
        for &index in members {
            part.extend_from_slice(&packed[commands[index].0.clone()]);
        }
        self.connection.req_packed_commands(&part, 0, members.len())
    }
}
/// The indexes of a pipeline's commands on one slot (None: keyless).
type SlotGroup = (Option<Slot>, Vec<usize>);

/// Where one packed command lies, and its first key: the argument after
/// the name, or for `EVAL`/`EVALSHA` (the single-flight lock release) the
/// first one after the key count.
type PackedCommand<'a> = (Range<usize>, Option<&'a [u8]>);

/// Each of `count` packed commands; None unless `packed` is exactly that.
fn split_packed(packed: &[u8], count: usize) -> Option<Vec<PackedCommand<'_>>> {
    fn number(bytes: &[u8], at: &mut usize, marker: u8) -> Option<usize> {
        if bytes.get(*at) != Some(&marker) {
            return None;
        }
        let end = *at + bytes[*at..].windows(2).position(|w| w == b"\r\n")?;
        let value = std::str::from_utf8(&bytes[*at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        *at = end + 2;
        Some(value)
    }
    let mut commands = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let start = at;
        let count = number(packed, &mut at, b'*')?;
        let mut args = Vec::with_capacity(count);
        for _ in 0..count {
            let len = number(packed, &mut at, b'$')?;
            args.push(packed.get(at..at + len)?);
            at += len + 2;
        }
        let script = args.first().is_some_and(|name| {
            name.eq_ignore_ascii_case(b"EVAL") || name.eq_ignore_ascii_case(b"EVALSHA")
        });
        let key = match script {
            true => (args.get(2).copied() != Some(&b"0"[..]))
                .then(|| args.get(3).copied())
                .flatten(),
            false => args.get(1).copied(),
        };
        commands.push((start..at, key));
    }
    (at == packed.len()).then_some(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_pipelines_split_into_commands_and_keys() {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg("a").cmd("PING");
        pipe.cmd("SET").arg("b\r\n").arg("x");
        pipe.cmd("EVAL").arg("return 1").arg(1).arg("lock").arg(7);
        pipe.cmd("EVAL").arg("return 1").arg(0);
        let packed = pipe.get_packed_pipeline();
        let commands = split_packed(&packed, 5).unwrap();
        let keys: Vec<_> = commands.iter().map(|(_, key)| *key).collect();
        let expected: [Option<&[u8]>; 5] = [Some(b"a"), None, Some(b"b\r\n"), Some(b"lock"), None];
        assert_eq!(keys, expected);
        let rejoined: Vec<u8> = commands
            .iter()
            .flat_map(|(range, _)| packed[range.clone()].to_vec())
            .collect();
        assert_eq!(rejoined, packed);
        assert!(split_packed(&packed, 6).is_none());
        assert!(split_packed(&packed[..packed.len() - 1], 5).is_none());
    }
}
