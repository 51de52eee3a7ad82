//! The plugin's allocator in WebAssembly: talc, behind a cache of freed small blocks.
//!
//! A plugin call allocates a few dozen small blocks (each string the host copies in, the
//! strings and lists it builds) and frees them before it returns, and the next call asks for
//! the same sizes again. talc searches its bins on every allocation and free; in WebAssembly
//! that was about 350 instructions a pair. [`Cached`] keeps freed blocks of up to 256 bytes in
//! one list per power-of-two size and hands them out again in a few instructions. It keeps at
//! most [`KEEP`] blocks per size (about 32 KiB in all), and gives the others back, so a call
//! that once frees many small blocks leaves their memory to the allocator for any size.
// An allocator is unsafe code by definition; each block says what it relies on.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The smallest block, and the alignment of every cached block.
const SMALLEST: usize = 16;

/// Number of cached sizes: 16, 32, 64, 128 and 256 bytes.
const SIZES: usize = 5;

/// Blocks kept per size, at most.
const KEEP: usize = 64;

/// `A` with freed small blocks cached in front of it.
///
/// Not safe to share between threads: the WebAssembly plugin it serves has one.
pub(crate) struct Cached<A> {
    inner: A,
    lists: UnsafeCell<[List; SIZES]>,
}

/// The freed blocks of one size.
#[derive(Clone, Copy)]
struct List {
    head: *mut Free,
    len: usize,
}

/// A freed block, linking to the next of its size.
struct Free {
    next: *mut Free,
}

/// A plugin runs on one thread: its allocator is never used from two at once.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for Cached<A> {}

impl<A> Cached<A> {
    /// `inner`, with an empty cache.
    pub(crate) const fn new(inner: A) -> Self {
        const EMPTY: List = List {
            head: ptr::null_mut(),
            len: 0,
        };
        Self {
            inner,
            lists: UnsafeCell::new([EMPTY; SIZES]),
        }
    }

    /// The list for blocks of size class `size`.
    ///
    /// # Safety
    /// No other reference to the lists may be alive (one thread, no reentrance).
    #[allow(clippy::mut_from_ref)]
    unsafe fn list(&self, size: usize) -> &mut List {
        // SAFETY: the caller's promise; `size < SIZES` by construction of `size_of`.
        unsafe { &mut (*self.lists.get())[size] }
    }
}

/// The cached size class of `layout`: `Some(i)` for blocks of `SMALLEST << i` bytes.
fn size_of(layout: Layout) -> Option<usize> {
    if layout.align() > SMALLEST || layout.size() > SMALLEST << (SIZES - 1) {
        return None;
    }
    let bytes = layout.size().max(SMALLEST);
    Some((usize::BITS - (bytes - 1).leading_zeros()) as usize - SMALLEST.trailing_zeros() as usize)
}

