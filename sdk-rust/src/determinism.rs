//! The deterministic helpers' generator: the numbers `ctx.random()` and
//! `ctx.uuid()` draw, the same in every language, on every replica and in
//! every replay (docs/ARCHITECTURE.md, "Deterministic helpers").

/// The step name `ctx.now()` commits its time under (ms since the Unix
/// epoch, a JSON integer).
pub const NOW_STEP: &str = "raftoral.now";

/// SplitMix64 seeded per run. Chosen for being specified in a few lines
/// (the raw worker implements it from the docs) and for passing BigCrush
/// from any seed; it is not for secrets.
#[derive(Debug, Clone)]
pub(crate) struct Random {
    state: u64,
}

impl Random {
    /// The generator of a run: `seed` from the execute request, or a hash
    /// of the workflow id when the sidecar sent none (0).
    pub fn new(seed: u64, workflow_id: &str) -> Self {
        let state = if seed != 0 {
            seed
        } else {
            workflow_id
                .as_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
                })
        };
        Random { state }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float in `[0, 1)`: the top 53 bits of the next draw.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A version 4 UUID from the next two draws (big-endian), lowercase.
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Random;

    #[test]
    fn the_generator_matches_splitmix64_and_its_documented_outputs() {
        // SplitMix64 from seed 0 (the published reference sequence).
        let mut r = Random { state: 0 };
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        // The same seed draws the same numbers; another seed others.
        let draw = |seed| {
            let mut r = Random::new(seed, "wf");
            (r.next_f64(), r.uuid())
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
        let (f, u) = draw(42);
        assert!((0.0..1.0).contains(&f));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!("89ab".contains(&u[19..20]), "RFC 4122 variant: {u}");
    }

    #[test]
    fn without_a_seed_the_workflow_id_seeds_the_run() {
        let first = |id| Random::new(0, id).next_u64();
        assert_eq!(first("a"), first("a"));
        assert_ne!(first("a"), first("b"));
    }
}
