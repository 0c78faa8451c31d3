//! A hierarchical timing wheel with microsecond ticks: O(1) insert, cancel and
//! reschedule, and a next-expiration query that costs one bit scan per level.
//!
//! # Layout
//!
//! `LEVELS` levels of 64 slots. A slot of level `L` spans `64^L` ticks (one tick is one
//! microsecond), so level 0 covers the next 64 µs slot by slot, level 1 the next
//! 4 ms in 64 µs slots, ..., level 7 about 8.9 years. A timer goes to the level of the
//! highest bit in which its deadline differs from `elapsed` (see [`level_for`]); as
//! time reaches its slot, it cascades to a lower level, until it fires from level 0.
//! Each level keeps a 64-bit map of occupied slots, so finding the next slot is a
//! rotate and a `trailing_zeros`.
//! Each slot also keeps a lower bound of its deadlines (the least one linked since
//! it was last empty), so the loop sleeps straight to a far timer's deadline and
//! cascades its slot then, instead of waking at every slot boundary on the way.
//!
//! Entries live in a slab (`Vec<Entry>`); each slot is an intrusive doubly-linked
//! list threaded through the slab by index, so unlinking a cancelled timer is O(1)
//! and needs no search. A cancelled or fired entry's memory is reused at once, and
//! the whole slab is released when the last timer goes.
//!
//! # Invariants
//!
//! - Every linked entry has `deadline > elapsed`, except those in `expired` (inserted
//!   with a deadline already reached), which fire at the next [`Wheel::advance`].
//! - A timer never fires before its deadline: it fires only once `elapsed` (the
//!   floor of the current time in ticks) has reached its deadline (the ceiling of
//!   its instant in ticks).

use std::task::Waker;

/// Bits of tick per level: 64 slots.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Levels: 8 x 6 bits = 48 bits of microseconds, about 8.9 years.
const LEVELS: usize = 8;
/// The farthest tick a timer can be set to; later deadlines are clamped to it.
pub(crate) const MAX_TICK: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;
/// "No entry" in the intrusive lists.
const NIL: u32 = u32::MAX;
/// Slab size above which an emptied wheel gives its memory back.
const SHRINK_ABOVE: usize = 1024;

/// Where an entry is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In slot `slot` of level `level`.
    Slot { level: u8, slot: u8 },
    /// In the `expired` list: due at the next advance.
    Expired,
    /// On the free list.
    Free,
}

/// Handle to a timer: slab index plus the generation it had when inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    /// Slab index.
    index: u32,
    /// Generation of the slab entry at insertion; stale once the timer fired or was
    /// removed.
    generation: u32,
    /// The slab's epoch at insertion: a slab given back and grown anew restarts its
    /// generations, and the epoch keeps old keys from matching new entries.
    epoch: u32,
}

#[derive(Debug)]
struct Entry {
    /// Tick at which the timer fires.
    deadline: u64,
    /// Whom to wake; `None` only on the free list.
    waker: Option<Waker>,
    /// Previous entry in the same list, or `NIL`.
    prev: u32,
    /// Next entry in the same list (or on the free list), or `NIL`.
    next: u32,
    /// Bumped whenever the entry is freed, so old keys stop matching.
    generation: u32,
    /// Which list the entry is on.
    place: Place,
}

/// A doubly-linked list of entries: head and tail indices.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
}

#[derive(Debug)]
struct Level {
    /// Bit `s` set when slot `s` holds at least one entry.
    occupied: u64,
    /// The slots' lists.
    slots: [List; SLOTS],
    /// Per slot, a lower bound of its entries' deadlines: the least deadline linked
    /// there since the slot was last empty (`u64::MAX` when empty). Removing an
    /// entry does not raise it, so it may be early, never late. It lets the loop
    /// sleep straight to a far timer's deadline instead of waking at each slot
    /// boundary on the way to cascade it.
    earliest: [u64; SLOTS],
}

/// The timer wheel; see the module docs.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Ticks processed so far: every timer due at or before this has fired.
    elapsed: u64,
    /// The levels, finest first.
    levels: [Level; LEVELS],
    /// Entries inserted already due.
    expired: List,
    /// The slab.
    entries: Vec<Entry>,
    /// Head of the free list (threaded through `Entry::next`).
    free: u32,
    /// Number of pending timers.
    live: usize,
    /// Bumped each time the slab is given back; see [`TimerKey::epoch`].
    epoch: u32,
    /// Buffer for sorting the `expired` list; kept to avoid an allocation per fire.
    scratch: Vec<u32>,
}

/// The level for a timer due at `deadline` when the wheel stands at `elapsed`: the
/// 6-bit group of the highest bit in which the two differ (level 0 if they differ
/// only in the lowest group).
#[inline]
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

/// Ticks spanned by one slot of `level`.
fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// Ticks spanned by all of `level`.
fn level_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * (level + 1))
}