/// The layout the inner allocator gives blocks of size class `size` with.
fn block(size: usize) -> Layout {
    Layout::from_size_align(SMALLEST << size, SMALLEST).expect("a valid layout")
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for Cached<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(size) = size_of(layout) else {
            // SAFETY: forwarded as given.
            return unsafe { self.inner.alloc(layout) };
        };
        // SAFETY: one thread, and the inner allocator does not call back into this one.
        let list = unsafe { self.list(size) };
        if list.head.is_null() {
            // SAFETY: a non-zero size.
            return unsafe { self.inner.alloc(block(size)) };
        }
        let free = list.head;
        // SAFETY: `free` is a block of this size that was freed and linked by `dealloc`.
        list.head = unsafe { (*free).next };
        list.len -= 1;
        free.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(size) = size_of(layout) else {
            // SAFETY: forwarded as given.
            return unsafe { self.inner.dealloc(ptr, layout) };
        };
        // SAFETY: as in `alloc`.
        let list = unsafe { self.list(size) };
        if list.len == KEEP {
            // SAFETY: blocks of this size come from the inner allocator with this layout.
            return unsafe { self.inner.dealloc(ptr, block(size)) };
        }
        let free = ptr.cast::<Free>();
        // SAFETY: the block is at least `SMALLEST` bytes, aligned to `SMALLEST`, and no
        // longer used by the caller.
        unsafe { free.write(Free { next: list.head }) };
        list.head = free;
        list.len += 1;
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller promises `new_size` rounded up to the alignment does not overflow.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (size_of(layout), size_of(new)) {
            // The block already has room for the new size.
            (Some(old), Some(size)) if old == size => ptr,
            // SAFETY: neither is cached: the inner allocator's block, forwarded as given.
            (None, None) => unsafe { self.inner.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: `new` has a non-zero size, as the caller promises.
                let moved = unsafe { self.alloc(new) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and do not overlap;
                    // the old one is freed once, after the copy.
                    unsafe {
                        ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;
    use std::cell::Cell;

    use super::*;

    /// The system allocator, counting the blocks it holds.
    #[derive(Default)]
    struct Counting {
        live: Cell<isize>,
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.live.set(self.live.get() + 1);
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.live.set(self.live.get() - 1);
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn sizes_round_up_to_a_power_of_two_from_sixteen() {
        let sizes: Vec<_> = [1, 16, 17, 32, 33, 100, 128, 129, 256]
            .into_iter()
            .map(|n| size_of(layout(n, 1)))
            .collect();
        let expected = [0, 0, 1, 1, 2, 3, 3, 4, 4].map(Some);
        assert_eq!(sizes, expected);
        assert_eq!(size_of(layout(257, 1)), None);
        assert_eq!(size_of(layout(8, 16)), Some(0));
        assert_eq!(size_of(layout(8, 32)), None);
    }

    #[test]
    fn a_freed_small_block_is_handed_out_again_without_the_inner_allocator() {
        let a = Cached::new(Counting::default());
        unsafe {
            let first = a.alloc(layout(20, 1));
            a.dealloc(first, layout(20, 1));
            // Any size of the same class, any alignment up to 16.
            let again = a.alloc(layout(32, 8));
            assert_eq!(again, first);
            assert_eq!(a.inner.live.get(), 1);
            a.dealloc(again, layout(32, 8));
        }
    }

    #[test]
    fn at_most_keep_blocks_of_a_size_are_cached() {
        let a = Cached::new(Counting::default());
        unsafe {
            let blocks: Vec<_> = (0..KEEP + 10).map(|_| a.alloc(layout(40, 4))).collect();
            assert_eq!(a.inner.live.get(), (KEEP + 10) as isize);
            for &b in &blocks {
                a.dealloc(b, layout(40, 4));
            }
            assert_eq!(a.inner.live.get(), KEEP as isize);
            assert_eq!(a.list(2).len, KEEP);
        }
    }

    #[test]
    fn large_and_overaligned_blocks_go_to_the_inner_allocator() {
        let a = Cached::new(Counting::default());
        unsafe {
            for l in [layout(257, 1), layout(4096, 8), layout(16, 64)] {
                let p = a.alloc(l);
                assert_eq!(p as usize % l.align(), 0);
                a.dealloc(p, l);
                assert_eq!(a.inner.live.get(), 0, "{l:?}");
            }
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_sizes() {
        let a = Cached::new(Counting::default());
        unsafe {
            let mut l = layout(5, 1);
            let mut p = a.alloc(l);
            ptr::copy_nonoverlapping(b"hello".as_ptr(), p, 5);
            // Within a class the block stays; across classes, and to and from the inner
            // allocator's sizes, the bytes move with it.
            for size in [9, 16, 17, 200, 300, 5000, 100, 7] {
                let q = a.realloc(p, l, size);
                if size_of(l) == size_of(layout(size, 1)) && size_of(l).is_some() {
                    assert_eq!(q, p);
                }
                p = q;
                l = layout(size, 1);
                assert_eq!(std::slice::from_raw_parts(p, 5), b"hello", "{size}");
            }
            a.dealloc(p, l);
            // Every block is either cached or given back.
            let cached: usize = (0..SIZES).map(|s| a.list(s).len).sum();
            assert_eq!(a.inner.live.get(), cached as isize);
        }
    }

    #[test]
    fn blocks_in_use_never_overlap() {
        let a = Cached::new(Counting::default());
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut seed = 7u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        unsafe {
            for round in 0..5_000u32 {
                let r = next();
                if r % 3 == 0 && !live.is_empty() {
                    let (p, l, mark) = live.swap_remove(r as usize % live.len());
                    let bytes = std::slice::from_raw_parts(p, l.size());
                    assert!(bytes.iter().all(|&b| b == mark), "round {round}");
                    a.dealloc(p, l);
                } else {
                    let l = layout(1 + r as usize % 400, 1 << (r % 5));
                    let p = a.alloc(l);
                    let mark = round as u8;
                    ptr::write_bytes(p, mark, l.size());
                    live.push((p, l, mark));
                }
            }
            for (p, l, mark) in live {
                assert!(
                    std::slice::from_raw_parts(p, l.size())
                        .iter()
                        .all(|&b| b == mark)
                );
                a.dealloc(p, l);
            }
        }
    }
}
