//! A lower bound on the makespan of a workload, whatever the policy.

use super::{SimError, Workload};
use proofmill_types::{Millis, ProofType};
use std::collections::BTreeSet;

/// No schedule proves every job of `workload` before this time (ms); the larger of:
///
/// - **Each job alone**: a job cannot finish before the earliest time any prover of its type
///   could finish it alone, starting no earlier than the job arrives and the prover joins,
///   and finishing before the prover leaves.
/// - **Work over capacity**: proving is work in reference-prover milliseconds, and a prover
///   does `capacity × speed` of it per millisecond while it is there (between joining and
///   leaving). For any time `a` and any set `S` of proof types, the jobs of types in `S`
///   arriving at or after `a` must all be proven after `a`, by provers that prove a type of
///   `S`: the makespan is at least the first time their capacity since `a` adds up to that
///   work. Tasks are treated as divisible and nothing is lost or idle, so this only
///   underestimates.
///
/// Lost work, waiting for a slot, and the scheduler's own delays (a lost task is requeued
/// after the reconnect grace) only make a real schedule longer.
pub fn lower_bound(workload: &Workload) -> Result<f64, SimError> {
    if workload.jobs.is_empty() {
        return Err(SimError::NoJobs);
    }
    let mut bound = 0f64;
    for job in &workload.jobs {
        let alone = workload
            .provers
            .iter()
            .filter(|p| p.proof_types.contains(&job.key.proof_type))
            .filter_map(|p| {
                let start = job.arrives_at.max(p.joins_at) as f64;
                let finish = start + job.work_ms as f64 * 100.0 / p.speed_pct.max(1) as f64;
                p.leaves_at
                    .is_none_or(|l| finish <= l as f64)
                    .then_some(finish)
            })
            .reduce(f64::min)
            .ok_or_else(|| SimError::Unprovable(job.key.clone()))?;
        bound = bound.max(alone);
    }
    let types: Vec<ProofType> = workload
        .jobs
        .iter()
        .map(|j| j.key.proof_type.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let arrivals: BTreeSet<Millis> = workload.jobs.iter().map(|j| j.arrives_at).collect();
    for mask in 1u64..(1 << types.len().min(16)) {
        let set: Vec<&ProofType> = (0..types.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &types[i])
            .collect();
        for &a in &arrivals {
            let work: f64 = workload
                .jobs
                .iter()
                .filter(|j| j.arrives_at >= a && set.contains(&&j.key.proof_type))
                .map(|j| j.work_ms as f64)
                .sum();
            if work > 0.0 {
                bound = bound.max(capacity_reaches(workload, &set, a, work));
            }
        }
    }
    Ok(bound)
}

/// The first time at which the provers of `set`, from `from` on, have done `work`.
fn capacity_reaches(workload: &Workload, set: &[&ProofType], from: Millis, work: f64) -> f64 {
    let provers: Vec<_> = workload
        .provers
        .iter()
        .filter(|p| p.proof_types.iter().any(|t| set.contains(&t)))
        .collect();
    // Times at which the capacity changes, from `from` on.
    let mut changes: BTreeSet<Millis> = BTreeSet::new();
    changes.insert(from);
    for p in &provers {
        changes.extend(
            [p.joins_at]
                .into_iter()
                .chain(p.leaves_at)
                .filter(|t| *t > from),
        );
    }
    let rate_at = |t: Millis| -> f64 {
        provers
            .iter()
            .filter(|p| p.joins_at <= t && p.leaves_at.is_none_or(|l| t < l))
            .map(|p| p.capacity as f64 * p.speed_pct as f64 / 100.0)
            .sum()
    };
    let mut left = work;
    let points: Vec<Millis> = changes.into_iter().collect();
    for (i, &start) in points.iter().enumerate() {
        let rate = rate_at(start);
        let end = points.get(i + 1).map(|e| *e as f64);
        if rate > 0.0 {
            let done_at = start as f64 + left / rate;
            if end.is_none_or(|e| done_at <= e) {
                return done_at;
            }
        }
        if let Some(e) = end {
            left -= rate * (e - start as f64);
        }
    }
    // No capacity after the last change: the work is never done.
    f64::INFINITY
}

#[cfg(test)]
mod tests {
    use super::super::{SimJob, SimProver};
    use super::*;
    use proofmill_types::JobKey;

    fn prover(speed_pct: u32, capacity: u32, joins_at: Millis) -> SimProver {
        SimProver {
            name: "p".into(),
            speed_pct,
            capacity,
            proof_types: vec![ProofType::new("exec").unwrap()],
            joins_at,
            leaves_at: None,
        }
    }

    fn job(batch: u64, arrives_at: Millis, work_ms: Millis) -> SimJob {
        SimJob {
            key: JobKey::new(
                proofmill_types::DEFAULT_CHAIN,
                batch,
                ProofType::new("exec").unwrap(),
            ),
            arrives_at,
            work_ms,
        }
    }

    #[test]
    fn work_over_capacity_and_the_longest_job() {
        // 4 jobs of 1 s on one 2-slot reference prover: 2 s; exactly what a schedule gets.
        let w = Workload {
            provers: vec![prover(100, 2, 0)],
            jobs: (1..=4).map(|b| job(b, 0, 1_000)).collect(),
        };
        assert_eq!(lower_bound(&w).unwrap(), 2_000.0);
        // One long job dominates: 10 s on a prover twice as fast is 5 s.
        let w = Workload {
            provers: vec![prover(200, 8, 0)],
            jobs: vec![job(1, 0, 10_000), job(2, 0, 1_000)],
        };
        assert_eq!(lower_bound(&w).unwrap(), 5_000.0);
        // A prover joining at 1 s doubles the capacity from then on.
        let w = Workload {
            provers: vec![prover(100, 1, 0), prover(100, 1, 1_000)],
            jobs: (1..=10).map(|b| job(b, 0, 300)).collect(),
        };
        assert_eq!(lower_bound(&w).unwrap(), 2_000.0);
        // Late work counts from its arrival.
        let w = Workload {
            provers: vec![prover(100, 4, 0)],
            jobs: vec![job(1, 0, 100), job(2, 5_000, 100)],
        };
        assert_eq!(lower_bound(&w).unwrap(), 5_100.0);
    }

    #[test]
    fn a_job_no_prover_can_take_is_an_error() {
        let mut p = prover(100, 1, 0);
        p.leaves_at = Some(500);
        let w = Workload {
            provers: vec![p],
            jobs: vec![job(1, 0, 1_000)],
        };
        assert!(matches!(lower_bound(&w), Err(SimError::Unprovable(_))));
    }
}