/// The slot of `deadline` at `level`.
#[inline]
fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (SLOT_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            elapsed: 0,
            levels: std::array::from_fn(|_| Level {
                occupied: 0,
                slots: [List::EMPTY; SLOTS],
                earliest: [u64::MAX; SLOTS],
            }),
            expired: List::EMPTY,
            entries: Vec::new(),
            free: NIL,
            live: 0,
            epoch: 0,
            scratch: Vec::new(),
        }
    }
}

impl Wheel {
    /// Ticks processed so far.
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Adds a timer due at tick `deadline` (clamped to [`MAX_TICK`]).
    #[inline]
    pub(crate) fn insert(&mut self, deadline: u64, waker: Waker) -> TimerKey {
        let index = match self.free {
            NIL => {
                let index = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&i| i != NIL)
                    .expect("more than u32::MAX - 1 pending timers");
                self.entries.push(Entry {
                    deadline: 0,
                    waker: None,
                    prev: NIL,
                    next: NIL,
                    generation: 0,
                    place: Place::Free,
                });
                index
            }
            index => {
                self.free = self.entries[index as usize].next;
                index
            }
        };
        let entry = &mut self.entries[index as usize];
        entry.deadline = deadline.min(MAX_TICK);
        entry.waker = Some(waker);
        self.live += 1;
        self.link(index);
        TimerKey {
            index,
            generation: self.entries[index as usize].generation,
            epoch: self.epoch,
        }
    }

    /// The pending entry `key` names, if it is still pending.
    #[inline]
    fn find(&self, key: TimerKey) -> Option<&Entry> {
        if key.epoch != self.epoch {
            return None;
        }
        self.entries
            .get(key.index as usize)
            .filter(|e| e.generation == key.generation && e.place != Place::Free)
    }

    /// Whether `key` names a pending timer.
    #[inline]
    pub(crate) fn contains(&self, key: TimerKey) -> bool {
        self.find(key).is_some()
    }

    /// Whether the pending timer `key` would wake `waker`'s task already.
    pub(crate) fn will_wake(&self, key: TimerKey, waker: &Waker) -> bool {
        self.find(key)
            .and_then(|e| e.waker.as_ref())
            .is_some_and(|w| w.will_wake(waker))
    }

    /// Replaces the waker of a pending timer; returns the old one (for the caller to
    /// drop outside any borrow), or gives `waker` back if `key` is stale.
    pub(crate) fn set_waker(&mut self, key: TimerKey, waker: Waker) -> Result<Waker, Waker> {
        if !self.contains(key) {
            return Err(waker);
        }
        let entry = &mut self.entries[key.index as usize];
        Ok(entry
            .waker
            .replace(waker)
            .expect("a pending timer has a waker"))
    }

    /// Moves a pending timer to a new deadline; false if `key` is stale.
    pub(crate) fn reschedule(&mut self, key: TimerKey, deadline: u64) -> bool {
        if !self.contains(key) {
            return false;
        }
        self.unlink(key.index);
        self.entries[key.index as usize].deadline = deadline.min(MAX_TICK);
        self.link(key.index);
        true
    }

    /// Cancels a pending timer and frees its entry; returns its waker. A stale key
    /// (the timer fired or was removed) does nothing.
    #[inline]
    pub(crate) fn remove(&mut self, key: TimerKey) -> Option<Waker> {
        if !self.contains(key) {
            return None;
        }
        self.unlink(key.index);
        self.release(key.index)
    }

    /// The next tick at which [`advance`](Self::advance) has work: exact for timers
    /// due within the current 64 µs; for farther ones the least deadline linked
    /// into their slot (exact unless that timer was cancelled since, and then
    /// early, never late), at which the slot cascades and its due timers fire.
    /// `None` when no timer is pending.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_wakeup(0)
    }

    /// When to wake to fire the next timers, letting them run up to `slack` ticks
    /// late so that close deadlines share one wakeup: the latest occupied tick in
    /// `[next, next + slack]` that is still on level 0 (the current 64 µs block),
    /// where `next` is [`next_expiration`](Self::next_expiration). Never earlier
    /// than `next`, so no timer fires early; with one timer due, exactly `next`.
    pub(crate) fn next_wakeup(&self, slack: u64) -> Option<u64> {
        if self.expired.head != NIL {
            return Some(self.elapsed);
        }
        let (level, slot, tick) = self.next_slot()?;
        if level != 0 {
            // Nothing in the slot is due before its earliest deadline: no need to
            // wake at the slot's start only to cascade it.
            return Some(tick.max(self.levels[level].earliest[slot]));
        }
        if slack == 0 {
            return Some(tick);
        }
        // Occupied level-0 slots from `slot` up to `slot + slack`, capped at the end
        // of the block (level 0 holds only this block's ticks, all at or after
        // `slot`).
        let last = (slot as u64).saturating_add(slack).min(SLOTS as u64 - 1);
        let window = u64::MAX >> (SLOTS as u64 - 1 - last);
        let occupied = self.levels[0].occupied & window;
        let latest = 63 - occupied.leading_zeros() as u64;
        Some(tick + (latest - slot as u64))
    }

    /// The first occupied slot at or after `elapsed`, as (level, slot, start tick).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        // Scanning from the finest level is right: an entry on level `L` lies in a
        // later 64^L block than `elapsed`, so after everything on lower levels.
        for (level, l) in self.levels.iter().enumerate() {
            if l.occupied == 0 {
                continue;
            }
            let now_slot = slot_for(self.elapsed, level);
            let distance = l.occupied.rotate_right(now_slot as u32).trailing_zeros() as usize;
            let slot = (now_slot + distance) % SLOTS;
            let level_start = self.elapsed & !(level_range(level) - 1);
            let mut start = level_start + slot as u64 * slot_range(level);
            if start < self.elapsed && distance != 0 {
                start += level_range(level);
            }
            return Some((level, slot, start.max(self.elapsed)));
        }
        None
    }

    /// Moves time forward to tick `now`, firing every timer due at or before it:
    /// their wakers are appended to `fired` in deadline order (ties in insertion
    /// order), for the caller to wake outside any borrow.
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<Waker>) {
        self.fire_expired(fired);
        while let Some((level, slot, start)) = self.next_slot() {
            if start > now {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            let mut list = std::mem::replace(&mut self.levels[level].slots[slot], List::EMPTY);
            self.levels[level].occupied &= !(1 << slot);
            self.levels[level].earliest[slot] = u64::MAX;
            // Due entries fire; the rest cascade to a finer level (relative to the
            // new `elapsed`), where a later turn of this loop finds them.
            self.fire_list(&mut list, fired);
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Fires the `expired` list, whose entries are all due, in deadline order (ties
    /// in link order: the sort is stable).
    fn fire_expired(&mut self, fired: &mut Vec<Waker>) {
        if self.expired.head == NIL {
            return;
        }
        let mut order = std::mem::take(&mut self.scratch);
        let mut index = self.expired.head;
        while index != NIL {
            order.push(index);
            index = self.entries[index as usize].next;
        }
        self.expired = List::EMPTY;
        order.sort_by_key(|&i| self.entries[i as usize].deadline);
        for &index in &order {
            fired.extend(self.release(index));
        }
        order.clear();
        self.scratch = order;
    }

    /// Fires the due entries of a detached list; relinks the others.
    fn fire_list(&mut self, list: &mut List, fired: &mut Vec<Waker>) {
        let mut index = list.head;
        while index != NIL {
            let entry = &mut self.entries[index as usize];
            let next = entry.next;
            entry.prev = NIL;
            entry.next = NIL;
            if entry.deadline <= self.elapsed {
                fired.extend(self.release(index));
            } else {
                self.link(index);
            }
            index = next;
        }
        *list = List::EMPTY;
    }

    /// Links entry `index` at the tail of the list its deadline belongs to. (The
    /// `expired` list is put in deadline order when it fires, not here, so an insert
    /// stays O(1) whatever order due timers arrive in.)
    #[inline]
    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let (list, place) = if deadline <= self.elapsed {
            (&mut self.expired, Place::Expired)
        } else {
            let level = level_for(self.elapsed, deadline);
            let slot = slot_for(deadline, level);
            let l = &mut self.levels[level];
            l.occupied |= 1 << slot;
            l.earliest[slot] = l.earliest[slot].min(deadline);
            (
                &mut self.levels[level].slots[slot],
                Place::Slot {
                    level: level as u8,
                    slot: slot as u8,
                },
            )
        };
        let tail = list.tail;
        list.tail = index;
        if tail == NIL {
            list.head = index;
        }
        if tail != NIL {
            self.entries[tail as usize].next = index;
        }
        let entry = &mut self.entries[index as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.place = place;
    }

    /// Unlinks entry `index` from whichever list holds it.
    #[inline]
    fn unlink(&mut self, index: u32) {
        let (prev, next, place) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.place)
        };
        let list = match place {
            Place::Slot { level, slot } => &mut self.levels[level as usize].slots[slot as usize],
            Place::Expired => &mut self.expired,
            Place::Free => unreachable!("unlink of a free timer entry"),
        };
        if prev == NIL {
            list.head = next;
        }
        if next == NIL {
            list.tail = prev;
        }
        let emptied = list.head == NIL;
        if prev != NIL {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if emptied && let Place::Slot { level, slot } = place {
            let l = &mut self.levels[level as usize];
            l.occupied &= !(1 << slot);
            l.earliest[slot as usize] = u64::MAX;
        }
    }

    /// Puts an unlinked entry on the free list; returns its waker. Gives the whole
    /// slab back once no timer is left, so a burst of timers leaves nothing behind.
    #[inline]
    fn release(&mut self, index: u32) -> Option<Waker> {
        let entry = &mut self.entries[index as usize];
        let waker = entry.waker.take();
        entry.generation = entry.generation.wrapping_add(1);
        entry.place = Place::Free;
        entry.prev = NIL;
        entry.next = self.free;
        self.free = index;
        self.live -= 1;
        if self.live == 0 && self.entries.len() > SHRINK_ABOVE {
            self.entries = Vec::new();
            self.free = NIL;
            self.epoch = self.epoch.wrapping_add(1);
        }
        waker
    }

    /// Bytes of heap the slab holds (for leak tests).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

#[cfg(test)]
mod tests;
