//! The log's identity and the checkpoint it continues from: small text files of its folder
//! (`log-id`, `log-base`), written durably.

use std::path::Path;

use super::{io, is_disk_full, WalError};

/// The file in the log's folder holding its identity: random, made with the log (or at the
/// first open of a log an earlier version made). A checkpoint names the log whose positions
/// it counts.
pub(super) const ID_FILE: &str = "log-id";
/// The file recording the other log's checkpoint this log last continued from: `<id> <pos>`.
pub(super) const BASE_FILE: &str = "log-base";
/// Reads the log's identity, or makes one. A full disk does not keep the log from opening (it
/// must, to commit and free segments): the log then has no identity until a later open.
pub(super) fn log_id(dir: &Path) -> Result<Option<String>, WalError> {
    if let Some(id) = read_small(dir, ID_FILE)?.filter(|id| !id.is_empty()) {
        return Ok(Some(id));
    }
    let id = format!(
        "{}{}",
        crate::commit::random_tag(),
        crate::commit::random_tag()
    );
    // `SLUICE_FAULT=no_room_for_log_id:1`: the write fails as on a full disk.
    let written = if crate::fault::enabled("no_room_for_log_id") {
        Err(WalError::Io {
            path: dir.join(ID_FILE),
            source: std::io::Error::from_raw_os_error(28),
        })
    } else {
        write_small(dir, ID_FILE, &id)
    };
    match written {
        Ok(()) => Ok(Some(id)),
        Err(WalError::Io { path, source }) if is_disk_full(&source) => {
            tracing::warn!(path = %path.display(), "no room to write the WAL's identity; checkpoints will not name this log until a start finds room (they name its runs, which tell them apart)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A small text file of the log's folder, trimmed; `None` when there is none.
pub(super) fn read_small(dir: &Path, name: &str) -> Result<Option<String>, WalError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// Writes a small text file of the log's folder durably (see [`crate::durable::write_small`]).
pub(super) fn write_small(dir: &Path, name: &str, text: &str) -> Result<(), WalError> {
    crate::durable::write_small(dir, name, text.as_bytes()).map_err(io(&dir.join(name)))
}
