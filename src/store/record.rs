//! sluice's own records read back (`_sluice/`, a file's identity): at most [`RECORD_CAP`]
//! bytes, the size known before the bytes are read, so a damaged or foreign file of any size
//! is an error naming it, not an allocation.

use object_store::ObjectStoreExt;

use super::{again, Destination, Kind, StoreError};

/// The largest record of sluice's read back (checkpoints, claims, ranges, schema records,
/// file identities): past any commit's (`commit::bounds`). A commit naming 10,000 files is
/// about 2 MiB. A roll-back's claim names the files of every commit it undoes (up to 320
/// commits: 1,400 files each of 150-byte paths come to 67 MiB); one that would list more is
/// refused before it is written, saying to roll back in steps.
pub const RECORD_CAP: u64 = 256 << 20;

impl Destination {
    /// Reads one of sluice's records (`_sluice/`, a file's identity): at most [`RECORD_CAP`]
    /// bytes. A larger file (damaged, or not sluice's) is [`StoreError::TooLarge`], its size
    /// known before its bytes are read.
    pub fn read_record(&self, rel: &str) -> Result<Vec<u8>, StoreError> {
        self.read_up_to(rel, RECORD_CAP)
    }

    /// A whole file of at most `cap` bytes ([`StoreError::TooLarge`] past it).
    pub(super) fn read_up_to(&self, rel: &str, cap: u64) -> Result<Vec<u8>, StoreError> {
        let too_large = |size: u64| StoreError::TooLarge {
            path: self.display(rel),
            size,
            cap,
        };
        match &self.kind {
            Kind::Local(root) => {
                let io = |source| StoreError::Io {
                    path: self.display(rel),
                    source,
                };
                let mut f = std::fs::File::open(root.join(rel)).map_err(io)?;
                let size = f.metadata().map_err(io)?.len();
                if size > cap {
                    return Err(too_large(size));
                }
                let mut out = Vec::with_capacity(size as usize);
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut f, cap.saturating_add(1)),
                    &mut out,
                )
                .map_err(io)?;
                // Grown since its size was read: judged by what was read.
                if out.len() as u64 > cap {
                    return Err(too_large(out.len() as u64));
                }
                Ok(out)
            }
            Kind::Store {
                store,
                prefix,
                runtime,
            } => {
                let path = Self::store_path(prefix, rel);
                let got = again(|| {
                    runtime.block_on(async {
                        let r = store.get(&path).await?;
                        // The size is in the answer's headers: the body is not read past it.
                        if r.meta.size > cap {
                            return Ok(Err(r.meta.size));
                        }
                        r.bytes().await.map(Ok)
                    })
                })
                .map_err(|source| StoreError::Store {
                    path: self.display(rel),
                    source,
                })?;
                got.map(|b| b.to_vec()).map_err(too_large)
            }
        }
    }
}
