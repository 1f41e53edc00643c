//! The scenario a seed draws: sizes, timings, how hostile the world is,
//! and the families of seeds that aim at one kind of race.

use super::rng::Rng;

/// The scenario a seed draws: sizes, timings and how hostile the world is.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub nodes: usize,
    pub workflows: usize,
    pub snapshot_entries: u64,
    pub snapshot_keep_entries: u64,
    /// How far back the leader keeps the log for a slow follower (as
    /// little as `snapshot_keep_entries`: any lag costs a snapshot).
    pub snapshot_max_retained_entries: u64,
    pub retention_ms: Option<u64>,
    /// Faults stop after this long (simulation ms); then the world heals.
    pub fault_ms: u64,
    /// Time allowed after the faults for every workflow to finish.
    pub settle_ms: u64,
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    pub max_delay_ms: u64,
    /// Mean time between crashes, partitions and clock jumps (ms; 0: none).
    pub crash_every_ms: u64,
    pub partition_every_ms: u64,
    pub clock_jump_every_ms: u64,
    /// Largest clock jump (ms either way).
    pub max_clock_jump_ms: u64,
    /// Slowest background job (the flush thread on a slow disk), ms.
    pub max_job_delay_ms: u64,
    /// Slowest slice of a snapshot's receive, ms.
    pub max_receive_delay_ms: u64,
    /// Mean time between replacements of a voter by a new node (0: none).
    pub replace_every_ms: u64,
    /// Most workflows one retention purge removes (small here, so the
    /// few workflows of a seed make a backlog).
    pub purge_chunk: usize,
    /// While the faults last, messages to the last node take up to this
    /// long (0: no slow node): it lags, is fed snapshots, and their
    /// messages overtake each other.
    pub slow_node_ms: u64,
}

impl Scenario {
    /// Three nodes on a network that loses nothing, no faults: the
    /// background for a test that brings its own.
    pub(crate) fn quiet() -> Scenario {
        Scenario {
            nodes: 3,
            workflows: 3,
            snapshot_entries: 100,
            snapshot_keep_entries: 20,
            snapshot_max_retained_entries: 80,
            retention_ms: None,
            fault_ms: 1_000,
            settle_ms: 30_000,
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            max_delay_ms: 5,
            crash_every_ms: 0,
            partition_every_ms: 0,
            clock_jump_every_ms: 0,
            max_clock_jump_ms: 0,
            max_job_delay_ms: 10,
            max_receive_delay_ms: 10,
            replace_every_ms: 0,
            purge_chunk: 2,
            slow_node_ms: 0,
        }
    }

    /// The scenario of `seed`.
    pub(crate) fn of(seed: u64) -> Scenario {
        let mut rng = Rng::new(seed ^ 0x5CE7_A410);
        let hostile = rng.chance(0.8);
        let mut scenario = Scenario {
            nodes: if rng.chance(0.7) { 3 } else { 5 },
            workflows: rng.range(3, 20) as usize,
            snapshot_entries: rng.range(5, 80),
            snapshot_keep_entries: rng.range(1, 20),
            retention_ms: rng.chance(0.4).then(|| rng.range(500, 6_000)),
            fault_ms: rng.range(3_000, 12_000),
            settle_ms: 60_000,
            drop_rate: if hostile {
                rng.range(0, 10) as f64 / 100.0
            } else {
                0.0
            },
            duplicate_rate: if hostile {
                rng.range(0, 5) as f64 / 100.0
            } else {
                0.0
            },
            max_delay_ms: rng.range(1, if hostile { 120 } else { 10 }),
            crash_every_ms: if hostile { rng.range(300, 4_000) } else { 0 },
            partition_every_ms: if hostile && rng.chance(0.6) {
                rng.range(500, 5_000)
            } else {
                0
            },
            clock_jump_every_ms: if rng.chance(0.5) {
                rng.range(300, 4_000)
            } else {
                0
            },
            max_clock_jump_ms: rng.pick(&[2_000, 60_000, 3_600_000]),
            max_job_delay_ms: rng.range(1, 800),
            replace_every_ms: if rng.chance(0.4) {
                rng.range(500, 4_000)
            } else {
                0
            },
            purge_chunk: rng.range(1, 4) as usize,
            snapshot_max_retained_entries: 0,
            slow_node_ms: 0,
            max_receive_delay_ms: 0,
        };
        scenario.max_receive_delay_ms = scenario.max_job_delay_ms;
        scenario.snapshot_max_retained_entries =
            scenario.snapshot_keep_entries * rng.pick(&[1, 1, 2, 4]);
        if rng.chance(0.3) {
            scenario.slow_node_ms = rng.range(100, 2_500);
        }
        // Families that aim at one kind of race (drawn last, so the other
        // seeds keep the scenario they had before the families existed).
        match rng.range(0, 99) {
            0..=11 if hostile => scenario.snapshot_storm(&mut rng),
            12..=21 if hostile => scenario.membership_churn(&mut rng),
            _ => {}
        }
        scenario
    }

    /// A slow node fed snapshot after snapshot, compacted behind at once:
    /// receives overlap, and their messages overtake each other.
    fn snapshot_storm(&mut self, rng: &mut Rng) {
        self.snapshot_entries = rng.range(3, 12);
        self.snapshot_keep_entries = rng.range(1, 3);
        self.snapshot_max_retained_entries = self.snapshot_keep_entries;
        self.slow_node_ms = rng.range(300, 2_500);
        self.max_job_delay_ms = rng.range(1, 40);
        self.max_receive_delay_ms = rng.range(100, 800);
        // Lost appends make the leader send the laggard what it compacted.
        self.drop_rate = rng.range(5, 20) as f64 / 100.0;
    }

    /// A light load with frequent voter replacements, flushes and power
    /// losses: the log is often quiet between a membership change and
    /// the next fsync, while a flush covering the change reaches the disk.
    fn membership_churn(&mut self, rng: &mut Rng) {
        self.workflows = rng.range(2, 5) as usize;
        self.snapshot_entries = rng.range(3, 10);
        self.replace_every_ms = rng.range(200, 900);
        self.crash_every_ms = rng.range(200, 1_000);
        self.max_job_delay_ms = rng.range(1, 100);
    }
}
