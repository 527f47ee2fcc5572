//! Proving/verifying keys per shape: dev setup, on-disk cache, loading external keys.
//!
//! # DEV ONLY
//! [`dev_setup`] runs `circuit_specific_setup` with an RNG seeded from the shape, so **the
//! toxic waste is public and anyone can forge proofs for these keys**. Use them for tests and
//! demos only; for anything real, run a ceremony and load its keys with [`load_keys`].
//!
//! # File format (version [`KEY_FORMAT_VERSION`])
//! ```text
//! magic      8   b"PMG16PK\0" (proving key) or b"PMG16VK\0" (verifying key)
//! version    4   u32 LE
//! batch_size 4   u32 LE
//! depth      1
//! reserved   3   zero
//! sha256    32   of the body
//! body           arkworks CanonicalSerialize, compressed
//! ```
//! Cached file names: `groth16-v{version}-n{batch_size}-d{depth}.{pk,vk}`.

use crate::Shape;
use crate::circuit::BatchCircuit;
use ark_bn254::{Bn254, Fr};
use ark_groth16::{Groth16, PreparedVerifyingKey, ProvingKey, VerifyingKey};
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, SynthesisMode,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_snark::SNARK;
use ark_std::rand::SeedableRng;
use ark_std::rand::rngs::StdRng;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Version of the key file layout and of the circuit it was made for. Bump it whenever the
/// circuit changes, so stale cached keys are never picked up.
pub const KEY_FORMAT_VERSION: u32 = 1;
const PK_MAGIC: [u8; 8] = *b"PMG16PK\0";
const VK_MAGIC: [u8; 8] = *b"PMG16VK\0";
const HEADER_LEN: usize = 8 + 4 + 4 + 1 + 3 + 32;

/// Why keys cannot be generated, loaded or stored.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("key file {path} has format version {found}, this build needs {expected}")]
    Version {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("key file {path} is for shape {found}, expected {expected}")]
    ShapeMismatch {
        path: PathBuf,
        expected: Shape,
        found: Shape,
    },
    #[error("proving key and verifying key do not belong together: {0}")]
    Mismatch(String),
    #[error("key generation failed: {0}")]
    Setup(String),
}

/// A shape's key pair, with the verifying key prepared for fast verification.
pub struct Keys {
    pub shape: Shape,
    pub pk: ProvingKey<Bn254>,
    pub vk: VerifyingKey<Bn254>,
    pub pvk: PreparedVerifyingKey<Bn254>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Wraps a key pair after checking it fits `shape`'s circuit (see [`check_pair`]).
    pub fn new(
        shape: Shape,
        pk: ProvingKey<Bn254>,
        vk: VerifyingKey<Bn254>,
    ) -> Result<Self, KeyError> {
        check_pair(shape, &pk, &vk)?;
        let pvk = Groth16::<Bn254>::process_vk(&vk).map_err(|e| KeyError::Setup(e.to_string()))?;
        Ok(Keys { shape, pk, vk, pvk })
    }
}

/// File names of the cached keys of `shape` under `dir`.
pub fn key_paths(dir: &Path, shape: Shape) -> (PathBuf, PathBuf) {
    let stem = format!(
        "groth16-v{KEY_FORMAT_VERSION}-n{}-d{}",
        shape.batch_size, shape.depth
    );
    (
        dir.join(format!("{stem}.pk")),
        dir.join(format!("{stem}.vk")),
    )
}

/// **DEV ONLY: the toxic waste is known.** Deterministic `circuit_specific_setup` for
/// `shape`, seeded from the shape: everyone running this gets the same keys, and anyone can
/// forge proofs for them. Logs a warning.
pub fn dev_setup(shape: Shape) -> Result<Keys, KeyError> {
    tracing::warn!(
        %shape,
        "groth16: generating DEV-ONLY keys with a fixed, public seed: the toxic waste is known \
         and anyone can forge proofs; never use these keys for real value"
    );
    let mut seed = [0u8; 32];
    seed[..20].copy_from_slice(b"proofmill-g16-devkey");
    seed[20..24].copy_from_slice(&(shape.batch_size as u32).to_le_bytes());
    seed[24] = shape.depth;
    seed[28..].copy_from_slice(&KEY_FORMAT_VERSION.to_le_bytes());
    let mut rng = StdRng::from_seed(seed);
    let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(BatchCircuit::blank(shape), &mut rng)
        .map_err(|e| KeyError::Setup(e.to_string()))?;
    Keys::new(shape, pk, vk)
}

/// Loads the cached keys of `shape` from `dir`, or runs [`dev_setup`] and caches them unless
/// both files exist. A present but corrupt/mismatched pair is an error, not a silent
/// regeneration (delete it to regenerate). A lone file is a setup that was interrupted, or one
/// still being written by another process: the setup is deterministic, so generating and
/// atomically (re)writing the same bytes is safe.
pub fn load_or_dev_setup(dir: &Path, shape: Shape) -> Result<Keys, KeyError> {
    let (pk_path, vk_path) = key_paths(dir, shape);
    if pk_path.exists() && vk_path.exists() {
        let keys = load_keys(&pk_path, &vk_path)?;
        if keys.shape != shape {
            return Err(KeyError::ShapeMismatch {
                path: pk_path,
                expected: shape,
                found: keys.shape,
            });
        }
        return Ok(keys);
    }
    let keys = dev_setup(shape)?;
    save_keys(&keys, dir)?;
    Ok(keys)
}

