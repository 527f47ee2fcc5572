//! What a simulation runs: the provers (speed, capacity, proof types, when they join and
//! leave) and the jobs (when they arrive, how much work each is).

use crate::ProverInfo;
use proofmill_types::{DEFAULT_CHAIN, JobKey, Millis, ProofType};

/// Program version of every simulated batch and prover.
pub(super) const VERSION: &str = "sim";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimProver {
    pub name: String,
    /// Proving speed in percent of the reference prover's (200: twice as fast).
    pub speed_pct: u32,
    /// Tasks it proves at once, each at full speed.
    pub capacity: u32,
    pub proof_types: Vec<ProofType>,
    pub joins_at: Millis,
    /// When it leaves for good, losing what it runs.
    pub leaves_at: Option<Millis>,
}

impl SimProver {
    /// How long it takes to prove `work_ms` of the reference prover's work (at least 1 ms).
    pub fn prove_ms(&self, work_ms: Millis) -> Millis {
        (work_ms * 100)
            .div_ceil(self.speed_pct.max(1) as u64)
            .max(1)
    }

    pub(super) fn info(&self) -> ProverInfo {
        ProverInfo {
            name: self.name.clone(),
            proof_types: self.proof_types.iter().cloned().collect(),
            capacity: self.capacity,
            version: VERSION.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimJob {
    pub key: JobKey,
    pub arrives_at: Millis,
    /// How long the reference prover (speed 100) takes to prove it.
    pub work_ms: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub provers: Vec<SimProver>,
    pub jobs: Vec<SimJob>,
}

/// Proof types of the documented workload and their mean work on the reference prover, ms.
const PROOF_TYPES: [(&str, Millis); 3] = [("exec", 3_000), ("stark", 15_000), ("wrap", 40_000)];
/// Batches of the documented workload, and the time between two arriving.
const BATCHES: u64 = 240;
const ARRIVAL_EVERY_MS: Millis = 400;

impl Workload {
    /// The documented heterogeneous workload of `proofmill bench makespan`:
    ///
    /// - 240 batches, one arriving every 400 ms (the last at 95.6 s), each needing three
    ///   proofs: `exec` (3 s of the reference prover's work), `stark` (15 s) and `wrap`
    ///   (40 s), each job's work drawn uniformly within ±20 % of its type's mean (`seed`);
    /// - provers that all prove every type: 2 `gpu` (speed 400 %, 2 slots), 3 `mid` (200 %,
    ///   2 slots), 4 `cpu` (100 %, 4 slots) and 1 `old` (50 %, 1 slot) from the start; a third
    ///   `gpu` joins at 60 s and a fifth `cpu` at 120 s; one `mid` leaves at 90 s and one
    ///   `cpu` at 150 s, losing what they run.
    ///
    /// Batches arrive faster than the fleet proves them (each is about 1.3 s of the whole
    /// fleet's time), so the makespan is set by how well the fleet's capacity is used; the
    /// slowest prover takes 8 times as long as the fastest over the same job (a `wrap`: 80 s
    /// against 10 s).
    pub fn heterogeneous(seed: u64) -> Workload {
        let types: Vec<ProofType> = PROOF_TYPES
            .iter()
            .map(|(t, _)| ProofType::new(*t).expect("valid proof type"))
            .collect();
        let prover = |name: String, speed_pct, capacity, joins_at, leaves_at| SimProver {
            name,
            speed_pct,
            capacity,
            proof_types: types.clone(),
            joins_at,
            leaves_at,
        };
        let mut provers = Vec::new();
        for i in 0..2 {
            provers.push(prover(format!("gpu{i}"), 400, 2, 0, None));
        }
        for i in 0..3 {
            let leaves = (i == 2).then_some(90_000);
            provers.push(prover(format!("mid{i}"), 200, 2, 0, leaves));
        }
        for i in 0..4 {
            let leaves = (i == 3).then_some(150_000);
            provers.push(prover(format!("cpu{i}"), 100, 4, 0, leaves));
        }
        provers.push(prover("old0".into(), 50, 1, 0, None));
        provers.push(prover("gpu2".into(), 400, 2, 60_000, None));
        provers.push(prover("cpu4".into(), 100, 4, 120_000, None));

        let mut rng = SplitMix64(seed);
        let mut jobs = Vec::new();
        for batch in 1..=BATCHES {
            for (t, (_, mean)) in types.iter().zip(PROOF_TYPES) {
                // Uniform in [0.8, 1.2] × mean.
                let permille = 800 + rng.next() % 401;
                jobs.push(SimJob {
                    key: JobKey::new(DEFAULT_CHAIN, batch, t.clone()),
                    arrives_at: (batch - 1) * ARRIVAL_EVERY_MS,
                    work_ms: mean * permille / 1_000,
                });
            }
        }
        Workload { provers, jobs }
    }
}

/// A small deterministic generator (SplitMix64), so a seed gives the same workload
/// everywhere without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
