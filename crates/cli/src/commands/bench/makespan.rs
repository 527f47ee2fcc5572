//! `proofmill bench makespan`: the scheduler in simulated time over the documented
//! heterogeneous workload ([`sim::Workload::heterogeneous`]), once per assignment policy.
//! Prints the workload and each run's figures, then ends with one line per policy:
//! `policy=<name> makespan_ratio=<float>`, the makespan over [`sim::lower_bound`] (1.0 would
//! be optimal; no schedule is below it).

use crate::args::BenchMakespanArgs;
use proofmill_scheduler::{PolicyName, sim};

pub fn makespan(a: BenchMakespanArgs) -> anyhow::Result<()> {
    let workload = sim::Workload::heterogeneous(a.seed);
    let policies: Vec<PolicyName> = match a.policy {
        Some(p) => vec![p],
        None => PolicyName::ALL.to_vec(),
    };
    let slots: u32 = workload.provers.iter().map(|p| p.capacity).sum();
    println!(
        "workload: heterogeneous, seed {}: {} jobs, {} provers ({} slots), joins and leaves",
        a.seed,
        workload.jobs.len(),
        workload.provers.len(),
        slots
    );
    let mut results = Vec::new();
    for policy in policies {
        let out = sim::run(&workload, policy)?;
        println!(
            "{}: makespan_ms={} lower_bound_ms={:.0} mean_batch_latency_ms={} dispatched={} \
             lost={}",
            out.policy,
            out.makespan_ms,
            out.lower_bound_ms,
            out.mean_batch_latency_ms,
            out.dispatched,
            out.lost
        );
        results.push(out);
    }
    for out in results {
        println!("policy={} makespan_ratio={:.4}", out.policy, out.ratio());
    }
    Ok(())
}