/// Writes `keys` to `dir` under [`key_paths`] (atomically: temp file + rename).
pub fn save_keys(keys: &Keys, dir: &Path) -> Result<(), KeyError> {
    fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (pk_path, vk_path) = key_paths(dir, keys.shape);
    write_key_file(&pk_path, PK_MAGIC, keys.shape, &keys.pk)?;
    write_key_file(&vk_path, VK_MAGIC, keys.shape, &keys.vk)
}

/// Loads a key pair from two files in this crate's key format (e.g. from a real ceremony,
/// re-wrapped with [`write_key_file`]). Checks magic, version, checksum, that both files
/// name the same shape, that the pk embeds the vk, and that the keys fit that shape's
/// circuit. The vk is deserialized with full curve/subgroup checks; the pk (large, and only
/// able to produce proofs the vk rejects if bad) with curve checks skipped, guarded by the
/// checksum.
pub fn load_keys(pk_path: &Path, vk_path: &Path) -> Result<Keys, KeyError> {
    let (pk_shape, pk_body) = read_key_file(pk_path, PK_MAGIC)?;
    let (vk_shape, vk_body) = read_key_file(vk_path, VK_MAGIC)?;
    if pk_shape != vk_shape {
        return Err(KeyError::ShapeMismatch {
            path: vk_path.to_path_buf(),
            expected: pk_shape,
            found: vk_shape,
        });
    }
    let vk = VerifyingKey::<Bn254>::deserialize_compressed(&vk_body[..]).map_err(|e| {
        KeyError::Corrupt {
            path: vk_path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let pk = ProvingKey::<Bn254>::deserialize_compressed_unchecked(&pk_body[..]).map_err(|e| {
        KeyError::Corrupt {
            path: pk_path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Keys::new(pk_shape, pk, vk)
}

/// Checks that `pk`/`vk` are a pair for `shape`'s circuit: the pk embeds exactly `vk`, the vk
/// takes 3 public inputs, and the pk's query vectors have the sizes that circuit needs.
pub fn check_pair(
    shape: Shape,
    pk: &ProvingKey<Bn254>,
    vk: &VerifyingKey<Bn254>,
) -> Result<(), KeyError> {
    if pk.vk != *vk {
        return Err(KeyError::Mismatch(
            "the proving key embeds a different verifying key".into(),
        ));
    }
    if vk.gamma_abc_g1.len() != 4 {
        return Err(KeyError::Mismatch(format!(
            "verifying key takes {} public inputs, the circuit has 3",
            vk.gamma_abc_g1.len().saturating_sub(1)
        )));
    }
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    BatchCircuit::blank(shape)
        .generate_constraints(cs.clone())
        .map_err(|e| KeyError::Setup(e.to_string()))?;
    cs.finalize();
    let variables = cs.num_instance_variables() + cs.num_witness_variables();
    let witnesses = cs.num_witness_variables();
    if pk.a_query.len() != variables || pk.l_query.len() != witnesses {
        return Err(KeyError::Mismatch(format!(
            "proving key has {} variables / {} private, the {shape} circuit has {variables} / \
             {witnesses}",
            pk.a_query.len(),
            pk.l_query.len()
        )));
    }
    Ok(())
}

/// Writes one key (`pk` or `vk` by `magic`) in the crate's file format, atomically.
pub fn write_key_file<T: CanonicalSerialize>(
    path: &Path,
    magic: [u8; 8],
    shape: Shape,
    key: &T,
) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut body = Vec::with_capacity(key.compressed_size());
    key.serialize_compressed(&mut body)
        .map_err(|e| KeyError::Setup(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&KEY_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(shape.batch_size as u32).to_le_bytes());
    out.push(shape.depth);
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(&out).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)
}

/// Magic of proving-key files (for [`write_key_file`]).
pub const PROVING_KEY_MAGIC: [u8; 8] = PK_MAGIC;
/// Magic of verifying-key files (for [`write_key_file`]).
pub const VERIFYING_KEY_MAGIC: [u8; 8] = VK_MAGIC;

fn read_key_file(path: &Path, magic: [u8; 8]) -> Result<(Shape, Vec<u8>), KeyError> {
    let bytes = fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes, shorter than the header",
            bytes.len()
        )));
    }
    if bytes[..8] != magic {
        let what = if magic == PK_MAGIC {
            "proving"
        } else {
            "verifying"
        };
        return Err(corrupt(format!(
            "not a proofmill groth16 {what} key file (bad magic)"
        )));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != KEY_FORMAT_VERSION {
        return Err(KeyError::Version {
            path: path.to_path_buf(),
            expected: KEY_FORMAT_VERSION,
            found: version,
        });
    }
    let batch_size = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let depth = bytes[16];
    let shape =
        Shape::new(batch_size, depth).map_err(|e| corrupt(format!("bad shape in header: {e}")))?;
    let body = &bytes[HEADER_LEN..];
    if Sha256::digest(body)[..] != bytes[20..52] {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok((shape, body.to_vec()))
}
