//! The start-up check that a destination refuses to replace a record written create-only.
//!
//! Terms, claims and outcomes are written create-only: on object stores that is a conditional
//! put (S3 `If-None-Match: *`, Azure `If-None-Match: *`, GCS `ifGenerationMatch=0`), on HDFS a
//! rename that does not overwrite, locally a hard link. A store that ignores the condition
//! answers success to both of two writers, and the fence no longer keeps two processes from
//! committing one partition. Such a store is told apart before any data moves: a record is
//! written create-only twice under a name of this process's own, and the second write must be
//! refused.

use super::checkpoint::{CheckpointError, Checkpoints};
use crate::store::StoreError;

impl Checkpoints {
    /// Fails with [`CheckpointError::NotFenceable`] when the destination lets a create-only
    /// write replace an existing record (or cannot write one at all). The probe record is
    /// removed afterwards; one left behind by a failed removal is a few bytes under
    /// `_sluice/<job>/probe/`, read by nothing.
    pub fn check_create_only(&self) -> Result<(), CheckpointError> {
        let name = format!(
            "_sluice/{}/probe/{}-{}",
            self.job,
            super::owner_id(),
            super::random_tag()
        );
        let not_fenceable = |reason: String| CheckpointError::NotFenceable {
            url: self.dest.url().to_string(),
            reason,
        };
        let result = match self.dest.put_atomic(&name, b"first", true) {
            // A name of this process's own cannot exist unless an earlier try of this very
            // write took effect after reporting failure: that is the refusal looked for.
            Ok(()) | Err(StoreError::Exists { .. }) => {
                match self.dest.put_atomic(&name, b"second", true) {
                    Err(StoreError::Exists { .. }) => Ok(()),
                    Ok(()) => Err(not_fenceable(
                        "a second create-only write of one name succeeded (an S3-compatible \
                         server that ignores `If-None-Match: *` does this)"
                            .into(),
                    )),
                    Err(e) => Err(unsupported(e, &not_fenceable)),
                }
            }
            Err(e) => Err(unsupported(e, &not_fenceable)),
        };
        if let Err(e) = self.dest.delete(&name) {
            tracing::debug!(record = %name, error = %e, "could not remove the create-only probe");
        }
        result
    }
}

/// A store that says it cannot write create-only (object_store's `NotImplemented`, e.g. S3
/// with `aws_conditional_put = "disabled"`) is not fenceable; any other error is the store's.
fn unsupported(
    e: StoreError,
    not_fenceable: &dyn Fn(String) -> CheckpointError,
) -> CheckpointError {
    match &e {
        StoreError::Store {
            source: object_store::Error::NotImplemented { .. },
            ..
        }
        | StoreError::Store {
            source: object_store::Error::NotSupported { .. },
            ..
        } => not_fenceable(format!("the store cannot write create-only: {e}")),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
    };

    use super::*;
    use crate::store::Destination;

    /// A store that treats every create-only put as an overwrite, as a server that ignores
    /// the condition does.
    #[derive(Debug)]
    struct IgnoresCondition(InMemory);

    impl std::fmt::Display for IgnoresCondition {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "IgnoresCondition")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for IgnoresCondition {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> Result<PutResult> {
            opts.mode = PutMode::Overwrite;
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, Result<Path>>,
        ) -> futures::stream::BoxStream<'static, Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    fn checkpoints(store: Arc<dyn ObjectStore>, rt: &tokio::runtime::Runtime) -> Checkpoints {
        let dest = Destination::from_store("test://probe/", store, "p", rt.handle().clone());
        Checkpoints::new(dest, "j")
    }

    #[test]
    fn a_store_that_refuses_the_second_write_passes_and_keeps_nothing() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(InMemory::new());
        checkpoints(store.clone(), &rt).check_create_only().unwrap();
        let dest = Destination::from_store("test://probe/", store, "p", rt.handle().clone());
        assert_eq!(dest.list("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_store_that_replaces_on_a_create_only_write_is_not_fenceable() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = Arc::new(IgnoresCondition(InMemory::new()));
        let e = checkpoints(store, &rt).check_create_only().unwrap_err();
        assert!(matches!(e, CheckpointError::NotFenceable { .. }), "{e}");
        assert!(e.to_string().contains("If-None-Match"), "{e}");
        assert!(e.to_string().contains("test://probe/"), "{e}");
    }

    #[test]
    fn a_local_folder_passes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::parse(dir.path().to_str().unwrap(), rt.handle().clone()).unwrap();
        Checkpoints::new(dest.clone(), "j")
            .check_create_only()
            .unwrap();
        assert_eq!(dest.list("").unwrap(), Vec::<String>::new());
    }
}
