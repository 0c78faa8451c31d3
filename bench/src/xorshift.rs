//! [`XorShift`]: a fixed-seed pseudo-random generator, so that edgeloop and tokio
//! are given exactly the same deadlines in the same order.
//!
//! Not for anything but spreading benchmark deadlines: xorshift64 (Marsaglia, 2003)
//! is fast and reproducible, which is all a benchmark needs from it.

/// The xorshift64 generator. The same seed always yields the same sequence.
///
/// # Examples
///
/// ```
/// use edgeloop_bench::XorShift;
///
/// let mut a = XorShift::new(7);
/// let mut b = XorShift::new(7);
/// assert_eq!(a.below(1000), b.below(1000));
/// assert!(a.below(10) < 10);
/// ```
#[derive(Debug, Clone)]
pub struct XorShift {
    /// The generator state; never zero, or every later output would be zero.
    state: u64,
}

impl XorShift {
    /// A generator seeded with `seed` (a zero seed is replaced by a fixed odd one).
    pub fn new(seed: u64) -> Self {
        XorShift {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number in `0..bound`, by multiply-and-shift; the bias, below
    /// `bound / 2^64`, does not matter for spreading deadlines.
    pub fn below(&mut self, bound: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(bound);
        // The high half of a 64 x 64-bit product fits in 64 bits.
        (wide >> 64) as u64
    }
}
