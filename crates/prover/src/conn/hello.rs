//! What a prover says first on a stream: who it is (`Register`), and after a reconnect the
//! tasks it still holds (`Reconnect`).

use super::{Conn, Key, TaskState};
use proofmill_proto::v1::{Register, RunningTask};

impl Conn {
    pub(super) fn register_msg(&self) -> Register {
        Register {
            name: self.shared.name.clone(),
            proof_types: self.shared.proof_types.clone(),
            compute_capacity: self.shared.capacity,
            version: self.shared.version.clone(),
            token: self.shared.token.clone(),
            blob_access: self.shared.blob_reader.is_some(),
            max_message_bytes: self.shared.max_message_bytes.min(u32::MAX as usize) as u32,
        }
    }

    /// Tasks the coordinator should consider ours: running (not cancelled) and finished but
    /// unacknowledged.
    pub(super) fn running_list(&self) -> Vec<RunningTask> {
        let mut keys: Vec<&Key> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                !matches!(
                    t,
                    TaskState::Proving {
                        cancelled: true,
                        ..
                    }
                )
            })
            .map(|(k, _)| k)
            .chain(self.outbox.keys())
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|(id, token)| RunningTask {
                task_id: id.clone(),
                fencing_token: *token,
            })
            .collect()
    }
}
