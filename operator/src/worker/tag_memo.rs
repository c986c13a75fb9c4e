//! Keyed-hash tags computed lately on this thread, so a value that repeats is hashed once.
//!
//! Identity values repeat: a lab export lists every result of a specimen and every specimen of a
//! patient, and each row hashes the same patient id for `cryptoHash`, `dateShift` and `link`.
//! One HMAC costs far more than a lookup (a software SM3 HMAC is two 64-byte compressions), so
//! each thread keeps a small direct-mapped table of recent tags: `TagMemo::SLOTS` entries of
//! (key, input, tag), the newest one winning its slot. A tag is a pure function of key and
//! input, so a hit gives exactly the bytes the HMAC would.
//!
//! The table holds plain identifiers, as the records on the same thread do, and never more than
//! the last `SLOTS` short ones; it lives and dies with its thread. Inputs longer than
//! [`MAX_INPUT`] bytes are not kept (they are rarely repeated identifiers).

use std::cell::RefCell;
use std::hash::BuildHasher;

use arrayvec::ArrayVec;

/// The longest input kept (an 18-character 身份证号, a FHIR reference, a UUID fit).
pub const MAX_INPUT: usize = 48;

struct Slot {
    key: u64,
    input: ArrayVec<u8, MAX_INPUT>,
    tag: [u8; 32],
}

/// One thread's table.
struct TagMemo {
    slots: Vec<Option<Slot>>,
    hasher: foldhash::fast::FixedState,
}

impl TagMemo {
    /// A power of two, so the slot is the hash's low bits; 256 slots are about 24 KiB.
    const SLOTS: usize = 256;

    fn new() -> Self {
        TagMemo {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_6470_6c61_7421),
        }
    }

    fn slot(&self, key: u64, input: &[u8]) -> usize {
        let h = self.hasher.hash_one((key, input));
        // The mask keeps the index below SLOTS, which is a power of two.
        (h as usize) & (Self::SLOTS - 1)
    }
}

thread_local! {
    static MEMO: RefCell<TagMemo> = RefCell::new(TagMemo::new());
}

/// The tag of `input` under the key numbered `key`: from this thread's table when it was
/// computed lately, else from `compute`, which is then remembered.
pub fn tag_with(key: u64, input: &[u8], compute: impl FnOnce() -> [u8; 32]) -> [u8; 32] {
    if input.len() > MAX_INPUT {
        return compute();
    }
    let found = MEMO.try_with(|memo| {
        let memo = memo.try_borrow().ok()?;
        let i = memo.slot(key, input);
        match memo.slots.get(i) {
            Some(Some(s)) if s.key == key && s.input.as_slice() == input => Some(s.tag),
            _ => None,
        }
    });
    if let Ok(Some(tag)) = found {
        return tag;
    }
    let tag = compute();
    // Remembering is best effort: a thread being torn down simply computes every time.
    let _ = MEMO.try_with(|memo| {
        if let Ok(mut memo) = memo.try_borrow_mut() {
            let i = memo.slot(key, input);
            let mut kept = ArrayVec::new();
            if kept.try_extend_from_slice(input).is_ok()
                && let Some(slot) = memo.slots.get_mut(i)
            {
                *slot = Some(Slot {
                    key,
                    input: kept,
                    tag,
                });
            }
        }
    });
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tag(key: u64, input: &[u8]) -> [u8; 32] {
        let mut t = [0u8; 32];
        t[..8].copy_from_slice(&key.to_be_bytes());
        for (i, b) in input.iter().enumerate() {
            t[8 + i % 24] ^= *b;
        }
        t
    }

    #[test]
    fn a_hit_gives_what_computing_would_and_keys_never_share_tags() {
        let mut computed = 0;
        // More inputs than slots, twice over, under two keys: evictions and collisions happen.
        for round in 0..2 {
            for key in [1u64, 2] {
                for n in 0..600u32 {
                    let input = format!("P{n:08}");
                    let tag = tag_with(key, input.as_bytes(), || {
                        computed += 1;
                        fake_tag(key, input.as_bytes())
                    });
                    assert_eq!(tag, fake_tag(key, input.as_bytes()), "round {round}");
                }
            }
        }
        assert!(computed > 600, "evicted entries are computed again");
        // A repeat right away is a hit.
        let mut again = 0;
        for _ in 0..3 {
            tag_with(7, b"repeat", || {
                again += 1;
                fake_tag(7, b"repeat")
            });
        }
        assert_eq!(again, 1);
    }

    #[test]
    fn long_inputs_are_always_computed() {
        let long = vec![b'x'; MAX_INPUT + 1];
        let mut computed = 0;
        for _ in 0..2 {
            tag_with(3, &long, || {
                computed += 1;
                fake_tag(3, &long)
            });
        }
        assert_eq!(computed, 2);
    }
}
